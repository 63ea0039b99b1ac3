"""Output profiles over real UDP: each target gets the hop as its profile says (bundle, plain,
touchdesigner, wekinator), mappings go to the targets they name, and the manifest describes it.
The receivers parse with python-osc; tests/publish/test_osc_receivers.py uses oscdump, Pure
Data and SuperCollider."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage

from streamtag.publish import osc, wire

from .helpers import FULL_HEADS, FULL_RECORD, SAMPLE_RECORD, UdpReceiver
from .test_osc_golden import EXPECTED_LAYOUT

CLASSES = ["clarinet", "tenor saxophone", "violin"]


@pytest.fixture
def receivers() -> Iterator[list[UdpReceiver]]:
    rs = [UdpReceiver(timeout_s=1.0) for _ in range(4)]
    yield rs
    for r in rs:
        r.close()


def _drain(r: UdpReceiver) -> list[bytes]:
    """Every datagram that has arrived (the sender is on this host: sent means queued)."""
    out = []
    r.sock.settimeout(0.2)
    try:
        while True:
            out.append(r.recv())
    except TimeoutError:
        return out


def _messages(dgrams: list[bytes]) -> list[tuple[str, str, list[Any]]]:
    out = []
    for d in dgrams:
        assert not OscBundle.dgram_is_bundle(d)
        m = OscMessage(d)
        out.append((m.address, _types(d), list(m.params)))
    return out


def _types(dgram: bytes) -> str:
    """The type tag string of one message, read from its bytes (after the padded address)."""
    end = dgram.index(b"\0")
    start = (end // 4 + 1) * 4
    return dgram[start + 1 : dgram.index(b"\0", start)].decode()


def _spec(r: UdpReceiver, profile: str, **kw: Any) -> osc.TargetSpec:
    return osc.TargetSpec("127.0.0.1", r.port, profile, **kw)


def test_plain_sends_the_bundle_messages_one_datagram_each(receivers: list[UdpReceiver]) -> None:
    bundle_rx, plain_rx = receivers[:2]
    with osc.OscPublisher([_spec(bundle_rx, "bundle"), _spec(plain_rx, "plain")],
                          "/streamtag", ["main"]) as pub:
        pub.publish(SAMPLE_RECORD)
        bundle = _drain(bundle_rx)
        plain = _messages(_drain(plain_rx))
        stats = pub.stats
    assert len(bundle) == 1 and OscBundle.dgram_is_bundle(bundle[0])
    in_bundle = [(m.address, list(m.params)) for m in OscBundle(bundle[0])]
    assert [(a, t) for a, t, _ in plain] == EXPECTED_LAYOUT
    assert [(a, p) for a, _, p in plain] == in_bundle  # the same values, in the same order
    assert stats["targets"][f"127.0.0.1:{plain_rx.port}"] == {
        "profile": "plain", "sent": len(EXPECTED_LAYOUT), "errors": 0, "dropped": 0,
        "resolve_failures": 0, "resolved": True}


def test_plain_fast_lane_is_one_message_per_value(receivers: list[UdpReceiver]) -> None:
    rx = receivers[0]
    with osc.OscPublisher([_spec(rx, "plain")], "/st", ["a", "b"]) as pub:
        pub.send_fast("b", 1763768400.5, {"loudness": -20.0, "centroid": 1500.0,
                                          "flatness": 0.25, "onset": math.nan})
        got = _messages(_drain(rx))
        assert pub.stats["nonfinite"] == 1
    assert got == [("/st/b/fast/loudness", "f", [-20.0]), ("/st/b/fast/centroid", "f", [1500.0]),
                   ("/st/b/fast/flatness", "f", [0.25])]


def test_touchdesigner_gets_numbers_only_with_indices_into_the_manifest(
    receivers: list[UdpReceiver],
) -> None:
    rx = receivers[0]
    with osc.OscPublisher([_spec(rx, "touchdesigner")], "/streamtag", ["main"]) as pub:
        pub.set_names(CLASSES, ["chorus", "intro"])
        pub.publish(FULL_RECORD)
        known = _messages(_drain(rx))
        pub.publish({**FULL_RECORD, "reference": {"name": None, "nearest": "intro",
                                                  "distance": 0.9, "known": False}})
        unknown = dict((a, p) for a, _, p in _messages(_drain(rx)))
        pub.send_fast("main", 1763768400.5, {"loudness": -20.0, "onset": 1.0})
        fast = _messages(_drain(rx))
    assert all("s" not in t for _, t, _ in known + fast)
    got = {a: (t, p) for a, t, p in known}
    assert got["/streamtag/instrument"] == ("if", [2, pytest.approx(0.83)])  # violin
    assert got["/streamtag/reference"] == ("if", [1, 0.25])  # intro
    assert unknown["/streamtag/reference"] == [-1, pytest.approx(0.9)]
    # Everything else is the plain profile's, message for message.
    plain = [(a, t) for a, t in _layout_plain(FULL_RECORD)]
    assert [(a, t.replace("sf", "if")) for a, t in plain] == [(a, t) for a, t, _ in known]


def _layout_plain(record: dict[str, Any]) -> list[tuple[str, str]]:
    return list(osc.encode_record_plain(record, "/streamtag", None).messages)


def test_touchdesigner_without_names_indexes_classes_in_record_order() -> None:
    msgs = osc.encode_record_plain(SAMPLE_RECORD, "/p", None, numbers_only=True)
    dgram = msgs.dgrams[msgs.messages.index(("/p/instrument", "if"))]
    assert OscMessage(dgram).params == [2, pytest.approx(0.83)]


def test_wekinator_gets_one_message_of_the_chosen_values_per_hop_of_its_stream(
    receivers: list[UdpReceiver],
) -> None:
    rx, bundle_rx = receivers[:2]
    inputs = ("timbre.brightness", "emotion.valence", "embedding.xy.1", "silent", "novelty")
    with osc.OscPublisher([_spec(rx, "wekinator", inputs=inputs, stream="right"),
                           _spec(bundle_rx, "bundle")], "/st", ["left", "right"]) as pub:
        pub.publish({**FULL_RECORD, "stream": "left"})
        assert _drain(rx) == []  # another stream
        pub.publish({**FULL_RECORD, "stream": "right"})
        got = _messages(_drain(rx))
        pub.send_fast("right", 1763768400.5, {"loudness": -20.0})
        pub.send_raw("/synth/cutoff", 1.0)  # mappings: not to Wekinator unless named
        assert _drain(rx) == []
        no_novelty = {k: v for k, v in FULL_RECORD.items() if k != "novelty"}
        pub.publish({**no_novelty, "stream": "right"})
        assert _drain(rx) == []  # a short message would be misread: none at all
        stats = pub.stats
    assert got == [("/wek/inputs", "fffff", [pytest.approx(0.62), pytest.approx(0.41), -0.5,
                                             0.0, 0.375])]
    assert stats["incomplete"] == 1
    assert len(_drain(bundle_rx)) == 5  # the bundle target: 3 hops, the fast frame, the mapping


def test_mappings_go_to_the_targets_they_name(receivers: list[UdpReceiver]) -> None:
    a, b, wek = receivers[:3]
    targets = [_spec(a, "bundle", name="synth"), _spec(b, "touchdesigner", name="vj"),
               _spec(wek, "wekinator", name="wek", inputs=("level_db",))]
    with osc.OscPublisher(targets, "/streamtag") as pub:
        pub.send_values("/synth/xy", (0.25, 0.5))  # default: every target but Wekinator
        assert _messages(_drain(a)) == [("/synth/xy", "ff", [0.25, 0.5])]
        assert _messages(_drain(b)) == [("/synth/xy", "ff", [0.25, 0.5])]
        assert _drain(wek) == []
        pub.send_values("/vis/size", (3.0,), ("vj", "wek"))
        assert _drain(a) == []
        assert _messages(_drain(b)) == [("/vis/size", "f", [3.0])]
        assert _messages(_drain(wek)) == [("/vis/size", "f", [3.0])]
        pub.send_values("/x", (math.inf, 1.0))  # one value not finite: nothing sent
        pub.send_values("/x", (1.0,), ("nobody",))  # counted, never raised
        assert _drain(a) == [] and _drain(b) == []
        assert pub.stats["nonfinite"] == 1 and pub.stats["bad"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "max"}, "profile must be one of bundle, plain, touchdesigner, wekinator"),
        ({"profile": "wekinator"}, "needs inputs"),
        ({"inputs": ("level_db",)}, "wekinator only"),
        ({"port": 0}, "port must be in 1..65535"),
    ],
)
def test_invalid_targets_are_refused_naming_the_problem(kwargs: dict, message: str) -> None:
    spec = {"host": "127.0.0.1", "port": 9000, **kwargs}
    with pytest.raises(ValueError, match=message):
        osc.TargetSpec(**spec)


def test_a_wekinator_target_of_a_stream_that_does_not_exist_is_refused() -> None:
    with pytest.raises(ValueError, match="stream 'drums' is not one of a, b"):
        osc.OscPublisher([osc.TargetSpec("127.0.0.1", 6448, "wekinator", inputs=("novelty",),
                                         stream="drums")], "/st", ["a", "b"])


def test_manifest_describes_profiles_targets_and_the_numbers_only_twins() -> None:
    targets = [osc.TargetSpec("127.0.0.1", 9000, "touchdesigner", name="vj"),
               osc.TargetSpec("::1", 6448, "wekinator", inputs=("timbre.brightness",
                                                                "level_db"))]
    manifest = wire.build_manifest(FULL_HEADS, "/streamtag", ["main"], (), 50.0,
                                   references=["intro"], targets=[t.describe() for t in targets])
    assert manifest["osc"]["profiles"].keys() == {"bundle", "plain", "touchdesigner",
                                                  "wekinator"}
    assert manifest["osc"]["targets"] == [
        {"target": "127.0.0.1:9000", "name": "vj", "profile": "touchdesigner"},
        {"target": "[::1]:6448", "name": None, "profile": "wekinator", "address": "/wek/inputs",
         "types": "ff", "inputs": ["timbre.brightness", "level_db"], "stream": None}]
    entries = {e["address"]: e for e in manifest["osc"]["addresses"]}
    inst = entries["/streamtag/instrument"]
    assert inst["types"] == "sf" and inst["profiles"]["touchdesigner"]["types"] == "if"
    assert inst["classes"] == CLASSES
    assert entries["/streamtag/reference"]["profiles"]["touchdesigner"]["types"] == "if"
    # Every other address is the same for every profile but wekinator's.
    assert [a for a, e in entries.items() if "profiles" in e] == [
        "/streamtag/instrument", "/streamtag/reference"]


def test_manifest_parts_rejoin_to_the_text_and_fit_the_limit() -> None:
    manifest = wire.build_manifest(FULL_HEADS, "/streamtag", ["a", "b", "c", "d"],
                                   wire.FAST_NAMES, 50.0, references=["é" * 300])
    text = osc.manifest_text(manifest)
    assert text.isascii()
    for limit in (64, 100, 1472, 65507):
        parts = [OscMessage(d) for d in osc.encode_manifest(manifest, "/streamtag", limit)]
        assert all(len(d) <= limit for d in osc.encode_manifest(manifest, "/streamtag", limit))
        assert [m.params[:2] for m in parts] == [[k, len(parts)] for k in range(len(parts))]
        assert "".join(m.params[2] for m in parts) == text
    with pytest.raises(ValueError, match="no room"):
        osc.encode_manifest(manifest, "/a/very/long/prefix/indeed/for/sixty-four", 64)
