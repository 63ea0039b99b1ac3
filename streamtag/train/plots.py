"""PNG figures for training runs and evaluation reports (matplotlib, Agg, no pyplot state).

Figures are built on ``matplotlib.figure.Figure`` with an Agg canvas, never through pyplot, so
plotting from the trainer touches no global GUI backend and leaks no open figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from streamtag.record import QUADRANTS, quadrant

_QUADRANT_COLORS = {1: "#e69f00", 2: "#d55e00", 3: "#0072b2", 4: "#009e73"}


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def loss_curves_png(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Training and validation loss per epoch (left) and each head's losses (right).

    history: ``metrics.json`` entries (``epoch``, ``train.loss``, ``train.heads``,
    ``validation.loss``, ``validation.heads_loss``).
    """
    fig = Figure(figsize=(10, 4))
    ax_total, ax_heads = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]

    def series(get: Any) -> list[float]:
        out = []
        for h in history:
            try:
                v = get(h)
            except (KeyError, TypeError):
                v = None
            out.append(np.nan if v is None else float(v))
        return out

    ax_total.plot(epochs, series(lambda h: h["train"]["loss"]), "o-", label="train")
    ax_total.plot(epochs, series(lambda h: h["validation"]["loss"]), "s--", label="validation")
    ax_total.set(title="total loss", xlabel="epoch", ylabel="loss")
    ax_total.legend()
    heads = list(dict.fromkeys(k for h in history for k in (h.get("train", {}).get("heads") or {})))
    for name in heads:
        line = ax_heads.plot(epochs, series(lambda h, n=name: h["train"]["heads"][n]), "o-",
                             label=f"{name} train")[0]
        ax_heads.plot(epochs, series(lambda h, n=name: h["validation"]["heads_loss"][n]), "s--",
                      color=line.get_color(), label=f"{name} validation")
    ax_heads.set(title="loss per head", xlabel="epoch")
    if heads:
        ax_heads.legend(fontsize=7)
    return _save(fig, path)


def confusion_matrix_png(matrix: np.ndarray, labels: Sequence[str], path: str | Path,
                         title: str = "confusion matrix") -> Path:
    """Row-normalised confusion matrix (rows: true class) with the counts written in."""
    m = np.asarray(matrix, np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(labels)
    fig = Figure(figsize=(1.0 + 0.7 * k, 0.8 + 0.6 * k))
    ax = fig.subplots()
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(k):
        for j in range(k):
            if m[i, j]:
                ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    return _save(fig, path)


def va_scatter_png(true_va: np.ndarray, pred_va: np.ndarray, path: str | Path,
                   title: str = "valence / arousal") -> Path:
    """True (circles) and predicted (dots) points [N, 2], joined, coloured by true quadrant."""
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.subplots()
    ax.axhline(0, color="0.7", lw=0.8)
    ax.axvline(0, color="0.7", lw=0.8)
    true_va, pred_va = np.asarray(true_va).reshape(-1, 2), np.asarray(pred_va).reshape(-1, 2)
    for (tv, ta), (pv, pa) in zip(true_va, pred_va, strict=True):
        color = _QUADRANT_COLORS[quadrant(float(tv), float(ta))]
        ax.plot([tv, pv], [ta, pa], color=color, lw=0.5, alpha=0.5)
        ax.plot(tv, ta, "o", mfc="none", color=color, ms=4)
        ax.plot(pv, pa, ".", color=color, ms=5)
    for q, (x, y) in {1: (0.5, 0.9), 2: (-0.5, 0.9), 3: (-0.5, -0.9), 4: (0.5, -0.9)}.items():
        ax.text(x, y, QUADRANTS[q][0], ha="center", color=_QUADRANT_COLORS[q], fontsize=9)
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), xlabel="valence", ylabel="arousal",
           title=title, aspect="equal")
    return _save(fig, path)


def bars_png(names: Sequence[str], values: Sequence[float | None], path: str | Path,
             title: str, ylabel: str) -> Path:
    """One bar per name (None draws nothing)."""
    fig = Figure(figsize=(1.5 + 0.7 * len(names), 3.5))
    ax = fig.subplots()
    vals = [np.nan if v is None else float(v) for v in values]
    ax.bar(range(len(names)), vals, color="#0072b2")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set(title=title, ylabel=ylabel)
    return _save(fig, path)


def lines_png(xs: Sequence[float], series: dict[str, Sequence[float]], path: str | Path,
              title: str, xlabel: str, ylabel: str) -> Path:
    """One line per series against ``xs``, y from 0 to 1."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for name, ys in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def novelty_png(t: Sequence[float], novelty: Sequence[float], splices: Sequence[float],
                threshold: float, path: str | Path) -> Path:
    """Novelty per hop [0, 1] against stream time [s], splices as dashed lines."""
    fig = Figure(figsize=(9, 3))
    ax = fig.subplots()
    ax.plot(t, novelty, color="#0072b2", label="novelty")
    for i, b in enumerate(splices):
        ax.axvline(b, color="#d55e00", ls="--", lw=1, label="splice" if i == 0 else None)
    ax.axhline(threshold, color="#555555", lw=1, label="threshold")
    ax.set_xlabel("stream time [s]")
    ax.set_ylabel("novelty")
    ax.set_title("novelty across pieces spliced back to back")
    ax.legend(loc="upper right")
    return _save(fig, path)
