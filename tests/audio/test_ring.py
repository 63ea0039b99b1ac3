"""RingBuffer: exact sample order across wraparound, drop-newest overflow accounting, and a
producer and a consumer thread with random block sizes."""

from __future__ import annotations

import threading
import time
import tracemalloc

import numpy as np
import pytest

from streamtag.audio.ring import RingBuffer


def ramp(start: int, n: int, channels: int) -> np.ndarray:
    """Frames ``start..start+n`` as ``[n, channels]``: sample (i, c) = i * channels + c."""
    frames = np.arange(start, start + n, dtype=np.float64)[:, None] * channels
    return (frames + np.arange(channels)).astype(np.float32)


def test_wraparound_keeps_sample_order() -> None:
    ring = RingBuffer(8, 2)
    assert ring.write(ramp(0, 5, 2)) == 5
    np.testing.assert_array_equal(ring.read(3), ramp(0, 3, 2))
    assert ring.write(ramp(5, 6, 2)) == 6  # frames 5..10 wrap past the end of storage
    assert ring.available() == 8
    np.testing.assert_array_equal(ring.read(100), ramp(3, 8, 2))
    assert ring.available() == 0
    assert ring.counters() == {"written": 11, "read": 11, "overflows": 0, "dropped_frames": 0}


def test_read_into_reuses_the_callers_buffer() -> None:
    ring = RingBuffer(4, 1)
    ring.write(ramp(0, 3, 1))
    out = np.full((8, 1), -1.0, dtype=np.float32)
    assert ring.read_into(out) == 3
    np.testing.assert_array_equal(out[:3], ramp(0, 3, 1))
    assert out[3, 0] == -1.0


def test_overflow_drops_the_newest_frames_and_counts_them() -> None:
    ring = RingBuffer(8, 1)
    ring.write(ramp(0, 6, 1))
    assert ring.write(ramp(6, 5, 1)) == 2  # only 2 frames free: 3 newest dropped
    assert ring.write(ramp(11, 20, 1)) == 0  # full: the whole block dropped
    assert ring.counters() == {"written": 8, "read": 0, "overflows": 2, "dropped_frames": 23}
    # The reader sees an unbroken stretch of the oldest frames.
    np.testing.assert_array_equal(ring.read(100), ramp(0, 8, 1))
    assert ring.write(ramp(31, 3, 1)) == 3  # room again after the read
    np.testing.assert_array_equal(ring.read(100), ramp(31, 3, 1))


def test_block_larger_than_capacity_keeps_its_first_frames() -> None:
    ring = RingBuffer(4, 1)
    assert ring.write(ramp(0, 10, 1)) == 4
    np.testing.assert_array_equal(ring.read(10), ramp(0, 4, 1))
    assert ring.counters()["dropped_frames"] == 6


def test_wrong_block_shape_is_rejected() -> None:
    ring = RingBuffer(4, 2)
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        ring.write(np.zeros((3, 1), np.float32))
    with pytest.raises(ValueError):
        RingBuffer(0, 1)


def test_wait_times_out_empty_and_wakes_on_write() -> None:
    ring = RingBuffer(16, 1)
    t0 = time.monotonic()
    assert ring.wait(0.05) is False
    assert time.monotonic() - t0 >= 0.04
    timer = threading.Timer(0.05, lambda: ring.write(ramp(0, 1, 1)))
    timer.start()
    t0 = time.monotonic()
    assert ring.wait(5.0) is True
    assert time.monotonic() - t0 < 2.0
    timer.join()


def test_wait_for_min_frames_sleeps_through_smaller_writes() -> None:
    ring = RingBuffer(64, 1)
    timers = [threading.Timer(0.03 * (k + 1), lambda k=k: ring.write(ramp(4 * k, 4, 1)))
              for k in range(3)]
    for t in timers:
        t.start()
    t0 = time.monotonic()
    assert ring.wait(5.0, min_frames=10) is True  # the third write brings 12
    assert time.monotonic() - t0 >= 0.08
    assert ring.available() == 12
    for t in timers:
        t.join()
    assert ring.wait(0.02, min_frames=20) is False  # times out with what there is
    assert ring.available() == 12
    assert ring.wait(0.0, min_frames=1000) is False  # more than the capacity: all of it


def test_write_allocates_no_sample_storage_in_steady_state() -> None:
    ring = RingBuffer(4096, 2)
    block = ramp(0, 256, 2)
    for _ in range(32):  # warm up
        ring.write(block)
        ring.read_into(np.empty((256, 2), np.float32))
    tracemalloc.start()
    try:
        for _ in range(200):
            ring.write(block)
            ring._read = ring._written  # consume without allocating on the reader side
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < block.nbytes  # views and ints only, never a copy of a block


def test_threads_with_random_block_sizes_reproduce_the_exact_sequence() -> None:
    channels, total, capacity = 2, 200_000, 1024
    ring = RingBuffer(capacity, channels)
    expected = ramp(0, total, channels)
    sizes = np.random.default_rng(7).integers(1, 700, size=10_000)
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            pos, i = 0, 0
            while pos < total:
                n = min(int(sizes[i % len(sizes)]) % capacity or 1, total - pos)
                i += 1
                while ring.free() < n:  # a producer that never overflows
                    time.sleep(0)
                assert ring.write(expected[pos : pos + n]) == n
                pos += n
        except BaseException as exc:
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    got, read_sizes = [], np.random.default_rng(11).integers(1, 900, size=10_000)
    received, i = 0, 0
    deadline = time.monotonic() + 60
    while received < total and time.monotonic() < deadline:
        ring.wait(0.5)
        block = ring.read(int(read_sizes[i % len(read_sizes)]))
        i += 1
        got.append(block)
        received += len(block)
    producer.join(timeout=10)
    assert not errors
    np.testing.assert_array_equal(np.concatenate(got), expected)
    assert ring.counters() == {
        "written": total,
        "read": total,
        "overflows": 0,
        "dropped_frames": 0,
    }
