"""The daemon's pieces that need no process: smoothing of estimates, reload's restart-only keys."""

from __future__ import annotations

import numpy as np
import pytest

from streamtag.config import config_from_dict
from streamtag.daemon import keep_restart_only, make_mapper
from streamtag.estimate import HopEstimate, to_record
from streamtag.model import EMOTION_HEAD, INSTRUMENT_HEAD
from streamtag.publish.smoothing import EstimateSmoother

# In-process daemons here need no browser view or OSCQuery (their default ports may be taken).
NO_WEB = {"web": {"enabled": False}, "oscquery": {"enabled": False}}


def record(valence: float, arousal: float, violin: float) -> HopEstimate:
    """A hop's estimate with these emotion values and violin probability."""
    probs = {c: (1 - violin) / 7 for c in INSTRUMENT_HEAD.labels}
    probs["violin"] = violin
    return HopEstimate(seq=0, t=0.5, stream="main", wall=0.0, level_db=-20.0, silent=False,
                       heads={"emotion": np.array([valence, arousal]),
                              "instrument": np.array([probs[c] for c in INSTRUMENT_HEAD.labels])})


def smoothed(smooth: EstimateSmoother, est: HopEstimate) -> dict:
    """The record the daemon sends over OSC for ``est``."""
    return to_record(smooth(est), [EMOTION_HEAD, INSTRUMENT_HEAD], 0.0)


def test_exponential_smoothing_moves_a_time_constant_per_step_and_keeps_labels_consistent() -> None:
    cfg = config_from_dict({"outputs": {"osc": {"smoothing": {"kind": "exp", "time_s": 0.5}}}})
    smooth = EstimateSmoother(cfg.outputs.osc.smoothing, hop_s=0.5,
                              heads=[EMOTION_HEAD, INSTRUMENT_HEAD])
    first = smoothed(smooth, record(0.8, 0.8, 0.9))
    assert first["emotion"]["valence"] == pytest.approx(0.8)  # the first value passes
    second = smoothed(smooth, record(-0.8, -0.8, 0.0))
    # One time constant per hop: 63 % of the step.
    assert second["emotion"]["valence"] == pytest.approx(0.8 - 1.6 * 0.632, abs=1e-3)
    assert second["emotion"]["quadrant"] == 3 and second["emotion"]["label"] == "sad"
    assert second["instrument"]["top"] == max(second["instrument"]["probs"],
                                              key=second["instrument"]["probs"].get)
    smooth.reset()
    assert smoothed(smooth, record(-0.8, -0.8, 0.0))["emotion"]["valence"] == pytest.approx(-0.8)


def test_no_smoothing_passes_the_record_through() -> None:
    smooth = EstimateSmoother(config_from_dict({}).outputs.osc.smoothing, 0.5, [EMOTION_HEAD])
    rec = record(0.1, 0.2, 0.3)
    assert smooth(rec) is rec


def test_reload_keeps_what_only_a_restart_can_change() -> None:
    old = config_from_dict({"outputs": {"zmq": {"endpoint": "tcp://127.0.0.1:6000"}}})
    new = config_from_dict({"outputs": {"zmq": {"endpoint": "tcp://127.0.0.1:7000"}},
                            "analysis": {"silence_db": -40}})
    kept = keep_restart_only(old, new)
    assert kept.outputs.zmq.endpoint == "tcp://127.0.0.1:6000"
    assert kept.analysis.silence_db == -40


def test_mappings_are_built_from_the_config() -> None:
    cfg = config_from_dict({"outputs": {"osc": {"mappings": [
        {"source": "timbre.brightness", "to": "/synth/cutoff", "range": [200, 8000],
         "curve": "exp"}]}}})
    mapper = make_mapper(cfg, 0.5)
    out = mapper.process({"stream": "main", "timbre": {"brightness": 1.0}})
    assert [(m.address, m.values, m.targets) for m in out] == [
        ("/synth/cutoff", (pytest.approx(8000),), None)]


def test_monitor_shows_a_running_daemon(tmp_path, data_dir) -> None:
    import io

    from support import base_config, start_daemon

    from streamtag.monitor import monitor

    cfg, endpoint = base_config(tmp_path)
    cfg["input"] = {"device": "synthetic:sine", "sample_rate_hz": 22050, "realtime": True}
    proc = start_daemon(["--checkpoint", str(data_dir / "tiny-default.safetensors")], cfg,
                        tmp_path)
    out = io.StringIO()
    try:
        assert monitor(endpoint, out=out, max_updates=3, timeout_s=60) == 0
    finally:
        proc.terminate()
        proc.wait(10)
    screen = out.getvalue()
    assert "valence" in screen and "arousal" in screen and "instrument" in screen
    assert "brightness" in screen and "█" in screen


def test_daemon_holds_blas_to_one_thread_and_freezes_startup_objects(data_dir) -> None:
    """The live loop's stalls that are not its own work: BLAS worker threads taking the audio's
    core, and full garbage collections walking torch's objects."""
    import gc

    from threadpoolctl import threadpool_info

    from streamtag.daemon import Daemon

    cfg = config_from_dict({
        "input": {"file": str(data_dir / "signal.wav"), "realtime": False},
        "model": {"checkpoint": str(data_dir / "tiny-default.safetensors")},
        "outputs": {"osc": {"enabled": False}, "zmq": {"enabled": False}, **NO_WEB},
        "control": {"enabled": False},
    })
    gc.unfreeze()
    try:
        daemon = Daemon(cfg)
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
        assert daemon.run() == 0
        assert daemon.counters.hops == 6  # the 3 s signal, 0.5 s hops
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.mark.parametrize(("fast", "frames"), [({"rate_hz": 50.0}, 1), ({"rate_hz": 25.0}, 2),
                                              ({"enabled": False}, 25)])
def test_the_loop_waits_for_the_frames_whose_results_go_out(data_dir, fast, frames) -> None:
    """The loop asks its source for input up to the next frame it publishes: each fast-lane
    frame sent, or the hop's last. A fast lane at 25 Hz halves the wakeups; none leaves two a
    second. The records stay those of the whole signal."""
    from support import free_port

    from streamtag.daemon import Daemon

    cfg = config_from_dict({
        "input": {"file": str(data_dir / "signal.wav"), "realtime": False},
        "model": {"checkpoint": str(data_dir / "tiny-default.safetensors")},
        "outputs": {"osc": {"targets": [{"host": "127.0.0.1", "port": free_port()}],
                            "fast": fast},
                    "zmq": {"enabled": False}, **NO_WEB},
        "control": {"enabled": False},
    })
    daemon = Daemon(cfg)
    asked: list[int] = []
    read = daemon.source.read

    def recording_read(max_frames: int, timeout_s: float, min_frames: int = 1):  # type: ignore[no-untyped-def]
        asked.append(min_frames)
        return read(max_frames, timeout_s, min_frames)

    daemon.source.read = recording_read  # type: ignore[method-assign]
    assert daemon.run() == 0
    assert asked[0] == frames * 441  # 22.05 kHz input: a frame is 441 samples
    assert daemon.counters.hops == 6


def test_a_slower_fast_lane_keeps_every_onset(data_dir) -> None:
    """At 12.5 Hz the fast lane sends every 4th frame: its onset is the strongest of the 4
    frames since the previous message (a click lives in one frame), the rest are the sent
    frame's own values."""
    from support import free_port

    from streamtag.daemon import Daemon

    cfg = config_from_dict({
        "input": {"file": str(data_dir / "signal.wav"), "realtime": False},
        "model": {"checkpoint": str(data_dir / "tiny-default.safetensors")},
        "outputs": {"osc": {"targets": [{"host": "127.0.0.1", "port": free_port()}],
                            "fast": {"rate_hz": 12.5}},
                    "zmq": {"enabled": False}, **NO_WEB},
        "control": {"enabled": False},
    })
    daemon = Daemon(cfg)
    frames: list[np.ndarray] = []
    sent: list[dict[str, float]] = []
    publish, send = daemon._publish_fast, daemon.osc.send_fast  # type: ignore[union-attr]

    def recording_publish(fast):  # type: ignore[no-untyped-def]
        frames.append(fast[0].values.copy())
        publish(fast)

    def recording_send(stream, wall, values):  # type: ignore[no-untyped-def]
        sent.append(dict(values))
        send(stream, wall, values)

    daemon._publish_fast = recording_publish  # type: ignore[method-assign]
    daemon.osc.send_fast = recording_send  # type: ignore[union-attr, method-assign]
    assert daemon.run() == 0
    values = np.concatenate(frames)
    groups = values[: len(sent) * 4].reshape(len(sent), 4, -1)
    names = list(sent[0])
    onset = names.index("onset")
    got = np.array([[s[n] for n in names] for s in sent])
    np.testing.assert_allclose(got[:, onset], groups[:, :, onset].max(axis=1), rtol=1e-6)
    others = [k for k in range(len(names)) if k != onset]
    np.testing.assert_allclose(got[:, others], groups[:, -1, others], rtol=1e-6)
    # The signal has onsets that fall on frames not sent: the hold is what carries them.
    assert np.any(groups[:, :, onset].max(axis=1) > groups[:, -1, onset] + 1e-3)
    assert len(sent) == len(values) // 4


def test_each_stream_drives_a_configured_mapping_through_its_own_smoother() -> None:
    """With several streams, one smoother shared by every stream (the old make_mapper) pulled
    each stream's output towards the others'."""
    cfg = config_from_dict({
        "streams": [{"name": "voice", "channels": [0]}, {"name": "guitar", "channels": [1]}],
        "outputs": {"osc": {"smoothing": {"kind": "exp", "time_s": 1.0}, "mappings": [
            {"source": "timbre.brightness", "to": "/synth/cutoff", "range": [0, 1]},
            {"sources": ["timbre.brightness", "timbre.warmth"], "to": "/g", "range": [0, 1],
             "stream": "guitar"}]}}})
    mapper = make_mapper(cfg, 0.5)
    out: dict[str, list] = {"voice": [], "guitar": []}
    for _ in range(4):
        for stream, x in (("voice", 0.0), ("guitar", 1.0)):
            out[stream] += mapper.process({"stream": stream,
                                           "timbre": {"brightness": x, "warmth": x}})
    assert {m.values for m in out["voice"]} == {(0.0,)}
    assert [m.address for m in out["guitar"]] == ["/synth/cutoff", "/g"] * 4
    assert {m.values for m in out["guitar"]} == {(1.0,), (1.0, 1.0)}


def test_a_reload_cannot_send_mappings_to_targets_only_a_restart_adds() -> None:
    from streamtag.daemon import osc_targets

    old = config_from_dict({"outputs": {"osc": {"targets": [{"name": "synth"}]}}})
    new = config_from_dict({"outputs": {"osc": {
        "targets": [{"name": "synth"}, {"name": "vj", "port": 9100}],
        "mappings": [{"source": "novelty", "to": "/a", "target": "vj"}]}}})
    with pytest.raises(ValueError, match="no OSC target is named 'vj'"):
        make_mapper(keep_restart_only(old, new), 0.5)
    two = config_from_dict({"streams": [{"name": "a"}, {"name": "b"}], "outputs": {"osc": {
        "mappings": [{"source": "novelty", "to": "/a", "stream": "b"}]}}})
    with pytest.raises(ValueError, match=r"mappings\[0\]\.stream: expected one of main"):
        make_mapper(keep_restart_only(old, two), 0.5)
    assert make_mapper(new, 0.5).mappings[0].target == ("vj",)
    assert [(t.name, t.port, t.profile) for t in osc_targets(new)] == [
        ("synth", 9000, "bundle"), ("vj", 9100, "bundle")]
    wek = config_from_dict({"outputs": {"osc": {"targets": [
        {"profile": "wekinator", "inputs": ["novelty"]}]}}})
    assert [(t.port, t.stream) for t in osc_targets(wek)] == [(6448, "main")]
