"""Each output profile heard by receivers no one here wrote: liblo's ``oscdump`` (which prints
type tags), Pure Data's ``[netreceive -u -b]`` → ``[oscparse]``, SuperCollider's ``sclang``
(OSCdef), and a running daemon sending to Wekinator's port as oscdump sees it.

Wekinator and TouchDesigner do not run here: their profiles are checked against their
documented formats (Wekinator: one ``/wek/inputs`` message of N floats on port 6448;
TouchDesigner's OSC In CHOP: numbers only, so no ``s`` type tag anywhere).
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pythonosc.udp_client import SimpleUDPClient

from streamtag.publish import osc

from .helpers import FULL_RECORD, SAMPLE_RECORD, free_udp_port
from .test_osc_golden import EXPECTED_LAYOUT
from .test_osc_oscdump import OscDump

HAVE_OSCDUMP = shutil.which("oscdump") is not None


class Lines:
    """A subprocess whose output lines (stdout and stderr together) land in a queue."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pred: Callable[[str], bool], timeout_s: float,
                 poke: Callable[[], None] | None = None) -> str:
        """The first line that satisfies ``pred``; ``poke`` is called every 0.2 s meanwhile."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if poke is not None:
                poke()
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, f"{self.proc.args[0]} exited: {self.seen}"
                continue
            self.seen.append(line)
            if pred(line):
                return line
        raise AssertionError(f"{self.proc.args[0]}: no such line within {timeout_s} s: "
                             f"{self.seen[-20:]}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def oscdump() -> Iterator[OscDump]:
    if not HAVE_OSCDUMP:
        pytest.skip("oscdump not installed (Debian liblo-tools)")
    d = OscDump()
    yield d
    d.close()


# -- plain -------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_OSCDUMP, reason="oscdump not installed (Debian liblo-tools)")
def test_oscdump_receives_plain_messages_with_receive_time_not_the_hop_timetag(
    oscdump: OscDump,
) -> None:
    wall = 1763768400.125  # long past: a bundle would carry it, plain messages cannot
    with osc.OscPublisher([osc.TargetSpec("127.0.0.1", oscdump.port, "plain")],
                          "/streamtag", ["main"]) as pub:
        pub.publish({**SAMPLE_RECORD, "wall": wall})
        lines = oscdump.take(len(EXPECTED_LAYOUT))
    assert [(f[1], f[2]) for f in lines] == EXPECTED_LAYOUT
    # oscdump stamps a plain message with the time it arrived (now), a bundle's with its tag.
    now = time.time()
    for f in lines:
        seconds = int(f[0].split(".")[0], 16) - osc.NTP_DELTA_S
        assert abs(seconds - now) < 60
    assert oscdump.lines.empty()


@pytest.mark.skipif(shutil.which("pd") is None, reason="Pure Data not installed (puredata-core)")
def test_pure_data_netreceive_and_oscparse_take_the_plain_profile(tmp_path: Path) -> None:
    port = free_udp_port()
    patch = tmp_path / "plain.pd"
    patch.write_text(
        "#N canvas 0 0 400 300 12;\n"
        f"#X obj 10 10 netreceive -u -b {port};\n"
        "#X obj 10 40 oscparse;\n"
        "#X obj 10 70 list trim;\n"
        "#X obj 10 100 print osc;\n"
        "#X connect 0 0 1 0;\n#X connect 1 0 2 0;\n#X connect 2 0 3 0;\n")
    pd = Lines(["pd", "-nogui", "-noaudio", "-nomidi", "-stderr", "-open", str(patch)])
    try:
        probe = SimpleUDPClient("127.0.0.1", port)
        pd.wait_for(lambda ln: ln.startswith("osc: probe"), 20,
                    poke=lambda: probe.send_message("/probe", 1))
        time.sleep(0.3)
        while not pd.lines.empty():
            pd.lines.get()
        pd.seen.clear()
        with osc.OscPublisher([osc.TargetSpec("127.0.0.1", port, "plain")], "/streamtag",
                              ["main"]) as pub:
            pub.publish(SAMPLE_RECORD)
            pd.wait_for(lambda ln: ln.startswith("osc: streamtag silent"), 10)
    finally:
        pd.close()
    got = [ln.split()[1:] for ln in pd.seen if ln.startswith("osc: streamtag")]
    # Every message of the hop, in order, address parts as Pd splits them, then the values.
    assert len(got) == len(EXPECTED_LAYOUT)
    values = {}
    for g, (address, types) in zip(got, EXPECTED_LAYOUT, strict=True):
        parts = address.strip("/").split("/")
        assert g[: len(parts)] == parts
        assert len(g) == len(parts) + len(types)
        values[address] = g[len(parts):]
    assert values["/streamtag/emotion"] == ["0.41", "-0.12"]
    assert values["/streamtag/instrument"] == ["violin", "0.83"]
    assert values["/streamtag/emotion/quadrant"] == ["4"]


SCLANG_SCRIPT = """
var port = {port};
thisProcess.openUDPPort(port);
OSCdef(\\stEmotion, {{ |msg| ("EMOTION" + msg[1].round(0.001) + msg[2].round(0.001)).postln }},
    '/streamtag/emotion', recvPort: port);
OSCdef(\\stInstrument, {{ |msg| ("INSTRUMENT" + msg[1] + msg[2].round(0.001)).postln }},
    '/streamtag/instrument', recvPort: port);
thisProcess.addOSCRecvFunc({{ |msg, time, addr, recvPort|
    if(recvPort == port) {{ ("MSG" + msg[0] + (msg.size - 1)).postln }} }});
"READY".postln;
"""


@pytest.mark.skipif(shutil.which("sclang") is None,
                    reason="SuperCollider not installed (supercollider-language)")
def test_supercollider_oscdef_takes_the_plain_and_touchdesigner_profiles(tmp_path: Path) -> None:
    port = free_udp_port()
    script = tmp_path / "receive.scd"
    script.write_text(SCLANG_SCRIPT.format(port=port))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QTWEBENGINE_DISABLE_SANDBOX": "1"}
    sc = Lines(["sclang", str(script)], env=env)
    try:
        sc.wait_for(lambda ln: ln == "READY", 60)
        targets = [osc.TargetSpec("127.0.0.1", port, "plain")]
        with osc.OscPublisher(targets, "/streamtag", ["main"]) as pub:
            pub.publish(SAMPLE_RECORD)
            sc.wait_for(lambda ln: ln.startswith("MSG /streamtag/silent"), 10)
        plain = [ln for ln in sc.seen if ln.startswith(("MSG", "EMOTION", "INSTRUMENT"))]
        sc.seen.clear()
        targets = [osc.TargetSpec("127.0.0.1", port, "touchdesigner")]
        with osc.OscPublisher(targets, "/streamtag", ["main"]) as pub:
            pub.set_names(["clarinet", "tenor saxophone", "violin"], None)
            pub.publish(SAMPLE_RECORD)
            sc.wait_for(lambda ln: ln.startswith("MSG /streamtag/silent"), 10)
        touch = [ln for ln in sc.seen if ln.startswith(("MSG", "EMOTION", "INSTRUMENT"))]
    finally:
        sc.close()
    msgs = [ln.split() for ln in plain if ln.startswith("MSG")]
    assert [(m[1], int(m[2])) for m in msgs] == [(a, len(t)) for a, t in EXPECTED_LAYOUT]
    assert "EMOTION 0.41 -0.12" in plain
    assert "INSTRUMENT violin 0.83" in plain
    assert "INSTRUMENT 2 0.83" in touch  # violin: class 2 of the manifest's classes


# -- touchdesigner ---------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_OSCDUMP, reason="oscdump not installed (Debian liblo-tools)")
def test_oscdump_sees_no_string_type_tag_in_the_touchdesigner_profile(oscdump: OscDump) -> None:
    with osc.OscPublisher([osc.TargetSpec("127.0.0.1", oscdump.port, "touchdesigner")],
                          "/streamtag", ["main"]) as pub:
        pub.set_names(["clarinet", "tenor saxophone", "violin"], ["chorus", "intro"])
        pub.publish(FULL_RECORD)
        n = len(osc.encode_record_plain(FULL_RECORD, "/streamtag", None).messages)
        lines = oscdump.take(n)
        pub.send_fast("main", time.time(), {"loudness": -20.0, "centroid": 900.0})
        lines += oscdump.take(2)
        pub.send_values("/vis/xy", (0.5, 0.25))
        lines += oscdump.take(1)
    types = {f[1]: f[2] for f in lines}
    assert all(set(t) <= {"f", "i"} for t in types.values()), types
    assert not any('"' in " ".join(f[3:]) for f in lines)  # oscdump quotes strings
    values = {f[1]: f[3:] for f in lines}
    assert (types["/streamtag/instrument"], values["/streamtag/instrument"]) == (
        "if", ["2", "0.830000"])
    assert (types["/streamtag/reference"], values["/streamtag/reference"]) == (
        "if", ["1", "0.250000"])
    assert types["/vis/xy"] == "ff"
    assert oscdump.lines.empty()


# -- wekinator, from a running daemon ----------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.skipif(not HAVE_OSCDUMP, reason="oscdump not installed (Debian liblo-tools)")
def test_daemon_sends_wekinator_one_message_of_n_floats_per_hop_on_port_6448(
    tmp_path: Path, data_dir: Path,
) -> None:
    """A target with only ``profile: wekinator`` and its inputs: Wekinator's documented input
    (``/wek/inputs``, N floats, port 6448) once per hop, and nothing else; a touchdesigner
    target beside it gets numbers only, and the mapping that names it."""
    from support import base_config, start_daemon

    if not _port_free(6448):
        pytest.skip("UDP port 6448 (Wekinator's) is in use here")
    wek = OscDump(port=6448)
    touch = OscDump()
    inputs = ["timbre.brightness", "emotion.valence", "emotion.arousal", "level_db",
              "instrument.probs.flute"]
    try:
        cfg, _ = base_config(
            tmp_path,
            targets=[{"profile": "wekinator", "inputs": inputs},
                     {"port": touch.port, "profile": "touchdesigner", "name": "vj"}],
            mappings=[{"sources": ["emotion.valence", "emotion.arousal"], "to": "/vj/va",
                       "range": [0, 1], "target": "vj"}],
        )
        cfg["outputs"]["osc"]["fast"] = {"enabled": False}
        proc = start_daemon(["--input", str(data_dir / "signal.wav"), "--no-realtime",
                             "--checkpoint", str(data_dir / "tiny-default.safetensors")],
                            cfg, tmp_path)
        assert proc.wait(90) == 0, proc.stderr.read()
        wek_lines = wek.take(6)  # 3 s of audio, 0.5 s hops
        time.sleep(0.3)
        touch_lines = [touch.lines.get_nowait().split(" ") for _ in range(touch.lines.qsize())]
        assert wek.lines.empty()
    finally:
        wek.close()
        touch.close()
    for f in wek_lines:
        assert f[1:3] == ["/wek/inputs", "f" * len(inputs)]
        assert len(f[3:]) == len(inputs)
        float(f[3 + inputs.index("level_db")])
    assert touch_lines and all(set(f[2]) <= {"f", "i"} for f in touch_lines)
    assert sum(f[1] == "/streamtag/instrument" for f in touch_lines) == 6
    assert sum(f[1:3] == ["/vj/va", "ff"] for f in touch_lines) == 6
