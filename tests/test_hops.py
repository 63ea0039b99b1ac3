"""The hop stage's twins: live ``process`` in any blocks equals ``process_offline_blocks``.

Tolerance: feature rows within 1e-5 (the offline twin restarts silent hops' pitch-class rows
afterwards, exact up to float32 rounding), fast-lane values within 1e-5 relative (float32
products batched differently); levels, silent flags and hop ends exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamtag.frontend import DEFAULT_FRONTEND
from streamtag.hops import HopFeatures, HopFrontend
from streamtag.testing import make_signal

HOP = 25


def signal(rate: int) -> np.ndarray:
    """Two channels: music, a 1.2 s pause (silent hops restart the pitch memory), music."""
    x = make_signal(3.0, rate)
    pause = np.zeros(int(1.2 * rate), np.float32)
    left = np.concatenate([x[: rate], pause, x[rate:]])
    return np.stack([left, 0.5 * left[::-1]], axis=1)


def stage(rate: int = 22050) -> HopFrontend:
    return HopFrontend(DEFAULT_FRONTEND, rate, HOP, -60.0, fast_lane=True, channels=2)


def joined(parts: list[HopFeatures]) -> dict[str, np.ndarray]:
    return {
        "rows": np.concatenate([p.rows for p in parts], axis=1),
        "level_db": np.concatenate([p.level_db for p in parts], axis=1),
        "silent": np.concatenate([p.silent for p in parts], axis=1),
        "fast": np.concatenate([p.fast for p in parts], axis=1),
        # each hop's end as a frame count from the stream's start
        "ends": np.array([p.first_frame + e for p in parts for e in p.ends]),
        "first_hops": np.array([p.first_hop for p in parts]),
    }


def live(st: HopFrontend, x: np.ndarray, sizes: list[int], reset: bool = True) -> list:
    if reset:
        st.reset()
    out, i, k = [], 0, 0
    while i < x.shape[0]:
        n = sizes[k % len(sizes)]
        out.append(st.process(x[i:i + n]))
        i, k = i + n, k + 1
    return out


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    n = min(a["rows"].shape[1], b["rows"].shape[1])
    assert n == a["rows"].shape[1] == b["rows"].shape[1]
    np.testing.assert_allclose(a["rows"], b["rows"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(a["level_db"], b["level_db"])
    np.testing.assert_array_equal(a["silent"], b["silent"])
    np.testing.assert_array_equal(a["ends"], b["ends"])
    np.testing.assert_allclose(a["fast"], b["fast"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sizes", [[7], [3, 1000, 1, 511], [4096], [10**9]],
                         ids=["7", "odd-mix", "4096", "whole"])
def test_live_hops_equal_offline_hops(sizes: list[int]) -> None:
    x = signal(22050)
    st = stage()
    offline = joined(list(st.process_offline_blocks([x])))
    assert offline["silent"][0].any() and not offline["silent"][0].all()
    assert (np.diff(offline["ends"]) == HOP).all() and offline["ends"][0] == HOP
    assert_same(joined(live(st, x, sizes)), offline)


def test_offline_hops_do_not_depend_on_the_blocks() -> None:
    x = signal(48000)  # resampled: the resampler's runs too
    st = stage(48000)
    whole = joined(list(st.process_offline_blocks([x])))
    blocks = [x[i:i + 3001] for i in range(0, x.shape[0], 3001)]
    assert_same(joined(list(st.process_offline_blocks(blocks))), whole)
    assert_same(joined(live(st, x, [480, 1000])), whole)


def test_a_rerun_equals_the_first_and_state_is_real() -> None:
    x = signal(22050)
    st = stage()
    first = joined(live(st, x, [1000]))
    assert_same(joined(live(st, x, [1000])), first)  # reset works
    # Without a reset the second pass starts from the first's state (pitch memory, onset
    # flux, the hop phase): its hops differ.
    again = joined(live(st, x, [1000], reset=False))
    assert again["rows"].shape[1] >= first["rows"].shape[1] - 1
    n = min(again["rows"].shape[1], first["rows"].shape[1])
    assert not np.allclose(again["rows"][:, :n], first["rows"][:, :n], atol=1e-5)
