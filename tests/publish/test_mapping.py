"""User mappings: curves at the ends and the middle, clipping, validation that names the field,
record paths, and the smoothers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from streamtag.publish.mapping import MappedMessage, Mapper, OscMapping, Smoother, resolve

from .helpers import SAMPLE_RECORD


def _m(curve: str, rng: tuple[float, float] = (200.0, 8000.0), **kw: Any) -> OscMapping:
    return OscMapping("timbre.brightness", "/synth/cutoff", rng, curve, **kw)


@pytest.mark.parametrize(
    ("curve", "middle"),
    [
        ("lin", 4100.0),
        ("exp", math.sqrt(200.0 * 8000.0)),  # geometric mean: equal ratios per step
        ("log", 200.0 + 7800.0 * math.log(20.5) / math.log(40.0)),
    ],
)
def test_curve_ends_are_exact_and_middle_follows_the_shape(curve: str, middle: float) -> None:
    m = _m(curve)
    assert m.scale(0.0) == 200.0
    assert m.scale(1.0) == 8000.0
    assert m.scale(0.5) == pytest.approx(middle, rel=1e-12)


def test_log_is_the_inverse_shape_of_exp() -> None:
    exp, log = _m("exp"), _m("log")
    for x in (0.1, 0.3, 0.7, 0.9):
        y = exp.scale(x)
        assert log.scale((y - 200.0) / 7800.0) == pytest.approx(200.0 + 7800.0 * x, rel=1e-9)


def test_out_of_range_input_is_clipped() -> None:
    m = _m("exp")
    assert m.scale(1.7) == 8000.0
    assert m.scale(-3.0) == 200.0


def test_inverted_output_range_inverts_the_mapping() -> None:
    m = _m("lin", (1.0, 0.0))
    assert (m.scale(0.0), m.scale(0.25), m.scale(1.0)) == (1.0, 0.75, 0.0)


def test_default_input_range_comes_from_the_source() -> None:
    valence = OscMapping("emotion.valence", "/fx/mix", (0.0, 1.0), "lin")
    assert valence.in_range == (-1.0, 1.0)
    assert valence.scale(0.0) == 0.5
    level = OscMapping("level_db", "/vis/size", (0.0, 10.0), "lin")
    assert level.scale(-80.0) == 5.0  # -160 … 0 dBFS
    custom = OscMapping("emotion.arousal", "/x", (0.0, 1.0), "lin", in_range=(0.0, 0.5))
    assert custom.scale(0.25) == 0.5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"curve": "exp", "range": (0.0, 8000.0)}, "range"),
        ({"curve": "log", "range": (-1.0, 1.0)}, "range"),
        ({"range": (5.0, 5.0)}, "range"),
        ({"range": (0.0, math.inf)}, "range"),
        ({"range": "wide"}, "range"),
        ({"curve": "cubic"}, "curve"),
        ({"to": "synth/cutoff"}, "to"),
        ({"to": "/synth/cut off"}, "to"),
        ({"source": ""}, "source"),
        ({"source": "genre.jazz"}, "in_range"),
        ({"in_range": (1.0, 1.0)}, "in_range"),
    ],
)
def test_invalid_specs_raise_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    spec: dict[str, Any] = {"source": "timbre.brightness", "to": "/synth/cutoff",
                            "range": (200.0, 8000.0), "curve": "lin", **kwargs}
    with pytest.raises(ValueError, match=rf": {field}: "):
        OscMapping(**spec)


def test_apply_reads_nested_paths_including_keys_with_spaces() -> None:
    m = OscMapping("instrument.probs.tenor saxophone", "/sax", (0.0, 100.0), "lin")
    assert m.apply(SAMPLE_RECORD) == (pytest.approx(16.0),)
    assert resolve(SAMPLE_RECORD, "emotion.quadrant") == 4
    assert resolve(SAMPLE_RECORD, "instrument.probs.oboe") is None


def test_apply_gives_nothing_for_absent_or_non_finite_sources() -> None:
    m = _m("lin")
    assert m.apply({k: v for k, v in SAMPLE_RECORD.items() if k != "timbre"}) is None
    assert m.apply({**SAMPLE_RECORD, "timbre": {"brightness": math.nan}}) is None
    assert m.apply({**SAMPLE_RECORD, "timbre": {"brightness": "bright"}}) is None


def test_stream_filter() -> None:
    m = _m("lin", stream="left")
    assert m.apply(SAMPLE_RECORD) is None
    assert m.apply({**SAMPLE_RECORD, "stream": "left"}) == (pytest.approx(5036.0),)


def test_silent_bool_maps_to_the_range_ends() -> None:
    m = OscMapping("silent", "/gate", (1.0, 0.0), "lin")
    assert m.apply({"silent": True}) == (0.0,)
    assert m.apply({"silent": False}) == (1.0,)


def test_exponential_smoother_covers_63_percent_of_a_step_in_one_time_constant() -> None:
    s = Smoother.exponential(time_constant_s=1.0, hop_s=0.5)
    assert s.process(0.0) == 0.0  # the first value passes through
    s.process(1.0)
    assert s.process(1.0) == pytest.approx(1.0 - math.exp(-1.0))
    s.reset()
    assert s.process(5.0) == 5.0


def test_exponential_smoother_with_zero_time_constant_is_transparent() -> None:
    s = Smoother.exponential(0.0, 0.5)
    assert [s.process(x) for x in (1.0, 3.0, -2.0)] == [1.0, 3.0, -2.0]


def test_hold_smoother_moves_only_when_the_change_reaches_the_threshold() -> None:
    s = Smoother.hold(0.1)
    assert [s.process(x) for x in (0.0, 0.05, -0.09, 0.2, 0.25, 0.1)] == [
        0.0, 0.0, 0.0, 0.2, 0.2, 0.1]


@pytest.mark.parametrize(
    "make",
    [lambda: Smoother.exponential(-1.0, 0.5), lambda: Smoother.exponential(1.0, 0.0),
     lambda: Smoother.hold(-0.1), lambda: Smoother.hold(math.nan)],
)
def test_invalid_smoother_parameters_raise(make: Any) -> None:
    with pytest.raises(ValueError):
        make()


def test_mapper_applies_each_mapping_with_its_smoother_and_resets() -> None:
    mapper = Mapper([_m("lin", (0.0, 1.0)), OscMapping("emotion.valence", "/v", (0.0, 1.0), "lin")],
                    [Smoother.hold(0.5), None])
    assert mapper.process(SAMPLE_RECORD) == [
        MappedMessage("/synth/cutoff", (pytest.approx(0.62),)),
        MappedMessage("/v", (pytest.approx(0.705),))]
    brighter = {**SAMPLE_RECORD, "timbre": {"brightness": 0.9}}
    assert mapper.process(brighter)[0].values == (pytest.approx(0.62),)  # held
    mapper.reset()
    assert mapper.process(brighter)[0].values == (pytest.approx(0.9),)


def _first_value(msg: Any) -> float:
    # (address, value) before mappings could send several values; (address, values, …) now.
    value = msg[1]
    return value[0] if isinstance(value, tuple) else value


def test_each_stream_drives_a_mapping_through_its_own_smoother() -> None:
    """Two streams on one mapping, each steady: each comes out as itself. One smoother shared
    by the streams pulled both towards each other (after six hops left's steady 0 came out
    at 0.37, right's steady 1 at 0.62)."""
    mapper = Mapper([_m("lin", (0.0, 1.0))], [Smoother.exponential(1.0, 0.5)])
    out: dict[str, list[float]] = {"left": [], "right": []}
    for _ in range(6):
        for stream, brightness in (("left", 0.0), ("right", 1.0)):
            (msg,) = mapper.process({"stream": stream, "timbre": {"brightness": brightness}})
            out[stream].append(_first_value(msg))
    assert out == {"left": [0.0] * 6, "right": [1.0] * 6}
    # Each stream's smoother is a real one: a step on the left moves 1 − e^(−0.5) per hop.
    (msg,) = mapper.process({"stream": "left", "timbre": {"brightness": 1.0}})
    assert _first_value(msg) == pytest.approx(1.0 - math.exp(-0.5))
    mapper.reset()
    (msg,) = mapper.process({"stream": "left", "timbre": {"brightness": 1.0}})
    assert _first_value(msg) == 1.0


def test_several_sources_go_in_one_message_each_smoothed_and_scaled_on_its_own() -> None:
    m = OscMapping(["emotion.valence", "level_db"], "/synth/xy", (0.0, 10.0), "lin")
    assert m.in_range is None and m.in_ranges == ((-1.0, 1.0), (-160.0, 0.0))
    mapper = Mapper([m], [Smoother.hold(1.0)])
    (msg,) = mapper.process(SAMPLE_RECORD)
    assert msg.address == "/synth/xy"
    assert msg.values == (pytest.approx(7.05), pytest.approx(10.0 * (160 - 18.3) / 160))
    (msg,) = mapper.process({**SAMPLE_RECORD, "emotion": {"valence": 0.5}, "level_db": -60.0})
    assert msg.values[0] == pytest.approx(7.05)  # held: moved 0.45 < 1
    assert msg.values[1] == pytest.approx(10.0 * 100 / 160)  # moved 2.4 ≥ 1
    # One source missing: no message at all (a short one would be misread).
    assert mapper.process({**SAMPLE_RECORD, "level_db": None}) == []
    assert m.manifest_entry()["types"] == "ff"


def test_mapping_target_names_are_kept_in_its_messages() -> None:
    m = OscMapping("timbre.brightness", "/synth/cutoff", (0.0, 1.0), "lin", target="vj")
    assert m.target == ("vj",)
    assert Mapper([m]).process(SAMPLE_RECORD)[0].targets == ("vj",)
    with pytest.raises(ValueError, match=": target: "):
        OscMapping("timbre.brightness", "/synth/cutoff", (0.0, 1.0), "lin", target=[])
