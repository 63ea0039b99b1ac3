"""Entry after a pause: does the engine estimate music that starts after a pre-roll as a fresh
start on that music would (issue 19, item 1)?

For each clip and each pre-roll (``kind`` for ``seconds``): the clip is played after the
pre-roll, starting ``phase_hops`` of a hop after a hop boundary, and each hop from
``settle_s`` into the clip on is compared with the hop of ``analyze`` of the clip alone whose end
is nearest (so hops are compared ``phase_hops`` · hop_s apart). Reported per case: the share of
hops whose top instrument agrees (mean over clips, and the worst clip) and the median
|Δvalence| over all compared hops. Target: agreement ≥ 0.95 and median |Δvalence| ≤ 0.1.

Pre-rolls: ``silence`` (digital zeros), ``noise`` (pink, ``NOISE_DB`` RMS: a room, above the
silence gate), ``applause`` (claps at random times, ``APPLAUSE_DB`` RMS; ``applause``),
``other`` (another clip of the set, looped), ``other, silence`` (another clip once, then
silence). The "live" run is ``Engine.analyze`` of the whole stream, equal to
``process`` fed it in any blocks (the cornerstone test).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from streamtag.audiofile import read_audio
from streamtag.checkpoint import Checkpoint
from streamtag.engine import Engine
from streamtag.train.corpus.augment import coloured_noise
from streamtag.train.datasets.base import Clip

ENTRY_KINDS: tuple[str, ...] = ("silence", "noise", "applause", "other", "other, silence")
ENTRY_SECONDS: tuple[float, ...] = (1.0, 4.0, 30.0)
NOISE_DB = -45.0  # room noise [dBFS RMS]: above the default silence gate (-60), below music
APPLAUSE_DB = -30.0  # applause [dBFS RMS]: as loud as quiet music
CLAPS_PER_S = 40.0  # a small audience


def applause(seconds: float, rate_hz: int, level_db: float = APPLAUSE_DB,
             seed: int = 0) -> np.ndarray:
    """Applause [n] float32 at ``level_db`` dBFS RMS: claps at random times (``CLAPS_PER_S``
    on average), each a burst of white noise with a random colour (one first difference or
    none: a cupped or a flat clap) decaying in 5-15 ms, at a random level over 12 dB."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate_hz)
    x = np.zeros(n + rate_hz // 10)
    for start in rng.integers(0, max(1, n), rng.poisson(CLAPS_PER_S * seconds)):
        length = rate_hz // 20
        burst = rng.standard_normal(length)
        if rng.random() < 0.5:
            burst = np.diff(burst, prepend=0.0)
        decay = np.exp(-np.arange(length) / (rate_hz * rng.uniform(0.005, 0.015)))
        x[start:start + length] += burst * decay * 10 ** (rng.uniform(-12.0, 0.0) / 20)
    x = x[:n]
    rms = float(np.sqrt(np.mean(x**2))) if n else 0.0
    return (x / rms * 10 ** (level_db / 20) if rms > 0 else x).astype(np.float32)


def preroll_audio(kind: str, seconds: float, rate_hz: int, other: np.ndarray | None,
                  seed: int = 0) -> np.ndarray:
    """A pre-roll [n] float32 of ``kind`` (module docstring); ``other``: another piece [m]."""
    n = round(seconds * rate_hz)
    if kind == "silence":
        return np.zeros(n, np.float32)
    if kind == "noise":
        x = coloured_noise(np.random.default_rng(seed), n, "pink")
        return (x * 10 ** (NOISE_DB / 20)).astype(np.float32)
    if kind == "applause":
        return applause(seconds, rate_hz, seed=seed)
    if other is None or not other.size:
        raise ValueError(f"pre-roll {kind!r} needs another piece")
    if kind == "other":
        return np.tile(other, n // other.size + 1)[:n].astype(np.float32)
    if kind == "other, silence":
        return np.concatenate([other, np.zeros(n, np.float32)]).astype(np.float32)
    raise ValueError(f"unknown pre-roll {kind!r}; known: {', '.join(ENTRY_KINDS)}")


def compare_entry(live: Sequence[dict], fresh: Sequence[dict], start_s: float,
                  settle_s: float = 1.0) -> tuple[list[bool], list[float]]:
    """Per live hop from ``settle_s`` into the music (which starts at ``start_s`` [s] of the
    live stream): does its top instrument equal the fresh run's at the nearest hop, and
    |Δvalence| there. Either list is empty if the records lack that head."""
    if len(fresh) < 2:
        return [], []
    hop_s = fresh[1]["t"] - fresh[0]["t"]
    same: list[bool] = []
    dv: list[float] = []
    for r in live:
        t = r["t"] - start_s  # the music's time at the end of this live hop
        j = round(t / hop_s) - 1
        if t <= settle_s or j >= len(fresh):
            continue
        if "instrument" in r:
            same.append(r["instrument"]["top"] == fresh[j]["instrument"]["top"])
        if "valence" in r.get("emotion", {}):
            dv.append(abs(r["emotion"]["valence"] - fresh[j]["emotion"]["valence"]))
    return same, dv


@dataclass
class EntryCase:
    kind: str
    seconds: float
    agreement: float | None  # top instrument, mean over clips
    worst: float | None  # top instrument, the worst clip
    median_dvalence: float | None
    hops: int


@dataclass
class EntryReport:
    phase_hops: float
    settle_s: float
    clips: int
    cases: list[EntryCase] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> list[str]:
        def f(x: float | None) -> str:
            return "–" if x is None else f"{x:.3f}"

        lines = [
            f"Entry after a pause ({self.clips} clips, each starting {self.phase_hops} hop off "
            f"the hop grid after a pre-roll; hops from {self.settle_s:g} s into the clip "
            "against `analyze` of the clip alone; target: agreement ≥ 0.95, median "
            "|Δvalence| ≤ 0.1):",
            "",
            "| pre-roll | seconds | top instrument agrees | worst clip | median |Δvalence| "
            "| hops |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [f"| {c.kind} | {c.seconds:g} | {f(c.agreement)} | {f(c.worst)} | "
                  f"{f(c.median_dvalence)} | {c.hops} |" for c in self.cases]
        return lines


def entry_clips(clips: Sequence[Clip], per_label: int) -> list[Clip]:
    """Up to ``per_label`` clips per instrument class and per emotion quadrant sign pair, in
    the order given (a small, balanced set: each case plays every clip up to 12 times)."""
    taken: dict[str, int] = {}
    out = []
    for c in clips:
        if c.instrument is not None:
            key = f"instrument {c.instrument}"
        elif c.valence is not None and c.arousal is not None:
            key = f"emotion {c.valence >= 0} {c.arousal >= 0}"
        else:
            continue
        if taken.get(key, 0) < per_label:
            taken[key] = taken.get(key, 0) + 1
            out.append(c)
    return out


def evaluate_entry(ck: Checkpoint, clips: Sequence[Clip], *, per_label: int = 3,
                   kinds: Sequence[str] = ENTRY_KINDS,
                   seconds: Sequence[float] = ENTRY_SECONDS, phase_hops: float = 0.37,
                   settle_s: float = 1.0) -> EntryReport:
    """The entry table for ``entry_clips(clips, per_label)`` (module docstring). A clip's
    "other" piece is the chosen clip half the set away from it (another class, mostly)."""
    audio: list[tuple[np.ndarray, int]] = []
    for c in entry_clips(clips, per_label):
        try:
            x, rate = read_audio(c.path)
        except Exception:  # an unreadable file costs that clip only (evaluate lists it)
            continue
        audio.append((np.asarray(x, np.float32).reshape(len(x), -1).mean(axis=1), rate))
    engines: dict[int, Engine] = {}
    fresh = []
    for x, rate in audio:
        engine = engines.setdefault(rate, Engine(ck, input_rate_hz=rate))
        fresh.append(engine.analyze(x))
    report = EntryReport(phase_hops, settle_s, len(audio))
    for kind in kinds:
        for n_s in seconds:
            shares, dvs, hops = [], [], 0
            for i, (x, rate) in enumerate(audio):
                engine = engines[rate]
                other = audio[(i + len(audio) // 2) % len(audio)]
                other_x = other[0] if other[1] == rate else None
                if other_x is None and kind.startswith("other"):
                    continue
                pre = preroll_audio(kind, n_s + phase_hops * engine.hop_s, rate, other_x,
                                    seed=i)
                live = engine.analyze(np.concatenate([pre, x]))
                same, dv = compare_entry(live, fresh[i], pre.size / rate, settle_s)
                if same:
                    shares.append(float(np.mean(same)))
                dvs += dv
                hops += max(len(same), len(dv))
            report.cases.append(EntryCase(
                kind, float(n_s), float(np.mean(shares)) if shares else None,
                float(np.min(shares)) if shares else None,
                float(np.median(dvs)) if dvs else None, hops))
    return report
