"""The examples work against a real daemon: Pure Data's patch, the Python subscriber."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import base_config, free_port, start_daemon

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("pd") is None, reason="Pure Data not installed (puredata-core)")
def test_pure_data_patch_receives_the_bundles(tmp_path: Path, data_dir: Path) -> None:
    port = free_port()
    patch = tmp_path / "receive.pd"
    text = (ROOT / "examples" / "puredata" / "streamtag-receive.pd").read_text()
    patch.write_text(text.replace("netreceive -u -b 9000", f"netreceive -u -b {port}"))
    pd = subprocess.Popen(["pd", "-nogui", "-noaudio", "-nomidi", "-stderr", "-open", str(patch)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.5)  # Pd opening its socket
        cfg, _ = base_config(tmp_path, targets=[{"host": "127.0.0.1", "port": port}])
        proc = start_daemon(["--input", str(data_dir / "signal.wav"), "--no-realtime",
                             "--checkpoint", str(data_dir / "tiny-default.safetensors")],
                            cfg, tmp_path)
        assert proc.wait(60) == 0, proc.stderr.read()
        time.sleep(0.5)
    finally:
        pd.terminate()
    out = pd.communicate(timeout=10)[0]
    emotion = [ln for ln in out.splitlines() if ln.startswith("emotion:")]
    assert len(emotion) == 6  # 3 s of audio, one bundle per 0.5 s hop
    assert all(len(ln.split()) == 3 for ln in emotion)  # valence and arousal
    assert "instrument: flute" in out or "instrument:" in out


def test_python_subscriber_example(tmp_path: Path, data_dir: Path) -> None:
    cfg, endpoint = base_config(tmp_path)
    cfg["input"] = {"device": "synthetic:sine", "sample_rate_hz": 22050, "realtime": True}
    daemon = start_daemon(["--checkpoint", str(data_dir / "tiny-default.safetensors")], cfg,
                          tmp_path)
    try:
        sub = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "python" / "subscribe.py"), endpoint,
             "--count", "3"], capture_output=True, text=True, timeout=60)
    finally:
        daemon.terminate()
        daemon.wait(10)
    assert sub.returncode == 0, sub.stderr
    lines = sub.stdout.splitlines()
    assert lines[0].startswith("connected: checkpoint")
    assert len([ln for ln in lines if ln.startswith("t=")]) == 3
