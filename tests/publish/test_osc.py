"""OscPublisher against real UDP sockets: addressing, heads, fast lane, non-finite values,
and targets that fail (closed port, unresolvable host) without stopping the others."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import pytest
from pythonosc.osc_bundle import OscBundle

from streamtag.publish import osc, wire

from .helpers import SAMPLE_RECORD, UdpReceiver, free_udp_port


def _addresses(receiver: UdpReceiver) -> list[tuple[str, list[Any]]]:
    _, msgs = receiver.recv_messages()
    return [(m.address, m.params) for m in msgs]


def test_one_stream_bundle_is_timetagged_with_wall_time(receiver: UdpReceiver) -> None:
    with osc.OscPublisher([("127.0.0.1", receiver.port)], "/streamtag", ["main"]) as pub:
        pub.publish(SAMPLE_RECORD)
        timetag, msgs = receiver.recv_messages()
        assert timetag == SAMPLE_RECORD["wall"]
        assert msgs[0].address == "/streamtag/emotion"
        assert pub.stats["sent"] == 1
        assert pub.stats["targets"][f"127.0.0.1:{receiver.port}"]["sent"] == 1


def test_several_streams_put_the_stream_after_the_prefix(
    receiver: UdpReceiver, record: dict[str, Any]
) -> None:
    record["stream"] = "left"
    with osc.OscPublisher([("127.0.0.1", receiver.port)], "/st", ["left", "right"]) as pub:
        pub.publish(record)
        got = _addresses(receiver)
    assert got[0][0] == "/st/left/emotion"
    assert all(a.startswith("/st/left/") for a, _ in got)


def test_absent_heads_are_not_sent(receiver: UdpReceiver, record: dict[str, Any]) -> None:
    del record["instrument"], record["timbre"]
    with osc.OscPublisher([("127.0.0.1", receiver.port)], "/streamtag") as pub:
        pub.publish(record)
        got = [a for a, _ in _addresses(receiver)]
    assert got == ["/streamtag/emotion", "/streamtag/emotion/valence", "/streamtag/emotion/arousal",
                   "/streamtag/emotion/quadrant", "/streamtag/level", "/streamtag/silent"]


def test_nan_is_never_sent_and_inf_level_is_clamped(
    receiver: UdpReceiver, record: dict[str, Any]
) -> None:
    record["emotion"]["valence"] = math.nan
    record["timbre"]["warmth"] = math.inf  # timbre has a range: clamped to 1
    record["level_db"] = -math.inf  # digital silence: clamped to the floor, not dropped
    with osc.OscPublisher([("127.0.0.1", receiver.port)], "/streamtag") as pub:
        pub.publish(record)
        got = dict(_addresses(receiver))
        assert pub.stats["nonfinite"] == 3
    assert "/streamtag/emotion" not in got  # carries valence
    assert "/streamtag/emotion/valence" not in got
    assert got["/streamtag/emotion/arousal"] == [pytest.approx(-0.12)]
    assert got["/streamtag/timbre/warmth"] == [1.0]
    assert got["/streamtag/level"] == [wire.LEVEL_FLOOR_DB]
    assert all(math.isfinite(v) for params in got.values() for v in params
               if isinstance(v, float))


def test_fast_lane_is_one_bundle_per_frame(receiver: UdpReceiver) -> None:
    with osc.OscPublisher([("127.0.0.1", receiver.port)], "/streamtag", ["a", "b"]) as pub:
        pub.send_fast("b", 1763768400.5, {"loudness": -20.0, "centroid": 1500.0,
                                          "flatness": 0.25, "onset": math.nan})
        timetag, msgs = receiver.recv_messages()
        assert pub.stats["nonfinite"] == 1
    assert timetag == 1763768400.5
    assert [(m.address, m.params) for m in msgs] == [
        ("/streamtag/b/fast/loudness", [-20.0]), ("/streamtag/b/fast/centroid", [1500.0]),
        ("/streamtag/b/fast/flatness", [0.25]),
    ]


def test_send_raw_is_a_plain_message_and_skips_nan(receiver: UdpReceiver) -> None:
    with osc.OscPublisher([("127.0.0.1", receiver.port)], "/streamtag") as pub:
        pub.send_raw("/synth/cutoff", math.nan)
        pub.send_raw("/synth/cutoff", 1264.5)
        pub.send_raw("/synth/gate", 1)
        first = receiver.recv_messages()
        second = receiver.recv_messages()
        assert pub.stats["nonfinite"] == 1
        assert pub.stats["sent"] == 2
    assert first[0] is None  # not a bundle
    assert (first[1][0].address, first[1][0].params) == ("/synth/cutoff", [1264.5])
    assert (second[1][0].address, second[1][0].params) == ("/synth/gate", [1])


def test_send_raw_types(receiver: UdpReceiver) -> None:
    with osc.OscPublisher([("127.0.0.1", receiver.port)], "/streamtag") as pub:
        for value in (0.5, 3, "violin"):
            pub.send_raw("/x", value)
        got = [receiver.recv_messages() for _ in range(3)]
    assert [(t, m[0].address, m[0].params) for t, m in got] == [
        (None, "/x", [0.5]), (None, "/x", [3]), (None, "/x", ["violin"])]


def test_a_record_with_a_wrong_type_is_counted_not_raised(
    receiver: UdpReceiver, record: dict[str, Any]
) -> None:
    record["emotion"]["valence"] = "high"
    with osc.OscPublisher([("127.0.0.1", receiver.port)], "/streamtag") as pub:
        pub.publish(record)
        pub.publish(SAMPLE_RECORD)
        assert _addresses(receiver)[0][0] == "/streamtag/emotion"
        assert pub.stats["bad"] == 1


def test_closed_port_counts_errors_and_other_targets_still_get_everything(
    receiver: UdpReceiver,
) -> None:
    closed = free_udp_port()
    n = 20
    with osc.OscPublisher([("127.0.0.1", closed), ("127.0.0.1", receiver.port)],
                          "/streamtag") as pub:
        for k in range(n):
            pub.publish({**SAMPLE_RECORD, "seq": k})
            time.sleep(0.002)  # let the ICMP "port unreachable" come back between sends
        for _ in range(n):
            receiver.recv()
        dead = pub.stats["targets"][f"127.0.0.1:{closed}"]
    assert dead["errors"] > 0
    assert dead["sent"] + dead["errors"] == n


def test_unresolvable_host_is_retried_in_the_background_never_fatal(
    receiver: UdpReceiver,
) -> None:
    targets = [("nonexistent.invalid", 9000), ("127.0.0.1", receiver.port)]
    with osc.OscPublisher(targets, "/streamtag", resolve_retry_s=0.02) as pub:
        deadline = time.monotonic() + 5.0
        sent = 0
        while time.monotonic() < deadline:
            pub.publish(SAMPLE_RECORD)
            receiver.recv()
            sent += 1
            stats = pub.stats["targets"]["nonexistent.invalid:9000"]
            if stats["resolve_failures"] >= 3:
                break
            time.sleep(0.02)
        assert stats["resolve_failures"] >= 3  # construction + at least two retries
        assert stats["dropped"] == sent and not stats["resolved"]
        assert pub.stats["targets"][f"127.0.0.1:{receiver.port}"]["sent"] == sent


def test_after_close_sends_are_ignored(receiver: UdpReceiver) -> None:
    pub = osc.OscPublisher([("127.0.0.1", receiver.port)], "/streamtag")
    pub.close()
    pub.publish(SAMPLE_RECORD)
    pub.close()
    assert pub.stats["sent"] == 0


@pytest.mark.parametrize("prefix", ["streamtag", "/streamtag/", "/stream tag", "/a//b"])
def test_invalid_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        osc.OscPublisher([], prefix)


def test_ntp_timetag_is_exact() -> None:
    assert osc.ntp_timetag(1763768400.125) == ((1763768400 + 2_208_988_800) << 32) | 2**29
    assert osc.ntp_timetag(None) == osc.TIMETAG_IMMEDIATELY
    assert osc.ntp_timetag(math.nan) == osc.TIMETAG_IMMEDIATELY


@pytest.mark.parametrize("limit", [64, 100, 200, 300, 1472])
def test_split_bundle_keeps_timetag_order_and_limit(limit: int) -> None:
    whole = osc.encode_record(SAMPLE_RECORD, "/streamtag", None).dgram  # 700 bytes
    parts = osc.split_bundle(whole, limit)
    assert (len(parts) == 1) == (limit >= len(whole))
    # Same timetag in every part; the elements, concatenated, are the original ones in order.
    assert all(p[:16] == whole[:16] for p in parts)
    assert b"".join(p[16:] for p in parts) == whole[16:]
    longest = max(len(m) + 4 for m in _elements(whole))
    assert all(len(p) <= max(limit, 16 + longest) for p in parts)
    # Greedy: no part could have taken the next part's first element.
    for a, b in itertools.pairwise(parts):
        assert len(a) + len(_elements(b)[0]) + 4 > limit


def _elements(bundle: bytes) -> list[bytes]:
    out, i = [], 16
    while i < len(bundle):
        n = int.from_bytes(bundle[i:i + 4], "big")
        out.append(bundle[i + 4:i + 4 + n])
        i += 4 + n
    return out


def test_a_bundle_over_the_limit_arrives_as_several_with_the_same_timetag(
    receiver: UdpReceiver,
) -> None:
    with osc.OscPublisher([("127.0.0.1", receiver.port)], "/streamtag", ["main"],
                          max_datagram_bytes=256) as pub:
        pub.publish(SAMPLE_RECORD)
        got: list[tuple[str, list[Any]]] = []
        tags = set()
        while len(got) < len(osc.encode_record(SAMPLE_RECORD, "/streamtag", None).messages):
            tag, msgs = receiver.recv_messages()
            tags.add(tag)
            got += [(m.address, m.params) for m in msgs]
        assert pub.stats["split"] == 1 and pub.stats["sent"] > 1
    assert tags == {SAMPLE_RECORD["wall"]}
    whole = OscBundle(osc.encode_record(SAMPLE_RECORD, "/streamtag", None).dgram)
    assert got == [(m.address, m.params) for m in whole]


def test_fast_lane_template_bytes_equal_the_encoder() -> None:
    values = {"loudness": -12.5, "centroid": 2000.0, "flatness": 0.5, "onset": 3.0}
    for stream in (None, "a"):
        template = osc._FastTemplate("/st", stream, tuple(values))
        for wall in (None, 1763768400.123, 1763768400.5):
            expected = osc.encode_fast("/st", stream, wall, values)
            assert bytes(template.fill(wall, list(values.values()))) == expected.dgram
            assert template.messages == expected.messages
