"""Training sequences that start after a pause: pre-rolls of silence, noise or another piece.

A performer's music starts after silence, room noise or another piece, at any phase of the
0.5 s hop grid; a corpus clip starts on the grid with the music. A model trained only on the
latter may settle into a state during a pause (the LSTM runs on) that it leaves only slowly
once the music begins. So a share of the training recordings (``augment.pre_roll_p``) get a
pre-rolled copy: ``L`` seconds of something else, then the clip, with ``L`` drawn from
``augment.pre_roll_s`` — not a multiple of the hop, so the music starts at a random phase of
the grid. What comes before is one of ``augment.pre_roll_kinds``:

- ``silence``: the noise floor of a quiet input (white noise at −90 … −70 dBFS);
- ``noise``: room noise (white, pink or brown at −60 … −35 dBFS), half the time in bursts
  (applause, rustle: a random envelope of 20-200 ms grains);
- ``piece``: the last ``L`` seconds of another training recording (another piece), cut hard
  or after a gap of up to 1 s of near silence.

The copy's audio goes through the frontend like any recording (its mel frames are cached under
``<cache>/preroll``, keyed by the clip, the other clip and the pre-roll drawn), so the pitch-
class memory and the mel frames at the junction are what the engine would compute. Labels:
hops that end before the music has sounded for ``LABEL_AFTER_S`` are masked for every head
(the model may say anything about a pause), embedding hops until ``EMBEDDING_WARMUP_S`` of
music; the timbre head is masked on the whole copy (its per-hop labels are for the clip's own
grid). Each epoch a pre-rolled clip plays its copy or itself with even odds, so the model keeps
seeing both starts. Clips with time-varying emotion labels get no copy.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamtag.audiofile import read_audio
from streamtag.frontend import MelFrontend
from streamtag.model import ArchConfig
from streamtag.train.config import PRE_ROLL_KINDS
from streamtag.train.features import (
    EMBEDDING_WARMUP_S,
    ClipFeatures,
    FeatureCache,
    HeadTarget,
    _save_npy,
    encode_labels,
)

log = logging.getLogger("streamtag.train")

LABEL_AFTER_S = 0.25
"""A hop is labelled once the music has sounded this long before its end [s]."""
PREROLL_CACHE_VERSION = 1


@dataclass(frozen=True)
class PreRoll:
    """One clip's pre-roll.

    Attributes:
        kind: one of ``PRE_ROLL_KINDS``.
        seconds: length before the music [s] (gap included).
        level_db: noise level [dBFS] (silence, noise, and the gap before a piece).
        other: path of the other recording (``piece``), else None.
        gap_s: near silence between the other piece and the clip [s] (``piece``).
        bursts: noise in bursts (``noise``).
        seed: seed of the noise.
    """

    kind: str
    seconds: float
    level_db: float
    other: str | None = None
    gap_s: float = 0.0
    bursts: bool = False
    seed: int = 0

    def key(self) -> str:
        return (f"v{PREROLL_CACHE_VERSION}|{self.kind}|{self.seconds:.6f}|{self.level_db:.3f}|"
                f"{self.other}|{self.gap_s:.6f}|{self.bursts}|{self.seed}")


def draw_pre_roll(rng: np.random.Generator, seconds: Sequence[float], kinds: Sequence[str],
                  others: Sequence[str]) -> PreRoll:
    """A random pre-roll: kind, length in ``seconds`` [low, high], levels and the other clip."""
    kind = str(kinds[int(rng.integers(len(kinds)))])
    if kind == "piece" and not others:
        kind = "noise"
    length = float(rng.uniform(seconds[0], seconds[1]))
    seed = int(rng.integers(2**31))
    if kind == "silence":
        return PreRoll(kind, length, float(rng.uniform(-90.0, -70.0)), seed=seed)
    if kind == "noise":
        return PreRoll(kind, length, float(rng.uniform(-60.0, -35.0)),
                       bursts=bool(rng.random() < 0.5), seed=seed)
    other = str(others[int(rng.integers(len(others)))])
    gap = float(rng.uniform(0.0, 1.0)) if rng.random() < 0.5 else 0.0
    return PreRoll(kind, length, float(rng.uniform(-90.0, -70.0)), other=other,
                   gap_s=min(gap, length), seed=seed)


def _noise(rng: np.random.Generator, n: int, level_db: float, colour: str) -> np.ndarray:
    from streamtag.train.corpus.augment import coloured_noise

    return coloured_noise(rng, n, colour) * np.float32(10.0 ** (level_db / 20.0))


def pre_roll_audio(spec: PreRoll, sample_rate_hz: int) -> np.ndarray:
    """The pre-roll's audio, mono float32 [round(seconds · rate)]."""
    rng = np.random.default_rng(spec.seed)
    n = round(spec.seconds * sample_rate_hz)
    if spec.kind == "silence":
        return _noise(rng, n, spec.level_db, "white")
    if spec.kind == "noise":
        x = _noise(rng, n, spec.level_db, str(rng.choice(["white", "pink", "brown"])))
        if spec.bursts and n:
            env = np.zeros(n, np.float32)
            pos = 0
            while pos < n:
                width = int(rng.uniform(0.02, 0.2) * sample_rate_hz)
                env[pos:pos + width] = np.hanning(width)[: n - pos] * rng.uniform(0.3, 2.0)
                pos += int(width * rng.uniform(0.3, 1.5)) + 1
            x = x * env
        return x.astype(np.float32)
    if spec.kind != "piece" or spec.other is None:
        raise ValueError(f"unknown pre-roll kind {spec.kind!r}")
    other, rate = read_audio(Path(spec.other))
    mono = other if other.ndim == 1 else other.mean(axis=1)
    if rate != sample_rate_hz:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(rate), int(sample_rate_hz))
        mono = resample_poly(mono, sample_rate_hz // g, int(rate) // g)
    gap = round(spec.gap_s * sample_rate_hz)
    tail = mono[-(n - gap):] if n - gap > 0 else mono[:0]
    tail = np.pad(tail, (n - gap - tail.shape[0], 0))
    quiet = _noise(rng, gap, spec.level_db, "white")
    return np.concatenate([tail.astype(np.float32), quiet]).astype(np.float32)


def pre_rolled_mel(cache: FeatureCache, clip_path: Path, spec: PreRoll) -> np.ndarray:
    """Mel frames [N, n_features] of the pre-roll followed by the clip, cached."""
    st = clip_path.stat()
    key = f"{clip_path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{spec.key()}"
    target = cache.dir / "preroll" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npy"
    if target.is_file():
        try:
            return np.load(target, allow_pickle=False)
        except (OSError, ValueError) as e:
            log.warning("feature cache: recomputing damaged %s (%s)", target, e)
    audio, rate = read_audio(clip_path)
    mono = audio if audio.ndim == 1 else audio.mean(axis=1)
    signal = np.concatenate([pre_roll_audio(spec, rate), mono.astype(np.float32)])
    mel = np.ascontiguousarray(
        MelFrontend(cache.frontend, rate, fast_lane=False).process_offline(signal).features,
        dtype=np.float32)
    _save_npy(target, mel)
    return mel


def pre_rolled_features(feats: ClipFeatures, spec: PreRoll, mel: np.ndarray, arch: ArchConfig,
                        silence: np.ndarray, heads: Sequence[HeadTarget], hop_s: float
                        ) -> ClipFeatures:
    """The clip's features after its pre-roll, with the pre-roll's hops masked (module doc)."""
    from streamtag.engine import hop_windows

    windows = hop_windows(mel, arch, silence)
    out = ClipFeatures(feats.clip, mel, windows)
    n = out.n_hops
    ends = (np.arange(n) + 1) * hop_s
    music = ends - spec.seconds  # how long the music has sounded at each hop's end [s]
    for h in heads:
        if h.target == "timbre":
            target, mask = encode_labels(feats.clip, h, n, hop_s)
            mask = np.zeros_like(mask)
        else:
            target, mask = encode_labels(feats.clip, h, n, hop_s)
            need = EMBEDDING_WARMUP_S if h.spec.kind == "embedding" else LABEL_AFTER_S
            keep = music >= need - 1e-9
            mask = mask * (keep[:, None] if mask.ndim == 2 else keep).astype(mask.dtype)
        out.targets[h.name], out.masks[h.name] = target, mask
    return out


def make_variants(
    train_set: Sequence[ClipFeatures], cache: FeatureCache, arch: ArchConfig,
    silence: np.ndarray, heads: Sequence[HeadTarget], hop_s: float, *, share: float,
    seconds: Sequence[float], kinds: Sequence[str], seed: int, rank: int = 0, world: int = 1,
    barrier: Callable[[], None] = lambda: None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> dict[int, ClipFeatures]:
    """Pre-rolled copies of a ``share`` of the training recordings: {index: features}.

    The choice of clips and pre-rolls depends on ``seed`` and the clip paths only, so every
    process makes the same; each process computes its part of the missing frames into the
    cache, waits at ``barrier``, then reads them all.
    """
    if share <= 0 or not train_set:
        return {}
    rng = np.random.default_rng([seed, 0x9E37])
    paths = [str(f.clip.path) for f in train_set]
    groups = [f"{f.clip.dataset}\n{f.clip.group}" for f in train_set]
    chosen = [i for i in range(len(train_set))
              if train_set[i].clip.dynamic is None and rng.random() < share]
    specs: dict[int, PreRoll] = {}
    for i in chosen:
        clip_rng = np.random.default_rng([seed, int(hashlib.sha256(paths[i].encode())
                                                    .hexdigest()[:8], 16)])
        others = [paths[j] for j in clip_rng.choice(len(paths), size=min(8, len(paths)),
                                                     replace=False) if groups[j] != groups[i]]
        specs[i] = draw_pre_roll(clip_rng, seconds, kinds, others)
    mine = [i for k, i in enumerate(chosen) if k % world == rank]
    for i in progress(mine) if progress else mine:
        pre_rolled_mel(cache, Path(paths[i]), specs[i])
    barrier()
    return {i: pre_rolled_features(train_set[i], specs[i],
                                   pre_rolled_mel(cache, Path(paths[i]), specs[i]),
                                   arch, silence, heads, hop_s)
            for i in chosen}


def epoch_recordings(train_set: Sequence[ClipFeatures], variants: dict[int, ClipFeatures],
                     seed: int, epoch: int) -> list[ClipFeatures]:
    """This epoch's recordings: each pre-rolled clip plays its copy or itself, even odds
    (the same on every process)."""
    if not variants:
        return list(train_set)
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    coin = rng.random(len(train_set))
    return [variants[i] if i in variants and coin[i] < 0.5 else f
            for i, f in enumerate(train_set)]


__all__ = ["LABEL_AFTER_S", "PRE_ROLL_KINDS", "PreRoll", "draw_pre_roll", "epoch_recordings",
           "make_variants", "pre_roll_audio", "pre_rolled_features", "pre_rolled_mel"]
