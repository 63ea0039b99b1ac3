"""Shared test support: comparing records (the tolerance stated once) and running the daemon.


Model outputs within 1e-4 absolute (float32 CNN batched vs one window at a time, then rounding
to 6 significant digits), element-wise for lists (``embedding.vector``); level_db within
0.01 dB; ``embedding.xy`` within 1e-2 (the projection divides the vector's float32 noise by
2·std of the fitting set, ~0.01 for a tiny random model whose embeddings hardly move: a 100×
magnification); ``reference.distance`` within 1e-3 (√(2 − 2·cos) magnifies noise near 0);
everything else exact, including ``reference.name`` / ``nearest`` / ``known``. Measurement
fields (``wall``, ``latency_ms``) are excluded.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
import zmq

ATOL = 1e-4


def numbers(rec: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in rec.items():
        if k in ("wall", "latency_ms"):
            continue
        if isinstance(v, dict):
            out.update(numbers(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


TOLERANCES = {"level_db": 0.011, "embedding.xy": 1e-2, "reference.distance": 1e-3}


def assert_records_equal(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and a
    for ra, rb in zip(a, b, strict=True):
        na, nb = numbers(ra), numbers(rb)
        assert na.keys() == nb.keys()
        for k, va in na.items():
            vb = nb[k]
            if k in TOLERANCES and va is not None:
                assert va == pytest.approx(vb, abs=TOLERANCES[k]), k
            elif isinstance(va, list) and va and isinstance(va[0], float):
                assert va == pytest.approx(vb, abs=ATOL), k
            elif isinstance(va, float) and not isinstance(va, bool):
                assert va == pytest.approx(vb, abs=ATOL), k
            elif k in ("emotion.quadrant", "emotion.label", "instrument.top"):
                continue  # derived from values compared above; may flip at a tie
            else:
                assert va == vb, k


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Subscriber:
    """A ZeroMQ SUB socket collecting every message on ``streamtag.``."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"streamtag.")
        self.messages: list[tuple[str, dict]] = []

    def drain(self, timeout_ms: int = 100, max_s: float = 1.0) -> None:
        """Receive until nothing arrives for ``timeout_ms`` or ``max_s`` has passed (a live
        daemon publishes the fast lane every 20 ms, so "until quiet" alone may never end)."""
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline and self.sock.poll(timeout_ms):
            topic, payload = self.sock.recv_multipart()
            # Strict JSON: NaN or Infinity anywhere fails here.
            self.messages.append((topic.decode(), json.loads(
                payload, parse_constant=lambda c: pytest.fail(f"non-finite {c} on the wire"))))

    def topic(self, name: str) -> list[dict]:
        return [m for t, m in self.messages if t == name]

    def close(self) -> None:
        self.sock.close()


def start_daemon(args: list[str], config: dict | None, tmp_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamtag.cli", "run", *args]
    if config is not None:
        path = tmp_path / "daemon.yaml"
        path.write_text(yaml.safe_dump(config))
        cmd += ["--config", str(path)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def base_config(tmp_path: Path, **outputs: object) -> tuple[dict, str]:
    zmq_port = free_port(socket.SOCK_STREAM)
    endpoint = f"tcp://127.0.0.1:{zmq_port}"
    cfg = {"outputs": {"zmq": {"endpoint": endpoint}, "osc": {"targets": [
        {"host": "127.0.0.1", "port": free_port()}]},
        # Any free ports: daemons of tests running side by side must not collide.
        "web": {"port": 0}, "oscquery": {"port": 0}},
        "control": {"port": free_port()}}
    cfg["outputs"]["osc"].update(outputs)
    return cfg, endpoint


def wait_and_collect(proc: subprocess.Popen, sub: Subscriber, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        sub.drain(50)
    sub.drain(200)
    assert proc.poll() is not None, "daemon did not finish"
    return proc.stderr.read()


def wait_status(sub: Subscriber, pred, proc: subprocess.Popen, timeout_s: float = 15.0) -> dict:  # type: ignore[no-untyped-def]
    """The latest ``streamtag.status`` message matching ``pred``; the daemon must stay up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sub.drain(50)
        hits = [m for m in sub.topic("streamtag.status") if pred(m)]
        if hits:
            return hits[-1]
        assert proc.poll() is None, proc.stderr.read()[-2000:]
    raise AssertionError("no status matched")


def run_file_through_daemon(tmp_path: Path, wav: Path, checkpoint: Path,
                            extra: dict | None = None,
                            profile: str = "bundle",
                            **osc: object) -> tuple[Subscriber, list[str]]:
    """``streamtag run --input WAV --no-realtime`` with OSC to oscdump and a ZeroMQ subscriber.

    extra: config sections added to ``base_config`` (e.g. ``reference``). profile: the OSC
    target's. osc: further ``outputs.osc`` keys (e.g. ``fast={"enabled": False}``). Returns the
    subscriber (closed, messages kept) and oscdump's output lines. Fails if the daemon does not
    exit 0.
    """
    osc_port = free_port()
    cfg, endpoint = base_config(tmp_path, targets=[{"host": "127.0.0.1", "port": osc_port,
                                                    "profile": profile}], **osc)
    cfg.update(extra or {})
    dump = subprocess.Popen(["oscdump", "-L", str(osc_port)], stdout=subprocess.PIPE, text=True)
    sub = Subscriber(endpoint)
    try:
        time.sleep(0.3)  # oscdump binding its port
        proc = start_daemon(["--input", str(wav), "--no-realtime", "--checkpoint",
                             str(checkpoint)], cfg, tmp_path)
        err = wait_and_collect(proc, sub)
        assert proc.returncode == 0, err
    finally:
        sub.close()
        time.sleep(0.2)
        dump.terminate()
    return sub, dump.stdout.read().splitlines()
