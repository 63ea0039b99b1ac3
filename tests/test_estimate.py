"""The record's head sections: rounding, clipping and the top class computed on Python floats
must give what numpy's clip and argmax give, to the bit, whatever the outputs (at a bound,
past it, NaN, signed zero, ties), for the engine's float32 outputs and the daemon's smoothed
float64 ones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamtag.estimate import head_section, reported_values, round6, round6_all
from streamtag.model import EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD, HeadSpec

ODD = [0.0, -0.0, 1.0, -1.0, 1.0000001, -1.0000001, 0.5, 2.0, -3.0, math.nan, math.inf,
       -math.inf, 1e-30, -1e-30, 0.999999, 0.1]


def same(a: list, b: list) -> bool:
    """Equal lists of floats, NaN equal to NaN and -0.0 told apart from 0.0."""
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or (x == y and math.copysign(1, x) == math.copysign(1, y))
        for x, y in zip(a, b, strict=True))


def numpy_reported(spec: HeadSpec, values: np.ndarray) -> list[float]:
    """What the record reported before (np.clip, then round6 of each numpy scalar)."""
    if spec.kind == "regression" and spec.range is not None:
        values = np.clip(values, *spec.range)
    return [round6(v) for v in values]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spec", [EMOTION_HEAD, TIMBRE_HEAD,
                                  HeadSpec("odd", "regression", ("a", "b"), (0.1, 0.7)),
                                  HeadSpec("tags", "multilabel", ("a", "b"))])
def test_reported_values_are_numpys_clip_rounded(spec: HeadSpec, dtype: type) -> None:
    rng = np.random.default_rng(0)
    pool = np.array(ODD + list(rng.uniform(-1.5, 1.5, 200)), dtype)
    k = len(spec.labels)
    for _ in range(400):
        values = rng.choice(pool, k)
        assert same(reported_values(spec, values), numpy_reported(spec, values)), values
    inside = rng.uniform(0.2, 0.6, (50, k)).astype(dtype)  # the fast path: nothing to clip
    for values in inside:
        assert same(reported_values(spec, values), numpy_reported(spec, values))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_class_is_numpys_argmax(dtype: type) -> None:
    rng = np.random.default_rng(1)
    k = len(INSTRUMENT_HEAD.labels)
    pool = np.array([0.0, -0.0, 0.5, 0.5, 1.0, math.nan, -math.inf, math.inf, 0.25], dtype)
    cases = [rng.choice(pool, k) for _ in range(500)] + list(rng.random((200, k)).astype(dtype))
    for values in cases:
        section = head_section(INSTRUMENT_HEAD, values)
        top = int(np.argmax(values))
        assert section["top"] == INSTRUMENT_HEAD.labels[top], values
        assert same([section["confidence"]], [round6(values[top])])
        assert same(list(section["probs"].values()), [round6(v) for v in values])


def test_round6_all_is_round6_of_each() -> None:
    """One format operation per head gives round6 of every value: random float32 bit
    patterns (every exponent, subnormals, NaN payloads, infinities), float64 over 80 decades,
    and the edges of rounding."""
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    wide = rng.standard_normal(50_000) * 10.0 ** rng.integers(-40, 40, 50_000)
    edges = [0.0, -0.0, math.nan, math.inf, -math.inf, 1e308, 5e-324, -5e-324, 999999.5,
             9999995.0, 0.0000099999995, 0.1, 1.0]
    for values in (bits.view(np.float32).tolist(), wide.tolist(), edges):
        for k in (1, 2, 7, 14):
            for i in range(0, len(values) - k + 1, k):
                chunk = values[i:i + k]
                assert same(round6_all(chunk), [round6(v) for v in chunk]), chunk
    assert round6_all([]) == []
