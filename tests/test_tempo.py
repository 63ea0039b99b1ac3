"""The tempo and beat tracker: streaming equals offline, the state is real, and it finds the
tempo and the beats of click tracks; the engine's beats and tempo sections."""

from __future__ import annotations

import numpy as np
import pytest

from streamtag.checkpoint import Checkpoint
from streamtag.config import TempoConfig, config_from_dict
from streamtag.engine import Engine
from streamtag.errors import ConfigError
from streamtag.frontend import DEFAULT_FRONTEND, MelFrontend
from streamtag.publish import wire
from streamtag.publish.osc import encode_beat, encode_record
from streamtag.tempo import (
    BLOCK_FRAMES,
    FRAME_BY_FRAME,
    ONSET_DELAY_FRAMES,
    ONSET_DELAY_FRAMES_FAST,
    BeatTracker,
    TempoFrames,
    TempoParams,
)


def click_track(bpm: float, seconds: float, rate: int, start_s: float = 0.237,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clicks (10 ms decaying noise bursts) [n] float32 and their times [s]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    x = np.zeros(n, np.float32)
    length = int(0.01 * rate)
    burst = (rng.standard_normal(length) * np.exp(-np.arange(length) / (0.002 * rate)) * 0.5)
    times = np.arange(start_s, seconds - 0.05, 60.0 / bpm)
    for t in times:
        i = round(t * rate)
        x[i:i + length] += burst[: n - i].astype(np.float32)
    return x, times


def onsets_of(x: np.ndarray, rate: int = 22050) -> np.ndarray:
    """[N, 2]: each frame's onset strength and loudness [dB] (the fast lane's)."""
    return MelFrontend(DEFAULT_FRONTEND, rate).process_offline(x).fast[:, [3, 0]]


def spectra_of(x: np.ndarray, rate: int = 22050) -> tuple[np.ndarray, np.ndarray]:
    """[N, 2] onset strength and loudness, and [N, n_freqs] power spectra, streamed as the
    engine's frontend gives them (rows deferred)."""
    f = MelFrontend(DEFAULT_FRONTEND, rate, defer_rows=True).process(x)
    assert f.power is not None
    return f.fast[:, [3, 0]], f.power


@pytest.fixture(scope="module")
def groove_onsets() -> np.ndarray:
    """Onset strengths and loudness of 12 s of clicks at 128 BPM with a quieter off-beat, and
    noise."""
    x, _ = click_track(128.0, 12.0, 22050)
    off, _ = click_track(128.0, 12.0, 22050, start_s=0.237 + 60 / 128 / 2, seed=1)
    x = x + 0.3 * off + np.random.default_rng(2).normal(0, 0.003, x.shape).astype(np.float32)
    return onsets_of(x)


def assert_same(a: TempoFrames, b: TempoFrames) -> None:
    np.testing.assert_array_equal(a.bpm, b.bpm)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    np.testing.assert_array_equal(a.beats, b.beats)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.frames, b.frames)


def concat(parts: list[TempoFrames]) -> TempoFrames:
    return TempoFrames(*(np.concatenate([getattr(p, k) for p in parts])
                         for k in ("bpm", "confidence", "beats", "counts", "frames")))


# -- the four-part equivalence test (madmom's) ------------------------------------------------
@pytest.mark.parametrize("block", [1, 7, 25, 10_000])
def test_streaming_in_any_blocks_equals_offline_exactly(groove_onsets: np.ndarray,
                                                        block: int) -> None:
    tracker = BeatTracker()
    offline = tracker.process_offline(*groove_onsets.T)
    assert len(offline.beats) > 10
    parts = [tracker.process(*groove_onsets[i:i + block].T)
             for i in range(0, len(groove_onsets), block)]
    assert_same(concat(parts), offline)


@pytest.mark.parametrize("block", [1, 7, 25, 10_000])
def test_streaming_with_spectra_in_any_blocks_equals_offline_exactly(block: int) -> None:
    x, _ = click_track(128.0, 12.0, 22050)
    x = x + np.random.default_rng(2).normal(0, 0.003, x.shape).astype(np.float32)
    fast, power = spectra_of(x)
    tracker = BeatTracker()
    offline = tracker.process_offline(*fast.T, power)
    assert len(offline.beats) > 10
    parts = [tracker.process(*fast[i:i + block].T, power[i:i + block])
             for i in range(0, len(fast), block)]
    assert_same(concat(parts), offline)


@pytest.mark.parametrize("spectra", [True, False])
def test_frame_by_frame_and_block_by_block_hand_over_exactly(spectra: bool) -> None:
    """Calls of fewer than FRAME_BY_FRAME frames go frame by frame over plain floats, longer
    ones stage by stage over the block (in pieces of BLOCK_FRAMES): the same numbers, to the
    bit, whichever path each call takes and through a pause (the autocorrelation's decay owed
    across calls) and bad values."""
    x, _ = click_track(128.0, 30.0, 22050)
    off, _ = click_track(128.0, 30.0, 22050, start_s=0.237 + 60 / 128 / 2, seed=1)
    x = x + 0.3 * off
    x[9 * 22050:13 * 22050] = 0.0
    x = x + np.random.default_rng(3).normal(0, 0.002, x.shape).astype(np.float32)
    fast, power = spectra_of(x)
    fast = fast.astype(np.float64)
    fast[::97] = np.nan
    power = power.copy()
    power[5::89] = np.nan
    spectra_or_none = power if spectra else None
    sizes = [1, FRAME_BY_FRAME - 1, FRAME_BY_FRAME, 3, BLOCK_FRAMES + 476, 40, 2, 200]
    tracker = BeatTracker()
    offline = tracker.process_offline(*fast.T, spectra_or_none)
    assert len(offline.beats) > 20
    parts, i, k = [], 0, 0
    while i < len(fast):
        j = i + sizes[k % len(sizes)]
        parts.append(tracker.process(*fast[i:j].T, None if spectra_or_none is None
                                     else spectra_or_none[i:j]))
        i, k = j, k + 1
    assert_same(concat(parts), offline)


def test_the_engine_frontends_offline_runs_carry_the_streamed_spectra() -> None:
    x, _ = click_track(128.0, 6.0, 44100)
    fe = MelFrontend(DEFAULT_FRONTEND, 44100, defer_rows=True)
    streamed = np.concatenate([fe.process(x[i:i + 882]).power for i in range(0, len(x), 882)])
    runs = list(fe.process_offline_blocks(iter([x[:, None]])))
    offline = np.concatenate([r[0].power for r in runs])
    np.testing.assert_array_equal(offline, streamed)


def test_a_second_offline_run_equals_the_first(groove_onsets: np.ndarray) -> None:
    tracker = BeatTracker()
    first = tracker.process_offline(*groove_onsets.T)
    tracker.process(*groove_onsets[:100].T)  # leftover state must not leak into the next run
    assert_same(tracker.process_offline(*groove_onsets.T), first)


def test_without_reset_the_state_carries_over(groove_onsets: np.ndarray) -> None:
    tracker = BeatTracker()
    fresh = tracker.process_offline(*groove_onsets.T)
    tracker.process(*groove_onsets.T)
    carried = tracker.process(*groove_onsets.T)  # no reset: it already knows the tempo
    assert not np.array_equal(carried.bpm, fresh.bpm)
    assert carried.counts[0] == fresh.counts[-1] + 1
    tracker.reset()
    assert_same(tracker.process(*groove_onsets.T), fresh)


# -- what it finds ------------------------------------------------------------------------------
@pytest.mark.parametrize("bpm", [60.0, 97.0, 137.0, 180.0])
def test_click_track_tempo_within_2_percent_after_6_s(bpm: float) -> None:
    x, times = click_track(bpm, 15.0, 22050)
    out = BeatTracker().process_offline(*onsets_of(x).T)
    frame_s = DEFAULT_FRONTEND.hop_length / DEFAULT_FRONTEND.sample_rate_hz
    after = out.bpm[int(6.0 / frame_s):]
    assert np.all(np.abs(after / bpm - 1.0) <= 0.02), (after.min(), after.max())
    assert out.confidence[-1] > 0.5
    # Every click from 6 s on has a beat within 30 ms (position → time as the engine does).
    beats = (out.beats + 1.0 - ONSET_DELAY_FRAMES_FAST) * frame_s
    late = times[times >= 6.0]
    err = np.array([np.min(np.abs(beats - t)) for t in late])
    assert np.all(err <= 0.030), err.max()
    assert np.all(np.diff(out.counts) == 1) and out.counts[0] == 1


def shuffle_after_cuts(bpm: float, seconds: float, rate: int = 22050
                       ) -> tuple[np.ndarray, np.ndarray]:
    """A drum-sample-like beat: each beat a loud low thump with noise, cut to digital silence
    after 80 ms (as a note-off cuts a sample), and a quiet hi-hat-like pickup out of that
    silence a fifth of a beat before the next beat. Returns audio [n] and the beats [s]."""
    rng = np.random.default_rng(5)
    n = int(seconds * rate)
    x = np.zeros(n, np.float32)
    period = 60.0 / bpm
    hit_len, tick_len = int(0.08 * rate), int(0.05 * rate)
    th = np.arange(hit_len) / rate
    hit = (0.8 * np.sin(2 * np.pi * 70 * th) + 0.3 * rng.standard_normal(hit_len)) * np.exp(
        -th / 0.05)
    tt = np.arange(tick_len) / rate
    tick = 0.08 * rng.standard_normal(tick_len) * np.exp(-tt / 0.03)
    beats = np.arange(0.31, seconds - 0.1, period)
    for b in beats:
        i = round(b * rate)
        x[i:i + hit_len] = hit[: n - i]
        j = round((b + 0.8 * period) * rate)
        x[j:j + tick_len] += tick[: max(0, n - j)]
    return x, beats


def test_a_pickup_out_of_digital_silence_does_not_take_the_beat() -> None:
    # Cut samples fall to digital silence; the next sound's rise from there is ~100 dB, a
    # hit into a ringing one only ~20 dB: without the band floor the quiet pickup won.
    rate = 22050
    x, times = shuffle_after_cuts(110.0, 15.0, rate)
    fast, power = spectra_of(x, rate)
    out = BeatTracker().process_offline(*fast.T, power)
    frame_s = DEFAULT_FRONTEND.hop_length / DEFAULT_FRONTEND.sample_rate_hz
    beats = (out.beats + 1.0 - ONSET_DELAY_FRAMES) * frame_s
    late = beats[beats >= 6.0]
    assert len(late) >= 0.9 * np.sum(times >= 6.0)
    err = np.array([np.min(np.abs(times - t)) for t in late])
    assert np.all(err <= 0.030), err.max()


def test_bad_spectra_are_ignored_and_wrong_shapes_refused() -> None:
    x, _ = click_track(120.0, 8.0, 22050)
    fast, power = spectra_of(x)
    power = power.copy()
    power[::37] = np.nan
    power[5::41, :10] = np.inf
    out = BeatTracker().process_offline(*fast.T, power)
    assert np.all(np.isfinite(out.bpm)) and np.all(np.isfinite(out.confidence))
    assert abs(out.bpm[-1] / 120.0 - 1.0) <= 0.02
    with pytest.raises(ValueError, match="power"):
        BeatTracker().process(fast[:5, 0], fast[:5, 1], power[:4])


def test_silence_gives_no_tempo_and_no_beats() -> None:
    out = BeatTracker().process_offline(np.zeros(1000))
    assert not len(out.beats)
    assert np.all(out.bpm == 0.0) and np.all(out.confidence == 0.0)


def test_bad_onset_values_are_ignored_not_propagated() -> None:
    x, _ = click_track(120.0, 8.0, 22050)
    fast = onsets_of(x).astype(np.float64)
    fast[::37] = np.nan
    fast[5::41] = np.inf
    fast[9::53] = -3.0
    fast[11::61, 1] = -np.inf
    out = BeatTracker().process_offline(*fast.T)
    assert np.all(np.isfinite(out.bpm)) and np.all(np.isfinite(out.confidence))
    assert abs(out.bpm[-1] / 120.0 - 1.0) <= 0.02


def test_the_onsets_alone_also_find_the_tempo() -> None:
    x, _ = click_track(137.0, 10.0, 22050)
    out = BeatTracker().process_offline(onsets_of(x)[:, 0])
    assert abs(out.bpm[-1] / 137.0 - 1.0) <= 0.02
    with pytest.raises(ValueError, match="one per onset"):
        BeatTracker().process(np.zeros(5), np.zeros(4))


def test_parameters_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="min_bpm"):
        TempoParams(min_bpm=120.0, max_bpm=100.0)
    with pytest.raises(ValueError, match="4 onset frames"):
        TempoParams(frame_rate_hz=10.0, max_bpm=180.0)
    with pytest.raises(ConfigError, match=r"tempo\.max_bpm"):
        config_from_dict({"tempo": {"min_bpm": 100.0, "max_bpm": 150.0}})
    with pytest.raises(ConfigError, match=r"tempo\.min_bpm"):
        config_from_dict({"tempo": {"min_bpm": 5.0}})


# -- in the engine ------------------------------------------------------------------------------
def test_engine_beats_and_tempo_do_not_depend_on_block_sizes(tiny_default: Checkpoint) -> None:
    rate = 44100  # through the resampler: its declared delay is in every beat time
    x, times = click_track(110.0, 10.0, rate)
    engine = Engine(tiny_default, input_rate_hz=rate)
    runs = []
    last_seen: list[float | None] = []  # block 441: the last beat returned by each record's step
    for block in (441, 1013, len(x)):
        beats, records = [], []
        for i in range(0, len(x), block):
            step = engine.process(x[i:i + block])
            beats += step.beats
            records += step.records
            if block == 441:
                last_seen += [beats[-1].t if beats else None] * len(step.records)
        runs.append((beats, records))
        engine.reset()
    assert runs[0][0] == runs[1][0] == runs[2][0]
    assert [r["tempo"] for r in runs[0][1]] == [r["tempo"] for r in runs[2][1]]
    offline = engine.analyze(x)
    assert [r["tempo"] for r in offline] == [r["tempo"] for r in runs[0][1]]
    beats, records = runs[0]
    assert [b.count for b in beats] == list(range(1, len(beats) + 1))
    late = [b.t for b in beats if b.t >= 6.0]
    assert late and all(np.min(np.abs(times - t)) <= 0.030 for t in late)
    # Each record's last beat is the last one reported by the end of its hop (a 10 ms block
    # completes at most one frame, so that hop's beats came with it).
    assert [r["tempo"]["last_beat_t"] for r in records] == last_seen
    assert abs(records[-1]["tempo"]["bpm"] / 110.0 - 1.0) <= 0.02


def test_engine_without_tempo_has_no_tempo_section_and_no_beats(
        tiny_default: Checkpoint) -> None:
    x, _ = click_track(120.0, 4.0, 22050)
    engine = Engine(tiny_default, tempo=TempoConfig(enabled=False))
    assert not engine.tempo
    step = engine.process(x)
    assert step.records and not step.beats
    assert all(wire.KEY_TEMPO not in r for r in step.records)


# -- on the wire ---------------------------------------------------------------------------------
def test_tempo_goes_in_the_hop_bundle_and_a_beat_in_its_own() -> None:
    rec = {"seq": 0, "t": 0.5, "stream": "main", "wall": 1.0, "level_db": -20.0,
           "silent": False, "tempo": {"bpm": 120.5, "confidence": 0.75, "last_beat_t": 0.4}}
    packet = encode_record(rec, "/streamtag", None)
    assert ("/streamtag/tempo", "ff") in packet.messages
    assert b"/streamtag/tempo\x00\x00\x00\x00,ff\x00" + np.array(
        [120.5, 0.75], ">f4").tobytes() in packet.dgram
    beat = encode_beat("/streamtag", "left", 1.5, 7)
    assert beat.messages == (("/streamtag/left/beat", "i"),)
    assert beat.dgram.startswith(b"#bundle\x00")
    assert beat.dgram.endswith(b"/streamtag/left/beat\x00\x00\x00\x00,i\x00\x00\x00\x00\x00\x07")
