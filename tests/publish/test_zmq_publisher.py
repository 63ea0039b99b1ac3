"""ZmqPublisher with real SUB sockets: topics, payloads, manifest on subscribe, strict JSON,
slow subscribers that must never block the caller, and bind errors."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from streamtag.errors import ConfigError
from streamtag.publish import wire
from streamtag.publish.zmq import ZmqPublisher

from .helpers import HEADS, SAMPLE_RECORD

MANIFEST = wire.build_manifest(HEADS, "/streamtag", ["main"], wire.FAST_NAMES, 50.0)


def _strict(text: bytes) -> Any:
    def no_constants(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=no_constants)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def pub() -> Iterator[ZmqPublisher]:
    p = ZmqPublisher("tcp://127.0.0.1:*", 1000, manifest=MANIFEST)
    yield p
    p.close()


def _subscriber(ctx: zmq.Context, endpoint: str, topic: str, **opts: int) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    for name, value in opts.items():
        sub.setsockopt(getattr(zmq, name), value)
    sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
    sub.connect(endpoint)
    return sub


def _await_meta(pub: ZmqPublisher, sub: zmq.Socket, timeout_s: float = 5.0) -> Any:
    """Poll the publisher (as the daemon loop does) until ``sub`` gets the manifest."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pub.poll()
        if sub.poll(20):
            topic, payload = sub.recv_multipart()
            assert topic == b"streamtag.meta"
            return _strict(payload)
    raise AssertionError("no manifest on subscribe")


def test_subscriber_gets_the_manifest_then_every_topic(
    pub: ZmqPublisher, ctx: zmq.Context
) -> None:
    sub = _subscriber(ctx, pub.endpoint, wire.TOPIC_PREFIX)
    assert _await_meta(pub, sub) == MANIFEST
    pub.publish_record(SAMPLE_RECORD)
    pub.publish_fast("main", 1763768400.25, {"loudness": -20.0}, t=9.25)
    pub.publish_status({"uptime_s": 1.0, "hops": 2})
    pub.publish_meta(MANIFEST)
    got = {}
    for _ in range(7):
        assert sub.poll(2000)
        topic, payload = sub.recv_multipart()
        got[topic.decode()] = _strict(payload)
    assert set(got) == {wire.TOPIC_ESTIMATE, wire.TOPIC_EMOTION, wire.TOPIC_INSTRUMENT,
                        wire.TOPIC_TIMBRE, wire.TOPIC_FAST, wire.TOPIC_STATUS, wire.TOPIC_META}
    assert got[wire.TOPIC_ESTIMATE] == SAMPLE_RECORD
    for head in (h for h in wire.HEADS if h in SAMPLE_RECORD):  # tags/embedding: see below
        payload = got[wire.HEAD_TOPICS[head]]
        assert payload == {"seq": 17, "t": 9.0, "stream": "main", head: SAMPLE_RECORD[head]}
    assert got[wire.TOPIC_FAST] == {"stream": "main", "t": 9.25, "wall": 1763768400.25,
                                    "values": {"loudness": -20.0}}
    assert got[wire.TOPIC_STATUS] == {"uptime_s": 1.0, "hops": 2}
    assert pub.stats["dropped"] == 0 and pub.stats["errors"] == 0


def test_every_new_subscriber_gets_the_manifest_even_on_a_topic_already_subscribed(
    pub: ZmqPublisher, ctx: zmq.Context
) -> None:
    first = _subscriber(ctx, pub.endpoint, wire.TOPIC_PREFIX)
    _await_meta(pub, first)
    second = _subscriber(ctx, pub.endpoint, wire.TOPIC_PREFIX)  # same topic: XPUB_VERBOSE
    assert _await_meta(pub, second)["format"] == wire.MANIFEST_FORMAT
    third = _subscriber(ctx, pub.endpoint, wire.TOPIC_META)
    assert _await_meta(pub, third)["osc"]["prefix"] == "/streamtag"


def test_per_head_topic_subscription_gets_only_that_head(
    pub: ZmqPublisher, ctx: zmq.Context
) -> None:
    sub = _subscriber(ctx, pub.endpoint, wire.TOPIC_TIMBRE)
    meta = _subscriber(ctx, pub.endpoint, wire.TOPIC_META)
    _await_meta(pub, meta)  # both subscriptions have arrived once this one has
    time.sleep(0.05)
    pub.publish_record({k: v for k, v in SAMPLE_RECORD.items() if k != "instrument"})
    assert sub.poll(2000)
    topic, payload = sub.recv_multipart()
    assert topic == b"streamtag.timbre"
    assert set(_strict(payload)) == {"seq", "t", "stream", "timbre"}
    assert not sub.poll(100)


def test_json_is_strict_nan_becomes_null_and_minus_inf_level_the_floor(
    pub: ZmqPublisher, ctx: zmq.Context
) -> None:
    sub = _subscriber(ctx, pub.endpoint, wire.TOPIC_ESTIMATE)
    meta = _subscriber(ctx, pub.endpoint, wire.TOPIC_META)
    _await_meta(pub, meta)
    time.sleep(0.05)
    rec = json.loads(json.dumps(SAMPLE_RECORD))
    rec["emotion"]["valence"] = math.nan
    rec["level_db"] = -math.inf
    pub.publish_record(rec)
    assert sub.poll(2000)
    got = _strict(sub.recv_multipart()[1])
    assert got["emotion"]["valence"] is None
    assert got["level_db"] == wire.LEVEL_FLOOR_DB
    assert pub.stats["nonfinite"] >= 2


def test_a_subscriber_that_never_reads_neither_blocks_nor_starves_the_others(
    ctx: zmq.Context,
) -> None:
    n = 10_000
    with ZmqPublisher("tcp://127.0.0.1:*", 10, manifest=MANIFEST) as pub:
        stalled = _subscriber(ctx, pub.endpoint, wire.TOPIC_PREFIX, RCVHWM=1, RCVBUF=4096)
        _await_meta(pub, stalled)
        reader = _subscriber(ctx, pub.endpoint, wire.TOPIC_ESTIMATE)
        seen: list[int] = []
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                if reader.poll(20):
                    seen.append(_strict(reader.recv_multipart()[1])["seq"])

        # Let the reader's subscription reach the publisher before the flood.
        deadline = time.monotonic() + 5
        while pub.stats["subscriptions"] < 2 and time.monotonic() < deadline:
            pub.poll()
            time.sleep(0.01)
        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        try:
            start = time.monotonic()
            # 4 KiB per record: 40 MiB in all, more than the kernel's socket buffers can hide.
            pad = "x" * 4096
            for k in range(n):
                pub.publish_record({**SAMPLE_RECORD, "seq": k, "pad": pad})
            elapsed = time.monotonic() - start
            assert elapsed < 15.0, f"publishing {n} records took {elapsed:.1f} s"
            assert pub.stats["dropped"] > 0
            # The stalled subscriber's queue stays full, yet the reader still gets new records.
            time.sleep(0.2)
            pub.publish_record({**SAMPLE_RECORD, "seq": n})
            deadline = time.monotonic() + 5
            while n not in seen and time.monotonic() < deadline:
                time.sleep(0.01)
            assert n in seen
        finally:
            stop.set()
            thread.join()
        got = 0
        while stalled.poll(100):
            got += stalled.recv_multipart()[0] == b"streamtag.estimate"
        assert got < n  # it did miss records: they were dropped, not queued without bound
        stalled.close()
        reader.close()


@pytest.mark.parametrize("endpoint", ["tcp://not an endpoint", "bogus://x", "tcp://10.255.0.1:5"])
def test_bad_endpoint_is_a_config_error_naming_it(endpoint: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(repr(endpoint))):
        ZmqPublisher(endpoint, 10)


def test_endpoint_in_use_is_a_config_error(pub: ZmqPublisher) -> None:
    with pytest.raises(ConfigError) as err:
        ZmqPublisher(pub.endpoint, 10)
    assert pub.endpoint in str(err.value)
    assert "in use" in str(err.value)


@pytest.mark.parametrize("t", [None, 9.25])
def test_fast_lane_json_from_the_template_equals_json_dumps(t: float | None) -> None:
    from streamtag.publish.zmq import _fast_template

    values = {"loudness": -20.123456789, "centroid": 1234.5, "flatness": 1e-07, "onset": 0.0}
    stream = 'voix "é" {1}'
    expected: dict[str, Any] = {"stream": stream}
    if t is not None:
        expected["t"] = t
    expected.update(wall=1763768400.25, values=values)
    times = [1763768400.25] if t is None else [t, 1763768400.25]
    text = _fast_template(stream, t is not None, tuple(values)).format(*times, *values.values())
    assert text == json.dumps(expected, separators=(",", ":"), ensure_ascii=False)


def test_topics_nobody_subscribes_to_are_not_sent_until_someone_does(
    pub: ZmqPublisher, ctx: zmq.Context
) -> None:
    meta = _subscriber(ctx, pub.endpoint, wire.TOPIC_META)
    _await_meta(pub, meta)
    sent = pub.stats["sent"]
    pub.publish_fast("main", 1763768400.25, {"loudness": -20.0}, t=9.25)
    pub.publish_record(SAMPLE_RECORD)
    assert pub.stats["sent"] == sent  # nothing matched: not even encoded
    fast = _subscriber(ctx, pub.endpoint, wire.TOPIC_FAST)
    deadline = time.monotonic() + 5
    while pub.stats["subscriptions"] < 2 and time.monotonic() < deadline:
        pub.poll()
        time.sleep(0.01)
    pub.publish_fast("main", 1763768400.5, {"loudness": -20.0}, t=9.5)
    assert fast.poll(2000)
    topic, payload = fast.recv_multipart()
    assert topic == b"streamtag.fast" and _strict(payload)["t"] == 9.5
    assert pub.stats["sent"] == sent + 1
    # The last subscriber of a topic leaves: XPUB withdraws it, and sending stops again.
    fast.close(linger=0)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        before = pub.stats["sent"]
        pub.publish_fast("main", 1763768401.0, {"loudness": -20.0}, t=10.0)
        if pub.stats["sent"] == before:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("still sending to a subscriber that left")
