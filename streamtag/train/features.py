"""From training sources to what the model sees: clips, cached mel frames, windows, per-hop labels.

Sources: the built-in corpus (``OUT/manifest.jsonl`` written by ``streamtag.train.corpus``) and
dataset loaders (``streamtag.train.datasets.load_dataset``) both become ``Clip`` objects with
per-head optional labels.

Features: audio → ``MelFrontend(checkpoint frontend config, file rate).process_offline`` → mel
frames [N, n_features], cached on disk as ``.npy`` (no pickle) under a folder named by the frontend
config's hash, one file per (resolved path, mtime, size). Windows are ``engine.hop_windows`` of
those frames — the exact windows the engine serves — so the cache stores the frames the windows
are views of (half the bytes of the windows themselves for the default preset's 50 % overlap)
and epochs never recompute either.

Per-hop labels: a static label is repeated on every hop; a dynamic emotion label
``(time [s], v, a)`` goes to the hop whose end time ``(k + 1) * hop_s`` is nearest, if within
half a hop; hops of a clip with dynamic labels that no label reaches are masked (no loss), so a
recording's unlabelled start still warms up the LSTM state. Masks are per head and per hop
(per output too, for regression heads): a clip labelled for one head trains only that head.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from streamtag.atomic import atomic_path
from streamtag.audiofile import read_audio
from streamtag.engine import hop_windows
from streamtag.frontend import FrontendConfig, MelFrontend
from streamtag.model import ArchConfig, HeadSpec
from streamtag.record import TIMBRE_NAMES
from streamtag.train.datasets import Clip, assign_splits_by_group, load_dataset

log = logging.getLogger("streamtag.train")

CACHE_VERSION = 1
TIMBRE_CACHE_VERSION = 3  # bump when the descriptors change (3: hardness of onsets)
CORPUS_DATASET = "corpus"
DESCRIPTORS_SOURCE = "streamtag.train.descriptors"
#: Hops ending this early in a recording [s] carry no embedding identity (too little heard).
EMBEDDING_WARMUP_S = 1.0
#: Audio each per-hop timbre label describes: the model's 1 s window ending at the hop [s].
TIMBRE_WINDOW_S = 1.0
#: Sound before each per-hop timbre window that hardness looks back into [s]: an onset is a rise
#: over the 50 ms before it, so a window that cuts into a held note does not start with one.
TIMBRE_LEAD_S = 0.1


# -- sources --------------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def corpus_clips(corpus_dir: str | Path) -> tuple[list[Clip], list[str]]:
    """Clips of a built-in corpus, and the lines that could not become clips (with why).

    A manifest line becomes a ``Clip`` with dataset ``corpus``, the line's split and group, and
    the labels it carries (instrument, valence/arousal, timbre) and the tags its recipe
    determines (``corpus.tags``); the quadrant and cue details are derived data, not labels.
    """
    from streamtag.train.corpus.manifest import read_manifest  # the corpus package owns its format
    from streamtag.train.corpus.tags import corpus_tags

    root = Path(corpus_dir).expanduser()
    clips, skipped = [], []
    for row in read_manifest(root / "manifest.jsonl"):
        labels = row.get("labels") or {}
        try:
            # A line without a rendering recipe (a hand-made manifest) carries no tags.
            tags, known = corpus_tags(row) if row.get("render") else (None, None)
            clips.append(Clip(
                path=root / row["path"], dataset=CORPUS_DATASET, split=row["split"],
                group=row["group"], instrument=labels.get("instrument"),
                valence=labels.get("valence"), arousal=labels.get("arousal"),
                timbre=labels.get("timbre"), tags=tags, tags_known=known,
                timbre_per_hop=(labels.get("timbre") is not None
                                and row.get("timbre_source") == DESCRIPTORS_SOURCE),
                texture=labels.get("texture") or _texture_from_tags(tags, known),
            ))
        except (ValueError, TypeError) as e:
            skipped.append(f"{row.get('id', row.get('path'))}: {e}")
    return clips, skipped


def _texture_from_tags(tags: Sequence[str] | None, known: Sequence[str] | None) -> str | None:
    """A corpus line without a ``texture`` label (built before it existed): its recipe's
    ``accompanied`` tag says the same."""
    if not known or "accompanied" not in known:
        return None
    return "accompanied" if tags and "accompanied" in tags else "solo"


def source_clips(
    corpus: str | None, datasets: Sequence[object], validation_fraction: float,
    extra_corpora: Sequence[str] = (),
) -> tuple[list[Clip], dict[str, str]]:
    """Every clip of the configured sources, and a fingerprint of each source.

    corpus, extra_corpora: built-in corpus folders; their clips train together, each keeping
    its own splits (an extra corpus may hold training clips only). Groups of every corpus after
    the first are prefixed with ``+K/`` (K = its place), so pieces of different corpora never
    pass for one piece (batches and the piece embedding key on groups) even where two builds
    named them alike.
    datasets: ``DatasetSource``-like objects (kind, root, csv_name). A source with no
    validation clip gets whole groups moved there (``validation_fraction``; the corpora count
    as one source), so pieces never straddle splits. Fingerprints: each corpus manifest's
    SHA-256 (``corpus_manifest_sha256``, then ``corpus_manifest_sha256+K``), a dataset's label
    digest.
    """
    clips: list[Clip] = []
    hashes: dict[str, str] = {}
    corpora = ([corpus] if corpus is not None else []) + list(extra_corpora)
    from_corpora: list[Clip] = []
    for k, folder in enumerate(corpora):
        got, skipped = corpus_clips(folder)
        if skipped:
            log.warning("corpus %s: %d manifest line(s) skipped, e.g. %s", folder,
                        len(skipped), skipped[0])
        if k:
            got = [replace(c, group=f"+{k}/{c.group}") for c in got]
        from_corpora += got
        hashes["corpus_manifest_sha256" + (f"+{k}" if k else "")] = file_sha256(
            Path(folder).expanduser() / "manifest.jsonl")
    if from_corpora:
        clips += _ensure_validation(from_corpora, validation_fraction)
    for ds in datasets:
        options = {"csv_name": ds.csv_name} if getattr(ds, "csv_name", None) else {}
        got, report = load_dataset(ds.kind, Path(ds.root).expanduser(), **options)
        if not report.ok:
            log.warning("%s", report.summary(limit=5))
        clips += _ensure_validation(got, validation_fraction)
        hashes[f"{ds.kind}:{ds.root}"] = clips_digest(got)
    return clips, hashes


def _ensure_validation(clips: list[Clip], fraction: float) -> list[Clip]:
    if fraction > 0 and not any(c.split == "validation" for c in clips):
        return assign_splits_by_group(clips, fraction)
    return clips


def clips_digest(clips: Iterable[Clip]) -> str:
    """SHA-256 over each clip's path, split, group and labels (data provenance)."""
    h = hashlib.sha256()
    for c in clips:
        labels = {k: (dict(v) if k == "timbre" else v) for k, v in c.labels.items()}
        h.update(json.dumps([str(c.path), c.split, c.group, labels], sort_keys=True,
                            default=list).encode())
    return h.hexdigest()


# -- per-hop labels -------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeadTarget:
    """How one head reads its labels off a clip.

    spec: the model head. target: which label trains it (emotion, instrument, timbre, tags).
    """

    spec: HeadSpec
    target: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def per_output_mask(self) -> bool:
        return self.spec.kind == "regression"


def identity_class(text: str) -> int:
    """A stable int64 class id for an identity (a piece, an instrument name) [0, 2**62)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 2


def encode_labels(
    clip: Clip, head: HeadTarget, n_hops: int, hop_s: float,
    hop_timbre: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(target, mask) of one head for every hop of a clip.

    regression: target [N, K] float32, mask [N, K]. multiclass: target [N] int64 class index,
    mask [N]. embedding: target [N] int64 identity (``identity_class`` of the piece, i.e. the
    clip's dataset and group, or of the instrument name), mask [N], 0 for the hops of the first
    ``EMBEDDING_WARMUP_S``. multilabel: target [N, K]
    multi-hot, mask [N, K] (a tag the clip's ``tags_known`` leaves out is masked).
    hop_timbre: per-hop timbre labels [N, 7] in ``TIMBRE_NAMES`` order, used instead of the
    clip's static ones when given (``FeatureCache.hop_timbre``).
    Masked hops carry 0 in the target, so no NaN or bad index reaches a loss.
    """
    spec, k = head.spec, head.spec.size
    if spec.kind == "regression":
        target = np.zeros((n_hops, k), np.float32)
        mask = np.zeros((n_hops, k), np.float32)
        if head.target == "timbre" and clip.timbre is not None:
            for j, name in enumerate(spec.labels):
                if hop_timbre is not None and name in TIMBRE_NAMES:
                    target[:, j] = hop_timbre[:n_hops, TIMBRE_NAMES.index(name)]
                else:
                    target[:, j] = clip.timbre[name]
                mask[:, j] = 1.0
        elif head.target == "emotion":
            values = {"valence": clip.valence, "arousal": clip.arousal}
            if clip.dynamic is not None:
                for t, v, a in clip.dynamic:
                    hop = round(t / hop_s) - 1
                    if 0 <= hop < n_hops and abs((hop + 1) * hop_s - t) <= hop_s / 2:
                        for j, name in enumerate(spec.labels):
                            target[hop, j] = v if name == "valence" else a
                            mask[hop, j] = 1.0
            else:
                for j, name in enumerate(spec.labels):
                    if values.get(name) is not None:
                        target[:, j] = values[name]
                        mask[:, j] = 1.0
        return target, mask
    if spec.kind == "multiclass":
        target = np.zeros(n_hops, np.int64)
        mask = np.zeros(n_hops, np.float32)
        if head.target == "instrument" and clip.instrument in spec.labels:
            target[:] = spec.labels.index(clip.instrument)
            mask[:] = 1.0
        return target, mask
    if spec.kind == "embedding":
        target = np.zeros(n_hops, np.int64)
        mask = np.zeros(n_hops, np.float32)
        # The first second names nothing yet: the model has barely heard the recording.
        heard = (np.arange(n_hops) + 1) * hop_s > EMBEDDING_WARMUP_S + 1e-9
        if head.target == "piece":
            target[:] = identity_class(f"{clip.dataset}\n{clip.group}")
            mask[heard] = 1.0
        elif head.target == "instrument" and clip.instrument is not None:
            target[:] = identity_class(clip.instrument)
            mask[heard] = 1.0
        return target, mask
    target = np.zeros((n_hops, k), np.float32)
    mask = np.zeros((n_hops, k), np.float32)
    if head.target == "tags" and clip.tags is not None:
        known = spec.labels if clip.tags_known is None else clip.tags_known
        for j, tag in enumerate(spec.labels):
            if tag in known:
                mask[:, j] = 1.0
                target[:, j] = float(tag in clip.tags)
    return target, mask


def hop_timbre(audio: np.ndarray, sample_rate_hz: int, n_hops: int, hop_s: float,
               fallback: Mapping[str, float]) -> np.ndarray:
    """Timbre descriptors [n_hops, 7] (``TIMBRE_NAMES`` order) of each hop's window.

    Hop k describes the ``TIMBRE_WINDOW_S`` of audio ending at (k + 1)·hop_s (less at the start),
    the audio the model's window at that hop covers; hardness is that of the window's strongest
    onset, found with the ``TIMBRE_LEAD_S`` before the window in view (``describe``'s
    ``lead``; before the recording counts as silence). A window the descriptors cannot
    describe (silence, too short) gets the clip's ``fallback`` values.
    """
    from streamtag.train.descriptors import describe

    mono = audio if audio.ndim == 1 else audio.mean(axis=1)
    lead = round(TIMBRE_LEAD_S * sample_rate_hz)
    padded = np.concatenate([np.zeros(lead, mono.dtype), mono])
    out = np.empty((n_hops, len(TIMBRE_NAMES)), np.float32)
    for k in range(n_hops):
        end = round((k + 1) * hop_s * sample_rate_hz)
        start = max(0, end - round(TIMBRE_WINDOW_S * sample_rate_hz))
        try:
            # padded[start + lead] is mono[start]: the window with its lead in front
            d = describe(padded[start : end + lead], sample_rate_hz, lead=lead)
            row = [float(d[name]) for name in TIMBRE_NAMES]
            if not all(np.isfinite(row)):
                raise ValueError("non-finite descriptor")
        except Exception:  # a window the descriptors reject keeps the clip's label
            row = [float(fallback[name]) for name in TIMBRE_NAMES]
        out[k] = np.clip(row, 0.0, 1.0)
    return out


# -- the feature cache ----------------------------------------------------------------------------

def frontend_digest(config: FrontendConfig) -> str:
    text = json.dumps({"cache": CACHE_VERSION, **asdict(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamtag" / "features"


class FeatureCache:
    """Mel frames of audio files on disk: ``root/<frontend hash>/<file key>.npy``.

    The file key hashes the resolved path, modification time [ns] and size, so an edited file
    is recomputed and a moved one is not confused with another. Writes are atomic (temporary
    file, then rename), so concurrent ranks and interrupted runs never leave half a file.
    """

    def __init__(self, root: str | Path | None, frontend: FrontendConfig) -> None:
        self.frontend = frontend
        self.dir = Path(root).expanduser() if root else default_cache_dir()
        self.dir = self.dir / frontend_digest(frontend)
        self._frontends: dict[int, MelFrontend] = {}

    def path_for(self, audio: Path) -> Path:
        st = audio.stat()
        key = f"{audio.resolve()}|{st.st_mtime_ns}|{st.st_size}"
        return self.dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npy"

    def has(self, audio: Path) -> bool:
        return self.path_for(audio).is_file()

    def compute(self, audio: Path) -> np.ndarray:
        """Frames [N, n_features] float32 of an audio file (frontend run, not cached)."""
        signal, rate = read_audio(audio)
        if rate not in self._frontends:
            self._frontends[rate] = MelFrontend(self.frontend, rate, fast_lane=False)
        return np.ascontiguousarray(self._frontends[rate].process_offline(signal).features,
                                    dtype=np.float32)

    def mel(self, audio: Path) -> np.ndarray:
        """Frames [N, n_features] of ``audio``, from the cache or computed and stored."""
        target = self.path_for(audio)
        if target.is_file():
            try:
                return np.load(target, allow_pickle=False)
            except (OSError, ValueError) as e:  # a damaged entry is recomputed, not fatal
                log.warning("feature cache: recomputing damaged %s (%s)", target, e)
        mel = self.compute(audio)
        _save_npy(target, mel)
        return mel

    def _timbre_path(self, audio: Path, hop_s: float) -> Path:
        key = self.path_for(audio)
        return key.parent / f"timbre-v{TIMBRE_CACHE_VERSION}-{hop_s:g}" / key.name

    def has_hop_timbre(self, audio: Path, hop_s: float) -> bool:
        return self._timbre_path(audio, hop_s).is_file()

    def hop_timbre(self, audio: Path, n_hops: int, hop_s: float,
                   fallback: Mapping[str, float]) -> np.ndarray:
        """Per-hop timbre labels [n_hops, 7] of ``audio`` (``hop_timbre``), cached."""
        target = self._timbre_path(audio, hop_s)
        if target.is_file():
            try:
                got = np.load(target, allow_pickle=False)
                if got.shape == (n_hops, len(TIMBRE_NAMES)):
                    return got
            except (OSError, ValueError) as e:
                log.warning("feature cache: recomputing damaged %s (%s)", target, e)
        signal, rate = read_audio(audio)
        out = hop_timbre(signal, rate, n_hops, hop_s, fallback)
        _save_npy(target, out)
        return out


def _save_npy(target: Path, array: np.ndarray) -> None:
    """Atomic write (temporary file, then rename): concurrent ranks never see half a file."""
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


# -- clips with features --------------------------------------------------------------------------

@dataclass
class ClipFeatures:
    """One recording ready for training or validation.

    windows: [S, n_features, window_frames] float32, a read-only view of ``mel`` made by
    ``engine.hop_windows`` (what the engine would serve at each hop).
    targets / masks: per head, as ``encode_labels`` makes them.
    """

    clip: Clip
    mel: np.ndarray
    windows: np.ndarray
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_hops(self) -> int:
        return int(self.windows.shape[0])


def silence_frame(frontend: FrontendConfig) -> np.ndarray:
    """The frame the engine pads a recording's first window with [n_features]."""
    return MelFrontend(frontend, fast_lane=False).silence_frame()


def make_features(
    clip: Clip, mel: np.ndarray, arch: ArchConfig, silence: np.ndarray,
    heads: Sequence[HeadTarget], hop_s: float, timbre: np.ndarray | None = None,
) -> ClipFeatures:
    """A clip's windows and per-head labels; ``timbre``: per-hop timbre labels [S, 7] or None."""
    windows = hop_windows(mel, arch, silence)  # [S, M, W], exactly as the engine serves
    feats = ClipFeatures(clip, mel, windows)
    for h in heads:
        feats.targets[h.name], feats.masks[h.name] = encode_labels(
            clip, h, feats.n_hops, hop_s, timbre)
    return feats


def labelled(feats: ClipFeatures) -> bool:
    """True if any head has at least one labelled hop in this clip."""
    return any(m.any() for m in feats.masks.values())


def load_features(
    clips: Sequence[Clip], cache: FeatureCache, arch: ArchConfig,
    heads: Sequence[HeadTarget], hop_s: float,
    progress: Callable[[Iterable[Clip]], Iterable[Clip]] | None = None,
    per_hop_timbre: bool = True,
) -> tuple[list[ClipFeatures], list[str]]:
    """Features of every clip (computing and caching what is missing), and what was skipped.

    per_hop_timbre: clips whose timbre label the descriptors computed (``timbre_per_hop``)
    get one label per hop, the descriptors of that hop's window, instead of one per clip.

    Clips shorter than one hop, unreadable, or with no label any head uses are skipped, each
    named in the second return value.
    """
    silence = silence_frame(cache.frontend)
    out, skipped = [], []
    for clip in progress(clips) if progress else clips:
        try:
            mel = cache.mel(Path(clip.path))
        except Exception as e:  # an unreadable file costs that clip, not the run
            skipped.append(f"{clip.path}: {e}")
            continue
        timbre = None
        n_hops = mel.shape[0] // arch.hop_frames
        if per_hop_timbre and clip.timbre_per_hop and n_hops and any(
                h.target == "timbre" for h in heads):
            try:
                timbre = cache.hop_timbre(Path(clip.path), n_hops, hop_s, clip.timbre)
            except Exception as e:  # fall back to the clip's label, and say so
                log.warning("per-hop timbre of %s failed (%s); using the clip label",
                            clip.path, e)
        feats = make_features(clip, mel, arch, silence, heads, hop_s, timbre)
        if feats.n_hops == 0:
            skipped.append(f"{clip.path}: shorter than one hop ({hop_s:g} s)")
        elif not labelled(feats):
            skipped.append(f"{clip.path}: no label for any head of this model")
        else:
            out.append(feats)
    return out, skipped


def limit_clips(clips: list[Clip], max_clips: int | None, seed: int) -> list[Clip]:
    """At most ``max_clips`` per split, chosen deterministically (order kept)."""
    if max_clips is None:
        return clips
    rng = np.random.default_rng(seed)
    out: list[Clip] = []
    for split in dict.fromkeys(c.split for c in clips):
        members = [c for c in clips if c.split == split]
        if len(members) > max_clips:
            keep = set(rng.choice(len(members), max_clips, replace=False).tolist())
            members = [c for i, c in enumerate(members) if i in keep]
        out += members
    return out



__all__ = [
    "CORPUS_DATASET",
    "ClipFeatures",
    "FeatureCache",
    "HeadTarget",
    "clips_digest",
    "corpus_clips",
    "encode_labels",
    "file_sha256",
    "hop_timbre",
    "identity_class",
    "limit_clips",
    "load_features",
    "make_features",
    "silence_frame",
    "source_clips",
]
