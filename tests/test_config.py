"""Config: strict typed loading, every problem named by its key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamtag.cli import main
from streamtag.config import Config, config_from_dict, load_config
from streamtag.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_default_yaml_documents_exactly_the_defaults() -> None:
    assert load_config(ROOT / "configs" / "default.yaml") == Config()


def test_every_key_in_default_yaml_has_a_comment() -> None:
    lines = (ROOT / "configs" / "default.yaml").read_text().splitlines()
    keyed = [ln for ln in lines if ":" in ln and not ln.lstrip().startswith("#")]
    bare = [ln for ln in keyed if "#" not in ln and not ln.rstrip().endswith(":")
            and not ln.strip().startswith("- host")]
    assert bare == []


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    return e.value.problems


def test_unknown_key_names_its_path() -> None:
    (p,) = problems_of({"outputs": {"osc": {"prefx": "/x"}}})
    assert p.startswith("outputs.osc.prefx: unknown key")
    assert "did you mean 'prefix'" in p


def test_out_of_range_port_in_a_list_names_the_index() -> None:
    (p,) = problems_of({"outputs": {"osc": {"targets": [{"port": 9000}, {"port": 70000}]}}})
    assert p == "outputs.osc.targets[1].port: expected 1..65535, got 70000"


@pytest.mark.parametrize("data,expected", [
    ({"input": {"blocksize": "big"}}, "input.blocksize: expected an integer, got 'big'"),
    ({"input": {"realtime": "yes"}}, "input.realtime: expected true/false"),
    ({"analysis": {"silence_db": 5}}, "analysis.silence_db: expected -160..0, got 5.0"),
    ({"logging": {"format": "xml"}}, "logging.format: expected one of 'human', 'json'"),
    ({"input": {"channels": [0, "x"]}}, "input.channels[1]: expected an integer"),
    ({"streams": "main"}, "streams: expected a list of a mapping"),
    ({"outputs": {"osc": {"prefix": "streamtag"}}}, "outputs.osc.prefix: expected an OSC"),
    ({"model": {"checkpoint": "/no/such.safetensors"}}, "model.checkpoint: file not found"),
    ({"outputs": {"osc": {"mappings": [{"source": "timbre.brightness", "to": "/a",
                                        "range": [0, 10], "curve": "exp"}]}}},
     "outputs.osc.mappings[0].range: curve 'exp' needs both ends > 0"),
    ({"streams": [{"name": "a"}, {"name": "a"}]}, "streams[1].name: 'a' is used by more"),
    ({"novelty": {"restart": -1}}, "novelty.restart: expected 0..10, got -1.0"),
    ({"novelty": {"restart": "often"}}, "novelty.restart: expected a number, got 'often'"),
])
def test_wrong_values_are_named(data: dict, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems_of(data)), problems_of(data)


def test_a_number_written_with_an_exponent_is_a_number() -> None:
    # YAML 1.1 reads 2e-1 (no dot) as the string '2e-1'; the user meant 0.2.
    data = yaml.safe_load("novelty: {restart: 2e-1}")
    assert data["novelty"]["restart"] == "2e-1"
    assert config_from_dict(data).novelty.restart == pytest.approx(0.2)
    assert problems_of({"novelty": {"restart": "2e-1x"}})


def test_the_fresh_start_rule_can_be_turned_off() -> None:
    assert config_from_dict({"novelty": {"restart": None}}).novelty.restart is None
    assert config_from_dict({}).novelty.restart == 0.2


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of({"input": {"blocksize": -1, "ring_s": 0}, "bogus": 1,
                            "control": {"port": 0}})
    assert len(problems) == 4


def test_top_level_must_be_a_mapping() -> None:
    assert problems_of([1, 2]) == ["<top>: expected a mapping, got [1, 2]"]  # type: ignore[arg-type]


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"outputs": {"osc": {"targets": [{"port": 9100}]}}}))
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("input:\n  blocksize: -3\n  colour: red\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "input.blocksize: expected 0..8192, got -3" in err
    assert "input.colour: unknown key" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("input: [unclosed\n")
    assert main(["check-config", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_targets_take_a_profile_and_wekinator_its_own_default_port() -> None:
    import typing

    from streamtag.config import OscTarget
    from streamtag.publish import wire

    cfg = config_from_dict({"outputs": {"osc": {"targets": [
        {"host": "127.0.0.1"},
        {"profile": "touchdesigner", "name": "vj", "port": 7000},
        {"profile": "wekinator", "inputs": ["timbre.brightness", "emotion.valence"]},
    ]}}})
    bundle, touch, wek = cfg.outputs.osc.targets
    assert (bundle.profile, bundle.port) == ("bundle", 9000)
    assert (touch.profile, touch.port, touch.name) == ("touchdesigner", 7000, "vj")
    assert (wek.port, wek.inputs, wek.stream) == (6448, ["timbre.brightness", "emotion.valence"],
                                                 None)
    # The config's profile names are the wire module's, in the same order.
    hint = typing.get_type_hints(OscTarget)["profile"]
    assert typing.get_args(hint) == tuple(wire.PROFILES)


@pytest.mark.parametrize("osc,expected", [
    ({"targets": [{"profile": "wekinator"}]},
     "outputs.osc.targets[0].inputs: profile wekinator needs the record paths"),
    ({"targets": [{"profile": "wekinator", "inputs": ["timbre.", ""]}]},
     "outputs.osc.targets[0].inputs[0]: expected a record path"),
    ({"targets": [{"profile": "wekinator", "inputs": ["level_db"], "stream": "left"}]},
     "outputs.osc.targets[0].stream: expected one of main, got 'left'"),
    ({"targets": [{"inputs": ["level_db"]}]},
     "outputs.osc.targets[0].inputs: only profile wekinator sends inputs"),
    ({"targets": [{"profile": "max"}]}, "outputs.osc.targets[0].profile: expected one of"),
    ({"targets": [{"name": "a"}, {"name": "a", "port": 9002}]},
     "outputs.osc.targets[1].name: 'a' is used by more than one target"),
    ({"mappings": [{"to": "/a"}]}, "outputs.osc.mappings[0].source: expected either source"),
    ({"mappings": [{"source": "novelty", "sources": ["novelty"], "to": "/a"}]},
     "outputs.osc.mappings[0].source: expected either source (one path, e.g. "
     "timbre.brightness) or sources (a list of paths), not both"),
    ({"mappings": [{"source": "novelty", "to": "/a", "target": "vj"}]},
     "outputs.osc.mappings[0].target: no OSC target is named 'vj'; named targets: none"),
    ({"mappings": [{"source": "novelty", "to": "/a", "stream": "left"}]},
     "outputs.osc.mappings[0].stream: expected one of main, got 'left'"),
    ({"mappings": [{"source": "novelty", "to": "/a", "in_range": [1]}]},
     "outputs.osc.mappings[0].in_range: expected [low, high]"),
])
def test_profile_and_mapping_mistakes_are_named(osc: dict, expected: str) -> None:
    problems = problems_of({"outputs": {"osc": osc}})
    assert any(p.startswith(expected) for p in problems), problems


def test_mappings_take_several_sources_a_stream_and_targets() -> None:
    cfg = config_from_dict({
        "streams": [{"name": "voice", "channels": [0]}, {"name": "guitar", "channels": [1]}],
        "outputs": {"osc": {
            "targets": [{"name": "synth"}, {"name": "vj", "port": 9002}],
            "mappings": [
                {"sources": ["embedding.xy.0", "embedding.xy.1"], "to": "/synth/xy",
                 "range": [0, 1], "stream": "guitar", "target": "synth"},
                {"source": "fast.none", "to": "/b", "in_range": [0, 5],
                 "target": ["synth", "vj"]},
            ]}}})
    first, second = cfg.outputs.osc.mappings
    assert (first.sources, first.stream, first.target) == (
        ["embedding.xy.0", "embedding.xy.1"], "guitar", "synth")
    assert (second.in_range, second.target) == ([0.0, 5.0], ["synth", "vj"])
