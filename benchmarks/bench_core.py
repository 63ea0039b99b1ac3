"""Streaming-core benchmark: per-hop cost, offline speed, memory, and the seed's way beside ours.

Prints a table and writes benchmarks/results/core.json. Run: python benchmarks/bench_core.py
Full-size models with random weights (cost does not depend on what the weights learned).

Targets (issue: streaming core), on a 2-core machine:
- `default` total per-hop cost p99 <= 10 ms;
- offline analysis >= 200x real time;
- incremental frontend >= 3x cheaper per 0.5 s hop than recomputing a 2 s window each hop.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import torch

from streamtag.checkpoint import load_checkpoint
from streamtag.engine import Engine
from streamtag.frontend import (
    DEFAULT_FRONTEND,
    FRONTEND_PRESETS,
    FrontendConfig,
    MelFrontend,
    htk_mel_filterbank,
)
from streamtag.testing import make_checkpoint, make_signal

OUT = Path(__file__).parent / "results" / "core.json"


def pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean())}


def per_hop(preset: str, seconds: float, tmp: Path) -> dict:
    """Hop-sized blocks through the streaming engine; frontend and model timed apart."""
    ck = load_checkpoint(make_checkpoint(tmp / f"{preset}.safetensors", preset, tiny=False))
    fe_cfg = FRONTEND_PRESETS[preset]
    arch = ck.model.arch
    hop_samples = fe_cfg.hop_samples(arch.hop_frames)
    x = make_signal(seconds, fe_cfg.sample_rate_hz)
    engine = Engine(ck, fast_lane=True)  # as the daemon runs it
    fe = MelFrontend(fe_cfg)
    fe_t, model_t, total_t = [], [], []
    state = None
    window = torch.zeros(1, arch.n_features, arch.window_frames)
    for i in range(0, x.size - hop_samples + 1, hop_samples):
        block = x[i:i + hop_samples]
        t0 = time.perf_counter()
        fe.process(block)
        t1 = time.perf_counter()
        with torch.inference_mode():
            _, state = engine.model.step(window, state)
        t2 = time.perf_counter()
        recs = engine.process(block).records
        t3 = time.perf_counter()
        assert len(recs) == 1
        fe_t.append(t1 - t0)
        model_t.append(t2 - t1)
        total_t.append(t3 - t2)
    warm = 3  # first hops pay for lazy allocations in torch
    return {"preset": preset, "hop_s": engine.hop_s, "hops": len(total_t) - warm,
            "frontend": pct(fe_t[warm:]), "model": pct(model_t[warm:]),
            "total": pct(total_t[warm:]),
            "parameters": sum(p.numel() for p in ck.model.parameters())}


def window_mel(c: FrontendConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The seed's transform as torchaudio's ``MelSpectrogram(center=False)`` computes it: one
    ``torch.stft`` of the window, its power, the HTK filterbank (torchaudio's, bit for bit; the
    runtime does not install torchaudio). [T] samples → [n_mels, frames]."""
    window = torch.hann_window(c.win_length)
    fbank = htk_mel_filterbank(c.n_freqs, c.f_min_hz, c.f_max_hz or c.sample_rate_hz / 2,
                               c.n_mels, c.sample_rate_hz)

    def mel(x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x, c.n_fft, c.hop_length, c.win_length, window, center=False,
                          return_complex=True).abs()
        if c.normalized:  # torchaudio's "window" normalisation, not torch.stft's
            spec = spec / window.pow(2).sum().sqrt()
        return (spec.pow(c.power).T @ fbank).T

    return mel


def seed_way(preset: str, seconds: float, tmp: Path) -> dict:
    """The seed's way: the whole window's features recomputed every hop, then the model.

    The features are torchaudio's mel, as in the seed, for a preset without pitch-class rows;
    with them (``default``), our own frontend's offline path over the window, since torchaudio
    has no pitch-class rows (this favours the seed's way: our frontend is the faster one).
    """
    ck = load_checkpoint(make_checkpoint(tmp / f"{preset}-sw.safetensors", preset, tiny=False))
    c, arch = FRONTEND_PRESETS[preset], ck.model.arch
    if c.n_chroma:
        frontend = MelFrontend(c, fast_lane=False)

        def features(w: torch.Tensor) -> torch.Tensor:  # [T] → [n_features, frames]
            return torch.from_numpy(frontend.process_offline(w.numpy()).features.T.copy())
    else:
        mel = window_mel(c)

        def features(w: torch.Tensor) -> torch.Tensor:
            m = mel(w)
            return torch.log(m + c.log_floor) if c.log else m
    x = torch.from_numpy(make_signal(seconds, c.sample_rate_hz))
    win = (arch.window_frames - 1) * c.hop_length + c.n_fft
    hop = c.hop_samples(arch.hop_frames)
    times, state = [], None
    for end in range(win, x.numel() + 1, hop):
        t0 = time.perf_counter()
        with torch.inference_mode():
            m = features(x[end - win:end])
            _, state = ck.inference_model().step(m[:, : arch.window_frames], state)
        times.append(time.perf_counter() - t0)
    return {"preset": preset, "total": pct(times[3:]),
            "features": "our frontend, offline over the window" if c.n_chroma
            else "torchaudio mel over the window"}


def frontend_window_vs_hop(seconds: float) -> dict:
    """Per 0.5 s hop with a 2 s window: our incremental frontend vs recomputing the window.

    Each way runs in its own pass over the same audio (steady state, warm caches), after a
    warm-up pass; all in this one run.
    """
    c = DEFAULT_FRONTEND
    x = make_signal(seconds, c.sample_rate_hz)
    xt = torch.from_numpy(x)
    hop, win = c.sample_rate_hz // 2, 2 * c.sample_rate_hz
    mel = window_mel(c)
    # Like for like: no fast lane (extra work the seed's way never does); against torchaudio,
    # which has no pitch-class rows, our frontend without them too.
    fe, fe_fast, fe_win = (MelFrontend(c, fast_lane=False), MelFrontend(c),
                           MelFrontend(c, fast_lane=False))
    fe_mel = MelFrontend(dataclasses.replace(c, n_chroma=0), fast_lane=False)

    def incremental(f: MelFrontend) -> list[float]:
        f.reset()
        out = []
        for i in range(0, x.size - hop + 1, hop):
            t0 = time.perf_counter()
            f.process(x[i:i + hop])
            out.append(time.perf_counter() - t0)
        return out

    def torchaudio_window() -> list[float]:
        out = []
        for end in range(win, x.size + 1, hop):
            t0 = time.perf_counter()
            with torch.inference_mode():
                torch.log(mel(xt[end - win:end]) + c.log_floor)
            out.append(time.perf_counter() - t0)
        return out

    def ours_window() -> list[float]:
        out = []
        for end in range(win, x.size + 1, hop):
            t0 = time.perf_counter()
            fe_win.process_offline(x[end - win:end])
            out.append(time.perf_counter() - t0)
        return out

    for way in (lambda: incremental(fe), lambda: incremental(fe_mel), torchaudio_window,
                ours_window):
        way()  # warm-up pass
    r = {"incremental_hop": pct(incremental(fe)),
         "incremental_hop_mel_only": pct(incremental(fe_mel)),
         "incremental_hop_with_fast_lane": pct(incremental(fe_fast)),
         "torchaudio_recompute_window": pct(torchaudio_window()),
         "ours_recompute_window": pct(ours_window())}
    r["ratio_torchaudio_window_over_incremental_mel_only"] = (
        r["torchaudio_recompute_window"]["mean_ms"] / r["incremental_hop_mel_only"]["mean_ms"])
    r["ratio_ours_window_over_incremental"] = (
        r["ours_recompute_window"]["mean_ms"] / r["incremental_hop"]["mean_ms"])
    return r


def offline(preset: str, seconds: float, tmp: Path) -> dict:
    """Offline analysis of ``seconds`` of audio; our frontend's and librosa's mel alone, each
    after a warm-up call (librosa's first call pays for its lazy setup)."""
    ck = load_checkpoint(make_checkpoint(tmp / f"{preset}-off.safetensors", preset, tiny=False))
    c = FRONTEND_PRESETS[preset]
    x = make_signal(seconds, c.sample_rate_hz)
    engine = Engine(ck)
    engine.analyze(x[: c.sample_rate_hz * 2])  # warm up
    t0 = time.perf_counter()
    engine.analyze(x)
    analyze_s = time.perf_counter() - t0

    def librosa_mel(y: np.ndarray) -> None:
        librosa.feature.melspectrogram(y=y, sr=c.sample_rate_hz, n_fft=c.n_fft,
                                       hop_length=c.hop_length, n_mels=c.n_mels,
                                       fmin=c.f_min_hz, center=False)

    timed: dict[str, float] = {}
    for name, way in (("ours", lambda y: MelFrontend(c).process_offline(y)),
                      ("librosa", librosa_mel)):
        way(x[: c.sample_rate_hz * 2])  # warm-up
        t0 = time.perf_counter()
        way(x)
        timed[name] = time.perf_counter() - t0
    return {"preset": preset, "audio_s": seconds, "analyze_s": analyze_s,
            "realtime_factor": seconds / analyze_s, "frontend_offline_s": timed["ours"],
            "librosa_mel_s": timed["librosa"],
            "librosa_over_ours": timed["librosa"] / timed["ours"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="audio per measurement [s]")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        result = {
            "machine": {"python": platform.python_version(), "torch": torch.__version__,
                        "threads": args.threads, "cpu": platform.processor() or "?"},
            "per_hop": [per_hop(p, args.seconds, tmp) for p in ("default", "seed")],
            "seed_way": [seed_way(p, args.seconds, tmp) for p in ("default", "seed")],
            "frontend_window_vs_hop": frontend_window_vs_hop(args.seconds),
            "offline": [offline(p, args.seconds * 5, tmp) for p in ("default", "seed")],
        }
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))

    print(f"\nper-hop cost, streaming, {args.threads} thread(s)   [ms]   p50     p99")
    for r, s in zip(result["per_hop"], result["seed_way"], strict=True):
        print(f"  {r['preset']:8s} frontend               {r['frontend']['p50_ms']:7.2f} "
              f"{r['frontend']['p99_ms']:7.2f}")
        print(f"  {r['preset']:8s} model                  {r['model']['p50_ms']:7.2f} "
              f"{r['model']['p99_ms']:7.2f}")
        print(f"  {r['preset']:8s} total (engine)         {r['total']['p50_ms']:7.2f} "
              f"{r['total']['p99_ms']:7.2f}")
        ratio = s["total"]["p50_ms"] / r["total"]["p50_ms"]
        print(f"  {r['preset']:8s} seed's way (window)    {s['total']['p50_ms']:7.2f} "
              f"{s['total']['p99_ms']:7.2f}   seed's way / ours {ratio:.1f}x")
    f = result["frontend_window_vs_hop"]
    print("\nfrontend per 0.5 s hop, 2 s window            [ms]  mean")
    print(f"  incremental (ours)                          {f['incremental_hop']['mean_ms']:7.3f}")
    print(f"  incremental, mel rows only (ours)           "
          f"{f['incremental_hop_mel_only']['mean_ms']:7.3f}")
    print(f"  incremental + fast lane (ours)              "
          f"{f['incremental_hop_with_fast_lane']['mean_ms']:7.3f}")
    print(f"  recompute window, torchaudio mel (seed's way) "
          f"{f['torchaudio_recompute_window']['mean_ms']:5.3f}   "
          f"{f['ratio_torchaudio_window_over_incremental_mel_only']:.1f}x the mel-only "
          "incremental")
    print(f"  recompute window, ours                      "
          f"{f['ours_recompute_window']['mean_ms']:7.3f}   "
          f"{f['ratio_ours_window_over_incremental']:.1f}x the incremental")
    print("\noffline analysis")
    for o in result["offline"]:
        print(f"  {o['preset']:8s} {o['audio_s']:.0f} s audio in {o['analyze_s']:.2f} s = "
              f"{o['realtime_factor']:.0f}x real time; mel: ours {o['frontend_offline_s']:.3f} s, "
              f"librosa {o['librosa_mel_s']:.3f} s ({o['librosa_over_ours']:.1f}x)")
    print(f"\npeak RSS {result['peak_rss_mb']:.0f} MB; written {OUT}")


if __name__ == "__main__":
    main()
