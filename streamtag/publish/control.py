"""The control port: OSC over UDP in, commands to the daemon out.

Addresses (no arguments; any arguments are ignored): ``<prefix>/control/reset``, ``pause``,
``resume``, ``reload``, ``describe``. Each calls the daemon's handler for that command on the
server thread, so handlers should be quick and thread-safe (set a flag, post to a queue).

``describe`` replies to the sender's address and port (the source of the datagram) with the
manifest returned by the ``describe`` handler as strict JSON text (no NaN, ASCII), cut into
plain messages ``<prefix>/manifest iis`` (part, count, piece) of at most
``max_datagram_bytes`` each (:func:`streamtag.publish.osc.encode_manifest`). A client must
therefore listen on the socket it sends the request from. The reply is much larger than the
request (about 18 KB for 32 bytes) and goes wherever the request claims to come from, and a
UDP source address can be forged: so it is sent only to verified senders, loopback (which no
remote host can forge) or an address in the allow-list; anyone else's describe is refused and
counted (``describe_refused``), and gets the manifest from ZeroMQ's ``streamtag.meta`` instead.

Bounded by construction: with an allow-list, datagrams from other senders are dropped and
counted (``refused``) before they are parsed; at most ``max_messages_per_s`` control messages
are obeyed per second (a token bucket holding one second's worth; every message of a bundle
counts), the rest counted as ``rate_limited``. Binding beyond loopback logs a warning naming
what becomes reachable.

Packets that are not OSC, addresses that are not a control command, and handler exceptions are
counted (:attr:`ControlServer.stats`), logged at a limited rate, and ignored. The receive loop
is our own, over python-osc's packet parser, because python-osc's servers drop non-OSC
datagrams before any hook sees them, so they could not be counted.
"""

from __future__ import annotations

import ipaddress
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from pythonosc.osc_packet import OscPacket

from streamtag.errors import ConfigError
from streamtag.logs import RateLimitedLog
from streamtag.publish import wire
from streamtag.publish.net import is_loopback_host
from streamtag.publish.osc import DEFAULT_MAX_DATAGRAM_BYTES, encode_manifest

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0
# How long close() may wait for the server thread to notice: the receive loop wakes this often.
_POLL_S = 0.05
_MAX_DGRAM = 65535


class ControlServer:
    """OSC control input on a UDP port, served by a background thread started at construction.

    Args:
        host: address to bind, e.g. ``127.0.0.1`` (local only) or ``0.0.0.0``.
        port: UDP port; 0 picks a free one (see :attr:`address`).
        prefix: OSC prefix, e.g. ``/streamtag``.
        handlers: command name (``reset``, ``pause``, ``resume``, ``reload``, ``describe``) →
            callable with no arguments. ``describe``'s return value (a dict, or a JSON str) is
            the manifest sent back; other return values are ignored. A command without a
            handler is counted as unknown.
        log_interval_s: minimum delay [s] between two log lines about the same failure.
        max_datagram_bytes: largest datagram of the manifest reply [bytes].
        allow: senders obeyed besides loopback (IP addresses or networks, ``10.0.0.0/24``);
            empty: every sender. Also who gets a describe reply (always: loopback).
        max_messages_per_s: control messages obeyed per second; the rest are dropped.

    Raises:
        ConfigError: the host/port cannot be bound (in use, not a local address), naming it.
        ValueError: a handler key is not a control command.
    """

    def __init__(
        self,
        host: str,
        port: int,
        prefix: str,
        handlers: Mapping[str, Callable[[], object]],
        *,
        log_interval_s: float = LOG_INTERVAL_S,
        max_datagram_bytes: int = DEFAULT_MAX_DATAGRAM_BYTES,
        allow: Sequence[str] = (),
        max_messages_per_s: float = 50.0,
    ) -> None:
        self._prefix = wire.check_prefix(prefix)
        self._max_bytes = int(max_datagram_bytes)
        try:
            self._allow = [ipaddress.ip_network(a, strict=False) for a in allow]
        except ValueError as e:
            raise ConfigError(f"control.allow: {e}") from e
        self._rate = float(max_messages_per_s)
        self._tokens = self._rate  # a second's worth of burst
        self._refilled = time.monotonic()
        unknown = set(handlers) - set(wire.CONTROL_COMMANDS)
        if unknown:
            raise ValueError(f"handlers: unknown control commands {sorted(unknown)}; expected "
                             f"some of {', '.join(wire.CONTROL_COMMANDS)}")
        self._routes = {wire.control_address(prefix, c): c for c in handlers}
        self._handlers = dict(handlers)
        self._rlog = RateLimitedLog(log, log_interval_s)
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {
            "received": 0, "malformed": 0, "unknown": 0, "handler_errors": 0, "reply_errors": 0,
            "refused": 0, "rate_limited": 0, "describe_refused": 0,
            **{c: 0 for c in wire.CONTROL_COMMANDS},
        }
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
        except (OSError, UnicodeError, OverflowError) as e:
            raise ConfigError(f"control port {host}:{port}: cannot use this address: {e}") from e
        try:
            self._sock.bind(sockaddr)
        except OSError as e:
            self._sock.close()
            raise ConfigError(f"control port {host}:{port}: cannot bind: {e.strerror or e} "
                              "(is another streamtag running?)") from e
        self._sock.setblocking(False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="osc-control", daemon=True)
        self._thread.start()
        log.info("OSC control on %s:%d", *self.address[:2])
        if not is_loopback_host(host):
            log.warning(
                "OSC control bound to %s:%d, beyond loopback: %s can reset, pause and reload "
                "this daemon%s (README: Security)", host, self.address[1],
                "the hosts in control.allow" if self._allow else "any host that can reach it",
                "" if self._allow else "; set control.allow to the senders you trust")

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port), with the real port when 0 was asked for."""
        host, port = self._sock.getsockname()[:2]
        return host, port

    @property
    def stats(self) -> dict[str, int]:
        """Counters: received datagrams, malformed, unknown, handler_errors, reply_errors,
        and one per command handled."""
        with self._lock:
            return dict(self._counts)

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                if not sel.select(_POLL_S):
                    continue
                try:
                    data, sender = self._sock.recvfrom(_MAX_DGRAM)
                except BlockingIOError:
                    continue
                except OSError as e:
                    if self._stop.is_set():
                        break
                    # e.g. ECONNREFUSED left by a reply to a sender that has gone away
                    self._rlog.log("recv", logging.WARNING, "OSC control: receive failed: %s", e)
                    continue
                self._count("received")
                if self._allow and not self._verified(sender):
                    self._count("refused")
                    self._rlog.log("refused", logging.WARNING, "OSC control: ignoring %s, not "
                                   "in control.allow", sender[0])
                    continue
                try:
                    self._handle(data, sender)
                except Exception:  # the control port must outlive any bug in handling
                    self._count("handler_errors")
                    self._rlog.log("handle", logging.ERROR, "OSC control: handling failed",
                                   exc_info=True)
        finally:
            sel.close()

    def _handle(self, data: bytes, sender: Any) -> None:
        try:
            messages = [tm.message for tm in OscPacket(data).messages]
        except Exception as e:  # any failure to parse foreign bytes means "malformed"
            self._count("malformed")
            self._rlog.log("malformed", logging.WARNING,
                           "OSC control: ignoring a malformed packet from %s (%s)", sender, e)
            return
        for msg in messages:
            command = self._routes.get(msg.address)
            if command is None:
                self._count("unknown")
                self._rlog.log("unknown", logging.WARNING,
                               "OSC control: ignoring unknown address %s from %s",
                               msg.address, sender)
                continue
            if not self._take_token():
                self._count("rate_limited")
                self._rlog.log("rate", logging.WARNING, "OSC control: more than %g messages "
                               "a second; dropping the rest", self._rate)
                continue
            self._run(command, sender)

    def _take_token(self) -> bool:
        """One control message's worth from the bucket (refilled at ``_rate`` per second)."""
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _verified(self, sender: Any) -> bool:
        """Loopback (no remote host can forge it) or an allow-listed address."""
        try:
            addr = ipaddress.ip_address(sender[0].split("%")[0])
        except (ValueError, IndexError, TypeError):
            return False
        if getattr(addr, "ipv4_mapped", None) is not None:
            addr = addr.ipv4_mapped  # type: ignore[union-attr]
        return addr.is_loopback or any(addr in net for net in self._allow)

    def _run(self, command: str, sender: Any) -> None:
        try:
            result = self._handlers[command]()
        except Exception:  # a daemon bug must not kill the control port
            self._count("handler_errors")
            self._rlog.log(f"handler {command}", logging.ERROR,
                           "OSC control: the %s handler failed", command, exc_info=True)
            return
        self._count(command)
        if command == wire.CONTROL_DESCRIBE:
            if not self._verified(sender):
                self._count("describe_refused")
                self._rlog.log("describe", logging.WARNING, "OSC control: no describe reply to "
                               "%s (neither loopback nor in control.allow; the manifest is on "
                               "ZeroMQ streamtag.meta)", sender[0])
                return
            self._reply_manifest(result, sender)

    def _reply_manifest(self, manifest: object, sender: Any) -> None:
        try:
            if manifest is None:
                raise ValueError("the describe handler returned no manifest")
            for dgram in encode_manifest(manifest, self._prefix, self._max_bytes):  # type: ignore[arg-type]
                self._sock.sendto(dgram, sender)
        except (OSError, TypeError, ValueError) as e:
            self._count("reply_errors")
            self._rlog.log("reply", logging.WARNING,
                           "OSC control: cannot send the manifest to %s: %s", sender, e)

    def close(self) -> None:
        """Stop the server thread and close the socket. Idempotent."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
        self._sock.close()

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
