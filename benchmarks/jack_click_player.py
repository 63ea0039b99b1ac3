"""A JACK client that plays one-sample clicks at known positions and logs when each block left.

Run by ``bench_daemon.py`` as a child process (PortAudio never loads in the benchmark process;
see ``tests/audio/jack_harness.py`` for why)::

    python jack_click_player.py CLIENT CONFIG_JSON

CONFIG_JSON: ``{"positions": [frames...], "amplitude": 0.8, "channels": 2, "rate": 48000,
"max_s": 90}``. Protocol on stdin/stdout: prints ``READY <client name>``; on ``GO`` starts the
stream (position 0 is the first sample of the first callback); on ``STOP`` (or after ``max_s``)
stops and prints one JSON line ``{"callbacks": [[position, frames, t_monotonic], ...],
"clicks_written": n, "underflows": n, "lost_log_entries": n}``.

``t_monotonic`` is ``time.monotonic()`` [s] (CLOCK_MONOTONIC, shared by every process on the
machine) taken when the callback has filled the block, i.e. when the block is handed to JACK;
the capture client downstream reads it in the same JACK cycle. Silence everywhere else, so the
daemon's fast lane sees exact zeros between clicks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
import threading
import time
from typing import Any

import numpy as np


def main(client: str, config: dict[str, Any]) -> None:
    lib = ctypes.CDLL(ctypes.util.find_library("portaudio"))
    name = ctypes.create_string_buffer(client.encode())
    lib.PaJack_SetClientName(name)  # before PortAudio starts, i.e. before sounddevice loads

    import sounddevice as sd

    rate = int(config["rate"])
    channels = int(config["channels"])
    amplitude = float(config["amplitude"])
    positions = np.asarray(sorted(config["positions"]), dtype=np.int64)
    max_s = float(config["max_s"])
    # Sized up front: one entry per callback, callbacks never shorter than 32 frames.
    size = int(max_s * rate / 32) + 64
    log_pos = np.zeros(size, np.int64)
    log_frames = np.zeros(size, np.int64)
    log_t = np.zeros(size, np.float64)
    state = {"n": 0, "position": 0, "next_click": 0, "clicks": 0, "underflows": 0, "lost": 0}

    actual = ctypes.c_char_p()
    lib.PaJack_GetClientName(ctypes.byref(actual))
    apis = [h["name"] for h in sd.query_hostapis()]
    device = next(
        d["index"]
        for d in sd.query_devices()
        if apis[d["hostapi"]].startswith("JACK") and d["max_output_channels"] >= channels
    )

    def callback(outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        outdata.fill(0.0)
        start = state["position"]
        k = state["next_click"]
        while k < positions.size and positions[k] < start + frames:
            if positions[k] >= start:
                outdata[positions[k] - start, :] = amplitude
                state["clicks"] += 1
            k += 1
        state["next_click"] = k
        state["position"] = start + frames
        if status.output_underflow:
            state["underflows"] += 1
        n = state["n"]
        if n < size:
            log_pos[n], log_frames[n], log_t[n] = start, frames, time.monotonic()
            state["n"] = n + 1
        else:
            state["lost"] += 1

    stream = sd.OutputStream(device=device, channels=channels, samplerate=rate, dtype="float32",
                             blocksize=0, callback=callback)
    print("READY", actual.value.decode(), flush=True)
    if sys.stdin.readline().strip() != "GO":
        os._exit(0)
    stream.start()
    stop = threading.Event()

    def wait_stop() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_stop, daemon=True).start()
    stop.wait(max_s)
    stream.stop()
    stream.close()
    n = state["n"]
    out = {
        "callbacks": [[int(p), int(f), float(t)] for p, f, t in
                      zip(log_pos[:n], log_frames[:n], log_t[:n], strict=True)],
        "clicks_written": state["clicks"],
        "underflows": state["underflows"],
        "lost_log_entries": state["lost"],
    }
    print(json.dumps(out), flush=True)
    sd._terminate()  # close the JACK client while the server is surely alive
    os._exit(0)  # skip interpreter teardown: PortAudio's aborts if the server has gone


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: jack_click_player.py CLIENT CONFIG_JSON", file=sys.stderr)
        sys.exit(64)
    main(sys.argv[1], json.loads(sys.argv[2]))
