"""Offline analysis at scale: `streamtag analyze` on a 3-hour file, and 40 files with --jobs.

Prints a table and writes benchmarks/results/analyze.json. Run: python benchmarks/bench_analyze.py
(the bundled model, default config; `streamtag analyze` run as users run it, as a subprocess).

Targets (issue 16), on the project's 2-core machine:
- a 3-hour 44.1 kHz file: peak RSS <= 1.5 GB, >= 500x real time;
- 40 one-minute 44.1 kHz files: --jobs 2 >= 1.7x the throughput of --jobs 1 (--jobs N: N
  cores; 1 is one thread). The fixed cost of a run (1 s files) is measured too, and the ratio
  without it beside the end-to-end one.

The audio is generated (music-like: a bass line, chords and a melody in a key and tempo that
change every 30 s, kick and hi-hat), written block by block so that making it needs little
memory. The runs of one comparison are interleaved (jobs 1, jobs 2, jobs 1, …) so that they
share whatever else the machine is doing; the load average is recorded beside each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

OUT = Path(__file__).parent / "results" / "analyze.json"
RATE = 44100
SEGMENT_S = 30.0


def segment(seed: int, seconds: float = SEGMENT_S, rate: int = RATE) -> np.ndarray:
    """A music-like mono segment [n] float32: one key and tempo, bass, chords, melody, drums."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    x = np.zeros(n)
    beat = 60.0 / rng.uniform(70, 160)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    scale = [0, 2, 4, 5, 7, 9, 11] if rng.random() < 0.5 else [0, 2, 3, 5, 7, 8, 10]
    bright = rng.uniform(0.3, 1.0)

    def note(start: float, dur: float, f0: float, gain: float, decay: float,
             partials: int) -> None:
        s, e = int(start * rate), min(n, int((start + dur) * rate))
        if e <= s:
            return
        tt = np.arange(e - s) / rate
        env = np.exp(-tt * decay) * np.minimum(1.0, tt * 200)
        x[s:e] += gain * env * sum(bright ** (h - 1) * np.sin(2 * np.pi * f0 * h * tt) / h
                                   for h in range(1, partials + 1))

    t, k = 0.0, 0
    while t < seconds:
        degree = int(rng.integers(0, 7))
        if k % 4 == 0:  # a chord each bar
            for d in (0, 2, 4):
                st = scale[(degree + d) % 7] + 12 * ((degree + d) // 7)
                note(t, 4 * beat, 2 * root * 2 ** (st / 12), 0.15, 0.8, 4)
        note(t, beat, root * 2 ** (scale[degree] / 12) / 2, 0.4, 3.0, 3)  # bass
        for half in (0, 1):  # melody in eighths
            st = scale[int(rng.integers(0, 7))] + 12 * int(rng.integers(1, 3))
            note(t + half * beat / 2, beat / 2, root * 2 ** (st / 12), 0.25, 6.0, 5)
        s = int(t * rate)  # kick: a falling sine; hi-hat: a short noise burst off the beat
        e = min(n, s + int(0.15 * rate))
        tt = np.arange(e - s) / rate
        x[s:e] += 0.6 * np.exp(-tt * 30) * np.sin(2 * np.pi * (50 + 100 * np.exp(-tt * 40)) * tt)
        s = int((t + beat / 2) * rate)
        e = min(n, s + int(0.04 * rate))
        if e > s:
            x[s:e] += 0.1 * rng.standard_normal(e - s) * np.exp(-np.arange(e - s) / rate * 80)
        t += beat
        k += 1
    x += 0.003 * rng.standard_normal(n)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


#: Distinct segments: made once each, then reused in other orders (the analysis caches nothing,
#: so repeats cost it the same; making 360 distinct ones would take minutes on a busy machine).
POOL = 40
_made: dict[int, np.ndarray] = {}


def write_file(path: Path, seconds: float, first_seed: int) -> None:
    """``seconds`` of segments, 16-bit WAV, written one segment at a time."""
    with sf.SoundFile(path, "w", RATE, 1, "PCM_16") as f:
        left, seed = seconds, first_seed
        while left > 0:
            key = (seed * 7) % POOL
            if key not in _made:
                _made[key] = segment(key)
            seg = _made[key]
            f.write(seg[: int(min(left, SEGMENT_S) * RATE)])
            left -= SEGMENT_S
            seed += 1


def run_analyze(files: list[Path], extra: list[str]) -> dict:
    """`streamtag analyze` as a subprocess → wall [s], peak RSS [MB] of the analysing process,
    CPU [s] (it and the children it waited for), load average before and after."""
    cmd = [sys.executable, "-m", "streamtag.cli", "analyze", *map(str, files), "--out",
           os.devnull, "--progress", "off", *extra]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"streamtag analyze failed ({proc.returncode}): {err}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "load_before": load0, "load_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=3.0, help="length of the long file [h]")
    ap.add_argument("--files", type=int, default=40, help="number of short files")
    ap.add_argument("--file-seconds", type=float, default=60.0, help="length of each [s]")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs of each --jobs")
    ap.add_argument("--dir", type=Path, help="where to write the audio (default: a temporary "
                    "directory, removed afterwards; needs ~1.2 GB for the defaults)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        tmp = Path(d)
        long_s = args.hours * 3600
        t0 = time.perf_counter()
        long_path = tmp / "long.wav"
        write_file(long_path, long_s, 0)
        short = [tmp / f"short{i:02d}.wav" for i in range(args.files)]
        for i, p in enumerate(short):
            write_file(p, args.file_seconds, 3 * i + 1)
        print(f"generated {long_s / 3600:g} h + {args.files} x {args.file_seconds:g} s in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        long_run = run_analyze([long_path], [])
        long_run["realtime_factor"] = long_s / long_run["wall_s"]
        long_run["cpu_s_per_audio_s"] = long_run["cpu_s"] / long_s
        print(f"long: {long_run}", flush=True)
        runs: dict[str, list[dict]] = {"1": [], "2": []}
        # The fixed cost of a run (start Python, import torch, load the model; with --jobs 2
        # the workers' start too): 1 s files, as many as workers.
        tiny = [tmp / f"tiny{i}.wav" for i in range(2)]
        for i, p in enumerate(tiny):
            write_file(p, 1.0, 100 + i)
        fixed: dict[str, list[float]] = {"1": [], "2": []}
        for _ in range(args.repeats):
            for jobs in ("1", "2"):
                fixed[jobs].append(run_analyze(tiny, ["--jobs", jobs])["wall_s"])
                r = run_analyze(short, ["--jobs", jobs])
                r["realtime_factor"] = args.files * args.file_seconds / r["wall_s"]
                runs[jobs].append(r)
                print(f"jobs {jobs}: {r}", flush=True)
    best = {j: min(r["wall_s"] for r in rs) for j, rs in runs.items()}
    start = {j: min(v) for j, v in fixed.items()}
    pairs = [a["wall_s"] / b["wall_s"] for a, b in zip(runs["1"], runs["2"], strict=True)]
    # Throughput once running: the fixed cost of a run taken off both.
    steady = (best["1"] - start["1"]) / max(best["2"] - start["2"], 1e-9)
    result = {
        "machine": {"python": platform.python_version(), "cores": os.cpu_count(),
                    "cpu": platform.processor() or "?"},
        "long_file": {"seconds": long_s, "rate_hz": RATE, **long_run},
        "many_files": {"files": args.files, "seconds_each": args.file_seconds, "runs": runs,
                       "jobs2_over_jobs1_best": best["1"] / best["2"],
                       "jobs2_over_jobs1_per_pair": pairs,
                       "fixed_cost_s": fixed,
                       "jobs2_over_jobs1_without_fixed_cost": steady},
        "targets": {"peak_rss_mb": 1536, "realtime_factor": 500, "jobs2_over_jobs1": 1.7},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    lr = long_run
    rows = [
        ("3 h file, 44.1 kHz: peak RSS", "<= 1536 MB", f"{lr['peak_rss_mb']:.0f} MB"),
        ("3 h file: real-time factor", ">= 500x",
         f"{lr['realtime_factor']:.0f}x ({lr['wall_s']:.1f} s; load {lr['load_before']:.1f}"
         f" → {lr['load_after']:.1f})"),
        ("3 h file: CPU s per audio s", "", f"{lr['cpu_s_per_audio_s']:.5f}"),
        (f"{args.files} x {args.file_seconds:g} s, --jobs 1 (best of {args.repeats})", "",
         f"{best['1']:.1f} s ({args.files * args.file_seconds / best['1']:.0f}x)"),
        (f"{args.files} x {args.file_seconds:g} s, --jobs 2 (best of {args.repeats})", "",
         f"{best['2']:.1f} s ({args.files * args.file_seconds / best['2']:.0f}x)"),
        ("--jobs 2 / --jobs 1 throughput", ">= 1.7x",
         f"{best['1'] / best['2']:.2f}x (pairs run side by side: "
         f"{', '.join(f'{p:.2f}' for p in pairs)})"),
        ("fixed cost of a run: --jobs 1 / --jobs 2 (1 s files)", "",
         f"{start['1']:.2f} s / {start['2']:.2f} s"),
        ("--jobs 2 / --jobs 1 without the fixed cost", "", f"{steady:.2f}x"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"\n{'what':<{w}}  {'target':<10}  measured")
    for what, target, got in rows:
        print(f"{what:<{w}}  {target:<10}  {got}")
    print(f"\nwritten {OUT}")


if __name__ == "__main__":
    main()
