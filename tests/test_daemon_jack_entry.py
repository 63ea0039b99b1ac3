"""Entry after a pause, end to end: the daemon capturing from a JACK server (dummy backend)
hears silence (then room noise or another piece), then a violin piece, and publishes over
ZeroMQ what ``analyze`` says of the piece alone, from one second into it on (issue 19, item 1;
the engine-level cases are in test_engine_entry.py).

The daemon hears the JACK graph's silence from its start, then the file: 4 s of silence, 4 s of
noise or of a trumpet piece (or nothing), and the piece. Where the piece lands on the daemon's
hop grid depends on when playback began, so the take's start is read from the fast lane (the
first frame above -50 dBFS) and each published hop is compared with the piece's hop whose end is
nearest.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio.jack_harness import SAMPLE_RATE_HZ, JackServer, jack_server, play_into
from scipy.signal import resample_poly
from support import Subscriber, base_config, start_daemon, wait_status
from test_engine_entry import NOISE_DB, agreement, pink_noise

from streamtag.checkpoint import Checkpoint
from streamtag.engine import Engine

pytestmark = pytest.mark.realaudio
__all__ = ["jack_server"]  # the fixture, imported for pytest

PORTS = r"^streamtag(-\d+)?:in_\d+$"
PAUSE_S = 4.0


def daemon_hears(jack_server: JackServer, take: np.ndarray, tmp_path: Path) -> Subscriber:
    """Start the daemon (bundled model) capturing from ``jack_server``, play ``take`` [n] (mono,
    at the server's rate, on both ports) into it, and return what it published over ZeroMQ
    until 1.5 s after the take ended (the last hops)."""
    wav = tmp_path / "take.wav"
    sf.write(wav, np.stack([take, take], axis=1), SAMPLE_RATE_HZ, subtype="FLOAT")
    cfg, endpoint = base_config(tmp_path)
    cfg["input"] = {"device": "system", "sample_rate_hz": SAMPLE_RATE_HZ, "blocksize": 256,
                    "ring_s": 10.0}
    sub = Subscriber(endpoint)
    proc = start_daemon([], cfg, tmp_path)
    try:
        wait_status(sub, lambda s: s["input"]["status"].startswith("running"), proc, 60)
        play_into(PORTS, wav, server=jack_server.name, timeout_s=60)
        time.sleep(1.5)
        sub.drain(100)
    finally:
        proc.terminate()
        proc.wait(10)
        sub.close()
    return sub


@pytest.mark.parametrize("kind", ["silence", "noise", "other"])
def test_live_estimates_after_a_pause_equal_a_fresh_start_on_the_music(
    jack_server: JackServer, tmp_path: Path, bundled: Checkpoint, pieces: dict[str, np.ndarray],
    kind: str
) -> None:
    rate = bundled.frontend.sample_rate_hz
    music = resample_poly(pieces["violin"], SAMPLE_RATE_HZ, rate).astype(np.float32)
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE_HZ), np.float32)
    if kind == "silence":
        pre = np.zeros(0, np.float32)
    elif kind == "noise":
        pre = pink_noise(PAUSE_S, SAMPLE_RATE_HZ, NOISE_DB)
    else:
        other = resample_poly(pieces["trumpet"], SAMPLE_RATE_HZ, rate).astype(np.float32)
        pre = np.tile(other, 2)[: int(PAUSE_S * SAMPLE_RATE_HZ)]
    # Silence, then (noise or another piece, heard from its first loud frame, then) the piece.
    take = np.concatenate([pause, pre, music])
    sub = daemon_hears(jack_server, take, tmp_path)
    published = sub.topic("streamtag.estimate")
    loud = [f for f in sub.topic("streamtag.fast") if f["values"]["loudness"] > -50]
    assert loud, "the daemon never heard the take"
    # The fast-lane frame ends a frame after the first sound (noise crosses -50 dB within a
    # frame or two of its start: tens of ms against the 0.5 s hops compared).
    heard_s = loud[0]["t"] - 0.02
    start_s = heard_s + pre.size / SAMPLE_RATE_HZ  # where the piece starts
    before = [r for r in published if r["t"] <= heard_s]
    assert len(before) >= 2 * PAUSE_S and all(r["silent"] for r in before[-8:])
    fresh = Engine(bundled, input_rate_hz=SAMPLE_RATE_HZ).analyze(music)
    same, dv, n = agreement(published, fresh, start_s)
    assert n >= 12, f"only {n} hops of the piece were published"
    assert same >= 0.95, f"top instrument agrees on {same:.2f} of {n} hops"
    assert dv <= 0.1, f"median |Δvalence| {dv:.3f}"
