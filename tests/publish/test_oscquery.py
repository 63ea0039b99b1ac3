"""OSCQuery JSON from the manifest: every address, the proposal's structure, its HTTP answers."""

from __future__ import annotations

import re
from typing import Any

import pytest

from streamtag.model import EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD
from streamtag.publish import oscquery, wire

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
    # A method and a container at once: /streamtag/emotion ff above /streamtag/emotion/valence.
    assert emotion["TYPE"] == wire.OSC_EMOTION.types == "ff"
    assert emotion["RANGE"] == [{"MIN": -1.0, "MAX": 1.0}] * 2
    assert emotion["ACCESS"] == oscquery.ACCESS_READ
    assert emotion["DESCRIPTION"] == wire.OSC_EMOTION.description
    assert emotion["CONTENTS"]["valence"]["TYPE"] == "f"
    instrument = root["CONTENTS"]["streamtag"]["CONTENTS"]["instrument"]
    assert instrument["TYPE"] == "sf" and instrument["RANGE"] == [None, {"MIN": 0.0, "MAX": 1.0}]
    tags = root["CONTENTS"]["streamtag"]["CONTENTS"]["tags"]["CONTENTS"]
    assert "Hip_Hop" in tags  # the address-safe name, as sent
    reset = root["CONTENTS"]["streamtag"]["CONTENTS"]["control"]["CONTENTS"]["reset"]
    assert reset["ACCESS"] == oscquery.ACCESS_WRITE and "TYPE" not in reset
    mapped = root["CONTENTS"]["synth"]["CONTENTS"]["cutoff"]
    assert mapped["RANGE"] == [{"MIN": 200.0, "MAX": 8000.0}]
    assert root["CONTENTS"]["streamtag"]["ACCESS"] == oscquery.ACCESS_NONE  # a container


def test_http_answers_follow_the_proposal() -> None:
    root = oscquery.namespace(manifest(["main"]))
    info = oscquery.host_info("streamtag", "127.0.0.1", 9001)
    assert oscquery.answer(root, info, "/?HOST_INFO") == (200, info)
    assert oscquery.answer(root, info, "/streamtag/emotion?HOST_INFO") == (200, info)
    assert info["OSC_PORT"] == 9001 and info["OSC_TRANSPORT"] == "UDP"
    assert info["EXTENSIONS"]["ACCESS"] and not info["EXTENSIONS"]["VALUE"]
    status, node = oscquery.answer(root, info, "/streamtag/emotion/valence#frag")
    assert status == 200 and node["FULL_PATH"] == "/streamtag/emotion/valence"
    assert oscquery.answer(root, info, "/streamtag/emotion/valence/") == (200, node)
    assert oscquery.answer(root, info, "/streamtag/emotion?TYPE") == (200, {"TYPE": "ff"})
    assert oscquery.answer(root, info, "/streamtag/emotion?VALUE") == (204, None)
    assert oscquery.answer(root, info, "/streamtag?TYPE") == (204, None)  # a container
    assert oscquery.answer(root, info, "/streamtag/emotion?BOGUS") == (400, None)
    assert oscquery.answer(root, info, "/nothing/here") == (404, None)
    assert oscquery.answer(root, info, "/")[1] is not None


def test_host_info_without_a_control_port_names_no_osc_port() -> None:
    info = oscquery.host_info("streamtag", None, None)
    assert "OSC_PORT" not in info and info["NAME"] == "streamtag"
    assert "OSC_IP" not in oscquery.host_info("x", "0.0.0.0", 9001)
