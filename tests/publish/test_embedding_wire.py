"""Issue 5's wire contracts: tags, embedding/xy, novelty and reference over OSC (bytes, oscdump)
and ZeroMQ (streamtag.tags, streamtag.embedding with the vector; estimate without it), and the
manifest listing exactly what is sent."""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from typing import Any

import pytest
import zmq

from streamtag.publish import osc, wire
from streamtag.publish.zmq import ZmqPublisher

from .helpers import FULL_HEADS, FULL_RECORD
from .test_osc_golden import EXPECTED_LAYOUT

NEW_LAYOUT = [
    ("/streamtag/tags/calm", "f"),
    ("/streamtag/tags/Hip_Hop", "f"),
    ("/streamtag/embedding/xy", "ff"),
    ("/streamtag/novelty", "f"),
    ("/streamtag/reference", "sf"),
    ("/streamtag/reference/known", "i"),
]
# The new messages come after timbre and before level/silent.
FULL_LAYOUT = EXPECTED_LAYOUT[:-2] + NEW_LAYOUT + EXPECTED_LAYOUT[-2:]


def test_hop_bundle_carries_the_new_fields_in_order() -> None:
    packet = osc.encode_record(FULL_RECORD, "/streamtag", None)
    assert list(packet.messages) == FULL_LAYOUT


def test_manifest_lists_exactly_what_is_sent_with_every_new_field() -> None:
    manifest = wire.build_manifest(FULL_HEADS, "/streamtag", ["main"], (), 50.0,
                                   projection=True, references=["intro", "chorus"])
    listed = sorted((e["address"], e["types"]) for e in manifest["osc"]["addresses"])
    assert listed == sorted(FULL_LAYOUT)
    entries = {e["address"]: e for e in manifest["osc"]["addresses"]}
    assert entries["/streamtag/tags/Hip_Hop"]["label"] == "Hip Hop"
    assert entries["/streamtag/reference"]["references"] == ["intro", "chorus"]
    assert entries["/streamtag/reference"]["args"][1]["range"] == [0.0, 2.0]
    assert entries["/streamtag/embedding/xy"]["args"][0]["range"] == [-1.0, 1.0]
    assert manifest["references"] == ["intro", "chorus"]
    assert {h["name"]: h["zmq_topic"] for h in manifest["heads"]}["embedding"] == \
        "streamtag.embedding"
    # No projection and no library: neither xy nor reference is listed (nor sent).
    bare = wire.build_manifest(FULL_HEADS, "/streamtag", ["main"], (), 50.0)
    addresses = [e["address"] for e in bare["osc"]["addresses"]]
    assert "/streamtag/novelty" in addresses and "/streamtag/embedding/xy" not in addresses
    assert not any("reference" in a for a in addresses) and bare["references"] is None
    json.dumps(manifest, allow_nan=False)


def test_several_streams_put_the_stream_after_the_prefix() -> None:
    packet = osc.encode_record({**FULL_RECORD, "stream": "left"}, "/streamtag", "left")
    assert ("/streamtag/left/tags/Hip_Hop", "f") in packet.messages
    assert ("/streamtag/left/reference", "sf") in packet.messages
    manifest = wire.build_manifest(FULL_HEADS, "/streamtag", ["left", "right"], (), 50.0,
                                   projection=True, references=[])
    addresses = {e["address"] for e in manifest["osc"]["addresses"]}
    assert {"/streamtag/right/embedding/xy", "/streamtag/left/novelty"} <= addresses


def test_unknown_and_silent_start_references_on_osc() -> None:
    rec = copy.deepcopy(FULL_RECORD)
    rec["reference"] = {"name": None, "nearest": "intro", "distance": 1.5, "known": False}
    msgs = osc.encode_record(rec, "/streamtag", None).messages
    assert ("/streamtag/reference", "sf") in msgs  # name "" (checked on the wire below)
    rec["reference"] = {"name": None, "nearest": None, "distance": None, "known": False}
    msgs = osc.encode_record(rec, "/streamtag", None).messages
    assert ("/streamtag/reference", "sf") not in msgs  # nothing heard yet: nothing to say
    assert ("/streamtag/reference/known", "i") in msgs
    rec["novelty"] = math.nan  # never sent, counted
    packet = osc.encode_record(rec, "/streamtag", None)
    assert ("/streamtag/novelty", "f") not in packet.messages and packet.nonfinite == 1


def test_compact_record_drops_only_the_vector() -> None:
    compact = wire.compact_record(FULL_RECORD)
    assert compact["embedding"] == {"xy": [0.25, -0.5]}
    assert FULL_RECORD["embedding"]["vector"]  # the original is untouched
    no_xy = {**FULL_RECORD, "embedding": {"vector": [1.0]}}
    assert "embedding" not in wire.compact_record(no_xy)
    assert wire.compact_record({"seq": 1}) == {"seq": 1}


def test_reference_text_lists_the_new_addresses_and_topics() -> None:
    text = wire.reference_markdown("/streamtag")
    for part in ("`/streamtag/tags/<tag>` | `f`", "`/streamtag/embedding/xy` | `ff`",
                 "`/streamtag/novelty` | `f`", "`/streamtag/reference` | `sf`",
                 "`/streamtag/reference/known` | `i`", "`streamtag.tags`",
                 "`streamtag.embedding`"):
        assert part in text, part


def _strict(text: bytes) -> Any:
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-finite {c}"))


def test_zmq_subscriber_gets_tags_and_embedding_topics() -> None:
    ctx = zmq.Context()
    pub = ZmqPublisher("tcp://127.0.0.1:*", 1000, context=ctx)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    for t in (wire.TOPIC_TAGS, wire.TOPIC_EMBEDDING, wire.TOPIC_ESTIMATE):
        sub.setsockopt(zmq.SUBSCRIBE, t.encode())
    sub.connect(pub.endpoint)
    try:
        got: dict[str, Any] = {}
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            pub.publish_record(FULL_RECORD)  # until the subscription has arrived (slow joiner)
            while sub.poll(50):
                topic, payload = sub.recv_multipart()
                got[topic.decode()] = _strict(payload)
        head = {"seq": 17, "t": 9.0, "stream": "main"}
        assert got[wire.TOPIC_TAGS] == {**head, "tags": FULL_RECORD["tags"]}
        assert got[wire.TOPIC_EMBEDDING] == {**head, "embedding": FULL_RECORD["embedding"]}
        estimate = got[wire.TOPIC_ESTIMATE]
        assert estimate["embedding"] == {"xy": [0.25, -0.5]}
        assert estimate["novelty"] == 0.375 and estimate["reference"]["name"] == "intro"
    finally:
        sub.close()
        pub.close()
        ctx.term()


@pytest.mark.skipif(shutil.which("oscdump") is None,
                    reason="oscdump not installed (Debian liblo-tools)")
def test_oscdump_reads_the_new_addresses_with_their_type_tags() -> None:
    from .test_osc_oscdump import OscDump

    dump = OscDump()
    try:
        rec = {**FULL_RECORD, "wall": math.floor(time.time()) - 50.0}
        unknown = {**rec, "reference": {"name": None, "nearest": "intro", "distance": 1.25,
                                        "known": False}}
        with osc.OscPublisher([("127.0.0.1", dump.port)], "/streamtag", ["main"]) as pub:
            pub.publish(rec)
            lines = dump.take(len(FULL_LAYOUT))
            pub.publish(unknown)
            later = dump.take(len(FULL_LAYOUT))
    finally:
        dump.close()
    assert [(f[1], f[2]) for f in lines] == FULL_LAYOUT
    values = {f[1]: f[3:] for f in lines}
    assert values["/streamtag/tags/Hip_Hop"] == ["0.125000"]
    assert values["/streamtag/embedding/xy"] == ["0.250000", "-0.500000"]
    assert values["/streamtag/novelty"] == ["0.375000"]
    assert values["/streamtag/reference"] == ['"intro"', "0.250000"]
    assert values["/streamtag/reference/known"] == ["1"]
    values = {f[1]: f[3:] for f in later}
    assert values["/streamtag/reference"] == ['""', "1.250000"]
    assert values["/streamtag/reference/known"] == ["0"]


def test_mappings_reach_the_new_fields() -> None:
    from streamtag.publish.mapping import OscMapping

    assert OscMapping("embedding.xy.1", "/vis/y", (0.0, 100.0), "lin").apply(FULL_RECORD) == (
        25.0,)  # y = -0.5 in [-1, 1]
    assert OscMapping("novelty", "/fx/wet", (0.0, 1.0), "lin").apply(FULL_RECORD) == (0.375,)
    assert OscMapping("tags.Hip Hop", "/a", (0.0, 8.0), "lin").apply(FULL_RECORD) == (1.0,)
    assert OscMapping("reference.distance", "/b", (0.0, 2.0), "lin").apply(FULL_RECORD) == (0.25,)
    assert OscMapping("embedding.xy.2", "/c", (0.0, 1.0), "lin").apply(FULL_RECORD) is None
    # Both coordinates in one message: x = 0.25, y = -0.5 on [-1, 1] → [0, 100].
    assert OscMapping(("embedding.xy.0", "embedding.xy.1"), "/vis/xy", (0.0, 100.0),
                   "lin").apply(FULL_RECORD) == (62.5, 25.0)
    unknown = {**FULL_RECORD, "reference": {"name": None, "nearest": None, "distance": None,
                                            "known": False}}
    assert OscMapping("reference.distance", "/b", (0.0, 2.0), "lin").apply(unknown) is None
