"""Embeddings at run time: the fixed 2-D projection, the checkpoint's embedding metadata, and the
per-stream histories that turn each hop's window encoding into novelty and reference queries.

The embedding head (``HeadSpec(kind="embedding")``) outputs an L2-normalised vector per hop
(``activate_head``). Distances between embeddings are Euclidean between unit vectors, so they lie
in [0, 2] (0 identical, √2 orthogonal, 2 opposite); the trainer's triplet loss uses the same
distance (seed 003). The embedding is published (``streamtag.embedding``, ``embedding.xy``).

Novelty and reference matching compare vectors derived from the model's *window encoding*
(``StreamTagModel.encode``: the CNN's summary of the hop's window, then the pitch-class
encoder's features), not the embedding: the embedding comes out of the LSTM, which integrates
seconds of context and was trained for all heads at once. Measured on the shipped model's
validation renders (260 pieces never heard in training; ``streamtag.train.evaluate_embedding``):
which piece after 5 s, top-1 0.93 with match vectors against 0.70 with the embedding; known/new
ROC AUC 0.98 against 0.84; changes of piece caught within 1 s 91 % (standardised sound vectors,
4 s of memory, the last 3 s's median change taken off; model 2388435731b9) against 27 % with
the embedding.

- Match vector (:func:`match_vectors`, references): the window encoding's blocks each scaled to
  unit length, the pitch-class blocks weighted :data:`PITCH_MATCH_WEIGHT`, the whole unit
  length; then, if the checkpoint stores one, through its :class:`MatchProjection` (PCA to
  :data:`MATCH_DIMS`, fitted by the trainer) and made unit again. Distances between match
  vectors are in the same [0, 2] units, and the checkpoint's calibrated ``known_distance`` is
  one of them.
- Sound vector (novelty): the window encoding's first ``StreamTagModel.sound_features``
  features (the mel bands' summary alone: the pitch-class features carry a 4 s key memory),
  standardised feature by feature with the checkpoint's :class:`SoundScale` if it stores one
  (fitted by the trainer on training hops).

Projection (``embedding.xy``): PCA fitted once by the trainer and stored in the checkpoint, never
refitted live, so a position means the same thing all evening. ``xy = clip((e − center) ·
axesᵀ / scale, −1, 1)`` where ``scale`` is twice the standard deviation of each principal
component over the fitting set: about 95 % of typical hops land inside [−1, 1] unclipped.

Histories: per stream, the non-silent hops' vectors, newest last (the reference query's in a
ring buffer sized up front, :class:`HopHistory`; novelty's, the last hops its windows reach, in
:class:`NoveltyMeter`, which takes a run of hops at once). Silent hops are skipped (they are not
music, and a pause must not make the music that resumes look new or unknown).

- Novelty (:class:`NoveltyMeter`) = d − (the median of d over the previous ``baseline_hops``
  hops), floored at 0, where d = (1 − cos(r, m)) / 2 ∈ [0, 1] between r, the mean *sound
  vector* of the last ``recent_hops`` non-silent hops, and m, the mean of up to ``memory_hops``
  non-silent hops before those (sound vectors, above: the embedding turns slowly after a change
  of piece, as the LSTM and the key memory hold on to the old one; the window summary holds
  only the current second).
  0: the music goes on as before, or changes no more than it has lately; the plain distance
  (``baseline_hops`` 0) is 0.5 when orthogonal to the recent past, 1 when opposite. It is 0 until
  the memory holds at least ``recent_hops`` hops (start of a stream, after ``reset``), and 0 on a
  silent hop (silence is not news).
- Reference query = the last ``window_hops`` non-silent hops' match vectors, oldest first
  (None before the first one); see :mod:`streamtag.references`.

For the trainer: fit the projection on embeddings computed the way they are served, and store it
with the calibrated threshold::

    ck = load_checkpoint(best)                       # saved with its embedding head
    recs = Engine(ck).analyze(audio)                 # per clip; records carry embedding.vector
    emb = np.array([r["embedding"]["vector"] for r in recs if not r["silent"]])
    meta = EmbeddingMeta(fit_projection(all_emb), known_distance=threshold)
    update_embedding_meta(best, meta)                # or save_checkpoint(..., embedding=meta)

To calibrate ``known_distance`` with the distances the daemon will report, score held-out
windows (``[k, F]`` runs of match vectors, ``Engine.reference_vectors``) with
``SequenceIndex(reference_recordings, F).distances``
or ``ReferenceMatcher(lib, window_hops, known_distance=2.0).match(window)``
(``window_hops = hops_for(ReferenceConfig().window_s, 0.5)``): pieces in the library against
pieces that are not (``streamtag.train.evaluate_embedding`` does this).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Largest Euclidean distance between two unit vectors.
MAX_DISTANCE = 2.0
# Components with less spread than this at fit time are not scaled up (they carry no signal).
_MIN_STD = 1e-6


@dataclass(frozen=True)
class Projection:
    """A fixed linear map from D-dim embeddings to a 2-D position in about [−1, 1]².

    center: [D] mean of the fitting set. axes: [2, D] orthonormal principal directions.
    scale: [2] divisor of each coordinate (2 × its standard deviation at fit time).
    """

    center: np.ndarray
    axes: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        _freeze(self, ("center", "axes", "scale"))

    @property
    def dims(self) -> int:
        return int(self.center.shape[0])

    def project(self, emb: np.ndarray) -> np.ndarray:
        """Embeddings [..., D] → positions [..., 2], each coordinate clipped to [−1, 1]."""
        xy = (np.asarray(emb, np.float64) - self.center) @ self.axes.T / self.scale
        return np.clip(xy, -1.0, 1.0)

    def project_rows(self, emb: np.ndarray) -> np.ndarray:
        """Embeddings [n, D] → positions [n, 2], each row equal to the bit to ``project`` of
        that row alone (the engine's hops one by one live, a chunk at a time offline):
        ``project`` of a batch multiplies the matrices at once, whose sums may round
        differently from one vector's; a stack of [1, D] rows is multiplied one row at a time,
        by the same vector-matrix product as one vector (tested)."""
        diff = np.asarray(emb, np.float64) - self.center
        xy = (diff[:, None, :] @ self.axes.T)[:, 0]
        return np.clip(xy / self.scale, -1.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"center": [float(x) for x in self.center],
                "axes": [[float(x) for x in row] for row in self.axes],
                "scale": [float(x) for x in self.scale]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Projection:
        """Build from a validated dict (see :func:`validate_embedding_meta`)."""
        return Projection(np.asarray(d["center"], np.float64), np.asarray(d["axes"], np.float64),
                          np.asarray(d["scale"], np.float64))


def _freeze(obj: Any, names: tuple[str, ...]) -> None:
    """Replace a frozen dataclass's array fields by read-only float64 copies: a fixed map stays
    fixed, nobody can change it in place."""
    for name in names:
        a = np.array(getattr(obj, name), dtype=np.float64)
        a.flags.writeable = False
        object.__setattr__(obj, name, a)


def fit_projection(emb: np.ndarray) -> Projection:
    """PCA of embeddings [N, D] (N ≥ 2, D ≥ 2) onto their two main axes.

    Deterministic: each axis is flipped so that its largest-magnitude component is positive
    (the first such component on a tie), so refitting the same data gives the same map.
    Raises ValueError on too few rows/dims or non-finite values.
    """
    x, center, axes = _pca(emb, 2, "fit_projection")
    std = ((x - center) @ axes.T).std(axis=0)
    scale = np.where(std > _MIN_STD, 2.0 * std, 1.0)
    return Projection(center, axes, scale)


def _pca(data: np.ndarray, k: int, who: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data [N, D] as float64, its mean [D], its k main axes [k, D]): deterministic, each axis
    flipped so that its largest-magnitude component is positive (the first on a tie)."""
    x = np.asarray(data, np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < k:
        raise ValueError(f"{who}: expected vectors [N >= 2, D >= {k}], got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{who}: vectors hold NaN or infinite values")
    center = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - center, full_matrices=False)
    axes = vt[:k].copy()
    for row in axes:
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1.0
    return x, center, axes


#: Dimensions the trainer keeps of the match vectors (``MatchProjection``). On the shipped
#: model's validation pieces, PCA to 64 dims kept top-1 retrieval after 5 s (0.931 against
#: 0.927 with all 1,100) and known/new AUC (0.982 against 0.978); 32 dims: 0.927 and 0.981.
MATCH_DIMS = 64


@dataclass(frozen=True)
class MatchProjection:
    """A fixed linear map from match vectors [F] to K dims, fitted once by the trainer (PCA).

    center: [F] mean of the fitting set. axes: [K, F] orthonormal principal directions.
    Matching in K dims instead of F makes a reference hop K·4 bytes and the per-hop match
    F/K times cheaper (a 1,100 × 7,200 product was ~2 ms per hop here).
    """

    center: np.ndarray
    axes: np.ndarray

    def __post_init__(self) -> None:
        _freeze(self, ("center", "axes"))

    @property
    def features(self) -> int:
        """F, the match vectors' size before the projection."""
        return int(self.center.shape[0])

    @property
    def dims(self) -> int:
        """K, the size after it."""
        return int(self.axes.shape[0])

    @property
    def id(self) -> str:
        """12 hex digits of the SHA-256 of the stored (rounded) map: names it in libraries."""
        data = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest()[:12]

    def project(self, v: np.ndarray) -> np.ndarray:
        """Match vectors [..., F] → unit vectors [..., K]."""
        y = (np.asarray(v, np.float64) - self.center) @ self.axes.T
        return unit_rows(y)

    def to_dict(self) -> dict[str, Any]:
        # 7 significant digits (float32 precision) keep the checkpoint header small; the
        # trainer calibrates known_distance with the stored (rounded) map.
        return {"center": [float(f"{x:.7g}") for x in self.center],
                "axes": [[float(f"{x:.7g}") for x in row] for row in self.axes]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> MatchProjection:
        """Build from a validated dict (see :func:`validate_embedding_meta`)."""
        return MatchProjection(np.asarray(d["center"], np.float64),
                               np.asarray(d["axes"], np.float64))


def fit_match_projection(match: np.ndarray, dims: int = MATCH_DIMS) -> MatchProjection:
    """PCA of match vectors [N, F] onto their ``min(dims, N − 1, F)`` main axes."""
    x = np.asarray(match)
    k = max(1, min(dims, x.shape[0] - 1 if x.ndim == 2 else 1, x.shape[-1]))
    _, center, axes = _pca(x, k, "fit_match_projection")
    return MatchProjection(center, axes)


@dataclass(frozen=True)
class SoundScale:
    """Per-feature standardisation of sound vectors for novelty, fitted once by the trainer.

    center: [D] mean, scale: [D] standard deviation (> 0) of the training hops' sound vectors.
    The CNN's features are rectified, so raw sound vectors share a large common direction and
    their cosines crowd together; standardised, each feature counts by how much it varies.
    Measured with model 96ab9826a5cf (last hop against the 3 s before, both halves of the
    splice streams as calibration in turn): changes of piece caught within 1 s 0.836 → 0.900
    on training pieces, 0.842 → 0.872 on the validation ones, at about 1 false alarm per minute.
    """

    center: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        _freeze(self, ("center", "scale"))

    @property
    def dims(self) -> int:
        return int(self.center.shape[0])

    def apply(self, v: np.ndarray) -> np.ndarray:
        """Sound vectors [..., D] → standardised [..., D]."""
        return (np.asarray(v, np.float64) - self.center) / self.scale

    def to_dict(self) -> dict[str, Any]:
        return {"center": [float(f"{x:.7g}") for x in self.center],
                "scale": [float(f"{x:.7g}") for x in self.scale]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SoundScale:
        """Build from a validated dict (see :func:`validate_embedding_meta`)."""
        return SoundScale(np.asarray(d["center"], np.float64), np.asarray(d["scale"], np.float64))


def fit_sound_scale(sound: np.ndarray) -> SoundScale:
    """Mean and standard deviation of sound vectors [N, D] (N ≥ 2); a feature that does not
    vary keeps scale 1 (it carries no signal to amplify)."""
    x = np.asarray(sound, np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"fit_sound_scale: expected vectors [N >= 2, D >= 1], got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("fit_sound_scale: vectors hold NaN or infinite values")
    std = x.std(axis=0)
    return SoundScale(x.mean(axis=0), np.where(std > _MIN_STD, std, 1.0))


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of x [..., D] scaled to unit length (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 1e-12, norm, 1.0)


@dataclass(frozen=True)
class EmbeddingMeta:
    """What a checkpoint stores about its ``embedding`` head beyond the weights.

    projection: the fixed 2-D map for ``embedding.xy`` (None: xy is not published).
    known_distance: calibrated threshold [Euclidean distance between unit match vectors,
        0 … 2] below which a reference-library match counts as known (None: not calibrated).
    match: the PCA that shortens match vectors (None: they are matched at full size).
    sound: the standardisation of sound vectors before novelty compares them (None: compared
        as they come, as checkpoints from before it was fitted).
    """

    projection: Projection | None = None
    known_distance: float | None = None
    match: MatchProjection | None = None
    sound: SoundScale | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"projection": None if self.projection is None else self.projection.to_dict(),
             "known_distance": None if self.known_distance is None
             else float(self.known_distance)}
        if self.match is not None:
            d["match"] = self.match.to_dict()
        if self.sound is not None:
            d["sound"] = self.sound.to_dict()
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> EmbeddingMeta:
        """Build from a validated dict (see :func:`validate_embedding_meta`)."""
        p = d.get("projection")
        kd = d.get("known_distance")
        m = d.get("match")
        snd = d.get("sound")
        return EmbeddingMeta(None if p is None else Projection.from_dict(p),
                             None if kd is None else float(kd),
                             None if m is None else MatchProjection.from_dict(m),
                             None if snd is None else SoundScale.from_dict(snd))


def _finite_list(x: Any, shape: tuple[int, ...]) -> bool:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if isinstance(x, (str, bytes)) or a.shape != shape:
        return False
    if any(isinstance(v, bool) for v in np.asarray(x, dtype=object).reshape(-1)):
        return False
    return bool(np.isfinite(a).all())


def validate_embedding_meta(meta: Any, dims: int | None) -> list[str]:
    """Every problem with a checkpoint's ``embedding`` metadata block (empty: valid).

    dims: the size of the checkpoint's ``embedding`` head, or None if it has none (then the
    block itself is a problem).
    """
    p = "embedding"
    if not isinstance(meta, dict):
        return [f"{p}: expected an object, got {type(meta).__name__}"]
    if dims is None:
        return [f"{p}: metadata present but the checkpoint has no head named 'embedding' of kind "
                "'embedding'"]
    problems = [f"{p}.{k}: unknown key" for k in meta
                if k not in ("projection", "known_distance", "match", "sound")]
    problems += _centered_map_problems(meta.get("match"), "match", "axes", _match_axes_problem)
    problems += _centered_map_problems(meta.get("sound"), "sound", "scale", _sound_scale_problem)
    proj = meta.get("projection")
    if proj is not None:
        if not isinstance(proj, dict):
            problems.append(f"{p}.projection: expected an object or null")
        else:
            for key, shape in (("center", (dims,)), ("axes", (2, dims)), ("scale", (2,))):
                if key not in proj:
                    problems.append(f"{p}.projection.{key}: missing")
                elif not _finite_list(proj[key], shape):
                    problems.append(f"{p}.projection.{key}: expected finite numbers of shape "
                                    f"{list(shape)} (embedding head has {dims} dims)")
            if "scale" in proj and _finite_list(proj["scale"], (2,)) and min(proj["scale"]) <= 0:
                problems.append(f"{p}.projection.scale: expected two numbers > 0, got "
                                f"{proj['scale']}")
            problems += [f"{p}.projection.{k}: unknown key" for k in proj
                         if k not in ("center", "axes", "scale")]
    kd = meta.get("known_distance")
    if kd is not None and (isinstance(kd, bool) or not isinstance(kd, (int, float))
                           or not math.isfinite(kd) or not 0 < kd <= MAX_DISTANCE):
        problems.append(f"{p}.known_distance: expected a number in (0, 2] or null, got {kd!r}")
    return problems


def _centered_map_problems(block: Any, name: str, other: str,
                           check_other: Callable[[Any, int], str | None]) -> list[str]:
    """Problems with a map block ``embedding.<name>`` (None is fine): an object with
    ``center`` [F] (non-empty, finite) and ``other``, which ``check_other(value, F)`` checks
    (returning what is wrong with it, or None)."""
    p = f"embedding.{name}"
    if block is None:
        return []
    if not isinstance(block, dict):
        return [f"{p}: expected an object or null"]
    problems = [f"{p}.{k}: unknown key" for k in block if k not in ("center", other)]
    center = block.get("center")
    if not isinstance(center, list) or not center or not _finite_list(center, (len(center),)):
        return [*problems, f"{p}.center: expected a non-empty list of finite numbers"]
    wrong = check_other(block.get(other), len(center))
    return problems + ([f"{p}.{other}: {wrong}"] if wrong else [])


def _match_axes_problem(axes: Any, f: int) -> str | None:
    """``embedding.match.axes`` must be [K, F], 1 <= K <= F."""
    if (not isinstance(axes, list) or not 1 <= len(axes) <= f
            or not _finite_list(axes, (len(axes), f))):
        return f"expected K rows (1 <= K <= {f}) of {f} finite numbers"
    return None


def _sound_scale_problem(scale: Any, d: int) -> str | None:
    """``embedding.sound.scale`` must be [D], every number > 0."""
    if not isinstance(scale, list) or not _finite_list(scale, (d,)):
        return f"expected {d} finite numbers"
    if min(scale) <= 0:
        return f"expected numbers > 0, got a minimum of {min(scale)}"
    return None


def novelty_of(recent: np.ndarray, memory: np.ndarray) -> float:
    """(1 − cos) / 2 between the means of ``recent`` [R, D] and ``memory`` [M, D] ∈ [0, 1].

    0 when either is empty or a mean is the zero vector (nothing to compare).
    """
    if not len(recent) or not len(memory):
        return 0.0
    r, m = recent.mean(axis=0), memory.mean(axis=0)
    return _novelty_of_dots(float(r.dot(r)), float(m.dot(m)), float(r.dot(m)))


def _novelty_of_dots(rr: float, mm: float, rm: float) -> float:
    """(1 − cos) / 2 ∈ [0, 1] between two mean vectors r and m given r·r, m·m and r·m (0 if
    either is the zero vector). ``math.sqrt(r.dot(r))`` is ``np.linalg.norm(r)`` of a vector
    to the bit, and ``np.vecdot`` of rows the same BLAS dot as ``r.dot(m)`` of each (both
    tested), so a chunk's dots are taken at once."""
    nr, nm = math.sqrt(rr), math.sqrt(mm)
    if nr < 1e-12 or nm < 1e-12:
        return 0.0
    cos = rm / (nr * nm)
    return min(1.0, max(0.0, (1.0 - cos) / 2.0))


def _window_means(x: np.ndarray, end: int, count: int, length: int) -> np.ndarray:
    """Means [count, D] of the windows of ``length`` rows of x [N, D] ending (inclusive) at
    rows ``end``, ``end + 1``, … (``count`` of them), each equal to the bit to
    ``x[e - length + 1 : e + 1].mean(axis=0)``: for D >= 2 numpy sums such a window row by
    row, oldest first, and divides by the count, as here (one vector operation per row of the
    window for all the windows at once). For D == 1 numpy sums pairwise instead; then it is
    asked itself."""
    start = end - length + 1
    if x.shape[1] < 2:
        return np.stack([x[e:e + length].mean(axis=0) for e in range(start, start + count)])
    acc = x[start:start + count].copy()
    for r in range(1, length):
        acc += x[start + r:start + r + count]
    return acc / length


def _median(values: Iterable[float]) -> float:
    """``float(np.median(values))`` to the bit for finite values: the middle one, or the
    mean of the two middle ones (their sum halved, as numpy's mean of two), without
    numpy's overhead on a handful of numbers."""
    s = sorted(values)
    k = len(s) // 2
    return s[k] if len(s) % 2 else (s[k - 1] + s[k]) / 2


#: Weight of the pitch-class blocks (the mean profile, the template matches) against the sound
#: features' in a match vector, each block first scaled to unit length. Measured on the shipped
#: model's 260 validation pieces (top-1 retrieval after 5 s): the pitch features as one block
#: weighted 1.5: 0.915, 2: 0.919, 3: 0.919, 6: 0.912, alone: 0.896; the two blocks each scaled,
#: weight 2: 0.927 (0.931 and 0.923 on the two halves of the pieces); the triplet-trained
#: embedding: 0.704.
PITCH_MATCH_WEIGHT = 2.0


def match_vectors(encoded: np.ndarray, sound_dims: int, n_chroma: int,
                  projection: MatchProjection | None = None) -> np.ndarray:
    """A model's window encodings [..., F] (``StreamTagModel.encode``) → match vectors of
    unit length, what reference matching compares (module docstring): [..., F], or
    [..., K] through the checkpoint's ``projection``.

    Blocks: the first ``sound_dims`` features (the CNN's sound summary); with pitch-class rows
    (``n_chroma`` > 0) the next ``n_chroma`` (the window's mean pitch-class profile, which
    names the key) and the rest (key-invariant template matches). Each block is scaled to unit
    length, the pitch blocks weighted by :data:`PITCH_MATCH_WEIGHT`, and the whole made unit.
    """
    x = np.asarray(encoded, np.float64)
    bounds = [0, sound_dims] + ([sound_dims + n_chroma, x.shape[-1]] if n_chroma else [])
    parts = [(1.0 if k == 0 else PITCH_MATCH_WEIGHT) * unit_rows(x[..., a:b])
             for k, (a, b) in enumerate(itertools.pairwise(bounds))]
    v = unit_rows(np.concatenate(parts, axis=-1))
    return v if projection is None else projection.project(v)


def hops_for(seconds: float, hop_s: float) -> int:
    """Whole hops covering ``seconds`` (at least one)."""
    return max(1, round(seconds / hop_s))


class HopHistory:
    """The newest non-silent hops' vectors [≤ capacity, D] of one stream, oldest first.

    Storage [capacity, D] is allocated here, once; a push overwrites the oldest hop.
    """

    def __init__(self, dims: int, capacity: int) -> None:
        self._cap = capacity
        self._buf = np.zeros((capacity, dims))
        self.reset()

    def reset(self) -> None:
        self._n = 0  # hops stored (≤ capacity)
        self._head = 0  # next write position

    def __len__(self) -> int:
        return self._n

    def push(self, v: np.ndarray) -> None:
        """Append one non-silent hop's vector [D]."""
        self._buf[self._head] = v
        self._head = (self._head + 1) % self._cap
        self._n = min(self._n + 1, self._cap)

    def last(self, n: int) -> np.ndarray:
        """The newest ``min(n, stored)`` vectors [n, D], oldest first."""
        n = min(n, self._n)
        idx = (self._head - n + np.arange(n)) % self._cap
        return self._buf[idx]


class NoveltyMeter:
    """Novelty of one stream's newest hops against the memory before them (module docstring).

    dims: sound vector size D. recent_hops / memory_hops: novelty's two windows [hops].
    baseline_hops: with B > 0, the median of the distances of the B hops before (those whose
    memory was full) is taken off each hop's distance, floored at 0; 0 gives the distance.
    baseline_lag: hops just before a hop that its baseline leaves out (the B before them are
    taken). A hop's window holds the hop before it too, so a change raises two hops' distances:
    with lag 0 the first of them is subtracted from the second (the fresh-start rule uses 1).

    ``push`` takes one hop (the daemon), ``push_many`` a run of hops (``analyze``, a chunk of
    hops at a time): the same code, so the same numbers to the bit, whatever the run lengths.
    """

    def __init__(self, dims: int, recent_hops: int, memory_hops: int,
                 baseline_hops: int = 0, baseline_lag: int = 0) -> None:
        self.dims = dims
        self.recent_hops, self.memory_hops = recent_hops, memory_hops
        self.baseline_hops, self.baseline_lag = baseline_hops, baseline_lag
        # A hop's windows reach back over the hops before it: R + M − 1 of them at most.
        self._keep = recent_hops + memory_hops - 1
        self.reset()

    def reset(self) -> None:
        # The newest ≤ R + M − 1 vectors [P, D], oldest first; the distances of the last
        # baseline_hops + baseline_lag hops (those with enough memory), oldest first.
        self._tail = np.zeros((0, self.dims))
        self._distances: deque[float] = deque(
            maxlen=max(1, self.baseline_hops + self.baseline_lag))

    def push(self, v: np.ndarray) -> float:
        """Add one non-silent hop's sound vector [D]; return the novelty after it."""
        return self.push_many(np.asarray(v)[None])[0]

    def push_many(self, vs: np.ndarray) -> list[float]:
        """Add consecutive non-silent hops' sound vectors [n, D], oldest first; return the
        novelty after each, as n ``push`` calls would."""
        r_hops, full = self.recent_hops, self.recent_hops + self.memory_hops
        p = len(self._tail)
        x = np.concatenate([self._tail, np.asarray(vs, np.float64)])  # [p + n, D]
        n = len(x) - p
        self._tail = x[max(0, len(x) - self._keep):].copy()
        # Hop i is row p + i of x; the history then holds min(p + i + 1, R + M) hops, and
        # novelty needs 2R of them.
        first = max(0, 2 * r_hops - p - 1)
        if first >= n or full < 2 * r_hops:
            return [0.0] * n
        # From hop `whole` on the history holds all R + M hops: their memories at once; the
        # few before (after a reset), each with its own memory length, one by one.
        whole = min(n, max(first, full - p - 1))
        recent = _window_means(x, p + first, n - first, r_hops)
        memory = np.empty_like(recent)
        for i in range(first, whole):
            memory[i - first] = _window_means(x, p + i - r_hops, 1, p + i + 1 - r_hops)[0]
        if whole < n:
            memory[whole - first:] = _window_means(x, p + whole - r_hops, n - whole,
                                                   full - r_hops)
        out = [0.0] * first
        distances = self._distances
        dots = zip(np.vecdot(recent, recent).tolist(), np.vecdot(memory, memory).tolist(),
                   np.vecdot(recent, memory).tolist(), strict=True)
        for rr, mm, rm in dots:
            d = _novelty_of_dots(rr, mm, rm)
            if not self.baseline_hops:
                out.append(d)
                continue
            usual = 0.0
            if len(distances) > self.baseline_lag:
                usual = _median(itertools.islice(distances, len(distances) - self.baseline_lag))
            distances.append(d)
            out.append(max(0.0, d - usual))
        return out


def unit_mean(emb: np.ndarray) -> np.ndarray:
    """The mean of embeddings [N, D] scaled to unit length [D] (the zero vector stays zero)."""
    return unit_rows(np.asarray(emb, np.float64).mean(axis=0))


__all__ = [
    "MATCH_DIMS",
    "MAX_DISTANCE",
    "PITCH_MATCH_WEIGHT",
    "EmbeddingMeta",
    "HopHistory",
    "MatchProjection",
    "NoveltyMeter",
    "Projection",
    "SoundScale",
    "fit_match_projection",
    "fit_projection",
    "fit_sound_scale",
    "hops_for",
    "match_vectors",
    "novelty_of",
    "unit_mean",
    "unit_rows",
    "validate_embedding_meta",
]
