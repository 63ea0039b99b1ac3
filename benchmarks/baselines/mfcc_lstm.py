"""Seed 002's baseline on our corpus: MFCC + spectral centroid + spectral contrast → LSTM.

Seed 002 (an LSTM on Medley-solos-DB instruments) computes with librosa, per frame, 13 MFCCs,
the spectral centroid and the spectral contrast (6 bands + valley = 7), 21 features; a
2-layer LSTM (500 units, dropout 0.1 between the layers) and one linear layer; cross-entropy,
Adam at lr 1e-4, batches of 50 clips, 50 epochs (its best validation setting: 75 %).

What this script does the same: the 21 librosa features with librosa's defaults (22.05 kHz,
n_fft 2048, 128 mel bands for the MFCCs, contrast from 200 Hz), the LSTM, the optimiser, the
batch size and the learning rate. What it does differently, and why:

- **Causal, per 0.5 s hop.** Frames are computed with ``center=False`` after ``n_fft - hop``
  leading zeros, so a frame only sees audio up to its last sample, and the hop length is 441
  samples (20 ms; librosa's default is 512) so that 25 frames make exactly one 0.5 s hop. The
  MFCCs use ``power_to_db(top_db=None)``: librosa's default clamps at 80 dB below the *whole
  signal's* maximum, which would look into the future. The LSTM runs over the frames with its
  state carried from the start of the clip, and the output at the last frame of each hop is
  that hop's estimate, so hop k depends on the audio up to the end of hop k only: the same
  per-hop protocol as ``streamtag evaluate`` (``check_causal`` verifies it on a clip).
  Seed 002's code fed the first 3 frames of each 3 s clip (63 numbers) as one LSTM step, so
  its network heard about the first 0.1 s of each clip; here the LSTM sees every frame.
- **Standardised input.** Each feature is standardised with training-set mean and std (the
  raw centroid is in Hz, thousands, which saturates an LSTM); seed 002 fed raw values.
- **Three heads** on the shared LSTM, as our models have: instrument (8 classes, cross-entropy,
  trained on every hop of a clip), emotion (valence/arousal in [-1, 1] via tanh, MSE) and
  timbre (7 descriptors in [0, 1] via sigmoid, L1); each loss is masked to the clips that carry
  its label. ``--heads instrument`` trains seed 002's single head.

The comparison run (``benchmarks/results/baseline_mfcc_lstm.json``) used ``--lr 1e-3 --batch
20``, two of seed 002's own settings (its lr 1e-3 run also reached 75 % validation; it tried
batches of 20): with 260 training clips and a few epochs of budget, lr 1e-4 with batches of 50
makes too few steps to learn anything.

Metrics come from ``streamtag.train.evaluate.head_metrics``: the same code as ``streamtag
evaluate`` (per hop, per hop after 1 s, per clip; r, CCC, MAE). Features are cached as one
``.npy`` per clip under ``--cache`` (keyed by path, mtime, size and the feature parameters).

Usage::

    python benchmarks/baselines/mfcc_lstm.py --corpus /work/corpus/v1 --cache /work/cache/mfcc \\
        [--eval-manifest subset=/work/runs/baselines/corpus-sub/manifest.jsonl] \\
        [--epochs 50] [--out benchmarks/results/baseline_mfcc_lstm.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import torch
from torch import nn

from streamtag.atomic import atomic_path
from streamtag.logs import log_to_stderr
from streamtag.model import HeadSpec
from streamtag.train.config import EMOTION_HEAD, INSTRUMENT_CLASSES, TIMBRE_NAMES
from streamtag.train.datasets import Clip
from streamtag.train.evaluate import HeadData, finite, head_metrics
from streamtag.train.features import HeadTarget, corpus_clips, encode_labels

log = logging.getLogger("mfcc_lstm")

RESULTS = Path(__file__).resolve().parents[1] / "results"
HOP_S = 0.5
"""Seconds per estimate (the engine's hop)."""


@dataclass(frozen=True)
class FeatureParams:
    """librosa feature settings. hop_length [samples], n_fft [samples], sample_rate_hz [Hz]."""

    sample_rate_hz: int = 22050
    n_fft: int = 2048
    hop_length: int = 441
    n_mfcc: int = 13
    n_mels: int = 128
    contrast_fmin_hz: float = 200.0
    contrast_bands: int = 6

    @property
    def frames_per_hop(self) -> int:
        n = HOP_S * self.sample_rate_hz / self.hop_length
        if abs(n - round(n)) > 1e-9:
            raise ValueError(f"hop_length {self.hop_length} does not divide a {HOP_S} s hop")
        return round(n)

    @property
    def dims(self) -> int:
        return self.n_mfcc + 1 + self.contrast_bands + 1

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def frame_features(y: np.ndarray, p: FeatureParams) -> np.ndarray:
    """Causal features of a mono signal y [n] → [T, 21] float32, T = n // hop_length.

    Frame i covers samples [(i+1)·hop − n_fft, (i+1)·hop) of the zero-padded signal, so it
    is complete when its last sample has arrived.
    """
    y = np.concatenate([np.zeros(p.n_fft - p.hop_length, np.float32), y.astype(np.float32)])
    spec = np.abs(librosa.stft(y, n_fft=p.n_fft, hop_length=p.hop_length, center=False))
    power = spec ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=p.sample_rate_hz, n_mels=p.n_mels)
    # top_db=None: the default 80 dB floor is relative to the whole signal's maximum (not causal)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=p.n_mfcc)
    centroid = librosa.feature.spectral_centroid(S=spec, sr=p.sample_rate_hz, n_fft=p.n_fft)
    contrast = librosa.feature.spectral_contrast(S=spec, sr=p.sample_rate_hz, n_fft=p.n_fft,
                                                 fmin=p.contrast_fmin_hz,
                                                 n_bands=p.contrast_bands)
    return np.concatenate([mfcc, centroid, contrast]).T.astype(np.float32)


def load_mono(path: Path, sample_rate_hz: int) -> np.ndarray:
    """Audio of ``path`` as mono float32 at ``sample_rate_hz`` (librosa.load, as seed 002)."""
    y, _ = librosa.load(str(path), sr=sample_rate_hz, mono=True)
    return y


def cached_features(path: Path, p: FeatureParams, cache: Path) -> np.ndarray:
    """``frame_features`` of a file, from ``cache`` when present ([T, 21] float32)."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}".encode()).hexdigest()
    f = cache / p.key() / f"{key[:32]}.npy"
    if f.is_file():
        return np.load(f)
    x = frame_features(load_mono(path, p.sample_rate_hz), p)
    with atomic_path(f) as tmp, open(tmp, "wb") as fh:
        np.save(fh, x)
    return x


def check_causal(path: Path, p: FeatureParams, hops: int = 3, tol: float = 1e-3) -> float:
    """Max abs difference between features of the first ``hops`` hops computed on the truncated
    signal and on the whole signal (0 up to float rounding if the features are causal)."""
    y = load_mono(path, p.sample_rate_hz)
    n = int(hops * HOP_S * p.sample_rate_hz)
    short = frame_features(y[:n], p)
    full = frame_features(y, p)[: len(short)]
    err = float(np.max(np.abs(short - full) / (np.abs(full) + 1.0)))
    if err > tol:
        raise AssertionError(f"features are not causal: relative difference {err:.2e} > {tol}")
    return err


# -- model --------------------------------------------------------------------------------------

HEADS: dict[str, HeadTarget] = {
    "emotion": HeadTarget(HeadSpec("emotion", "regression", tuple(EMOTION_HEAD.labels),
                                   EMOTION_HEAD.range), "emotion"),
    "instrument": HeadTarget(HeadSpec("instrument", "multiclass", tuple(INSTRUMENT_CLASSES)),
                             "instrument"),
    "timbre": HeadTarget(HeadSpec("timbre", "regression", tuple(TIMBRE_NAMES), (0.0, 1.0)),
                         "timbre"),
}


class MfccLstm(nn.Module):
    """Seed 002's network with one linear layer per head.

    forward(x [B, T, D], state) → ({head: raw outputs [B, T, K]}, (h, c) [layers, B, hidden]).
    """

    def __init__(self, dims: int, heads: Sequence[str], hidden: int = 500, layers: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dims, hidden, num_layers=layers, batch_first=True, dropout=dropout)
        self.heads = nn.ModuleDict({h: nn.Linear(hidden, HEADS[h].spec.size) for h in heads})
        self.register_buffer("mean", torch.zeros(dims))
        self.register_buffer("std", torch.ones(dims))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        y, state = self.lstm((x - self.mean) / self.std, state)
        return {h: lin(y) for h, lin in self.heads.items()}, state


def activate(head: str, raw: torch.Tensor) -> torch.Tensor:
    """Raw head outputs → probabilities (instrument), [-1, 1] (emotion), [0, 1] (timbre)."""
    if head == "instrument":
        return raw.softmax(-1)
    if head == "emotion":
        return raw.tanh()
    return raw.sigmoid()


# -- data ---------------------------------------------------------------------------------------

@dataclass
class Item:
    """One clip: features [T, D], and per head (target, mask) per hop, as encode_labels gives."""

    clip: Clip
    x: np.ndarray
    n_hops: int
    targets: dict[str, tuple[np.ndarray, np.ndarray]]


def make_items(clips: Sequence[Clip], p: FeatureParams, cache: Path,
               heads: Sequence[str]) -> list[Item]:
    """Features and labels of every clip with at least one label of ``heads``."""
    out = []
    for i, c in enumerate(clips):
        x = cached_features(Path(c.path), p, cache)
        n_hops = len(x) // p.frames_per_hop
        targets = {h: encode_labels(c, HEADS[h], n_hops, HOP_S) for h in heads}
        if n_hops and any(m.any() for _, m in targets.values()):
            out.append(Item(c, x[: n_hops * p.frames_per_hop], n_hops, targets))
        if (i + 1) % 500 == 0:
            log.info("features: %d/%d clips", i + 1, len(clips))
    return out


def batch_tensors(items: Sequence[Item], heads: Sequence[str]
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Stack equal-length items: x [B, T, D], targets {head: [B, S(, K)]}, masks likewise."""
    x = torch.from_numpy(np.stack([it.x for it in items]))
    tg = {h: torch.from_numpy(np.stack([it.targets[h][0] for it in items])) for h in heads}
    mk = {h: torch.from_numpy(np.stack([it.targets[h][1] for it in items])) for h in heads}
    return x, tg, mk


def hop_outputs(model: MfccLstm, x: torch.Tensor, frames_per_hop: int
                ) -> dict[str, torch.Tensor]:
    """Raw outputs at the last frame of every hop: {head: [B, S, K]}."""
    out, _ = model(x)
    return {h: v[:, frames_per_hop - 1::frames_per_hop] for h, v in out.items()}


def loss_of(out: dict[str, torch.Tensor], tg: dict[str, torch.Tensor],
            mk: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over heads of the masked loss (CE instrument, MSE emotion, L1 timbre)."""
    total = torch.zeros(())
    for h, raw in out.items():
        m = mk[h].float()
        if m.sum() == 0:
            continue
        if h == "instrument":
            ce = nn.functional.cross_entropy(raw.flatten(0, 1), tg[h].flatten(), reduction="none")
            total = total + (ce * m.flatten()).sum() / m.sum()
        else:
            err = activate(h, raw) - tg[h]
            err = err ** 2 if h == "emotion" else err.abs()
            total = total + (err * m).sum() / m.sum()
    return total


def train(model: MfccLstm, items: list[Item], heads: Sequence[str], p: FeatureParams,
          epochs: int, batch: int, lr: float, seed: int,
          max_seconds: float | None = None) -> list[dict[str, float]]:
    """Adam on shuffled batches of equal-length clips; returns the loss per epoch.

    Stops after the epoch that passes ``max_seconds`` of training (None: no limit).
    """
    start = time.perf_counter()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    by_len: dict[int, list[int]] = {}
    for i, it in enumerate(items):
        by_len.setdefault(len(it.x), []).append(i)
    history = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        batches = []
        for idx in by_len.values():
            idx = list(rng.permutation(idx))
            batches += [idx[i:i + batch] for i in range(0, len(idx), batch)]
        rng.shuffle(batches)
        model.train()
        losses = []
        for b in batches:
            x, tg, mk = batch_tensors([items[i] for i in b], heads)
            loss = loss_of(hop_outputs(model, x, p.frames_per_hop), tg, mk)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "seconds": time.perf_counter() - t0})
        log.info("epoch %d/%d: loss %.4f (%.1f s)", epoch + 1, epochs, history[-1]["loss"],
                 history[-1]["seconds"])
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            log.warning("time limit: stopped after %d of %d epochs", epoch + 1, epochs)
            break
    return history


def evaluate(model: MfccLstm, items: Sequence[Item], heads: Sequence[str],
             p: FeatureParams) -> dict[str, Any]:
    """``head_metrics`` per head, each clip run from a fresh state (as the engine does)."""
    data = {h: HeadData(HEADS[h]) for h in heads}
    model.eval()
    with torch.inference_mode():
        for it in items:
            out = hop_outputs(model, torch.from_numpy(it.x)[None], p.frames_per_hop)
            for h in heads:
                data[h].add(activate(h, out[h][0]).numpy(), *it.targets[h])
    return {h: head_metrics(data[h], HOP_S) for h in heads
            if any(m.any() for m in data[h].masks)}


def hop_cost(model: MfccLstm, p: FeatureParams, repeats: int = 200, warmup: int = 20,
             seed: int = 0) -> dict[str, float]:
    """Per-hop cost [ms] of streaming: the 25 new frames' features (librosa, on the hop plus
    n_fft − hop samples of history) and the LSTM over them with its state carried."""
    rng = np.random.default_rng(seed)
    hop = int(HOP_S * p.sample_rate_hz)
    sig = (0.1 * rng.standard_normal(hop * (warmup + repeats) + p.n_fft)).astype(np.float32)
    model.eval()
    state = None
    feat_t, model_t = [], []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            block = sig[i * hop: i * hop + hop + p.n_fft - p.hop_length]
            t0 = time.perf_counter()
            y = block
            spec = np.abs(librosa.stft(y, n_fft=p.n_fft, hop_length=p.hop_length, center=False))
            mel = librosa.feature.melspectrogram(S=spec ** 2, sr=p.sample_rate_hz,
                                                 n_mels=p.n_mels)
            mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None),
                                        n_mfcc=p.n_mfcc)
            cen = librosa.feature.spectral_centroid(S=spec, sr=p.sample_rate_hz, n_fft=p.n_fft)
            con = librosa.feature.spectral_contrast(S=spec, sr=p.sample_rate_hz, n_fft=p.n_fft,
                                                    fmin=p.contrast_fmin_hz,
                                                    n_bands=p.contrast_bands)
            x = torch.from_numpy(np.concatenate([mfcc, cen, con]).T.astype(np.float32))[None]
            t1 = time.perf_counter()
            _, state = model(x, state)
            t2 = time.perf_counter()
            if i >= warmup:
                feat_t.append((t1 - t0) * 1e3)
                model_t.append((t2 - t1) * 1e3)
    f, m = np.asarray(feat_t), np.asarray(model_t)
    return {"features_mean_ms": float(f.mean()), "features_p99_ms": float(np.percentile(f, 99)),
            "model_mean_ms": float(m.mean()), "model_p99_ms": float(np.percentile(m, 99)),
            "total_mean_ms": float((f + m).mean()),
            "total_p99_ms": float(np.percentile(f + m, 99)), "repeats": repeats,
            "threads": torch.get_num_threads()}


# -- reporting ----------------------------------------------------------------------------------

def summary(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The comparison table's numbers from ``head_metrics`` output."""
    s: dict[str, float | None] = {}
    ins = metrics.get("instrument")
    if ins:
        s["instrument_hop_after_1s_acc"] = ins["per_hop_after_1s"]["accuracy"]
        s["instrument_clip_acc"] = ins["per_clip"]["accuracy"]
        s["instrument_hop_balanced_acc"] = ins["per_hop"]["balanced_accuracy"]
    emo = metrics.get("emotion")
    if emo:
        o = emo["per_hop"]["outputs"]
        s["valence_r"], s["arousal_r"] = o["valence"]["pearson_r"], o["arousal"]["pearson_r"]
        s["valence_ccc"], s["arousal_ccc"] = o["valence"]["ccc"], o["arousal"]["ccc"]
        s["quadrant_acc"] = emo["per_hop"].get("quadrant_accuracy")
    tim = metrics.get("timbre")
    if tim:
        s["timbre_mean_mae"] = tim["per_hop"]["mean_mae"]
    return s


def print_table(name: str, s: dict[str, float | None]) -> None:
    """One markdown table of ``summary`` numbers."""
    print(f"\n{name}\n\n| metric | value |\n| --- | --- |")
    for k, v in s.items():
        print(f"| {k} | {'–' if v is None else f'{v:.3f}'} |")


def manifest_paths(path: Path) -> set[str]:
    """Resolved audio paths of a manifest's validation clips."""
    clips, _ = corpus_clips(path.parent)
    return {str(Path(c.path).resolve()) for c in clips if c.split == "validation"}


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description="seed 002's MFCC-LSTM baseline on a streamtag corpus")
    ap.add_argument("--corpus", type=Path, required=True, help="corpus folder (manifest.jsonl)")
    ap.add_argument("--cache", type=Path, required=True, help="feature cache folder (.npy)")
    ap.add_argument("--out", type=Path, default=RESULTS / "baseline_mfcc_lstm.json",
                    help="result JSON")
    ap.add_argument("--eval-manifest", action="append", default=[], metavar="NAME=MANIFEST",
                    help="also score on the validation clips of another manifest")
    ap.add_argument("--heads", default="instrument,emotion,timbre",
                    help="comma-separated heads: instrument, emotion, timbre")
    ap.add_argument("--epochs", type=int, default=50, help="training epochs (seed 002: 50)")
    ap.add_argument("--batch", type=int, default=50, help="clips per batch (seed 002: 50)")
    ap.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (seed 002: 1e-4)")
    ap.add_argument("--hidden", type=int, default=500, help="LSTM units (seed 002: 500)")
    ap.add_argument("--seed", type=int, default=0, help="random seed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--max-train-minutes", type=float, default=None,
                    help="stop after the epoch that passes this much training time [min]")
    ap.add_argument("--save-model", type=Path, default=None,
                    help="write the trained weights here (torch state dict)")
    ap.add_argument("--label", default="MFCC-LSTM (seed 002)", help="name in the table")
    args = ap.parse_args(argv)
    log_to_stderr(logger="", replace=False)  # the root logger: this script's and streamtag's
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        ap.error(f"--heads: unknown {unknown} (known: {', '.join(HEADS)})")
    p = FeatureParams()
    clips, skipped = corpus_clips(args.corpus)
    if skipped:
        log.warning("%d manifest lines skipped, e.g. %s", len(skipped), skipped[0])
    t0 = time.perf_counter()
    train_items = make_items([c for c in clips if c.split == "train"], p, args.cache, heads)
    val_items = make_items([c for c in clips if c.split == "validation"], p, args.cache, heads)
    feature_s = time.perf_counter() - t0
    log.info("features: %d training, %d validation clips (%.1f s)", len(train_items),
             len(val_items), feature_s)
    causal_err = check_causal(Path(val_items[0].clip.path), p)

    model = MfccLstm(p.dims, heads, hidden=args.hidden)
    frames = np.concatenate([it.x for it in train_items])
    with torch.no_grad():
        model.mean.copy_(torch.from_numpy(frames.mean(0)))
        model.std.copy_(torch.from_numpy(np.maximum(frames.std(0), 1e-6)))
    t1, c1 = time.perf_counter(), time.process_time()
    history = train(model, train_items, heads, p, args.epochs, args.batch, args.lr, args.seed,
                    None if args.max_train_minutes is None else 60 * args.max_train_minutes)
    train_s, train_cpu_s = time.perf_counter() - t1, time.process_time() - c1
    if args.save_model is not None:
        args.save_model.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict(), "heads": heads, "hidden": args.hidden,
                    "features": asdict(p)}, args.save_model)

    evals = {"validation": evaluate(model, val_items, heads, p)}
    for spec in args.eval_manifest:
        name, _, path = spec.partition("=")
        keep = manifest_paths(Path(path))
        sub = [it for it in val_items if str(Path(it.clip.path).resolve()) in keep]
        if len(sub) != len(keep):
            log.warning("%s: %d of its %d validation clips are in this corpus", name, len(sub),
                        len(keep))
        evals[name] = evaluate(model, sub, heads, p)
        evals[name]["clips"] = len(sub)
    cost = hop_cost(model, p)
    result = {
        "baseline": "mfcc_lstm", "label": args.label, "corpus": str(args.corpus),
        "features": {**asdict(p), "dims": p.dims, "frames_per_hop": p.frames_per_hop,
                     "causal_check_max_rel_err": causal_err},
        "model": {"hidden": args.hidden, "layers": 2, "dropout": 0.1, "heads": heads,
                  "params": sum(t.numel() for t in model.parameters())},
        "train": {"epochs": len(history), "epochs_asked": args.epochs,
                  "batch_clips": args.batch, "lr": args.lr,
                  "seed": args.seed, "threads": args.threads, "clips": len(train_items),
                  "seconds": train_s, "cpu_seconds": train_cpu_s,
                  "feature_seconds": feature_s, "history": history},
        "cost": cost,
        "clips": {"train": len(train_items), "validation": len(val_items)},
        "evaluations": {k: {"summary": summary(v), "metrics": v} for k, v in evals.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(finite(result), indent=1) + "\n", encoding="utf-8")
    print(f"{args.label}: {result['model']['params']:,} parameters, {len(train_items)} training "
          f"clips, {len(history)} epochs in {train_s:.0f} s; per-hop cost "
          f"{cost['total_mean_ms']:.2f} ms (features {cost['features_mean_ms']:.2f} + LSTM "
          f"{cost['model_mean_ms']:.2f}), p99 {cost['total_p99_ms']:.2f} ms")
    for name, e in result["evaluations"].items():
        print_table(f"validation set `{name}`", e["summary"])
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
