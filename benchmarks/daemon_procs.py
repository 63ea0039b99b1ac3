"""Helpers for ``bench_daemon.py``: the daemon as a subprocess, receivers, /proc readings, cleanup.

Everything here starts or watches processes from outside, as a user's tools would: the daemon
is ``python -m streamtag.cli run`` with a YAML config; its outputs are read by a plain UDP socket
(OSC) and a ZeroMQ SUB socket; its CPU time and memory come from ``/proc``.

Clocks: every timestamp is ``time.monotonic()`` [s] (CLOCK_MONOTONIC, the same in every process
on the machine), except the kernel's receive timestamps (CLOCK_REALTIME), which
``OscReceiver`` converts with an offset measured when it starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
SO_TIMESTAMPNS = 35  # Linux <asm-generic/socket.h>; Python's socket module lacks the name


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the benchmark dies, however it dies (as the JACK
    test harness does for its children)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- /proc -------------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onwards), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process [s] (its threads included), or None if gone."""
    f = _stat_fields(pid)
    return None if f is None else (int(f[11]) + int(f[12])) / CLK_TCK


def start_ticks(pid: int) -> int | None:
    """The process's start time [clock ticks since boot]: tells a PID from a reused one."""
    f = _stat_fields(pid)
    return None if f is None else int(f[19])


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def rss_mb(pid: int) -> float | None:
    """Resident set size (VmRSS) [MB], or None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    import torch

    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "torch": torch.__version__, "kernel": platform.release()}


# -- processes ---------------------------------------------------------------------------------
@dataclass
class Tracked:
    """A process we started, and every descendant we have seen (PID and start time)."""

    proc: subprocess.Popen
    name: str
    seen: dict[int, int] = field(default_factory=dict)

    def refresh(self) -> list[int]:
        """The live descendants now; remembers them for cleanup."""
        kids = descendants(self.proc.pid)
        for pid in kids:
            t = start_ticks(pid)
            if t is not None:
                self.seen.setdefault(pid, t)
        return kids

    def tree_cpu_seconds(self) -> float | None:
        """CPU time of the process and its live descendants [s]; None if the process is gone."""
        own = cpu_seconds(self.proc.pid)
        if own is None:
            return None
        return own + sum(c or 0.0 for c in map(cpu_seconds, self.refresh()))

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL; then kill any descendant that outlived it."""
        if self.proc.poll() is None:
            self.refresh()
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid, t in self.seen.items():
            if start_ticks(pid) == t:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class Cleanup:
    """Stops every registered process (last registered first) and runs every callback, even
    when the benchmark fails; ``with Cleanup() as c: c.track(proc)``."""

    def __init__(self) -> None:
        self._items: list[Callable[[], None]] = []

    def __enter__(self) -> Cleanup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def track(self, proc: subprocess.Popen, name: str) -> Tracked:
        t = Tracked(proc, name)
        self._items.append(t.stop)
        return t

    def callback(self, fn: Callable[[], None]) -> None:
        self._items.append(fn)

    def close(self) -> None:
        while self._items:
            fn = self._items.pop()
            try:
                fn()
            except Exception as e:  # clean up everything we can
                print(f"cleanup: {e}", file=sys.stderr)


def daemon_config(zmq_endpoint: str, osc_port: int, **overrides: Any) -> dict[str, Any]:
    """A daemon config: OSC to ``osc_port`` on 127.0.0.1, ZeroMQ on ``zmq_endpoint``, a free
    control port; ``overrides`` are top-level sections merged in."""
    cfg: dict[str, Any] = {
        "outputs": {"zmq": {"endpoint": zmq_endpoint},
                    "osc": {"targets": [{"host": "127.0.0.1", "port": osc_port}]}},
        "control": {"port": free_port()},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(cfg[key].get(k), dict):
                    cfg[key][k].update(v)
                else:
                    cfg[key][k] = v
        else:
            cfg[key] = value
    return cfg


def start_daemon(cleanup: Cleanup, workdir: Path, name: str, config: dict[str, Any],
                 args: list[str], env: dict[str, str] | None = None,
                 repo: Path = REPO) -> Tracked:
    """``python -m streamtag.cli run --config <written config> ARGS``; output to ``name.log``.
    ``repo``: the source tree whose streamtag runs (another revision's, for before/after)."""
    if repo != REPO:
        env = {**(env if env is not None else os.environ), "PYTHONPATH": str(repo)}
    cfg_path = workdir / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    log = (workdir / f"{name}.log").open("wb")
    cleanup.callback(log.close)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamtag.cli", "run", "--config", str(cfg_path), *args],
        cwd=repo, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        env=env, preexec_fn=die_with_parent)
    return cleanup.track(proc, name)


def log_tail(workdir: Path, name: str, n: int = 1500) -> str:
    with contextlib.suppress(OSError):
        return (workdir / f"{name}.log").read_text(errors="replace")[-n:]
    return ""


# -- receivers ---------------------------------------------------------------------------------
def _realtime_minus_monotonic() -> float:
    """CLOCK_REALTIME - CLOCK_MONOTONIC [s], from the tightest of a few bracketed readings."""
    best = None
    for _ in range(20):
        a = time.monotonic()
        r = time.time()
        b = time.monotonic()
        if best is None or b - a < best[0]:
            best = (b - a, r - (a + b) / 2)
    assert best is not None
    return best[1]


@dataclass
class Datagram:
    t: float  # time.monotonic() right after recvmsg returned [s]
    t_kernel: float | None  # the kernel's receive timestamp, on the monotonic clock [s]
    data: bytes


class OscReceiver:
    """A UDP socket on 127.0.0.1 drained by a thread. ``keep``: store every datagram with its
    arrival times; otherwise only count them (runs that send tens of thousands)."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.kernel_timestamps = True
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            self.kernel_timestamps = False
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.offset_s = _realtime_minus_monotonic()
        self.datagrams: list[Datagram] = []
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="osc-receiver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            t = time.monotonic()
            self.count += 1
            if not self.keep:
                continue
            tk = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    tk = sec + nsec * 1e-9 - self.offset_s
            self.datagrams.append(Datagram(t, tk, data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.sock.close()


@dataclass
class ZmqMessage:
    t: float  # time.monotonic() at receipt [s]
    topic: str
    payload: dict[str, Any]


class ZmqCollector:
    """A ZeroMQ SUB socket (its own thread) keeping every message on ``topics``.
    ``on_message(msg)`` runs in that thread right after receipt (e.g. to read /proc then)."""

    def __init__(self, endpoint: str, topics: list[str],
                 on_message: Callable[[ZmqMessage], None] | None = None) -> None:
        import zmq

        self.messages: list[ZmqMessage] = []
        self._on_message = on_message
        self._stop = threading.Event()
        self._sock = zmq.Context.instance().socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 100000)
        self._sock.connect(endpoint)
        for topic in topics:
            self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._thread = threading.Thread(target=self._run, name="zmq-collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._sock.poll(50):
                continue
            topic, payload = self._sock.recv_multipart()
            msg = ZmqMessage(time.monotonic(), topic.decode(), json.loads(payload))
            self.messages.append(msg)
            if self._on_message is not None:
                self._on_message(msg)

    def topic(self, name: str) -> list[ZmqMessage]:
        return [m for m in list(self.messages) if m.topic == name]

    def wait_for(self, pred: Callable[[ZmqMessage], bool], timeout_s: float,
                 alive: Callable[[], bool] = lambda: True) -> ZmqMessage | None:
        """The first message (old or new) that satisfies ``pred``, waiting up to ``timeout_s``;
        None on timeout or when ``alive()`` turns false."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            msgs = list(self.messages)
            for m in msgs[seen:]:
                if pred(m):
                    return m
            seen = len(msgs)
            if not alive():
                return None
            time.sleep(0.02)
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close()


# -- OSC parsing (what we need: bundles of messages with float/int/string arguments) ------------
NTP_DELTA_S = 2_208_988_800


def _osc_string(data: bytes, i: int) -> tuple[str, int]:
    end = data.index(b"\x00", i)
    return data[i:end].decode(), (end + 4) & ~3


def parse_osc(data: bytes) -> tuple[float | None, list[tuple[str, list[Any]]]]:
    """(bundle timetag as Unix time [s] or None, [(address, args)]) of one datagram."""
    if data.startswith(b"#bundle\x00"):
        (tt,) = struct.unpack_from(">Q", data, 8)
        wall = (tt >> 32) - NTP_DELTA_S + (tt & 0xFFFFFFFF) / 2**32 if tt > 1 else None
        out, i = [], 16
        while i < len(data):
            (size,) = struct.unpack_from(">i", data, i)
            out += parse_osc(data[i + 4:i + 4 + size])[1]
            i += 4 + size
        return wall, out
    addr, i = _osc_string(data, 0)
    tags, i = _osc_string(data, i)
    args: list[Any] = []
    for tag in tags[1:]:
        if tag == "f":
            args.append(struct.unpack_from(">f", data, i)[0])
            i += 4
        elif tag == "i":
            args.append(struct.unpack_from(">i", data, i)[0])
            i += 4
        elif tag == "s":
            s, i = _osc_string(data, i)
            args.append(s)
        else:
            break
    return None, [(addr, args)]


# -- audio files -------------------------------------------------------------------------------
def write_test_audio(path: Path, seconds: float, rate: int, channels: int) -> Path:
    """A PCM-16 WAV of ``make_signal`` music (notes, a chirp, noise bursts), written 10 s at a
    time; channel c of chunk k uses seed ``(7 c + k) % 13`` so channels differ."""
    import soundfile as sf

    from streamtag.testing import make_signal

    chunk_s = 10.0
    cache: dict[int, np.ndarray] = {}
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=channels, subtype="PCM_16") as f:
        done = 0.0
        k = 0
        while done < seconds:
            n = min(chunk_s, seconds - done)
            cols = []
            for c in range(channels):
                seed = (7 * c + k) % 13
                if seed not in cache:
                    cache[seed] = make_signal(chunk_s, rate, seed=seed)
                cols.append(cache[seed][: round(n * rate)])
            f.write(np.stack(cols, axis=1))
            done += n
            k += 1
    return path
