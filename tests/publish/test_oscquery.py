"""OSCQuery JSON from the manifest: every address, the proposal's structure, its HTTP answers."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from streamtag.model import EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD
from streamtag.publish import osc, oscquery, wire

_OSC_TYPES = re.compile(r"^[ifsbhtdScrmTFNI\[\]]*$")


def manifest(streams: list[str]) -> dict[str, Any]:
    heads = [EMOTION_HEAD.to_dict(), INSTRUMENT_HEAD.to_dict(), TIMBRE_HEAD.to_dict(),
             {"name": "tags", "kind": "multilabel", "labels": ["Hip Hop", "calm"]},
             {"name": "embedding", "kind": "embedding", "size": 32}]
    mappings = [{"address": "/synth/cutoff", "types": "f",
                 "args": [{"name": "value", "type": "f", "unit": "", "range": [8000.0, 200.0]}],
                 "description": "user mapping of timbre.brightness (exp)"}]
    m = wire.build_manifest(heads, "/streamtag", streams, wire.FAST_NAMES, 50.0,
                            sample_rate_hz=22050, mappings=mappings, projection=True,
                            references=["intro"])
    m["checkpoint"] = "abc123"
    return m


def every_address(m: dict[str, Any]) -> set[str]:
    osc = m["osc"]
    return ({a["address"] for a in osc["addresses"]} | {c["address"] for c in osc["control"]}
            | {osc["manifest"]["address"]} | {x["address"] for x in m["mappings"]})


def check_node(node: dict[str, Any], path: str) -> None:
    """The proposal's structure: FULL_PATH is the node's path; CONTENTS holds sub-nodes by
    name; TYPE is an OSC type tag string; RANGE has one entry (object or null) per type;
    ACCESS is a 2-bit mask; DESCRIPTION a string."""
    assert node["FULL_PATH"] == path
    assert node["ACCESS"] in (0, 1, 2, 3)
    if "TYPE" in node:
        assert _OSC_TYPES.match(node["TYPE"]) and node["TYPE"]
    if "RANGE" in node:
        assert len(node["RANGE"]) == len(node["TYPE"])
        for r in node["RANGE"]:
            assert r is None or (set(r) <= {"MIN", "MAX", "VALS"} and r["MIN"] <= r["MAX"])
    if "DESCRIPTION" in node:
        assert isinstance(node["DESCRIPTION"], str)
    for name, child in (node.get("CONTENTS") or {}).items():
        assert "/" not in name
        check_node(child, f"{path.rstrip('/')}/{name}")


@pytest.mark.parametrize("streams", [["main"], ["voice", "guitar"]])
def test_namespace_lists_every_manifest_address_and_nothing_else(streams: list[str]) -> None:
    m = manifest(streams)
    root = oscquery.namespace(m)
    check_node(root, "/")
    assert set(oscquery.methods(root)) == every_address(m)


def test_nodes_carry_types_ranges_access_and_descriptions_from_the_wire_module() -> None:
    root = oscquery.namespace(manifest(["main"]))
    emotion = root["CONTENTS"]["streamtag"]["CONTENTS"]["emotion"]
    # A method and a container at once: /streamtag/emotion ff above /streamtag/emotion/valence;
    # served as a container (ACCESS 0) with the method's signature.
    assert emotion["TYPE"] == wire.OSC_EMOTION.types == "ff"
    assert emotion["RANGE"] == [{"MIN": -1.0, "MAX": 1.0}] * 2
    assert emotion["ACCESS"] == oscquery.ACCESS_NONE
    assert emotion["DESCRIPTION"] == wire.OSC_EMOTION.description
    assert emotion["CONTENTS"]["valence"]["TYPE"] == "f"
    assert emotion["CONTENTS"]["valence"]["ACCESS"] == oscquery.ACCESS_READ
    instrument = root["CONTENTS"]["streamtag"]["CONTENTS"]["instrument"]
    assert instrument["TYPE"] == "sf" and instrument["RANGE"] == [None, {"MIN": 0.0, "MAX": 1.0}]
    tags = root["CONTENTS"]["streamtag"]["CONTENTS"]["tags"]["CONTENTS"]
    assert "Hip_Hop" in tags  # the address-safe name, as sent
    reset = root["CONTENTS"]["streamtag"]["CONTENTS"]["control"]["CONTENTS"]["reset"]
    assert reset["ACCESS"] == oscquery.ACCESS_NONE and "TYPE" not in reset  # no argument
    mapped = root["CONTENTS"]["synth"]["CONTENTS"]["cutoff"]
    assert mapped["RANGE"] == [{"MIN": 200.0, "MAX": 8000.0}]
    assert root["CONTENTS"]["streamtag"]["ACCESS"] == oscquery.ACCESS_NONE  # a container


def test_http_answers_follow_the_proposal() -> None:
    root = oscquery.namespace(manifest(["main"]))
    info = oscquery.host_info("streamtag", "127.0.0.1", 9001)
    assert oscquery.answer(root, info, "/?HOST_INFO") == (200, info)
    assert oscquery.answer(root, info, "/streamtag/emotion?HOST_INFO") == (200, info)
    assert info["OSC_PORT"] == 9001 and info["OSC_TRANSPORT"] == "UDP"
    assert info["EXTENSIONS"]["ACCESS"] and info["EXTENSIONS"]["VALUE"]
    status, node = oscquery.answer(root, info, "/streamtag/emotion/valence#frag")
    assert status == 200 and node["FULL_PATH"] == "/streamtag/emotion/valence"
    assert node["VALUE"] == [None]  # nothing published yet
    assert oscquery.answer(root, info, "/streamtag/emotion/valence/") == (200, node)
    assert oscquery.answer(root, info, "/streamtag/emotion?TYPE") == (200, {"TYPE": "ff"})
    assert oscquery.answer(root, info, "/streamtag/emotion?VALUE") == (200, {"VALUE": [None] * 2})
    assert oscquery.answer(root, info, "/streamtag/control/reset?VALUE") == (204, None)
    assert oscquery.answer(root, info, "/streamtag?TYPE") == (204, None)  # a container
    assert oscquery.answer(root, info, "/streamtag/emotion?BOGUS") == (400, None)
    assert oscquery.answer(root, info, "/nothing/here") == (404, None)
    assert oscquery.answer(root, info, "/")[1] is not None


def test_host_info_without_a_control_port_names_no_osc_port() -> None:
    info = oscquery.host_info("streamtag", None, None)
    assert "OSC_PORT" not in info and info["NAME"] == "streamtag"
    assert "OSC_IP" not in oscquery.host_info("x", "0.0.0.0", 9001)


def record() -> dict[str, Any]:
    return {"seq": 3, "t": 2.0, "stream": "main", "wall": 1.0, "level_db": -20.5,
            "silent": False,
            "emotion": {"valence": 0.25, "arousal": -0.5, "quadrant": 2, "label": "angry"},
            "instrument": {"top": "piano", "confidence": 0.75,
                           "probs": {"piano": 0.75, "flute": 0.125}},
            "tags": {"Hip Hop": 0.5, "calm": 0.25},
            "tempo": {"bpm": 120.5, "confidence": 0.5, "last_beat_t": 1.9}}


def test_values_are_the_arguments_last_sent_over_osc() -> None:
    m = manifest(["main"])
    root = oscquery.namespace(m)
    info = oscquery.host_info("streamtag", "127.0.0.1", 9001)
    values = {**osc.record_values(record(), "/streamtag", None),
              **osc.fast_values("/streamtag", None, {"onset": 0.5, "loudness": -12.0})}
    assert values["/streamtag/emotion"] == (0.25, -0.5)
    status, tree = oscquery.answer(root, info, "/", values)
    assert status == 200
    sm = tree["CONTENTS"]["streamtag"]["CONTENTS"]
    assert sm["emotion"]["CONTENTS"]["valence"]["VALUE"] == [0.25]
    assert sm["emotion"]["CONTENTS"]["quadrant"]["VALUE"] == [2]
    assert sm["tags"]["CONTENTS"]["Hip_Hop"]["VALUE"] == [0.5]
    assert sm["fast"]["CONTENTS"]["onset"]["VALUE"] == [0.5]
    assert sm["level"]["VALUE"] == [-20.5]
    assert "VALUE" not in sm["emotion"]  # a method and a container: its value on request
    assert oscquery.answer(root, info, "/streamtag/instrument?VALUE", values) == (
        200, {"VALUE": ["piano", 0.75]})
    assert sm["novelty"]["VALUE"] == [None]  # not in this record
    assert "VALUE" not in root["CONTENTS"]["streamtag"]["CONTENTS"]["level"]  # a copy


@pytest.mark.parametrize("streams", [["main"], ["voice", "guitar"]])
def test_python_oscquery_reads_the_whole_tree(streams: list[str]) -> None:
    from pythonoscquery.shared.osc_access import OSCAccess
    from pythonoscquery.shared.osc_path_node import OSCPathNode

    m = manifest(streams)
    root = oscquery.namespace(m)
    info = oscquery.host_info("streamtag", "127.0.0.1", 9001)
    for values in ({}, osc.record_values(record(), "/streamtag", wire.stream_part(
            streams, streams[0]))):
        tree = json.loads(json.dumps(oscquery.answer(root, info, "/", values)[1]))
        parsed = OSCPathNode.from_json(tree)  # raises on anything the library refuses
        nodes = {n.full_path: n for n in parsed}
        assert set(nodes) >= every_address(m)
        readable = {n.full_path for n in parsed if n.access == OSCAccess.READONLY_VALUE}
        published = {a["address"] for a in m["osc"]["addresses"]}
        dual = {a for a in published if nodes[a].contents}
        assert readable == (published | {m["osc"]["manifest"]["address"]}
                            | {x["address"] for x in m["mappings"]}) - dual
        assert dual == {a for a in published if a.rsplit("/", 1)[1] in (
            "emotion", "instrument", "reference")}
