"""Evaluation: per-head metrics, per hop and per clip, and a markdown report with PNG figures.

Two ways to get a model's outputs on a clip, with the same numbers up to the records' rounding:

- ``engine`` (the report's default): the audio file goes through ``Engine.analyze`` — frontend,
  windows, LSTM, post-processing — so the report measures exactly what users get;
- ``windows``: the cached training windows go through ``model.forward_sequence`` with the state
  carried across the whole clip (the trainer's validation, which must be cheap every epoch).

Metrics (``head_metrics``):

- multiclass: accuracy, balanced accuracy (mean recall over the classes present) and confusion
  matrix (rows: true class, columns: predicted); per hop, per hop after the first second (hops
  whose end time exceeds 1 s, once the model has heard a full second) and per clip (the mean of
  the hops' probabilities, then argmax);
- regression: RMSE, MAE, Pearson r and CCC per output, per hop and per clip (clip = mean over
  its labelled hops); emotion heads add Thayer quadrant accuracy and, per clip, ``ordering``
  (of two clips whose labels differ by ≥ 0.5, how often the higher one scores higher); timbre
  heads report MAE per descriptor first;
- multilabel: per tag average precision, F1 at 0.5 and positives (over the hops or clips
  that label the tag), their means, and element-wise accuracy at 0.5;
- embedding: nearest-class-centroid accuracy of clip embeddings, leave-one-out.

The report also measures the per-hop cost: the mean and 99th percentile [ms] of ``model.step``
on one window, state carried, in this process's thread setting.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamtag.audiofile import read_audio
from streamtag.checkpoint import Checkpoint
from streamtag.engine import Engine
from streamtag.model import StreamTagModel
from streamtag.record import EMBEDDING_VECTOR, quadrant
from streamtag.train.datasets import Clip
from streamtag.train.features import FeatureCache, HeadTarget, load_features

log = logging.getLogger("streamtag.train")

AFTER_S = 1.0
"""Hops whose end time exceeds this [s] count as "after the first second"."""
SETTLED_S = 3.0
"""Regression heads are also scored on hops ending after this [s]: a mode (hence valence)
shows over seconds of notes, and a live set runs far longer than a 6 s clip."""
CLEAR = 0.25
"""A clip is "clear" when both its emotion labels lie at least this far from zero (a quarter of
the scale). The corpus draws cue settings 0.1 from the axes, but labels come from the cues as
rendered, so some validation clips sit on an axis, where no listener would name a quadrant
either; the quadrant accuracy on clear clips is reported beside the one on all clips."""


# -- elementary metrics -------------------------------------------------------------------------

def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """[K, K] counts; row = true class, column = predicted class."""
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return m


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else None


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float | None:
    """Mean recall over the classes present in ``y_true``."""
    if not len(y_true):
        return None
    m = confusion_matrix(y_true, y_pred, n_classes)
    support = m.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(m)[present] / support[present]))


def rmse(x: np.ndarray, y: np.ndarray) -> float | None:
    return float(np.sqrt(np.mean((np.asarray(x) - np.asarray(y)) ** 2))) if len(x) else None


def mae(x: np.ndarray, y: np.ndarray) -> float | None:
    return float(np.mean(np.abs(np.asarray(x) - np.asarray(y)))) if len(x) else None


def pearson_r(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation; None when either side is constant (undefined) or too short."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    den = math.sqrt(float(np.sum(dx * dx)) * float(np.sum(dy * dy)))
    return float(np.sum(dx * dy) / den) if den > 0 else None


ORDER_GAP = 0.5
"""``ordering`` compares clips whose labels differ by at least this much (on the [-1, 1]
scale): a clearly happier or calmer clip, as a listener would rank them."""


def ordering(pred: np.ndarray, true: np.ndarray, gap: float = ORDER_GAP) -> float | None:
    """P(of two clips whose labels differ by ≥ ``gap``, the higher-labelled one scores higher):
    the share of such pairs the outputs put in the labels' order (ties count half); None when
    no pair differs that much."""
    p, t = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    i, j = np.nonzero(t[:, None] - t[None, :] >= gap)  # t[i] clearly above t[j]
    if not len(i):
        return None
    d = p[i] - p[j]
    return float((np.sum(d > 0) + 0.5 * np.sum(d == 0)) / len(i))


def ccc(x: np.ndarray, y: np.ndarray) -> float | None:
    """Lin's concordance correlation coefficient (1: identical, 0: unrelated)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2:
        return None
    mx, my = x.mean(), y.mean()
    den = x.var() + y.var() + (mx - my) ** 2
    if den <= 0:
        return 1.0  # two identical constants agree perfectly
    return float(2 * np.mean((x - mx) * (y - my)) / den)


def quadrant_accuracy(true_va: np.ndarray, pred_va: np.ndarray) -> float | None:
    """Share of points [N, 2] (valence, arousal) whose Thayer quadrant is right."""
    if not len(true_va):
        return None
    qt = [quadrant(float(v), float(a)) for v, a in true_va]
    qp = [quadrant(float(v), float(a)) for v, a in pred_va]
    return float(np.mean(np.asarray(qt) == np.asarray(qp)))


# -- per-head metrics -----------------------------------------------------------------------------

@dataclass
class HeadData:
    """One head's outputs and labels over a set of clips (lists with one entry per clip).

    preds: activated outputs [S, K]. targets / masks: as ``features.encode_labels`` makes them.
    textures: each clip's ``Clip.texture`` (solo / accompanied / None).
    """

    head: HeadTarget
    preds: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    textures: list[str | None] = field(default_factory=list)

    def add(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray,
            texture: str | None = None) -> None:
        self.preds.append(np.asarray(pred, np.float64))
        self.targets.append(np.asarray(target))
        self.masks.append(np.asarray(mask))
        self.textures.append(texture)

    def subset(self, texture: str) -> HeadData:
        """The clips of one texture."""
        return self.select([i for i, t in enumerate(self.textures) if t == texture])

    def select(self, keep: list[int]) -> HeadData:
        """The clips at these indices, in this order."""
        return HeadData(self.head, [self.preds[i] for i in keep],
                        [self.targets[i] for i in keep], [self.masks[i] for i in keep],
                        [self.textures[i] for i in keep])

    def clip_level(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per clip means over labelled hops: (pred [C, K], target [C, K or -], mask [C, K or -]).

        multiclass/embedding targets are class indices [C]; regression masks are per output.
        """
        preds, targets, masks = [], [], []
        for p, t, m in zip(self.preds, self.targets, self.masks, strict=True):
            hop_m = m if m.ndim == 1 else m.any(axis=1)
            if not hop_m.any():
                continue
            sel = hop_m > 0
            preds.append(p[sel].mean(axis=0))
            if m.ndim == 2:  # regression: mean of each output over the hops that label it
                cnt = m.sum(axis=0)
                targets.append(np.where(cnt > 0, (t * m).sum(axis=0) / np.maximum(cnt, 1), 0.0))
                masks.append((cnt > 0).astype(np.float32))
            else:
                vals, counts = np.unique(t[sel], return_counts=True, axis=0)
                targets.append(vals[np.argmax(counts)])
                masks.append(np.float32(1.0))
        if not preds:
            k = self.head.spec.size
            return np.zeros((0, k)), np.zeros((0,)), np.zeros((0,))
        return np.stack(preds), np.stack(targets), np.stack(masks)


def _classes(head: HeadTarget, pred: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    k = head.spec.size
    y_pred = np.argmax(pred, axis=1) if len(pred) else np.zeros(0, np.int64)
    return {
        "n": len(true), "accuracy": accuracy(true, y_pred),
        "balanced_accuracy": balanced_accuracy(true, y_pred, k),
        "confusion": confusion_matrix(true, y_pred, k).tolist(),
    }


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Average precision of a ranking (area under the precision-recall steps).

    scores [N] (higher: more likely positive), positive [N] bool. None without a positive.
    """
    positive = np.asarray(positive, bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = positive[order]
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].sum() / n_pos)


def f1_score(pred: np.ndarray, positive: np.ndarray) -> float | None:
    """F1 of boolean predictions [N] against truth [N]; None when both are all negative."""
    pred, positive = np.asarray(pred, bool), np.asarray(positive, bool)
    tp = int((pred & positive).sum())
    denom = int(pred.sum()) + int(positive.sum())
    return 2 * tp / denom if denom else None


def _tags(head: HeadTarget, pred: np.ndarray, true: np.ndarray,
          mask: np.ndarray) -> dict[str, Any]:
    """Per-tag AP, F1 at 0.5 and positives over the items [N] that label the tag."""
    out: dict[str, Any] = {"n": len(pred), "tags": {}}
    for j, tag in enumerate(head.spec.labels):
        sel = mask[:, j] > 0 if mask.ndim == 2 else np.ones(len(pred), bool)
        pos = true[sel, j] >= 0.5
        out["tags"][tag] = {"n": int(sel.sum()), "positives": int(pos.sum()),
                            "ap": average_precision(pred[sel, j], pos),
                            "f1": f1_score(pred[sel, j] >= 0.5, pos)}
    aps = [t["ap"] for t in out["tags"].values() if t["ap"] is not None]
    f1s = [t["f1"] for t in out["tags"].values() if t["f1"] is not None]
    out["mean_ap"] = float(np.mean(aps)) if aps else None
    out["mean_f1"] = float(np.mean(f1s)) if f1s else None
    hit = [(pred[:, j] >= 0.5) == (true[:, j] >= 0.5) for j in range(pred.shape[1])]
    m = mask if mask.ndim == 2 else np.ones_like(pred)
    out["accuracy"] = (float((np.stack(hit, axis=1) * m).sum() / m.sum())
                       if len(pred) and m.sum() > 0 else None)
    return out


def _regression(head: HeadTarget, pred: np.ndarray, true: np.ndarray,
                mask: np.ndarray, order: bool = False) -> dict[str, Any]:
    """order: also measure ``ordering`` per output (for clips: pairs of hops would weigh long
    clips more and compare hops of one clip with each other)."""
    out: dict[str, Any] = {"outputs": {}}
    for j, name in enumerate(head.spec.labels):
        sel = mask[:, j] > 0
        p, t = pred[sel, j], true[sel, j]
        out["outputs"][name] = {"n": int(sel.sum()), "rmse": rmse(p, t), "mae": mae(p, t),
                                "pearson_r": pearson_r(p, t), "ccc": ccc(p, t)}
        if order:
            out["outputs"][name]["ordering"] = ordering(p, t)
    maes = [o["mae"] for o in out["outputs"].values() if o["mae"] is not None]
    out["mean_mae"] = float(np.mean(maes)) if maes else None
    cccs = [o["ccc"] for o in out["outputs"].values() if o["ccc"] is not None]
    out["mean_ccc"] = float(np.mean(cccs)) if cccs else None
    labels = head.spec.labels
    if head.target == "emotion" and {"valence", "arousal"} <= set(labels):
        iv, ia = labels.index("valence"), labels.index("arousal")
        both = (mask[:, iv] > 0) & (mask[:, ia] > 0)
        out["quadrant_accuracy"] = quadrant_accuracy(true[both][:, [iv, ia]],
                                                     pred[both][:, [iv, ia]])
        out["n_quadrant"] = int(both.sum())
    return out


def _hops(data: HeadData, hop_s: float, after_s: float | None = None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All labelled hops concatenated: (pred [N, K], target, mask), optionally after ``after_s``."""
    ps, ts, ms = [], [], []
    for p, t, m in zip(data.preds, data.targets, data.masks, strict=True):
        keep = np.ones(len(p), bool)
        if after_s is not None:
            keep = (np.arange(len(p)) + 1) * hop_s > after_s + 1e-9
        hop_m = (m if m.ndim == 1 else m.any(axis=1)) > 0
        keep &= hop_m
        ps.append(p[keep])
        ts.append(t[keep])
        ms.append(m[keep])
    k = data.head.spec.size
    if not ps:
        return np.zeros((0, k)), np.zeros((0,)), np.zeros((0,))
    return np.concatenate(ps), np.concatenate(ts), np.concatenate(ms)


def _embedding_accuracy(emb: np.ndarray, labels: np.ndarray) -> float | None:
    """Leave-one-out nearest-class-centroid accuracy of L2-normalised embeddings [C, D]."""
    if len(emb) < 2:
        return None
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    classes = np.unique(labels)
    right = 0
    counted = 0
    for i in range(len(emb)):
        others = np.arange(len(emb)) != i
        best, best_d = None, np.inf
        for c in classes:
            sel = others & (labels == c)
            if not sel.any():
                continue
            d = float(np.linalg.norm(emb[i] - emb[sel].mean(axis=0)))
            if d < best_d:
                best, best_d = c, d
        if best is not None:
            counted += 1
            right += int(best == labels[i])
    return right / counted if counted else None


def head_metrics(data: HeadData, hop_s: float) -> dict[str, Any]:
    """Every metric of one head over a set of clips (see the module docstring)."""
    spec = data.head.spec
    pred_h, true_h, mask_h = _hops(data, hop_s)
    pred_c, true_c, mask_c = data.clip_level()
    out: dict[str, Any] = {"kind": spec.kind, "target": data.head.target,
                           "labels": list(spec.labels), "clips": len(pred_c)}
    if spec.kind == "multiclass":
        out["per_hop"] = _classes(data.head, pred_h, true_h)
        pa, ta, _ = _hops(data, hop_s, AFTER_S)
        out["per_hop_after_1s"] = _classes(data.head, pa, ta)
        out["per_clip"] = _classes(data.head, pred_c, true_c.astype(np.int64))
    elif spec.kind == "regression":
        out["per_hop"] = _regression(data.head, pred_h, true_h, mask_h)
        out["per_hop_after_3s"] = _regression(data.head, *_hops(data, hop_s, SETTLED_S))
        out["per_clip"] = _regression(data.head, pred_c, true_c, mask_c,
                                      order=data.head.target == "emotion")
        if data.head.target == "emotion":
            out["textures"] = texture_metrics(data, hop_s)
    elif spec.kind == "multilabel":
        out["per_hop"] = _tags(data.head, pred_h, true_h, mask_h)
        out["per_clip"] = _tags(data.head, pred_c, true_c, mask_c)
    else:
        out["per_clip"] = {"n": len(pred_c), "centroid_accuracy":
                           _embedding_accuracy(pred_c, true_c.astype(np.int64))}
    return out


def texture_metrics(data: HeadData, hop_s: float) -> dict[str, dict[str, Any]]:
    """Emotion per texture (solo / accompanied): quadrant accuracy per hop after
    ``SETTLED_S`` and per clip, the same per hop on the ``CLEAR`` clips only, valence and
    arousal r after ``SETTLED_S``, the mean valence of each true quadrant's hops after
    ``SETTLED_S`` (centred output: + for 1 and 4, − for 2 and 3), and the clips counted."""
    out: dict[str, dict[str, Any]] = {}
    labels = list(data.head.spec.labels)
    if not {"valence", "arousal"} <= set(labels):
        return out
    iv, ia = labels.index("valence"), labels.index("arousal")
    for texture in sorted({t for t in data.textures if t is not None}):
        sub = data.subset(texture)
        if not any(np.asarray(m).any() for m in sub.masks):
            continue
        pred, true, mask = _hops(sub, hop_s, SETTLED_S)
        late = _regression(sub.head, pred, true, mask)
        clip = _regression(sub.head, *sub.clip_level())
        both = (mask[:, iv] > 0) & (mask[:, ia] > 0) if len(mask) else np.zeros(0, bool)
        q_true = np.asarray([quadrant(float(v), float(a)) for v, a in true[both][:, [iv, ia]]])
        by_q = {str(q): float(pred[both][q_true == q, iv].mean()) for q in sorted(set(q_true))}
        # Clear clips by their clip-level labels (the mean over labelled hops; an emotion
        # label is constant over a corpus clip).
        # clip_level keeps the clips with a labelled hop, in order: `labelled` maps its rows back.
        _, true_c, mask_c = sub.clip_level()
        clear_c = ((mask_c[:, iv] > 0) & (mask_c[:, ia] > 0) & (np.abs(true_c[:, iv]) >= CLEAR)
                   & (np.abs(true_c[:, ia]) >= CLEAR))
        labelled = [i for i, m in enumerate(sub.masks) if np.asarray(m).any()]
        clear = sub.select([labelled[k] for k in np.flatnonzero(clear_c)])
        pred_x, true_x, mask_x = _hops(clear, hop_s, SETTLED_S)
        out[texture] = {
            "clips": len(labelled),
            "quadrants_after_3s": late.get("quadrant_accuracy"),
            "quadrants_per_clip": clip.get("quadrant_accuracy"),
            "valence_r_after_3s": late["outputs"]["valence"]["pearson_r"],
            "arousal_r_after_3s": late["outputs"]["arousal"]["pearson_r"],
            "mean_valence_by_true_quadrant": by_q,
            "clear_clips": int(clear_c.sum()),
            "quadrants_clear_after_3s": (_regression(clear.head, pred_x, true_x, mask_x).get(
                "quadrant_accuracy") if len(pred_x) else None),
        }
    return out


def head_score(metrics: dict[str, Any], loss: str | None = None) -> float | None:
    """One number per head, higher is better, for choosing the best epoch.

    multiclass: per-hop balanced accuracy. regression: mean CCC (emotion, or a CCC/MSE loss)
    or 1 − mean MAE (timbre, or an L1 loss). multilabel: per-hop mean average precision.
    embedding: centroid accuracy.
    """
    kind = metrics["kind"]
    if kind == "multiclass":
        return metrics["per_hop"]["balanced_accuracy"]
    if kind == "regression":
        hop = metrics["per_hop"]
        if loss == "l1" or (loss is None and metrics["target"] == "timbre"):
            return None if hop["mean_mae"] is None else 1.0 - hop["mean_mae"]
        return hop["mean_ccc"]
    if kind == "multilabel":
        return metrics["per_hop"]["mean_ap"]
    return metrics["per_clip"]["centroid_accuracy"]


def overall_score(per_head: dict[str, float | None], weights: dict[str, float]) -> float | None:
    """Weighted mean of the heads' scores that exist."""
    pairs = [(s, weights.get(h, 1.0)) for h, s in per_head.items() if s is not None]
    total = sum(w for _, w in pairs)
    return sum(s * w for s, w in pairs) / total if pairs and total > 0 else None


def finite(obj: Any) -> Any:
    """``obj`` with NaN/inf replaced by None and numpy scalars made plain (for strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return finite(obj.tolist())
    return obj


# -- running the model ----------------------------------------------------------------------------

def window_outputs(model: StreamTagModel, windows: np.ndarray | torch.Tensor,
                   chunk: int = 256) -> dict[str, np.ndarray]:
    """Activated outputs {head: [B, S, K]} of windows [B, S, M, W] from a fresh state."""
    x = torch.from_numpy(np.array(windows, np.float32)) if not isinstance(
        windows, torch.Tensor) else windows
    model.eval()
    with torch.inference_mode():
        out, _ = model.forward_chunked(x, chunk=chunk)
    return {k: v.numpy() for k, v in out.items()}


def record_outputs(records: Sequence[dict], model: StreamTagModel) -> dict[str, np.ndarray]:
    """Engine records (one stream) → {head: [S, K]} in the head's label order."""
    out: dict[str, np.ndarray] = {}
    for spec in model.heads:
        rows = []
        for r in records:
            section = r[spec.name]
            if spec.kind == "multiclass":
                rows.append([section["probs"][lab] for lab in spec.labels])
            elif spec.kind == "embedding":
                rows.append(list(section[EMBEDDING_VECTOR]))
            else:
                rows.append([section[lab] for lab in spec.labels])
        out[spec.name] = np.asarray(rows, np.float64).reshape(len(records), spec.size)
    return out


def measure_step_cost(model: StreamTagModel, repeats: int = 200, warmup: int = 20,
                      seed: int = 0) -> dict[str, float]:
    """Per-hop cost of ``model.step`` on one window, state carried: mean and p99 [ms], with
    one torch thread as the daemon runs it (``threads`` in the result). Pass the model as
    the engine runs it (``Checkpoint.inference_model``) to measure what the daemon spends."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _step_cost(model, repeats, warmup, seed)
    finally:
        torch.set_num_threads(threads)


def _step_cost(model: StreamTagModel, repeats: int, warmup: int, seed: int) -> dict[str, float]:
    a = model.arch
    g = torch.Generator().manual_seed(seed)
    window = model.input_mean[:, None] + model.input_std[:, None] * torch.randn(
        a.n_features, a.window_frames, generator=g)
    model.eval()
    state = None
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            _, state = model.step(window, state)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    arr = np.asarray(times)
    return {"mean_ms": float(arr.mean()), "p99_ms": float(np.percentile(arr, 99)),
            "repeats": repeats, "threads": torch.get_num_threads()}


def checkpoint_heads(ck: Checkpoint) -> list[HeadTarget]:
    """Which clip label each of a checkpoint's heads predicts.

    The trainer records it in ``provenance.head_targets``; without it a head named after a
    target (emotion, instrument, timbre, tags) predicts that target and others are not scored.
    """
    recorded = ck.provenance.get("head_targets") or {}
    out = []
    for spec in ck.heads:
        target = recorded.get(spec.name, spec.name)
        if target in ("emotion", "instrument", "timbre", "tags"):
            out.append(HeadTarget(spec, target))
    return out


# -- the report -----------------------------------------------------------------------------------

@dataclass
class Report:
    """What ``evaluate`` measured. ``heads``: ``head_metrics`` per head."""

    checkpoint: str
    checkpoint_id: str
    method: str
    split: str
    clips: int
    hop_s: float
    heads: dict[str, dict[str, Any]]
    cost: dict[str, float]
    skipped: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    embedding: dict[str, Any] | None = None  # ``EmbeddingReport.to_dict`` with an embedding head
    entry: dict[str, Any] | None = None  # ``EntryReport.to_dict`` (``evaluate(entry=True)``)

    def to_dict(self) -> dict[str, Any]:
        return finite(dict(vars(self)))

    def to_markdown(self) -> str:
        return render_markdown(self)


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def render_markdown(r: Report) -> str:
    how = ("`Engine.analyze` on the audio files (what users get)" if r.method == "engine"
           else "`model.forward_sequence` on the cached training windows (state carried over "
                "each clip; equal to the engine's numbers)")
    lines = [
        "# streamtag evaluation", "",
        f"- checkpoint: `{r.checkpoint}` (id `{r.checkpoint_id}`)",
        f"- data: {r.clips} clips, split `{r.split}`; hop {r.hop_s:g} s",
        f"- outputs from {how}",
        f"- per clip = mean of the outputs over the clip's labelled hops; \"after 1 s\" = hops "
        f"ending later than {AFTER_S:g} s into the clip",
        "",
    ]
    for name, m in r.heads.items():
        lines += [f"## {name} ({m['kind']}, target `{m['target']}`, {m['clips']} clips)", ""]
        if m["kind"] == "multiclass":
            lines += ["| scope | n | accuracy | balanced accuracy |", "| --- | --- | --- | --- |"]
            for scope, title in (("per_hop", "per hop"), ("per_hop_after_1s", "per hop after 1 s"),
                                 ("per_clip", "per clip")):
                s = m[scope]
                lines.append(f"| {title} | {s['n']} | {_f(s['accuracy'])} | "
                             f"{_f(s['balanced_accuracy'])} |")
            lines += ["", "Confusion matrix per hop (rows: true, columns: predicted):", "",
                      "| true \\ predicted | " + " | ".join(m["labels"]) + " |",
                      "| --- " * (len(m["labels"]) + 1) + "|"]
            for label, row in zip(m["labels"], m["per_hop"]["confusion"], strict=True):
                lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
        elif m["kind"] == "regression":
            timbre = m["target"] == "timbre"
            late = m.get("per_hop_after_3s")
            lines += ["| output | MAE hop | MAE clip | RMSE hop | RMSE clip | r hop | r clip "
                      "| CCC hop | CCC clip | n hop |"
                      + (f" r hop after {SETTLED_S:g} s |" if late else ""),
                      "| --- " * (11 if late else 10) + "|"]
            for out_name in m["labels"]:
                h, c = m["per_hop"]["outputs"][out_name], m["per_clip"]["outputs"][out_name]
                lines.append(
                    f"| {out_name} | {_f(h['mae'])} | {_f(c['mae'])} | {_f(h['rmse'])} | "
                    f"{_f(c['rmse'])} | {_f(h['pearson_r'])} | {_f(c['pearson_r'])} | "
                    f"{_f(h['ccc'])} | {_f(c['ccc'])} | {h['n']} |"
                    + (f" {_f(late['outputs'][out_name]['pearson_r'])} |" if late else ""))
            if timbre:
                lines += ["", f"Mean MAE: {_f(m['per_hop']['mean_mae'])} per hop, "
                              f"{_f(m['per_clip']['mean_mae'])} per clip."]
            if "quadrant_accuracy" in m["per_hop"]:
                lines += ["", f"Quadrant accuracy: {_f(m['per_hop']['quadrant_accuracy'])} per "
                              f"hop, {_f(m['per_clip']['quadrant_accuracy'])} per clip"
                              + (f", {_f(late['quadrant_accuracy'])} per hop after "
                                 f"{SETTLED_S:g} s." if late else ".")]
            orders = {k: o.get("ordering") for k, o in m["per_clip"]["outputs"].items()
                      if o.get("ordering") is not None}
            if orders:
                lines += ["", f"Ordering per clip (of two clips whose labels differ by ≥ "
                              f"{ORDER_GAP:g}, the share the outputs put in the labels' order): "
                              + ", ".join(f"{k} {_f(v)}" for k, v in orders.items()) + "."]
            if m.get("textures"):
                lines += ["", f"Per texture (after {SETTLED_S:g} s; mean predicted valence of "
                              "each true quadrant, centred = + + for 1 and 4, − − for 2 and 3; "
                              "quadrants on clear clips = hops of the clips whose labels both "
                              f"lie ≥ {CLEAR:g} from zero):",
                          "", "| texture | clips | quadrants hop | quadrants clip | clear clips "
                              "| quadrants hop, clear | valence r | arousal r "
                              "| mean valence q1 / q2 / q3 / q4 |",
                          "| --- " * 9 + "|"]
                for texture, t in m["textures"].items():
                    means = " / ".join(_f(t["mean_valence_by_true_quadrant"].get(q), 2)
                                       for q in ("1", "2", "3", "4"))
                    lines.append(f"| {texture} | {t['clips']} | {_f(t['quadrants_after_3s'])} "
                                 f"| {_f(t['quadrants_per_clip'])} | {t['clear_clips']} | "
                                 f"{_f(t['quadrants_clear_after_3s'])} | "
                                 f"{_f(t['valence_r_after_3s'])} | "
                                 f"{_f(t['arousal_r_after_3s'])} | {means} |")
        elif m["kind"] == "multilabel":
            lines += ["| tag | AP hop | AP clip | F1 hop | F1 clip | positives / hops |",
                      "| --- " * 6 + "|"]
            for tag in m["labels"]:
                h, c = m["per_hop"]["tags"][tag], m["per_clip"]["tags"][tag]
                lines.append(f"| {tag} | {_f(h['ap'])} | {_f(c['ap'])} | {_f(h['f1'])} | "
                             f"{_f(c['f1'])} | {h['positives']} / {h['n']} |")
            lines += ["", f"Mean AP: {_f(m['per_hop']['mean_ap'])} per hop, "
                          f"{_f(m['per_clip']['mean_ap'])} per clip; mean F1 at 0.5: "
                          f"{_f(m['per_hop']['mean_f1'])} per hop. Element-wise accuracy at "
                          f"0.5 over known tags: {_f(m['per_hop']['accuracy'])} per hop."]
        else:
            lines.append("Leave-one-out nearest-centroid accuracy of clip embeddings: "
                         f"{_f(m['per_clip']['centroid_accuracy'])}.")
        for key, path in r.figures.items():
            if key.startswith(name + "_") and not key.startswith("embedding_"):
                lines += ["", f"![{key}]({Path(path).name})"]
        lines.append("")
    if r.embedding is not None:
        from streamtag.train.evaluate_embedding import EmbeddingReport, report_markdown

        lines += report_markdown(EmbeddingReport(**r.embedding), r.figures)
    if r.entry is not None:
        from streamtag.train.evaluate_entry import EntryCase, EntryReport

        entry = EntryReport(**{**r.entry, "cases": [EntryCase(**c) for c in r.entry["cases"]]})
        lines += ["## Entry after a pause", "", *entry.to_markdown(), ""]
    c = r.cost
    lines += ["## Cost per hop", "",
              f"`model.step` on one window, state carried: mean {_f(c['mean_ms'], 2)} ms, "
              f"p99 {_f(c['p99_ms'], 2)} ms ({c['repeats']} hops, {c['threads']} torch "
              f"thread(s); the model as the engine runs it, batch norm folded into the "
              f"convolutions: `StreamTagModel.for_inference`).", ""]
    if r.skipped:
        lines += [f"## Skipped ({len(r.skipped)})", ""] + [f"- {s}" for s in r.skipped[:20]]
        if len(r.skipped) > 20:
            lines.append(f"- … and {len(r.skipped) - 20} more")
        lines.append("")
    lines.append(f"Evaluated in {r.seconds:.1f} s.")
    return "\n".join(lines) + "\n"


def collect_engine(ck: Checkpoint, clips: Sequence[Clip], heads: Sequence[HeadTarget],
                   progress: Callable[[Iterable[Clip]], Iterable[Clip]] | None = None
                   ) -> tuple[dict[str, HeadData], list[str]]:
    """Run every clip's audio through ``Engine.analyze``; gather outputs and labels per head.

    Clips whose timbre label the descriptors computed (``timbre_per_hop``) are scored hop by
    hop against the descriptors of each hop's window (``hop_timbre``), as the trainer trains
    and validates them, not against the whole clip's label.
    """
    from streamtag.train.features import encode_labels, hop_timbre

    data = {h.name: HeadData(h) for h in heads}
    skipped: list[str] = []
    engines: dict[int, Engine] = {}
    for clip in progress(clips) if progress else clips:
        try:
            audio, rate = read_audio(clip.path)
        except Exception as e:  # one unreadable file costs that clip only
            skipped.append(f"{clip.path}: {e}")
            continue
        if rate not in engines:
            engines[rate] = Engine(ck, input_rate_hz=rate)
        engine = engines[rate]
        records = engine.analyze(audio)
        if not records:
            skipped.append(f"{clip.path}: shorter than one hop")
            continue
        outputs = record_outputs(records, ck.model)
        hop_labels = None
        if clip.timbre_per_hop and clip.timbre is not None and any(
                h.target == "timbre" for h in heads):
            hop_labels = hop_timbre(audio, rate, len(records), engine.hop_s, clip.timbre)
        for h in heads:
            target, mask = encode_labels(clip, h, len(records), engine.hop_s, hop_labels)
            data[h.name].add(outputs[h.name], target, mask, clip.texture)
    return data, skipped


def collect_windows(ck: Checkpoint, clips: Sequence[Clip], heads: Sequence[HeadTarget],
                    cache: FeatureCache,
                    progress: Callable[[Iterable[Clip]], Iterable[Clip]] | None = None
                    ) -> tuple[dict[str, HeadData], list[str]]:
    """Run every clip's cached windows through ``forward_sequence``; gather per head."""
    hop_s = hop_seconds(ck)
    feats, skipped = load_features(clips, cache, ck.model.arch, heads, hop_s, progress)
    data = {h.name: HeadData(h) for h in heads}
    for f in feats:
        outputs = window_outputs(ck.model, f.windows[None])
        for h in heads:
            data[h.name].add(outputs[h.name][0], f.targets[h.name], f.masks[h.name],
                             f.clip.texture)
    return data, skipped


def hop_seconds(ck: Checkpoint) -> float:
    return ck.frontend.hop_seconds(ck.model.arch.hop_frames)


def evaluate(
    ck: Checkpoint,
    clips: Sequence[Clip],
    *,
    method: str = "engine",
    split: str = "validation",
    out_dir: str | Path | None = None,
    cache: FeatureCache | None = None,
    plots: bool = True,
    cost_repeats: int = 200,
    progress: Callable[[Iterable[Clip]], Iterable[Clip]] | None = None,
    embedding: bool = True,
    embedding_report: Any = None,
    entry: bool = False,
) -> Report:
    """Evaluate a checkpoint on labelled clips; write ``report.md``, ``report.json`` and PNGs.

    embedding: with an embedding head, also measure retrieval, known/unknown detection and
    novelty (``evaluate_embedding``; clips grouped into pieces by dataset and group).
    embedding_report: an ``EmbeddingReport`` already measured on these clips with this model
    (the trainer's ``finalize_embedding`` makes one), used instead of measuring again.
    entry: also measure entry after a pause (``evaluate_entry``, on a few clips per class).

    method: ``engine`` (audio through ``Engine.analyze``) or ``windows`` (cached windows
    through ``forward_sequence``; needs ``cache`` or uses the default cache folder).
    Only clips of ``split`` are used. out_dir: where the report goes (None: nowhere).
    """
    started = time.perf_counter()
    heads = checkpoint_heads(ck)
    chosen = [c for c in clips if c.split == split]
    if method == "engine":
        data, skipped = collect_engine(ck, chosen, heads, progress)
    elif method == "windows":
        data, skipped = collect_windows(ck, chosen, heads,
                                        cache or FeatureCache(None, ck.frontend), progress)
    else:
        raise ValueError(f"method: expected 'engine' or 'windows', got {method!r}")
    hop_s = hop_seconds(ck)
    # A head no chosen clip labels (emotion on instrument clips alone) has nothing to score.
    metrics = {name: head_metrics(d, hop_s) for name, d in data.items()
               if d.preds and any(np.asarray(m).any() for m in d.masks)}
    report = Report(
        checkpoint=str(ck.path) if ck.path else "<memory>", checkpoint_id=ck.id, method=method,
        split=split, clips=len(chosen) - len(skipped), hop_s=hop_s, heads=metrics,
        cost=measure_step_cost(ck.inference_model(), repeats=cost_repeats), skipped=skipped,
    )
    emb_report = embedding_report
    if emb_report is not None:
        report.embedding = emb_report.to_dict()
    elif embedding and ck.embedding_head is not None:
        from streamtag.train.evaluate_embedding import evaluate_embedding, pieces_from_clips

        pieces, emb_skipped = pieces_from_clips(chosen)
        if len(pieces) >= 2:
            emb_report = evaluate_embedding(ck, pieces)
            report.embedding = emb_report.to_dict()
        report.skipped += emb_skipped
    if entry:
        from streamtag.train.evaluate_entry import evaluate_entry

        report.entry = evaluate_entry(ck, chosen).to_dict()
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if plots:
            report.figures = report_figures(data, metrics, out)
            if emb_report is not None:
                from streamtag.train.evaluate_embedding import report_figures as emb_figures

                report.figures.update(emb_figures(emb_report, out))
        report.seconds = time.perf_counter() - started
        (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2,
                                                    allow_nan=False) + "\n", encoding="utf-8")
        (out / "report.md").write_text(report.to_markdown(), encoding="utf-8")
    report.seconds = time.perf_counter() - started
    return report


def report_figures(data: dict[str, HeadData], metrics: dict[str, dict[str, Any]],
                   out: Path) -> dict[str, str]:
    """PNG figures per head: confusion matrix, valence/arousal scatter, timbre MAE bars."""
    from streamtag.train import plots

    figures: dict[str, str] = {}
    for name, m in metrics.items():
        if m["kind"] == "multiclass":
            path = out / f"{name}_confusion.png"
            plots.confusion_matrix_png(np.asarray(m["per_hop"]["confusion"]), m["labels"], path,
                                       f"{name}: per-hop confusion")
            figures[f"{name}_confusion"] = str(path)
        elif m["kind"] == "regression" and m["target"] == "emotion" and \
                {"valence", "arousal"} <= set(m["labels"]):
            pred, true, mask = data[name].clip_level()
            iv, ia = m["labels"].index("valence"), m["labels"].index("arousal")
            both = (mask[:, iv] > 0) & (mask[:, ia] > 0) if len(mask) else np.zeros(0, bool)
            path = out / f"{name}_scatter.png"
            plots.va_scatter_png(true[both][:, [iv, ia]], pred[both][:, [iv, ia]], path,
                                 f"{name}: per clip, true → predicted")
            figures[f"{name}_scatter"] = str(path)
        elif m["kind"] == "regression":
            path = out / f"{name}_mae.png"
            maes = [m["per_hop"]["outputs"][k]["mae"] for k in m["labels"]]
            plots.bars_png(m["labels"], maes, path, f"{name}: MAE per output (per hop)", "MAE")
            figures[f"{name}_mae"] = str(path)
    return figures


__all__ = [
    "AFTER_S", "SETTLED_S", "HeadData", "Report", "accuracy", "balanced_accuracy", "ccc",
    "checkpoint_heads",
    "confusion_matrix", "evaluate", "finite", "head_metrics", "head_score", "mae",
    "measure_step_cost", "overall_score", "pearson_r", "quadrant_accuracy", "record_outputs",
    "rmse", "window_outputs",
]
