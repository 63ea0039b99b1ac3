"""Per-hop cost of issue 5's runtime: tags + embedding heads, projection, novelty and a
20-reference library, against the same engine without them.

Prints a table and writes benchmarks/results/embedding.json.
Run: python benchmarks/bench_embedding.py [--seconds 120] [--references 20]

Full-size ``default`` models with random weights (cost does not depend on what the weights
learned). The two engines process the same hop-sized blocks in alternation, so a machine whose
load drifts during the run slows both alike. Wall time and this thread's CPU time are both
recorded: on a busy machine the wall-time tail is mostly waiting for a core, the CPU time is
what the work itself costs. The reference library holds ``--references`` recordings of
``--reference-s`` seconds each (random unit vectors of the model's match-vector size,
``--match-dims``: matching cost depends only on their number and size). Target: total p99 ≤
10 ms per hop.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from streamtag.checkpoint import load_checkpoint
from streamtag.config import NoveltyConfig, ReferenceConfig
from streamtag.embedding import MATCH_DIMS
from streamtag.engine import Engine
from streamtag.model import EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD, HeadSpec
from streamtag.testing import make_checkpoint, make_signal

OUT = Path(__file__).parent / "results" / "embedding.json"
BASE_HEADS = [EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD]


def pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "max_ms": float(a.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="audio per engine [s]")
    ap.add_argument("--references", type=int, default=20, help="references in the library")
    ap.add_argument("--reference-s", type=float, default=180.0,
                    help="length of each reference recording [s]")
    ap.add_argument("--tags", type=int, default=32, help="tag vocabulary size")
    ap.add_argument("--dims", type=int, default=32,
                    help="embedding dimensions (the bundled model's: 32)")
    ap.add_argument("--match-dims", type=int, default=MATCH_DIMS,
                    help="match-vector dimensions after the stored PCA (the bundled model's: "
                         f"{MATCH_DIMS}); 0: no PCA, the full window encoding")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the daemon runs
    tags = HeadSpec("tags", "multilabel", tuple(f"tag{i}" for i in range(args.tags)))
    emb = HeadSpec("embedding", "embedding", tuple(f"d{i}" for i in range(args.dims)))
    with tempfile.TemporaryDirectory() as d:
        base = load_checkpoint(make_checkpoint(Path(d) / "base.safetensors", tiny=False,
                                               heads=BASE_HEADS))
        full = load_checkpoint(make_checkpoint(Path(d) / "full.safetensors", tiny=False,
                                               heads=[*BASE_HEADS, tags, emb],
                                               projection=True, known_distance=0.5,
                                               match_dims=args.match_dims or None))
    rng = np.random.default_rng(0)
    lib = Engine(full).new_library()
    match_dims = lib.dims
    hops = int(args.reference_s / 0.5)
    for i in range(args.references):
        v = rng.standard_normal((hops, match_dims))
        lib.add(f"ref{i}", [v / np.linalg.norm(v, axis=1, keepdims=True)], [f"ref{i}.wav"])
    engines = {
        "without": Engine(base, fast_lane=True),
        "with": Engine(full, fast_lane=True, novelty=NoveltyConfig(),
                       reference=ReferenceConfig(), library=lib),
    }
    rate = full.frontend.sample_rate_hz
    hop = full.frontend.hop_samples(engines["with"].arch.hop_frames)
    x = make_signal(args.seconds, rate)
    times: dict[str, list[float]] = {k: [] for k in engines}
    cpu: dict[str, list[float]] = {k: [] for k in engines}
    post: list[float] = []
    for i in range(0, x.size - hop + 1, hop):
        block = x[i:i + hop]
        for name, engine in engines.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            recs = engine.process(block).records
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
            assert len(recs) == 1
        # The new post-processing alone: projection, novelty and reference for one hop (a new
        # window encoding each time, as live: the matcher computes each query hop once).
        e = engines["with"]
        vec = np.asarray(recs[0]["embedding"]["vector"], np.float32)
        encoded = np.abs(rng.standard_normal(full.model.encoded_features)).astype(np.float32)
        rec = {"silent": False, "embedding": {}}
        t0 = time.perf_counter()
        e._embedding_fields(rec, 0, vec, encoded)
        post.append(time.perf_counter() - t0)
    warm = 3  # first hops pay for lazy allocations in torch
    result = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": 1, "cpu": platform.processor() or "?",
                    "load_average_1min": __import__("os").getloadavg()[0]},
        "setup": {"preset": "default", "tags": args.tags, "embedding_dims": args.dims,
                  "match_dims": match_dims,
                  "references": args.references, "reference_s": args.reference_s,
                  "reference_hops": engines["with"].matcher.hops,
                  "query_hops": engines["with"].matcher.window_hops,
                  "hops": len(times["with"]) - warm},
        "without": pct(times["without"][warm:]),
        "with": pct(times["with"][warm:]),
        "embedding_fields_only": pct(post[warm:]),
        "cpu_without": pct(cpu["without"][warm:]),
        "cpu_with": pct(cpu["with"][warm:]),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    s = result["setup"]
    print(f"\nper-hop cost, default preset, 1 thread, {s['hops']} hops   [ms]    p50     p99")
    print(f"  engine without tags/embedding                      "
          f"{result['without']['p50_ms']:7.2f} {result['without']['p99_ms']:7.2f}")
    print(f"  engine with {args.tags} tags, {args.dims}-dim embedding, xy, novelty,  "
          f"{result['with']['p50_ms']:7.2f} {result['with']['p99_ms']:7.2f}")
    print(f"    {args.references} references × {args.reference_s:.0f} s "
          f"({s['reference_hops']} hops of {match_dims}-dim match vectors, queries of "
          f"{s['query_hops']} hops slid along them)")
    print(f"  CPU time, without                                  "
          f"{result['cpu_without']['p50_ms']:7.2f} {result['cpu_without']['p99_ms']:7.2f}")
    print(f"  CPU time, with                                     "
          f"{result['cpu_with']['p50_ms']:7.2f} {result['cpu_with']['p99_ms']:7.2f}")
    print(f"  of which xy + novelty + reference (wall)           "
          f"{result['embedding_fields_only']['p50_ms']:7.3f} "
          f"{result['embedding_fields_only']['p99_ms']:7.3f}")
    print(f"\nload average {result['machine']['load_average_1min']:.1f}; written {OUT}")


if __name__ == "__main__":
    main()
