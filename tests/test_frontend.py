"""The incremental frontend yields exactly the offline frontend's frames, whatever the blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamtag.frontend import (
    DEFAULT_FRONTEND,
    FRONTEND_PRESETS,
    SEED_FRONTEND,
    Frames,
    FrontendConfig,
    MelFrontend,
    downmix,
    leaky_average,
    restart_pitch_rows,
    spectral_peak_chroma,
)
from streamtag.testing import make_signal

RTOL = 1e-5
DATA = Path(__file__).parent / "data"


def stream(fe: MelFrontend, x: np.ndarray, sizes: list[int] | int) -> np.ndarray:
    """Feed x in blocks (a fixed size or a cycling list); return the stacked mel frames."""
    sizes = [sizes] if isinstance(sizes, int) else sizes
    out, i, k = [], 0, 0
    while i < x.shape[0]:
        n = sizes[k % len(sizes)]
        out.append(fe.process(x[i:i + n]).features)
        i, k = i + n, k + 1
    return np.concatenate(out)


def assert_frames_close(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    # Relative to each frame's scale: log-mel values near 0 make a pure rtol meaningless.
    scale = np.maximum(np.abs(b).max(axis=1, keepdims=True), 1e-3)
    assert np.max(np.abs(a - b) / scale) <= RTOL


@pytest.mark.parametrize("config", [DEFAULT_FRONTEND, SEED_FRONTEND], ids=["default", "seed"])
@pytest.mark.parametrize("sizes", [1, 7, [3, 1000, 1, 511], 4096, 10**9],
                         ids=["1", "7", "odd-mix", "4096", "whole"])
def test_streaming_equals_offline(config: FrontendConfig, sizes: list[int] | int) -> None:
    seconds = 0.4 if sizes == 1 else 2.0
    rng = np.random.default_rng(0)
    x = (0.2 * rng.standard_normal(int(seconds * config.sample_rate_hz))).astype(np.float32)
    fe = MelFrontend(config)
    offline = fe.process_offline(x)
    streamed = stream(fe, x, sizes)
    assert len(offline) == (x.size // config.hop_length)
    assert_frames_close(streamed, offline.features)


@pytest.mark.parametrize("rate", [44100, 48000, 16000])
def test_streaming_equals_offline_with_resampling(rate: int) -> None:
    x = np.random.default_rng(2).standard_normal(rate).astype(np.float32) * 0.1
    fe = MelFrontend(DEFAULT_FRONTEND, input_rate_hz=rate)
    offline = fe.process_offline(x)
    assert_frames_close(stream(fe, x, [5, 999, 64]), offline.features)
    # One second in → one second of model-rate frames (minus the partial last one).
    assert len(offline) == DEFAULT_FRONTEND.sample_rate_hz * x.size // rate // 441


def test_energy_and_fast_lane_stream_like_offline() -> None:
    x = np.random.default_rng(3).standard_normal(22050).astype(np.float32)
    fe = MelFrontend(DEFAULT_FRONTEND)
    off = fe.process_offline(x)
    parts = [fe.process(x[i:i + 333]) for i in range(0, x.size, 333)]
    np.testing.assert_allclose(np.concatenate([p.energy for p in parts]), off.energy, rtol=1e-9)
    np.testing.assert_allclose(np.concatenate([p.fast for p in parts]), off.fast, rtol=1e-5,
                               atol=1e-5)


def test_rerun_after_reset_equals_first_run_and_no_reset_differs() -> None:
    x = np.random.default_rng(4).standard_normal(11025).astype(np.float32)
    fe = MelFrontend(DEFAULT_FRONTEND)
    first = stream(fe, x, 500)
    fe.reset()
    again = stream(fe, x, 500)
    np.testing.assert_array_equal(first, again)
    continued = stream(fe, x, 500)  # no reset: the tail of the first run is still there
    assert continued.shape[0] >= first.shape[0]
    assert not np.allclose(continued[: first.shape[0]], first)


def test_frames_are_causal() -> None:
    """Appending future audio never changes frames already produced."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(8000)
    fe = MelFrontend(DEFAULT_FRONTEND)
    short = fe.process_offline(x)
    longer = fe.process_offline(np.concatenate([x, rng.standard_normal(5000)]))
    np.testing.assert_array_equal(longer.features[: len(short)], short.features)


#: What torchaudio 2.11 computes (scripts/make_torchaudio_golden.py): the runtime has no torchaudio.
TORCHAUDIO = np.load(DATA / "golden_torchaudio.npz")


def test_seed_preset_matches_torchaudio_melspectrogram() -> None:
    """Seed 000's transform (torchaudio, uncentred) over the same causal framing."""
    cfg = SEED_FRONTEND
    x = TORCHAUDIO["seed_signal"]
    ours = MelFrontend(cfg).process_offline(x).features
    spec = TORCHAUDIO["seed_mel"]
    assert ours.shape == spec.shape
    assert_frames_close(ours.astype(np.float64), spec.astype(np.float64))
    # 196 frames of 112 samples make the seed's 0.5 s chunk.
    assert 196 * cfg.hop_length / cfg.sample_rate_hz == pytest.approx(0.5, abs=0.003)


@pytest.mark.parametrize("name", ["seed", "default"])
def test_mel_filterbank_is_torchaudios_bit_for_bit(name: str) -> None:
    cfg = FRONTEND_PRESETS[name]
    ours = MelFrontend(cfg)._fbank.numpy()
    np.testing.assert_array_equal(ours, TORCHAUDIO[f"{name}_fbank"])


def test_default_preset_leaves_no_mel_band_empty_unlike_the_seed() -> None:
    def empty_bands(cfg: FrontendConfig) -> int:
        return int((MelFrontend(cfg)._fbank.sum(dim=0) == 0).sum())

    assert empty_bands(DEFAULT_FRONTEND) == 0
    assert empty_bands(SEED_FRONTEND) > 0  # why `default` differs from the seed


def test_downmix_and_channel_selection() -> None:
    block = np.stack([np.ones(4), -np.ones(4), 3 * np.ones(4)], axis=1)
    np.testing.assert_array_equal(downmix(block), np.ones(4))
    np.testing.assert_array_equal(downmix(block, [2]), 3 * np.ones(4))
    np.testing.assert_array_equal(downmix(block, [0, 1]), np.zeros(4))
    with pytest.raises(ValueError, match=r"channels \[5\] out of range"):
        downmix(block, [5])


def test_non_finite_samples_cannot_poison_the_frames() -> None:
    x = np.random.default_rng(7).standard_normal(4000)
    x[100], x[2000], x[3000] = np.nan, np.inf, -np.inf
    frames = MelFrontend(DEFAULT_FRONTEND).process_offline(x)
    assert np.isfinite(frames.features).all() and np.isfinite(frames.fast).all()


def test_golden_frames(data_dir) -> None:
    import soundfile as sf

    x, sr = sf.read(data_dir / "signal.wav", dtype="float32")
    assert sr == DEFAULT_FRONTEND.sample_rate_hz
    assert_frames_close(MelFrontend(DEFAULT_FRONTEND).process_offline(x).features,
                        np.load(data_dir / "golden_mel.npy"))


@pytest.mark.parametrize("kwargs,match", [
    ({"win_length": 2048}, "win_length"),
    ({"hop_length": 0}, "hop_length"),
    ({"f_max_hz": 20000.0}, "Nyquist"),
    ({"power": 3.0}, "power"),
])
def test_bad_frontend_parameters_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FrontendConfig(**kwargs)


@pytest.mark.parametrize("rate", [22050, 48000])
def test_channels_are_independent_signals_framed_together(rate: int) -> None:
    """One multi-channel frontend equals one mono frontend per channel, streamed or offline."""
    x = np.random.default_rng(8).standard_normal((rate, 3)).astype(np.float32) * 0.1
    multi = MelFrontend(DEFAULT_FRONTEND, input_rate_hz=rate, channels=3)
    streamed = [multi.process_channels(x[i:i + 777]) for i in range(0, rate, 777)]
    offline = multi.process_offline_channels(x)
    for c in range(3):
        mono = MelFrontend(DEFAULT_FRONTEND, input_rate_hz=rate).process_offline(x[:, c])
        assert_frames_close(np.concatenate([s[c].features for s in streamed]), mono.features)
        assert_frames_close(offline[c].features, mono.features)
        np.testing.assert_allclose(offline[c].fast, mono.fast, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"expected a block \[n, 3\]"):
        multi.process_channels(x[:, :2])


@pytest.mark.parametrize("rate", [22050, 48000, 44100])
def test_each_frame_comes_out_at_the_sample_that_completes_it(rate: int) -> None:
    """Held-back input costs no latency: fed one sample at a time, frame k appears exactly
    when the input sample that completes it arrives."""
    cfg = DEFAULT_FRONTEND
    fe = MelFrontend(cfg, input_rate_hz=rate)
    x = np.random.default_rng(9).standard_normal(int(0.2 * rate)).astype(np.float32)
    keep = cfg.n_fft - cfg.hop_length
    up, down = (fe._resampler.up, fe._resampler.down) if fe._resampler else (1, 1)
    total = 0
    for n_in in range(1, x.size + 1):
        total += len(fe.process(x[n_in - 1:n_in]))
        model_samples = -(-n_in * up // down)  # outputs the resampler can give by now
        expected = max(0, (model_samples + keep - cfg.n_fft) // cfg.hop_length + 1)
        assert total == expected, n_in


def _harmonic_tones(midi: list[int], seconds: float = 1.0, sr: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * h * t) / h
            for m in midi for h in (1, 2, 3, 4))
    return (0.1 * x).astype(np.float32)


def test_pitch_class_rows_remember_with_their_time_constant() -> None:
    """From silence, a steady note's share rises as 1 − exp(−t/τ) towards its frame share."""
    x = _harmonic_tones([78], seconds=5.0)
    now = MelFrontend(FrontendConfig(n_chroma=12)).process_offline(x).features[:, 64:]
    mem = MelFrontend(DEFAULT_FRONTEND).process_offline(x).features[:, 64:]
    tau_s = DEFAULT_FRONTEND.chroma_memory_s
    k = int(tau_s * DEFAULT_FRONTEND.frame_rate_hz) - 1  # frame k ends at t = τ
    frame_share = np.exp(now[k, 6]) / 12.0
    expected = (1 - np.exp(-1.0)) * frame_share + np.exp(-1.0) / 12.0
    assert np.exp(mem[k, 6]) / 12.0 == pytest.approx(expected, rel=0.03)
    assert mem[k // 4, 6] < mem[k // 2, 6] < mem[k, 6] < now[k, 6]


@pytest.mark.parametrize("midi,classes", [
    ([60, 64, 67], {0, 4, 7}),    # C major triad, C4
    ([69, 72, 76], {9, 0, 4}),    # A minor triad, A4
    ([66, 70, 73], {6, 10, 1}),   # F# major triad
    ([78], {6}),                  # F#5 alone
])
def test_pitch_class_rows_name_the_notes_played(midi: list[int], classes: set[int]) -> None:
    rows = MelFrontend(DEFAULT_FRONTEND).process_offline(_harmonic_tones(midi)).features[5:, 64:]
    profile = rows.mean(axis=0)
    top = set(np.argsort(-profile)[:len(classes)].tolist())
    assert top == classes, np.round(profile, 2)


def test_pitch_class_rows_ignore_loudness_and_are_zero_in_silence() -> None:
    x = _harmonic_tones([60, 64, 67])
    fe = MelFrontend(DEFAULT_FRONTEND)
    loud = fe.process_offline(x).features[5:, 64:]
    quiet = fe.process_offline(0.01 * x).features[5:, 64:]
    np.testing.assert_allclose(loud, quiet, atol=1e-3)
    silent = fe.process_offline(np.zeros(22050, np.float32)).features[:, 64:]
    np.testing.assert_allclose(silent, 0.0, atol=1e-6)
    assert np.array_equal(fe.silence_frame()[64:], np.zeros(12, np.float32))


def test_a_peak_between_bins_lands_on_its_pitch_class() -> None:
    """Parabolic interpolation: 415.3 Hz (G#4) sits between bins 19 and 20 (409 / 431 Hz)."""
    sr, n = 22050, 1024
    t = np.arange(n) / sr
    frame = np.sin(2 * np.pi * 415.3 * t) * np.hanning(n)
    power = (np.abs(np.fft.rfft(frame)) ** 2).astype(np.float32)
    chroma = spectral_peak_chroma(power, DEFAULT_FRONTEND)
    assert chroma.argmax() == 8 and chroma[8] > 0.8 * chroma.sum()


@pytest.mark.parametrize("level", [0.0, 1e-30, 1e-12, 1.0])
def test_flat_and_tiny_spectra_give_finite_pitch_classes(level: float) -> None:
    """Equal neighbouring log powers (a click's flat spectrum, near-silence) once made a 0/0
    peak position and crashed the fold into pitch classes."""
    power = np.full((2, 3, DEFAULT_FRONTEND.n_freqs), level, np.float32)
    power[0, 0, 40] *= 1.0000001  # a peak its neighbours' float32 logs cannot tell apart
    power[1, 2, ::7] += np.float32(1e-38)
    chroma = spectral_peak_chroma(power, DEFAULT_FRONTEND)
    assert chroma.shape == (2, 3, 12) and np.isfinite(chroma).all()
    x = np.zeros(22050, np.float32)
    x[::2205] = 1.0  # clicks
    x[5000:6000] = 1e-30
    rows = MelFrontend(DEFAULT_FRONTEND).process_offline(x).features
    assert np.isfinite(rows).all()


def test_deferred_rows_equal_the_inline_ones() -> None:
    """The live engine leaves the feature rows for later and computes them a hop at a time,
    from the frames' power spectra: the same rows, the pitch-class memory carried across."""
    x = _harmonic_tones([60, 63, 67], seconds=2.0) + _harmonic_tones([70], seconds=2.0)[::-1]
    offline = MelFrontend(DEFAULT_FRONTEND).process_offline(x)
    fe = MelFrontend(DEFAULT_FRONTEND, defer_rows=True)
    parts = [fe.process(x[i:i + 1000]) for i in range(0, x.size, 1000)]
    frames = Frames.concat(parts, 0)
    assert frames.features.shape == (len(frames), 0) and frames.power is not None
    rows = np.concatenate([fe.rows(frames.power[None, i:i + n])[0]
                           for i, n in ((0, 3), (3, 25), (28, 1), (29, len(frames) - 29))])
    inline = offline.features[:len(frames)]
    np.testing.assert_allclose(rows[:, :64], inline[:, :64], rtol=1e-5)
    np.testing.assert_allclose(rows[:, 64:], inline[:, 64:], atol=1e-6)
    # What the deferred frames do carry is what the offline ones carry.
    np.testing.assert_allclose(frames.energy, offline.energy[:len(frames)], rtol=1e-6)
    np.testing.assert_allclose(frames.fast, offline.fast[:len(frames)], rtol=1e-5, atol=1e-5)


def test_restarting_the_pitch_memory_offline_equals_restarting_it_live() -> None:
    cfg = FRONTEND_PRESETS["default"]
    x = make_signal(4.0, cfg.sample_rate_hz, seed=5)
    hop = cfg.hop_length
    restarts = np.zeros(len(x) // hop, bool)
    restarts[[40, 41, 120]] = True  # before frames 40, 41 and 120
    live = MelFrontend(cfg, fast_lane=False)
    rows, start = [], 0
    for stop in (40, 41, 120, len(restarts)):  # feed up to each restart, then restart
        rows.append(live.process(x[start * hop:stop * hop]).features)
        live.restart_pitch_memory(np.array([True]))
        start = stop
    rows = np.concatenate(rows)
    whole = MelFrontend(cfg, fast_lane=False).process_offline(x[: len(restarts) * hop]).features
    offline, _ = restart_pitch_rows(whole, restarts, cfg)
    assert np.abs(offline - rows).max() < 1e-4
    assert np.abs(whole - rows)[41:, cfg.n_mels:].max() > 0.05  # the restart changed them
    assert np.array_equal(offline[:40], whole[:40])  # nothing before the first restart
    # Run by run (a run may start at a restart, or between them), carrying what it returns.
    parts, carry = [], None
    for lo, hi in ((0, 30), (30, 41), (41, 100), (100, 120), (120, len(restarts))):
        part, carry = restart_pitch_rows(whole[lo:hi], restarts[lo:hi], cfg, carry)
        parts.append(part)
    assert np.abs(np.concatenate(parts) - offline).max() < 1e-6
    # Runs cut at the restarts (as the engine cuts them at hops), the first with none in it:
    # the restart at the next run's first frame needs the memory that run ended with.
    parts, carry = [], None
    for lo, hi in ((0, 40), (40, 41), (41, 120), (120, len(restarts))):
        part, carry = restart_pitch_rows(whole[lo:hi], restarts[lo:hi], cfg, carry)
        parts.append(part)
    assert np.abs(np.concatenate(parts) - offline).max() < 1e-6


@pytest.mark.parametrize("preset", ["default", "seed"])
@pytest.mark.parametrize("n_frames", [1, 3, 25, 401])
def test_spectra_equal_torch_stft_bit_for_bit(preset: str, n_frames: int) -> None:
    """The frontend calls torch.stft's arithmetic (window product, real FFT) directly; the
    power spectra must be torch.stft's exactly, so nothing downstream can tell."""
    cfg = FRONTEND_PRESETS[preset]
    fe = MelFrontend(cfg)
    n = (n_frames - 1) * cfg.hop_length + cfg.n_fft
    buf = np.random.default_rng(n_frames).standard_normal((2, n)).astype(np.float32)
    got = fe._features(buf, n_frames, defer_rows=True)
    spec = torch.stft(torch.from_numpy(buf), cfg.n_fft, cfg.hop_length, cfg.n_fft, fe._window,
                      center=False, return_complex=True).numpy().transpose(0, 2, 1)
    power = np.square(spec.real)
    power += np.square(spec.imag)
    for c in range(2):
        np.testing.assert_array_equal(got[c].power, power[c])


@pytest.mark.parametrize(("channels", "frames"), [(1, 1), (1, 25), (2, 300), (3, 7)])
def test_leaky_average_is_lfilter_bit_for_bit(channels: int, frames: int) -> None:
    """The pitch-class memory's recursion gives scipy's lfilter numbers, without scipy.signal."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(frames)
    x = rng.random((channels, frames, 12))
    x /= x.sum(axis=2, keepdims=True)
    prev = rng.random((channels, 12))
    for a in (np.exp(-441 / (22050 * 4.0)), np.exp(-441 / (22050 * 0.05)), 0.5):
        expected, _ = lfilter([1.0 - a], [1.0, -a], x, axis=1, zi=a * prev[:, None, :])
        np.testing.assert_array_equal(leaky_average(x, a, prev), expected)
