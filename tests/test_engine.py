"""The cornerstone: hop-by-hop streaming records equal offline (batched) records.

Tolerance (see records.py): model outputs within 1e-4 absolute, level_db within 0.01 dB,
everything else exact; measurement fields (``wall``, ``latency_ms``) excluded.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from support import assert_records_equal

from streamtag import frontend
from streamtag.checkpoint import Checkpoint, load_checkpoint
from streamtag.engine import Engine, StreamSpec, quadrant
from streamtag.model import EMOTION_HEAD
from streamtag.testing import make_checkpoint, make_signal


def stream_records(engine: Engine, x: np.ndarray, sizes: list[int]) -> list[dict]:
    out, i, k = [], 0, 0
    while i < x.shape[0]:
        n = sizes[k % len(sizes)]
        out += engine.process(x[i:i + n]).records
        i, k = i + n, k + 1
    return out


@pytest.mark.parametrize("sizes", [[1], [7], [3, 1000, 1, 511], [4096], [10**9]],
                         ids=["1", "7", "odd-mix", "4096", "whole"])
def test_streaming_records_equal_offline_records(tiny_default: Checkpoint, sizes) -> None:
    x = make_signal(1.6 if sizes == [1] else 3.0, 22050)
    engine = Engine(tiny_default)
    offline = engine.analyze(x)
    assert len(offline) == int(x.size / 22050 / 0.5)
    assert_records_equal(stream_records(engine, x, sizes), offline)


def test_seed_preset_streams_like_offline(tiny_seed: Checkpoint) -> None:
    x = make_signal(2.5, 44100)
    engine = Engine(tiny_seed)
    offline = engine.analyze(x)
    assert offline[0]["t"] == pytest.approx(196 * 112 / 44100, abs=1e-6)
    assert_records_equal(stream_records(engine, x, [777]), offline)


def test_streaming_equals_offline_at_another_input_rate(tiny_default: Checkpoint) -> None:
    x = make_signal(3.0, 48000)
    engine = Engine(tiny_default, input_rate_hz=48000)
    offline = engine.analyze(x)
    assert_records_equal(stream_records(engine, x, [480, 1000]), offline)
    # The resampler's declared delay is taken off the stream time.
    assert offline[0]["t"] == pytest.approx(0.5 - engine.latency_s, abs=1e-6)
    assert 0 < engine.latency_s < 0.002


def test_rerun_equals_first_run_and_no_reset_differs(tiny_default: Checkpoint) -> None:
    x = make_signal(2.0, 22050)
    engine = Engine(tiny_default)
    first = stream_records(engine, x, [1000])
    engine.reset()
    again = stream_records(engine, x, [1000])
    assert_records_equal(again, first)
    continued = stream_records(engine, x, [1000])  # no reset: the LSTM state carries on
    assert continued[0]["seq"] == len(first)
    assert not np.allclose(continued[0]["emotion"]["valence"], first[0]["emotion"]["valence"],
                           atol=1e-6, rtol=0)


def test_hops_are_stamped_with_the_stream_time_of_their_end(tiny_default: Checkpoint) -> None:
    records = Engine(tiny_default).analyze(make_signal(2.6, 22050))
    assert [r["seq"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["t"] for r in records] == [0.5, 1.0, 1.5, 2.0, 2.5]


def test_silence_gate(tiny_default: Checkpoint) -> None:
    engine = Engine(tiny_default, silence_db=-60)
    quiet = engine.analyze(np.zeros(22050, np.float32))
    assert all(r["silent"] and r["level_db"] == -160.0 for r in quiet)
    sine = 0.5 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)
    loud = engine.analyze(sine.astype(np.float32))
    assert not any(r["silent"] for r in loud)
    # A full-scale sine at amplitude 0.5 has a mean square of 1/8: -9.03 dBFS.
    assert loud[-1]["level_db"] == pytest.approx(10 * math.log10(0.125), abs=0.05)


@pytest.mark.parametrize("kind", ["nan", "inf", "clipped", "dc"])
def test_hostile_input_never_yields_nan(tiny_default: Checkpoint, kind: str) -> None:
    x = make_signal(2.0, 22050)
    if kind == "nan":
        x[::97] = np.nan
    elif kind == "inf":
        x[1000:1100] = np.inf
        x[5000] = -np.inf
    elif kind == "clipped":
        x = np.clip(x * 100, -1, 1)
    else:
        x = np.ones_like(x)
    engine = Engine(tiny_default)
    records = stream_records(engine, x, [512])
    text = json.dumps(records, allow_nan=False)  # raises on NaN/Inf anywhere
    assert records and "NaN" not in text


def test_record_schema_follows_the_design(tiny_default: Checkpoint) -> None:
    rec = Engine(tiny_default).analyze(make_signal(1.0, 22050))[0]
    assert list(rec)[:7] == ["seq", "t", "stream", "wall", "latency_ms", "level_db", "silent"]
    assert set(rec["emotion"]) == {"valence", "arousal", "quadrant", "label"}
    assert -1 <= rec["emotion"]["valence"] <= 1 and -1 <= rec["emotion"]["arousal"] <= 1
    assert rec["emotion"]["quadrant"] == quadrant(rec["emotion"]["valence"],
                                                  rec["emotion"]["arousal"])
    inst = rec["instrument"]
    assert len(inst["probs"]) == 8 and inst["probs"][inst["top"]] == inst["confidence"]
    assert set(rec["timbre"]) == {"brightness", "warmth", "roughness", "sharpness", "boominess",
                                  "depth", "hardness"}
    assert all(0 <= v <= 1 for v in rec["timbre"].values())


def test_a_head_the_checkpoint_lacks_is_absent(tmp_path) -> None:
    ck = load_checkpoint(make_checkpoint(tmp_path / "e.safetensors", heads=[EMOTION_HEAD]))
    rec = Engine(ck).analyze(make_signal(1.0, 22050))[0]
    assert "emotion" in rec and "instrument" not in rec and "timbre" not in rec


def test_quadrants_follow_thayer() -> None:
    assert [quadrant(0.5, 0.5), quadrant(-0.5, 0.5), quadrant(-0.5, -0.5),
            quadrant(0.5, -0.5)] == [1, 2, 3, 4]


def test_streams_get_their_own_channels_and_state(tiny_default: Checkpoint) -> None:
    a, b = make_signal(2.0, 22050, seed=1), make_signal(2.0, 22050, seed=2)
    stereo = np.stack([a, b], axis=1)
    streams = [StreamSpec("left", (0,)), StreamSpec("right", (1,))]
    both = Engine(tiny_default, streams=streams)
    streamed = stream_records(both, stereo, [300, 2048])
    offline = both.analyze(stereo)
    assert_records_equal(streamed, offline)
    left = [r for r in offline if r["stream"] == "left"]
    right = [r for r in offline if r["stream"] == "right"]
    # Each stream equals a single-stream engine on its own channel: batching changes nothing.
    assert_records_equal([{**r, "stream": "main"} for r in left],
                         Engine(tiny_default).analyze(a))
    assert_records_equal([{**r, "stream": "main"} for r in right],
                         Engine(tiny_default).analyze(b))


def test_fast_lane_comes_at_frame_rate(tiny_default: Checkpoint) -> None:
    engine = Engine(tiny_default, fast_lane=True)
    steps = [engine.process(make_signal(1.0, 22050)[i:i + 441]) for i in range(0, 22050, 441)]
    fast = [f for s in steps for f in s.fast]
    assert len(fast) == 50 and all(f.values.shape == (1, 4) for f in fast)
    assert fast[-1].t[-1] == pytest.approx(1.0)
    assert Engine(tiny_default).process(make_signal(1.0, 22050)).fast == []


def test_golden_records(data_dir) -> None:
    """A fixed tiny checkpoint on a fixed signal gives the recorded estimates."""
    import soundfile as sf

    x, _ = sf.read(data_dir / "signal.wav", dtype="float32")
    records = Engine(load_checkpoint(data_dir / "tiny-default.safetensors")).analyze(x)
    golden = [json.loads(line) for line in (data_dir / "golden_records.jsonl").open()]
    assert_records_equal(records, golden)


def _blocks(x: np.ndarray, size: int):
    return (x[i:i + size] for i in range(0, x.shape[0], size))


def _exact(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("wall", "latency_ms")} for r in records]


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
@pytest.mark.parametrize("size", [1, 7, 441, 1000, 11025, 44101],
                         ids=["1", "7", "441", "1000", "hop", "44101"])
def test_blockwise_analysis_equals_whole_signal_analysis(tiny_default: Checkpoint, rate: int,
                                                         size: int) -> None:
    """``analyze_blocks`` fed a file block by block gives exactly ``analyze``'s records of the
    whole signal (bit for bit, not just within tolerance), through the resampler too."""
    x = make_signal(0.6 if size == 1 else 3.3, rate)
    engine = Engine(tiny_default, input_rate_hz=rate)
    whole = engine.analyze(x)
    blockwise = [r for chunk in engine.analyze_blocks(_blocks(x, size)) for r in chunk]
    assert len(blockwise) == len(whole) == int(x.size / rate / 0.5)
    assert _exact(blockwise) == _exact(whole)
    # And both equal the live engine's records (within the cornerstone's tolerance).
    assert_records_equal(stream_records(engine, x, [size]) if size > 1 else blockwise, whole)


def test_blockwise_analysis_spans_frontend_runs_and_model_chunks(
        tiny_default: Checkpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """170 s: three frontend runs (4096 frames) and two model chunks (256 hops), with blocks
    that straddle their boundaries; the input is read only a few runs ahead of the model."""
    x = make_signal(170.0, 44100)
    engine = Engine(tiny_default, input_rate_hz=44100)
    whole = engine.analyze(x)
    assert len(whole) == 340
    blockwise = [r for c in engine.analyze_blocks(_blocks(x, 65537)) for r in c]
    assert _exact(blockwise) == _exact(whole)
    # Runs of 64 frames (1.3 s): the first chunk of hops (128 s) comes long before the input
    # ends, i.e. the blocks are not all read first.
    monkeypatch.setattr(frontend, "OFFLINE_RUN_FRAMES", 64)
    consumed: list[int] = []

    def feed():
        for i in range(0, x.shape[0], 65537):
            consumed.append(i)
            yield x[i:i + 65537]

    chunks = [(len(c), len(consumed), c) for c in engine.analyze_blocks(feed())]
    assert [n for n, _, _ in chunks] == [256, 84]
    assert chunks[0][1] < 0.85 * len(range(0, x.shape[0], 65537))
    assert_records_equal([r for _, _, c in chunks for r in c], whole)
    # Stereo, two streams: the same records as the whole signal, within the tolerance.
    stereo = np.stack([x[:441000], x[441000:882000]], axis=1)
    two = Engine(tiny_default, input_rate_hz=44100,
                 streams=[StreamSpec("a", (0,)), StreamSpec("b", (1,))])
    assert_records_equal([r for c in two.analyze_blocks(_blocks(stereo, 3001)) for r in c],
                         two.analyze(stereo))


def test_a_failing_input_stops_the_analysis_with_its_error(tiny_default: Checkpoint) -> None:
    """An exception while reading (the frontend's thread) is raised to the caller, and the
    engine is left reset: the next analysis is as from a fresh engine."""
    x = make_signal(3.0, 22050)
    engine = Engine(tiny_default)

    def feed():
        yield x[:30000]
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(engine.analyze_blocks(feed()))
    assert _exact(engine.analyze(x)) == _exact(Engine(tiny_default).analyze(x))
