"""A fixed-size single-producer/single-consumer ring buffer of float32 audio frames.

The producer (the capture thread) only copies into preallocated storage; the consumer (the
analysis loop) copies out. The two sides share nothing but two monotonically increasing frame
counters, ``written`` and ``read``: each side writes only its own counter, and only after its copy
is complete, so neither side ever needs a lock the other could hold. In CPython reading and
rebinding an ``int`` attribute is atomic under the GIL, which is all this scheme needs.

Overflow policy: **drop the newest**. When the consumer has fallen so far behind that an incoming
block does not fit, the part that does not fit is discarded and counted (``overflows`` events,
``dropped_frames`` frames). Dropping the oldest instead would mean the producer overwrites frames
the consumer may be copying at that very moment; dropping the newest keeps the lock-free contract
and leaves the consumer an unbroken stretch of audio followed by one gap.
"""

from __future__ import annotations

import threading
import time

import numpy as np


class RingBuffer:
    """Preallocated ring of audio frames, ``[capacity_frames, channels]`` float32.

    ``write`` is for exactly one producer thread, ``read``/``wait`` for exactly one consumer thread.

    Args:
        capacity_frames: how many frames the ring holds [frames], > 0.
        channels: channels per frame, > 0.
    """

    def __init__(self, capacity_frames: int, channels: int) -> None:
        if capacity_frames <= 0:
            raise ValueError(f"capacity_frames must be > 0, got {capacity_frames}")
        if channels <= 0:
            raise ValueError(f"channels must be > 0, got {channels}")
        self._capacity = int(capacity_frames)
        self._channels = int(channels)
        self._buf = np.zeros((self._capacity, self._channels), dtype=np.float32)
        # Frame counters since creation; written only by their own side.
        self._written = 0
        self._read = 0
        # Written only by the producer.
        self._overflows = 0
        self._dropped = 0
        self._data_ready = threading.Event()
        # How many frames the waiting consumer wants before it is woken (written only by the
        # consumer): waking it for less would only make it go back to sleep.
        self._wanted = 1

    @property
    def capacity_frames(self) -> int:
        """Frames the ring can hold [frames]."""
        return self._capacity

    @property
    def channels(self) -> int:
        """Channels per frame."""
        return self._channels

    def write(self, block: np.ndarray) -> int:
        """Copy ``block`` ``[n, channels]`` float32 into the ring; return frames stored.

        Called from the capture thread: it allocates no sample storage and takes no lock the
        reader holds. Frames that do not fit are dropped (newest first) and counted.
        """
        if block.ndim != 2 or block.shape[1] != self._channels:
            raise ValueError(
                f"expected a block of shape [n, {self._channels}], got {list(block.shape)}"
            )
        n = block.shape[0]
        if n == 0:
            return 0
        written = self._written
        free = self._capacity - (written - self._read)
        k = n
        if n > free:
            k = free
            self._overflows += 1
            self._dropped += n - free
        if k > 0:
            start = written % self._capacity
            first = min(k, self._capacity - start)
            self._buf[start : start + first] = block[:first]
            if k > first:
                self._buf[: k - first] = block[first:k]
            # Publish only after the copy: the reader never sees a half-written frame.
            self._written = written + k
        if self._written - self._read >= self._wanted:
            self._data_ready.set()
        return k

    def available(self) -> int:
        """Frames written and not yet read [frames]."""
        return self._written - self._read

    def free(self) -> int:
        """Frames that can be written without dropping any [frames]."""
        return self._capacity - (self._written - self._read)

    def read(self, max_frames: int) -> np.ndarray:
        """Copy out and consume up to ``max_frames`` frames: ``[n, channels]`` float32, n ≥ 0."""
        n = min(self._written - self._read, max(int(max_frames), 0))
        out = np.empty((n, self._channels), dtype=np.float32)
        self._copy_out(out, n)
        return out

    def read_into(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` frames into ``out`` ``[m, channels]`` float32; return n copied.

        For a consumer that wants to reuse its own buffer instead of allocating one per read.
        """
        if out.ndim != 2 or out.shape[1] != self._channels:
            raise ValueError(f"expected out of shape [m, {self._channels}], got {list(out.shape)}")
        n = min(self._written - self._read, out.shape[0])
        self._copy_out(out, n)
        return n

    def _copy_out(self, out: np.ndarray, n: int) -> None:
        if n <= 0:
            return
        read = self._read
        start = read % self._capacity
        first = min(n, self._capacity - start)
        out[:first] = self._buf[start : start + first]
        if n > first:
            out[first:n] = self._buf[: n - first]
        # Release the space only after the copy: the writer never overwrites unread frames.
        self._read = read + n

    def wait(self, timeout_s: float, min_frames: int = 1) -> bool:
        """Sleep until at least ``min_frames`` frames are available (at most the capacity) or
        ``timeout_s`` [s] passes. The producer wakes us only once that many are there.

        Returns True if ``min_frames`` frames are available.
        """
        want = min(max(int(min_frames), 1), self._capacity)
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while self.available() < want:
            self._wanted = want
            # Clear, then re-check: a write between the check and the clear is not lost.
            self._data_ready.clear()
            if self.available() >= want:
                break
            left = deadline - time.monotonic()
            if left <= 0 or not self._data_ready.wait(left):
                break
        self._wanted = 1
        return self.available() >= want

    @property
    def written_frames(self) -> int:
        """Frames written since creation [frames] (the producer's counter)."""
        return self._written

    @property
    def read_frames(self) -> int:
        """Frames read since creation [frames] (the consumer's counter)."""
        return self._read

    def counters(self) -> dict[str, int]:
        """``written``/``read`` [frames] since creation, ``overflows`` [events] and
        ``dropped_frames`` [frames]."""
        return {
            "written": self._written,
            "read": self._read,
            "overflows": self._overflows,
            "dropped_frames": self._dropped,
        }
