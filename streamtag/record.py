"""The shared names at the bottom of streamtag: the estimate record's keys, head names and
kinds, Thayer quadrants (and the one ``quadrant`` function that numbers them), timbre and
fast-lane descriptor names, value ranges, and the label checks a checkpoint must pass.

Everything else imports these from here: the frontend, model, checkpoint, engine, references,
the trainer and corpus, and the publishers (``streamtag.publish.wire`` adds the OSC addresses,
ZeroMQ topics and their encodings on top of this module). This module imports nothing from
streamtag, so it can sit under all of them (docs/ARCHITECTURE.md, "Layers").
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------------------------
# Estimate record (README, "The estimate record"; docs/ARCHITECTURE.md)

KEY_SEQ = "seq"
KEY_T = "t"  # stream time [s] of the end of the audio the hop describes
KEY_STREAM = "stream"
KEY_WALL = "wall"  # wall-clock time [s since the Unix epoch]; the OSC bundle timetag
KEY_LATENCY_MS = "latency_ms"
KEY_LEVEL_DB = "level_db"
KEY_SILENT = "silent"
KEY_FILE = "file"  # only from `analyze` with several files

HEAD_EMOTION = "emotion"
HEAD_INSTRUMENT = "instrument"
HEAD_TIMBRE = "timbre"
#: Multilabel head: the tag vocabulary is its labels; the record holds {tag: probability}.
HEAD_TAGS = "tags"
#: Embedding head: the record holds {"xy": [x, y]} (and "vector" where stated, see below).
HEAD_EMBEDDING = "embedding"
#: Heads with their own OSC addresses and ZeroMQ topic, in publishing order.
HEADS = (HEAD_EMOTION, HEAD_INSTRUMENT, HEAD_TIMBRE, HEAD_TAGS, HEAD_EMBEDDING)

#: Novelty of the current sound against the recent past, in [0, 1] (streamtag.embedding);
#: present when the checkpoint has an embedding head.
KEY_NOVELTY = "novelty"
#: Nearest reference of the loaded reference library; present when a library is loaded.
KEY_REFERENCE = "reference"

EMOTION_VALENCE = "valence"
EMOTION_AROUSAL = "arousal"
EMOTION_QUADRANT = "quadrant"
EMOTION_LABEL = "label"
INSTRUMENT_TOP = "top"
INSTRUMENT_CONFIDENCE = "confidence"
INSTRUMENT_PROBS = "probs"
#: embedding.xy: [x, y], the fixed 2-D projection, each in [-1, 1].
EMBEDDING_XY = "xy"
#: embedding.vector: the whole L2-normalised embedding [D]. Only in the ``streamtag.embedding``
#: payload, ``analyze --vectors`` and ``Engine`` records; :func:`compact_record` drops it from
#: ``streamtag.estimate`` and ``analyze`` lines so that the per-hop record stays small.
EMBEDDING_VECTOR = "vector"
#: reference.name: the nearest reference when known, else null. reference.nearest: the nearest
#: reference whatever its distance (null: empty library or no sound yet). reference.distance:
#: Euclidean distance between unit embeddings, 0 … 2 (null: no sound yet). reference.known:
#: distance ≤ the known_distance threshold.
REFERENCE_NAME = "name"
REFERENCE_NEAREST = "nearest"
REFERENCE_DISTANCE = "distance"
REFERENCE_KNOWN = "known"

#: Tempo and beat (streamtag.tempo), when tracking is on: tempo.bpm [BPM], 0 until a tempo is
#: found; tempo.confidence, 0 … 1, how periodic the onsets are at that tempo; tempo.last_beat_t,
#: stream time [s] of the last beat reported (null: none yet), comparable with ``t``.
KEY_TEMPO = "tempo"
TEMPO_BPM = "bpm"
TEMPO_CONFIDENCE = "confidence"
TEMPO_LAST_BEAT_T = "last_beat_t"
#: Beat payload keys (ZeroMQ ``streamtag.beat``): beat is the beat counter (1 for the first
#: beat after a start or reset), bpm the tempo when it was reported.
BEAT_COUNT = "beat"

RECORD_KEYS = (
    KEY_SEQ, KEY_T, KEY_STREAM, KEY_WALL, KEY_LATENCY_MS, KEY_LEVEL_DB, KEY_SILENT, *HEADS,
    KEY_NOVELTY, KEY_REFERENCE, KEY_TEMPO,
)

#: Thayer quadrants: number → (label, sign of valence, sign of arousal). Quadrant 2 is
#: "angry/tense" in the README; the one-word label in the record is "tense".
QUADRANTS: dict[int, tuple[str, int, int]] = {
    1: ("happy", +1, +1),
    2: ("tense", -1, +1),
    3: ("sad", -1, -1),
    4: ("calm", +1, -1),
}


def quadrant(valence: float, arousal: float) -> int:
    """Thayer quadrant 1..4 of a (valence, arousal) point (``QUADRANTS``: 1 happy +v+a,
    2 tense −v+a, 3 sad −v−a, 4 calm +v−a); zero counts as positive. The one definition: the
    engine numbers served estimates with it and the corpus labels its training clips with it.
    """
    if arousal >= 0:
        return 1 if valence >= 0 else 2
    return 3 if valence < 0 else 4


#: Kinds of model heads (``streamtag.model.HeadSpec.kind``).
HEAD_KINDS: tuple[str, ...] = ("regression", "multiclass", "multilabel", "embedding")

#: The seven AudioCommons timbral descriptors (seed 004), each in [0, 1].
TIMBRE_NAMES: tuple[str, ...] = (
    "brightness", "warmth", "roughness", "sharpness", "boominess", "depth", "hardness",
)

#: Floor of ``level_db`` [dBFS]: the engine floors digital silence here, and publishers clamp
#: -inf to it rather than drop the value (a held stale level would lie).
LEVEL_FLOOR_DB = -160.0

# --------------------------------------------------------------------------------------------
# Value ranges, by dotted record path. One table serves the manifest, the default input range
# of user mappings, and the publishers' clamping of ±inf.

_EXACT_RANGES: dict[str, tuple[float, float]] = {
    f"{HEAD_EMOTION}.{EMOTION_VALENCE}": (-1.0, 1.0),
    f"{HEAD_EMOTION}.{EMOTION_AROUSAL}": (-1.0, 1.0),
    f"{HEAD_EMOTION}.{EMOTION_QUADRANT}": (1.0, 4.0),
    f"{HEAD_INSTRUMENT}.{INSTRUMENT_CONFIDENCE}": (0.0, 1.0),
    KEY_LEVEL_DB: (LEVEL_FLOOR_DB, 0.0),
    KEY_SILENT: (0.0, 1.0),
    f"{HEAD_EMBEDDING}.{EMBEDDING_XY}": (-1.0, 1.0),
    f"{HEAD_EMBEDDING}.{EMBEDDING_VECTOR}": (-1.0, 1.0),
    KEY_NOVELTY: (0.0, 1.0),
    f"{KEY_REFERENCE}.{REFERENCE_DISTANCE}": (0.0, 2.0),
    f"{KEY_REFERENCE}.{REFERENCE_KNOWN}": (0.0, 1.0),
    f"{KEY_TEMPO}.{TEMPO_CONFIDENCE}": (0.0, 1.0),
}
_PREFIX_RANGES: dict[str, tuple[float, float]] = {
    f"{HEAD_INSTRUMENT}.{INSTRUMENT_PROBS}.": (0.0, 1.0),
    f"{HEAD_TIMBRE}.": (0.0, 1.0),
    f"{HEAD_TAGS}.": (0.0, 1.0),
    f"{HEAD_EMBEDDING}.{EMBEDDING_XY}.": (-1.0, 1.0),  # embedding.xy.0 (x), .1 (y): mappings
}


def value_range(path: str) -> tuple[float, float] | None:
    """Nominal (lo, hi) range of the record value at dotted ``path``, or None if unbounded
    or unknown. ``"timbre.brightness"`` → (0, 1); ``"level_db"`` → (-160, 0) [dBFS]."""
    if path in _EXACT_RANGES:
        return _EXACT_RANGES[path]
    for prefix, rng in _PREFIX_RANGES.items():
        if path.startswith(prefix) and len(path) > len(prefix):
            return rng
    return None


# --------------------------------------------------------------------------------------------
# Fast lane: descriptors the frontend computes per frame (``Frames.fast`` columns).


@dataclass(frozen=True)
class FastDescriptor:
    """A fast-lane descriptor computed from the frontend's spectra at the control rate."""

    name: str
    unit: str
    range: tuple[float, float] | None  # None: bounded only by the signal (see description)
    description: str


FAST_DESCRIPTORS: dict[str, FastDescriptor] = {
    d.name: d
    for d in (
        FastDescriptor("loudness", "dBFS", (LEVEL_FLOOR_DB, 0.0), "frame energy"),
        FastDescriptor("centroid", "Hz", None, "spectral centroid, 0 … Nyquist"),
        FastDescriptor("flatness", "", (0.0, 1.0), "spectral flatness (0 tonal … 1 noise)"),
        FastDescriptor("onset", "", None, "onset strength (spectral flux), ≥ 0; below the "
                       "frame rate, the strongest since the previous message"),
    )
}
FAST_NAMES = tuple(FAST_DESCRIPTORS)


# --------------------------------------------------------------------------------------------
# Labels: class, tag and descriptor labels become OSC address parts; a checkpoint whose
# labels collide there does not load (streamtag.checkpoint).

# OSC 1.0: an address part may hold any printable ASCII except these.
_OSC_FORBIDDEN = set(" #*,/?[]{}")


@functools.lru_cache(maxsize=1024)  # every hop sends every class, tag and descriptor name
def osc_name(label: str) -> str:
    """Make a class/tag/descriptor/stream label usable as one OSC address part.

    Characters OSC forbids in addresses (space, ``#*,/?[]{}``), control and non-ASCII
    characters become ``_``; case is kept: ``"tenor saxophone"`` → ``"tenor_saxophone"``,
    ``"Hip Hop"`` → ``"Hip_Hop"``. The manifest lists the original label beside each address.
    Labels of one head that would share an address part are refused (:func:`check_labels`;
    checkpoints with such a ``tags`` head do not load).
    """
    out = "".join(c if 32 < ord(c) < 127 and c not in _OSC_FORBIDDEN else "_" for c in label)
    return out or "_"


def check_labels(labels: Sequence[str], what: str) -> None:
    """Raise ValueError if two labels collide once made address-safe by :func:`osc_name`."""
    seen: dict[str, str] = {}
    for label in labels:
        name = osc_name(label)
        if name in seen:
            raise ValueError(
                f"{what}: labels {seen[name]!r} and {label!r} both become OSC address part "
                f"{name!r}"
            )
        seen[name] = label


# --------------------------------------------------------------------------------------------
# Record shape shared by `analyze` and the publishers.


def compact_record(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The record as ``streamtag.estimate`` and ``analyze`` carry it: without
    ``embedding.vector`` (D floats per hop that only a few consumers want; they subscribe to
    ``streamtag.embedding``). An embedding section left empty (no projection) is dropped.
    Returns ``record`` itself when there is nothing to drop."""
    emb = record.get(HEAD_EMBEDDING)
    if not isinstance(emb, Mapping) or EMBEDDING_VECTOR not in emb:
        return record
    out = dict(record)
    rest = {k: v for k, v in emb.items() if k != EMBEDDING_VECTOR}
    if rest:
        out[HEAD_EMBEDDING] = rest
    else:
        del out[HEAD_EMBEDDING]
    return out
