"""The per-hop Python of `streamtag analyze` after the model: estimates, records, JSON lines.

Prints a table and writes benchmarks/results/hop_post.json. Run:
python benchmarks/bench_hop_post.py [--baseline TREE] [--seconds 300] [--rounds 3]

Each run is one `Analyzer.run` of a generated music-like 44.1 kHz file (the bundled model, the
default config, one torch thread), in a process of its own, timing three parts over all hops:
``est`` (the engine's estimates from the model outputs: ``Engine._estimates``, or ``_estimate``
per hop in trees from before it), ``rec`` (``to_record``) and ``json`` (``RecordWriter.write``).
With ``--baseline`` (a source tree holding another ``streamtag`` package, e.g. ``git archive
main streamtag | tar -x -C /tmp/base``) the two trees' runs alternate (this, baseline, this, …)
so that they share whatever else the machine is doing; the table gives medians and ratios.
Target (issue 16, the per-hop part of 500x real time): >= 3x less than before the chunked
estimates (commit a740a782's parent), records identical.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "hop_post.json"
RATE = 44100
PARTS = ("est", "rec", "json")


def child(root: str, wav: str, reps: int) -> None:
    """One process: analyze ``wav`` ``reps`` times with ``root``'s streamtag; print JSON."""
    sys.path.insert(0, root)
    import torch

    torch.set_num_threads(1)
    import streamtag.analysis as analysis
    import streamtag.engine as engine

    assert engine.__file__.startswith(root), engine.__file__
    acc = dict.fromkeys(PARTS, 0.0)

    def timed(f: Callable[..., Any], key: str) -> Callable[..., Any]:
        def g(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            r = f(*args, **kwargs)
            acc[key] += time.perf_counter() - t
            return r
        return g

    name = "_estimates" if hasattr(engine.Engine, "_estimates") else "_estimate"
    setattr(engine.Engine, name, timed(getattr(engine.Engine, name), "est"))
    engine.to_record = timed(engine.to_record, "rec")
    analysis.RecordWriter.write = timed(analysis.RecordWriter.write, "json")
    a = analysis.Analyzer(analysis.AnalyzeJob(None, None))
    runs = []
    with open(os.devnull, "w") as out:
        for _ in range(reps):
            for k in acc:
                acc[k] = 0.0
            t = time.perf_counter()
            a.run(wav, analysis.RecordWriter(out, "jsonl"), lambda s: None)
            runs.append({"total": time.perf_counter() - t, **acc})
    print(json.dumps(runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", help="a source tree with another streamtag package")
    ap.add_argument("--seconds", type=float, default=300.0, help="audio length [s]")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of the trees")
    ap.add_argument("--reps", type=int, default=3, help="analyze runs per process")
    ap.add_argument("--child", nargs=2, metavar=("TREE", "WAV"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.reps)
        return
    sys.path.insert(0, str(HERE))
    from bench_analyze import segment

    trees = {"this": str(HERE.parent)}
    if args.baseline:
        trees["baseline"] = str(Path(args.baseline).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "music.wav")
        n_seg = max(1, round(args.seconds / 30.0))
        with sf.SoundFile(wav, "w", RATE, 1, subtype="FLOAT") as f:
            for k in range(n_seg):
                f.write(segment(k).astype(np.float32))
        results: dict[str, list[dict]] = {t: [] for t in trees}
        for _ in range(args.rounds):
            for tree, root in trees.items():
                # cwd holds no streamtag package: the tree's is the one imported.
                p = subprocess.run([sys.executable, __file__, "--child", root, wav, "--reps",
                                    str(args.reps)], capture_output=True, text=True, check=True,
                                   cwd=tmp, env={**os.environ, "PYTHONPATH": root})
                results[tree] += json.loads(p.stdout.strip().splitlines()[-1])
    hops = int(n_seg * 30.0 / 0.5)
    table = {}
    for tree, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("total", *PARTS)}
        med["per_hop"] = statistics.median(sum(r[k] for k in PARTS) for r in runs)
        table[tree] = {**med, "per_hop_us": med["per_hop"] / hops * 1e6, "runs": len(runs)}
    print(f"{hops} hops, medians of {args.rounds * args.reps} runs per tree [s]; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'tree':10s} {'est':>7s} {'rec':>7s} {'json':>7s} {'per hop':>8s} {'us/hop':>7s}")
    for tree, m in table.items():
        print(f"{tree:10s} {m['est']:7.3f} {m['rec']:7.3f} {m['json']:7.3f} {m['per_hop']:8.3f} "
              f"{m['per_hop_us']:7.1f}")
    if "baseline" in table:
        ratio = table["baseline"]["per_hop"] / table["this"]["per_hop"]
        print(f"per-hop Python: baseline / this = {ratio:.2f}x")
        table["ratio"] = ratio
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"hops": hops, "seconds": n_seg * 30.0,
                               "loadavg": os.getloadavg(), "results": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
