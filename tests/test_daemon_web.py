"""The running daemon's live view, WebSocket feed and OSCQuery, as their users meet them.

One daemon (the bundled model) plays a generated piece in real time for the whole module: two
8 s sections that differ (a dark minor pad with a kick and hi-hats, then a bright major chord
with snares), so the analysis has something to follow. Against it:

- a Python WebSocket client receives the very records, fast-lane frames and manifest that a
  ZeroMQ subscriber receives;
- python-oscquery reads HOST_INFO and the whole OSCQuery tree: it lists every address of the
  manifest the daemon sends over ZeroMQ, with the values last published;
- headless Chromium loads the page: it connects, its values move while the music plays, and a
  screenshot shows what the page says (the emotion point where the record puts it, away from
  the centre; the strips drawn).
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from chromium import Chromium, chromium_path
from PIL import Image
from pythonosc.udp_client import SimpleUDPClient
from support import Subscriber, base_config, start_daemon, wait_status
from websockets.sync.client import connect

from streamtag.publish import oscquery
from streamtag.publish.web import WS_PATH

SR = 22050
SECTION_S = 8.0
#: Where the test leaves its screenshot when asked (the README's docs/live-view.png is made so).
SCREENSHOT_ENV = "STREAMTAG_LIVE_VIEW_PNG"


def piece(duration_s: float = 90.0) -> np.ndarray:
    """Alternating 8 s sections at 120 BPM: A minor pad, kick on each beat, hi-hat between;
    C major in a higher octave, brighter (more harmonics), snare on beats 2 and 4."""
    rng = np.random.default_rng(7)
    n = int(duration_s * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    beat = 0.5
    for k in range(int(duration_s / SECTION_S)):
        a, b = int(k * SECTION_S * SR), int((k + 1) * SECTION_S * SR)
        tt = t[a:b] - t[a]
        dark = k % 2 == 0
        notes = (220.0, 261.63, 329.63) if dark else (523.25, 659.25, 783.99)
        harmonics = 2 if dark else 6
        for f in notes:
            for h in range(1, harmonics + 1):
                out[a:b] += 0.08 / h * np.sin(2 * np.pi * f * h * tt)
        phase = tt % beat
        if dark:
            out[a:b] += 0.6 * np.sin(2 * np.pi * 55 * phase) * np.exp(-phase / 0.08)
            off = (tt - beat / 2) % beat
            out[a:b] += 0.15 * rng.standard_normal(b - a) * np.exp(-off / 0.02)
        else:
            two_four = (tt % (2 * beat)) - beat
            hit = np.where(two_four >= 0, two_four, 10.0)
            out[a:b] += 0.4 * rng.standard_normal(b - a) * np.exp(-hit / 0.06)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


class Daemon:
    def __init__(self, proc: Any, sub: Subscriber, status: dict[str, Any], control_port: int):
        self.proc, self.sub, self.status, self.control_port = proc, sub, status, control_port
        self.web_url: str = status["web"]["url"]
        self.oscquery_url: str = status["web"]["oscquery_url"]
        self.ws_url = self.web_url.replace("http", "ws", 1).rstrip("/") + WS_PATH

    def control(self, command: str) -> None:
        SimpleUDPClient("127.0.0.1", self.control_port).send_message(
            f"/streamtag/control/{command}", [])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("web")
    wav = tmp / "piece.wav"
    sf.write(wav, piece(), SR)
    cfg, endpoint = base_config(tmp)
    cfg["input"] = {"file": str(wav), "realtime": True}
    proc = start_daemon([], cfg, tmp)
    sub = Subscriber(endpoint)
    try:
        status = wait_status(sub, lambda m: m["hops"] >= 2 and m.get("web"), proc, 120)
        yield Daemon(proc, sub, status, cfg["control"]["port"])
    finally:
        sub.close()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]


def collect_ws(url: str, stop: threading.Event, into: list[dict]) -> None:
    with connect(url, max_size=None) as ws:
        while not stop.is_set():
            try:
                into.append(json.loads(ws.recv(timeout=0.2)))
            except TimeoutError:
                continue


def test_websocket_feed_carries_what_zeromq_publishes(daemon: Daemon) -> None:
    got: list[dict] = []
    stop = threading.Event()
    reader = threading.Thread(target=collect_ws, args=(daemon.ws_url, stop, got))
    reader.start()
    try:
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline:
            daemon.sub.drain(50, max_s=0.5)
    finally:
        stop.set()
        reader.join()
    daemon.sub.drain(200)
    by_topic: dict[str, list[dict]] = {}
    for m in got:
        by_topic.setdefault(m["topic"], []).append(m["data"])
    assert got[0]["topic"] == "streamtag.meta"
    assert got[0]["data"] == daemon.sub.topic("streamtag.meta")[-1]  # one manifest, both ways
    for topic, key in (("streamtag.estimate", "seq"), ("streamtag.emotion", "seq"),
                       ("streamtag.embedding", "seq"), ("streamtag.fast", "t")):
        zmq_by_key = {m[key]: m for m in daemon.sub.topic(topic)}
        ws = by_topic.get(topic, [])
        common = [m for m in ws if m[key] in zmq_by_key]
        assert len(common) >= (8 if topic != "streamtag.fast" else 200), topic
        assert len(common) >= len(ws) - 2, topic  # every one but the last, still in flight
        for m in common:
            assert m == zmq_by_key[m[key]], topic  # the same JSON, value for value
    status = by_topic["streamtag.status"][-1]
    assert status["web"]["clients"] >= 1 and status["dropped"] == 0


def test_oscquery_of_the_running_daemon_lists_every_published_address(daemon: Daemon) -> None:
    from pythonoscquery.osc_query_client import OSCQueryClient
    from pythonoscquery.shared.osc_access import OSCAccess
    from zeroconf import ServiceInfo

    host, port = daemon.oscquery_url.split("//")[1].rstrip("/").rsplit(":", 1)
    # The service as zeroconf would hand it over; the test itself never uses mDNS.
    info = ServiceInfo(oscquery.SERVICE_TYPE, f"streamtag.{oscquery.SERVICE_TYPE}",
                       addresses=[socket.inet_aton(host)], port=int(port))
    client = OSCQueryClient(info)
    host_info = client.get_host_info()
    assert host_info.name == "streamtag"
    assert host_info.osc_port == daemon.control_port and host_info.osc_transport == "UDP"
    assert host_info.extensions["ACCESS"] and host_info.extensions["RANGE"]
    # The library reads the whole tree (its parser refuses a node with a value and sub-nodes,
    # and a readable node without VALUE: the tree is served so that it reads all of it).
    tree = client.query_node("/")
    assert tree is not None
    nodes = {n.full_path: n for n in tree}
    manifest = daemon.sub.topic("streamtag.meta")[-1]
    osc = manifest["osc"]
    published = ({a["address"] for a in osc["addresses"]} | {c["address"] for c in osc["control"]}
                 | {osc["manifest"]["address"]})
    assert published <= set(nodes)
    # Every per-hop and fast-lane leaf is readable and has the value last sent: numbers once
    # the music plays (the daemon has run hops before the fixture hands over).
    leaves = [a for a in osc["addresses"] if not nodes[a["address"]].contents]
    assert all(nodes[a["address"]].access == OSCAccess.READONLY_VALUE for a in leaves)
    assert all(len(nodes[a["address"]].value) == len(a["types"]) for a in leaves)
    level = nodes[next(a["address"] for a in leaves if a["address"].endswith("/level"))]
    assert isinstance(level.value[0], float) and -120.0 < level.value[0] <= 0.0
    onset = nodes[next(a["address"] for a in leaves if a["address"].endswith("/fast/onset"))]
    assert isinstance(onset.value[0], float)
    # The same tree as plain JSON: types, ranges and descriptions from the manifest.
    with urllib.request.urlopen(daemon.oscquery_url, timeout=10) as r:
        assert r.headers["Content-Type"] == "application/json"
        root = json.loads(r.read())
    assert set(oscquery.methods(root)) == published
    for entry in osc["addresses"]:  # each with its type, range and description
        node = root
        for part in entry["address"].strip("/").split("/"):
            node = node["CONTENTS"][part]
        assert node["TYPE"] == entry["types"] and node["DESCRIPTION"] == entry["description"]
        assert node["ACCESS"] == (oscquery.ACCESS_NONE if node.get("CONTENTS")
                                  else oscquery.ACCESS_READ)
        ranges = [a["range"] for a in entry["args"]]
        if any(ranges):
            assert node["RANGE"] == [None if r is None else {"MIN": min(r), "MAX": max(r)}
                                     for r in ranges]
    assert any("/fast/onset" in a for a in published) and any("/tags/" in a for a in published)


def page_state(browser: Chromium) -> dict[str, str]:
    return browser.evaluate("(() => { const e = document.getElementById('state'); "
                            "return e ? Object.assign({}, e.dataset) : {}; })()")


def rect(browser: Chromium, element_id: str) -> tuple[int, int, int, int]:
    r = browser.evaluate(f"(() => {{ const r = document.getElementById('{element_id}')"
                         ".getBoundingClientRect(); "
                         "return [r.left, r.top, r.right, r.bottom]; })()")
    return tuple(round(x) for x in r)  # type: ignore[return-value]


def near(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> np.ndarray:
    return (np.abs(pixels[..., :3].astype(int) - np.array(rgb)).sum(axis=-1) <= tol)


QUADRANT_RGB = {1: (246, 224, 94), 2: (252, 129, 129), 3: (99, 179, 237), 4: (104, 211, 145)}
ONSET_RGB, NOVELTY_RGB, LEVEL_RGB = (79, 209, 197), (246, 173, 85), (104, 211, 145)


@pytest.mark.browser
def test_live_view_in_headless_chromium_follows_the_music(daemon: Daemon, tmp_path: Path
                                                          ) -> None:
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing (scripts/setup --dev installs it)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    with Chromium(tmp_path / "profile", width=1280, height=1150) as browser:
        browser.navigate(daemon.web_url)
        deadline = time.monotonic() + 30
        while True:
            first = page_state(browser)
            if first.get("conn") == "open" and int(first.get("records", 0)) >= 2:
                break
            assert time.monotonic() < deadline, f"page never got records: {first}"
            time.sleep(0.2)
        time.sleep(3.0)  # 3 s of music later
        if os.environ.get(SCREENSHOT_ENV):  # the README's picture: longer trails, not paused
            time.sleep(15.0)
            Path(os.environ[SCREENSHOT_ENV]).write_bytes(browser.screenshot())
        second = page_state(browser)
        assert int(second["records"]) >= int(first["records"]) + 4
        assert int(second["fast"]) >= int(first["fast"]) + 100  # the 50 Hz fast lane
        assert float(second["t"]) > float(first["t"])
        moved = [k for k in ("valence", "arousal", "xy", "novelty") if first[k] != second[k]]
        assert moved, (first, second)
        # Freeze the picture (the daemon stops publishing) before reading what it shows.
        daemon.control("pause")
        try:
            time.sleep(0.8)
            state = page_state(browser)
            png = browser.screenshot()
            strips = rect(browser, "strips")
        finally:
            daemon.control("resume")
    (tmp_path / "live-view.png").write_bytes(png)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert img.shape[:2] == (1150, 1280)
    # Not blank: many colours, real contrast.
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200 and img.std() > 15
    # The emotion point: drawn where the latest record puts it, in its quadrant's colour, and
    # (this music is not neutral) away from the centre of the plane.
    assert state["statusHops"] and state["checkpoint"]
    px, py = (int(v) for v in state["planePoint"].split(","))
    cx, cy = (int(v) for v in state["planeCentre"].split(","))
    v, a = float(state["valence"]), float(state["arousal"])
    assert np.hypot(px - cx, py - cy) > 10 and abs(v) + abs(a) > 0.1, state
    assert np.sign(px - cx) == np.sign(v) or abs(v) < 0.05
    assert np.sign(cy - py) == np.sign(a) or abs(a) < 0.05
    colour = QUADRANT_RGB[int(state["quadrant"])]
    assert near(img[py - 3:py + 4, px - 3:px + 4], colour).sum() >= 20, img[py, px]
    assert not near(img[cy - 1:cy + 2, cx - 1:cx + 2], colour).any()
    # The map's point too.
    mx, my = (int(v) for v in state["mapPoint"].split(","))
    assert near(img[my - 3:my + 4, mx - 3:mx + 4], (213, 63, 140)).sum() >= 20
    # The strips: onset bars (fast lane), the level line, novelty where there is some.
    x0, y0, x1, y1 = strips
    lanes = img[y0:y1, x0:x1]
    assert near(lanes, ONSET_RGB).sum() > 200
    assert near(lanes, LEVEL_RGB, 60).sum() > 50
    if float(state["novelty"]) > 0.05:
        assert near(lanes, NOVELTY_RGB).sum() > 20
