"""The streaming resampler equals the offline polyphase resampler (scipy.signal.upfirdn)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import upfirdn

from streamtag.resample import MAX_RUN_IN, Resampler


@pytest.mark.parametrize("rates", [(44100, 22050), (48000, 22050), (16000, 22050), (22050, 44100)])
@pytest.mark.parametrize("block", [1, 37, 4096, None])
def test_streaming_equals_offline_upfirdn(rates: tuple[int, int], block: int | None) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(6000)
    r = Resampler(*rates)
    ref = upfirdn(r.h, x, r.up, r.down)
    size = block or x.size
    y = np.concatenate([r.process(x[i:i + size]) for i in range(0, x.size, size)])
    # Every output whose inputs have all arrived is produced, and no more.
    assert y.size == -(-x.size * r.up // r.down)
    np.testing.assert_allclose(y, ref[: y.size], rtol=0, atol=1e-12)


@pytest.mark.parametrize("rates", [(44100, 22050), (48000, 22050), (22050, 44100)])
def test_a_block_longer_than_a_run_equals_upfirdn_and_any_split(rates: tuple[int, int]) -> None:
    """Blocks longer than MAX_RUN_IN are resampled run by run: same output, bit for bit, as
    small blocks, and upfirdn's to rounding; the tap patterns of long runs are not cached."""
    x = np.random.default_rng(2).standard_normal((2, 3 * MAX_RUN_IN + 123)).astype(np.float32)
    r = Resampler(*rates)
    whole = r.process(x)
    assert len(r._patterns) <= 2  # whole periods of `down` per run: one pattern, + the last
    ref = upfirdn(r.h, x[1].astype(np.float64), r.up, r.down)
    np.testing.assert_allclose(whole[1], ref[: whole.shape[1]], rtol=0, atol=1e-12)
    # Blocks of 3 inputs take the gathering path, long runs the strided one: the same bits.
    for size in (3, 997):
        r.reset()
        pieces = np.concatenate([r.process(x[:, i:i + size])
                                 for i in range(0, x.shape[1], size)], axis=1)
        np.testing.assert_array_equal(pieces, whole)


def test_declared_delay_matches_a_click() -> None:
    r = Resampler(48000, 22050)
    x = np.zeros(4800)
    x[2400] = 1.0  # a click at 50 ms
    y = r.process(x)
    peak = int(np.argmax(y))
    assert abs(peak - (2400 * 22050 / 48000 + r.delay_out_samples)) <= 1


def test_passband_gain_is_unity() -> None:
    r = Resampler(44100, 22050)
    t = np.arange(44100) / 44100
    y = r.process(np.sin(2 * np.pi * 1000 * t))
    assert np.max(np.abs(y[2000:])) == pytest.approx(1.0, abs=0.01)


def test_reset_restarts_the_stream() -> None:
    x = np.random.default_rng(0).standard_normal(1000)
    r = Resampler(48000, 22050)
    first = r.process(x)
    second = r.process(x)
    r.reset()
    again = r.process(x)
    np.testing.assert_array_equal(first, again)
    n = min(first.size, second.size)
    assert not np.allclose(first[:n], second[:n])


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="sample rates"):
        Resampler(0, 22050)
