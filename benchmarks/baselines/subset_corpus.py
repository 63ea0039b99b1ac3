"""Write a class-balanced subset of a built-in corpus (a manifest only; the audio stays put).

The equal-budget comparison of the ``seed`` and ``default`` presets cannot afford the full
corpus (the seed costs ~0.13-0.2 s of one core per training window). ``data.max_clips`` draws
clips uniformly per split, so classes are only balanced on average and validation shrinks by
the same count as training; this script draws a fixed number per stratum instead:

- strata: each instrument class, each emotion quadrant (1-4), and the drum clips;
- training: at most one clip per group (a group is one piece rendered through several
  SoundFonts/kits), so the subset spreads over as many pieces as possible;
- validation: drawn from the validation split only (held-out SoundFont/kit).

The new ``manifest.jsonl`` holds absolute audio paths, so the trainer's feature cache (keyed by
resolved path, mtime and size) is shared with runs on the full corpus. Usage::

    python benchmarks/baselines/subset_corpus.py --corpus /work/corpus/v1 \\
        --out /work/runs/baselines/corpus-sub --train-per-stratum 20 --val-per-stratum 12
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any


def stratum(row: dict[str, Any]) -> str:
    """A manifest row's stratum: ``instrument:<class>``, ``emotion:q<n>`` or ``drums``."""
    labels = row.get("labels") or {}
    if labels.get("instrument") is not None:
        return f"instrument:{labels['instrument']}"
    if labels.get("valence") is not None:
        return f"emotion:q{labels.get('quadrant')}"
    return row.get("family") or "other"


def pick(rows: list[dict[str, Any]], n: int, rng: random.Random) -> list[dict[str, Any]]:
    """At most ``n`` rows, at most one per group while groups last (deterministic given rng)."""
    by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_group[r["group"]].append(r)
    groups = sorted(by_group)
    rng.shuffle(groups)
    out = [rng.choice(by_group[g]) for g in groups[:n]]
    if len(out) < n:  # fewer groups than wanted: fill with the remaining renderings
        rest = [r for r in rows if r not in out]
        rng.shuffle(rest)
        out += rest[: n - len(out)]
    return out


def subset(corpus: Path, per_split: dict[str, int], seed: int) -> list[dict[str, Any]]:
    """Rows of ``corpus``'s manifest, ``per_split[split]`` per stratum, manifest order kept."""
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()
            if line.strip()]
    rng = random.Random(seed)
    keep: set[str] = set()
    for split, n in per_split.items():
        strata: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["split"] == split:
                strata[stratum(r)].append(r)
        for name in sorted(strata):
            keep.update(r["id"] for r in pick(strata[name], n, rng))
    out = []
    for r in rows:
        if r["id"] in keep:
            r = dict(r, path=str((corpus / r["path"]).resolve()))
            out.append(r)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: write ``OUT/manifest.jsonl`` and print the counts per split and stratum."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, required=True, help="built-in corpus folder")
    p.add_argument("--out", type=Path, required=True, help="folder for the subset manifest")
    p.add_argument("--train-per-stratum", type=int, default=20, help="training clips per stratum")
    p.add_argument("--val-per-stratum", type=int, default=12,
                   help="validation clips per stratum (0: the whole validation split)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the draw")
    args = p.parse_args(argv)
    per_split = {"train": args.train_per_stratum}
    if args.val_per_stratum > 0:
        per_split["validation"] = args.val_per_stratum
    rows = subset(args.corpus, per_split, args.seed)
    if args.val_per_stratum <= 0:
        rows += [dict(r, path=str((args.corpus / r["path"]).resolve())) for r in (
            json.loads(line) for line in (args.corpus / "manifest.jsonl").read_text().splitlines()
            if line.strip()) if r["split"] == "validation"]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "manifest.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        counts[(r["split"], stratum(r))] += 1
    for (split, name), n in sorted(counts.items()):
        print(f"{split:10s} {name:36s} {n}")
    print(f"{len(rows)} clips -> {args.out / 'manifest.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
