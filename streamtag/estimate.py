"""The engine's per-hop estimate, typed, and the one function that turns it into the record.

The engine hands out ``HopEstimate`` objects: the numbers of one hop of one stream (its head
outputs as the model activated them, level, tempo, novelty, reference). ``to_record`` is the
only place the documented estimate record (README, "The estimate record";
``streamtag.record.RECORD_KEYS``) is built: key order, rounding, derived values (the emotion
quadrant and its label, a multiclass head's top class). The daemon's OSC smoothing works on
the estimate's head values and builds its record with the same function, so derived values
never contradict the smoothed ones.

``latency_ms`` is not part of the estimate: it describes the record's delivery, and is passed
to ``to_record`` by whoever makes the record, once. Live (the daemon): from the moment the
hop's last sample arrived to the moment its record is made for ZeroMQ, after the OSC bundle
went out. ``Engine.process(...).records``: from arrival to the moment the records are made.
``analyze``: the compute time per hop of the chunk of hops the record came in.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamtag.model import HeadSpec
from streamtag.record import (
    EMBEDDING_VECTOR,
    EMBEDDING_XY,
    EMOTION_AROUSAL,
    EMOTION_LABEL,
    EMOTION_QUADRANT,
    EMOTION_VALENCE,
    HEAD_EMBEDDING,
    HEAD_EMOTION,
    INSTRUMENT_CONFIDENCE,
    INSTRUMENT_PROBS,
    INSTRUMENT_TOP,
    KEY_LATENCY_MS,
    KEY_LEVEL_DB,
    KEY_NOVELTY,
    KEY_REFERENCE,
    KEY_SEQ,
    KEY_SILENT,
    KEY_STREAM,
    KEY_T,
    KEY_TEMPO,
    KEY_WALL,
    QUADRANTS,
    TEMPO_BPM,
    TEMPO_CONFIDENCE,
    TEMPO_LAST_BEAT_T,
    quadrant,
)


def round6(x: float) -> float:
    """6 significant digits: what JSON consumers get (more would only show float32 noise)."""
    return float(f"{x:.6g}")


# "%.6g,%.6g,…" for K values, by K: one string operation formats a head's outputs.
_ROUND6_FORMATS: dict[int, str] = {}


def round6_all(values: list[float]) -> list[float]:
    """``[round6(x) for x in values]`` (Python floats), to the bit, formatted in one
    operation: ``"%.6g"`` is the same conversion as ``f"{x:.6g}"``, and its output never holds
    a comma."""
    fmt = _ROUND6_FORMATS.get(len(values))
    if fmt is None:
        fmt = _ROUND6_FORMATS.setdefault(len(values), ",".join(["%.6g"] * len(values)))
    if not values:
        return []
    return list(map(float, (fmt % tuple(values)).split(",")))


@dataclass(frozen=True)
class TempoEstimate:
    """Tempo tracking after a hop's last frame: bpm [BPM] (0 until a tempo is found),
    confidence 0 … 1, last_beat_t the stream time [s] of the last beat reported (None: none)."""

    bpm: float
    confidence: float
    last_beat_t: float | None


@dataclass(frozen=True)
class HopEstimate:
    """What the engine estimated for one hop of one stream.

    seq: hop counter from the last reset. t: stream time [s] of the end of the audio the hop
    describes (less the resampler's delay). stream: the stream's name. wall: wall-clock time
    [s since the epoch] when the estimate was made. level_db [dBFS], silent: below the
    engine's silence_db.
    heads: {head name: activated outputs [K] (float32), in the head's label order}.
    xy: the embedding head's 2-D projection (None without an embedding head or projection).
    embedding_head: name of the head that gets ``xy`` (None: none).
    novelty: 0 … 1 (None: no embedding head). reference: the reference section (None: no
    library loaded). tempo: None with tempo tracking off.
    """

    seq: int
    t: float
    stream: str
    wall: float
    level_db: float
    silent: bool
    heads: dict[str, np.ndarray]
    xy: tuple[float, float] | None = None
    embedding_head: str | None = None
    novelty: float | None = None
    reference: dict[str, Any] | None = None
    tempo: TempoEstimate | None = None

    def with_heads(self, heads: dict[str, np.ndarray]) -> HopEstimate:
        """The same estimate with other head values (the daemon's smoothed ones)."""
        return dataclasses.replace(self, heads=heads)


def reported_values(spec: HeadSpec, values: np.ndarray) -> list[float]:
    """A head's outputs [K] as the record reports them: clipped to a regression head's range,
    6 significant digits."""
    vals = np.asarray(values).tolist()
    if spec.kind == "regression" and spec.range is not None:
        lo, hi = spec.range
        # Outputs strictly inside the range are what np.clip returns; only the others (at or
        # past a bound, NaN) go through it, so every value is clipped exactly as it decides.
        if not all(lo < v < hi for v in vals):
            vals = np.clip(values, lo, hi).tolist()
    return round6_all(vals)


def _argmax(values: np.ndarray, vals: list[float]) -> int:
    """``int(np.argmax(values))`` of outputs [K] given as the list ``vals``: the first of the
    largest (the first NaN if any, through numpy). In Python on K numbers: numpy's argmax lets
    the other threads (analyze's frontend) take the interpreter for each call."""
    top = max(vals)
    if top != top or any(v != v for v in vals):
        return int(np.argmax(values))
    return vals.index(top)


def head_section(spec: HeadSpec, values: np.ndarray) -> dict:
    """One head's part of the estimate record from its activated outputs [K]."""
    if spec.kind == "multiclass":
        vals = np.asarray(values).tolist()
        top = _argmax(values, vals)
        probs = round6_all(vals)
        return {
            INSTRUMENT_TOP: spec.labels[top],
            INSTRUMENT_CONFIDENCE: probs[top],
            INSTRUMENT_PROBS: dict(zip(spec.labels, probs, strict=True)),
        }
    if spec.kind == "embedding":
        # to_record adds "xy" before it for the head that has a projection.
        return {EMBEDDING_VECTOR: round6_all(np.asarray(values).tolist())}
    section: dict = dict(zip(spec.labels, reported_values(spec, values), strict=True))
    if spec.name == HEAD_EMOTION and {EMOTION_VALENCE, EMOTION_AROUSAL} <= section.keys():
        q = quadrant(section[EMOTION_VALENCE], section[EMOTION_AROUSAL])
        section[EMOTION_QUADRANT] = q
        section[EMOTION_LABEL] = QUADRANTS[q][0]
    return section


def to_record(est: HopEstimate, heads: Sequence[HeadSpec], latency_ms: float,
              vector: bool = True) -> dict:
    """The estimate record of ``est`` (the documented schema, keys in order); heads: the
    checkpoint's heads, in order; latency_ms: see the module docstring. vector=False: without
    ``embedding.vector``, equal to ``compact_record`` of the full record (an embedding
    section left empty is left out)."""
    rec: dict = {
        KEY_SEQ: est.seq,
        KEY_T: round(est.t, 6),
        KEY_STREAM: est.stream,
        KEY_WALL: est.wall,
        KEY_LATENCY_MS: round(latency_ms, 3),
        KEY_LEVEL_DB: round(est.level_db, 2),
        KEY_SILENT: est.silent,
    }
    for spec in heads:
        if spec.kind == "embedding" and spec.name == HEAD_EMBEDDING and not vector:
            if est.xy is not None and spec.name == est.embedding_head:
                rec[spec.name] = {}  # the xy below
            continue
        rec[spec.name] = head_section(spec, est.heads[spec.name])
    if est.xy is not None and est.embedding_head is not None:
        x, y = est.xy
        rec[est.embedding_head] = {EMBEDDING_XY: round6_all([x, y]),
                                   **rec[est.embedding_head]}
    if est.novelty is not None:
        rec[KEY_NOVELTY] = round6(est.novelty)
    if est.reference is not None:
        rec[KEY_REFERENCE] = est.reference
    if est.tempo is not None:
        tempo = est.tempo
        rec[KEY_TEMPO] = {TEMPO_BPM: round6(tempo.bpm), TEMPO_CONFIDENCE: round6(tempo.confidence),
                          TEMPO_LAST_BEAT_T: tempo.last_beat_t}
    return rec


def latency_since(arrival: float) -> float:
    """Milliseconds from ``arrival`` (``time.perf_counter()``) to now."""
    return (time.perf_counter() - arrival) * 1e3
