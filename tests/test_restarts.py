"""Fresh starts (streamtag.restarts): where the sound changes, the LSTM state, the pitch-class
memory and novelty's memory start again; the same whether hops come one at a time (the daemon)
or a chunk at a time (``analyze``), across chunk boundaries too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import assert_records_equal
from test_engine import stream_records

from streamtag.checkpoint import Checkpoint
from streamtag.config import NoveltyConfig
from streamtag.embedding import NoveltyMeter
from streamtag.engine import Engine, StreamSpec, run_hops
from streamtag.frontend import DEFAULT_FRONTEND, MelFrontend
from streamtag.restarts import FreshStarts, change_frame
from streamtag.testing import make_signal

RATE = 22050


def tone(seconds: float, f0: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def test_change_frame_finds_where_the_new_sound_begins() -> None:
    rng = np.random.default_rng(0)
    old, new = rng.normal(size=8), rng.normal(size=8) + 3.0
    for s in (0, 1, 9, 24):
        before = old + 0.05 * rng.normal(size=(25, 8))
        hop = np.concatenate([old + 0.05 * rng.normal(size=(s, 8)),
                              new + 0.05 * rng.normal(size=(25 - s, 8))])
        assert change_frame(before, hop) == s
    # An old note that began late in the hop before and goes on into this hop stays old: only
    # the last frames before the hop are the old sound.
    note = rng.normal(size=8) - 3.0
    before = np.concatenate([old + 0.05 * rng.normal(size=(16, 8)),
                             note + 0.05 * rng.normal(size=(9, 8))])
    hop = np.concatenate([note + 0.05 * rng.normal(size=(9, 8)),
                          new + 0.05 * rng.normal(size=(16, 8))])
    assert change_frame(before, hop) == 9
    assert change_frame(np.zeros((0, 8)), hop) == 0  # nothing before: the hop's start


def fresh_starts(threshold: float | None) -> FreshStarts:
    return FreshStarts(1, DEFAULT_FRONTEND, 25, [NoveltyMeter(6, 1, 4, 2)], None, threshold)


def test_decide_is_the_same_hop_by_hop_and_in_runs() -> None:
    """Silence empties novelty's memory, the first hop after a fresh start is not pushed, a
    change starts a new memory after it; calls of any length give the same flags and values."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=6), rng.normal(size=6)
    sound = np.concatenate([a + 0.1 * rng.normal(size=(10, 6)), b + 0.1 * rng.normal(size=(10, 6)),
                            a + 0.1 * rng.normal(size=(6, 6))])
    silent = np.zeros(len(sound), bool)
    silent[[14, 15]] = True
    whole = fresh_starts(0.3).decide(0, sound, silent)
    restart, novelty = whole
    assert novelty is not None
    changes = np.nonzero(restart & ~silent)[0].tolist()
    assert changes and changes[0] == 10  # a → b, caught at its first hop
    assert 20 in changes or 21 in changes  # b → a after the pause... caught again
    assert novelty[0] == 0.0 and novelty[16] == 0.0  # first hops after fresh starts
    for sizes in ([1] * len(sound), [3, 7, 1, 9, 6], [11, 15]):
        fs, at, flags, values = fresh_starts(0.3), 0, [], []
        for n in sizes:
            r, v = fs.decide(0, sound[at:at + n], silent[at:at + n])
            flags += r.tolist()
            values += v or []
            at += n
        assert flags == restart.tolist() and values == novelty
    # Without a threshold only silence restarts; without meters novelty is None.
    off, _ = fresh_starts(None).decide(0, sound, silent)
    assert off.tolist() == silent.tolist()
    none = FreshStarts(1, DEFAULT_FRONTEND, 25, None, None, 0.3)
    assert none.decide(0, sound, silent)[1] is None


def rows_restarted_at(first: int) -> tuple[np.ndarray, np.ndarray]:
    """A tone and then another: the frontend's rows [N, M] with one continuous pitch-class
    memory, and the reference, the frontend fed up to frame ``first``, its memory restarted,
    fed the rest."""
    x = np.concatenate([tone(3.0, 440.0), tone(3.0, 311.0)])
    whole = MelFrontend(DEFAULT_FRONTEND, fast_lane=False).process_offline(x).features
    live = MelFrontend(DEFAULT_FRONTEND, fast_lane=False)
    samples = DEFAULT_FRONTEND.hop_length
    head = live.process(x[: first * samples]).features
    live.restart_pitch_memory(np.array([True]))
    return whole, np.concatenate([head, live.process(x[first * samples:]).features])


def test_restart_rows_with_offsets_equals_restarting_the_memory_there() -> None:
    """A restart at a frame inside a hop (``offsets``), applied after the fact and a hop at a
    time, equals the frontend's memory restarted before that frame."""
    hop, at = 25, (3, 9)  # hop 3, frame 9
    first = at[0] * hop + at[1]
    whole, want = rows_restarted_at(first)
    fs = fresh_starts(None)
    n_hops = len(whole) // hop
    got = np.concatenate([
        fs.restart_rows(0, whole[k * hop:(k + 1) * hop], np.array([k == at[0]]),
                        np.array([at[1] if k == at[0] else 0]))[1]
        for k in range(n_hops)])
    assert np.abs(got - want[: n_hops * hop]).max() < 1e-4
    assert not np.allclose(got[first + 1:, -12:], whole[first + 1: n_hops * hop, -12:], atol=1e-3)


def test_a_restart_in_the_hop_before_frames_that_hop_again() -> None:
    """A change caught a hop late (a negative offset) restarts the memory in the hop before:
    that hop comes back framed again (for the windows from the late hop on), and both equal the
    frontend's memory restarted at that frame; the hop as its own call gave it is unmoved."""
    hop, late, offset = 25, 4, -16  # caught at hop 4, begun at frame 9 of hop 3
    first = late * hop + offset
    whole, want = rows_restarted_at(first)
    fs = fresh_starts(None)
    n_hops = len(whole) // hop
    got = []
    for k in range(n_hops):
        earlier, rows = fs.restart_rows(0, whole[k * hop:(k + 1) * hop], np.array([k == late]),
                                        np.array([offset if k == late else 0]))
        assert (earlier is None) == (k != late)  # framed again only for a late restart
        if k == late:
            assert earlier is not None
            np.testing.assert_array_equal(got[-1], whole[(k - 1) * hop:k * hop])
            got[-1] = earlier
        got.append(rows)
    joined = np.concatenate(got)
    assert np.abs(joined - want[: n_hops * hop]).max() < 1e-4
    assert not np.allclose(joined[first + 1:, -12:], whole[first + 1: n_hops * hop, -12:],
                           atol=1e-3)
    # Only the hop before: a restart further back is refused.
    with pytest.raises(ValueError, match="hop before"):
        fs.restart_rows(0, whole[:hop], np.array([True]), np.array([-hop - 1]))


def test_run_hops_restarts_the_state_before_a_fresh_start_and_carries_it_after(
    tiny_default: Checkpoint
) -> None:
    model = tiny_default.inference_model()
    feats = torch.randn(2, 5, model.encoded_features)
    silent = np.zeros((2, 5), bool)
    restart = silent.copy()
    restart[0, 2] = True
    with torch.inference_mode():
        out, _ = run_hops(model, feats, None, silent, restart)
        # Stream 0 from hop 2 on is a fresh start on hops 2..4; stream 1 runs on.
        fresh, _ = model.sequence_features(feats[:1, 2:], None)
        whole, _ = model.sequence_features(feats[1:], None)
    for k, v in out.items():
        np.testing.assert_allclose(v[0, 2:], fresh[k][0], atol=1e-5)
        np.testing.assert_allclose(v[1], whole[k][0], atol=1e-5)


def changes_in(engine: Engine, x: np.ndarray) -> tuple[list[dict], list[int]]:
    """``analyze`` of x, and the hops where the rule started afresh at a change."""
    flags: list[bool] = []
    decide = engine._fresh.decide

    def spy(b: int, sound: np.ndarray, silent: np.ndarray, changed=None):  # type: ignore[no-untyped-def]
        restart, novelty = decide(b, sound, silent, changed)
        flags.extend((restart & ~np.asarray(silent, bool)).tolist())
        return restart, novelty

    engine._fresh.decide = spy  # type: ignore[method-assign]
    try:
        records = engine.analyze(x)
    finally:
        del engine._fresh.decide
    return records, [k for k, f in enumerate(flags) if f]


@pytest.mark.parametrize("sizes", [[1], [333, 4096], [10**9]], ids=["1", "odd-mix", "whole"])
def test_streaming_equals_offline_with_changes(tiny_embedding: Checkpoint,
                                               sizes: list[int]) -> None:
    """The cornerstone test with fresh starts at changes: two kinds of sound taking turns."""
    parts = []
    for i in range(6):
        parts.append(make_signal(1.7, RATE, seed=i) if i % 2 else tone(1.3, 220.0 * (i + 1)))
    x = np.concatenate(parts)
    engine = Engine(tiny_embedding, novelty=NoveltyConfig(restart=0.05, recent_s=0.5,
                                                          memory_s=2.0))
    offline, changed = changes_in(engine, x)
    assert len(changed) >= 2, changed
    assert_records_equal(stream_records(engine, x, sizes), offline)


def test_a_change_at_a_chunk_boundary_is_the_same_offline_and_live(
    tiny_embedding: Checkpoint
) -> None:
    """``analyze`` runs 256 hops at a time: a change on the last hop of a chunk reframes the
    next chunk's first window; live and offline agree there too."""
    engine = Engine(tiny_embedding, novelty=NoveltyConfig(restart=0.05, recent_s=0.5,
                                                          memory_s=2.0))
    hop_s = engine.hop_s
    for lead in range(250, 256):  # where the tiny model's novelty fires after the tone ends
        x = np.concatenate([tone(lead * hop_s + 0.2, 330.0), make_signal(3.0, RATE, seed=9)])
        offline, changed = changes_in(engine, x)
        if 255 in changed:
            break
    assert 255 in changed, changed
    assert_records_equal(stream_records(engine, x, [4096]), offline)


def late_changes(engine: Engine) -> list[tuple[int, int]]:
    """Spy on the engine's pitch-class restarts: the list filled with (hop, offset) of each
    change found in the hop before the one the rule caught it at (a negative offset)."""
    found: list[tuple[int, int]] = []
    restart_rows = engine._fresh.restart_rows
    hops = [0]

    def spy(b: int, rows: np.ndarray, restart: np.ndarray, offsets=None):  # type: ignore[no-untyped-def]
        for k, (r, o) in enumerate(zip(restart, offsets, strict=True)):
            if r and o < 0:
                found.append((hops[0] + k, int(o)))
        hops[0] += len(restart)
        return restart_rows(b, rows, restart, offsets)

    engine._fresh.restart_rows = spy  # type: ignore[method-assign]
    engine.reset = lambda reset=engine.reset: (hops.__setitem__(0, 0), reset())[1]  # type: ignore[method-assign]
    return found


@pytest.mark.parametrize("sizes", [[1], [333, 4096], [10**9]], ids=["1", "odd-mix", "whole"])
def test_a_change_caught_a_hop_late_is_the_same_offline_and_live(tiny_embedding: Checkpoint,
                                                                sizes: list[int]) -> None:
    """Novelty can cross the threshold a hop after the sound changed: ``change_frame`` then
    finds the change in the hop before (a negative offset), whose frames before it become
    silence and whose pitch-class rows are framed again, in the windows from the late hop on.
    Live and offline agree."""
    engine = Engine(tiny_embedding, novelty=NoveltyConfig(restart=0.05, recent_s=0.5,
                                                          memory_s=2.0))
    x = np.concatenate([tone(3.0 + 0.27 * engine.hop_s, 330.0), make_signal(3.0, RATE, seed=3)])
    late = late_changes(engine)
    offline = engine.analyze(x)
    assert late and all(-engine.arch.hop_frames <= o < 0 for _, o in late), late
    before = list(late)
    late.clear()
    assert_records_equal(stream_records(engine, x, sizes), offline)
    assert late == before


def test_a_late_change_at_a_chunk_boundary_is_the_same_offline_and_live(
    tiny_embedding: Checkpoint
) -> None:
    """A change caught late on the first hop of an ``analyze`` chunk frames again the last hop
    of the chunk before (kept as the next chunk's context); live agrees."""
    engine = Engine(tiny_embedding, novelty=NoveltyConfig(restart=0.05, recent_s=0.5,
                                                          memory_s=2.0))
    late = late_changes(engine)
    hop_s = engine.hop_s
    for lead in range(250, 256):
        x = np.concatenate([tone((lead + 0.27) * hop_s, 330.0), make_signal(3.0, RATE, seed=3)])
        late.clear()
        offline = engine.analyze(x)
        if any(k == 256 for k, _ in late):
            break
    assert any(k == 256 for k, _ in late), late
    assert_records_equal(stream_records(engine, x, [4096]), offline)


def test_a_change_restarts_only_its_own_stream(tiny_embedding: Checkpoint) -> None:
    """Two streams in one engine: a change on the left restarts the left stream's memories
    alone; the right stream's records are those of an engine that hears only the right."""
    cfg = NoveltyConfig(restart=0.05, recent_s=0.5, memory_s=2.0)
    left = np.concatenate([tone(3.0, 330.0), make_signal(3.0, RATE, seed=3)])
    right = tone(6.0, 440.0, level=0.2)
    both = Engine(tiny_embedding, novelty=cfg,
                  streams=[StreamSpec("left", (0,)), StreamSpec("right", (1,))])
    records, changed = changes_in(both, np.stack([left, right], axis=1))
    assert changed  # flags of both streams, hop by hop: some change was caught
    alone = Engine(tiny_embedding, novelty=cfg, streams=[StreamSpec("right", (0,))])
    assert_records_equal([r for r in records if r["stream"] == "right"],
                         alone.analyze(right[:, None]))
    left_alone, left_changed = changes_in(Engine(tiny_embedding, novelty=cfg), left)
    assert left_changed
    assert_records_equal([{**r, "stream": "main"} for r in records if r["stream"] == "left"],
                         left_alone)
