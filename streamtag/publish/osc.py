"""OSC over UDP: each hop to every target as its profile wants it, never raising on send.

Layers, bottom up (as in python-osc): :func:`ntp_timetag` and the ``encode_*`` functions turn a
record into datagram bytes (pure, golden-tested); :class:`OscPublisher` owns one connected UDP
socket per target and sends those bytes, counting what fails.

Wire choices (see :mod:`streamtag.publish.wire` for the addresses):

- Hop: one bundle per record, timetag = the record's ``wall`` time [s since the Unix epoch],
  messages in the order emotion, instrument, timbre, tags, embedding/xy, novelty, reference,
  tempo, level, silent. Only heads and fields present in the record are sent. The timetag is in the
  past by the time it arrives, so receivers that schedule bundles (SuperCollider, liblo)
  dispatch at once — provided sender and receiver clocks agree; a receiver whose clock runs
  behind holds bundles by the difference.
- Size: a bundle larger than ``max_datagram_bytes`` (default 1472, the payload of one
  Ethernet frame) is split by :func:`split_bundle` into several bundles with the same timetag,
  messages in order: a fragmented UDP datagram is lost whole if any fragment is, and some
  stacks refuse large ones outright.
- Fast lane (:meth:`OscPublisher.send_fast`): one bundle per frame as well, timetag = the
  frame's wall time, so the four descriptors of a frame arrive together in one datagram. Sent
  50 times a second, so its bytes are built once per stream and only the timetag and values
  are written into a copy (:class:`_FastTemplate`).
- Mappings (:meth:`OscPublisher.send_values`): plain messages of one or more floats, no
  bundle, because their targets are arbitrary user patches, some of which do not unpack
  bundles; to the targets a mapping names, else to every target but ``wekinator`` ones.
- Beat (:meth:`OscPublisher.send_beat`): a bundle of one ``beat i`` message at each beat,
  timetag = the beat's wall-clock time, so a scheduling receiver can place it exactly.
- Profiles (:class:`TargetSpec`, :data:`wire.PROFILES`): the above is ``bundle``, the default.
  ``plain`` sends the same messages one datagram each (hop and fast lane); ``touchdesigner``
  too, with numbers only (``instrument if`` / ``reference if``: indices into the manifest's
  lists, see :meth:`OscPublisher.set_names`); ``wekinator`` gets one ``/wek/inputs`` message
  per hop of its stream (:func:`encode_wekinator`) and nothing else.
- Manifest (:func:`encode_manifest`, used by the control port's ``describe`` reply): ASCII
  JSON cut into ``<prefix>/manifest iis`` messages (part, count, piece) that each fit
  ``max_datagram_bytes``; the 4-stream manifest of the bundled model (54 KB) used to go out as
  one datagram, and with five streams would not fit UDP at all.
- Non-finite values are never sent: NaN skips the messages that carry it, ±inf is clamped to
  the value's nominal range when it has one (``level_db = -inf`` → -160 dBFS), else skipped.
  Each such value is counted in ``stats["nonfinite"]``.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from pythonosc.osc_message_builder import BuildError

from streamtag.logs import RateLimitedLog
from streamtag.publish import wire
from streamtag.publish.mapping import resolve

log = logging.getLogger(__name__)

#: Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_DELTA_S = 2_208_988_800
#: The OSC timetag meaning "immediately" (63 zero bits and a one).
TIMETAG_IMMEDIATELY = 1
_BUNDLE_HEAD = b"#bundle\x00"
#: The largest UDP payload that fits one Ethernet frame (1500 − 20 IPv4 − 8 UDP) [bytes].
DEFAULT_MAX_DATAGRAM_BYTES = 1472
_BUNDLE_HEAD_BYTES = 16  # "#bundle\0" and the timetag

# Internal policy, not user config: how often to retry a target whose name did not resolve, and
# how often to repeat a log line for the same recurring failure.
RESOLVE_RETRY_S = 5.0
LOG_INTERVAL_S = 10.0


def ntp_timetag(wall: float | None) -> int:
    """OSC/NTP 64-bit timetag for ``wall`` [s since the Unix epoch], exact to 2**-32 s.

    python-osc converts through ``wall * 2**32`` in floating point, which rounds differently
    from one float to the next; doing the split by hand keeps golden bytes stable.
    None, non-finite or non-positive times give :data:`TIMETAG_IMMEDIATELY`.
    """
    if wall is None or not math.isfinite(wall) or wall <= 0:
        return TIMETAG_IMMEDIATELY
    sec = math.floor(wall)
    frac = round((wall - sec) * 2**32)  # wall - sec is exact for floats ≥ 1
    if frac >= 2**32:
        sec, frac = sec + 1, 0
    return ((sec + NTP_DELTA_S) << 32) | frac


@dataclass(frozen=True)
class EncodedPacket:
    """One OSC datagram and what it holds."""

    dgram: bytes
    messages: tuple[tuple[str, str], ...]  # (address, type tags) in order
    nonfinite: int = 0  # values clamped or skipped because they were NaN/±inf


@dataclass(frozen=True)
class EncodedMessages:
    """Plain OSC messages, one datagram each, and what they hold."""

    dgrams: tuple[bytes, ...]
    messages: tuple[tuple[str, str], ...]  # (address, type tags) in order
    nonfinite: int = 0


def _osc_string(text: str) -> bytes:
    """OSC 1.0 string: ASCII/UTF-8 bytes, NUL-terminated, padded to a multiple of 4."""
    raw = text.encode()
    return raw + b"\0" * (4 - len(raw) % 4)


@functools.lru_cache(maxsize=4096)
def _message_head(addr: str, types: str) -> bytes:
    """Address and type tag string of a message: the same every hop for each address."""
    return _osc_string(addr) + _osc_string("," + types)


def _message(addr: str, types: str, values: Sequence[Any]) -> bytes:
    # Encoded directly (types f, i, s only): python-osc's builder re-parses every message it
    # builds, which made the 50 Hz fast lane the daemon's largest cost.
    parts = [_message_head(addr, types)]
    for t, v in zip(types, values, strict=True):
        if t == "f":
            parts.append(struct.pack(">f", v))
        elif t == "i":
            parts.append(struct.pack(">i", v))
        elif t == "s":
            parts.append(_osc_string(v))
        else:
            raise ValueError(f"OSC type tag {t!r} is not used by streamtag")
    return b"".join(parts)


@dataclass
class _Packer:
    """Collects messages for one bundle; counts non-finite values once per record field."""

    messages: list[tuple[str, str]] = field(default_factory=list)
    dgrams: list[bytes] = field(default_factory=list)
    values: list[tuple[Any, ...]] = field(default_factory=list)  # each message's arguments
    nonfinite: int = 0

    def number(self, value: Any, path: str) -> float | None:
        """A record number made wire-safe (see :func:`wire.finite_or_none`), or None."""
        if value is None:
            return None
        x = float(value)
        if math.isfinite(x):
            return x
        self.nonfinite += 1
        return wire.finite_or_none(x, wire.value_range(path))

    def add(self, addr: str, types: str, *values: Any) -> None:
        if any(v is None for v in values):
            return
        self.messages.append((addr, types))
        self.dgrams.append(_message(addr, types, values))
        self.values.append(values)

    def bundle(self, wall: float | None) -> EncodedPacket:
        parts = [_BUNDLE_HEAD, struct.pack(">Q", ntp_timetag(wall))]
        for d in self.dgrams:
            parts.append(struct.pack(">i", len(d)))
            parts.append(d)
        return EncodedPacket(b"".join(parts), tuple(self.messages), self.nonfinite)

    def plain(self) -> EncodedMessages:
        return EncodedMessages(tuple(self.dgrams), tuple(self.messages), self.nonfinite)


def _index(names: Sequence[str], name: Any) -> int:
    """Position of ``name`` in ``names``, -1 if absent (or None)."""
    try:
        return names.index(str(name)) if name is not None else -1
    except ValueError:
        return -1


def _pack_record(
    record: Mapping[str, Any], prefix: str, stream: str | None, *, numbers_only: bool = False,
    classes: Sequence[str] | None = None, references: Sequence[str] | None = None,
) -> _Packer:
    """The hop's messages in bundle order. ``numbers_only`` (touchdesigner profile) sends
    ``instrument`` and ``reference`` as ``if`` (index into ``classes`` / ``references``, else
    -1) instead of ``sf``; ``classes`` None: the order of ``instrument.probs``, which is the
    checkpoint's label order (estimate.head_section)."""
    p = _Packer()

    def a(suffix: str) -> str:
        return wire.address(prefix, stream, suffix)

    emo = record.get(wire.HEAD_EMOTION)
    if isinstance(emo, Mapping):
        v = p.number(emo.get(wire.EMOTION_VALENCE), "emotion.valence")
        ar = p.number(emo.get(wire.EMOTION_AROUSAL), "emotion.arousal")
        q = p.number(emo.get(wire.EMOTION_QUADRANT), "emotion.quadrant")
        p.add(a(wire.OSC_EMOTION.suffix), wire.OSC_EMOTION.types, v, ar)
        p.add(a(wire.OSC_EMOTION_VALENCE.suffix), wire.OSC_EMOTION_VALENCE.types, v)
        p.add(a(wire.OSC_EMOTION_AROUSAL.suffix), wire.OSC_EMOTION_AROUSAL.types, ar)
        p.add(a(wire.OSC_EMOTION_QUADRANT.suffix), wire.OSC_EMOTION_QUADRANT.types,
              None if q is None else int(q))
    inst = record.get(wire.HEAD_INSTRUMENT)
    if isinstance(inst, Mapping):
        top = inst.get(wire.INSTRUMENT_TOP)
        conf = p.number(inst.get(wire.INSTRUMENT_CONFIDENCE), "instrument.confidence")
        probs = inst.get(wire.INSTRUMENT_PROBS)
        if numbers_only:
            names = classes if classes is not None else (
                [str(c) for c in probs] if isinstance(probs, Mapping) else [])
            p.add(a(wire.OSC_INSTRUMENT_INDEX.suffix), wire.OSC_INSTRUMENT_INDEX.types,
                  None if top is None else _index(names, top), conf)
        else:
            p.add(a(wire.OSC_INSTRUMENT.suffix), wire.OSC_INSTRUMENT.types,
                  None if top is None else str(top), conf)
        if isinstance(probs, Mapping):
            spec = wire.OSC_INSTRUMENT_CLASS
            for cls, prob in probs.items():
                x = p.number(prob, f"instrument.probs.{cls}")
                p.add(a(spec.suffix.format(label=wire.osc_name(str(cls)))), spec.types, x)
    # One float address per named value: timbre descriptors and tag probabilities alike.
    for head, spec in ((wire.HEAD_TIMBRE, wire.OSC_TIMBRE), (wire.HEAD_TAGS, wire.OSC_TAG)):
        section = record.get(head)
        if isinstance(section, Mapping):
            for name, value in section.items():
                x = p.number(value, f"{head}.{name}")
                p.add(a(spec.suffix.format(label=wire.osc_name(str(name)))), spec.types, x)
    emb = record.get(wire.HEAD_EMBEDDING)
    xy = emb.get(wire.EMBEDDING_XY) if isinstance(emb, Mapping) else None
    if xy is not None:
        path = f"{wire.HEAD_EMBEDDING}.{wire.EMBEDDING_XY}"
        x, y = xy  # exactly two values, or the record is malformed (ValueError)
        p.add(a(wire.OSC_EMBEDDING_XY.suffix), wire.OSC_EMBEDDING_XY.types,
              p.number(x, path), p.number(y, path))
    if wire.KEY_NOVELTY in record:
        p.add(a(wire.OSC_NOVELTY.suffix), wire.OSC_NOVELTY.types,
              p.number(record[wire.KEY_NOVELTY], wire.KEY_NOVELTY))
    ref = record.get(wire.KEY_REFERENCE)
    if isinstance(ref, Mapping):
        name = ref.get(wire.REFERENCE_NAME)
        dist = p.number(ref.get(wire.REFERENCE_DISTANCE),
                        f"{wire.KEY_REFERENCE}.{wire.REFERENCE_DISTANCE}")
        # No sound yet (distance null): nothing to say; an unknown sound sends "" (or -1).
        if numbers_only:
            p.add(a(wire.OSC_REFERENCE_INDEX.suffix), wire.OSC_REFERENCE_INDEX.types,
                  _index(references or (), name), dist)
        else:
            p.add(a(wire.OSC_REFERENCE.suffix), wire.OSC_REFERENCE.types,
                  "" if name is None else str(name), dist)
        known = ref.get(wire.REFERENCE_KNOWN)
        p.add(a(wire.OSC_REFERENCE_KNOWN.suffix), wire.OSC_REFERENCE_KNOWN.types,
              None if known is None else int(bool(known)))
    tempo = record.get(wire.KEY_TEMPO)
    if isinstance(tempo, Mapping):
        p.add(a(wire.OSC_TEMPO.suffix), wire.OSC_TEMPO.types,
              p.number(tempo.get(wire.TEMPO_BPM), f"{wire.KEY_TEMPO}.{wire.TEMPO_BPM}"),
              p.number(tempo.get(wire.TEMPO_CONFIDENCE),
                       f"{wire.KEY_TEMPO}.{wire.TEMPO_CONFIDENCE}"))
    level = p.number(record.get(wire.KEY_LEVEL_DB), wire.KEY_LEVEL_DB)
    p.add(a(wire.OSC_LEVEL.suffix), wire.OSC_LEVEL.types, level)
    silent = record.get(wire.KEY_SILENT)
    p.add(a(wire.OSC_SILENT.suffix), wire.OSC_SILENT.types,
          None if silent is None else int(bool(silent)))
    return p


def _wall(record: Mapping[str, Any]) -> float | None:
    wall = record.get(wire.KEY_WALL)
    return None if wall is None else float(wall)


def encode_record(record: Mapping[str, Any], prefix: str, stream: str | None) -> EncodedPacket:
    """Encode one estimate record as the hop bundle (profile ``bundle``).

    Args:
        record: an estimate record (README, "The estimate record"); absent heads are not sent.
        prefix: OSC prefix, e.g. ``/streamtag``.
        stream: address-safe stream part (several streams) or None (single stream).

    Raises:
        TypeError, ValueError: a field has a type the record contract does not allow.
    """
    return _pack_record(record, prefix, stream).bundle(_wall(record))


def record_values(record: Mapping[str, Any], prefix: str, stream: str | None
                  ) -> dict[str, tuple[Any, ...]]:
    """address → arguments of each message the hop bundle of ``record`` carries (profile
    ``bundle``; see :func:`encode_record`), e.g. for OSCQuery's VALUE.

    Raises:
        TypeError, ValueError: a field has a type the record contract does not allow.
    """
    p = _pack_record(record, prefix, stream)
    return {addr: v for (addr, _), v in zip(p.messages, p.values, strict=True)}


def fast_values(prefix: str, stream: str | None, values: Mapping[str, float]
                ) -> dict[str, tuple[Any, ...]]:
    """address → arguments of each fast-lane message of one frame (see :func:`encode_fast`)."""
    p = _pack_fast(prefix, stream, values)
    return {addr: v for (addr, _), v in zip(p.messages, p.values, strict=True)}


def encode_record_plain(
    record: Mapping[str, Any], prefix: str, stream: str | None, *, numbers_only: bool = False,
    classes: Sequence[str] | None = None, references: Sequence[str] | None = None,
) -> EncodedMessages:
    """Encode one estimate record as plain messages, one datagram each, in bundle order:
    profile ``plain``, or ``touchdesigner`` with ``numbers_only`` (see :func:`_pack_record`;
    ``classes`` / ``references``: the manifest's lists the indices point into).

    Raises:
        TypeError, ValueError: a field has a type the record contract does not allow.
    """
    return _pack_record(record, prefix, stream, numbers_only=numbers_only, classes=classes,
                        references=references).plain()


def encode_wekinator(
    record: Mapping[str, Any], inputs: Sequence[str], address: str = wire.WEKINATOR_ADDRESS
) -> EncodedPacket | None:
    """One Wekinator input message: ``address`` with one float per record path of ``inputs``
    (``timbre.brightness``, ``embedding.xy.0``, ``silent`` → 0/1), in order.

    Returns None when one of them is absent, not a number or not finite: Wekinator expects
    the same number of floats in every message, so a partial one would be misread.
    """
    values = []
    for path in inputs:
        value = resolve(record, path)
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        values.append(float(value))
    types = "f" * len(values)
    return EncodedPacket(_message(address, types, values), ((address, types),))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def encode_values(addr: str, values: Sequence[float]) -> EncodedPacket:
    """One plain message of ``len(values)`` floats (mappings). Non-finite values give an
    empty ``dgram`` (nothing is sent; a message with a value missing would be misread)."""
    xs = [float(v) for v in values]
    if not all(math.isfinite(x) for x in xs):
        return EncodedPacket(b"", (), sum(not math.isfinite(x) for x in xs))
    types = "f" * len(xs)
    return EncodedPacket(_message(addr, types, xs), ((addr, types),))


def manifest_text(manifest: Mapping[str, Any] | str) -> str:
    """The manifest as sent over OSC: strict, compact JSON in ASCII (other characters as
    ``\\uXXXX``), so it can be cut into pieces anywhere. A str is taken as JSON already and
    only re-escaped to ASCII if needed."""
    if isinstance(manifest, str):
        return manifest if manifest.isascii() else json.dumps(json.loads(manifest))
    clean, _ = wire.sanitize(manifest)
    return json.dumps(clean, allow_nan=False, ensure_ascii=True, separators=(",", ":"))


def encode_manifest(
    manifest: Mapping[str, Any] | str, prefix: str,
    max_bytes: int = DEFAULT_MAX_DATAGRAM_BYTES,
) -> list[bytes]:
    """The manifest as ``<prefix>/manifest iis`` messages (part, count, piece of JSON text),
    each datagram at most ``max_bytes`` [bytes]; see :data:`wire.OSC_MANIFEST`.

    Joining the pieces of parts 0 … count−1 gives :func:`manifest_text`.

    Raises:
        ValueError: ``max_bytes`` leaves no room for text after the address and arguments.
    """
    addr = wire.manifest_address(prefix)
    types = wire.OSC_MANIFEST.types
    fixed = len(_message_head(addr, types)) + 8  # two int32
    # A string of L bytes takes (L // 4 + 1) * 4 on the wire (NUL, padding).
    room = 4 * ((max_bytes - fixed) // 4) - 1
    if room < 1:
        raise ValueError(f"max_datagram_bytes {max_bytes} leaves no room for the manifest "
                         f"after its address {addr!r}")
    text = manifest_text(manifest)
    pieces = [text[i : i + room] for i in range(0, len(text), room)] or [""]
    return [_message(addr, types, [k, len(pieces), piece]) for k, piece in enumerate(pieces)]


def _pack_fast(prefix: str, stream: str | None, values: Mapping[str, float]) -> _Packer:
    p = _Packer()
    for name, value in values.items():
        x = p.number(value, f"fast.{name}")
        p.add(_fast_address(prefix, stream, name), wire.OSC_FAST.types, x)
    return p


def encode_fast(
    prefix: str, stream: str | None, wall: float | None, values: Mapping[str, float]
) -> EncodedPacket:
    """Encode one fast-lane frame: a bundle of ``<prefix>[/<stream>]/fast/<name> f``,
    timetagged with ``wall`` [s since the Unix epoch]. Non-finite values are skipped."""
    return _pack_fast(prefix, stream, values).bundle(wall)


def _pack_beat(prefix: str, stream: str | None, count: int) -> _Packer:
    p = _Packer()
    p.add(wire.address(prefix, stream, wire.OSC_BEAT.suffix), wire.OSC_BEAT.types, int(count))
    return p


def encode_beat(prefix: str, stream: str | None, wall: float | None, count: int) -> EncodedPacket:
    """Encode one beat: a bundle of ``<prefix>[/<stream>]/beat i`` (the beat counter),
    timetagged with the beat's ``wall`` time [s since the Unix epoch]."""
    return _pack_beat(prefix, stream, count).bundle(wall)


@functools.lru_cache(maxsize=256)
def _fast_address(prefix: str, stream: str | None, name: str) -> str:
    # 50 bundles a second per stream: build each address string once.
    return wire.address(prefix, stream, wire.OSC_FAST.suffix.format(label=wire.osc_name(name)))


def split_bundle(dgram: bytes, max_bytes: int) -> list[bytes]:
    """A bundle datagram as bundles of at most ``max_bytes`` [bytes] each, with the same
    timetag and the elements in the same order (``[dgram]`` if it fits, or is not a bundle).

    Elements are never cut: one element larger than the limit on its own goes alone in a
    bundle that exceeds it.
    """
    if len(dgram) <= max_bytes or not dgram.startswith(_BUNDLE_HEAD):
        return [dgram]
    head = dgram[:_BUNDLE_HEAD_BYTES]
    out: list[bytes] = []
    parts: list[bytes] = []
    size = _BUNDLE_HEAD_BYTES
    i = _BUNDLE_HEAD_BYTES
    while i + 4 <= len(dgram):
        (n,) = struct.unpack_from(">i", dgram, i)
        element = dgram[i : i + 4 + n]
        if parts and size + len(element) > max_bytes:
            out.append(head + b"".join(parts))
            parts, size = [], _BUNDLE_HEAD_BYTES
        parts.append(element)
        size += len(element)
        i += 4 + n
    if parts:
        out.append(head + b"".join(parts))
    return out


_TIMETAG = struct.Struct(">Q")
_FLOAT = struct.Struct(">f")


class _FastTemplate:
    """The fast-lane bundle of one stream and list of names, encoded once with zeros; a frame
    only writes its timetag and values into a copy (same bytes as :func:`encode_fast`)."""

    def __init__(self, prefix: str, stream: str | None, names: tuple[str, ...]) -> None:
        p = _Packer()
        for name in names:
            p.add(_fast_address(prefix, stream, name), wire.OSC_FAST.types, 0.0)
        packet = p.bundle(None)
        self.dgram = packet.dgram
        self.messages = packet.messages
        # Each message ends with its one float argument.
        ends = itertools.accumulate(4 + len(d) for d in p.dgrams)
        self.offsets = tuple(_BUNDLE_HEAD_BYTES + end - 4 for end in ends)

    def fill(self, wall: float | None, values: Sequence[float]) -> bytearray:
        """The datagram of one frame: timetag ``wall`` [s since the Unix epoch], ``values``
        (finite) in the template's name order."""
        buf = bytearray(self.dgram)
        _TIMETAG.pack_into(buf, 8, ntp_timetag(wall))
        for at, v in zip(self.offsets, values, strict=True):
            _FLOAT.pack_into(buf, at, v)
        return buf


def encode_message(addr: str, value: float | int | str | bool) -> EncodedPacket:
    """Encode one plain message with a single argument: ``str`` → ``s``, ``bool``/``int`` →
    ``i``, anything else → ``f``. A non-finite float gives an empty ``dgram``."""
    if isinstance(value, str):
        return EncodedPacket(_message(addr, "s", [value]), ((addr, "s"),))
    if isinstance(value, (bool, int)):
        return EncodedPacket(_message(addr, "i", [int(value)]), ((addr, "i"),))
    x = float(value)
    if not math.isfinite(x):
        return EncodedPacket(b"", (), 1)
    return EncodedPacket(_message(addr, "f", [x]), ((addr, "f"),))


@dataclass(frozen=True)
class TargetSpec:
    """One OSC target and what it gets (see :data:`wire.PROFILES`).

    Args:
        host, port: where to send (port 1..65535).
        profile: ``bundle`` (default), ``plain``, ``touchdesigner`` or ``wekinator``.
        name: how mappings refer to it (``target:`` in the config); None: unnamed.
        inputs: wekinator only: the record paths sent as ``/wek/inputs`` floats, in order.
        stream: wekinator only: the stream whose records drive it; None: the first stream.

    Raises:
        ValueError: naming what is wrong.
    """

    host: str
    port: int
    profile: str = wire.PROFILE_BUNDLE
    name: str | None = None
    inputs: tuple[str, ...] = ()
    stream: str | None = None

    def __post_init__(self) -> None:
        where = f"OSC target {self.host}:{self.port}"
        if not 1 <= int(self.port) <= 65535:
            raise ValueError(f"{where}: port must be in 1..65535")
        if self.profile not in wire.PROFILES:
            raise ValueError(f"{where}: profile must be one of {', '.join(wire.PROFILES)}, "
                             f"got {self.profile!r}")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        wek = self.profile == wire.PROFILE_WEKINATOR
        if wek and not self.inputs:
            raise ValueError(f"{where}: profile wekinator needs inputs (record paths)")
        if not wek and (self.inputs or self.stream is not None):
            raise ValueError(f"{where}: inputs and stream are for profile wekinator only")

    def describe(self) -> dict[str, Any]:
        """This target as a manifest entry (``osc.targets``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        out: dict[str, Any] = {"target": f"{host}:{self.port}", "name": self.name,
                               "profile": self.profile}
        if self.profile == wire.PROFILE_WEKINATOR:
            out.update(address=wire.WEKINATOR_ADDRESS, types="f" * len(self.inputs),
                       inputs=list(self.inputs), stream=self.stream)
        return out


@dataclass
class _Target:
    host: str
    port: int
    spec: TargetSpec
    sock: socket.socket | None = None
    resolving: bool = False
    next_retry_s: float = 0.0
    sent: int = 0
    errors: int = 0
    dropped: int = 0  # datagrams not sent because the host is not resolved (yet)
    resolve_failures: int = 0

    @property
    def name(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class OscPublisher:
    """Send estimate records, fast-lane frames and mapped values to OSC targets over UDP.

    Each target gets its own *connected* UDP socket, resolved once at construction: connecting
    makes the kernel report ICMP "port unreachable" for that target (as ECONNREFUSED on a later
    send) instead of swallowing it, so errors are counted per target. A host that does not
    resolve is logged and counted; its messages are dropped (counted) and resolution is retried
    every ``resolve_retry_s`` on a background thread, so a slow DNS never stalls the caller.
    Sockets are non-blocking: a full send buffer is an error counted, not a wait.

    No method raises on a send problem; see :attr:`stats`. Thread-safe: records and fast-lane
    frames may be sent from different threads.

    Each target has a profile (:class:`TargetSpec`, :data:`wire.PROFILES`): ``bundle``
    targets get each hop and fast-lane frame as one bundle, ``plain`` ones the same messages
    one datagram each, ``touchdesigner`` ones those with numbers only, ``wekinator`` ones one
    ``/wek/inputs`` message per hop. A record is encoded once per profile in use.

    Args:
        targets: :class:`TargetSpec` or (host, port) pairs (profile ``bundle``).
        prefix: OSC address prefix, e.g. ``/streamtag`` (no trailing slash).
        streams: all stream names; with more than one, addresses carry the record's stream
            (``/streamtag/<stream>/emotion``).
        resolve_retry_s: delay [s] between resolution attempts for an unresolved host.
        log_interval_s: minimum delay [s] between two log lines about the same failure.
        max_datagram_bytes: larger bundles are split (see :func:`split_bundle`) [bytes], >= 64.

    Raises:
        ValueError: a target or argument is invalid, naming it.
    """

    def __init__(
        self,
        targets: Sequence[tuple[str, int] | TargetSpec],
        prefix: str,
        streams: Sequence[str] = (),
        *,
        resolve_retry_s: float = RESOLVE_RETRY_S,
        log_interval_s: float = LOG_INTERVAL_S,
        max_datagram_bytes: int = DEFAULT_MAX_DATAGRAM_BYTES,
    ) -> None:
        if max_datagram_bytes < 64:
            raise ValueError(f"max_datagram_bytes must be >= 64, got {max_datagram_bytes}")
        self._max_bytes = int(max_datagram_bytes)
        self._fast_templates: dict[tuple[str, tuple[str, ...]], _FastTemplate] = {}
        self._split = 0
        self._prefix = wire.check_prefix(prefix)
        self._streams = tuple(streams)
        specs = [t if isinstance(t, TargetSpec) else TargetSpec(str(t[0]), int(t[1]))
                 for t in targets]
        names = [t.name for t in specs if t.name is not None]
        if len(set(names)) != len(names):
            raise ValueError(f"OSC targets: names must differ, got {names}")
        for t in specs:
            if t.stream is not None and self._streams and t.stream not in self._streams:
                raise ValueError(f"OSC target {t.host}:{t.port}: stream {t.stream!r} is not "
                                 f"one of {', '.join(self._streams)}")
        self._targets = [_Target(t.host, int(t.port), t) for t in specs]
        self._by_profile: dict[str, list[_Target]] = {
            profile: [t for t in self._targets if t.spec.profile == profile]
            for profile in wire.PROFILES
        }
        # Targets that take the per-hop addresses as plain messages.
        self._plain = (self._by_profile[wire.PROFILE_PLAIN]
                       + self._by_profile[wire.PROFILE_TOUCHDESIGNER])
        # Mappings without a target: every target but Wekinator's, which expects one message.
        self._mapping_default = [t for t in self._targets
                                 if t.spec.profile != wire.PROFILE_WEKINATOR]
        self._by_name = {t.spec.name: t for t in self._targets if t.spec.name is not None}
        self._classes: tuple[str, ...] | None = None
        self._references: tuple[str, ...] | None = None
        self._retry_s = resolve_retry_s
        self._rlog = RateLimitedLog(log, log_interval_s)
        self._lock = threading.Lock()
        self._closed = False
        self._nonfinite = 0
        self._bad = 0
        self._incomplete = 0
        for t in self._targets:
            self._resolve(t)

    def set_names(self, classes: Sequence[str] | None, references: Sequence[str] | None) -> None:
        """The manifest's instrument ``classes`` and ``references``: what the touchdesigner
        profile's indices point into (call again after a reload). None: classes in the order
        of the record's ``instrument.probs``; references unknown (index -1)."""
        self._classes = None if classes is None else tuple(classes)
        self._references = None if references is None else tuple(references)

    def describe_targets(self) -> list[dict[str, Any]]:
        """Every target as a manifest entry (:meth:`TargetSpec.describe`)."""
        return [t.spec.describe() for t in self._targets]

    # -- resolution -----------------------------------------------------------------------

    def _resolve(self, t: _Target) -> None:
        """Resolve and connect ``t``; may block on DNS, so only at construction or on a
        resolver thread."""
        sock = None
        try:
            infos = socket.getaddrinfo(t.host, t.port, type=socket.SOCK_DGRAM)
            # IPv4 first: "localhost" often resolves to ::1 first, while most OSC receivers
            # (python-osc, Pd, Max) listen on IPv4 only and would never see our packets.
            infos.sort(key=lambda info: info[0] != socket.AF_INET)
            family, type_, proto, _, sockaddr = infos[0]
            sock = socket.socket(family, type_, proto)
            sock.setblocking(False)
            sock.connect(sockaddr)  # UDP connect only sets the peer; may fail: no route
        except (OSError, UnicodeError, OverflowError) as e:
            if sock is not None:
                sock.close()
            with self._lock:
                t.resolve_failures += 1
                t.resolving = False
                t.next_retry_s = time.monotonic() + self._retry_s
            self._rlog.log(
                f"resolve {t.name}", logging.WARNING,
                "OSC target %s: cannot resolve or reach (%s); its messages are dropped, "
                "retrying every %g s", t.name, e, self._retry_s,
            )
            return
        with self._lock:
            t.resolving = False
            if self._closed:
                sock.close()
                return
            t.sock = sock
        log.info("OSC target %s: sending to %s", t.name, sockaddr)

    def _start_resolver(self, t: _Target) -> None:
        # Called with self._lock held.
        t.resolving = True
        threading.Thread(
            target=self._resolve, args=(t,), name=f"osc-resolve-{t.name}", daemon=True
        ).start()

    # -- sending --------------------------------------------------------------------------

    def _send(self, dgram: bytes | bytearray, targets: Sequence[_Target] | None = None) -> None:
        """Send one datagram to ``targets`` (None: every target)."""
        now = time.monotonic()
        failures: list[tuple[_Target, OSError]] = []
        with self._lock:
            if self._closed:
                return
            for t in self._targets if targets is None else targets:
                if t.sock is None:
                    t.dropped += 1
                    if not t.resolving and now >= t.next_retry_s:
                        self._start_resolver(t)
                    continue
                try:
                    t.sock.send(dgram)
                    t.sent += 1
                except OSError as e:
                    t.errors += 1
                    failures.append((t, e))
        for t, e in failures:
            self._rlog.log(
                f"send {t.name} {e.errno}", logging.WARNING,
                "OSC target %s: send failed (%s); still sending", t.name, e,
            )

    def _send_bundle(self, dgram: bytes | bytearray, targets: Sequence[_Target]) -> None:
        """Send a bundle, split into several if it is larger than the datagram limit."""
        if len(dgram) <= self._max_bytes:
            self._send(dgram, targets)
            return
        parts = split_bundle(bytes(dgram), self._max_bytes)
        with self._lock:
            self._split += 1
        for part in parts:
            self._send(part, targets)

    def _count(self, packet: EncodedPacket | EncodedMessages | _Packer) -> None:
        if packet.nonfinite:
            with self._lock:
                self._nonfinite += packet.nonfinite

    def _stream(self, stream: str | None) -> str | None:
        return wire.stream_part(self._streams, stream) if stream else None

    def _bad_record(self, record: Any, e: Exception) -> None:
        with self._lock:
            self._bad += 1
        self._rlog.log("bad record", logging.ERROR,
                       "OSC: record seq=%s not sent, a field has a wrong type: %s",
                       record.get(wire.KEY_SEQ) if isinstance(record, Mapping) else "?", e)

    def publish(self, record: Mapping[str, Any]) -> None:
        """Send one estimate record to every target as its profile wants it. Never raises."""
        bundles = self._by_profile[wire.PROFILE_BUNDLE]
        plain = self._by_profile[wire.PROFILE_PLAIN]
        touch = self._by_profile[wire.PROFILE_TOUCHDESIGNER]
        counted = False  # a non-finite value is counted once per record, not per profile
        try:
            stream = self._stream(record.get(wire.KEY_STREAM))
            if bundles or plain:
                packer = _pack_record(record, self._prefix, stream)
                self._count(packer)
                counted = True
                if bundles and packer.messages:
                    self._send_bundle(packer.bundle(_wall(record)).dgram, bundles)
                for dgram in packer.dgrams if plain else ():
                    self._send(dgram, plain)
            if touch:
                numbers = encode_record_plain(record, self._prefix, stream, numbers_only=True,
                                              classes=self._classes,
                                              references=self._references)
                if not counted:
                    self._count(numbers)
                for dgram in numbers.dgrams:
                    self._send(dgram, touch)
        except (TypeError, ValueError, AttributeError, BuildError) as e:
            self._bad_record(record, e)
            return
        for t in self._by_profile[wire.PROFILE_WEKINATOR]:
            self._send_wekinator(t, record)

    def _send_wekinator(self, t: _Target, record: Mapping[str, Any]) -> None:
        want = t.spec.stream if t.spec.stream is not None else (
            self._streams[0] if self._streams else None)
        if want is not None and record.get(wire.KEY_STREAM) != want:
            return
        packet = encode_wekinator(record, t.spec.inputs)
        if packet is None:
            with self._lock:
                self._incomplete += 1
            missing = [p for p in t.spec.inputs if not _is_number(resolve(record, p))]
            self._rlog.log(f"incomplete {t.name}", logging.WARNING,
                           "OSC target %s (wekinator): hop not sent, no finite number at %s",
                           t.name, ", ".join(missing))
            return
        self._send(packet.dgram, [t])

    def send_fast(self, stream: str, wall: float, values: Mapping[str, float]) -> None:
        """Send one fast-lane frame (``/fast/<name> f`` for each of ``values``): one bundle
        timetagged ``wall`` [s since the Unix epoch] to ``bundle`` targets, one message per
        value to ``plain`` and ``touchdesigner`` targets, nothing to ``wekinator`` ones.
        Never raises."""
        bundles = self._by_profile[wire.PROFILE_BUNDLE]
        numbers = tuple(values.values())
        if bundles and all(isinstance(v, float) and math.isfinite(v) for v in numbers):
            key = (stream, tuple(values))
            template = self._fast_templates.get(key)
            if template is None:
                try:
                    template = _FastTemplate(self._prefix, self._stream(stream), key[1])
                except (TypeError, ValueError) as e:
                    self._bad_fast(e)
                    return
                self._fast_templates[key] = template
            self._send_bundle(template.fill(wall, numbers), bundles)
            bundles = []
        if not (bundles or self._plain):
            return
        try:  # non-finite values (skipped or clamped one by one), or plain targets
            packer = _pack_fast(self._prefix, self._stream(stream), values)
        except (TypeError, ValueError, AttributeError, BuildError) as e:
            self._bad_fast(e)
            return
        self._count(packer)
        if bundles and packer.messages:
            self._send_bundle(packer.bundle(wall).dgram, bundles)
        for dgram in packer.dgrams if self._plain else ():
            self._send(dgram, self._plain)

    def _bad_fast(self, e: Exception) -> None:
        with self._lock:
            self._bad += 1
        self._rlog.log("bad fast", logging.ERROR, "OSC: fast-lane frame not sent: %s", e)

    def _mapping_targets(self, names: Sequence[str] | None) -> list[_Target]:
        if names is None:
            return self._mapping_default
        out = []
        for name in names:
            t = self._by_name.get(name)
            if t is None:  # the config check names these; counted if one slips through
                with self._lock:
                    self._bad += 1
                self._rlog.log(f"no target {name}", logging.ERROR,
                               "OSC: no target named %r for a mapping", name)
            else:
                out.append(t)
        return out

    def send_beat(self, stream: str, wall: float, count: int) -> None:
        """Send one beat (``/beat i``, the counter): a bundle timetagged ``wall`` [s since the
        Unix epoch], the beat's time, to ``bundle`` targets; the plain message to ``plain`` and
        ``touchdesigner`` targets (a number: fine for both); nothing to ``wekinator`` ones.
        Never raises."""
        try:
            packer = _pack_beat(self._prefix, self._stream(stream), count)
        except (TypeError, ValueError, BuildError) as e:
            with self._lock:
                self._bad += 1
            self._rlog.log("bad beat", logging.ERROR, "OSC: beat not sent: %s", e)
            return
        self._count(packer)
        bundles = self._by_profile[wire.PROFILE_BUNDLE]
        if bundles:
            self._send_bundle(packer.bundle(wall).dgram, bundles)
        for dgram in packer.dgrams if self._plain else ():
            self._send(dgram, self._plain)

    def send_raw(self, address: str, value: float | int | str | bool) -> None:
        """Send one plain message ``address value`` to every target but ``wekinator`` ones.
        A non-finite value is counted and not sent. Never raises."""
        self._send_plain(address, lambda: encode_message(address, value), None)

    def send_values(self, address: str, values: Sequence[float],
                    targets: Sequence[str] | None = None) -> None:
        """Send one plain message ``address f…f`` (a mapping's values) to the targets named
        ``targets`` (None: every target but ``wekinator`` ones). A non-finite value is counted
        and the message not sent. Never raises."""
        self._send_plain(address, lambda: encode_values(address, values), targets)

    def _send_plain(self, address: str, encode: Callable[[], EncodedPacket],
                    targets: Sequence[str] | None) -> None:
        try:
            packet = encode()
        except (TypeError, ValueError, BuildError) as e:
            with self._lock:
                self._bad += 1
            self._rlog.log(f"bad raw {address}", logging.ERROR,
                           "OSC: message to %s not sent: %s", address, e)
            return
        self._count(packet)
        if packet.messages:
            self._send(packet.dgram, self._mapping_targets(targets))

    # -- state ----------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since construction: totals ``sent`` (datagrams × targets), ``errors``
        (failed sends), ``dropped`` (not sent: host unresolved), ``nonfinite`` (values
        clamped or skipped), ``bad`` (records/frames not encodable), ``split`` (bundles sent
        as several because they exceeded ``max_datagram_bytes``), ``incomplete`` (hops not
        sent to a wekinator target: an input missing) and per target ``targets[<host:port>]``
        = {profile, sent, errors, dropped, resolve_failures, resolved}."""
        with self._lock:
            per = {
                t.name: {"profile": t.spec.profile, "sent": t.sent, "errors": t.errors,
                         "dropped": t.dropped, "resolve_failures": t.resolve_failures,
                         "resolved": t.sock is not None}
                for t in self._targets
            }
            return {
                "sent": sum(t.sent for t in self._targets),
                "errors": sum(t.errors for t in self._targets),
                "dropped": sum(t.dropped for t in self._targets),
                "nonfinite": self._nonfinite,
                "bad": self._bad,
                "split": self._split,
                "incomplete": self._incomplete,
                "targets": per,
            }

    def close(self) -> None:
        """Close every socket; later sends are ignored. Idempotent."""
        with self._lock:
            self._closed = True
            for t in self._targets:
                if t.sock is not None:
                    t.sock.close()
                    t.sock = None

    def __enter__(self) -> OscPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
