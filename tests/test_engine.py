"""The cornerstone: hop-by-hop streaming records equal offline (batched) records.

Tolerance (see records.py): model outputs within 1e-4 absolute, level_db within 0.01 dB,
everything else exact; measurement fields (``wall``, ``latency_ms``) excluded.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from support import assert_records_equal

from streamtag import frontend
from streamtag.checkpoint import Checkpoint, load_checkpoint
from streamtag.engine import Engine, StreamSpec, run_hops
from streamtag.model import EMOTION_HEAD
from streamtag.record import quadrant
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


def without_tempo(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "tempo"}


def shifted(records: list[dict], hops: int) -> list[dict]:
    """Records from hop ``hops`` on, renumbered as if the stream had started there."""
    hop_s = records[1]["t"] - records[0]["t"]
    return [{**r, "seq": r["seq"] - hops, "t": round(r["t"] - hops * hop_s, 6)}
            for r in records[hops:]]


@pytest.mark.parametrize("hops", [1, 3, 8])
def test_music_after_silence_starts_from_the_fresh_state(tiny_default: Checkpoint,
                                                         hops: int) -> None:
    # Whole hops of digital silence: the windows after it hold what analyze pads with, so with
    # the state held fresh while silent the music's records are exactly a fresh start's.
    x = make_signal(3.0, 22050)
    engine = Engine(tiny_default)
    hop = int(engine.hop_s * 22050)
    live = stream_records(engine, np.concatenate([np.zeros(hops * hop, np.float32), x]), [700])
    assert all(r["silent"] for r in live[:hops]) and not live[hops]["silent"]
    # The silence rule is the model's (LSTM state, pitch-class memory); the tempo tracker keeps
    # its own frame-rate memory across a pause and stamps beats in stream time, so its section
    # is compared in the tempo tests, not here.
    assert_records_equal([without_tempo(r) for r in shifted(live, hops)],
                         [without_tempo(r) for r in engine.analyze(x)])


def test_a_pause_inside_a_stream_restarts_the_state_offline_as_live(
    tiny_default: Checkpoint,
) -> None:
    # Two streams, music - pause - music on the left, music throughout on the right: analyze
    # applies the rule as process does, stream by stream, whatever the blocks.
    x = make_signal(4.0, 22050)
    engine = Engine(tiny_default, streams=[StreamSpec("l", (0,)), StreamSpec("r", (1,))])
    hop = round(engine.hop_s * 22050)
    left = x.copy()
    left[2 * hop:4 * hop] = 0.0
    stereo = np.stack([left, x[::-1].copy()], axis=1)
    offline = engine.analyze(stereo)
    assert [r["silent"] for r in offline if r["stream"] == "l"][:5] == [False, False, True,
                                                                        True, False]
    assert_records_equal(stream_records(engine, stereo, [333, 4096]), offline)
    engine.reset()
    assert_records_equal(stream_records(engine, stereo, [5000, 1, 17]), offline)
    # After the pause the left stream is a fresh start on what follows it: its LSTM state and
    # its pitch-class memory restarted, nothing of the music before the pause is left.
    lefts = [{**r, "stream": "main"} for r in offline if r["stream"] == "l"]
    alone = Engine(tiny_default).analyze(np.concatenate([np.zeros(4 * hop, np.float32),
                                                        left[4 * hop:]]))
    assert_records_equal([without_tempo(r) for r in lefts[4:]],
                         [without_tempo(r) for r in alone[4:]])


def test_run_hops_steps_silent_hops_from_the_fresh_state(tiny_default: Checkpoint) -> None:
    model = tiny_default.model
    feats = torch.randn(2, 9, model.encoded_features, generator=torch.Generator().manual_seed(0))
    silent = np.zeros((2, 9), bool)
    silent[0, 3:5] = True  # stream 0 pauses for two hops; stream 1 never does
    with torch.inference_mode():
        out, state = run_hops(model, feats, None, silent)
        whole, _ = model.sequence_features(feats[1:], None)
        before, _ = model.sequence_features(feats[:1, :3], None)
        after, end = model.sequence_features(feats[:1, 5:], None)  # a fresh start after it
        pause, _ = model.step_features(feats[0, 3:5], None)  # each silent hop from fresh
    for name, v in out.items():
        assert torch.allclose(v[1], whole[name][0], atol=1e-5)
        assert torch.allclose(v[0, :3], before[name][0], atol=1e-5)
        assert torch.allclose(v[0, 3:5], pause[name], atol=1e-5)
        assert torch.allclose(v[0, 5:], after[name][0], atol=1e-5)
    assert state is not None and torch.allclose(state.h[:, 0], end.h[:, 0], atol=1e-5)
    # Every stream silent on the last hop: the state left behind is the fresh one.
    silent[:, -1] = True
    assert run_hops(model, feats, None, silent)[1] is None


def test_sound_that_is_not_silent_carries_the_state(tiny_default: Checkpoint) -> None:
    # Only silence restarts the state: after a second of noise above the gate, the music's
    # records still differ from a fresh start (the LSTM state is real).
    x = make_signal(2.0, 22050)
    engine = Engine(tiny_default, silence_db=-60)
    noise = (0.01 * np.random.default_rng(0).standard_normal(22050)).astype(np.float32)
    live = engine.analyze(np.concatenate([noise, x]))
    assert not any(r["silent"] for r in live)
    fresh = engine.analyze(x)
    assert abs(live[2]["emotion"]["valence"] - fresh[0]["emotion"]["valence"]) > 1e-5


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
    # One core (`analyze --jobs 1`): the hop stage in the model's thread, the same records.
    one_thread = [r for c in engine.analyze_blocks(_blocks(x, 65537), overlap=False) for r in c]
    assert _exact(one_thread) == _exact(whole)
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


def _with_pauses(seconds: float, rate: int) -> np.ndarray:
    """Music with a pause of several hops, one of about a hop, and a stretch below the gate."""
    x = make_signal(seconds, rate, seed=3)
    x[int(2.3 * rate):int(4.9 * rate)] = 0.0
    x[int(6.1 * rate):int(6.9 * rate)] = 0.0
    x[int(8.0 * rate):int(9.2 * rate)] *= 1e-5
    return x


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
@pytest.mark.parametrize("run", [37, 4096], ids=["run37", "run4096"])
@pytest.mark.parametrize("size", [1000, 44101], ids=["1000", "44101"])
def test_blockwise_analysis_with_pauses_and_tempo(tiny_default: Checkpoint,
                                                  monkeypatch: pytest.MonkeyPatch, rate: int,
                                                  run: int, size: int) -> None:
    """Silent hops in the middle (the fresh LSTM state, pitch-class rows restarted) and tempo
    sections, with frontend runs that end inside hops (37 frames) or hold many (4096): block by
    block == the whole signal bit for bit, == the default runs bit for bit (the pitch-class
    restart carried from run to run), and == the live engine."""
    x = _with_pauses(12.0, rate)
    engine = Engine(tiny_default, input_rate_hz=rate, silence_db=-60)
    default_runs = engine.analyze(x)
    monkeypatch.setattr(frontend, "OFFLINE_RUN_FRAMES", run)
    whole = engine.analyze(x)
    blockwise = [r for c in engine.analyze_blocks(_blocks(x, size)) for r in c]
    assert _exact(blockwise) == _exact(whole) == _exact(default_runs)
    silent = [r["silent"] for r in whole]
    assert sum(silent) >= 5 and not silent[0] and not silent[-1]
    assert True in silent[4:10] and False in silent[10:]  # music after the pause
    assert all("tempo" in r for r in whole)
    assert any(r["tempo"]["last_beat_t"] is not None for r in whole[10:])
    assert_records_equal(stream_records(engine, x, [size]), whole)


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
