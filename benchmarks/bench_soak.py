"""Soak: hours of audio through the daemon at accelerated speed, with hostile control traffic
and subscriber churn; RSS, latency and hop continuity sampled all along.

Prints a table and writes benchmarks/results/soak.json.
Run: nice -n 19 python benchmarks/bench_soak.py [--audio-hours 8] [--max-wall-s 1800]

Pacing: the daemon reads ``synthetic:noise`` with ``input.realtime: false``, i.e. as fast as
it can analyse (a file input is paced the same way with ``--no-realtime``): stream time runs at
whatever multiple of real time the machine allows. "8 hours of audio" is 8 hours analysed:
57,600 hops, each published over OSC and ZeroMQ, the fast lane included. Stream time runs
further: while paused, the daemon reads such a source and drops it unanalysed at full speed.
The run stops at ``--audio-hours`` analysed or ``--max-wall-s``, whichever comes first.

Meanwhile, on the wall clock:
- control traffic: every 0.25 s one of reset, reload, describe, pause+resume, an unknown
  address, random bytes; every 20 s a burst of 300 reloads (they coalesce; see the README);
- subscriber churn: a subscriber connects, subscribes to random topics, reads for 0.1–1 s and
  leaves, again and again; every 30 s another process tries a 1 MB subscription (refused by libzmq);
- one steady subscriber records every estimate (its ``seq`` must have no gap and its
  ``latency_ms``), every status (stream time, latency p50/p99, counters) and the daemon's RSS
  from /proc every second.

Reported per tenth of the run: stream time reached, speed (× real time), RSS, hops, the
records' latency p50/p99/max, reloads applied and refused, control messages rate-limited,
ZeroMQ drops. RSS growth is given per audio hour from the second tenth on (the first holds
start-up and warm-up allocations).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml
import zmq
from pythonosc.osc_message_builder import OscMessageBuilder

OUT = Path(__file__).parent / "results" / "soak.json"
OVERSIZED = """import os, resource, time, zmq
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
s = zmq.Context().socket(zmq.SUB)
s.connect({endpoint!r})
s.setsockopt(zmq.SUBSCRIBE, b"\\0" * 1_000_000)
time.sleep(1.0)
os._exit(0)
"""


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def control_traffic(port: int, stop: threading.Event, rng: random.Random,
                    sent: dict[str, int]) -> None:
    def msg(cmd: str) -> bytes:
        return OscMessageBuilder(f"/streamtag/control/{cmd}").build().dgram

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        next_burst = time.monotonic() + 20
        while not stop.wait(0.25):
            kind = rng.choice(["reset", "reload", "describe", "pause", "unknown", "garbage"])
            if kind == "pause":
                s.sendto(msg("pause"), ("127.0.0.1", port))
                time.sleep(0.05)
                s.sendto(msg("resume"), ("127.0.0.1", port))
            elif kind == "unknown":
                s.sendto(OscMessageBuilder("/streamtag/nope").build().dgram, ("127.0.0.1", port))
            elif kind == "garbage":
                s.sendto(rng.randbytes(rng.randrange(1, 1500)), ("127.0.0.1", port))
            else:
                s.sendto(msg(kind), ("127.0.0.1", port))
            sent[kind] = sent.get(kind, 0) + 1
            try:  # describe replies: read and drop
                while True:
                    s.recv(65535)
            except (BlockingIOError, OSError):
                pass
            if time.monotonic() >= next_burst:
                next_burst += 20
                for _ in range(300):
                    s.sendto(msg("reload"), ("127.0.0.1", port))
                    time.sleep(0.001)
                sent["burst"] = sent.get("burst", 0) + 1


def churn(endpoint: str, stop: threading.Event, rng: random.Random, counts: dict[str, int]
          ) -> None:
    ctx = zmq.Context.instance()
    topics = [b"streamtag.", b"streamtag.fast", b"streamtag.estimate", b"streamtag.meta",
              b"streamtag.status", b"", b"streamtag.emotion"]
    next_big = time.monotonic() + 30
    while not stop.is_set():
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        for t in rng.sample(topics, rng.randrange(1, 4)):
            sock.setsockopt(zmq.SUBSCRIBE, t)
        if time.monotonic() >= next_big:
            next_big += 30
            # In a process of its own: libzmq may crash in the client it disconnects.
            subprocess.Popen([sys.executable, "-c", OVERSIZED.format(endpoint=endpoint)])
            counts["oversized"] = counts.get("oversized", 0) + 1
        end = time.monotonic() + rng.uniform(0.1, 1.0)
        while time.monotonic() < end and not stop.is_set():
            if sock.poll(20):
                sock.recv_multipart()
                counts["received"] = counts.get("received", 0) + 1
        sock.close()
        counts["subscribers"] = counts.get("subscribers", 0) + 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio-hours", type=float, default=8.0, help="stream time to run [h]")
    ap.add_argument("--max-wall-s", type=float, default=1800.0, help="wall-clock cap [s]")
    ap.add_argument("--checkpoint", help="checkpoint (default: the bundled model)")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    zmq_port, osc_port, control_port = (free_port(socket.SOCK_STREAM),
                                        free_port(socket.SOCK_DGRAM),
                                        free_port(socket.SOCK_DGRAM))
    endpoint = f"tcp://127.0.0.1:{zmq_port}"
    cfg = {"input": {"device": "synthetic:noise", "realtime": False},
           "outputs": {"zmq": {"endpoint": endpoint, "hwm": 100000},
                       "osc": {"targets": [{"host": "127.0.0.1", "port": osc_port}]}},
           "control": {"port": control_port}}
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    config = tmp / "soak.yaml"
    config.write_text(yaml.safe_dump(cfg))
    ctx = zmq.Context.instance()
    steady = ctx.socket(zmq.SUB)
    steady.setsockopt(zmq.RCVHWM, 0)
    steady.connect(endpoint)
    for t in (b"streamtag.estimate", b"streamtag.status"):
        steady.setsockopt(zmq.SUBSCRIBE, t)
    cmd = [sys.executable, "-m", "streamtag.cli", "run", "--config", str(config)]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    # The daemon's log to a file: a pipe nobody reads fills after ~800 lines (64 KB) and then
    # blocks the daemon's next log line, and with it the loop (the first soak stalled so).
    log_path = tmp / "daemon.log"
    log_file = open(log_path, "w")  # closed below, after the daemon
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_file)
    stop = threading.Event()
    sent: dict[str, int] = {}
    counts: dict[str, int] = {}
    threads = [threading.Thread(target=control_traffic, args=(control_port, stop,
                                                              random.Random(args.seed), sent)),
               threading.Thread(target=churn, args=(endpoint, stop, random.Random(args.seed + 1),
                                                    counts))]
    samples: list[dict] = []  # one per wall second
    records: list[tuple[float, int, float, float]] = []  # (t, seq, latency_ms, wall arrival)
    status: dict = {}
    start = time.monotonic()
    started = False
    target_s = args.audio_hours * 3600
    next_sample = start
    seq_gaps = 0
    last_status: dict = {}
    last_progress = time.monotonic()
    stalled = False
    last_seq: int | None = None
    try:
        while proc.poll() is None and time.monotonic() - start < args.max_wall_s + (
                0 if started else 300):  # start-up (loading torch) is not counted
            if steady.poll(50):
                topic, payload = steady.recv_multipart()
                msg = json.loads(payload)
                if topic == b"streamtag.estimate":
                    # seq restarts at 0 after a reset or a reload (a fresh engine state)
                    if last_seq is not None and msg["seq"] not in (0, last_seq + 1):
                        seq_gaps += 1
                    last_seq = msg["seq"]
                    records.append((msg["t"], msg["seq"], msg["latency_ms"], time.monotonic()))
                    if not started:
                        started = True
                        start = next_sample = time.monotonic()
                        samples.clear()
                        for t in threads:
                            t.start()
                else:
                    status = msg
            now = time.monotonic()
            if now >= next_sample and status:
                next_sample = now + 1.0
                samples.append({"wall_s": round(now - start, 2),
                                "stream_s": status["input"]["stream_time_s"],
                                "rss_mb": round(rss_mb(proc.pid), 1), "hops": status["hops"],
                                "reloads": status["reloads"],
                                "reloads_refused": status["reloads_refused"],
                                "rate_limited": (status["control"] or {}).get("rate_limited", 0),
                                "dropped": status["dropped"], "paused": status["paused"],
                                "latency": status["latency_ms"]})
                if status["hops"] * 0.5 >= target_s:  # hours of audio analysed (0.5 s hops)
                    break
                if status is not last_status:
                    last_status, last_progress = status, now
                elif now - last_progress > 15 and not stalled:
                    # No status for 15 s: the loop is stuck. Every thread's stack to stderr.
                    stalled = True
                    proc.send_signal(signal.SIGUSR1)
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log_file.close()
        err = log_path.read_text(errors="replace")
        if stalled:
            (args.out.parent / "soak-stall-stderr.txt").write_text(err[-200_000:])
        steady.close()
    if not samples:
        print(err[-3000:], file=sys.stderr)
        return 1

    wall = samples[-1]["wall_s"]
    stream = samples[-1]["stream_s"]
    rows = []
    n = len(samples)
    for k in range(10):
        seg = samples[k * n // 10:(k + 1) * n // 10]
        if not seg:
            continue
        t0, t1 = seg[0]["wall_s"], seg[-1]["wall_s"]
        lat = np.array([r[2] for r in records if t0 <= r[3] - start <= t1] or [np.nan])
        rows.append({"tenth": k + 1, "wall_s": t1, "stream_h": round(seg[-1]["stream_s"] / 3600, 3),
                     "speed_x": round((seg[-1]["stream_s"] - seg[0]["stream_s"])
                                      / max(1e-9, t1 - t0), 1),
                     "rss_mb": seg[-1]["rss_mb"], "rss_max_mb": max(s["rss_mb"] for s in seg),
                     "hops": seg[-1]["hops"],
                     "latency_p50_ms": round(float(np.nanpercentile(lat, 50)), 2),
                     "latency_p99_ms": round(float(np.nanpercentile(lat, 99)), 2),
                     "latency_max_ms": round(float(np.nanmax(lat)), 2),
                     "reloads": seg[-1]["reloads"], "refused": seg[-1]["reloads_refused"],
                     "rate_limited": seg[-1]["rate_limited"], "dropped": seg[-1]["dropped"]})
    second = samples[n // 10] if n >= 10 else samples[0]
    growth_per_h = ((samples[-1]["rss_mb"] - second["rss_mb"])
                    / max(1e-9, (stream - second["stream_s"]) / 3600))
    lat_all = np.array([r[2] for r in records])
    arrivals = np.array([r[3] for r in records])
    result = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "audio_hours_asked": args.audio_hours, "max_wall_s": args.max_wall_s,
        "audio_hours_run": round(stream / 3600, 3), "wall_s": wall,
        "speed_x": round(stream / max(1e-9, wall), 1), "exit_code": code,
        "hops": samples[-1]["hops"], "records_received": len(records), "seq_gaps": seq_gaps,
        # Hops analysed [h of audio]; the rest of the stream time fell into pauses: a paused
        # daemon reads an as-fast-as-possible source and drops it, unanalysed, at full speed.
        "audio_hours_analysed": round(samples[-1]["hops"] * 0.5 / 3600, 3),
        "paused_share_of_samples": round(sum(s["paused"] for s in samples) / len(samples), 3),
        "rss_mb": {"first": samples[0]["rss_mb"], "after_first_tenth": second["rss_mb"],
                   "last": samples[-1]["rss_mb"], "max": max(s["rss_mb"] for s in samples),
                   "growth_per_audio_hour_mb": round(growth_per_h, 2)},
        "latency_ms": {"p50": round(float(np.percentile(lat_all, 50)), 2),
                       "p99": round(float(np.percentile(lat_all, 99)), 2),
                       "max": round(float(lat_all.max()), 2)},
        "max_wall_gap_between_records_s": round(float(np.diff(arrivals).max()), 3)
        if len(arrivals) > 1 else None,
        "stalled": stalled, "control_sent": sent, "churn": counts,
        "reloads": samples[-1]["reloads"], "reloads_refused": samples[-1]["reloads_refused"],
        "rate_limited": samples[-1]["rate_limited"], "dropped": samples[-1]["dropped"],
        "tenths": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")

    cols = ["tenth", "wall_s", "stream_h", "speed_x", "rss_mb", "rss_max_mb", "hops",
            "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "reloads", "refused",
            "rate_limited", "dropped"]
    print(" ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print(" ".join(f"{r[c]!s:>14}" for c in cols))
    print(f"\n{result['audio_hours_run']} h of audio ({result['audio_hours_analysed']} h "
          f"analysed, paused in {result['paused_share_of_samples']:.0%} of the samples) "
          f"in {wall:.0f} s ({result['speed_x']}× real "
          f"time); exit {code}; {result['hops']} hops, {len(records)} records received, "
          f"{seq_gaps} seq gaps; RSS {result['rss_mb']}; latency {result['latency_ms']}; "
          f"longest wall gap between records {result['max_wall_gap_between_records_s']} s")
    print(f"control sent {sent}; churn {counts}; written {args.out}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
