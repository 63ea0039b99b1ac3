"""Comparing estimate records: the tolerance every equivalence test states once.

Model outputs within 1e-4 absolute (float32 CNN batched vs one window at a time, then rounding
to 6 significant digits); level_db within 0.01 dB; everything else exact. Measurement fields
(``wall``, ``latency_ms``) are excluded.
"""

from __future__ import annotations

import pytest

ATOL = 1e-4


def numbers(rec: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in rec.items():
        if k in ("wall", "latency_ms"):
            continue
        if isinstance(v, dict):
            out.update(numbers(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def assert_records_equal(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and a
    for ra, rb in zip(a, b, strict=True):
        na, nb = numbers(ra), numbers(rb)
        assert na.keys() == nb.keys()
        for k, va in na.items():
            vb = nb[k]
            if k == "level_db":
                assert va == pytest.approx(vb, abs=0.011), k
            elif isinstance(va, float) and not isinstance(va, bool):
                assert va == pytest.approx(vb, abs=ATOL), k
            elif k in ("emotion.quadrant", "emotion.label", "instrument.top"):
                continue  # derived from values compared above; may flip at a tie
            else:
                assert va == vb, k
