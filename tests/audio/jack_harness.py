"""A real JACK server (dummy backend) for capture tests, and a JACK client that plays a file.

``jackd -d dummy`` runs a JACK graph on a timer with no sound card; PortAudio (through
sounddevice) then lists a JACK host API whose device ``system`` is a real input device. Each
server gets a unique name, and ``JACK_DEFAULT_SERVER`` points this process's children (our
capture workers, the player, jack_lsp) at it, so tests never touch anyone else's JACK server.

The pytest process itself never loads PortAudio: once a JACK server it knew has died,
PortAudio's teardown at interpreter exit aborts the process (see
``streamtag.audio._portaudio_worker``). The player therefore runs as a child process too:
``python jack_harness.py play WAV CLIENT``.

What CI needs: Debian ``jackd2`` (jackd, jack_lsp, jack_connect, jack_metro) and
``libportaudio2``. ``ensure_jackd`` installs jackd2 if it is missing and we are root.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SAMPLE_RATE_HZ = 48000
# 1024 rather than 256: on a loaded 2-core box a non-realtime JACK graph with 5 ms periods
# reports xruns several times a second; 21 ms periods mostly run clean.
PERIOD_FRAMES = 1024
_counter = itertools.count()


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, however it dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _jack_env(server: str) -> dict[str, str]:
    env = dict(os.environ)
    env["JACK_DEFAULT_SERVER"] = server
    env["JACK_NO_AUDIO_RESERVATION"] = "1"  # no D-Bus device reservation (none here anyway)
    env["JACK_NO_START_SERVER"] = "1"  # a client must never spawn a server of its own
    return env


def ensure_jackd() -> str:
    """Path of jackd; installs Debian's jackd2 first if it is missing. Skips only if that fails."""
    found = shutil.which("jackd")
    if found and shutil.which("jack_lsp") and shutil.which("jack_connect"):
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("jackd is not installed and cannot be installed here (needs root + apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # jackd2 asks whether to enable realtime scheduling limits; answer no without asking.
    subprocess.run(
        ["debconf-set-selections"],
        input="jackd2 jackd/tweak_rt_limits boolean false\n",
        text=True,
        check=False,
        capture_output=True,
    )
    install = ["apt-get", "install", "-y", "--no-install-recommends", "jackd2", "libportaudio2"]
    out = ""
    for cmd in (install, ["apt-get", "update"], install):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        out = proc.stdout[-400:] + proc.stderr[-400:]
        if cmd is install and proc.returncode == 0 and shutil.which("jackd"):
            break
    found = shutil.which("jackd")
    if not found:
        pytest.skip(f"jackd2 could not be installed with apt-get: {out.strip()}")
    return found


@dataclass
class JackServer:
    """One ``jackd -d dummy`` server with a unique name; restartable under the same name."""

    name: str
    log_path: Path
    sample_rate_hz: int = SAMPLE_RATE_HZ
    period_frames: int = PERIOD_FRAMES
    realtime: bool = False
    channels: int = 2  # capture and playback ports of the dummy device
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def command(self) -> list[str]:
        # --no-realtime: SCHED_FIFO is not available in containers and not needed with dummy.
        return [
            "jackd",
            "--realtime" if self.realtime else "--no-realtime",
            "-n",
            self.name,
            "-d",
            "dummy",
            "-r",
            str(self.sample_rate_hz),
            "-p",
            str(self.period_frames),
            "-C",
            str(self.channels),
            "-P",
            str(self.channels),
        ]

    @property
    def env(self) -> dict[str, str]:
        return _jack_env(self.name)

    def start(self, timeout_s: float = 15.0) -> float:
        """Start jackd and wait until it answers; return how long that took [s]."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._remove_leftovers()
        t0 = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                preexec_fn=die_with_parent,
            )
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jackd exited early:\n{self.log_path.read_text()[-2000:]}")
            if "system:capture_1" in self.ports():
                return time.monotonic() - t0
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"jackd did not come up in {timeout_s} s")

    def ports(self) -> list[str]:
        """Port names of the running server (empty if it does not answer)."""
        proc = subprocess.run(
            ["jack_lsp", "-s", self.name], capture_output=True, text=True, env=self.env, timeout=10
        )
        return proc.stdout.split("\n") if proc.returncode == 0 else []

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """End the server abruptly (SIGKILL, like a crash) or politely (SIGTERM)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        # A killed jackd leaves its socket and semaphores in /dev/shm, named after the server.
        for path in Path("/dev/shm").glob("jack*"):
            if f"_{self.name}_" in path.name:
                with contextlib.suppress(OSError):
                    path.unlink()


@pytest.fixture
def jack_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JackServer]:
    """A running dummy JACK server at 48 kHz / 256 frames, the default server for children."""
    ensure_jackd()
    server = JackServer(
        name=f"streamtag-test-{os.getpid()}-{next(_counter)}", log_path=tmp_path / "jackd.log"
    )
    for key, value in server.env.items():
        if key.startswith("JACK_"):
            monkeypatch.setenv(key, value)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connections(server: str, port: str) -> list[str]:
    """The ports ``port`` is connected to."""
    out = subprocess.run(
        ["jack_lsp", "-s", server, "-c", port],
        capture_output=True,
        text=True,
        env=_jack_env(server),
        timeout=10,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.startswith("   ")]


def jack_connect(server: str, source: str, destination: str) -> None:
    """Connect two ports. jack_connect 1.9.21 now and then dies of SIGSEGV here (while other
    clients come and go), so try again and trust only the graph itself."""
    for _ in range(5):
        proc = subprocess.run(
            ["jack_connect", "-s", server, source, destination],
            capture_output=True,
            text=True,
            env=_jack_env(server),
            timeout=10,
        )
        if proc.returncode == 0 or destination in connections(server, source):
            return
        time.sleep(0.1)
    raise RuntimeError(f"jack_connect {source} {destination} failed: {proc.stderr.strip()}")


def _natural_key(port: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", port)]


@dataclass
class Player:
    """A running player process (see ``start_player``)."""

    proc: subprocess.Popen[str]
    client: str
    server: str

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("GO\n")
        self.proc.stdin.flush()

    def wait(self, timeout_s: float) -> int:
        """Wait for the end of the file; return the frames played."""
        assert self.proc.stdout is not None
        done: list[str] = []
        reader = threading.Thread(target=lambda: done.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(timeout_s)
        if not done or not done[0].startswith("DONE"):
            raise RuntimeError(f"player did not finish within {timeout_s} s: {done}")
        return int(done[0].split()[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def start_player(wav_path: Path, server: str, client: str = "streamtag_player") -> Player:
    """Start a JACK client that will play ``wav_path``; its ports exist when this returns."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "play", str(wav_path), client],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_jack_env(server),
        preexec_fn=die_with_parent,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "READY":
        proc.kill()
        proc.wait()
        raise RuntimeError(f"player failed to start: {line}")
    return Player(proc=proc, client=line[1], server=server)


def play_into(
    port_pattern: str, wav_path: Path, *, server: str | None = None, timeout_s: float = 30.0
) -> int:
    """Play ``wav_path`` into the JACK input ports whose full names match the regular
    expression ``port_pattern`` (channel i of the file → i-th matching port in natural order),
    from a separate JACK client process. Returns the frames played, once playback has ended."""
    server = server or os.environ.get("JACK_DEFAULT_SERVER", "default")
    player = start_player(wav_path, server)
    try:
        listing = subprocess.run(
            ["jack_lsp", "-s", server], capture_output=True, text=True, env=_jack_env(server)
        ).stdout.split("\n")
        targets = sorted((p for p in listing if re.search(port_pattern, p)), key=_natural_key)
        outs = sorted(
            (p for p in listing if p.startswith(f"{player.client}:out_")), key=_natural_key
        )
        if not targets:
            raise RuntimeError(f"no JACK port matches {port_pattern!r}; ports: {listing}")
        for out, target in zip(outs, targets, strict=False):
            jack_connect(server, out, target)
        player.go()
        return player.wait(timeout_s)
    finally:
        player.close()


def worker_pids() -> list[int]:
    """Capture worker processes that are children of this process (should be none when idle)."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            if int(fields.get("PPid", "0")) != os.getpid():
                continue
            cmdline = (status.parent / "cmdline").read_bytes()
            if b"_portaudio_worker.py" in cmdline:
                pids.append(int(status.parent.name))
    return pids


# -- the player process ------------------------------------------------------------------------


def _player_main(wav_path: str, client: str) -> None:
    import ctypes
    import ctypes.util

    lib = ctypes.CDLL(ctypes.util.find_library("portaudio"))
    name = ctypes.create_string_buffer(client.encode())
    lib.PaJack_SetClientName(name)  # before PortAudio starts, i.e. before sounddevice loads

    import sounddevice as sd
    import soundfile as sf

    data, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    actual = ctypes.c_char_p()
    lib.PaJack_GetClientName(ctypes.byref(actual))
    apis = [h["name"] for h in sd.query_hostapis()]
    device = next(
        d["index"]
        for d in sd.query_devices()
        if apis[d["hostapi"]].startswith("JACK") and d["max_output_channels"] >= data.shape[1]
    )
    position = 0
    finished = threading.Event()

    def callback(outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        nonlocal position
        k = min(frames, len(data) - position)
        outdata[:k] = data[position : position + k]
        outdata[k:] = 0.0
        position += k
        if k < frames:
            raise sd.CallbackStop

    stream = sd.OutputStream(
        device=device,
        channels=data.shape[1],
        samplerate=rate,
        dtype="float32",
        callback=callback,
        finished_callback=finished.set,
    )
    print("READY", actual.value.decode(), flush=True)
    if sys.stdin.readline().strip() == "GO":
        stream.start()
        finished.wait(len(data) / rate + 10.0)
        print("DONE", position, flush=True)
        stream.close()
        sd._terminate()  # close the JACK client while the server is surely alive
    os._exit(0)  # skip interpreter teardown: PortAudio's aborts if the server has gone


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "play":
        _player_main(sys.argv[2], sys.argv[3])
    else:
        print("usage: jack_harness.py play WAV CLIENT", file=sys.stderr)
        sys.exit(64)
