"""OSC over UDP: one timetagged bundle per hop to every target, never raising on send.

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
- Beat (:meth:`OscPublisher.send_beat`): a bundle of one ``beat i`` message at each beat,
  timetag = the beat's wall-clock time, so a scheduling receiver can place it exactly.
- Mappings (:meth:`OscPublisher.send_raw`): plain messages, no bundle, because their targets
  are arbitrary user patches, some of which (e.g. Pd's ``oscparse``) do not unpack bundles.
- Non-finite values are never sent: NaN skips the messages that carry it, ±inf is clamped to
  the value's nominal range when it has one (``level_db = -inf`` → -160 dBFS), else skipped.
  Each such value is counted in ``stats["nonfinite"]``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import socket
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from pythonosc.osc_message_builder import BuildError

from streamtag.publish import wire
from streamtag.publish.ratelimit import RateLimitedLog

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

    def bundle(self, wall: float | None) -> EncodedPacket:
        parts = [_BUNDLE_HEAD, struct.pack(">Q", ntp_timetag(wall))]
        for d in self.dgrams:
            parts.append(struct.pack(">i", len(d)))
            parts.append(d)
        return EncodedPacket(b"".join(parts), tuple(self.messages), self.nonfinite)


def encode_record(record: Mapping[str, Any], prefix: str, stream: str | None) -> EncodedPacket:
    """Encode one estimate record as the hop bundle.

    Args:
        record: an estimate record (DESIGN.md); absent heads are simply not sent.
        prefix: OSC prefix, e.g. ``/streamtag``.
        stream: address-safe stream part (several streams) or None (single stream).

    Raises:
        TypeError, ValueError: a field has a type the record contract does not allow.
    """
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
        p.add(a(wire.OSC_INSTRUMENT.suffix), wire.OSC_INSTRUMENT.types,
              None if top is None else str(top), conf)
        probs = inst.get(wire.INSTRUMENT_PROBS)
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
        # No sound yet (distance null): nothing to say; an unknown sound sends "".
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
    wall = record.get(wire.KEY_WALL)
    return p.bundle(None if wall is None else float(wall))


def encode_fast(
    prefix: str, stream: str | None, wall: float | None, values: Mapping[str, float]
) -> EncodedPacket:
    """Encode one fast-lane frame: a bundle of ``<prefix>[/<stream>]/fast/<name> f``,
    timetagged with ``wall`` [s since the Unix epoch]. Non-finite values are skipped."""
    p = _Packer()
    for name, value in values.items():
        x = p.number(value, f"fast.{name}")
        p.add(_fast_address(prefix, stream, name), wire.OSC_FAST.types, x)
    return p.bundle(wall)


def encode_beat(prefix: str, stream: str | None, wall: float | None, count: int) -> EncodedPacket:
    """Encode one beat: a bundle of ``<prefix>[/<stream>]/beat i`` (the beat counter),
    timetagged with the beat's ``wall`` time [s since the Unix epoch]."""
    p = _Packer()
    p.add(wire.address(prefix, stream, wire.OSC_BEAT.suffix), wire.OSC_BEAT.types, int(count))
    return p.bundle(wall)


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


@dataclass
class _Target:
    host: str
    port: int
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

    Args:
        targets: (host, port) pairs; port 1..65535.
        prefix: OSC address prefix, e.g. ``/streamtag`` (no trailing slash).
        streams: all stream names; with more than one, addresses carry the record's stream
            (``/streamtag/<stream>/emotion``).
        resolve_retry_s: delay [s] between resolution attempts for an unresolved host.
        log_interval_s: minimum delay [s] between two log lines about the same failure.
        max_datagram_bytes: larger bundles are split (see :func:`split_bundle`) [bytes], >= 64.
    """

    def __init__(
        self,
        targets: Sequence[tuple[str, int]],
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
        for host, port in targets:
            if not 1 <= int(port) <= 65535:
                raise ValueError(f"OSC target {host}:{port}: port must be in 1..65535")
        self._targets = [_Target(str(h), int(p)) for h, p in targets]
        self._retry_s = resolve_retry_s
        self._rlog = RateLimitedLog(log, log_interval_s)
        self._lock = threading.Lock()
        self._closed = False
        self._nonfinite = 0
        self._bad = 0
        for t in self._targets:
            self._resolve(t)

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

    def _send(self, dgram: bytes | bytearray) -> None:
        now = time.monotonic()
        failures: list[tuple[_Target, OSError]] = []
        with self._lock:
            if self._closed:
                return
            for t in self._targets:
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

    def _send_bundle(self, dgram: bytes | bytearray) -> None:
        """Send a bundle, split into several if it is larger than the datagram limit."""
        if len(dgram) <= self._max_bytes:
            self._send(dgram)
            return
        parts = split_bundle(bytes(dgram), self._max_bytes)
        with self._lock:
            self._split += 1
        for part in parts:
            self._send(part)

    def _count(self, packet: EncodedPacket) -> None:
        if packet.nonfinite:
            with self._lock:
                self._nonfinite += packet.nonfinite

    def _stream(self, stream: str | None) -> str | None:
        return wire.stream_part(self._streams, stream) if stream else None

    def publish(self, record: Mapping[str, Any]) -> None:
        """Send one estimate record as a timetagged bundle to every target. Never raises."""
        try:
            packet = encode_record(record, self._prefix,
                                   self._stream(record.get(wire.KEY_STREAM)))
        except (TypeError, ValueError, AttributeError, BuildError) as e:
            with self._lock:
                self._bad += 1
            self._rlog.log("bad record", logging.ERROR,
                           "OSC: record seq=%s not sent, a field has a wrong type: %s",
                           record.get(wire.KEY_SEQ) if isinstance(record, Mapping) else "?", e)
            return
        self._count(packet)
        if packet.messages:
            self._send_bundle(packet.dgram)

    def send_fast(self, stream: str, wall: float, values: Mapping[str, float]) -> None:
        """Send one fast-lane frame (``/fast/<name> f`` for each of ``values``) as one bundle
        timetagged ``wall`` [s since the Unix epoch]. Never raises."""
        numbers = tuple(values.values())
        if all(isinstance(v, float) and math.isfinite(v) for v in numbers):
            key = (stream, tuple(values))
            template = self._fast_templates.get(key)
            if template is None:
                try:
                    template = _FastTemplate(self._prefix, self._stream(stream), key[1])
                except (TypeError, ValueError) as e:
                    with self._lock:
                        self._bad += 1
                    self._rlog.log("bad fast", logging.ERROR,
                                   "OSC: fast-lane frame not sent: %s", e)
                    return
                self._fast_templates[key] = template
            self._send_bundle(template.fill(wall, numbers))
            return
        try:  # non-finite values: skipped or clamped one by one
            packet = encode_fast(self._prefix, self._stream(stream), wall, values)
        except (TypeError, ValueError, AttributeError, BuildError) as e:
            with self._lock:
                self._bad += 1
            self._rlog.log("bad fast", logging.ERROR, "OSC: fast-lane frame not sent: %s", e)
            return
        self._count(packet)
        if packet.messages:
            self._send_bundle(packet.dgram)

    def send_beat(self, stream: str, wall: float, count: int) -> None:
        """Send one beat (``/beat i``, the counter) as a bundle timetagged ``wall`` [s since the
        Unix epoch], the beat's time. Never raises."""
        try:
            packet = encode_beat(self._prefix, self._stream(stream), wall, count)
        except (TypeError, ValueError, BuildError) as e:
            with self._lock:
                self._bad += 1
            self._rlog.log("bad beat", logging.ERROR, "OSC: beat not sent: %s", e)
            return
        self._count(packet)
        self._send_bundle(packet.dgram)

    def send_raw(self, address: str, value: float | int | str | bool) -> None:
        """Send one plain message ``address value`` (user mappings). A non-finite value is
        counted and not sent. Never raises."""
        try:
            packet = encode_message(address, value)
        except (TypeError, ValueError, BuildError) as e:
            with self._lock:
                self._bad += 1
            self._rlog.log(f"bad raw {address}", logging.ERROR,
                           "OSC: message to %s not sent: %s", address, e)
            return
        self._count(packet)
        if packet.messages:
            self._send(packet.dgram)

    # -- state ----------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since construction: totals ``sent`` (datagrams × targets), ``errors``
        (failed sends), ``dropped`` (not sent: host unresolved), ``nonfinite`` (values
        clamped or skipped), ``bad`` (records/frames not encodable), ``split`` (bundles sent
        as several because they exceeded ``max_datagram_bytes``) and per target
        ``targets[<host:port>]`` = {sent, errors, dropped, resolve_failures, resolved}."""
        with self._lock:
            per = {
                t.name: {"sent": t.sent, "errors": t.errors, "dropped": t.dropped,
                         "resolve_failures": t.resolve_failures, "resolved": t.sock is not None}
                for t in self._targets
            }
            return {
                "sent": sum(t.sent for t in self._targets),
                "errors": sum(t.errors for t in self._targets),
                "dropped": sum(t.dropped for t in self._targets),
                "nonfinite": self._nonfinite,
                "bad": self._bad,
                "split": self._split,
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
