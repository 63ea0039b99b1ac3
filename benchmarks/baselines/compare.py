"""Collect the baseline runs into one table: markdown on stdout, baselines.json and baselines.md.

Every number is read from the runs (``report/report.json``, ``metrics.json``, the checkpoint,
the MFCC-LSTM result JSON, CPU-time logs) or measured here; nothing is typed in. The per-hop
cost is measured again here for every model, in one process with one torch thread, so that
the models are timed under the same load (the reports' own timings come from different hours
of a shared machine).

Rows (see README, Benchmarks): the ``seed`` and ``default`` presets trained on the same
class-balanced corpus subset (``subset_corpus.py``) with the real trainer, the MFCC-LSTM
baseline (``mfcc_lstm.py``) on the same subset, and the shipped default model (full corpus),
evaluated on the subset's validation clips and, for context, on the whole validation split.

Usage::

    python benchmarks/baselines/compare.py [--runs /work/runs/baselines] \\
        [--shipped /work/runs/default-v1]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import torch
from mfcc_lstm import summary  # this folder is on sys.path when the script runs

from streamtag.checkpoint import load_checkpoint
from streamtag.train.evaluate import finite, measure_step_cost

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parents[0] / "results"


def cpu_seconds(path: Path) -> float | None:
    """CPU seconds (user + system) from a ``/usr/bin/time -v`` file, a log holding bash's
    ``time`` output (``user 0m38.5s``), or the last line of a poll log whose lines end in ps's
    cputime ``[DD-]HH:MM:SS``; None if there is no file or no such number."""
    if not path.is_file():
        return None
    text = path.read_text()
    user = re.search(r"User time \(seconds\): ([\d.]+)", text)
    system = re.search(r"System time \(seconds\): ([\d.]+)", text)
    if user and system:
        return float(user.group(1)) + float(system.group(1))
    bash = {k: 60 * float(mi) + float(se) for k, mi, se in
            re.findall(r"^(user|sys)\s+(\d+)m([\d.]+)s$", text, re.M)}
    if "user" in bash and "sys" in bash:
        return bash["user"] + bash["sys"]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    m = re.search(r"(?:(\d+)-)?(\d+):(\d+):(\d+)\s*$", lines[-1])
    if not m:
        return None
    d, h, mi, s = (int(g or 0) for g in m.groups())
    return float(((d * 24 + h) * 60 + mi) * 60 + s)


def report_summary(report: dict[str, Any]) -> dict[str, float | None]:
    """The table's metrics from a ``streamtag evaluate`` report (or the MFCC script's metrics):
    the same ``summary`` the MFCC script prints, so both sides are read one way."""
    return summary(report.get("heads", report))


def trainer_row(name: str, run: Path, report: Path | None = None,
                cpu_log: Path | None = None) -> dict[str, Any] | None:
    """A row for a ``streamtag train`` run directory (None if the run is missing)."""
    best = run / "best.safetensors"
    report = report or run / "report" / "report.json"
    if not best.is_file() or not report.is_file():
        return None
    ck = load_checkpoint(best)
    history = json.loads((run / "metrics.json").read_text())
    prov = ck.provenance
    rep = json.loads(report.read_text())
    return {
        "name": name, "kind": "streamtag", "preset": ck.model.arch.preset,
        "checkpoint": str(best), "report": str(report),
        "params": sum(p.numel() for p in ck.model.parameters()),
        "train_clips": prov.get("clips", {}).get("train"),
        "validation_clips": rep["clips"], "epochs": len(history),
        "best_epoch": prov.get("best_epoch"), "processes": prov.get("world_size", 1),
        "train_wall_s": sum(e["seconds"] for e in history),
        "train_cpu_s": cpu_seconds(cpu_log) if cpu_log else None,
        "metrics": report_summary(rep), "_model": ck.model,
    }


def mfcc_row(name: str, result: Path, model_path: Path | None,
             evaluation: str = "validation") -> dict[str, Any] | None:
    """A row for ``mfcc_lstm.py``'s result JSON (None if missing)."""
    if not result.is_file():
        return None
    r = json.loads(result.read_text())
    ev = r["evaluations"][evaluation]
    return {
        "name": name, "kind": "mfcc_lstm", "preset": "mfcc_lstm", "result": str(result),
        "params": r["model"]["params"], "train_clips": r["train"]["clips"],
        "validation_clips": ev["metrics"].get("clips", r["clips"]["validation"]),
        "epochs": r["train"]["epochs"], "best_epoch": r["train"]["epochs"], "processes": 1,
        "train_wall_s": r["train"]["seconds"], "train_cpu_s": r["train"].get("cpu_seconds"),
        "metrics": report_summary(ev["metrics"]), "_model_path": model_path,
    }


def measure_costs(rows: list[dict[str, Any]]) -> None:
    """Per-hop cost of every row, one after another in this process (1 thread)."""
    from mfcc_lstm import FeatureParams, MfccLstm, hop_cost  # this script's folder is on sys.path

    cache: dict[str, dict[str, float]] = {}
    for row in rows:
        key = row.get("checkpoint") or str(row.get("_model_path"))
        if key in cache:
            row["cost"] = cache[key]
            continue
        if row["kind"] == "streamtag":
            c = measure_step_cost(row["_model"])
            cost = {"model_mean_ms": c["mean_ms"], "model_p99_ms": c["p99_ms"]}
        elif row.get("_model_path") and Path(row["_model_path"]).is_file():
            saved = torch.load(row["_model_path"], map_location="cpu", weights_only=True)
            p = FeatureParams(**saved["features"])
            model = MfccLstm(p.dims, saved["heads"], hidden=saved["hidden"])
            model.load_state_dict(saved["state_dict"])
            c = hop_cost(model, p)
            cost = {"model_mean_ms": c["model_mean_ms"], "model_p99_ms": c["model_p99_ms"],
                    "features_mean_ms": c["features_mean_ms"],
                    "total_mean_ms": c["total_mean_ms"], "total_p99_ms": c["total_p99_ms"]}
        else:
            cost = {}
        cache[key] = row["cost"] = cost


def fmt(x: Any, digits: int = 3) -> str:
    """A table cell: – for missing, fixed digits for floats."""
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def minutes(s: float | None) -> str:
    return "–" if s is None else f"{s / 60:.1f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The comparison table."""
    head = ("| model | train clips | epochs | params | per-hop ms (mean / p99) | instr. hop>1 s "
            "| instr. clip | instr. bal. | valence r | arousal r | CCC v / a | timbre MAE "
            "| train wall min | train CPU min | val. clips |")
    lines = [head, "|" + " --- |" * 15]
    for r in rows:
        m, c = r["metrics"], r.get("cost", {})
        cost = (f"{fmt(c.get('model_mean_ms'), 2)} / {fmt(c.get('model_p99_ms'), 2)}"
                if c else "–")
        if c.get("features_mean_ms") is not None:
            cost += f" (+ features {c['features_mean_ms']:.1f})"
        epochs = fmt(r["epochs"])
        if r.get("best_epoch") not in (None, r["epochs"]):
            epochs += f" (best {r['best_epoch']})"
        wall = minutes(r["train_wall_s"])
        if r.get("processes", 1) > 1:
            wall += f" ({r['processes']} proc.)"
        lines.append(
            f"| {r['name']} | {fmt(r['train_clips'])} | {epochs} | "
            f"{r['params']:,} | {cost} | {fmt(m.get('instrument_hop_after_1s_acc'))} | "
            f"{fmt(m.get('instrument_clip_acc'))} | {fmt(m.get('instrument_hop_balanced_acc'))} | "
            f"{fmt(m.get('valence_r'))} | {fmt(m.get('arousal_r'))} | "
            f"{fmt(m.get('valence_ccc'))} / {fmt(m.get('arousal_ccc'))} | "
            f"{fmt(m.get('timbre_mean_mae'))} | {wall} | {minutes(r.get('train_cpu_s'))} | "
            f"{fmt(r['validation_clips'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description="collect the baseline runs into one table")
    ap.add_argument("--runs", type=Path, default=Path("/work/runs/baselines"),
                    help="folder of the baseline runs (seed-sub, default-sub-e2, …)")
    ap.add_argument("--shipped", type=Path, default=Path("/work/runs/default-v1"),
                    help="run folder of the shipped default model")
    ap.add_argument("--mfcc", type=Path, default=RESULTS / "baseline_mfcc_lstm.json",
                    help="mfcc_lstm.py result JSON")
    ap.add_argument("--no-cost", action="store_true", help="skip the per-hop cost measurement")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for baselines.json/.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    runs = args.runs
    seed = trainer_row("seed preset [reduced]", runs / "seed-sub", cpu_log=runs / "seed-sub.cpu")
    # the default preset with as many epochs as the seed run made (equal data, equal epochs)
    e = seed["epochs"] if seed else 2
    candidates = [
        seed,
        trainer_row("default preset [reduced]", runs / f"default-sub-e{e}",
                    cpu_log=next((f for f in (runs / f"default-sub-e{e}.time",
                                              runs / f"default-sub-e{e}.log") if f.is_file()),
                                 None)),
        trainer_row("default preset [reduced, 20 epochs]", runs / "default-sub-e20",
                    cpu_log=runs / "default-sub-e20.time"),
        mfcc_row("MFCC-LSTM baseline [reduced]", args.mfcc, runs / "mfcc" / "sub.pt"),
        trainer_row("shipped default [full]", args.shipped,
                    report=runs / "shipped-sub-eval" / "report.json"),
        trainer_row("shipped default [full], all 520 validation clips", args.shipped),
    ]
    rows = [r for r in candidates if r is not None]
    if not args.no_cost:
        measure_costs(rows)
    table = markdown(rows)
    notes = (
        "Validation: the held-out SoundFont/kit; every row but the last is scored on the same "
        f"{rows[0]['validation_clips'] if rows else '?'} clips of the class-balanced subset "
        "(12 per instrument class, 12 per emotion quadrant, 12 drum clips), per 0.5 s hop "
        "through `streamtag evaluate`'s metrics. per-hop ms: `model.step` (our models) or the "
        "LSTM over one hop's 25 frames (MFCC-LSTM, whose librosa features cost the extra "
        "shown), measured here one after another with 1 torch thread on the shared 2-core "
        "machine (compare the rows with each other, not with the quiet-machine numbers above). "
        "Training: wall minutes are the trainer's epoch seconds (training + per-epoch "
        "validation) on a machine shared with other jobs, so they are inflated unevenly; CPU "
        "minutes are the whole process for our trainer runs (feature extraction, training, "
        "validation, final report) and the training loop for the MFCC-LSTM. `epochs (best k)`: "
        "the report scores the checkpoint of epoch k.")
    print(table)
    print()
    print(notes)
    args.out.mkdir(parents=True, exist_ok=True)
    out_rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    (args.out / "baselines.json").write_text(
        json.dumps(finite({"rows": out_rows, "notes": notes}), indent=1, default=str) + "\n",
        encoding="utf-8")
    (args.out / "baselines.md").write_text(
        "# Baselines on the built-in corpus\n\nWritten by `benchmarks/baselines/compare.py`.\n\n"
        + table + "\n\n" + notes + "\n", encoding="utf-8")
    print(f"\nwrote {args.out / 'baselines.json'} and {args.out / 'baselines.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
