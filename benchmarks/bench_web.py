"""What the live view's feed costs the analysis thread, and how late it reaches a browser tab.

Prints a table and writes benchmarks/results/web.json. Run: python benchmarks/bench_web.py

At the daemon's pace (a record every 0.5 s, fast-lane frames at 50 Hz, a status each second) for
``--seconds`` per setting, the publishing thread times each publish call (what the analysis
thread pays) with 0, 1 and 4 WebSocket clients reading, beside the ZeroMQ publisher with one
subscriber; clients time each message from its publish call to its arrival. Records are real
ones (tests/data/golden_records_embedding.jsonl: a tiny checkpoint's heads, tags and embedding).

Target (issue 17): the feed never blocks or slows the analysis thread: a publish call costs
about what a ZeroMQ publish costs, and nothing without clients.
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from pathlib import Path

import numpy as np
import zmq
from websockets.sync.client import connect

from streamtag.publish import wire
from streamtag.publish.web import WebServer
from streamtag.publish.zmq import ZmqPublisher

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "results" / "web.json"
RECORDS = ROOT / "tests" / "data" / "golden_records_embedding.jsonl"
FAST = {"loudness": -23.5, "centroid": 1834.2, "flatness": 0.031, "onset": 0.42}


def pace(publish_record, publish_fast, publish_status, seconds: float,  # type: ignore[no-untyped-def]
         records: list[dict]) -> dict[str, list[float]]:
    """Publish at the daemon's rates; return each call's duration [µs] by kind."""
    cost: dict[str, list[float]] = {"record": [], "fast": [], "status": []}
    start = time.perf_counter()
    frame = 0
    while (now := time.perf_counter()) - start < seconds:
        t = frame * 0.02
        if frame % 25 == 24:
            rec = dict(records[(frame // 25) % len(records)], seq=frame // 25, t=t + 0.02,
                       wall=time.time())
            c0 = time.perf_counter()
            publish_record(rec)
            cost["record"].append((time.perf_counter() - c0) * 1e6)
        c0 = time.perf_counter()
        publish_fast("main", time.time(), dict(FAST), t)
        cost["fast"].append((time.perf_counter() - c0) * 1e6)
        if frame % 50 == 49:
            c0 = time.perf_counter()
            publish_status({"hops": frame // 25, "wall": time.time()})
            cost["status"].append((time.perf_counter() - c0) * 1e6)
        frame += 1
        time.sleep(max(0.0, start + frame * 0.02 - now - 0.0005))
    return cost


def web_client(url: str, stop: threading.Event, lat: list[float]) -> None:
    with connect(url) as ws:
        while not stop.is_set():
            try:
                msg = json.loads(ws.recv(timeout=0.2))
            except TimeoutError:
                continue
            if msg["topic"] == wire.TOPIC_FAST:
                lat.append((time.time() - msg["data"]["wall"]) * 1e3)


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    a = np.asarray(values)
    return {"n": len(values), "p50": round(float(np.percentile(a, 50)), 1),
            "p99": round(float(np.percentile(a, 99)), 1), "max": round(float(a.max()), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="per setting [s]")
    args = ap.parse_args()
    records = [json.loads(line) for line in RECORDS.read_text().splitlines()[:20]]
    manifest = {"format": wire.MANIFEST_FORMAT, "osc": {"addresses": []}}
    rows = []
    for n_clients in (0, 1, 4):
        with WebServer(web=("127.0.0.1", 0), oscquery=None, manifest=manifest) as server:
            stop = threading.Event()
            lats: list[list[float]] = [[] for _ in range(n_clients)]
            url = server.web_url.replace("http", "ws", 1) + "ws"  # type: ignore[union-attr]
            threads = [threading.Thread(target=web_client, args=(url, stop, lat))
                       for lat in lats]
            for th in threads:
                th.start()
            while server.clients < n_clients:
                time.sleep(0.01)
            cost = pace(server.publish_record, server.publish_fast, server.publish_status,
                        args.seconds, records)
            time.sleep(0.3)
            stop.set()
            for th in threads:
                th.join()
            rows.append({"publisher": "web", "clients": n_clients,
                         **{f"{k}_us": summary(v) for k, v in cost.items()},
                         "fast_latency_ms": summary([x for lat in lats for x in lat]),
                         "dropped": server.stats["dropped"]})
    with ZmqPublisher("tcp://127.0.0.1:*", 1000) as pub:
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.connect(pub.endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, b"streamtag.")
        stop = threading.Event()
        got: list[float] = []

        def drain() -> None:
            while not stop.is_set():
                if sub.poll(200):
                    topic, data = sub.recv_multipart()
                    if topic == wire.TOPIC_FAST.encode():
                        got.append((time.time() - json.loads(data)["wall"]) * 1e3)

        th = threading.Thread(target=drain)
        th.start()
        time.sleep(0.5)
        pub.poll()
        cost = pace(pub.publish_record,
                    lambda s, w, v, t: pub.publish_fast(s, w, v, t=t),
                    pub.publish_status, args.seconds, records)
        time.sleep(0.3)
        stop.set()
        th.join()
        sub.close()
        rows.append({"publisher": "zmq", "clients": 1,
                     **{f"{k}_us": summary(v) for k, v in cost.items()},
                     "fast_latency_ms": summary(got), "dropped": pub.stats["dropped"]})
    print(f"{'publisher':>9} {'clients':>7} {'record µs p50/p99':>18} {'fast µs p50/p99':>16} "
          f"{'status µs p50/p99':>18} {'fast latency ms p50/p99':>24} {'dropped':>7}")
    for r in rows:
        def pp(s: dict) -> str:
            return "—" if s["p50"] is None else f"{s['p50']:.0f} / {s['p99']:.0f}"

        lat = r["fast_latency_ms"]
        lat_s = "—" if lat["p50"] is None else f"{lat['p50']:.2f} / {lat['p99']:.2f}"
        print(f"{r['publisher']:>9} {r['clients']:>7} {pp(r['record_us']):>18} "
              f"{pp(r['fast_us']):>16} {pp(r['status_us']):>18} {lat_s:>24} {r['dropped']:>7}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"machine": platform.machine(), "seconds": args.seconds,
                               "rows": rows}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
