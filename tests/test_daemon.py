"""The daemon as users run it: a real process, real sockets, real receivers (oscdump, ZeroMQ)."""

from __future__ import annotations

import math
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import zmq
from support import (
    Subscriber,
    assert_records_equal,
    base_config,
    free_port,
    run_file_through_daemon,
    start_daemon,
    wait_and_collect,
    wait_status,
)

from streamtag.checkpoint import load_checkpoint
from streamtag.engine import Engine
from streamtag.testing import make_signal


def test_file_as_fast_as_possible_publishes_what_analyze_computes(
    tmp_path: Path, tiny_default_path: Path
) -> None:
    wav = tmp_path / "take.wav"
    sf.write(wav, make_signal(4.0, 44100), 44100)
    sub, lines = run_file_through_daemon(tmp_path, wav, tiny_default_path)
    published = sub.topic("streamtag.estimate")
    audio, rate = sf.read(wav, dtype="float32")
    expected = Engine(load_checkpoint(tiny_default_path), input_rate_hz=rate).analyze(audio)
    assert_records_equal(published, expected)
    assert len(sub.topic("streamtag.emotion")) == len(expected)
    assert {"streamtag.meta", "streamtag.status", "streamtag.fast", "streamtag.instrument",
            "streamtag.timbre"} <= {t for t, _ in sub.messages}
    # oscdump, an OSC receiver no one here wrote, got one timetagged bundle per hop.
    emotion = [ln for ln in lines if " /streamtag/emotion ff " in ln]
    assert len(emotion) == len(expected)
    first = next(ln for ln in lines if "/streamtag/timbre/brightness" in ln)
    assert first.split()[2] == "f"
    assert any(" /streamtag/instrument sf " in ln for ln in lines)
    assert any(" /streamtag/silent i " in ln for ln in lines)
    assert any(" /streamtag/fast/onset f " in ln for ln in lines)


@pytest.mark.parametrize("kind", ["nan_inf", "clipped", "dc"])
def test_hostile_audio_never_puts_nan_on_the_wire(tmp_path: Path, tiny_default_path: Path,
                                                  kind: str) -> None:
    x = make_signal(2.0, 22050)
    if kind == "nan_inf":
        x[::50] = np.nan
        x[7::300] = np.inf
    elif kind == "clipped":
        x = np.clip(x * 1000, -1, 1)
    else:
        x = np.full_like(x, 0.9)
    wav = tmp_path / "bad.wav"
    sf.write(wav, x, 22050, subtype="FLOAT")
    cfg, endpoint = base_config(tmp_path)
    sub = Subscriber(endpoint)
    try:
        proc = start_daemon(["--input", str(wav), "--no-realtime", "--checkpoint",
                             str(tiny_default_path)], cfg, tmp_path)
        err = wait_and_collect(proc, sub)
    finally:
        sub.close()
    assert proc.returncode == 0, err
    records = sub.topic("streamtag.estimate")
    assert len(records) == 4
    for r in records:
        assert all(math.isfinite(v) for v in r["emotion"].values() if isinstance(v, float))


def test_unreachable_targets_and_a_subscriber_that_never_reads(
    tmp_path: Path, tiny_default_path: Path
) -> None:
    wav = tmp_path / "long.wav"
    sf.write(wav, make_signal(30.0, 22050), 22050)
    good = free_port()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", good))
    receiver.settimeout(0.2)
    cfg, endpoint = base_config(tmp_path, targets=[
        {"host": "127.0.0.1", "port": free_port()},  # closed port
        {"host": "nonexistent.invalid", "port": 9000},  # unresolvable
        {"host": "127.0.0.1", "port": good}])
    cfg["outputs"]["zmq"]["hwm"] = 2
    lazy = zmq.Context.instance().socket(zmq.SUB)  # subscribes, never reads
    lazy.setsockopt(zmq.RCVHWM, 2)
    lazy.connect(endpoint)
    lazy.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        proc = start_daemon(["--input", str(wav), "--no-realtime", "--checkpoint",
                             str(tiny_default_path)], cfg, tmp_path)
        got = 0
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                receiver.recv(65536)
                got += 1
            except TimeoutError:
                pass
        assert proc.wait(5) == 0, proc.stderr.read()
    finally:
        lazy.close()
        receiver.close()
    assert got >= 60  # 60 hop bundles at least (plus fast lane), despite the dead targets
    err = proc.stderr.read()
    assert "nonexistent.invalid" in err


def send_udp(port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, ("127.0.0.1", port))


def osc_message(address: str) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (4 - len(b) % 4)

    return pad(address.encode()) + pad(b",")


def test_control_messages_sighup_with_a_bad_checkpoint_and_sigterm(
    tmp_path: Path, tiny_default_path: Path
) -> None:
    ck = tmp_path / "model.safetensors"
    ck.write_bytes(tiny_default_path.read_bytes())
    cfg, endpoint = base_config(tmp_path)
    cfg["model"] = {"checkpoint": str(ck)}
    cfg["input"] = {"device": "synthetic:sine", "sample_rate_hz": 22050, "realtime": True}
    control = cfg["control"]["port"]
    sub = Subscriber(endpoint)
    proc = start_daemon([], cfg, tmp_path)
    try:
        def wait_for(pred) -> dict:  # type: ignore[no-untyped-def]
            return wait_status(sub, pred, proc)

        # Start-up (imports, model load) on a loaded 2-core machine can take tens of seconds.
        first = wait_status(sub, lambda s: s["hops"] >= 2, proc, timeout_s=60)
        original = first["checkpoint"]
        # Garbage, an unknown address and a malformed message: counted, ignored.
        send_udp(control, b"\xff\x00garbage")
        send_udp(control, osc_message("/streamtag/control/explode"))
        send_udp(control, b"/streamtag/control/reset")  # not padded: malformed
        send_udp(control, osc_message("/streamtag/control/pause"))
        wait_for(lambda s: s["paused"])
        send_udp(control, osc_message("/streamtag/control/resume"))
        resumed = wait_for(lambda s: not s["paused"] and s["control"]["unknown"] >= 1)
        assert resumed["control"]["malformed"] >= 2
        # describe answers the sender with the manifest.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(osc_message("/streamtag/control/describe"), ("127.0.0.1", control))
            reply = s.recv(65536)
        assert reply.startswith(b"/streamtag/manifest")
        # A corrupt checkpoint on SIGHUP is refused and the running model kept.
        ck.write_bytes(b"\x00" * 100)
        proc.send_signal(signal.SIGHUP)
        refused = wait_for(lambda s: s["reloads_refused"] >= 1)
        assert refused["checkpoint"] == original
        hops = refused["hops"]
        later = wait_for(lambda s: s["hops"] >= hops + 2)
        assert later["checkpoint"] == original
        # A good checkpoint again: reload is accepted over the control port.
        ck.write_bytes(tiny_default_path.read_bytes())
        send_udp(control, osc_message("/streamtag/control/reload"))
        wait_for(lambda s: s["reloads"] >= 1)
        # SIGTERM: clean exit within a second.
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert time.monotonic() - t0 < 1.0
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    assert "reload refused" in proc.stderr.read()


def test_no_model_and_bad_flags_are_usage_errors(tmp_path: Path) -> None:
    from streamtag.checkpoint import BUNDLED_CHECKPOINT

    bad = subprocess.run([sys.executable, "-m", "streamtag.cli", "run", "--osc", "nohost"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--osc 'nohost': expected HOST:PORT" in bad.stderr
    if not BUNDLED_CHECKPOINT.exists():
        proc = subprocess.run([sys.executable, "-m", "streamtag.cli", "run", "--input",
                               "synthetic:sine"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "no trained model is bundled" in proc.stderr


def test_no_input_device_names_the_ways_out(tmp_path: Path, tiny_default_path: Path) -> None:
    from streamtag.audio.devices import list_devices

    if list_devices():
        pytest.skip("this machine has an input device")
    cfg, _ = base_config(tmp_path)
    proc = start_daemon(["--checkpoint", str(tiny_default_path)], cfg, tmp_path)
    assert proc.wait(60) == 1
    err = proc.stderr.read()
    for hint in ("streamtag devices", "--input FILE", "jackd -d dummy"):
        assert hint in err, err


def test_describe_answers_four_streams_in_datagrams_within_the_size_rule(
    tmp_path: Path, tiny_default_path: Path
) -> None:
    """The manifest of four streams (tens of KB) comes back from a running daemon as
    ``/streamtag/manifest iis`` parts of at most ``max_datagram_bytes``, that join into the
    manifest ZeroMQ carries whole."""
    import json

    from pythonosc.osc_message import OscMessage

    cfg, endpoint = base_config(tmp_path)
    cfg["input"] = {"device": "synthetic:sine", "sample_rate_hz": 22050, "realtime": True}
    cfg["streams"] = [{"name": n, "channels": [i]} for i, n in enumerate("abcd")]
    control = cfg["control"]["port"]
    sub = Subscriber(endpoint)
    proc = start_daemon(["--checkpoint", str(tiny_default_path)], cfg, tmp_path)
    try:
        wait_status(sub, lambda s: s["hops"] >= 1, proc, timeout_s=60)
        meta = sub.topic("streamtag.meta")[-1]
        pieces: dict[int, str] = {}
        sizes = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(osc_message("/streamtag/control/describe"), ("127.0.0.1", control))
            count = None
            while count is None or len(pieces) < count:
                data = s.recv(65536)
                sizes.append(len(data))
                part, count, piece = OscMessage(data).params
                pieces[part] = piece
    finally:
        proc.terminate()
        proc.wait(10)
        sub.close()
    manifest = json.loads("".join(pieces[k] for k in range(count)))
    assert manifest == meta
    assert manifest["osc"]["streams"] == ["a", "b", "c", "d"]
    assert len(json.dumps(manifest)) > 20_000 and count > 10
    assert max(sizes) <= 1472
