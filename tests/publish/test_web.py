"""The web server on its own: the page and its files, the WebSocket feed (payloads, topics,
slow clients), OSCQuery over HTTP, errors at start, clean stop."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from streamtag.errors import ConfigError
from streamtag.publish import wire
from streamtag.publish.web import WS_PATH, WebServer

MANIFEST = wire.build_manifest([{"name": "emotion", "kind": "regression",
                                 "labels": ["valence", "arousal"]}],
                               "/streamtag", ["main"], wire.FAST_NAMES, 50.0)


def record(seq: int) -> dict[str, Any]:
    return {"seq": seq, "t": 0.5 * (seq + 1), "stream": "main", "wall": 1.7e9 + seq,
            "latency_ms": 3.0, "level_db": float("-inf"), "silent": False,
            "emotion": {"valence": 0.25, "arousal": -0.5, "quadrant": 4, "label": "calm"},
            "embedding": {"xy": [0.1, -0.2], "vector": [0.6, 0.8]}}


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def ws_url(server: WebServer, query: str = "") -> str:
    assert server.web_url is not None
    return server.web_url.replace("http", "ws", 1).rstrip("/") + WS_PATH + query


def wait_for(pred, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with WebServer(web=("127.0.0.1", 0), oscquery=("127.0.0.1", 0), manifest=MANIFEST,
                   queue_messages=8, osc_control=("127.0.0.1", 9001)) as s:
        yield s


def test_the_page_and_its_files_are_served_from_the_package(server: WebServer) -> None:
    status, kind, body = get(server.web_url)
    assert status == 200 and kind.startswith("text/html")
    page = body.decode()
    assert 'src="live.js"' in page and 'href="live.css"' in page
    assert "http" not in page.replace("http-equiv", "")  # no CDN: nothing from elsewhere
    status, kind, js = get(server.web_url + "live.js")
    assert status == 200 and "javascript" in kind and WS_PATH.encode() in js
    assert get(server.web_url + "live.css")[0] == 200
    status, kind, body = get(server.web_url + "manifest.json")
    assert status == 200 and kind == "application/json" and json.loads(body) == MANIFEST
    assert get(server.web_url + "nothing")[0] == 404


def test_feed_sends_the_zeromq_payloads_with_the_manifest_first(server: WebServer) -> None:
    with connect(ws_url(server)) as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first == {"topic": wire.TOPIC_META, "data": MANIFEST}
        wait_for(lambda: server.clients == 1)
        rec = record(3)
        server.publish_record(rec)
        server.publish_fast("main", 1.7e9, {"loudness": -20.0, "onset": 0.5}, t=2.0)
        got = [json.loads(ws.recv(timeout=10)) for _ in range(4)]
    expected = [(t, json.loads(wire.encode_payload(make())[0]))
                for t, make in wire.record_payloads(rec)]
    expected.append((wire.TOPIC_FAST, {"stream": "main", "t": 2.0, "wall": 1.7e9,
                                       "values": {"loudness": -20.0, "onset": 0.5}}))
    assert [(m["topic"], m["data"]) for m in got] == expected
    estimate = got[0]["data"]
    assert "vector" not in estimate["embedding"]  # as streamtag.estimate carries it
    assert estimate["level_db"] == wire.LEVEL_FLOOR_DB  # strict JSON: -inf clamped
    assert got[2]["data"]["embedding"]["vector"] == [0.6, 0.8]  # streamtag.embedding has it


def test_a_client_chooses_its_topics_by_prefix(server: WebServer) -> None:
    server.publish_status({"hops": 1})
    wait_for(lambda: json.loads(get(server.web_url + "status.json")[2]) == {"hops": 1})
    with connect(ws_url(server, "?topics=streamtag.status,streamtag.fast")) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"topic": wire.TOPIC_STATUS,
                                                   "data": {"hops": 1}}
        wait_for(lambda: server.clients == 1)
        server.publish_record(record(0))
        server.publish_fast("main", 1.0, {"onset": 0.1}, t=0.5)
        assert json.loads(ws.recv(timeout=10))["topic"] == wire.TOPIC_FAST


def test_a_client_that_does_not_read_loses_messages_and_stalls_nobody(server: WebServer
                                                                        ) -> None:
    """One tab stops reading: its queue (8 messages here) fills behind its full socket, the
    rest of its messages are dropped and counted; a second client that reads still gets every
    message."""
    received: list[dict] = []
    host = server.web_url.split("//")[1].rstrip("/")
    sleeper = socket.socket()
    sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: it counts
    sleeper.connect(("127.0.0.1", int(host.rsplit(":", 1)[1])))
    sleeper.sendall((f"GET {WS_PATH} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    with connect(ws_url(server, "?topics=streamtag.fast"), max_size=None) as ws:
        wait_for(lambda: server.clients == 2)
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                try:
                    received.append(json.loads(ws.recv(timeout=0.5)))
                except TimeoutError:
                    continue

        reader = threading.Thread(target=read)
        reader.start()
        big = {f"v{i}": float(i) for i in range(2000)}  # ~25 KB a message
        n = 400
        for i in range(n):
            server.publish_fast("main", float(i), big, t=float(i))
            if i % 4 == 3:  # bursts within its queue: the reader keeps up; the sleeper never reads
                wait_for(lambda i=i: len(received) > i - 4)
        wait_for(lambda: len(received) == n, 30)
        stop.set()
        reader.join()
    sleeper.close()
    assert [m["data"]["t"] for m in received] == [float(i) for i in range(n)]
    stats = server.stats
    assert stats["dropped"] > 0 and stats["errors"] == 0


def test_oscquery_is_served_on_its_own_port(server: WebServer) -> None:
    assert server.oscquery_url is not None
    status, kind, body = get(server.oscquery_url + "?HOST_INFO")
    assert status == 200 and kind == "application/json"
    info = json.loads(body)
    assert info["NAME"] == "streamtag" and info["OSC_PORT"] == 9001
    root = json.loads(get(server.oscquery_url)[2])
    assert root["CONTENTS"]["streamtag"]["CONTENTS"]["emotion"]["TYPE"] == "ff"
    # VALUE: null until something is published, then the arguments last sent over OSC.
    assert json.loads(get(server.oscquery_url + "streamtag/emotion?VALUE")[2]) == {
        "VALUE": [None, None]}
    server.publish_record(record(0))  # no feed client: kept for OSCQuery all the same
    server.publish_fast("main", 1.0, {"onset": 0.5})
    assert json.loads(get(server.oscquery_url + "streamtag/emotion?VALUE")[2]) == {
        "VALUE": [0.25, -0.5]}
    root = json.loads(get(server.oscquery_url)[2])
    assert root["CONTENTS"]["streamtag"]["CONTENTS"]["fast"]["CONTENTS"]["onset"]["VALUE"] == [
        0.5]
    assert get(server.oscquery_url + "streamtag/control/reset?VALUE")[0] == 204
    assert get(server.oscquery_url + "nothing")[0] == 404


def test_a_new_manifest_reaches_clients_the_page_and_oscquery(server: WebServer) -> None:
    new = dict(MANIFEST, checkpoint="new")
    new["osc"] = dict(MANIFEST["osc"], addresses=MANIFEST["osc"]["addresses"][:1])
    with connect(ws_url(server, "?topics=streamtag.meta")) as ws:
        assert json.loads(ws.recv(timeout=10))["data"] == MANIFEST
        server.publish_meta(new)
        assert json.loads(ws.recv(timeout=10))["data"] == new
    assert json.loads(get(server.web_url + "manifest.json")[2]) == new
    root = json.loads(get(server.oscquery_url)[2])
    assert "valence" not in root["CONTENTS"]["streamtag"]["CONTENTS"]["emotion"].get(
        "CONTENTS", {})


def test_a_port_in_use_is_a_config_error_naming_the_key() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=r"outputs\.web: cannot listen on 127\.0\.0\.1"):
            WebServer(web=("127.0.0.1", port), oscquery=None, manifest=MANIFEST)
        with pytest.raises(ConfigError, match=r"outputs\.oscquery"):
            WebServer(web=("127.0.0.1", 0), oscquery=("127.0.0.1", port), manifest=MANIFEST)


def test_close_ends_connections_frees_the_ports_and_can_repeat() -> None:
    s = WebServer(web=("127.0.0.1", 0), oscquery=None, manifest=MANIFEST)
    port = int(s.web_url.rsplit(":", 1)[1].rstrip("/"))
    with connect(ws_url(s)) as ws:
        ws.recv(timeout=10)
        s.close()
        s.close()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    s.publish_status({"after": "close"})  # ignored, no error
    again = WebServer(web=("127.0.0.1", port), oscquery=None, manifest=MANIFEST)
    again.close()


@pytest.mark.browser
def test_the_page_shows_tempo_and_beats_when_the_records_carry_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Tempo and beat come from another stage (a ``tempo`` record section, ``beat`` in the
    fast lane or on ``streamtag.beat``): the page shows them when they are there, a dash when
    they are not."""
    from chromium import Chromium, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium not installed (apt-get install chromium)")

    def text(browser: Chromium, element_id: str) -> str:
        return browser.evaluate(f"document.getElementById('{element_id}').textContent")

    with WebServer(web=("127.0.0.1", 0), oscquery=None, manifest=MANIFEST) as server, \
            Chromium(tmp_path / "profile") as browser:
        browser.navigate(server.web_url)
        wait_for(lambda: server.clients == 1, 30)
        server.publish_record(record(0))
        wait_for(lambda: text(browser, "time").startswith("0.5 s"))
        assert text(browser, "tempo") == "—"
        rec = dict(record(1), tempo={"bpm": 120.0, "confidence": 0.75, "last_beat_t": 0.9})
        server.publish_record(rec)
        server.publish_fast("main", 1.7e9, {"onset": 2.0, "beat": 1.0}, t=1.02)
        server.publish(wire.TOPIC_PREFIX + "beat", {"stream": "main", "t": 1.5, "wall": 1.7e9,
                                                    "beat": 3, "bpm": 120.0})
        wait_for(lambda: text(browser, "tempo") == "120.0 BPM (0.75)")
        state = browser.evaluate("Object.assign({}, document.getElementById('state').dataset)")
        wait_for(lambda: browser.evaluate(
            "document.getElementById('state').dataset.beats") == "3")
        assert state["conn"] == "open"


@pytest.mark.parametrize("request_bytes", [
    b"\x00\xff not http\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",  # the feed without the WebSocket upgrade
])
def test_malformed_requests_are_refused_and_the_server_keeps_serving(
        server: WebServer, request_bytes: bytes) -> None:
    for url in (server.web_url, server.oscquery_url):
        host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as c:
            c.sendall(request_bytes)
            reply = c.recv(100)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 4")
    assert get(server.web_url + "status.json")[0] == 200
    assert get(server.oscquery_url + "?HOST_INFO")[0] == 200
    assert server.stats["errors"] == 0
