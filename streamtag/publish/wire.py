"""Every wire format streamtag speaks, in one place: OSC addresses and type tags, output
profiles, ZeroMQ topics and payloads, and the manifest that describes them at run time.

The estimate record's keys, head names, quadrants, value ranges and label checks live one layer
down, in :mod:`streamtag.record` (the frontend, model and engine import them from there); they
are re-exported here so that publishers and tests can read every name as ``wire.X``.

The README's OSC/ZeroMQ reference is rendered from this module by :func:`reference_markdown`,
so a change here is a change of contract (docs/ARCHITECTURE.md, "Contracts and where they
live").

OSC addresses are written here as *suffixes* relative to ``<prefix>`` (single stream) or
``<prefix>/<stream>`` (several streams); :func:`address` joins them.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

# The shared record names, re-exported: publishers and subscribers read them as wire.X.
from streamtag.record import (  # noqa: F401
    _OSC_FORBIDDEN,
    BEAT_COUNT,
    EMBEDDING_VECTOR,
    EMBEDDING_XY,
    EMOTION_AROUSAL,
    EMOTION_LABEL,
    EMOTION_QUADRANT,
    EMOTION_VALENCE,
    FAST_DESCRIPTORS,
    FAST_NAMES,
    HEAD_EMBEDDING,
    HEAD_EMOTION,
    HEAD_INSTRUMENT,
    HEAD_KINDS,
    HEAD_TAGS,
    HEAD_TIMBRE,
    HEADS,
    INSTRUMENT_CONFIDENCE,
    INSTRUMENT_PROBS,
    INSTRUMENT_TOP,
    KEY_FILE,
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
    LEVEL_FLOOR_DB,
    QUADRANTS,
    RECORD_KEYS,
    REFERENCE_DISTANCE,
    REFERENCE_KNOWN,
    REFERENCE_NAME,
    REFERENCE_NEAREST,
    TEMPO_BPM,
    TEMPO_CONFIDENCE,
    TEMPO_LAST_BEAT_T,
    TIMBRE_NAMES,
    FastDescriptor,
    check_labels,
    compact_record,
    osc_name,
    quadrant,
    value_range,
)

# --------------------------------------------------------------------------------------------
# OSC


@dataclass(frozen=True)
class OscArg:
    """One argument of an OSC message: its name, OSC type tag, unit and nominal range."""

    name: str
    type: str  # "f" float32, "i" int32, "s" string
    unit: str = ""
    range: tuple[float, float] | None = None


@dataclass(frozen=True)
class OscSpec:
    """One OSC address pattern. ``suffix`` may hold ``{label}`` (a class, descriptor or
    command name, made address-safe by :func:`osc_name`)."""

    suffix: str
    args: tuple[OscArg, ...]
    description: str

    @property
    def types(self) -> str:
        """The OSC type tag string without the leading comma, e.g. ``"ff"``."""
        return "".join(a.type for a in self.args)


_UNIT = (-1.0, 1.0)
_PROB = (0.0, 1.0)

OSC_EMOTION = OscSpec(
    "emotion",
    (OscArg(EMOTION_VALENCE, "f", "", _UNIT), OscArg(EMOTION_AROUSAL, "f", "", _UNIT)),
    "valence and arousal together",
)
OSC_EMOTION_VALENCE = OscSpec(
    "emotion/valence",
    (OscArg(EMOTION_VALENCE, "f", "", _UNIT),),
    "valence (−1 negative … +1 positive)",
)
OSC_EMOTION_AROUSAL = OscSpec(
    "emotion/arousal",
    (OscArg(EMOTION_AROUSAL, "f", "", _UNIT),),
    "arousal (−1 calm … +1 excited)",
)
OSC_EMOTION_QUADRANT = OscSpec(
    "emotion/quadrant",
    (OscArg(EMOTION_QUADRANT, "i", "Thayer quadrant", (1.0, 4.0)),),
    "1 happy (+v +a), 2 angry/tense (−v +a), 3 sad (−v −a), 4 calm (+v −a)",
)
OSC_INSTRUMENT = OscSpec(
    "instrument",
    (
        OscArg(INSTRUMENT_TOP, "s", "class name"),
        OscArg(INSTRUMENT_CONFIDENCE, "f", "probability", _PROB),
    ),
    "most likely instrument and its probability",
)
OSC_INSTRUMENT_CLASS = OscSpec(
    "instrument/{label}",
    (OscArg("probability", "f", "probability", _PROB),),
    "probability of one instrument class (every class of the loaded checkpoint)",
)
OSC_TIMBRE = OscSpec(
    "timbre/{label}",
    (OscArg("value", "f", "", _PROB),),
    "one timbral descriptor: " + ", ".join(TIMBRE_NAMES),
)
OSC_TAG = OscSpec(
    "tags/{label}",
    (OscArg("probability", "f", "probability", _PROB),),
    "probability of one tag (every tag of the loaded checkpoint; several may be high at once)",
)
OSC_EMBEDDING_XY = OscSpec(
    "embedding/xy",
    (OscArg("x", "f", "", _UNIT), OscArg("y", "f", "", _UNIT)),
    "where the sound sits on the model's fixed 2-D map of its embedding (similar sounds, "
    "nearby points); only with a checkpoint that stores the projection",
)
OSC_NOVELTY = OscSpec(
    "novelty",
    (OscArg(KEY_NOVELTY, "f", "", _PROB),),
    "how much more the last hop differs from the 4 s before it than the music has been "
    "changing lately (0: no more than usual; windows set by `novelty` in the config); rises "
    "when the piece or section changes",
)
_DISTANCE = (0.0, 2.0)
OSC_REFERENCE = OscSpec(
    "reference",
    (OscArg(REFERENCE_NAME, "s", "reference name, \"\" if unknown"),
     OscArg(REFERENCE_DISTANCE, "f", "match distance", _DISTANCE)),
    "the reference-library recording the sound matches, or \"\" when none is near enough; "
    "distance to the nearest one (only with a reference library)",
)
OSC_REFERENCE_KNOWN = OscSpec(
    "reference/known",
    (OscArg(REFERENCE_KNOWN, "i", "0/1", (0.0, 1.0)),),
    "1 while the sound matches a reference, 0 for new material (only with a reference library)",
)
OSC_TEMPO = OscSpec(
    "tempo",
    (OscArg(TEMPO_BPM, "f", "BPM"), OscArg(TEMPO_CONFIDENCE, "f", "", _PROB)),
    "tempo (0 until one is found) and how periodic the onsets are at it (0 … 1); with "
    "tempo tracking on (`tempo.enabled`)",
)
OSC_BEAT = OscSpec(
    "beat",
    (OscArg(BEAT_COUNT, "i", "beat counter"),),
    "at each beat, its own bundle timetagged with the beat's wall-clock time, sent with the "
    "frame the beat falls in (like the fast lane, but whenever tempo tracking is on, also with "
    "the fast lane off); the counter starts at 1 after a start or reset",
)
OSC_LEVEL = OscSpec(
    "level", (OscArg(KEY_LEVEL_DB, "f", "dBFS", (LEVEL_FLOOR_DB, 0.0)),), "input level of the hop"
)
OSC_SILENT = OscSpec(
    "silent", (OscArg(KEY_SILENT, "i", "0/1", (0.0, 1.0)),), "1 while the silence gate is closed"
)
OSC_FAST = OscSpec(
    "fast/{label}",
    (OscArg("value", "f"),),
    "fast lane: one frame-rate descriptor (names below)",
)
OSC_CONTROL = OscSpec("control/{label}", (), "control input (no arguments): " + ", ".join(
    ("reset", "pause", "resume", "reload", "describe")))
OSC_MANIFEST = OscSpec(
    "manifest",
    (OscArg("part", "i", "0-based part index"), OscArg("count", "i", "parts in all"),
     OscArg("json", "s", "a piece of the JSON text")),
    "reply to control/describe, sent to the sender's address and port (loopback or "
    "`control.allow` only): the manifest as ASCII JSON text cut into `count` messages, each "
    "datagram within `max_datagram_bytes`, in order; join the pieces of parts 0 … count−1 and "
    "parse (see below)",
)

# The touchdesigner profile sends numbers only (TouchDesigner's OSC In CHOP takes no strings):
# these two replace the string-carrying addresses of the same name for its targets.
OSC_INSTRUMENT_INDEX = OscSpec(
    "instrument",
    (
        OscArg("index", "i", "index in the manifest's classes"),
        OscArg(INSTRUMENT_CONFIDENCE, "f", "probability", _PROB),
    ),
    "touchdesigner profile: the most likely instrument as its index in the manifest's "
    "`classes` (0-based), and its probability",
)
OSC_REFERENCE_INDEX = OscSpec(
    "reference",
    (OscArg("index", "i", "index in the manifest's references, -1 if unknown"),
     OscArg(REFERENCE_DISTANCE, "f", "match distance", _DISTANCE)),
    "touchdesigner profile: the matched reference as its index in the manifest's "
    "`references` (0-based), -1 when none is near enough; distance to the nearest one",
)
#: Address spec → its numbers-only twin for the touchdesigner profile.
NUMBERS_ONLY: dict[OscSpec, OscSpec] = {
    OSC_INSTRUMENT: OSC_INSTRUMENT_INDEX, OSC_REFERENCE: OSC_REFERENCE_INDEX,
}

#: Per-hop addresses in the order they appear inside the hop bundle.
OSC_HOP_SPECS = (
    OSC_EMOTION, OSC_EMOTION_VALENCE, OSC_EMOTION_AROUSAL, OSC_EMOTION_QUADRANT,
    OSC_INSTRUMENT, OSC_INSTRUMENT_CLASS, OSC_TIMBRE, OSC_TAG, OSC_EMBEDDING_XY, OSC_NOVELTY,
    OSC_REFERENCE, OSC_REFERENCE_KNOWN, OSC_TEMPO, OSC_LEVEL, OSC_SILENT,
)

CONTROL_RESET = "reset"
CONTROL_PAUSE = "pause"
CONTROL_RESUME = "resume"
CONTROL_RELOAD = "reload"
CONTROL_DESCRIBE = "describe"
CONTROL_COMMANDS = (CONTROL_RESET, CONTROL_PAUSE, CONTROL_RESUME, CONTROL_RELOAD, CONTROL_DESCRIBE)
_CONTROL_DESCRIPTIONS = {
    CONTROL_RESET: "clear the model state (LSTM) and smoothers",
    CONTROL_PAUSE: "stop analysing and publishing",
    CONTROL_RESUME: "resume after pause",
    CONTROL_RELOAD: "re-read config, checkpoint and reference library; a bad one is refused, "
    "the running ones kept",
    CONTROL_DESCRIBE: "reply with the manifest (see manifest) to a loopback sender or one in "
                      "`control.allow`; others get none (see Security)",
}



# --------------------------------------------------------------------------------------------
# Output profiles: what one OSC target gets (``outputs.osc.targets[].profile``).

PROFILE_BUNDLE = "bundle"
PROFILE_PLAIN = "plain"
PROFILE_TOUCHDESIGNER = "touchdesigner"
PROFILE_WEKINATOR = "wekinator"
PROFILES: dict[str, str] = {
    PROFILE_BUNDLE: "the default: every hop as one bundle timetagged with the record's `wall` "
    "time, every fast-lane frame as one bundle; mappings as plain messages",
    PROFILE_PLAIN: "the same messages as `bundle`, each in a datagram of its own, no bundles "
    "(for receivers that take plain messages only)",
    PROFILE_TOUCHDESIGNER: "numbers only (TouchDesigner's OSC In CHOP takes no strings), plain "
    "messages: `instrument if` (class index, confidence) and `reference if` (reference index "
    "or -1, distance) instead of their `sf` forms, the names in the manifest; everything "
    "else as `plain`",
    PROFILE_WEKINATOR: "only one message per hop, `/wek/inputs` with one float per record "
    "path in the target's `inputs`, in that order (Wekinator's input format; port 6448 by "
    "default), from one stream (the target's `stream`, default the first); a hop in which "
    "one of them is missing or not finite sends nothing; mappings only if they name the target",
}
#: Wekinator's default input message and port.
WEKINATOR_ADDRESS = "/wek/inputs"
WEKINATOR_PORT = 6448

_PART = re.compile(r"^[!-~]+$")


def _check_path(path: str, what: str) -> str:
    if not isinstance(path, str) or not path.startswith("/") or path.endswith("/"):
        raise ValueError(f"{what} {path!r} must start with '/' and not end with '/'")
    for part in path[1:].split("/"):
        if not part or not _PART.match(part) or set(part) & _OSC_FORBIDDEN:
            raise ValueError(
                f"{what} {path!r}: part {part!r} is empty or holds a character OSC "
                "forbids (space # * , ? [ ] { } or non-ASCII)"
            )
    return path


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid OSC address prefix (``/a`` or ``/a/b``), else raise
    ValueError saying what is wrong."""
    return _check_path(prefix, "OSC prefix")


def check_address(addr: str) -> str:
    """Return ``addr`` if it is a valid OSC address (no patterns), else raise ValueError."""
    return _check_path(addr, "OSC address")


def stream_part(streams: Sequence[str], stream: str) -> str | None:
    """The stream part of OSC addresses: None with one stream (or none declared), else the
    address-safe stream name."""
    return osc_name(stream) if len(streams) > 1 else None


def address(prefix: str, stream: str | None, suffix: str) -> str:
    """Join an OSC address: ``address("/streamtag", None, "emotion")`` → ``/streamtag/emotion``
    (single stream); ``address("/streamtag", "left", "emotion")`` →
    ``/streamtag/left/emotion`` (several streams). ``stream`` must already be address-safe."""
    if stream:
        return f"{prefix}/{stream}/{suffix}"
    return f"{prefix}/{suffix}"


def control_address(prefix: str, command: str) -> str:
    """``/<prefix>/control/<command>``; control addresses never carry a stream."""
    return address(prefix, None, OSC_CONTROL.suffix.format(label=command))


def manifest_address(prefix: str) -> str:
    """``/<prefix>/manifest``: the address of the reply to ``control/describe``."""
    return address(prefix, None, OSC_MANIFEST.suffix)


# --------------------------------------------------------------------------------------------
# ZeroMQ: multipart [topic, JSON]; subscribing to TOPIC_PREFIX gets every topic.

TOPIC_PREFIX = "streamtag."
TOPIC_ESTIMATE = "streamtag.estimate"
TOPIC_EMOTION = "streamtag.emotion"
TOPIC_INSTRUMENT = "streamtag.instrument"
TOPIC_TIMBRE = "streamtag.timbre"
TOPIC_TAGS = "streamtag.tags"
TOPIC_EMBEDDING = "streamtag.embedding"
TOPIC_STATUS = "streamtag.status"
TOPIC_FAST = "streamtag.fast"
TOPIC_BEAT = "streamtag.beat"
TOPIC_META = "streamtag.meta"
HEAD_TOPICS = {
    HEAD_EMOTION: TOPIC_EMOTION, HEAD_INSTRUMENT: TOPIC_INSTRUMENT, HEAD_TIMBRE: TOPIC_TIMBRE,
    HEAD_TAGS: TOPIC_TAGS, HEAD_EMBEDDING: TOPIC_EMBEDDING,
}
#: Keys copied from the record into every per-head payload, beside the head itself.
HEAD_PAYLOAD_KEYS = (KEY_SEQ, KEY_T, KEY_STREAM)


def head_payload(record: Mapping[str, Any], head: str) -> dict[str, Any]:
    """A head's topic payload: ``{"seq", "t", "stream", <head>}`` of the record."""
    payload = {k: record[k] for k in HEAD_PAYLOAD_KEYS if k in record}
    payload[head] = record[head]
    return payload


def record_payloads(record: Mapping[str, Any]) -> list[tuple[str, Callable[[], Any]]]:
    """``(topic, make_payload)`` for every topic one estimate record goes out on, in order:
    ``streamtag.estimate`` (:func:`compact_record`), then each head present on its own topic
    (:func:`head_payload`, the embedding with its vector). The payloads are made only when
    called, so a publisher builds those someone wants. ZeroMQ and the WebSocket feed both
    publish exactly these."""
    items: list[tuple[str, Callable[[], Any]]] = [
        (TOPIC_ESTIMATE, functools.partial(compact_record, record))]
    for head, topic in HEAD_TOPICS.items():
        if head in record:
            items.append((topic, functools.partial(head_payload, record, head)))
    return items


#: Keys of a fast-lane payload: {"stream", "t" (optional), "wall", "values": {name: value}}.
FAST_PAYLOAD_KEYS = (KEY_STREAM, KEY_T, KEY_WALL, "values")
#: Keys of a beat payload: {"stream", "t", "wall", "beat", "bpm"}.
BEAT_PAYLOAD_KEYS = (KEY_STREAM, KEY_T, KEY_WALL, BEAT_COUNT, TEMPO_BPM)


def fast_payload(
    stream: str, wall: float, values: Mapping[str, float], t: float | None = None
) -> dict[str, Any]:
    """The ``streamtag.fast`` payload of one fast-lane frame: ``{"stream", "t" (if given),
    "wall", "values": {name: value}}``; ``t`` stream time [s], ``wall`` Unix time [s]."""
    payload: dict[str, Any] = {KEY_STREAM: stream}
    if t is not None:
        payload[KEY_T] = t
    payload[KEY_WALL] = wall
    payload["values"] = dict(values)
    return payload


def encode_payload(payload: Any) -> tuple[bytes, int]:
    """Strict JSON (UTF-8, compact, no NaN: see :func:`sanitize`) of a topic payload, as every
    publisher sends it. Returns (bytes, number of non-finite values replaced).

    Raises:
        TypeError, ValueError: not JSON-able.
    """
    clean, bad = sanitize(payload)
    return json.dumps(clean, allow_nan=False, ensure_ascii=False,
                      separators=(",", ":")).encode(), bad


ZMQ_TOPICS: dict[str, str] = {
    TOPIC_ESTIMATE: "the whole estimate record, one per hop (the embedding without its "
    "vector)",
    TOPIC_EMOTION: '{"seq", "t", "stream", "emotion": {...}} per hop',
    TOPIC_INSTRUMENT: '{"seq", "t", "stream", "instrument": {...}} per hop',
    TOPIC_TIMBRE: '{"seq", "t", "stream", "timbre": {...}} per hop',
    TOPIC_TAGS: '{"seq", "t", "stream", "tags": {tag: probability}} per hop',
    TOPIC_EMBEDDING: '{"seq", "t", "stream", "embedding": {"xy": [x, y], "vector": [D '
    'floats, unit length]}} per hop',
    TOPIC_BEAT: '{"stream", "t", "wall", "beat", "bpm"} at each beat: stream time and '
    'wall-clock time [s] of the beat, the beat counter, the tempo [BPM]',
    TOPIC_STATUS: "heartbeat each second: uptime, hops, overflows, dropped, latency p50/p99, "
    "checkpoint id",
    TOPIC_FAST: '{"stream", "t", "wall", "values": {name: value}} at the fast-lane rate',
    TOPIC_META: "the manifest: at start, on change, and to each new subscriber",
}

# --------------------------------------------------------------------------------------------
# WebSocket feed (streamtag.publish.web): the ZeroMQ topics and payloads as JSON text messages

#: Path of the feed on the live view's port (``outputs.web``).
WS_PATH = "/ws"
#: Query parameter choosing topics by prefix, comma-separated (default: every topic).
WS_TOPICS_PARAM = "topics"
#: Keys of one feed message: ``{"topic": <ZeroMQ topic>, "data": <its ZeroMQ payload>}``.
WS_KEY_TOPIC = "topic"
WS_KEY_DATA = "data"

# --------------------------------------------------------------------------------------------
# Manifest

MANIFEST_FORMAT = "streamtag.manifest"
MANIFEST_VERSION = 1


def _arg_json(arg: OscArg, rng: tuple[float, float] | None = None) -> dict[str, Any]:
    r = rng if rng is not None else arg.range
    return {"name": arg.name, "type": arg.type, "unit": arg.unit,
            "range": None if r is None else [float(r[0]), float(r[1])]}


def _entry(
    prefix: str, stream: str | None, spec: OscSpec, *, head: str | None, label: str | None = None,
    rng: tuple[float, float] | None = None, unit: str | None = None,
) -> dict[str, Any]:
    suffix = spec.suffix.format(label=osc_name(label)) if label is not None else spec.suffix
    args = [_arg_json(a, rng) for a in spec.args]
    if unit is not None:
        for a in args:
            a["unit"] = unit
    entry: dict[str, Any] = {"address": address(prefix, stream, suffix), "types": spec.types,
                             "args": args, "description": spec.description}
    twin = NUMBERS_ONLY.get(spec)
    if twin is not None:  # what touchdesigner targets get at this address instead
        entry["profiles"] = {PROFILE_TOUCHDESIGNER: {
            "types": twin.types, "args": [_arg_json(a) for a in twin.args],
            "description": twin.description}}
    if head is not None:
        entry["head"] = head
    if label is not None:
        entry["label"] = label
    return entry


def _head_range(head: Mapping[str, Any], default: tuple[float, float]) -> tuple[float, float]:
    rng = head.get("range")
    if isinstance(rng, Sequence) and len(rng) == 2:
        return (float(rng[0]), float(rng[1]))
    return default


def _stream_entries(
    heads: Sequence[Mapping[str, Any]], prefix: str, stream: str | None,
    fast_names: Sequence[str], sample_rate_hz: float | None, projection: bool,
    references: Sequence[str] | None, tempo: bool = False,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    by_name = {str(h.get("name")): h for h in heads}
    emo = by_name.get(HEAD_EMOTION)
    if emo is not None:
        rng = _head_range(emo, _UNIT)
        out.append(_entry(prefix, stream, OSC_EMOTION, head=HEAD_EMOTION, rng=rng))
        out.append(_entry(prefix, stream, OSC_EMOTION_VALENCE, head=HEAD_EMOTION, rng=rng))
        out.append(_entry(prefix, stream, OSC_EMOTION_AROUSAL, head=HEAD_EMOTION, rng=rng))
        out.append(_entry(prefix, stream, OSC_EMOTION_QUADRANT, head=HEAD_EMOTION))
    inst = by_name.get(HEAD_INSTRUMENT)
    if inst is not None:
        labels = [str(x) for x in inst.get("labels") or ()]
        check_labels(labels, "instrument head")
        top = _entry(prefix, stream, OSC_INSTRUMENT, head=HEAD_INSTRUMENT)
        top["classes"] = labels
        out.append(top)
        out.extend(_entry(prefix, stream, OSC_INSTRUMENT_CLASS, head=HEAD_INSTRUMENT, label=c)
                   for c in labels)
    tim = by_name.get(HEAD_TIMBRE)
    if tim is not None:
        labels = [str(x) for x in tim.get("labels") or TIMBRE_NAMES]
        check_labels(labels, "timbre head")
        rng = _head_range(tim, _PROB)
        out.extend(_entry(prefix, stream, OSC_TIMBRE, head=HEAD_TIMBRE, label=n, rng=rng)
                   for n in labels)
    tags = by_name.get(HEAD_TAGS)
    if tags is not None:
        labels = [str(x) for x in tags.get("labels") or ()]
        check_labels(labels, "tags head")
        out.extend(_entry(prefix, stream, OSC_TAG, head=HEAD_TAGS, label=n) for n in labels)
    emb = by_name.get(HEAD_EMBEDDING)
    if emb is not None and emb.get("kind", "embedding") == "embedding":
        if projection:
            out.append(_entry(prefix, stream, OSC_EMBEDDING_XY, head=HEAD_EMBEDDING))
        out.append(_entry(prefix, stream, OSC_NOVELTY, head=None))
        if references is not None:
            ref = _entry(prefix, stream, OSC_REFERENCE, head=None)
            ref["references"] = list(references)
            out.append(ref)
            out.append(_entry(prefix, stream, OSC_REFERENCE_KNOWN, head=None))
    if tempo:
        out.append(_entry(prefix, stream, OSC_TEMPO, head=None))
    out.append(_entry(prefix, stream, OSC_LEVEL, head=None))
    out.append(_entry(prefix, stream, OSC_SILENT, head=None))
    if tempo:
        out.append(_entry(prefix, stream, OSC_BEAT, head=None))
    for name in fast_names:
        desc = FAST_DESCRIPTORS.get(name)
        rng = desc.range if desc else None
        if name == "centroid" and sample_rate_hz:
            rng = (0.0, sample_rate_hz / 2.0)
        entry = _entry(prefix, stream, OSC_FAST, head=None, label=name, rng=rng,
                       unit=desc.unit if desc else "")
        if desc:
            entry["description"] = f"fast lane: {desc.description}"
        out.append(entry)
    return out


def build_manifest(
    heads: Sequence[Mapping[str, Any]],
    prefix: str,
    streams: Sequence[str],
    fast_names: Sequence[str],
    fast_rate_hz: float,
    *,
    sample_rate_hz: float | None = None,
    mappings: Sequence[Mapping[str, Any]] = (),
    projection: bool = False,
    references: Sequence[str] | None = None,
    targets: Sequence[Mapping[str, Any]] = (),
    tempo: bool = False,
) -> dict[str, Any]:
    """Describe everything a running daemon publishes, as a JSON-ready dict.

    Args:
        heads: the loaded checkpoint's heads, e.g. ``{"name": "instrument", "kind":
            "multiclass", "labels": [...]}``; ``"range"`` optional. Heads other than emotion,
            instrument, timbre, tags and embedding are listed under ``"heads"`` with
            ``"osc": false``: they travel only in ``streamtag.estimate``.
        prefix: OSC prefix, e.g. ``/streamtag``.
        streams: stream names; with more than one, OSC addresses carry the stream.
        fast_names: fast-lane descriptors enabled (see :data:`FAST_DESCRIPTORS`).
        fast_rate_hz: fast-lane control rate [Hz].
        sample_rate_hz: input rate [Hz], to state the centroid's range (0 … Nyquist).
        mappings: manifest entries of user mappings (``OscMapping.manifest_entry()``).
        projection: the checkpoint stores the embedding projection (``embedding/xy`` is sent).
        references: names in the loaded reference library (None: no library; the reference
            addresses are then not sent). Novelty is listed whenever there is an embedding head.
        targets: the OSC targets and their profiles, e.g. ``{"target": "127.0.0.1:6448",
            "name": "wek", "profile": "wekinator", "address": "/wek/inputs", "inputs": [...],
            "stream": "main"}`` (``OscPublisher.describe_targets()``).
        tempo: tempo tracking is on (``tempo`` and ``beat`` are sent).

    Returns:
        ``{"format", "version", "osc": {"prefix", "streams", "addresses", "control",
        "manifest", "fast_rate_hz", "profiles", "targets"}, "zmq": {"topics"}, "heads", "fast",
        "mappings"}``; each address entry has ``address``, ``types``, ``args`` (name, type,
        unit, range), ``description``, and where it applies ``head``, ``label`` (original class
        name), ``classes`` and ``profiles`` (``{"touchdesigner": {"types", "args",
        "description"}}``: what targets of that profile get at this address instead).

    Raises:
        ValueError: two labels of one head share an OSC address part.
    """
    check_prefix(prefix)
    parts: list[str | None] = (
        [osc_name(s) for s in streams] if len(streams) > 1 else [None]
    )
    addresses: list[dict[str, Any]] = []
    for part in parts:
        addresses.extend(_stream_entries(heads, prefix, part, fast_names, sample_rate_hz,
                                         projection, references, tempo))
    head_list = []
    for h in heads:
        name = str(h.get("name"))
        item = {k: v for k, v in h.items() if k in ("name", "kind", "labels", "range", "size")}
        item["osc"] = name in HEADS
        item["zmq_topic"] = HEAD_TOPICS.get(name, TOPIC_ESTIMATE)
        head_list.append(item)
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "osc": {
            "prefix": prefix,
            "streams": list(streams),
            "addresses": addresses,
            "control": [
                {"address": control_address(prefix, c), "types": "",
                 "description": _CONTROL_DESCRIPTIONS[c]}
                for c in CONTROL_COMMANDS
            ],
            "manifest": {"address": manifest_address(prefix), "types": OSC_MANIFEST.types,
                         "description": OSC_MANIFEST.description},
            "fast_rate_hz": float(fast_rate_hz),
            "profiles": dict(PROFILES),
            "targets": [dict(t) for t in targets],
        },
        "zmq": {"topics": [{"topic": t, "payload": d} for t, d in ZMQ_TOPICS.items()]},
        "heads": head_list,
        "fast": {"rate_hz": float(fast_rate_hz), "names": list(fast_names)},
        "mappings": [dict(m) for m in mappings],
        "references": None if references is None else list(references),
    }


# --------------------------------------------------------------------------------------------
# README reference


def _fmt_range(rng: tuple[float, float] | None) -> str:
    if rng is None:
        return ""
    return f"{rng[0]:g} … {rng[1]:g}"


def reference_markdown(prefix: str = "/<prefix>") -> str:
    """Render the OSC and ZeroMQ reference tables for the README from the constants above.

    ``prefix`` is shown as given (the caller passes the configured default); several streams
    insert ``/<stream>`` after it.
    """
    lines = [
        "### OSC",
        "",
        "One bundle per hop, timetagged with the record's `wall` time; a bundle larger than "
        "`outputs.osc.max_datagram_bytes` (default 1472, one Ethernet frame) is sent as several "
        "bundles with the same timetag, messages in the same order. With several streams the "
        f"stream name follows the prefix (`{prefix}/<stream>/emotion`). Class, tag and "
        "descriptor names are made address-safe, case kept: characters OSC forbids (space "
        "`#*,/?[]{}`, non-ASCII) become `_` (`Hip Hop` → `Hip_Hop`); a checkpoint whose tags "
        "would collide this way is refused. Only what the loaded checkpoint has is sent: "
        "`tags` with a tags head, `embedding/xy` with an embedding head and its stored "
        "projection, `novelty` with an embedding head, `reference` with a reference library, "
        "`tempo` and `beat` with tempo tracking on. "
        "This is what targets of the default profile, `bundle`, get; each target may have "
        "another profile (see Output profiles below).",
        "",
        "| address | types | arguments | range | unit | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    placeholder = {OSC_INSTRUMENT_CLASS: "<class>", OSC_TAG: "<tag>"}
    for spec in (*OSC_HOP_SPECS, OSC_BEAT, OSC_FAST):
        suffix = spec.suffix.replace("{label}", placeholder.get(spec, "<name>"))
        lines.append(
            f"| `{address(prefix, None, suffix)}` | `{spec.types}` | "
            f"{', '.join(a.name for a in spec.args)} | "
            f"{'; '.join(_fmt_range(a.range) for a in spec.args if a.range)} | "
            f"{', '.join(a.unit for a in spec.args if a.unit)} | {spec.description} |"
        )
    lines += [
        "",
        "Fast lane (`<name>`), one timetagged bundle per frame at the control rate:",
        "",
        "| name | unit | range | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for d in FAST_DESCRIPTORS.values():
        lines.append(f"| `{d.name}` | {d.unit} | {_fmt_range(d.range)} | {d.description} |")
    lines += [
        "",
        "Control input (UDP, no arguments; unknown or malformed messages are counted and "
        "ignored):",
        "",
        "| address | does |",
        "| --- | --- |",
    ]
    for c in CONTROL_COMMANDS:
        lines.append(f"| `{control_address(prefix, c)}` | {_CONTROL_DESCRIPTIONS[c]} |")
    lines.append(
        f"| `{manifest_address(prefix)} {OSC_MANIFEST.types}` (reply) | "
        f"{OSC_MANIFEST.description} |"
    )
    lines += [
        "",
        "The manifest reply: part `i` of `n` carries characters of the JSON text in order "
        "(ASCII: other characters are `\\u` escapes, so a piece may be cut anywhere). A "
        "receiver keeps the pieces by part index; when it holds all `n` it joins them and "
        "parses the JSON. A part 0 arriving while pieces are missing starts a new reply (a "
        "lost datagram: ask again). The parts go out back to back: the bundled model's "
        "manifest is 17 KB in 12 datagrams of at most 1472 bytes with one stream, 54 KB in "
        "38 with four (as one datagram, five streams would not fit UDP at all). "
        "`streamtag.meta` on ZeroMQ carries the same manifest whole.",
        "",
        "#### Output profiles",
        "",
        "Each target in `outputs.osc.targets` has a `profile`:",
        "",
        "| profile | what the target gets |",
        "| --- | --- |",
    ]
    for name, desc in PROFILES.items():
        lines.append(f"| `{name}` | {desc} |")
    lines += [
        "",
        "| address (touchdesigner) | types | arguments | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for spec in NUMBERS_ONLY.values():
        lines.append(
            f"| `{address(prefix, None, spec.suffix)}` | `{spec.types}` | "
            f"{', '.join(a.name for a in spec.args)} | {spec.description} |"
        )
    lines.append(
        f"| `{WEKINATOR_ADDRESS}` (wekinator) | `f…f` | one per input | the target's `inputs` "
        "(record paths) in order, e.g. `[timbre.brightness, emotion.valence, novelty]` → "
        "`/wek/inputs fff` |"
    )
    lines += [
        "",
        "### ZeroMQ",
        "",
        f"Multipart `[topic, JSON]`; subscribe to `{TOPIC_PREFIX}` to get every topic.",
        "",
        "| topic | payload |",
        "| --- | --- |",
    ]
    for topic, desc in ZMQ_TOPICS.items():
        lines.append(f"| `{topic}` | {desc} |")
    lines += [
        "",
        "### WebSocket",
        "",
        f"`ws://<outputs.web.host>:<outputs.web.port>{WS_PATH}` (default "
        f"`ws://127.0.0.1:8090{WS_PATH}`): the ZeroMQ topics above, one JSON text message "
        f'per topic message, `{{"{WS_KEY_TOPIC}": "{TOPIC_ESTIMATE}", "{WS_KEY_DATA}": '
        "{...}}`, where `data` is the very payload ZeroMQ sends on that topic. Choose topics "
        f"by prefix with `?{WS_TOPICS_PARAM}=` (comma-separated; default every topic, "
        f"`{TOPIC_PREFIX}`), e.g. `{WS_PATH}?{WS_TOPICS_PARAM}={TOPIC_ESTIMATE},{TOPIC_FAST}`. "
        f"On connect a client first gets the latest `{TOPIC_META}` (the manifest) and "
        f"`{TOPIC_STATUS}`. What a client sends is ignored. A client that does not keep up "
        "loses the messages that find its queue full (`outputs.web.queue_messages`), counted "
        f"in `{TOPIC_STATUS}` (`dropped`, and `web.dropped`).",
    ]
    return "\n".join(lines) + "\n"


def finite_or_none(value: Any, rng: tuple[float, float] | None) -> float | None:
    """Make a number safe for the wire: finite values pass unchanged; ±inf is clamped to
    ``rng`` when the value has a nominal range; NaN (and ±inf without a range) give None."""
    x = float(value)
    if math.isfinite(x):
        return x
    if math.isinf(x) and rng is not None:
        return rng[1] if x > 0 else rng[0]
    return None


def sanitize(obj: Any, path: str = "") -> tuple[Any, int]:
    """Copy a JSON-ready value so that strict JSON (``allow_nan=False``) accepts it.

    Non-finite numbers go through :func:`finite_or_none` with the nominal range of their
    dotted ``path`` (so ``level_db = -inf`` becomes the floor, NaN becomes null); numpy-like
    scalars become plain ``int``/``float``; tuples become lists.

    Returns:
        (clean copy, number of non-finite values replaced).
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj, 0
    if isinstance(obj, Integral):
        return int(obj), 0
    if isinstance(obj, Real):
        x = float(obj)
        if math.isfinite(x):
            return x, 0
        return finite_or_none(x, value_range(path)), 1
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        bad = 0
        for k, v in obj.items():
            out[str(k)], n = sanitize(v, f"{path}.{k}" if path else str(k))
            bad += n
        return out, bad
    if isinstance(obj, (list, tuple)):
        items = []
        bad = 0
        for v in obj:
            clean, n = sanitize(v, path)
            items.append(clean)
            bad += n
        return items, bad
    # Anything else (e.g. a numpy array) is not part of the record contract: stringify so the
    # publisher keeps going, and the subscriber sees what arrived.
    return str(obj), 0
