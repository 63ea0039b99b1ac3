"""The live view in the browser, its WebSocket feed of JSON records, and OSCQuery.

One thread with its own asyncio event loop runs `websockets`' server (which serves plain HTTP
too) on up to two ports:

- the live view (``outputs.web``): ``GET /`` the page (plain HTML/JS/CSS shipped in the package,
  ``streamtag/web/``; no CDN, no build step), ``/manifest.json``, ``/status.json``, and the
  WebSocket feed at :data:`WS_PATH`;
- OSCQuery (``outputs.oscquery``): the address space as JSON (:mod:`streamtag.publish.oscquery`),
  optionally advertised over zeroconf/mDNS as ``_oscjson._tcp``.

The feed carries the ZeroMQ topics with the very payloads the ZeroMQ publisher sends (both take
them from :func:`wire.record_payloads`, :func:`wire.fast_payload` and :func:`wire.encode_payload`),
one text message per topic message: ``{"topic": "streamtag.estimate", "data": {...}}``. A client
chooses topics by prefix with ``/ws?topics=streamtag.estimate,streamtag.fast`` (default: every
topic, ``streamtag.``); on connect it gets the latest manifest and status at once.

The analysis thread never waits for this server: a publish call with no client connected returns
at once; otherwise it hands the payload to the loop (``call_soon_threadsafe``), where it is
encoded once and queued for each client that wants it. Each client has a bounded queue
(``queue_messages``); a client that does not keep up loses the messages that find its queue
full, counted in ``stats["dropped"]`` (and in the status topic's ``dropped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streamtag.errors import ConfigError
from streamtag.logs import RateLimitedLog
from streamtag.publish import osc as osc_encode
from streamtag.publish import oscquery as oscq
from streamtag.publish import wire

log = logging.getLogger(__name__)
# websockets' own lines ("server listening", each failed handshake) say less than ours: only its
# warnings and errors go out.
_ws_log = logging.getLogger(f"{__name__}.websockets")
_ws_log.setLevel(logging.WARNING)

WS_PATH = wire.WS_PATH
LOG_INTERVAL_S = 10.0
#: Longest a start or a clean stop may take [s].
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
#: Largest message a client may send [bytes] (the feed reads and ignores them).
MAX_INCOMING_BYTES = 4096

#: Files of the page, served from ``streamtag/web/`` (package data): path → (file, type).
STATIC: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/live.js": ("live.js", "text/javascript; charset=utf-8"),
    "/live.css": ("live.css", "text/css; charset=utf-8"),
}
_JSON = "application/json"

Payload = Mapping[str, Any] | Callable[[], Any]


def ws_message(topic: str, data: bytes) -> str:
    """One feed message: ``{"topic": <topic>, "data": <payload JSON as ZeroMQ sends it>}``."""
    return f'{{"{wire.WS_KEY_TOPIC}":{json.dumps(topic)},"{wire.WS_KEY_DATA}":{data.decode()}}}'


def _bind(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket, bound now so that a bad address fails at start with a clear
    error (ConfigError naming the key), not later in the server thread."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise ConfigError(f"{what}: cannot use host {host!r}: {e}") from e
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(64)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise ConfigError(f"{what}: cannot listen on {host}:{port}: {e.strerror or e} (choose "
                          "a free port, or 0 for any)") from e
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def _response(status: int, body: bytes = b"", content_type: str = _JSON) -> Response:
    reasons = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found"}
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), ("Access-Control-Allow-Origin", "*")])
    return Response(status, reasons.get(status, ""), headers, body)


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    queue: asyncio.Queue[str]
    prefixes: tuple[str, ...]

    def wants(self, topic: str) -> bool:
        return any(topic.startswith(p) for p in self.prefixes)


class WebServer:
    """Serve the live view + WebSocket feed and/or OSCQuery from a thread of its own.

    Args:
        web: (host, port) of the live view and feed, or None (off). Port 0: any free port.
        oscquery: (host, port) of the OSCQuery server, or None (off).
        manifest: the manifest now (the page, ``/manifest.json`` and OSCQuery are made from it).
        queue_messages: messages queued per feed client before its messages are dropped.
        osc_control: (host, port) where streamtag receives OSC (its control port), for
            OSCQuery's HOST_INFO; None when the control port is off.
        name: OSCQuery NAME and zeroconf instance name.
        zeroconf: advertise OSCQuery as ``_oscjson._tcp`` (needs the ``zeroconf`` package).

    Raises:
        ConfigError: a port cannot be bound, or zeroconf is asked for and not installed.
    """

    def __init__(
        self,
        *,
        web: tuple[str, int] | None,
        oscquery: tuple[str, int] | None,
        manifest: Mapping[str, Any],
        queue_messages: int = 256,
        osc_control: tuple[str, int] | None = None,
        name: str = "streamtag",
        zeroconf: bool = False,
        log_interval_s: float = LOG_INTERVAL_S,
    ) -> None:
        if queue_messages < 1:
            raise ValueError(f"queue_messages: expected ≥ 1, got {queue_messages}")
        self._queue_messages = queue_messages
        self._name = name
        self._osc_control = osc_control
        self._zeroconf_wanted = zeroconf and oscquery is not None
        if self._zeroconf_wanted:
            try:
                import zeroconf as _zc  # noqa: F401  (lazily: an option, not a dependency)
            except ImportError as e:
                raise ConfigError("outputs.oscquery.zeroconf: needs the zeroconf package "
                                  "(pip install zeroconf), or set it to false") from e
        self._rlog = RateLimitedLog(log, log_interval_s)
        self._counts = {"sent": 0, "dropped": 0, "errors": 0, "nonfinite": 0,
                        "connections": 0, "http_requests": 0}
        self._clients: set[_Client] = set()
        self._n_clients = 0  # read by the publishing thread without the loop: a plain int
        self._latest: dict[str, str] = {}  # topic → message, for new clients (meta, status)
        self._manifest_json = b"{}"
        self._status_json = b"{}"
        self._namespace: dict[str, Any] = {}
        self._osc_streams: tuple[str, tuple[str, ...]] = ("", ())  # the manifest's prefix, streams
        # The latest record and fast-lane values per stream, for OSCQuery's VALUE (kept only
        # with OSCQuery on; replaced whole by the publishing thread, read by the loop's).
        self._keep_values = oscquery is not None
        self._last_records: dict[str, Mapping[str, Any]] = {}
        self._last_fast: dict[str, Mapping[str, float]] = {}
        self._host_info = oscq.host_info(name, *(osc_control or (None, None)))
        self._static = {path: (resources.files("streamtag").joinpath("web", f).read_bytes(), t)
                        for path, (f, t) in STATIC.items()} if web is not None else {}
        self._servers: list[Server] = []
        self._azc: Any = None
        self._advertising: asyncio.Future[None] | None = None
        socks: list[socket.socket] = []
        try:
            self._web_sock = _bind(*web, "outputs.web") if web is not None else None
            if self._web_sock is not None:
                socks.append(self._web_sock)
            self._oq_sock = (_bind(*oscquery, "outputs.oscquery") if oscquery is not None
                             else None)
        except ConfigError:
            for s in socks:
                s.close()
            raise
        self.web_url = _url(self._web_sock) if self._web_sock is not None else None
        self.oscquery_url = _url(self._oq_sock) if self._oq_sock is not None else None
        self._set_manifest(manifest)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="streamtag-web", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._start_error is not None:
            self.close()
            raise ConfigError(f"web server did not start: {self._start_error}")
        if self.web_url:
            log.info("live view on %s (WebSocket feed %s)", self.web_url,
                     self.web_url.replace("http", "ws", 1).rstrip("/") + WS_PATH)
        if self.oscquery_url:
            log.info("OSCQuery on %s", self.oscquery_url)

    # -- the loop thread ---------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as e:  # reported to the constructor, which raises ConfigError
            self._start_error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _start(self) -> None:
        common: dict[str, Any] = dict(compression=None, server_header="streamtag",
                                      close_timeout=1.0, max_size=MAX_INCOMING_BYTES,
                                      logger=_ws_log)
        if self._web_sock is not None:
            self._servers.append(await serve(self._feed, sock=self._web_sock,
                                             process_request=self._web_request, **common))
        if self._oq_sock is not None:
            self._servers.append(await serve(self._feed, sock=self._oq_sock,
                                             process_request=self._oscquery_request, **common))
            if self._zeroconf_wanted:
                self._advertising = asyncio.ensure_future(self._advertise())

    async def _advertise(self) -> None:
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        assert self._oq_sock is not None
        host, port = self._oq_sock.getsockname()[:2]
        if host in ("0.0.0.0", "::"):
            addrs = sorted({a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None,
                                                                socket.AF_INET)})
        else:
            addrs = [host]
        try:
            info = AsyncServiceInfo(oscq.SERVICE_TYPE,
                                    f"{self._name}.{oscq.SERVICE_TYPE}", port=port,
                                    parsed_addresses=addrs,
                                    server=f"{socket.gethostname()}.local.")
            self._azc = AsyncZeroconf()
            await self._azc.async_register_service(info)
            log.info("OSCQuery advertised over zeroconf as %s on %s", info.name, addrs)
        except Exception as e:  # the advertisement is a convenience: say so, keep serving
            self._counts["errors"] += 1
            log.warning("OSCQuery: zeroconf advertisement failed: %s", e)

    def _web_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self._counts["http_requests"] += 1
        path = urlsplit(request.path).path
        if path == WS_PATH:
            return None  # the WebSocket handshake goes on
        if path in self._static:
            body, kind = self._static[path]
            return _response(200, body, kind)
        if path == "/manifest.json":
            return _response(200, self._manifest_json)
        if path == "/status.json":
            return _response(200, self._status_json)
        return _response(404, b"not found\n", "text/plain; charset=utf-8")

    def _oscquery_request(self, conn: ServerConnection, request: Request) -> Response:
        self._counts["http_requests"] += 1
        status, obj = oscq.answer(self._namespace, self._host_info, request.path,
                                  self._published_values())
        body = b"" if obj is None else json.dumps(obj, ensure_ascii=False).encode()
        return _response(status, body)

    def _published_values(self) -> dict[str, tuple[Any, ...]]:
        """address → the arguments last sent there over OSC (the bundle profile's), from the
        latest record and fast-lane frame of each stream."""
        prefix, streams = self._osc_streams
        out: dict[str, tuple[Any, ...]] = {}
        for stream, fast in list(self._last_fast.items()):
            out.update(osc_encode.fast_values(prefix, wire.stream_part(streams, stream), fast))
        for stream, record in list(self._last_records.items()):
            try:
                out.update(osc_encode.record_values(record, prefix,
                                                    wire.stream_part(streams, stream)))
            except (TypeError, ValueError):  # not sent over OSC either (counted there)
                continue
        return out

    async def _feed(self, ws: ServerConnection) -> None:
        if ws.request is None or urlsplit(ws.request.path).path != WS_PATH:
            await ws.close(1008, f"the feed is at {WS_PATH}")
            return
        query = parse_qs(urlsplit(ws.request.path).query)
        prefixes = tuple(p for arg in query.get(wire.WS_TOPICS_PARAM, ()) for p in arg.split(",")
                         if p)
        client = _Client(ws, asyncio.Queue(self._queue_messages),
                         prefixes or (wire.TOPIC_PREFIX,))
        for topic in (wire.TOPIC_META, wire.TOPIC_STATUS):
            if topic in self._latest and client.wants(topic):
                client.queue.put_nowait(self._latest[topic])
        self._clients.add(client)
        self._n_clients = len(self._clients)
        self._counts["connections"] += 1
        sender = asyncio.ensure_future(self._send(client))
        reader = asyncio.ensure_future(self._read(ws))
        try:
            await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._clients.discard(client)
            self._n_clients = len(self._clients)
            for task in (sender, reader):
                task.cancel()

    async def _send(self, client: _Client) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                msg = await client.queue.get()
                # Waits while the client's socket buffer is full: its queue fills meanwhile.
                await client.ws.send(msg)
                self._counts["sent"] += 1

    async def _read(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:  # nothing to do with what a client says; read to see it leave
                pass

    def _dispatch(self, items: list[tuple[str, Payload]]) -> None:
        """In the loop: encode each payload once, queue it for every client that wants it."""
        for topic, payload in items:
            remember = topic in (wire.TOPIC_META, wire.TOPIC_STATUS)
            clients = [c for c in self._clients if c.wants(topic)]
            if not clients and not remember:
                continue
            try:
                data, bad = wire.encode_payload(payload() if callable(payload) else payload)
            except (TypeError, ValueError) as e:
                self._counts["errors"] += 1
                self._rlog.log("encode", logging.ERROR, "web feed: cannot encode %s: %s",
                               topic, e)
                continue
            self._counts["nonfinite"] += bad
            msg = ws_message(topic, data)
            if remember:
                self._latest[topic] = msg
                if topic == wire.TOPIC_STATUS:
                    self._status_json = data
            for c in clients:
                try:
                    c.queue.put_nowait(msg)
                except asyncio.QueueFull:
                    self._counts["dropped"] += 1
                    self._rlog.log("dropped", logging.WARNING,
                                   "web feed: a client is not keeping up, its messages are "
                                   "dropped (%d so far)", self._counts["dropped"])

    def _set_manifest(self, manifest: Mapping[str, Any]) -> None:
        try:
            data, _ = wire.encode_payload(manifest)
            self._namespace = oscq.namespace(manifest)
            osc = manifest.get("osc") or {}
            self._osc_streams = (str(osc.get("prefix", "")),
                                 tuple(str(x) for x in osc.get("streams") or ()))
        except (TypeError, ValueError, KeyError) as e:
            self._counts["errors"] += 1
            log.error("web: manifest not usable: %s", e)
            return
        self._manifest_json = data
        self._latest[wire.TOPIC_META] = ws_message(wire.TOPIC_META, data)

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT_S)
        if self._azc is not None:
            with contextlib.suppress(Exception):
                await self._azc.async_unregister_all_services()
                await self._azc.async_close()

    # -- any thread ----------------------------------------------------------------------

    def _submit(self, items: list[tuple[str, Payload]]) -> None:
        if self._closed:
            return
        try:
            self._loop.call_soon_threadsafe(self._dispatch, items)
        except RuntimeError:  # the loop has closed under us: nothing to deliver to
            pass

    @property
    def clients(self) -> int:
        """Feed clients connected now."""
        return self._n_clients

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: ``clients`` now, ``connections`` so far, feed messages ``sent``,
        ``dropped`` (found a client's queue full), ``errors``, ``nonfinite`` values replaced,
        ``http_requests``; and the ``url`` of the live view and of OSCQuery."""
        out: dict[str, Any] = {"clients": self._n_clients, **self._counts}
        out["url"] = self.web_url
        out["oscquery_url"] = self.oscquery_url
        return out

    def publish_record(self, record: Mapping[str, Any]) -> None:
        """Feed one estimate record on the topics ZeroMQ sends it on (nothing without clients);
        with OSCQuery on, its values become the VALUE of their addresses."""
        if self._keep_values:
            self._last_records[str(record.get(wire.KEY_STREAM))] = record
        if self._n_clients:
            self._submit(wire.record_payloads(record))

    def publish_fast(
        self, stream: str, wall: float, values: Mapping[str, float], t: float | None = None
    ) -> None:
        """Feed one fast-lane frame (``streamtag.fast``); with OSCQuery on, its values become
        the VALUE of their addresses."""
        if self._keep_values:
            self._last_fast[stream] = values
        if self._n_clients:
            self._submit([(wire.TOPIC_FAST, wire.fast_payload(stream, wall, values, t))])

    def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        """Feed any other topic's payload, e.g. one the daemon also sends over ZeroMQ."""
        if self._n_clients:
            self._submit([(topic, payload)])

    def publish_status(self, status: Mapping[str, Any]) -> None:
        """Feed a heartbeat (``streamtag.status``); kept for new clients and ``/status.json``."""
        self._submit([(wire.TOPIC_STATUS, status)])

    def publish_meta(self, manifest: Mapping[str, Any]) -> None:
        """A new manifest: fed on ``streamtag.meta``, kept for new clients, served as
        ``/manifest.json`` and as the OSCQuery namespace."""
        manifest = dict(manifest)

        def apply() -> Mapping[str, Any]:
            self._set_manifest(manifest)
            return manifest

        self._submit([(wire.TOPIC_META, apply)])

    def close(self) -> None:
        """Close every connection and both ports, stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive() and self._ready.is_set() and self._start_error is None:
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(
                    STOP_TIMEOUT_S)
            except Exception as e:  # closing must finish: say why it was not clean
                log.warning("web server: unclean stop: %s", e)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT_S)
        for sock in (self._web_sock, self._oq_sock):
            if sock is not None:
                sock.close()

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
