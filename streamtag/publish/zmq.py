"""ZeroMQ publishing: multipart ``[topic, JSON]`` on an XPUB socket that never blocks the caller.

Topics and payloads are in :mod:`streamtag.publish.wire` (``streamtag.estimate`` carries the
whole record but the embedding vector (:func:`wire.compact_record`); ``streamtag.emotion`` /
``.instrument`` / ``.timbre`` / ``.tags`` / ``.embedding`` carry ``{"seq", "t", "stream",
<head>}``, the embedding with its vector; ``.fast``, ``.status``, ``.meta``). JSON is strict:
NaN never goes out (see :func:`wire.sanitize`: ±inf is clamped to a known range, otherwise
null; counted).

Why XPUB: it reports each subscription to us, so a new subscriber to ``streamtag.meta`` (or to
``streamtag.`` / everything) gets the latest manifest at once. With ``XPUB_VERBOSE`` every
subscriber's subscription is reported, not only the first one per topic. The manifest goes out
on the topic, so subscribers that already had it receive it again.

Slow subscribers: each has a send queue of ``hwm`` messages. A plain PUB socket drops silently
when one is full, so nothing could be counted; with ``XPUB_NODROP`` a send fails with
``zmq.Again`` instead — but then *no* subscriber gets that message, and one stalled subscriber
would starve every other. So we send with NODROP to detect the overflow, count it in
``stats["dropped"]``, and resend the same message lossily, which reaches every subscriber with
room and skips the full ones. libzmq then skips a full subscriber silently until it has drained
its queue, so ``dropped`` counts overflow *events* (at least one per episode of a subscriber
falling behind): a lower bound of the messages missed, and zero exactly when no subscriber
ever fell behind. Every send is ``NOBLOCK``: the caller never waits.

Nobody listening, no work: the subscriptions XPUB reports (a topic prefix is reported when its
first subscriber subscribes and, without ``XPUB_VERBOSER``, withdrawn only when its last one
leaves) are kept as a set, and a message on a topic no subscriber's prefix matches is not even
encoded. The fast lane (50 messages a second per stream) is encoded from a template.

Bounded by construction (a subscription is something any client sends us):
- libzmq's ``ZMQ_MAXMSGSIZE`` caps every inbound message, subscriptions included, at
  ``MAX_SUBSCRIPTION_BYTES``: a larger one is refused by libzmq's decoder from its length
  header, before any buffer is allocated, and that client is disconnected (a 16 MB
  subscription grew the daemon by 1.8 GB and stalled hops for 3 s without it);
- at most ``MAX_POLL_MESSAGES`` subscription messages are handled per publish call, so a flood
  of them is spread over several hops instead of stalling one;
- at most ``MAX_TRACKED_PREFIXES`` distinct prefixes are kept in our set; beyond that every
  topic counts as wanted (correct, only less frugal) and the surplus is counted
  (``subscriptions_untracked``). libzmq itself keeps every distinct subscription a client
  sends (≤ 54 bytes, ≤ 2.5 KB of its tree each) until that client leaves; their number is not
  something libzmq lets us cap, which is one reason ZeroMQ binds to loopback unless
  configured. When many are withdrawn the freed heap is given back to the system (glibc's
  ``malloc_trim``; without it 200 MB stayed with the process after the client had gone).

Binding beyond loopback logs a warning naming what becomes reachable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import zmq

from streamtag.errors import ConfigError
from streamtag.logs import RateLimitedLog
from streamtag.publish import wire
from streamtag.publish.net import is_loopback_host

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0
#: Longest time [s] a publish goes without checking for new subscriptions (a new subscriber's
#: manifest waits at most this; checking on every fast-lane frame cost a libzmq call each).
POLL_INTERVAL_S = 0.1
_META = wire.TOPIC_META.encode()
#: Largest inbound message [bytes]. A subscription arrives as ZMTP's SUBSCRIBE command (10
#: bytes + the topic prefix), so prefixes of up to 54 bytes pass; our topics have ≤ 20.
#: libzmq's subscription tree costs ~45 bytes per byte of a distinct random prefix (measured:
#: 20,000 of 200 bytes +190 MB, of 63 bytes +61 MB, of 31 bytes +31 MB).
MAX_SUBSCRIPTION_BYTES = 64
#: Distinct subscribed prefixes kept in our own set (see the module docstring).
MAX_TRACKED_PREFIXES = 1024
#: Subscription messages handled per publish call (each a few microseconds).
MAX_POLL_MESSAGES = 1000
#: Withdrawn subscriptions after which freed heap is handed back to the system (once the
#: backlog of subscription messages is read).
TRIM_AFTER_UNSUBSCRIPTIONS = 100


def _malloc_trim() -> None:
    """Give free heap back to the system (glibc; elsewhere nothing happens)."""
    try:
        name = ctypes.util.find_library("c")
        if name:
            getattr(ctypes.CDLL(name), "malloc_trim", lambda _: 0)(0)
    except OSError:
        pass


def _is_loopback_endpoint(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint is reachable only from this machine."""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    return is_loopback_host(rest.rsplit(":", 1)[0].strip("[]"))


def _fast_template(stream: str, with_t: bool, names: tuple[str, ...]) -> str:
    """A ``str.format`` template of the fast-lane JSON: ``{"stream", ["t",] "wall", "values"}``
    as ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` writes it; the fields are
    (t,) wall and the values, in order, as ``repr`` of finite floats."""

    def lit(x: Any) -> str:
        return json.dumps(x, ensure_ascii=False).replace("{", "{{").replace("}", "}}")

    fields = [f"{lit(wire.KEY_STREAM)}:{lit(stream)}"]
    if with_t:
        fields.append(f"{lit(wire.KEY_T)}:{{!r}}")
    fields.append(f"{lit(wire.KEY_WALL)}:{{!r}}")
    values = ",".join(f"{lit(n)}:{{!r}}" for n in names)
    return "{{" + ",".join(fields) + f',"values":{{{{{values}}}}}' + "}}"


class ZmqPublisher:
    """Publish estimate records, fast-lane frames, status and the manifest over ZeroMQ.

    Thread-safe (one lock around the socket). No publish method raises on a send problem.

    Args:
        endpoint: where to bind, e.g. ``tcp://127.0.0.1:5556`` (``tcp://127.0.0.1:*`` picks a
            free port; see :attr:`endpoint`).
        hwm: send high-water mark [messages queued per subscriber] before drops start.
        manifest: the manifest to publish at once and to every new subscriber (optional; see
            :meth:`publish_meta`).
        context: a ZeroMQ context to use; by default the publisher creates and terminates its
            own.
        log_interval_s: minimum delay [s] between two log lines about the same failure.

    Raises:
        ConfigError: the endpoint cannot be bound (malformed, unknown transport, address in use,
            not a local interface), naming the endpoint.
    """

    def __init__(
        self,
        endpoint: str,
        hwm: int,
        *,
        manifest: Mapping[str, Any] | None = None,
        context: zmq.Context | None = None,
        log_interval_s: float = LOG_INTERVAL_S,
    ) -> None:
        if hwm < 1:
            raise ValueError(f"hwm: expected ≥ 1 message, got {hwm}")
        self._own_ctx = context is None
        self._ctx = zmq.Context() if context is None else context
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        self._sock.setsockopt(zmq.XPUB_NODROP, 1)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_SUBSCRIPTION_BYTES)
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as e:
            self._sock.close(linger=0)
            if self._own_ctx:
                self._ctx.term()
            raise ConfigError(
                f"ZeroMQ endpoint {endpoint!r}: cannot bind: {e.strerror} "
                "(expected e.g. tcp://127.0.0.1:5556 on a free port of a local interface)"
            ) from e
        self._endpoint = self._sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._lock = threading.Lock()
        self._rlog = RateLimitedLog(log, log_interval_s)
        self._closed = False
        self._manifest: bytes | None = None
        self._prefixes: set[bytes] = set()  # topic prefixes someone subscribes to
        self._wanted: dict[bytes, bool] = {}  # topic → does any prefix match (cache)
        self._next_poll = 0.0  # time.monotonic() of the next subscription check
        self._counts = {"sent": 0, "dropped": 0, "errors": 0, "nonfinite": 0,
                        "subscriptions": 0, "subscriptions_untracked": 0}
        self._untracked = 0  # subscribed prefixes not in _prefixes (over the limit)
        self._withdrawn = 0  # unsubscriptions since the heap was last trimmed
        self._fast_templates: dict[tuple[str, bool, tuple[str, ...]], str] = {}
        log.info("ZeroMQ publishing on %s", self._endpoint)
        if not _is_loopback_endpoint(self._endpoint):
            log.warning("ZeroMQ bound to %s, beyond loopback: any host that can reach it can "
                        "subscribe to every estimate, the status and the manifest (README: "
                        "Security)", self._endpoint)
        if manifest is not None:
            self.publish_meta(manifest)

    @property
    def endpoint(self) -> str:
        """The bound endpoint, with the real port when ``*`` was asked for."""
        return self._endpoint

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``sent`` messages, ``dropped`` (times a subscriber's queue was found full;
        a lower bound of messages missed, see the module docstring), ``errors``, ``nonfinite``
        values replaced, ``subscriptions`` seen."""
        with self._lock:
            return dict(self._counts)

    # -- low level ------------------------------------------------------------------------

    def _encode(self, payload: Mapping[str, Any]) -> bytes:
        data, bad = wire.encode_payload(payload)
        self._counts["nonfinite"] += bad
        return data

    def _send_locked(self, topic: bytes, data: bytes) -> None:
        try:
            self._sock.send_multipart([topic, data], flags=zmq.NOBLOCK)
            self._counts["sent"] += 1
            return
        except zmq.Again:
            self._counts["dropped"] += 1
        except zmq.ZMQError as e:
            self._counts["errors"] += 1
            self._rlog.log("send", logging.WARNING, "ZeroMQ %s: send failed: %s",
                           self._endpoint, e)
            return
        # A full subscriber made the send fail for everyone; let the others have it.
        self._sock.setsockopt(zmq.XPUB_NODROP, 0)
        try:
            self._sock.send_multipart([topic, data], flags=zmq.NOBLOCK)
        except zmq.ZMQError as e:
            self._counts["errors"] += 1
            self._rlog.log("resend", logging.WARNING, "ZeroMQ %s: send failed: %s",
                           self._endpoint, e)
        finally:
            self._sock.setsockopt(zmq.XPUB_NODROP, 1)
        self._rlog.log("dropped", logging.WARNING,
                       "ZeroMQ %s: a subscriber is not keeping up, its messages are dropped "
                       "(%d so far)", self._endpoint, self._counts["dropped"])

    def _poll_locked(self, send_meta: bool = True) -> None:
        meta_wanted = False
        drained = False
        for _ in range(MAX_POLL_MESSAGES):
            if not self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                drained = True
                break
            try:
                msg = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            # Subscription messages: b"\x01" + topic prefix; b"\x00" + topic = unsubscribe.
            prefix = msg[1:]
            if msg[:1] == b"\x01":
                self._counts["subscriptions"] += 1
                meta_wanted |= _META.startswith(prefix)
                if prefix in self._prefixes:
                    pass
                elif len(self._prefixes) < MAX_TRACKED_PREFIXES:
                    self._prefixes.add(prefix)
                else:
                    self._untracked += 1
                    self._counts["subscriptions_untracked"] += 1
                self._wanted.clear()
            elif msg[:1] == b"\x00":
                self._withdrawn += 1
                if prefix in self._prefixes:
                    self._prefixes.discard(prefix)
                elif self._untracked:
                    self._untracked -= 1
                self._wanted.clear()
        if drained and self._withdrawn >= TRIM_AFTER_UNSUBSCRIPTIONS:
            # A flood of subscriptions has been withdrawn (its client left): hand the freed
            # heap back, on a thread of its own (ctypes releases the GIL; the hop goes on).
            self._withdrawn = 0
            threading.Thread(target=_malloc_trim, name="malloc-trim", daemon=True).start()
        if send_meta and meta_wanted and self._manifest is not None:
            self._send_locked(_META, self._manifest)

    def _wanted_locked(self, topic: bytes) -> bool:
        wanted = self._wanted.get(topic)
        if wanted is None:
            # Over the tracking limit we cannot tell: every topic is wanted.
            wanted = self._wanted[topic] = self._untracked > 0 or any(
                topic.startswith(p) for p in self._prefixes)
        return wanted

    def _publish(self, items: list[tuple[str, Any]], force_poll: bool = False) -> None:
        """Send ``(topic, payload)`` pairs; a payload is a mapping to encode as JSON, or
        ``bytes`` already encoded, or a function making either: it is called only when some
        subscriber wants the topic. Subscriptions are checked first, at most every
        ``POLL_INTERVAL_S`` unless ``force_poll`` (the fast lane publishes 50 times a second)."""
        with self._lock:
            if self._closed:
                return
            try:
                now = time.monotonic()
                if force_poll or now >= self._next_poll:
                    self._next_poll = now + POLL_INTERVAL_S
                    self._poll_locked()
                for topic, payload in items:
                    raw = topic.encode()
                    if not self._wanted_locked(raw):
                        continue
                    if callable(payload):
                        payload = payload()
                    data = payload if isinstance(payload, bytes) else self._encode(payload)
                    self._send_locked(raw, data)
            except (TypeError, ValueError, zmq.ZMQError) as e:
                self._counts["errors"] += 1
                self._rlog.log("encode", logging.ERROR, "ZeroMQ %s: cannot publish: %s",
                               self._endpoint, e)

    # -- public ---------------------------------------------------------------------------

    def poll(self) -> None:
        """Handle pending subscriptions now (sending the manifest to new subscribers). Every
        publish call does this too (at most every ``POLL_INTERVAL_S``); call it when nothing has
        been published for a while."""
        self._publish([], force_poll=True)

    def publish_record(self, record: Mapping[str, Any]) -> None:
        """Publish one estimate record on ``streamtag.estimate`` (without the embedding vector)
        and each head present on its own topic (``{"seq", "t", "stream", <head>}``; the
        embedding topic with its vector)."""
        if not isinstance(record, Mapping):
            with self._lock:
                self._counts["errors"] += 1
            self._rlog.log("record", logging.ERROR, "ZeroMQ: not a record: %r", type(record))
            return
        # Payloads are made only for topics someone subscribed to.
        self._publish(list(wire.record_payloads(record)))

    def publish_fast(
        self, stream: str, wall: float, values: Mapping[str, float], t: float | None = None
    ) -> None:
        """Publish one fast-lane frame on ``streamtag.fast``: ``{"stream", "t" (if given),
        "wall", "values": {name: value}}``; ``t`` is stream time [s], ``wall`` Unix time [s]."""
        numbers = list(values.values())
        times = [wall] if t is None else [t, wall]
        if all(type(v) is float and math.isfinite(v) for v in numbers + times):
            # What json.dumps writes for the dict below (floats as repr), without its walk.
            key = (stream, t is not None, tuple(values))
            template = self._fast_templates.get(key)
            if template is None:
                template = self._fast_templates[key] = _fast_template(stream, t is not None,
                                                                      key[2])
            self._publish([(wire.TOPIC_FAST,
                            lambda: template.format(*times, *numbers).encode())])
            return
        self._publish([(wire.TOPIC_FAST, wire.fast_payload(stream, wall, values, t))])

    def publish_beat(self, stream: str, t: float, wall: float, count: int, bpm: float) -> None:
        """Publish one beat on ``streamtag.beat``: ``{"stream", "t", "wall", "beat", "bpm"}``;
        ``t`` the beat's stream time [s], ``wall`` its Unix time [s], ``beat`` the counter,
        ``bpm`` the tempo [BPM]."""
        self._publish([(wire.TOPIC_BEAT, {wire.KEY_STREAM: stream, wire.KEY_T: t,
                                          wire.KEY_WALL: wall, wire.BEAT_COUNT: int(count),
                                          wire.TEMPO_BPM: bpm})])

    def publish_status(self, status: Mapping[str, Any]) -> None:
        """Publish a heartbeat on ``streamtag.status`` (the daemon composes it)."""
        self._publish([(wire.TOPIC_STATUS, status)])

    def publish_meta(self, manifest: Mapping[str, Any]) -> None:
        """Remember ``manifest`` for new subscribers and publish it on ``streamtag.meta`` now."""
        with self._lock:
            if self._closed:
                return
            try:
                self._manifest = self._encode(manifest)
            except (TypeError, ValueError) as e:
                self._counts["errors"] += 1
                self._rlog.log("meta", logging.ERROR, "ZeroMQ: manifest not JSON-able: %s", e)
                return
            self._poll_locked(send_meta=False)  # sent just below, once for everyone
            self._send_locked(_META, self._manifest)

    def close(self) -> None:
        """Close the socket without lingering (pending messages are discarded). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._sock.close(linger=0)
            if self._own_ctx:
                self._ctx.term()

    def __enter__(self) -> ZmqPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
