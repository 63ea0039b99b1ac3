"""The wire module: addressing, manifest (agrees with what the publisher sends), reference
text generated from the constants, sanitising for strict JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from streamtag.publish import osc, wire

from .helpers import HEADS, SAMPLE_RECORD


def test_address_single_and_several_streams() -> None:
    assert wire.address("/streamtag", None, "emotion") == "/streamtag/emotion"
    assert wire.address("/streamtag", "left", "emotion") == "/streamtag/left/emotion"
    assert wire.stream_part(["main"], "main") is None
    assert wire.stream_part(["a b", "c"], "a b") == "a_b"


def test_osc_name_replaces_what_osc_forbids() -> None:
    assert wire.osc_name("tenor saxophone") == "tenor_saxophone"
    assert wire.osc_name("a/b#c*d,e?f[g]h{i}j") == "a_b_c_d_e_f_g_h_i_j"
    assert wire.osc_name("café") == "caf_"


def _manifest(heads: list[dict[str, Any]], streams: list[str]) -> dict[str, Any]:
    return wire.build_manifest(heads, "/streamtag", streams, wire.FAST_NAMES, 50.0,
                               sample_rate_hz=44100.0)


def test_manifest_lists_exactly_what_the_publisher_sends_per_hop() -> None:
    manifest = _manifest(HEADS, ["main"])
    listed = [(e["address"], e["types"]) for e in manifest["osc"]["addresses"]
              if "/fast/" not in e["address"]]
    sent = osc.encode_record(SAMPLE_RECORD, "/streamtag", None).messages
    assert sorted(listed) == sorted(sent)


def test_manifest_entries_have_type_range_unit_and_class_names() -> None:
    manifest = _manifest(HEADS, ["main"])
    entries = {e["address"]: e for e in manifest["osc"]["addresses"]}
    sax = entries["/streamtag/instrument/tenor_saxophone"]
    assert (sax["types"], sax["label"], sax["args"][0]["range"]) == ("f", "tenor saxophone",
                                                                     [0.0, 1.0])
    assert entries["/streamtag/instrument"]["classes"] == HEADS[1]["labels"]
    assert entries["/streamtag/level"]["args"][0]["unit"] == "dBFS"
    assert entries["/streamtag/fast/centroid"]["args"][0]["range"] == [0.0, 22050.0]
    assert [c["address"] for c in manifest["osc"]["control"]] == [
        f"/streamtag/control/{c}" for c in ("reset", "pause", "resume", "reload", "describe")]
    assert manifest["osc"]["manifest"]["address"] == "/streamtag/manifest"
    assert {t["topic"] for t in manifest["zmq"]["topics"]} == set(wire.ZMQ_TOPICS)
    json.dumps(manifest, allow_nan=False)


def test_manifest_with_several_streams_addresses_each_stream() -> None:
    entries = [e["address"] for e in _manifest(HEADS, ["left", "right"])["osc"]["addresses"]]
    assert "/streamtag/left/emotion" in entries and "/streamtag/right/timbre/depth" in entries
    assert not any(a.startswith("/streamtag/emotion") for a in entries)


def test_manifest_tolerates_absent_heads_and_other_kinds() -> None:
    heads = [{"name": "genre", "kind": "multilabel", "labels": ["drama", "action"]},
             {"name": "novelty", "kind": "embedding", "size": 64}]
    manifest = _manifest(heads, ["main"])
    assert [(h["name"], h["osc"]) for h in manifest["heads"]] == [("genre", False),
                                                                   ("novelty", False)]
    addresses = [e["address"] for e in manifest["osc"]["addresses"]]
    assert "/streamtag/level" in addresses
    assert not any("emotion" in a or "instrument" in a or "genre" in a for a in addresses)
    json.dumps(manifest, allow_nan=False)


def test_manifest_refuses_labels_that_collide_as_addresses() -> None:
    heads = [{"name": "instrument", "kind": "multiclass", "labels": ["bass drum", "bass_drum"]}]
    with pytest.raises(ValueError, match="bass_drum"):
        _manifest(heads, ["main"])


def test_reference_markdown_is_generated_from_the_constants() -> None:
    text = wire.reference_markdown("/streamtag")
    for spec in (*wire.OSC_HOP_SPECS, wire.OSC_FAST):
        stem = spec.suffix.split("{")[0]
        assert f"`/streamtag/{stem}" in text and f"`{spec.types}`" in text
    for topic in wire.ZMQ_TOPICS:
        assert f"`{topic}`" in text
    for command in wire.CONTROL_COMMANDS:
        assert f"`/streamtag/control/{command}`" in text
    for name in wire.FAST_NAMES:
        assert f"`{name}`" in text


@pytest.mark.parametrize("prefix", ["/streamtag", "/a/b", "/x-1"])
def test_valid_prefixes(prefix: str) -> None:
    assert wire.check_prefix(prefix) == prefix


def test_sanitize_makes_strict_json() -> None:
    rec = json.loads(json.dumps(SAMPLE_RECORD))
    rec["level_db"] = -math.inf
    rec["emotion"]["arousal"] = math.nan
    rec["timbre"]["depth"] = math.inf
    rec["extra"] = {"x": math.inf, "tuple": (1, 2)}
    clean, bad = wire.sanitize(rec)
    assert bad == 4
    assert clean["level_db"] == wire.LEVEL_FLOOR_DB
    assert clean["emotion"]["arousal"] is None
    assert clean["timbre"]["depth"] == 1.0
    assert clean["extra"] == {"x": None, "tuple": [1, 2]}
    json.dumps(clean, allow_nan=False)


def test_value_ranges() -> None:
    assert wire.value_range("timbre.brightness") == (0.0, 1.0)
    assert wire.value_range("instrument.probs.violin") == (0.0, 1.0)
    assert wire.value_range("emotion.valence") == (-1.0, 1.0)
    assert wire.value_range("timbre.") is None
    assert wire.value_range("genre.x") is None
