"""Pre-roll augmentation: recordings that start after room noise or another piece, at any phase
of the hop grid (issue 19, "entry after a pause").

Live, a performer's music starts after silence, noise, applause or another piece; a model
trained only from fresh starts carries what it made of that sound into the music for seconds
(measured with model 2388435731b9: after 30 s of another piece the top instrument agreed with a
fresh start on 0.45 of hops). The engine holds the LSTM state fresh through *silent* hops
(``streamtag.engine.run_hops``), so silence needs no training; sound that is not silent does.

``with_preroll`` puts ``L`` frames of such sound in front of a recording, in the frame domain
(the trainer's cache holds frames, not audio): the sequence keeps its hop count, the music
moves ``L`` frames later (``L`` need not be a multiple of the hop: a random hop phase) and its
last ``L`` frames are cut. Hops that end before a whole hop of music has played are unlabelled;
every later hop takes the label of the music hop that ended last before it (at most a fraction
of a hop stale; clip-level labels are the same anyway). The pitch-class rows are re-threaded
across the splice (``splice_frames``): the frontend's leaky pitch-class memory carries the
pre-roll's key into the music, as it does live. Mel rows have no memory; only the one or two
STFT frames that would straddle the splice differ from framing the spliced audio.

Noise comes from ``noise_bank``: frames of white, pink, brown and applause-like noise at random
levels above the silence gate, made once through the frontend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamtag.engine import hop_windows
from streamtag.frontend import FrontendConfig, MelFrontend
from streamtag.model import ArchConfig
from streamtag.train.features import ClipFeatures

NOISE_KINDS: tuple[str, ...] = ("white", "pink", "brown", "applause")


def pitch_decay(frontend: FrontendConfig) -> float:
    """Per-frame factor of the frontend's pitch-class memory (0: no memory)."""
    if frontend.chroma_memory_s <= 0:
        return 0.0
    return float(np.exp(-frontend.hop_length / (frontend.sample_rate_hz
                                                * frontend.chroma_memory_s)))


def splice_frames(pre: np.ndarray, music: np.ndarray, frontend: FrontendConfig) -> np.ndarray:
    """Frames [L, F] of a pre-roll, then frames [N, F] of a recording framed from a fresh start
    → [L + N, F] as the frontend would frame the two played one after the other.

    The recording's pitch-class rows (the last ``n_chroma`` columns, log(12 · y) of the leaky
    average y of each frame's pitch-class shares, started from an even spread) are re-threaded:
    the average is linear in its start, so starting from the pre-roll's last y instead adds
    aᵏ⁺¹ · (y_pre − 1/12) to frame k's y (a: ``pitch_decay``).
    """
    out = np.concatenate([pre, music]).astype(np.float32)
    c = frontend.n_chroma
    a = pitch_decay(frontend)
    if not c or a == 0.0 or not len(pre) or not len(music):
        return out
    y_pre = np.exp(pre[-1, -c:].astype(np.float64)) / 12.0
    y = np.exp(music[:, -c:].astype(np.float64)) / 12.0
    y += a ** np.arange(1, len(music) + 1)[:, None] * (y_pre - 1.0 / 12.0)[None, :]
    out[len(pre):, -c:] = np.log(12.0 * y).astype(np.float32)
    return out


def with_preroll(feats: ClipFeatures, pre: np.ndarray, arch: ArchConfig, silence: np.ndarray,
                 frontend: FrontendConfig) -> ClipFeatures:
    """``feats`` with ``pre`` [L, F] (1 <= L < its frames - hop) played first (module docstring).

    Returns new ClipFeatures of the same hop count: windows of the spliced frames
    (``hop_windows``, as the engine serves them), targets and masks moved with the music.
    """
    hop = arch.hop_frames
    n_hops = feats.n_hops
    n_frames = n_hops * hop
    length = len(pre)
    if not 1 <= length <= n_frames - hop:
        raise ValueError(f"pre-roll of {length} frames in a recording of {n_frames}: expected "
                         f"1..{n_frames - hop}")
    mel = splice_frames(pre, feats.mel[: n_frames - length], frontend)
    windows = hop_windows(mel, arch, silence)
    # Hop k ends at frame (k + 1)·hop, i.e. (k + 1)·hop − L frames into the music: it takes the
    # label of the music's last complete hop, j; none yet (j < 0) is unlabelled.
    j = ((np.arange(n_hops) + 1) * hop - length) // hop - 1
    labelled = j >= 0
    src = np.maximum(j, 0)
    out = ClipFeatures(feats.clip, mel, windows)
    for name, target in feats.targets.items():
        out.targets[name] = target[src].copy()
        mask = feats.masks[name][src].copy()
        mask[~labelled] = 0
        out.masks[name] = mask
    return out


@dataclass(frozen=True)
class NoiseBank:
    """Frames [N, F] of noise recordings, each at one level [dBFS] (``noise_bank``)."""

    frames: tuple[np.ndarray, ...]
    kinds: tuple[str, ...]
    levels_db: tuple[float, ...]


def noise_signal(kind: str, n: int, rng: np.random.Generator,
                 sample_rate_hz: int) -> np.ndarray:
    """Unit-RMS noise [n] float64: white, pink (1/f power), brown (1/f²) or applause (white
    noise in many overlapping decaying claps, 50 ms, ~200 per second)."""
    w = rng.standard_normal(n)
    if kind == "white":
        x = w
    elif kind in ("pink", "brown"):
        spec = np.fft.rfft(w)
        f = np.arange(spec.size, dtype=np.float64)
        spec[0] = 0.0
        spec[1:] /= f[1:] ** (0.5 if kind == "pink" else 1.0)
        x = np.fft.irfft(spec, n)
    elif kind == "applause":
        onsets = (rng.random(n) < 200.0 / sample_rate_hz).astype(np.float64)
        clap = np.exp(-np.arange(int(0.05 * sample_rate_hz)) / (0.01 * sample_rate_hz))
        x = w * (0.2 + np.convolve(onsets, clap)[:n])
    else:
        raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")
    return x / (x.std() + 1e-12)


def noise_bank(frontend: FrontendConfig, seconds: float = 20.0, per_kind: int = 2,
               levels_db: tuple[float, float] = (-55.0, -25.0), seed: int = 0) -> NoiseBank:
    """Frames of ``per_kind`` recordings of each of ``NOISE_KINDS``, ``seconds`` long, each at a
    level drawn uniformly from ``levels_db`` [dBFS RMS] (above the default −60 dBFS silence
    gate: silence needs no training, the engine restarts the state there)."""
    rng = np.random.default_rng([seed, 19])
    fe = MelFrontend(frontend, fast_lane=False)
    n = int(seconds * frontend.sample_rate_hz)
    frames, kinds, levels = [], [], []
    for kind in NOISE_KINDS:
        for _ in range(per_kind):
            level = float(rng.uniform(*levels_db))
            x = noise_signal(kind, n, rng, frontend.sample_rate_hz) * 10 ** (level / 20)
            frames.append(fe.process_offline(x.astype(np.float32)).mel)
            kinds.append(kind)
            levels.append(level)
    return NoiseBank(tuple(frames), tuple(kinds), tuple(levels))


def draw_preroll(rng: np.random.Generator, feats: ClipFeatures, others: list[ClipFeatures],
                 bank: NoiseBank, max_frames: int, noise_share: float,
                 hop_frames: int) -> np.ndarray:
    """A random pre-roll [L, F] for ``feats``: L uniform in 1..min(max_frames, its frames −
    hop); noise from ``bank`` with probability ``noise_share``, else a stretch of another
    recording in ``others`` (one of a different piece when there is one)."""
    length = int(rng.integers(1, min(max_frames, feats.n_hops * hop_frames - hop_frames) + 1))
    if rng.random() < noise_share or not others:
        source = bank.frames[int(rng.integers(len(bank.frames)))]
    else:
        piece = (feats.clip.dataset, feats.clip.group)
        other = [o for o in others if (o.clip.dataset, o.clip.group) != piece] or others
        source = other[int(rng.integers(len(other)))].mel
    if len(source) < length:
        source = np.concatenate([source] * (length // len(source) + 1))
    start = int(rng.integers(0, len(source) - length + 1))
    return source[start:start + length]
