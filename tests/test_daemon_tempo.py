"""Tempo and beat from the running daemon: a click file in, /streamtag/beat and /streamtag/tempo
out over OSC (received by oscdump), streamtag.beat and the records' tempo over ZeroMQ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from support import run_file_through_daemon
from test_tempo import click_track

from streamtag.checkpoint import load_checkpoint
from streamtag.engine import Engine


def test_daemon_fed_a_click_file_publishes_beats_and_tempo(
    tmp_path: Path, tiny_default_path: Path
) -> None:
    rate, bpm = 44100, 120.0
    x, clicks = click_track(bpm, 10.0, rate)
    wav = tmp_path / "clicks.wav"
    sf.write(wav, x, rate, subtype="FLOAT")
    # The fast lane off: read as fast as possible, its 500 bundles would overrun oscdump's
    # socket buffer. Beats are sent whenever tempo tracking is on.
    sub, lines = run_file_through_daemon(tmp_path, wav, tiny_default_path,
                                         fast={"enabled": False})

    # OSC, as oscdump prints it: "<timetag> /streamtag/beat i <count>".
    beat_lines = [ln.split() for ln in lines if " /streamtag/beat i " in ln]
    counts = [int(p[-1]) for p in beat_lines]
    assert len(counts) >= 14  # 20 clicks; the first beats come once the tempo is known
    assert counts == list(range(1, len(counts) + 1))
    tempo_lines = [ln.split() for ln in lines if " /streamtag/tempo ff " in ln]
    assert len(tempo_lines) == 20  # one per 0.5 s hop
    assert abs(float(tempo_lines[-1][-2]) / bpm - 1.0) <= 0.02
    assert float(tempo_lines[-1][-1]) > 0.5  # confidence
    # Each beat in its own bundle, timetagged: oscdump prints the timetag, not "immediately".
    assert all(p[0] != "00000000.00000001" for p in beat_lines)

    # ZeroMQ: the same beats, at the stream times the engine computes for the file.
    beats = sub.topic("streamtag.beat")
    assert [b["beat"] for b in beats] == counts
    audio, _ = sf.read(wav, dtype="float32")
    expected = Engine(load_checkpoint(tiny_default_path), input_rate_hz=rate).process(audio).beats
    assert [b["t"] for b in beats] == [b.t for b in expected]
    assert all(np.min(np.abs(clicks - b["t"])) <= 0.030 for b in beats if b["t"] >= 6.0)
    records = sub.topic("streamtag.estimate")
    assert records[-1]["tempo"]["last_beat_t"] == beats[-1]["t"]
    assert abs(records[-1]["tempo"]["bpm"] / bpm - 1.0) <= 0.02
    manifest = sub.topic("streamtag.meta")[0]
    addresses = {a["address"] for a in manifest["osc"]["addresses"]}
    assert {"/streamtag/tempo", "/streamtag/beat"} <= addresses
