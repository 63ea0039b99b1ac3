"""`streamtag monitor`: a live terminal view of a running daemon, subscribed over ZeroMQ."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

import zmq

from streamtag.publish import wire

BAR = 24


def bar(value: float, lo: float, hi: float, width: int = BAR) -> str:
    """A text bar for value in [lo, hi]; centred (from the middle) when lo < 0 < hi."""
    frac = 0.0 if hi == lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    if lo < 0 < hi:
        mid = width // 2
        pos = round(frac * width)
        cells = [" "] * width
        for i in range(min(mid, pos), max(mid, pos)):
            cells[i] = "█"
        cells[mid] = "│" if cells[mid] == " " else cells[mid]
        return "".join(cells)
    filled = round(frac * width)
    return "█" * filled + "·" * (width - filled)


def render(records: dict[str, dict], status: dict | None) -> str:
    """The screen for the latest record of each stream and the latest status."""
    lines = []
    for stream, r in records.items():
        silent = "  (silent)" if r.get("silent") else ""
        lines.append(f"── {stream}  t={r.get('t', 0):8.2f} s  seq={r.get('seq')}  "
                     f"level {r.get('level_db', -160):6.1f} dBFS{silent}")
        e = r.get("emotion")
        if e:
            lines.append(f"  valence {e['valence']:+.2f} [{bar(e['valence'], -1, 1)}]")
            lines.append(f"  arousal {e['arousal']:+.2f} [{bar(e['arousal'], -1, 1)}]"
                         f"  quadrant {e.get('quadrant')} {e.get('label', '')}")
        i = r.get("instrument")
        if i:
            lines.append(f"  instrument {i['top']} ({i['confidence']:.2f})")
            top3 = sorted(i["probs"].items(), key=lambda kv: -kv[1])[:3]
            for name, p in top3:
                lines.append(f"    {name:26s} [{bar(p, 0, 1)}] {p:.2f}")
        t = r.get("timbre")
        if t:
            for name in wire.TIMBRE_NAMES:
                if name in t:
                    lines.append(f"  {name:10s} [{bar(t[name], 0, 1)}] {t[name]:.2f}")
        tags = r.get(wire.HEAD_TAGS)
        if tags:
            top3 = sorted(tags.items(), key=lambda kv: -kv[1])[:3]
            lines.append("  tags " + ", ".join(f"{name} {p:.2f}" for name, p in top3))
        if wire.KEY_NOVELTY in r:
            n = r[wire.KEY_NOVELTY]
            lines.append(f"  novelty    [{bar(n, 0, 1)}] {n:.2f}")
        ref = r.get(wire.KEY_REFERENCE)
        if ref and ref.get(wire.REFERENCE_DISTANCE) is not None:
            what = ref[wire.REFERENCE_NAME] or f"new (nearest {ref[wire.REFERENCE_NEAREST]})"
            lines.append(f"  reference  {what}, distance {ref[wire.REFERENCE_DISTANCE]:.2f}")
    if status:
        lat = status.get("latency_ms") or {}
        lines.append(f"── status: up {status.get('uptime_s', 0):.0f} s, hops {status.get('hops')}, "
                     f"overflows {status.get('overflows')}, dropped {status.get('dropped')}, "
                     f"latency p50/p99 {lat.get('p50')}/{lat.get('p99')} ms, "
                     f"checkpoint {status.get('checkpoint')}"
                     f"{', PAUSED' if status.get('paused') else ''}")
        inp = status.get("input") or {}
        lines.append(f"   input: {inp.get('status')}")
    return "\n".join(lines)


def monitor(endpoint: str, out: TextIO = sys.stdout, max_updates: int | None = None,
            timeout_s: float | None = None) -> int:
    """Subscribe to ``endpoint`` and redraw on each estimate; Ctrl-C ends. Returns exit code."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    for topic in (wire.TOPIC_ESTIMATE, wire.TOPIC_STATUS):
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    records: dict[str, dict] = {}
    status: dict[str, Any] | None = None
    updates = 0
    interactive = out.isatty()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    if interactive:
        out.write(f"waiting for {endpoint} … (Ctrl-C to quit)\n")
    try:
        while max_updates is None or updates < max_updates:
            if deadline is not None and time.monotonic() > deadline:
                break
            if not sock.poll(200):
                continue
            topic, payload = sock.recv_multipart()
            msg = json.loads(payload)
            if topic.decode() == wire.TOPIC_STATUS:
                status = msg
                continue
            records[msg.get("stream", "main")] = msg
            screen = render(records, status)
            out.write(("\x1b[H\x1b[2J" + screen + "\n") if interactive else screen + "\n\n")
            out.flush()
            updates += 1
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0
