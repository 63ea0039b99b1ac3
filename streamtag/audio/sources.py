"""Audio sources: a sound card (PortAudio), a file, or a synthetic test signal, behind one protocol.

Every source delivers blocks ``[n, channels]`` float32 at its own native ``sample_rate_hz``;
resampling and downmixing belong to the frontend. A source is started, read from one thread
(the analysis loop), and stopped:

    with FileSource("take.flac", realtime=False) as src:
        while not src.finished:
            block = src.read(4096, timeout_s=0.5)   # [n, src.channels], n may be 0

``DeviceSource`` captures in a child process (see ``_portaudio_worker`` for why) and keeps
capturing across device loss: a supervisor thread notices, reports, and reopens the device with
exponential backoff, re-finding it by name.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import socket
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from streamtag.audio import _portaudio_worker as wire
from streamtag.audio.devices import DeviceInfo, resolve_device, worker_command, worker_env
from streamtag.audio.ring import RingBuffer
from streamtag.errors import AudioError, DeviceError

logger = logging.getLogger("streamtag.audio")


@runtime_checkable
class Source(Protocol):
    """What the analysis loop needs from any audio input.

    ``read`` returns ``[n, channels]`` float32 at ``sample_rate_hz`` with ``0 ≤ n ≤ max_frames``;
    ``n == 0`` means nothing arrived within ``timeout_s`` or, with ``finished``, the end. It
    waits for ``min_frames`` (the caller has no work before), returning what there is on timeout.
    ``capture_time(i)`` is when frame ``i`` of the last block read entered the machine
    (``time.monotonic()`` [s]), or None where the source does not know.
    ``stream_time_s`` is the frames delivered by ``read`` divided by the rate [s].
    ``counters`` always holds ``frames_delivered``, ``overflows``, ``dropped_frames``,
    ``errors`` and ``restarts``.
    """

    @property
    def sample_rate_hz(self) -> int: ...

    @property
    def channels(self) -> int: ...

    @property
    def stream_time_s(self) -> float: ...

    @property
    def status(self) -> str: ...

    @property
    def finished(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def read(self, max_frames: int, timeout_s: float, min_frames: int = 1) -> np.ndarray: ...

    def capture_time(self, index: int) -> float | None: ...

    def counters(self) -> dict[str, int]: ...


class _SourceBase:
    """Context-manager support and the bookkeeping every source shares."""

    _rate: int
    _channels: int
    _delivered: int
    _started: bool

    def __enter__(self) -> Any:
        self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()  # type: ignore[attr-defined]

    @property
    def sample_rate_hz(self) -> int:
        """Native sample rate of the delivered blocks [Hz]."""
        return self._rate

    @property
    def channels(self) -> int:
        """Channels of the delivered blocks."""
        return self._channels

    @property
    def stream_time_s(self) -> float:
        """Audio delivered by ``read`` so far [s] (frames delivered / rate)."""
        return self._delivered / self._rate

    def _empty(self) -> np.ndarray:
        return np.empty((0, self._channels), dtype=np.float32)

    def capture_time(self, index: int) -> float | None:
        """Unknown for a file or a synthetic signal (only a device captures)."""
        return None

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError(f"{type(self).__name__}.read() called before start()")


class _Pacer:
    """Releases frames at the wall-clock rate one block at a time, as a sound card would."""

    def __init__(self, sample_rate_hz: int, blocksize_frames: int) -> None:
        self._rate = sample_rate_hz
        self._block = blocksize_frames
        self._t0 = time.monotonic()

    def restart(self) -> None:
        self._t0 = time.monotonic()

    def _released(self, now: float) -> int:
        return int((now - self._t0) * self._rate) // self._block * self._block

    def wait(self, delivered: int, timeout_s: float, stop: threading.Event,
             min_frames: int = 1) -> int:
        """Sleep until ``min_frames`` frames beyond ``delivered`` are released or ``timeout_s``
        [s] passes; return how many are released and not yet delivered [frames]."""
        now = time.monotonic()
        deadline = now + max(timeout_s, 0.0)
        want = max(int(min_frames), 1)
        while True:
            available = self._released(now) - delivered
            if available >= want or now >= deadline or stop.is_set():
                return max(available, 0)
            next_block = -(-(delivered + want) // self._block) * self._block
            wake = self._t0 + next_block / self._rate
            stop.wait(max(min(wake, deadline) - now, 0.0) + 1e-4)
            now = time.monotonic()


# --------------------------------------------------------------------------------------------
# Files


class _AudioReader(Protocol):
    sample_rate_hz: int
    channels: int
    frames: int

    def read(self, n: int) -> np.ndarray: ...

    def rewind(self) -> None: ...

    def close(self) -> None: ...


class _SoundFileReader:
    """Block reads through libsndfile (WAV, FLAC, OGG/Vorbis, and MP3 with libsndfile ≥ 1.1)."""

    def __init__(self, path: Path) -> None:
        import soundfile

        self._file = soundfile.SoundFile(str(path))
        self.sample_rate_hz = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.frames = int(self._file.frames)

    def read(self, n: int) -> np.ndarray:
        return self._file.read(n, dtype="float32", always_2d=True)

    def rewind(self) -> None:
        self._file.seek(0)

    def close(self) -> None:
        self._file.close()


class _DecodedReader:
    """A whole file decoded up front by audioread (ffmpeg/GStreamer), for what libsndfile
    cannot read. Holds ``[frames, channels]`` float32 in memory."""

    def __init__(self, path: Path) -> None:
        with warnings.catch_warnings():
            # audioread loads stdlib modules deprecated since Python 3.11 (aifc, audioop, sunau).
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioread

            with audioread.audio_open(str(path)) as f:
                self.sample_rate_hz = int(f.samplerate)
                self.channels = int(f.channels)
                chunks = [np.frombuffer(buf, dtype="<i2") for buf in f]
        pcm = np.concatenate(chunks) if chunks else np.empty(0, dtype="<i2")
        self._data = (pcm.astype(np.float32) / 32768.0).reshape(-1, self.channels)
        self.frames = len(self._data)
        self._pos = 0

    def read(self, n: int) -> np.ndarray:
        block = self._data[self._pos : self._pos + n].copy()
        self._pos += len(block)
        return block

    def rewind(self) -> None:
        self._pos = 0

    def close(self) -> None:
        self._pos = self.frames


def _open_audio(path: Path) -> _AudioReader:
    if not path.exists():
        raise AudioError(f"cannot read audio file '{path}': no such file")
    if path.is_dir():
        raise AudioError(f"cannot read audio file '{path}': it is a folder, not a file")
    if path.stat().st_size == 0:
        raise AudioError(f"cannot read audio file '{path}': the file is empty (0 bytes)")
    try:
        reader: _AudioReader = _SoundFileReader(path)
    except Exception as sf_exc:  # libsndfile reports every failure its own way
        try:
            reader = _DecodedReader(path)
        except Exception as ar_exc:
            ar_reason = str(ar_exc) or type(ar_exc).__name__
            raise AudioError(
                f"cannot read audio file '{path}': {sf_exc} (libsndfile); {ar_reason} (audioread)"
            ) from sf_exc
    if reader.frames <= 0 or reader.channels <= 0:
        reader.close()
        raise AudioError(f"cannot read audio file '{path}': it holds no audio (0 frames)")
    return reader


class FileSource(_SourceBase):
    """Audio from a file, read in blocks, either as fast as asked or paced like a live input.

    Args:
        path: WAV, FLAC, OGG or MP3 (anything libsndfile reads; otherwise audioread decodes
            the whole file into memory).
        realtime: pace delivery by the wall clock, ``blocksize_frames`` at a time; otherwise
            ``read`` returns ``max_frames`` at once until the end.
        loop: start again at the end; ``finished`` never becomes True.
        blocksize_frames: pacing granularity in realtime mode [frames].
    Raises:
        AudioError: the file is missing, unreadable or holds no audio (names path and reason).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        realtime: bool,
        loop: bool = False,
        *,
        blocksize_frames: int = 1024,
    ) -> None:
        if blocksize_frames <= 0:
            raise ValueError(f"blocksize_frames must be > 0, got {blocksize_frames}")
        self._path = Path(path)
        self._reader: _AudioReader | None = _open_audio(self._path)
        self._rate = self._reader.sample_rate_hz
        self._channels = self._reader.channels
        self._frames = self._reader.frames
        self._realtime = realtime
        self._loop = loop
        self._pacer = _Pacer(self._rate, blocksize_frames)
        self._stop_event = threading.Event()
        self._started = False
        self._finished = False
        self._delivered = 0
        self._loops = 0

    @property
    def path(self) -> Path:
        return self._path

    @property
    def duration_s(self) -> float:
        """Length of the file [s] (from its header; MP3 lengths may be estimates)."""
        return self._frames / self._rate

    @property
    def finished(self) -> bool:
        """True once the end of the file has been delivered (never with ``loop``)."""
        return self._finished

    @property
    def status(self) -> str:
        if not self._started:
            return "idle"
        if self._finished:
            return f"finished: {self._path.name}"
        if self._stop_event.is_set():
            return "stopped"
        return f"playing: {self._path.name}"

    def start(self) -> None:
        """(Re)start from the beginning of the file."""
        if self._reader is None:
            self._reader = _open_audio(self._path)
        self._reader.rewind()
        self._stop_event.clear()
        self._finished = False
        self._delivered = 0
        self._pacer.restart()
        self._started = True

    def stop(self) -> None:
        """Close the file; a later ``start`` reopens it. Wakes a ``read`` that is waiting."""
        self._stop_event.set()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def read(self, max_frames: int, timeout_s: float, min_frames: int = 1) -> np.ndarray:
        """Up to ``max_frames`` frames ``[n, channels]`` float32; empty at the end or on timeout.
        Realtime: waits for ``min_frames`` (at most up to the end of the file)."""
        self._require_started()
        if self._finished or self._reader is None or max_frames <= 0:
            return self._empty()
        n = max_frames
        if self._realtime:
            want = min(min_frames, max_frames)
            if not self._loop:
                want = min(want, max(self._frames - self._delivered, 1))
            n = min(n, self._pacer.wait(self._delivered, timeout_s, self._stop_event, want))
            if n <= 0 or self._reader is None:
                return self._empty()
        block = self._reader.read(n)
        if len(block) < n:
            if self._loop:
                parts = [block]
                got = len(block)
                while got < n:
                    self._reader.rewind()
                    self._loops += 1
                    more = self._reader.read(n - got)
                    parts.append(more)
                    got += len(more)
                block = np.concatenate(parts)
            else:
                self._finished = True
        self._delivered += len(block)
        return np.ascontiguousarray(block, dtype=np.float32)

    def counters(self) -> dict[str, int]:
        return {
            "frames_delivered": self._delivered,
            "loops": self._loops,
            "overflows": 0,
            "dropped_frames": 0,
            "errors": 0,
            "restarts": 0,
        }


# --------------------------------------------------------------------------------------------
# Synthetic signals

SignalKind = Literal["sine", "noise", "click", "silence"]


class SyntheticSource(_SourceBase):
    """A test signal computed from the absolute sample index, so any block sizes give the same
    samples.

    Args:
        kind: ``"sine"`` (``frequency_hz``), ``"noise"`` (uniform white in ±amplitude, seeded,
            independent per channel), ``"click"`` (one-sample impulses every
            ``click_interval_s``, the first at sample 0) or ``"silence"``.
        sample_rate_hz: rate of the delivered blocks [Hz].
        channels: channels per frame (sine and click are the same on every channel).
        frequency_hz: sine frequency [Hz].
        amplitude: peak value [full scale, 0..1].
        click_interval_s: time between clicks [s].
        duration_s: length [s]; None for endless.
        realtime: pace by the wall clock, ``blocksize_frames`` at a time.
        blocksize_frames: pacing granularity [frames].
        seed: noise seed.
    """

    def __init__(
        self,
        kind: SignalKind,
        sample_rate_hz: int,
        *,
        channels: int = 1,
        frequency_hz: float = 440.0,
        amplitude: float = 0.5,
        click_interval_s: float = 0.5,
        duration_s: float | None = None,
        realtime: bool = False,
        blocksize_frames: int = 1024,
        seed: int = 0,
    ) -> None:
        if kind not in ("sine", "noise", "click", "silence"):
            raise ValueError(f"kind must be sine, noise, click or silence, got {kind!r}")
        if sample_rate_hz <= 0 or channels <= 0 or blocksize_frames <= 0:
            raise ValueError("sample_rate_hz, channels and blocksize_frames must be > 0")
        self._kind = kind
        self._rate = int(sample_rate_hz)
        self._channels = int(channels)
        self._frequency_hz = float(frequency_hz)
        self._amplitude = float(amplitude)
        self._click_every = max(1, round(click_interval_s * self._rate))
        self._total = None if duration_s is None else round(duration_s * self._rate)
        self._realtime = realtime
        self._pacer = _Pacer(self._rate, blocksize_frames)
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._stop_event = threading.Event()
        self._started = False
        self._delivered = 0

    @property
    def finished(self) -> bool:
        return self._total is not None and self._delivered >= self._total

    @property
    def status(self) -> str:
        if not self._started:
            return "idle"
        if self.finished:
            return f"finished: {self._kind}"
        if self._stop_event.is_set():
            return "stopped"
        return f"playing: {self._kind}"

    def start(self) -> None:
        """(Re)start at sample 0."""
        self._stop_event.clear()
        self._delivered = 0
        self._rng = np.random.default_rng(self._seed)
        self._pacer.restart()
        self._started = True

    def stop(self) -> None:
        self._stop_event.set()

    def read(self, max_frames: int, timeout_s: float, min_frames: int = 1) -> np.ndarray:
        """Up to ``max_frames`` frames, ``[n, channels]`` float32; realtime: waits for
        ``min_frames`` (at most up to the end)."""
        self._require_started()
        n = max(int(max_frames), 0)
        if self._total is not None:
            n = min(n, self._total - self._delivered)
        if self._realtime and n > 0:
            want = min(min_frames, n)
            n = min(n, self._pacer.wait(self._delivered, timeout_s, self._stop_event, want))
        if n <= 0 or self._stop_event.is_set():
            return self._empty()
        block = self._render(self._delivered, n)
        self._delivered += n
        return block

    def _render(self, start: int, n: int) -> np.ndarray:
        if self._kind == "noise":
            u = self._rng.random((n, self._channels))
            return ((2.0 * u - 1.0) * self._amplitude).astype(np.float32)
        index = np.arange(start, start + n, dtype=np.int64)
        if self._kind == "sine":
            # Phase in cycles from the exact sample index, folded to [0, 1) before scaling.
            cycles = np.mod(index * self._frequency_hz / self._rate, 1.0)
            mono = self._amplitude * np.sin(2.0 * np.pi * cycles)
        elif self._kind == "click":
            mono = np.where(index % self._click_every == 0, self._amplitude, 0.0)
        else:
            mono = np.zeros(n)
        return np.repeat(mono.astype(np.float32)[:, None], self._channels, axis=1)

    def counters(self) -> dict[str, int]:
        return {
            "frames_delivered": self._delivered,
            "overflows": 0,
            "dropped_frames": 0,
            "errors": 0,
            "restarts": 0,
        }


# --------------------------------------------------------------------------------------------
# Sound cards


class _RateLimitedLog:
    """Log at most one message per key per ``interval_s`` [s]; say how many were held back."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: collections.Counter[str] = collections.Counter()

    def log(self, level: int, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -math.inf) < self._interval_s:
            self._held[key] += 1
            return
        held = self._held.pop(key, 0)
        suffix = f" ({held} similar message(s) held back)" if held else ""
        self._last[key] = now
        logger.log(level, "%s%s", message, suffix)


class _Child:
    """One capture worker process and our end of its socket."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.spawned = time.monotonic()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=8)
        self.input_overflows = 0
        self.transport_dropped = 0
        self.received = 0  # frames received from this worker [frames]
        self.need_sent = 0  # the last NEED target sent to it [frames]
        self.ready = False
        self.got_audio = False
        self.last_audio = self.spawned
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self.stderr_tail.append(line)
                logger.debug("capture worker: %s", line)

    def end(self, grace_s: float) -> None:
        """Ask the worker to stop; kill it if it has not left after ``grace_s`` [s]."""
        try:
            self.sock.send(wire.HEADER.pack(wire.KIND_STOP, 0, 0, 0, 0, 0))
        except OSError:
            pass
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()
        self._drain.join(timeout=1.0)


_READY = "ready"


class DeviceSource(_SourceBase):
    """Live capture from a PortAudio input device (ALSA, JACK, CoreAudio, ...).

    PortAudio runs in a child process whose audio callback only sends each block to this
    process; a receiver thread here copies it into a ``RingBuffer`` that ``read`` drains. The
    same thread supervises: if the worker reports an error, dies, or sends no audio for
    ``stall_timeout_s``, it records the reason (``status``, ``counters()["errors"]``, a
    rate-limited log line), waits (``backoff_initial_s`` doubling to ``backoff_max_s``) and
    starts a new worker, which scans the devices afresh and re-finds the device by name. The
    ring, counters and stream time carry on; ``counters()["restarts"]`` counts recoveries.

    Args:
        device: an index, a case-insensitive name substring, None for the default input, or a
            ``DeviceInfo`` from ``resolve_device``.
        channels: device input channels to deliver, counted from 1 as on the interface, in
            the order given; None for all of them.
        sample_rate_hz: capture rate [Hz]; None for the device's native rate.
        blocksize: frames per PortAudio callback [frames]; 0 lets the host choose.
        ring_s: how much audio the ring holds before dropping new frames [s].
        client_name: JACK client name for the capture ports (JACK host API only); None keeps
            PortAudio's default "PortAudio".
        stall_timeout_s: no audio for this long counts as a failure [s].
        start_timeout_s: how long a worker may take to open the device [s].
        backoff_initial_s: first wait before reopening [s].
        backoff_max_s: cap of the doubling wait [s].
        log_interval_s: at most one error log line per this interval [s].
    Raises:
        DeviceError: the device cannot be found, or the channels do not exist on it.
    """

    def __init__(
        self,
        device: int | str | DeviceInfo | None,
        channels: list[int] | None,
        sample_rate_hz: int | None,
        blocksize: int,
        ring_s: float,
        *,
        client_name: str | None = None,
        stall_timeout_s: float = 2.0,
        start_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 5.0,
        log_interval_s: float = 10.0,
    ) -> None:
        if blocksize < 0:
            raise ValueError(f"blocksize must be ≥ 0, got {blocksize}")
        if ring_s <= 0:
            raise ValueError(f"ring_s must be > 0, got {ring_s}")
        info = device if isinstance(device, DeviceInfo) else resolve_device(device)
        if channels is None:
            channels = list(range(1, info.max_input_channels + 1))
        bad = [c for c in channels if not 1 <= c <= info.max_input_channels]
        if not channels or bad:
            raise DeviceError(
                f"input channels {bad or channels} do not exist on '{info.name}', which has "
                f"inputs 1..{info.max_input_channels}"
            )
        self._info = info
        self._open_channels = max(channels)
        select = [c - 1 for c in channels]
        self._select = None if select == list(range(self._open_channels)) else select
        self._channels = len(channels)
        self._rate = int(sample_rate_hz or round(info.default_sample_rate_hz))
        self._blocksize = int(blocksize)
        self._ring = RingBuffer(max(1, math.ceil(ring_s * self._rate)), self._open_channels)
        self._client_name = client_name
        self._stall_timeout_s = stall_timeout_s
        self._start_timeout_s = start_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._log = _RateLimitedLog(log_interval_s)

        rx_frames = max(4 * self._blocksize, 16384)
        # The worker holds at most half of what one packet may carry (a block larger than
        # that goes alone): 8192 frames, 0.17 s at 48 kHz, if the reader's NEED were stale.
        self._max_batch_frames = rx_frames // 2
        head = wire.HEADER.size + wire.table_bytes(wire.MAX_BLOCKS)
        self._rx = np.empty(head + rx_frames * self._open_channels * 4, np.uint8)
        # (end, t): frames [.., end) of the ring's stream (its written counter) arrived in a
        # PortAudio block handed to the worker at time.monotonic() t. Appended by the capture
        # thread, trimmed by the reader; deque appends and pops are atomic.
        self._timeline: collections.deque[tuple[int, float]] = collections.deque()
        self._read_start = 0  # ring position of the first frame the last read returned
        self._child: _Child | None = None  # the worker now pumping (for NEED requests)

        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._status = "idle"
        self._last_error: str | None = None
        self._delivered = 0
        self._errors = 0
        self._restarts = 0
        self._input_overflows = 0
        self._transport_dropped = 0
        self._packets = 0

    # -- public -------------------------------------------------------------------------------

    @property
    def device(self) -> DeviceInfo:
        """The device as resolved at construction."""
        return self._info

    @property
    def finished(self) -> bool:
        """Always False: a live input has no end."""
        return False

    @property
    def status(self) -> str:
        """``idle``, ``starting``, ``running: …``, ``error: …; retrying in … s``,
        ``reopening: …`` or ``stopped``."""
        return self._status

    @property
    def last_error(self) -> str | None:
        """The most recent failure reason, if any."""
        return self._last_error

    def start(self) -> None:
        """Open the device and start capturing; returns once the stream runs.

        Raises:
            DeviceError: the device cannot be opened now (later failures are retried instead).
        """
        if self._thread is not None:
            return
        self._stop_event.clear()
        self._status = "starting"
        self._started = True
        try:
            child = self._spawn()
        except OSError as exc:
            self._status = "stopped"
            raise DeviceError(f"cannot start the audio capture process: {exc}") from exc
        outcome = self._pump(child, until_ready=True)
        if outcome != _READY:
            child.end(grace_s=1.0)
            self._status = "stopped"
            raise DeviceError(f"cannot capture from '{self._info.name}': {outcome}")
        self._thread = threading.Thread(
            target=self._supervise, args=(child,), name="streamtag-capture", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop capturing and end the worker process. Buffered audio can still be read."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._status = "stopped"

    def read(self, max_frames: int, timeout_s: float, min_frames: int = 1) -> np.ndarray:
        """Up to ``max_frames`` captured frames, ``[n, channels]`` float32; waits up to
        ``timeout_s`` [s] until ``min_frames`` have arrived (returning what there is, maybe
        nothing, on timeout).

        ``min_frames`` is how much the caller needs before it has work (the analysis: until its
        next frame completes). The capture worker is told, so it sends the blocks before that
        point together rather than one by one (see ``_portaudio_worker``); the frame that
        completes the need is sent exactly when it would have been anyway.
        """
        self._require_started()
        want = max(1, min(int(min_frames), int(max_frames), self._ring.capacity_frames))
        missing = want - self._ring.available()
        if missing > 0 and timeout_s > 0:
            self._request(missing)
            self._ring.wait(timeout_s, want)
        self._read_start = self._ring.read_frames
        timeline = self._timeline
        while timeline and timeline[0][0] <= self._read_start:
            timeline.popleft()
        block = self._ring.read(max_frames)
        if self._select is not None:
            block = np.ascontiguousarray(block[:, self._select])
        self._delivered += len(block)
        return block

    def capture_time(self, index: int) -> float | None:
        """When frame ``index`` of the block the last ``read`` returned was captured: the
        ``time.monotonic()`` [s] at which PortAudio handed its block to the capture worker (the
        moment the sample became available to software; the interface's own input latency
        comes before that). None if unknown (e.g. frames dropped around it)."""
        pos = self._read_start + int(index)
        for end, t in list(self._timeline):
            if pos < end:
                return t
        return None

    def _request(self, missing: int) -> None:
        """Tell the worker we need ``missing`` more frames before we have work (NEED)."""
        child = self._child
        if child is None:
            return
        target = child.received + missing
        if target == child.need_sent:
            return
        child.need_sent = target
        try:
            child.sock.send(wire.HEADER.pack(wire.KIND_NEED, 0, 0, target, 0, 0),
                            socket.MSG_DONTWAIT)
        except OSError:
            pass  # a worker that cannot take it sends every block, as without NEED

    def counters(self) -> dict[str, int]:
        """``frames_delivered``, ring ``written``/``read`` [frames], ``overflows`` (ring full)
        [events], ``dropped_frames`` (ring full or this process too slow to take a block)
        [frames], ``input_overflows`` (PortAudio flagged lost input; with JACK, any xrun of the
        graph) [events], ``errors`` (failures seen) [events], ``restarts`` (recoveries)
        [events], ``packets`` (audio messages from the capture worker: one per PortAudio block,
        fewer when reads ask for ``min_frames``) [events]."""
        ring = self._ring.counters()
        return {
            "frames_delivered": self._delivered,
            "written": ring["written"],
            "read": ring["read"],
            "overflows": ring["overflows"],
            "dropped_frames": ring["dropped_frames"] + self._transport_dropped,
            "input_overflows": self._input_overflows,
            "errors": self._errors,
            "restarts": self._restarts,
            "packets": self._packets,
        }

    # -- worker processes ---------------------------------------------------------------------

    def _spawn(self) -> _Child:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        bytes_per_s = self._rate * self._open_channels * 4
        config = {
            "fd": theirs.fileno(),
            "device_name": self._info.name,
            "host_api": self._info.host_api,
            "index_hint": self._info.index,
            "channels": self._open_channels,
            "sample_rate_hz": self._rate,
            "blocksize": self._blocksize,
            "client_name": self._client_name,
            "max_batch_frames": self._max_batch_frames,
            # ~1 s of audio in flight if this process is briefly too busy to receive.
            "sndbuf_bytes": min(max(2 * bytes_per_s, 1 << 18), 1 << 23),
        }
        try:
            proc = subprocess.Popen(
                worker_command("capture", json.dumps(config)),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=worker_env(),
                start_new_session=True,  # a Ctrl-C reaches us, and we stop the worker cleanly
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(0.1)
        return _Child(proc, ours)

    def _pump(self, child: _Child, until_ready: bool) -> str | None:
        """Move the worker's audio into the ring until it fails (return the reason), becomes
        ready (return ``_READY``, only with ``until_ready``), or we are stopped (None)."""
        channels = self._open_channels
        self._child = child
        while not self._stop_event.is_set():
            try:
                nbytes, _, flags, _ = child.sock.recvmsg_into([self._rx])
            except TimeoutError:
                now = time.monotonic()
                if child.ready and now - child.last_audio > self._stall_timeout_s:
                    return f"no audio from the device for {now - child.last_audio:.1f} s"
                if not child.ready and now - child.spawned > self._start_timeout_s:
                    return f"the device did not start within {self._start_timeout_s:g} s"
                continue
            except OSError as exc:
                return f"lost the capture process ({exc})"
            if nbytes == 0:
                code = child.proc.wait()
                tail = f": {child.stderr_tail[-1]}" if child.stderr_tail else ""
                return f"the capture process ended with exit code {code}{tail}"
            if nbytes < wire.HEADER.size:
                continue
            kind, frames, overflows, dropped, blocks, _ = wire.HEADER.unpack_from(self._rx, 0)
            if kind == wire.KIND_AUDIO:
                start = wire.HEADER.size + wire.table_bytes(blocks)
                if (flags & socket.MSG_TRUNC or blocks > wire.MAX_BLOCKS
                        or nbytes != start + frames * channels * 4):
                    self._transport_dropped += frames
                    self._log.log(logging.WARNING, "block", f"dropped a malformed block ({frames})")
                    continue
                self._store(frames, blocks, start)
                child.received += frames
                self._packets += 1
                self._input_overflows += overflows - child.input_overflows
                self._transport_dropped += dropped - child.transport_dropped
                child.input_overflows, child.transport_dropped = overflows, dropped
                child.last_audio = time.monotonic()
                if not child.got_audio:
                    child.got_audio = True
            elif kind == wire.KIND_READY:
                child.ready = True
                child.last_audio = time.monotonic()
                self._status = (
                    f"running: {self._info.name} ({self._info.host_api}), {self._rate} Hz, "
                    f"{self._channels} ch"
                )
                if until_ready:
                    return _READY
            elif kind == wire.KIND_ERROR:
                return bytes(self._rx[wire.HEADER.size : nbytes]).decode(errors="replace")
        return None

    def _store(self, frames: int, blocks: int, start: int) -> None:
        """Write a received packet's samples (at byte ``start`` of the receive buffer) into the
        ring, and its blocks' capture times into the timeline first, so a reader never sees a
        frame whose time is missing."""
        channels = self._open_channels
        times = np.frombuffer(self._rx, np.float64, blocks, wire.HEADER.size)
        sizes = np.frombuffer(self._rx, np.uint32, blocks, wire.HEADER.size + 8 * blocks)
        base = self._ring.written_frames
        stored = min(frames, self._ring.free())  # the ring drops the newest frames if full
        end = 0
        for t, n in zip(times.tolist(), sizes.tolist(), strict=True):
            end += n
            if end > stored:
                if end - n < stored:
                    self._timeline.append((base + stored, t))
                break
            self._timeline.append((base + end, t))
        samples = self._rx[start : start + frames * channels * 4].view(np.float32)
        self._ring.write(samples.reshape(frames, channels))

    def _supervise(self, child: _Child | None) -> None:
        """The capture thread: pump audio; on failure report, back off, and reopen."""
        delay = self._backoff_initial_s
        failed_at: float | None = None
        while True:
            reason: str | None
            if child is None:
                self._status = f"reopening: {self._info.name}"
                try:
                    child = self._spawn()
                except OSError as exc:
                    reason = f"cannot start the capture process ({exc})"
                else:
                    reason = self._pump(child, until_ready=True)
                    if reason == _READY:
                        self._restarts += 1
                        outage = time.monotonic() - (failed_at or time.monotonic())
                        logger.warning(
                            "audio capture from '%s' resumed after %.1f s", self._info.name, outage
                        )
                        failed_at = None
                        reason = self._pump(child, until_ready=False)
            else:
                reason = self._pump(child, until_ready=False)
            if reason is None:
                break  # stopped
            if child is not None and child.got_audio:
                delay = self._backoff_initial_s
            failed_at = failed_at or time.monotonic()
            self._errors += 1
            self._last_error = reason
            self._status = f"error: {reason}; retrying in {delay:.1f} s"
            self._log.log(
                logging.WARNING,
                "failure",
                f"audio capture from '{self._info.name}' failed: {reason}; "
                f"retrying in {delay:.1f} s",
            )
            if child is not None:
                child.end(grace_s=0.5)  # a failed worker is often wedged inside PortAudio
                child = None
            if self._stop_event.wait(delay):
                break
            delay = min(delay * 2.0, self._backoff_max_s)
        if child is not None:
            child.end(grace_s=2.0)
