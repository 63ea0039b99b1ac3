"""Batches of recordings: which recordings train together, and how they are stacked.

B recordings × all their hops, recordings of equal hop count batched together (sorted by length
with random ties, so padding is rare; a shorter clip is padded with silence windows and
masked). Recordings of one piece stay together (the triplet loss finds its positives across
renders); ``train.balanced_batches`` spreads instrument classes and emotion evenly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from streamtag.train.features import ClipFeatures
from streamtag.train.losses import TrainHead


@dataclass
class Batch:
    """B recordings padded to T hops. windows [B, T, M, W]; targets/masks {head: [B, T, ...]}."""

    windows: torch.Tensor
    targets: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]

    @property
    def hops(self) -> int:
        return int(self.windows.shape[1])


def collate(feats: Sequence[ClipFeatures], heads: Sequence[TrainHead], silence: np.ndarray,
            hops: int | None = None) -> Batch:
    """Stack recordings, padding each to ``hops`` (default: the longest) with masked silence."""
    t = hops or max(f.n_hops for f in feats)
    m, w = feats[0].windows.shape[1:]
    windows = np.empty((len(feats), t, m, w), np.float32)
    windows[:] = silence[None, None, :, None]
    targets: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for h in heads:
        t0, m0 = feats[0].targets[h.name], feats[0].masks[h.name]
        targets[h.name] = np.zeros((len(feats), t, *t0.shape[1:]), t0.dtype)
        masks[h.name] = np.zeros((len(feats), t, *m0.shape[1:]), np.float32)
    for b, f in enumerate(feats):
        n = min(f.n_hops, t)
        windows[b, :n] = f.windows[:n]
        for h in heads:
            targets[h.name][b, :n] = f.targets[h.name][:n]
            masks[h.name][b, :n] = f.masks[h.name][:n]
    return Batch(torch.from_numpy(windows), {k: torch.from_numpy(v) for k, v in targets.items()},
                 {k: torch.from_numpy(v) for k, v in masks.items()})


def batch_group(clip: Any) -> str:
    """What keeps recordings together in a batch (``epoch_batches``): their piece, except for
    recordings with emotion labels, which each stand alone: a CCC over a batch needs many
    different pieces (kept together, emotion stopped learning: validation CCC 0.2 against 0.5)."""
    if clip.valence is not None or clip.arousal is not None or clip.dynamic is not None:
        return f"{clip.dataset}\n{clip.group}\n{clip.path}"
    return f"{clip.dataset}\n{clip.group}"


def batch_stratum(clip: Any) -> str:
    """What ``train.balanced_batches`` spreads evenly over a batch: the instrument class, else
    the kind of labels a recording carries (emotion, or the rest)."""
    if clip.instrument is not None:
        return f"instrument:{clip.instrument}"
    if clip.valence is not None or clip.arousal is not None or clip.dynamic is not None:
        return "emotion"
    return "other"


def epoch_batches(lengths: Sequence[int], batch_clips: int, seed: int, epoch: int,
                  groups: Sequence[str] | None = None,
                  strata: Sequence[str] | None = None) -> list[list[int]]:
    """Recordings grouped into batches of ``batch_clips``, by length with random ties.

    groups: each recording's piece; recordings of one piece (and equal length) are kept next
    to each other, so a batch holds several renders of a piece: the triplet loss then finds
    its positives across renders, not only across hops of one recording.
    strata: each recording's stratum (``batch_stratum``); when given, each stratum's pieces of
    one length are spread evenly through the epoch (stratified), so every batch holds the
    strata in their overall shares instead of the runs chance makes.
    The same on every process (it depends on seed and epoch only); the sampler deals them.
    """
    rng = np.random.default_rng([seed, epoch, 17])
    keys = rng.random(len(lengths))
    if groups is not None:
        names = sorted(set(groups))
        group_key = dict(zip(names, rng.random(len(names)), strict=True))
        order = sorted(range(len(lengths)),
                       key=lambda i: (lengths[i], group_key[groups[i]], keys[i]))
        if strata is not None:
            order = _interleave_strata(order, lengths, groups, strata, rng)
    else:
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], keys[i]))
    return [order[i:i + batch_clips] for i in range(0, len(order), batch_clips)]


def _interleave_strata(order: list[int], lengths: Sequence[int], groups: Sequence[str],
                       strata: Sequence[str], rng: np.random.Generator) -> list[int]:
    """``order`` with each length's pieces (runs of one group) spread evenly over strata."""
    out: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and lengths[order[j]] == lengths[order[i]]:
            j += 1
        units: dict[str, list[list[int]]] = {}
        k = i
        while k < j:
            m = k
            while m < j and groups[order[m]] == groups[order[k]]:
                m += 1
            units.setdefault(strata[order[k]], []).append(order[k:m])
            k = m
        # Each stratum's pieces spread evenly over the bucket: the k-th of n sits at (k + u) / n
        # (u uniform in [0, 1)), so a stratum four times as large (emotion against one
        # instrument class) comes four times as often everywhere, not all at the end.
        keyed = []
        for name in sorted(units):
            n = len(units[name])
            keyed += [((k + float(rng.random())) / n, unit) for k, unit in enumerate(units[name])]
        for _, unit in sorted(keyed, key=lambda item: item[0]):
            out += unit
        i = j
    return out
