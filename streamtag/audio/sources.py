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
import subprocess
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from streamtag.audio import _portaudio_worker as portaudio_worker
from streamtag.audio.devices import DeviceInfo, resolve_device, worker_command, worker_env
from streamtag.audio.shared_ring import SharedRing
from streamtag.errors import AudioError, DeviceError
from streamtag.logs import RateLimitedLog

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


class _Child:
    """One capture worker process: its pipes, and what it has said so far.

    A thread reads the worker's stdout (see ``_portaudio_worker``): the ready and error
    messages are kept, and end of file means the worker is gone. Every change sets
    ``changed``, which the supervisor waits on. (Wake-ups for audio go to the ring directly.)
    """

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.spawned = time.monotonic()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=8)
        self.ready: dict[str, Any] | None = None
        self.error: str | None = None
        self.ended = False
        self.changed = threading.Event()
        self._events = threading.Thread(target=self._read_events, name="streamtag-capture-events",
                                        daemon=True)
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._events.start()
        self._drain.start()

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        line: bytearray | None = None  # a ready/error message being gathered
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                break
            for byte in data:
                char = bytes((byte,))
                if line is not None:
                    if char != b"\n":
                        line.append(byte)
                        continue
                    self._message(bytes(line))
                    line = None
                elif char in (portaudio_worker.READY, portaudio_worker.ERROR):
                    line = bytearray(char)
        self.ended = True
        self.changed.set()

    def _message(self, line: bytes) -> None:
        text = line[1:].decode(errors="replace")
        if line[:1] == portaudio_worker.READY:
            try:
                self.ready = json.loads(text)
            except json.JSONDecodeError:
                self.ready = {}
        elif self.error is None:
            self.error = text
        self.changed.set()

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
            assert self.proc.stdin is not None
            self.proc.stdin.write(portaudio_worker.STOP)
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass  # it is gone already
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._events.join(timeout=1.0)
        self._drain.join(timeout=1.0)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


_READY = "ready"


class DeviceSource(_SourceBase):
    """Live capture from a PortAudio input device (ALSA, JACK, CoreAudio, ...).

    PortAudio runs in a child process whose audio callback copies each block into a ring in
    shared memory (``SharedRing``) that ``read`` drains; the worker wakes a waiting ``read``
    only once the frames it asked for are there. A supervisor thread here watches the worker:
    if it reports an error, dies, or writes no audio for
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
        self._ring = SharedRing(max(1, math.ceil(ring_s * self._rate)), self._open_channels)
        # Unlink and unmap the shared block when this source goes, whoever forgets to stop it.
        self._finalizer = weakref.finalize(self, self._ring.close)
        self._client_name = client_name
        self._stall_timeout_s = stall_timeout_s
        self._start_timeout_s = start_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._log = RateLimitedLog(logger, log_interval_s)

        self._child: _Child | None = None  # the worker now capturing

        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._status = "idle"
        self._last_error: str | None = None
        self._delivered = 0
        self._errors = 0
        self._restarts = 0
        self._stopped_once = False

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
        if self._stopped_once:
            self._ring.relink()  # stop() unlinked it: a new name, same audio and counters
        try:
            child = self._spawn()
        except OSError as exc:
            self._status = "stopped"
            raise DeviceError(f"cannot start the audio capture process: {exc}") from exc
        outcome = self._watch(child, until_ready=True)
        if outcome != _READY:
            self._end(child, grace_s=1.0)
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
        self._ring.unlink()  # nobody attaches any more; the mapping stays for ``read``
        self._stopped_once = True
        self._status = "stopped"

    def read(self, max_frames: int, timeout_s: float, min_frames: int = 1) -> np.ndarray:
        """Up to ``max_frames`` captured frames, ``[n, channels]`` float32; waits up to
        ``timeout_s`` [s] until ``min_frames`` have arrived (returning what there is, maybe
        nothing, on timeout).

        ``min_frames`` is how much the caller needs before it has work (the analysis: until its
        next frame completes). The capture worker is told, and wakes this process only once
        that many frames are in the ring, not for every PortAudio block before.
        """
        self._require_started()
        want = max(1, min(int(min_frames), int(max_frames), self._ring.capacity_frames))
        if self._ring.available() < want and timeout_s > 0:
            self._ring.wait(timeout_s, want)
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
        return self._ring.capture_time(index)

    def counters(self) -> dict[str, int]:
        """``frames_delivered``, ring ``written``/``read`` [frames], ``overflows`` (ring full)
        [events], ``dropped_frames`` (ring full: this process too slow to take them) [frames],
        ``input_overflows`` (PortAudio flagged lost input; with JACK, any xrun of the graph)
        [events], ``errors`` (failures seen) [events], ``restarts`` (recoveries) [events],
        ``wakeups`` (times the capture worker woke this process: about once per frame a
        reader waits for, not once per PortAudio block) [events]."""
        return {
            "frames_delivered": self._delivered,
            **self._ring.counters(),
            "errors": self._errors,
            "restarts": self._restarts,
            "wakeups": self._ring.wakeups,
        }

    # -- worker processes ---------------------------------------------------------------------

    def _spawn(self) -> _Child:
        config = {
            "shm": self._ring.name,
            "wake_port": self._ring.wake_port,
            "device_name": self._info.name,
            "host_api": self._info.host_api,
            "index_hint": self._info.index,
            "channels": self._open_channels,
            "sample_rate_hz": self._rate,
            "blocksize": self._blocksize,
            "client_name": self._client_name,
        }
        # A Ctrl-C in the terminal reaches us, not the worker: we stop it cleanly.
        detach: dict[str, Any] = (
            {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt"  # type: ignore[attr-defined]
            else {"start_new_session": True})
        proc = subprocess.Popen(
            worker_command("capture", json.dumps(config)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=worker_env(),
            bufsize=0,
            **detach,
        )
        child = _Child(proc)
        self._child = child
        return child

    def _end(self, child: _Child, grace_s: float) -> None:
        child.end(grace_s)
        if self._child is child:
            self._child = None

    def _watch(self, child: _Child, until_ready: bool) -> str | None:
        """Watch the worker until it fails (return the reason), becomes ready (return
        ``_READY``, only with ``until_ready``), or we are stopped (None). Wakes on the worker's
        messages and 4 times a second to look for a stall; the audio itself never passes here."""
        last_written = self._ring.written_frames
        last_progress = time.monotonic()
        while not self._stop_event.is_set():
            child.changed.wait(0.25)
            child.changed.clear()
            if child.error is not None:
                return child.error
            if child.ended:
                code = child.proc.wait()
                tail = f": {child.stderr_tail[-1]}" if child.stderr_tail else ""
                return f"the capture process ended with exit code {code}{tail}"
            now = time.monotonic()
            if child.ready is None:
                if now - child.spawned > self._start_timeout_s:
                    return f"the device did not start within {self._start_timeout_s:g} s"
                continue
            if until_ready:
                self._status = (
                    f"running: {self._info.name} ({self._info.host_api}), {self._rate} Hz, "
                    f"{self._channels} ch"
                )
                return _READY
            written = self._ring.written_frames
            if written != last_written:
                last_written, last_progress = written, now
            elif now - last_progress > self._stall_timeout_s:
                return f"no audio from the device for {now - last_progress:.1f} s"
        return None

    def _supervise(self, child: _Child | None) -> None:
        """The capture thread: watch the worker; on failure report, back off, and reopen."""
        delay = self._backoff_initial_s
        failed_at: float | None = None
        while True:
            reason: str | None
            got_audio = False
            if child is None:
                self._status = f"reopening: {self._info.name}"
                try:
                    child = self._spawn()
                except OSError as exc:
                    reason = f"cannot start the capture process ({exc})"
                else:
                    reason = self._watch(child, until_ready=True)
                    if reason == _READY:
                        self._restarts += 1
                        outage = time.monotonic() - (failed_at or time.monotonic())
                        logger.warning(
                            "audio capture from '%s' resumed after %.1f s", self._info.name, outage
                        )
                        failed_at = None
                        written = self._ring.written_frames
                        reason = self._watch(child, until_ready=False)
                        got_audio = self._ring.written_frames != written
            else:
                written = self._ring.written_frames
                reason = self._watch(child, until_ready=False)
                got_audio = self._ring.written_frames != written
            if reason is None:
                break  # stopped
            if got_audio:
                delay = self._backoff_initial_s
            failed_at = failed_at or time.monotonic()
            self._errors += 1
            self._last_error = reason
            self._status = f"error: {reason}; retrying in {delay:.1f} s"
            self._log.log(
                "failure",
                logging.WARNING,
                "%s",
                f"audio capture from '{self._info.name}' failed: {reason}; "
                f"retrying in {delay:.1f} s",
            )
            if child is not None:
                self._end(child, grace_s=0.5)  # a failed worker is often wedged inside PortAudio
                child = None
            if self._stop_event.wait(delay):
                break
            delay = min(delay * 2.0, self._backoff_max_s)
        if child is not None:
            self._end(child, grace_s=2.0)
