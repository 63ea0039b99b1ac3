"""Statistics of the training set: per-band input normalisation and class counts."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from streamtag.errors import DatasetError
from streamtag.train.features import ClipFeatures
from streamtag.train.losses import TrainHead


def band_statistics(feats: Iterable[ClipFeatures],
                    pooled_from: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and std [n_features] over every frame of every training window.

    A band that never varies (the seed frontend's empty bands) gets std 1. Rows from
    ``pooled_from`` on (the pitch-class rows) share one mean and std, pooled over them: a
    per-class scaling would tell the keys apart, and the pitch-class encoder is meant to treat
    all twelve transpositions alike.
    """
    total = sq = None
    n = 0
    for f in feats:
        w = np.asarray(f.windows, np.float64)  # [S, M, W]
        s = w.sum(axis=(0, 2))
        q = np.square(w).sum(axis=(0, 2))
        total = s if total is None else total + s
        sq = q if sq is None else sq + q
        n += w.shape[0] * w.shape[2]
    if total is None or n == 0:
        raise DatasetError("no training window to compute input statistics from")
    if pooled_from is not None and pooled_from < len(total):
        total[pooled_from:] = total[pooled_from:].mean()
        sq[pooled_from:] = sq[pooled_from:].mean()
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0.0))
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def label_counts(feats: Iterable[ClipFeatures], head: TrainHead) -> np.ndarray:
    """Labelled hops per class [K] of a multiclass head."""
    counts = np.zeros(head.target.spec.size, np.int64)
    for f in feats:
        m = f.masks[head.name] > 0
        np.add.at(counts, f.targets[head.name][m], 1)
    return counts
