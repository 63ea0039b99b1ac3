"""OscPublisher heard by a receiver no one here wrote: liblo's ``oscdump`` (Debian liblo-tools).

oscdump prints one line per message: ``<timetag hex seconds.fraction> <address> <types>
<args…>``; for messages inside a bundle the timetag is the bundle's.
"""

from __future__ import annotations

import math
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from pythonosc.udp_client import SimpleUDPClient

from streamtag.publish import osc

from .helpers import SAMPLE_RECORD, free_udp_port
from .test_osc_golden import EXPECTED_LAYOUT

pytestmark = pytest.mark.skipif(shutil.which("oscdump") is None,
                                reason="oscdump not installed (Debian liblo-tools)")


class OscDump:
    """``oscdump -L <port>`` in a subprocess, its stdout lines in a queue."""

    def __init__(self, port: int | None = None) -> None:
        self.port = free_udp_port() if port is None else port
        self.proc = subprocess.Popen(
            ["oscdump", "-L", str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._wait_ready()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def _wait_ready(self) -> None:
        # oscdump gives no "listening" sign: probe until a probe comes back.
        client = SimpleUDPClient("127.0.0.1", self.port)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            client.send_message("/probe", 1)
            try:
                if "/probe" in self.lines.get(timeout=0.1):
                    break
            except queue.Empty:
                assert self.proc.poll() is None, "oscdump exited"
        else:
            raise AssertionError("oscdump did not start")
        time.sleep(0.1)
        while not self.lines.empty():  # drop extra probes
            self.lines.get()

    def take(self, n: int, timeout_s: float = 3.0) -> list[list[str]]:
        """The next ``n`` lines, split into fields (the string argument stays quoted)."""
        out = []
        for _ in range(n):
            out.append(self.lines.get(timeout=timeout_s).split(" "))
        return out

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=5)


@pytest.fixture
def oscdump() -> Iterator[OscDump]:
    d = OscDump()
    yield d
    d.close()


def _timetag_text(unix_s: float) -> str:
    tag = osc.ntp_timetag(unix_s)
    return f"{tag >> 32:08x}.{tag & 0xFFFFFFFF:08x}"


def test_oscdump_receives_each_hop_as_a_timetagged_bundle(oscdump: OscDump) -> None:
    # A wall time in the past: liblo dispatches such bundles at once (future ones it holds).
    walls = [math.floor(time.time()) - 100 + k * 0.5 for k in range(3)]
    with osc.OscPublisher([("127.0.0.1", oscdump.port)], "/streamtag", ["main"]) as pub:
        for k, wall in enumerate(walls):
            pub.publish({**SAMPLE_RECORD, "seq": k, "wall": wall})
        for wall in walls:
            lines = oscdump.take(len(EXPECTED_LAYOUT))
            assert {f[0] for f in lines} == {_timetag_text(wall)}
            assert [(f[1], f[2]) for f in lines] == EXPECTED_LAYOUT
            values = {f[1]: f[3:] for f in lines}
            assert [float(x) for x in values["/streamtag/emotion"]] == pytest.approx(
                [0.41, -0.12], abs=1e-6)
            assert values["/streamtag/instrument"] == ['"violin"', "0.830000"]
            assert values["/streamtag/emotion/quadrant"] == ["4"]
            assert values["/streamtag/silent"] == ["0"]
        assert pub.stats["errors"] == 0


def test_oscdump_receives_fast_lane_and_mapped_values(oscdump: OscDump) -> None:
    wall = math.floor(time.time()) - 10 + 0.25
    with osc.OscPublisher([("127.0.0.1", oscdump.port)], "/st", ["a", "b"]) as pub:
        pub.send_fast("a", wall, {"loudness": -12.5, "centroid": 2000.0, "flatness": 0.5,
                                  "onset": 3.0})
        fast = oscdump.take(4)
        pub.send_raw("/synth/cutoff", 1264.5)
        raw = oscdump.take(1)
    assert [(f[0], f[1], f[2], f[3]) for f in fast] == [
        (_timetag_text(wall), "/st/a/fast/loudness", "f", "-12.500000"),
        (_timetag_text(wall), "/st/a/fast/centroid", "f", "2000.000000"),
        (_timetag_text(wall), "/st/a/fast/flatness", "f", "0.500000"),
        (_timetag_text(wall), "/st/a/fast/onset", "f", "3.000000"),
    ]
    assert raw[0][1:] == ["/synth/cutoff", "f", "1264.500000"]


def test_oscdump_receives_a_split_hop_bundle_whole_and_in_order(oscdump: OscDump) -> None:
    # A limit far below the 700-byte bundle: liblo must see several bundles, one timetag, and
    # every message of the hop in order.
    wall = math.floor(time.time()) - 50 + 0.75
    with osc.OscPublisher([("127.0.0.1", oscdump.port)], "/streamtag", ["main"],
                          max_datagram_bytes=200) as pub:
        pub.publish({**SAMPLE_RECORD, "wall": wall})
        lines = oscdump.take(len(EXPECTED_LAYOUT))
        stats = pub.stats
    assert stats["split"] == 1 and stats["sent"] >= 4 and stats["errors"] == 0
    assert {f[0] for f in lines} == {_timetag_text(wall)}
    assert [(f[1], f[2]) for f in lines] == EXPECTED_LAYOUT
    assert oscdump.lines.empty()
