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


@pytest.mark.parametrize("rates", [(44100, 22050), (88200, 22050), (48000, 22050),
                                   (96000, 22050), (16000, 22050), (8000, 22050),
                                   (11025, 22050)])
def test_any_block_sizes_give_the_same_bits(rates: tuple[int, int]) -> None:
    """The matrix products' rows are fixed on the stream's grid, their shapes fixed: whatever
    the blocks (1 sample, odd sizes, runs' borders, random sizes), the output is bit for bit
    that of the whole signal (stereo, so channels share products)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 40000))
    r = Resampler(*rates)
    whole = r.process(x)
    ref = upfirdn(r.h, x[1], r.up, r.down)
    np.testing.assert_allclose(whole[1], ref[: whole.shape[1]], rtol=0, atol=2e-15)
    sizes = [[s] for s in (1, 2, 3, 5, 7, 16, 31, 97, 441, 1023, r.run_in - 1, r.run_in + 1)]
    sizes.append(list(rng.integers(1, 3000, 40)))
    for pattern in sizes:
        r.reset()
        parts, i, k = [], 0, 0
        end = 2000 if max(pattern) < 10 else x.shape[1]  # tiny blocks: a prefix (time)
        while i < end:
            n = int(pattern[k % len(pattern)])
            parts.append(r.process(x[:, i:min(i + n, end)]))
            i, k = i + n, k + 1
        y = np.concatenate(parts, axis=1)
        np.testing.assert_array_equal(y, whole[:, :y.shape[1]])


@pytest.mark.parametrize("rate_in", [8000, 11025, 16000, 24000, 32000, 44100, 48000, 88200,
                                     96000, 192000])
def test_the_filter_is_scipys_firwin(rate_in: int) -> None:
    """design_filter computes scipy's filter without importing scipy.signal (slow to import):
    bit for bit up to scipy 1.16; scipy 1.17's Kaiser window takes the Bessel function from
    scipy.special instead of numpy, which differs in the last bit (relative 6e-16)."""
    from scipy.signal import firwin

    r = Resampler(rate_in, 22050)
    max_rate = max(r.up, r.down)
    expected = firwin(20 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * r.up
    np.testing.assert_allclose(r.h, expected, rtol=1e-14, atol=0)
