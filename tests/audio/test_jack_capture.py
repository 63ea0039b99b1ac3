"""Capture from a real PortAudio input device: a dummy JACK server.

A separate JACK client plays a known stereo file into the capture client's input ports; the
captured audio, aligned by cross-correlation, must equal the file. The JACK graph carries
float32 samples unchanged and the dummy backend's capture ports (also connected to ours by
PortAudio) contribute exact zeros, so we expect the file's samples bit for bit: tolerance 0.

One exception, stated: an xrun (a JACK cycle in which some client was late, which PortAudio
reports to us as an input overflow) can drop or shift a period of the played audio. A play
that saw no xrun must be bit-exact; up to three plays are tried, and only if every one of them
saw xruns (a machine loaded by others) do we accept, with a warning, that at least 75 % of the
file's 100 ms pieces are found bit-exact in the capture.

Then the server is killed (or frozen) mid-capture and restarted: the same DeviceSource must
report the failure, keep retrying, and resume.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate

from streamtag.audio.devices import list_devices, resolve_device
from streamtag.audio.sources import DeviceSource
from streamtag.errors import DeviceError

from .jack_harness import SAMPLE_RATE_HZ, JackServer, die_with_parent, play_into, worker_pids

pytestmark = pytest.mark.realaudio

CLIENT = "streamtag_test"
PORTS = rf"^{CLIENT}(-\d+)?:in_\d+$"


def make_probe(path: Path, seconds: float = 1.0) -> np.ndarray:
    """Write a stereo float32 WAV at 48 kHz (left: a 100 Hz → 10 kHz chirp, right: seeded
    noise) and return its samples ``[n, 2]``."""
    n = int(seconds * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    f0, f1 = 100.0, 10_000.0
    chirp = 0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))
    noise = np.random.default_rng(1234).uniform(-0.3, 0.3, n)
    data = np.stack([chirp, noise], axis=1).astype(np.float32)
    sf.write(path, data, SAMPLE_RATE_HZ, subtype="FLOAT")
    return data


def drain(src: DeviceSource) -> np.ndarray:
    """Everything the ring holds now (it holds 10 s, more than any test plays)."""
    return src.read(1 << 22, 0.0)


def capture_playback(src: DeviceSource, wav: Path, server: JackServer) -> tuple[np.ndarray, int]:
    """Everything ``src`` captured while ``wav`` was played into its ports, ``[n, channels]``,
    and the xruns reported meanwhile."""
    drain(src)
    xruns = src.counters()["input_overflows"]
    frames = play_into(PORTS, wav, server=server.name)
    time.sleep(0.3)  # the last JACK periods travel to us
    captured = drain(src)
    assert frames > 0
    return captured, src.counters()["input_overflows"] - xruns


def find_offset(captured: np.ndarray, reference: np.ndarray) -> int:
    """Where in ``captured`` ``[n]`` the ``reference`` ``[m]`` (m ≤ n) starts: the peak of
    their cross-correlation [frames]."""
    assert len(captured) >= len(reference), "captured less audio than was played"
    return int(np.argmax(correlate(captured, reference, mode="valid", method="fft")))


def align(captured: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The stretch of ``captured`` ``[n, ...]`` that lines up with ``reference`` ``[m, ...]``,
    aligned on the first channel."""
    first = (slice(None),) + (0,) * (reference.ndim - 1)
    offset = find_offset(captured[first], reference[first])
    return captured[offset : offset + len(reference)]


def exact_piece_fraction(captured: np.ndarray, reference: np.ndarray, piece: int = 4800) -> float:
    """Share of ``reference``'s pieces of ``piece`` frames found bit-exact somewhere in
    ``captured`` (each aligned on its own)."""
    hits = total = 0
    for start in range(0, len(reference) - piece + 1, piece):
        total += 1
        hits += np.array_equal(
            align(captured, reference[start : start + piece]), reference[start : start + piece]
        )
    return hits / total


def assert_plays_through(
    src: DeviceSource, wav: Path, reference: np.ndarray, server: JackServer
) -> None:
    """Play ``wav`` into ``src``'s ports; the capture must equal ``reference`` ``[m, channels]``
    (see the module docstring for the xrun rule)."""
    tries = []
    for _ in range(3):
        captured, xruns = capture_playback(src, wav, server)
        if np.array_equal(align(captured, reference), reference):
            return
        assert xruns > 0, "no xrun, yet the capture differs from the played file"
        tries.append((xruns, exact_piece_fraction(captured, reference)))
    best = max(fraction for _, fraction in tries)
    warnings.warn(f"every play saw xruns (xruns, exact pieces): {tries}", stacklevel=2)
    assert best >= 0.75, f"too little of the file arrived intact: {tries}"


def new_source(channels: list[int] | None = None, **kwargs: float) -> DeviceSource:
    return DeviceSource(
        "system", channels, SAMPLE_RATE_HZ, 256, ring_s=10.0, client_name=CLIENT, **kwargs
    )


def wait_for(condition, timeout_s: float, src: DeviceSource) -> float:  # type: ignore[no-untyped-def]
    """Keep the ring drained until ``condition()``; return the time it took [s]."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s; status: {src.status}")
        src.read(1 << 20, 0.05)
    return time.monotonic() - t0


def test_jack_device_is_listed_and_resolved(jack_server: JackServer) -> None:
    devices = list_devices()
    system = next(d for d in devices if d.name == "system")
    assert system.host_api.startswith("JACK")
    assert system.max_input_channels == 2 and system.default_sample_rate_hz == SAMPLE_RATE_HZ
    assert resolve_device("SYSTEM") == system
    assert resolve_device(system.index) == system
    # A second JACK client with an output port is a second input device for PortAudio.
    metro = subprocess.Popen(
        ["jack_metro", "-n", "streamtag_metro", "-b", "120"],
        env=jack_server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    try:
        deadline = time.monotonic() + 10
        while not any(p.startswith("streamtag_metro:") for p in jack_server.ports()):
            assert time.monotonic() < deadline, "jack_metro did not register its port"
            time.sleep(0.05)
        assert resolve_device("metro").name == "streamtag_metro"
        with pytest.raises(DeviceError, match="ambiguous") as info:
            resolve_device("t")  # in both "system" and "streamtag_metro"
        assert "system" in str(info.value) and "streamtag_metro" in str(info.value)
    finally:
        metro.kill()
        metro.wait()


def test_capture_equals_the_played_file(jack_server: JackServer, tmp_path: Path) -> None:
    wav = tmp_path / "probe.wav"
    reference = make_probe(wav)
    src = new_source()
    src.start()
    try:
        assert src.status.startswith("running") and src.channels == 2
        assert_plays_through(src, wav, reference, jack_server)
        counters = src.counters()
    finally:
        src.stop()
    assert worker_pids() == []
    assert counters["dropped_frames"] == 0 and counters["errors"] == 0


def test_channel_selection_follows_the_interface_numbering(
    jack_server: JackServer, tmp_path: Path
) -> None:
    wav = tmp_path / "probe.wav"
    reference = make_probe(wav, seconds=0.5)
    src = new_source(channels=[2])
    src.start()
    try:
        assert src.channels == 1
        assert_plays_through(src, wav, reference[:, 1:], jack_server)
    finally:
        src.stop()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "shutdown"])
def test_capture_survives_a_jack_server_restart(
    jack_server: JackServer, tmp_path: Path, sig: signal.Signals
) -> None:
    wav = tmp_path / "probe.wav"
    reference = make_probe(wav, seconds=0.5)
    src = new_source(stall_timeout_s=1.0, backoff_initial_s=0.25, backoff_max_s=1.0)
    src.start()
    try:
        wait_for(lambda: src.counters()["written"] > SAMPLE_RATE_HZ // 4, 5.0, src)

        jack_server.kill(sig)
        detect_s = wait_for(lambda: src.counters()["errors"] >= 1, 10.0, src)
        assert src.status.startswith("error:") and "retrying" in src.status
        assert src.last_error is not None
        # While the server is away the source keeps trying (each attempt that fails counts).
        wait_for(lambda: src.counters()["errors"] >= 3, 15.0, src)
        assert src.counters()["restarts"] == 0

        up_s = jack_server.start()
        resume_s = wait_for(lambda: src.counters()["restarts"] >= 1, 15.0, src)
        assert src.status.startswith("running")
        print(
            f"\n[{sig.name}] failure seen after {detect_s:.2f} s; jackd up in {up_s:.2f} s; "
            f"capture resumed {resume_s:.2f} s later (backoff cap 1.0 s)"
        )
        assert_plays_through(src, wav, reference, jack_server)
    finally:
        src.stop()
    assert worker_pids() == []


def test_a_frozen_server_is_caught_by_the_stall_timeout(
    jack_server: JackServer, tmp_path: Path
) -> None:
    """SIGSTOP on jackd: no error is reported by anyone, the callbacks just stop coming."""
    src = new_source(
        stall_timeout_s=1.0, start_timeout_s=3.0, backoff_initial_s=0.25, backoff_max_s=1.0
    )
    src.start()
    assert jack_server.proc is not None
    try:
        wait_for(lambda: src.counters()["written"] > SAMPLE_RATE_HZ // 4, 5.0, src)
        jack_server.proc.send_signal(signal.SIGSTOP)
        try:
            detect_s = wait_for(lambda: src.counters()["errors"] >= 1, 10.0, src)
            assert "no audio from the device" in (src.last_error or "")
        finally:
            jack_server.proc.send_signal(signal.SIGCONT)
        resume_s = wait_for(lambda: src.counters()["restarts"] >= 1, 20.0, src)
        print(
            f"\n[SIGSTOP] stall seen after {detect_s:.2f} s; resumed {resume_s:.2f} s after SIGCONT"
        )
        wav = tmp_path / "probe.wav"
        reference = make_probe(wav, seconds=0.5)
        assert_plays_through(src, wav, reference, jack_server)
    finally:
        src.stop()
    assert worker_pids() == []


def test_reads_that_need_a_frame_get_batched_blocks_with_capture_times(
    jack_server: JackServer, tmp_path: Path
) -> None:
    """The daemon's way of reading: wait for a 20 ms frame (960 frames at 48 kHz) of 5 ms
    blocks. The worker then wakes the reader about once per frame, not once per block (through
    the same shared-memory ring and pipe on every system), the audio still arrives bit-exact,
    and every frame read carries the time its block reached the worker."""
    wav = tmp_path / "probe.wav"
    reference = make_probe(wav)
    need = 960
    src = new_source()
    src.start()
    reads: list[tuple[float, int, float | None, float | None]] = []
    parts: list[np.ndarray] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            block = src.read(1 << 16, 0.05, min_frames=need)
            if len(block):
                reads.append((time.monotonic(), len(block), src.capture_time(0),
                              src.capture_time(len(block) - 1)))
                parts.append(block)

    thread = threading.Thread(target=reader)
    try:
        wait_for(lambda: src.counters()["written"] > SAMPLE_RATE_HZ // 4, 5.0, src)
        before = src.counters()
        thread.start()
        xruns = before["input_overflows"]
        play_into(PORTS, wav, server=jack_server.name)
        time.sleep(0.3)
        stop.set()
        thread.join()
        after = src.counters()
    finally:
        stop.set()
        src.stop()
    captured = np.concatenate(parts)
    if after["input_overflows"] == xruns:
        np.testing.assert_array_equal(align(captured, reference), reference)
    else:
        assert exact_piece_fraction(captured, reference) >= 0.75
    frames = after["written"] - before["written"]
    wakeups = after["wakeups"] - before["wakeups"]
    # Woken for every 256-frame block would be frames / 256; asked for 960, about one per frame.
    assert frames / wakeups > 2 * 256, (frames, wakeups)
    # Reads wake about once per frame, not once per block.
    assert np.median([n for _, n, _, _ in reads]) >= need
    last = -np.inf
    for returned, _n, first_t, last_t in reads:
        assert first_t is not None and last_t is not None
        # Captured before it was returned, and not long before (a few 5 ms periods).
        assert first_t <= last_t <= returned
        assert returned - last_t < 0.5
        assert first_t >= last
        last = last_t


def test_the_capture_worker_dies_with_its_parent(jack_server: JackServer) -> None:
    """A daemon killed outright (SIGKILL: no clean-up runs) leaves no capture worker behind:
    the worker sees its stdin close, on every system, and leaves."""
    script = (
        "import sys, time\n"
        "from streamtag.audio.sources import DeviceSource\n"
        f"src = DeviceSource('system', None, {SAMPLE_RATE_HZ}, 256, 2.0, client_name='{CLIENT}')\n"
        "src.start()\n"
        "print(src._child.proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=jack_server.env, preexec_fn=die_with_parent)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert Path(f"/proc/{worker}").exists()
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5.0
        while _alive(worker):
            assert time.monotonic() < deadline, "the capture worker outlived its parent"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, waiting for init to reap it, has left)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
