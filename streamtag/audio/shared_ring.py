"""The daemon's side of the capture ring shared with the PortAudio worker process.

The worker (``_portaudio_worker``, the producer) copies each PortAudio block into a
``multiprocessing.shared_memory`` block this class creates and owns; ``read`` (the consumer, the
analysis loop) copies frames out. The layout, the counters and who writes which are described
in ``_portaudio_worker``'s docstring: each side writes only its own frame counter, and only
after its copy, so no lock is needed (as in ``RingBuffer``). Overflow policy: the worker drops
the newest frames when the ring is full and counts them.

The ring outlives the workers: a worker restarted after a device failure attaches to the same
block and carries on from the same counters, so stream time and counters survive restarts.
"""

from __future__ import annotations

import socket
import time
from multiprocessing import shared_memory

import numpy as np

from streamtag.audio import _portaudio_worker as wire


class SharedRing:
    """A ring of ``[capacity_frames, channels]`` float32 frames in shared memory, plus the
    capture time of every block written into it.

    Args:
        capacity_frames: frames the ring holds [frames], > 0.
        channels: channels per frame, > 0.
        table_entries: blocks whose capture times are kept; 0 sizes it from the capacity
            (one entry per 16 frames, enough for any block size a host chooses).
    """

    def __init__(self, capacity_frames: int, channels: int, table_entries: int = 0) -> None:
        if capacity_frames <= 0 or channels <= 0:
            raise ValueError(f"capacity_frames and channels must be > 0, got "
                             f"{capacity_frames}, {channels}")
        self._capacity = int(capacity_frames)
        self._channels = int(channels)
        self._table = int(table_entries) or self._capacity // 16 + 64
        self._shm: shared_memory.SharedMemory | None = None
        # The worker's wake-ups: one datagram each, straight to the thread waiting in ``wait``
        # (no relay thread). UDP on the loopback exists on every system; a stray datagram only
        # makes ``wait`` look at the counters once more.
        self._wake = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._wake.bind(("127.0.0.1", 0))
        self._wakeups = 0
        self._read = 0
        self._map(None)
        # The snapshot of block times that covers the last block read (see ``capture_time``).
        self._read_start = 0
        self._snap_ends = np.empty(0, np.int64)
        self._snap_times = np.empty(0, np.float64)
        self._snap_known_from = 0
        self._next_block = 0  # first block whose frames have not all been read

    def _map(self, old: shared_memory.SharedMemory | None) -> None:
        ends_at, times_at, samples_at, size = wire.layout(self._capacity, self._channels,
                                                          self._table)
        shm = shared_memory.SharedMemory(create=True, size=size)
        if old is not None:  # a restart after ``unlink``: carry the audio and counters over
            shm.buf[:size] = old.buf[:size]
        self._head = np.ndarray((wire.HEADER_SLOTS,), np.int64, shm.buf, 0)
        self._ends = np.ndarray((self._table,), np.int64, shm.buf, ends_at)
        self._times = np.ndarray((self._table,), np.float64, shm.buf, times_at)
        self._samples = np.ndarray((self._capacity, self._channels), np.float32, shm.buf,
                                   samples_at)
        h = self._head
        h[wire.H_CAPACITY], h[wire.H_CHANNELS], h[wire.H_TABLE] = (self._capacity,
                                                                  self._channels, self._table)
        h[wire.H_MAGIC] = wire.MAGIC
        self._shm = shm

    # -- lifetime -------------------------------------------------------------------------------
    @property
    def wake_port(self) -> int:
        """The loopback UDP port the worker sends its wake-ups to."""
        return int(self._wake.getsockname()[1])

    @property
    def wakeups(self) -> int:
        """Wake-ups received from workers [events]."""
        return self._wakeups

    @property
    def name(self) -> str:
        """The shared block's name, for the worker to attach to. Reopens it after ``unlink``."""
        if self._shm is None:
            raise RuntimeError("the shared ring is closed")
        return self._shm.name

    def relink(self) -> None:
        """Give the ring a name again after ``unlink`` (a new block holding the same state)."""
        old = self._shm
        self._map(old)  # our views now point into the new block: the old one can go
        if old is not None:
            old.close()

    def unlink(self) -> None:
        """Remove the block's name (no worker can attach any more); what it holds stays
        readable here until ``close``."""
        if self._shm is not None:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Unlink and unmap; the ring is unusable afterwards."""
        if self._shm is not None:
            self.unlink()
            self._close(self._shm)
            self._shm = None
        self._wake.close()

    def _close(self, shm: shared_memory.SharedMemory) -> None:
        # numpy views hold exports of the mapping: drop ours first, then unmap.
        self._head = self._head.copy()
        self._ends = self._ends.copy()
        self._times = self._times.copy()
        self._samples = self._samples.copy()
        shm.close()

    # -- the consumer ------------------------------------------------------------------------------
    @property
    def capacity_frames(self) -> int:
        return self._capacity

    @property
    def written_frames(self) -> int:
        """Frames written since creation [frames] (the worker's counter)."""
        return int(self._head[wire.H_WRITTEN])

    @property
    def read_frames(self) -> int:
        """Frames read since creation [frames]."""
        return self._read

    def available(self) -> int:
        """Frames written and not yet read [frames]."""
        return int(self._head[wire.H_WRITTEN]) - self._read

    def _drain_wakes(self) -> None:
        self._wake.setblocking(False)
        try:
            while True:
                self._wake.recv(64)
        except OSError:  # BlockingIOError: empty (or a reset reported by some systems)
            pass

    def wait(self, timeout_s: float, min_frames: int) -> bool:
        """Sleep until ``min_frames`` frames are available or ``timeout_s`` [s] passes; the
        worker wakes us only then (not for every block before). True if they are there.
        One consumer thread only."""
        want = min(max(int(min_frames), 1), self._capacity)
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while self.available() < want:
            # Clear, ask, re-check: a wake-up for an earlier request cannot be taken for this
            # one, and frames that arrived before the request are seen here.
            self._drain_wakes()
            self._head[wire.H_WANTED] = self._read + want
            if self.available() >= want:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wake.settimeout(left)
            try:
                self._wake.recv(64)
            except TimeoutError:
                break
            except OSError:
                time.sleep(min(left, 0.005))  # (a reset from a vanished worker, on Windows)
                continue
            self._wakeups += 1
        return self.available() >= want

    def read(self, max_frames: int) -> np.ndarray:
        """Copy out and consume up to ``max_frames`` frames: ``[n, channels]`` float32."""
        h = self._head
        written = int(h[wire.H_WRITTEN])
        blocks = int(h[wire.H_BLOCKS])  # after the frame counter: covers every frame written
        read = self._read
        n = max(min(written - read, int(max_frames)), 0)
        out = np.empty((n, self._channels), np.float32)
        if n:
            start = read % self._capacity
            first = min(n, self._capacity - start)
            out[:first] = self._samples[start : start + first]
            if n > first:
                out[first:] = self._samples[: n - first]
        self._snapshot_times(read, read + n, blocks)
        self._read = read + n
        h[wire.H_READ] = self._read  # release the space only after the copy
        return out

    def _snapshot_times(self, start: int, end: int, blocks: int) -> None:
        """Keep the times of the blocks holding frames ``[start, end)`` for ``capture_time``."""
        self._read_start = start
        lo = max(self._next_block, blocks - self._table)
        idx = np.arange(lo, blocks) % self._table
        ends, times = self._ends[idx], self._times[idx]
        # Entries the worker overwrote while we copied them (a table that wrapped) are unknown.
        overwritten = int(self._head[wire.H_BLOCKS]) - self._table - lo
        if overwritten > 0:
            ends, times, lo = ends[overwritten:], times[overwritten:], lo + overwritten
        self._snap_ends, self._snap_times = ends, times
        # Frames before the first entry belong to it only if no entry before it was lost.
        self._snap_known_from = start if lo == self._next_block else (
            int(ends[0]) if len(ends) else end)
        self._next_block = lo + int(np.searchsorted(ends, end, side="right"))

    def capture_time(self, index: int) -> float | None:
        """``time.monotonic()`` [s] when the block holding frame ``index`` of the last read
        reached the worker; None if unknown."""
        pos = self._read_start + int(index)
        k = int(np.searchsorted(self._snap_ends, pos, side="right"))
        if k >= len(self._snap_ends) or (k == 0 and pos < self._snap_known_from):
            return None
        return float(self._snap_times[k])

    def counters(self) -> dict[str, int]:
        """``written``/``read`` [frames], ``overflows`` (ring full) [events],
        ``dropped_frames`` [frames], ``input_overflows`` (PortAudio) [events]."""
        h = self._head
        return {
            "written": int(h[wire.H_WRITTEN]),
            "read": self._read,
            "overflows": int(h[wire.H_OVERFLOWS]),
            "dropped_frames": int(h[wire.H_DROPPED]),
            "input_overflows": int(h[wire.H_INPUT_OVERFLOWS]),
        }
