"""What fresh starts at changes of sound (``novelty.restart``, streamtag.restarts) cost per hop.

Prints a table and writes benchmarks/results/restarts.json. Run:
python benchmarks/bench_restarts.py [--seconds 120] [--rounds 3]

The bundled model, one torch thread, on a generated signal whose sound changes every few
seconds (music-like noise bursts and tones taking turns, so changes are caught): the live path
(``Engine.process`` fed 512-sample blocks, the wall time of each call that completes a hop)
and ``analyze`` (real-time factor), with the rule on (the default threshold) and off
(``restart: null``: only silence restarts). Rounds alternate on/off so both share whatever else
the machine is doing; the table gives medians and the on/off ratios. Target (issue 19): the
per-hop cost stays within the live budget (the model's step p99 ≤ 2 ms; the whole hop far
below its 500 ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from streamtag.checkpoint import BUNDLED_CHECKPOINT, load_checkpoint
from streamtag.config import NoveltyConfig
from streamtag.engine import Engine
from streamtag.testing import make_signal

OUT = Path(__file__).parent / "results" / "restarts.json"
RATE = 22050
BLOCK = 512


def changing_signal(seconds: float) -> np.ndarray:
    """[n] float32: 2-5 s parts taking turns between music-like noise and tones."""
    rng = np.random.default_rng(0)
    parts, total, i = [], 0.0, 0
    while total < seconds:
        dur = float(rng.uniform(2.0, 5.0))
        if i % 2:
            x = make_signal(dur, RATE, seed=i)
        else:
            t = np.arange(int(dur * RATE)) / RATE
            x = (0.3 * np.sin(2 * np.pi * float(rng.uniform(150, 900)) * t)).astype(np.float32)
        parts.append(x)
        total += dur
        i += 1
    return np.concatenate(parts)[: int(seconds * RATE)]


def live_hop_ms(engine: Engine, x: np.ndarray) -> list[float]:
    """Wall time [ms] of each ``process`` call that completed a hop."""
    engine.reset()
    out = []
    for i in range(0, x.size, BLOCK):
        t0 = time.perf_counter()
        step = engine.process(x[i:i + BLOCK])
        dt = (time.perf_counter() - t0) * 1e3
        if step.estimates:
            out.append(dt)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="signal length [s]")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of on and off")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ck = load_checkpoint(BUNDLED_CHECKPOINT)
    x = changing_signal(args.seconds)
    on_cfg = NoveltyConfig()
    engines = {"on": Engine(ck, novelty=on_cfg), "off": Engine(ck, novelty=NoveltyConfig(
        restart=None))}
    results: dict[str, dict[str, list[float]]] = {k: {"p50": [], "p99": [], "rtf": []}
                                                  for k in engines}
    restarts = 0
    for _ in range(args.rounds):
        for name, engine in engines.items():
            ms = live_hop_ms(engine, x)
            results[name]["p50"].append(float(np.percentile(ms, 50)))
            results[name]["p99"].append(float(np.percentile(ms, 99)))
            t0 = time.perf_counter()
            recs = engine.analyze(x)
            results[name]["rtf"].append(args.seconds / (time.perf_counter() - t0))
            if name == "on":
                restarts = sum(not r["silent"] and r["novelty"] > on_cfg.restart for r in recs)
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in results.items()}
    print(f"{args.seconds:g} s, {restarts} fresh starts at changes "
          f"({restarts / args.seconds * 60:.1f} per minute), {args.rounds} rounds, medians")
    print("| what | rule on | rule off | on / off |")
    print("| --- | --- | --- | --- |")
    for m, label in (("p50", "live hop p50 [ms]"), ("p99", "live hop p99 [ms]"),
                     ("rtf", "analyze [x real time]")):
        print(f"| {label} | {med['on'][m]:.2f} | {med['off'][m]:.2f} | "
              f"{med['on'][m] / med['off'][m]:.2f} |")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"seconds": args.seconds, "rounds": args.rounds,
                               "restarts": restarts, "runs": results, "medians": med},
                              indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
