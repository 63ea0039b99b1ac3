"""The offline trainer: multi-task, masked, truncated-BPTT training of ``StreamTagModel``.

Data: clips from the built-in corpus and/or dataset loaders (``features.source_clips``), mel
frames cached on disk, windows made by ``engine.hop_windows`` (the served windows, exactly).

Batches: B recordings × all their hops, recordings of equal hop count batched together (sorted
by length with random ties, so padding is rare; a shorter clip is padded with silence windows
and masked). Each recording is cut into segments of S consecutive hops; the LSTM state runs
from a fresh (zero) state at the recording's start, is carried from one segment to the next
and detached between them (seed 000's truncated backpropagation), and one optimiser step is
taken per segment. A segment where no head has a label anywhere (in any process) only advances
the state, without a step, so Adam's momentum does not move the weights on nothing.

Losses per head, each masked per hop (a clip labelled for one head trains only that head; a
head with no label in a segment contributes exactly zero and gets zero gradient): MSE or CCC
(emotion), L1 (timbre), cross-entropy with class-balance weights from the training counts
(multiclass), BCE (multilabel), batch-hard triplet (embedding). The total is the weighted sum.

Optimisation: Adam + ReduceLROnPlateau, SpecAugment on training windows only, deterministic
seeds (per epoch and rank, so a resumed run replays the same randomness), per-band input
normalisation from the training windows stored in the model's ``input_mean``/``input_std``.

Outputs in RUN_DIR: ``best.safetensors`` (the best epoch by validation score, written with
``save_checkpoint``), ``last.train.pt`` (resume state: tensors and plain containers only,
loaded with ``torch.load(weights_only=True)``), ``metrics.json`` (one entry per epoch),
``config.yaml``, ``train.log``, ``plots/`` and, at the end, ``report/`` (the best checkpoint
evaluated through the Engine).

Distributed: under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel
on the gloo backend; batches are dealt by a ``DistributedSampler``; each batch is padded to the
longest in any process so every process takes the same number of steps; only rank 0 validates,
writes and logs at info level, and broadcasts what the others need (the scheduler's input).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data.distributed import DistributedSampler

from streamtag import __version__
from streamtag.checkpoint import save_checkpoint
from streamtag.errors import ConfigError, DatasetError, StreamtagError
from streamtag.frontend import FRONTEND_PRESETS, FrontendConfig
from streamtag.model import LstmState, StreamTagModel, activate_head, build_model
from streamtag.train.config import (
    BEST_NAME,
    RESUME_NAME,
    TrainConfig,
    arch_overrides,
    dump_train_config,
    head_loss,
    head_spec,
    head_target,
)
from streamtag.train.evaluate import (
    HeadData,
    finite,
    head_metrics,
    head_score,
    overall_score,
)
from streamtag.train.features import (
    ClipFeatures,
    FeatureCache,
    HeadTarget,
    limit_clips,
    load_features,
    silence_frame,
    source_clips,
)

log = logging.getLogger("streamtag.train")

RESUME_FORMAT = "streamtag-train-resume"
RESUME_VERSION = 1
#: Config sections a resumed run may change (the rest must match the run being resumed).
RESUMABLE_CHANGES = ("train.epochs", "train.threads", "output.", "data.cache_dir")
#: Most hops a triplet loss compares at once (an [N, N] distance matrix; 4096² floats = 64 MB).
TRIPLET_MAX_ITEMS = 4096


class TrainingError(StreamtagError):
    """Training cannot go on (diverged, resume file unusable, …)."""


# -- losses ---------------------------------------------------------------------------------------

def class_balance_weights(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Inverse-frequency class weights [K] from training counts: ``total / (present · n_c)``.

    Every present class then carries the same total weight; an absent class gets 0 (it has no
    target to weigh). A balanced set gives all ones.
    """
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    w = np.zeros_like(counts)
    if present.any():
        w[present] = counts.sum() / (present.sum() * counts[present])
    return w


def masked_regression_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                           kind: str) -> torch.Tensor:
    """MSE, L1 or 1 − CCC over the masked entries. pred, target, mask: [N, K].

    MSE/L1 average over labelled entries. CCC is computed per output over the labelled entries
    of the segment (outputs with fewer than two labels are left out) and averaged.
    """
    if kind in ("mse", "l1"):
        err = (pred - target).square() if kind == "mse" else (pred - target).abs()
        return (err * mask).sum() / mask.sum().clamp_min(1.0)
    if kind != "ccc":
        raise ValueError(f"unknown regression loss {kind!r}")
    n = mask.sum(dim=0)  # [K]
    valid = n >= 2
    if not bool(valid.any()):
        return (pred * mask).sum() * 0.0
    nn_ = n.clamp_min(1.0)
    mp = (pred * mask).sum(0) / nn_
    mt = (target * mask).sum(0) / nn_
    vp = ((pred - mp).square() * mask).sum(0) / nn_
    vt = ((target - mt).square() * mask).sum(0) / nn_
    cov = ((pred - mp) * (target - mt) * mask).sum(0) / nn_
    ccc = 2 * cov / (vp + vt + (mp - mt).square() + 1e-8)
    return (1.0 - ccc)[valid].mean()


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                         class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean cross-entropy over labelled hops. logits [N, K], target [N], mask [N]."""
    ce = F.cross_entropy(logits, target, reduction="none")
    w = mask if class_weights is None else mask * class_weights[target]
    return (ce * w).sum() / w.sum().clamp_min(1e-12)


def masked_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean BCE over labelled (hop, tag) pairs. logits, target [N, K]; mask [N, K] (or [N]:
    every tag of a labelled hop)."""
    b = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    m = mask if mask.dim() == 2 else mask[:, None].expand_as(b)
    return (b * m).sum() / m.sum().clamp_min(1.0)


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """Euclidean distances [N, N] of embeddings [N, D] (clamped so the sqrt has a gradient)."""
    sq = emb.square().sum(-1)
    d2 = sq[:, None] + sq[None, :] - 2 * emb @ emb.T
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_pairs(dist_: torch.Tensor, labels: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each anchor: its farthest positive, nearest negative, and whether both exist.

    dist_: [N, N] distances; labels: [N]. Returns (pos_index [N], neg_index [N], valid [N]).
    """
    n = labels.shape[0]
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(n, dtype=torch.bool, device=labels.device)
    pos, neg = same & ~eye, ~same
    pos_idx = dist_.masked_fill(~pos, -math.inf).argmax(dim=1)
    neg_idx = dist_.masked_fill(~neg, math.inf).argmin(dim=1)
    return pos_idx, neg_idx, pos.any(dim=1) & neg.any(dim=1)


def batch_hard_triplet_loss(emb: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                            margin: float) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017) over labelled hops.

    emb [N, D] (L2-normalised), labels [N] class ids, mask [N]. For each anchor with a
    positive and a negative: relu(d(a, hardest p) − d(a, hardest n) + margin); mean of those.
    """
    sel = mask > 0
    e, y = emb[sel], labels[sel]
    if e.shape[0] > TRIPLET_MAX_ITEMS:  # validation over every hop: bound the [N, N] matrix
        keep = torch.linspace(0, e.shape[0] - 1, TRIPLET_MAX_ITEMS).long()
        e, y = e[keep], y[keep]
    if e.shape[0] < 2:
        return emb.sum() * 0.0
    d = pairwise_distances(e)
    p, q, valid = batch_hard_pairs(d, y)
    if not bool(valid.any()):
        return emb.sum() * 0.0
    idx = torch.arange(e.shape[0])
    return F.relu(d[idx, p] - d[idx, q] + margin)[valid].mean()


def clip_embeddings(emb: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                    parts: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors per recording: the mean of its labelled hops' embeddings, normalised.

    emb [B, S, D] (unit vectors per hop), labels / mask [B, S]. With ``parts`` > 1 each
    recording's labelled hops are cut into that many consecutive runs of (nearly) equal length
    and each run gives its own vector. Returns (vectors [N, D], labels [N]) for the runs with a
    labelled hop, recording by recording. This is the kind of vector the run-time reference
    query is (a unit mean over recent hops), so training shapes it directly.
    """
    w = mask.to(emb.dtype)
    count = w.sum(dim=1, keepdim=True)  # [B, 1]
    # Run index of each labelled hop: its rank among the recording's labelled hops, scaled.
    rank = torch.cumsum(w, dim=1) - w  # [B, S], 0-based among labelled hops
    run = torch.floor(rank * parts / count.clamp_min(1.0)).clamp(max=parts - 1)
    vecs, labs = [], []
    for r in range(parts):
        wr = w * (run == r).to(emb.dtype)
        n = wr.sum(dim=1)
        keep = n > 0
        mean = (emb * wr[..., None]).sum(dim=1) / n.clamp_min(1.0)[:, None]
        vecs.append(F.normalize(mean, dim=-1))
        labs.append(torch.where(keep, labels.gather(1, wr.argmax(dim=1, keepdim=True)).squeeze(1),
                                torch.full_like(labels[:, 0], -1)))
    vec = torch.stack(vecs, dim=1).reshape(-1, emb.shape[-1])  # recording-major order
    lab = torch.stack(labs, dim=1).reshape(-1)
    keep = lab >= 0
    return vec[keep], lab[keep]


@dataclass
class TrainHead:
    """A head as the trainer sees it: model spec, label source, loss and its weight."""

    target: HeadTarget
    loss: str
    weight: float = 1.0
    margin: float = 0.2
    parts: int = 1
    class_weights: torch.Tensor | None = None

    @property
    def name(self) -> str:
        return self.target.name


def head_loss_value(head: TrainHead, logits: torch.Tensor, target: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
    """One head's loss. logits [..., K]; target and mask as ``encode_labels`` with [...] lead."""
    spec = head.target.spec
    k = spec.size
    flat = logits.reshape(-1, k)
    if spec.kind == "regression":
        pred = activate_head(spec, flat)
        return masked_regression_loss(pred, target.reshape(-1, k), mask.reshape(-1, k), head.loss)
    if spec.kind == "multiclass":
        return masked_cross_entropy(flat, target.reshape(-1), mask.reshape(-1),
                                    head.class_weights)
    if spec.kind == "multilabel":
        return masked_bce(flat, target.reshape(-1, k), mask.reshape(-1, k))
    # Embedding: triplets between recordings, or parts of them (each the unit mean of its run of
    # labelled hops, like a run-time query), so the positives are the piece's other renders (and
    # the recording's other parts), never a hop's own neighbours.
    s = logits.shape[-2] if logits.dim() >= 2 else 1
    emb = activate_head(spec, flat).reshape(-1, s, k)
    vec, lab = clip_embeddings(emb, target.reshape(-1, s), mask.reshape(-1, s), head.parts)
    return batch_hard_triplet_loss(vec, lab, torch.ones_like(lab, dtype=vec.dtype),
                                   head.margin) + emb.sum() * 0.0


def multitask_loss(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                   masks: dict[str, torch.Tensor], heads: Sequence[TrainHead]
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Σ weight·loss over heads, and each head's (unweighted) loss.

    outputs: raw logits {head: [B, S, K]} (``forward_sequence(..., activate=False)``).
    Every head stays in the graph even when unlabelled (its loss is then 0 with zero
    gradient), so DistributedDataParallel always sees every parameter used.
    """
    parts = {h.name: head_loss_value(h, outputs[h.name], targets[h.name], masks[h.name])
             for h in heads}
    total = sum((h.weight * parts[h.name] for h in heads), torch.zeros(()))
    return total, parts


# -- batches --------------------------------------------------------------------------------------

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


def spec_augment(windows: torch.Tensor, fill: torch.Tensor, cfg: Any,
                 generator: torch.Generator, bands: int | None = None) -> torch.Tensor:
    """Time and frequency masks on each window [..., M, W]; masked cells take ``fill`` [M].

    ``fill`` is the band's training mean, so a masked cell is 0 after input normalisation.
    bands: frequency masks fall within the first ``bands`` rows (the mel bands; the
    pitch-class rows after them are not a frequency axis); None = all M rows.
    """
    shape = windows.shape
    x = windows.reshape(-1, shape[-2], shape[-1]).clone()
    n, m, w = x.shape
    fill_ = fill[None, :, None].expand(n, m, w)
    rows = m if bands is None else bands
    for count, widest, size, axis in ((cfg.time_masks, cfg.time_mask_frames, w, 2),
                                      (cfg.freq_masks, cfg.freq_mask_bands, rows, 1)):
        widest = min(widest, size)
        for _ in range(count if widest > 0 else 0):
            width = torch.randint(0, widest + 1, (n,), generator=generator)
            start = (torch.rand(n, generator=generator) * (size - width + 1)).floor()
            pos = torch.arange(w if axis == 2 else m)[None, :]
            hit = (pos >= start[:, None]) & (pos < (start + width)[:, None])  # [n, W or M]
            hit = hit[:, None, :] if axis == 2 else hit[:, :, None]
            x = torch.where(hit, fill_, x)
    return x.reshape(shape)


class SequenceStep(nn.Module):
    """``forward(windows, h, c) -> (logits, h, c)``: ``forward_sequence`` as a module call.

    DistributedDataParallel synchronises gradients of what goes through ``forward``; the model's
    own ``forward`` carries no state, so training calls go through this wrapper.
    """

    def __init__(self, model: StreamTagModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, windows: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        out, state = self.model.forward_sequence(windows, LstmState(h, c), activate=False)
        return out, state.h, state.c


@dataclass
class SegmentResult:
    """One segment of a batch: its total loss, each head's loss (None: no label), stepped."""

    loss: float
    heads: dict[str, float | None]
    stepped: bool


def train_batch(
    step: nn.Module,
    model: StreamTagModel,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    heads: Sequence[TrainHead],
    segment_hops: int,
    *,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    grad_clip_norm: float | None = None,
    label_count: Callable[[float], float] = lambda n: n,
) -> list[SegmentResult]:
    """Train on one batch of recordings, segment by segment (truncated BPTT).

    The state starts fresh (zeros) for these recordings, is carried from each segment into the
    next, and detached in between so gradients stop at segment boundaries. step: the
    ``SequenceStep`` (or its DDP wrapper). label_count: turns this process's count of labels
    in a segment into the count over all processes (identity when alone).
    """
    state = model.initial_state(batch.windows.shape[0])  # reset between recordings
    results = []
    for s0 in range(0, batch.hops, segment_hops):
        sl = slice(s0, s0 + segment_hops)
        seg = batch.windows[:, sl]
        targets = {k: v[:, sl] for k, v in batch.targets.items()}
        masks = {k: v[:, sl] for k, v in batch.masks.items()}
        local = float(sum(float(masks[h.name].sum()) for h in heads if h.weight > 0))
        if label_count(local) == 0:
            # Nothing to learn here anywhere: only advance the state (e.g. DEAM's unlabelled
            # first 15 s), without an optimiser step.
            with torch.no_grad():
                _, state = model.forward_sequence(seg, state, activate=False)
            results.append(SegmentResult(0.0, {h.name: None for h in heads}, False))
            continue
        if augment is not None:
            seg = augment(seg)
        out, h_, c_ = step(seg, state.h, state.c)
        loss, parts = multitask_loss(out, targets, masks, heads)
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {loss.item()} (diverged); lower optimizer.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
        optimizer.step()
        state = LstmState(h_.detach(), c_.detach())
        results.append(SegmentResult(
            float(loss.detach()),
            {h.name: float(parts[h.name].detach()) if float(masks[h.name].sum()) > 0 else None
             for h in heads},
            True,
        ))
    return results


# -- statistics -----------------------------------------------------------------------------------

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


# -- process setup --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    initialized_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1; gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    here = False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
        here = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), here)


def seed_everything(*keys: int) -> None:
    """Seed python, numpy and torch from a tuple of integers (seed, epoch, rank)."""
    seq = np.random.SeedSequence([int(k) for k in keys])
    a, b = (int(v) for v in seq.generate_state(2))
    random.seed(a)
    np.random.seed(b)  # noqa: NPY002 - third-party code draws from the global generator
    torch.manual_seed(a)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors and plain containers (weights_only-safe)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {
        "python": {"version": version, "state": torch.tensor(words, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32),  # noqa: NPY002
                         n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])


def git_commit() -> dict[str, Any] | None:
    """The source tree's commit and whether it had local changes (None outside git)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "."],
                               check=True, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty.strip())}


def _diff_keys(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if a == b else [path]


# -- the trainer ----------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What a run produced. best_checkpoint is None on ranks other than 0."""

    run_dir: Path
    best_checkpoint: Path | None
    best_epoch: int
    best_score: float | None
    epochs: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """One training run in ``run_dir`` from a ``TrainConfig``.

    resume: continue from ``run_dir/last.train.pt`` (the config may change only the number of
    epochs, threads, output options and the cache folder). progress: show tqdm bars (None:
    from ``output.progress``, auto = stderr is a terminal).
    """

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, resume: bool = False,
                 progress: bool | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.dist = init_distributed()
        mode = cfg.output.progress
        self.progress = progress if progress is not None else (
            sys.stderr.isatty() if mode == "auto" else bool(mode))
        self.progress = self.progress and self.dist.main

    # -- setup ----------------------------------------------------------------------------------
    def _setup_logging(self) -> logging.Handler | None:
        if not self.dist.main:
            log.setLevel(logging.WARNING)
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        if log.level == logging.NOTSET or log.level > logging.INFO:
            log.setLevel(logging.INFO)
        return handler

    def _bar(self, items: Iterable[Any], **kw: Any) -> Iterable[Any]:
        from tqdm import tqdm

        return tqdm(items, disable=not self.progress, file=sys.stderr, leave=False, **kw)

    def _barrier(self) -> None:
        if self.dist.world > 1:
            dist.barrier()

    def _setup(self) -> None:
        cfg = self.cfg
        torch.use_deterministic_algorithms(cfg.train.deterministic, warn_only=True)
        if cfg.train.threads is not None:
            torch.set_num_threads(cfg.train.threads)
        self.frontend: FrontendConfig = FRONTEND_PRESETS[cfg.model.preset]
        seed_everything(cfg.train.seed, 0, 0)  # same initial weights on every process
        self.model = build_model(cfg.model.preset, [head_spec(h) for h in cfg.heads],
                                 **arch_overrides(cfg))
        # Channels-last convolutions train ~1.4x faster on CPU (measured on the default
        # preset); the checkpoint stores plain contiguous tensors whatever the layout here.
        self.model = self.model.to(memory_format=torch.channels_last)
        arch = self.model.arch
        self.hop_s = self.frontend.hop_seconds(arch.hop_frames)
        self.heads = [
            TrainHead(HeadTarget(spec, head_target(h)), head_loss(h), h.weight, h.margin,
                      h.parts)
            for h, spec in zip(cfg.heads, self.model.heads, strict=True)
        ]
        clips, self.data_hashes = source_clips(cfg.data.corpus, cfg.data.datasets,
                                               cfg.data.validation_fraction)
        clips = limit_clips(clips, cfg.data.max_clips, cfg.train.seed)
        self.cache = FeatureCache(cfg.data.cache_dir, self.frontend)
        self._warm_cache([c for c in clips if c.split in ("train", "validation")])
        targets = [h.target for h in self.heads]
        per_hop = cfg.data.per_hop_timbre
        self.train_set, skipped = load_features(
            [c for c in clips if c.split == "train"], self.cache, arch, targets, self.hop_s,
            progress=lambda xs: self._bar(xs, desc="labels", unit="clip"),
            per_hop_timbre=per_hop)
        self.val_set, skipped_val = load_features(
            [c for c in clips if c.split == "validation"], self.cache, arch, targets, self.hop_s,
            per_hop_timbre=per_hop)
        for s in (skipped + skipped_val)[:10]:
            log.warning("skipped %s", s)
        if len(skipped) + len(skipped_val) > 10:
            log.warning("… %d clips skipped in all", len(skipped) + len(skipped_val))
        if not self.train_set:
            raise DatasetError("no usable training clip: every training clip was skipped or "
                               "the sources hold none (check data.corpus / data.datasets)")
        if not self.val_set:
            log.warning("no validation clip: the best epoch is chosen by training loss")
        for h, h_cfg in zip(self.heads, cfg.heads, strict=True):
            if h.target.spec.kind == "multiclass":
                counts = label_counts(self.train_set, h)
                log.info("%s: training hops per class %s", h.name,
                         dict(zip(h.target.spec.labels, counts.tolist(), strict=True)))
                if h_cfg.class_balance:
                    h.class_weights = torch.from_numpy(
                        class_balance_weights(counts).astype(np.float32))
        mean, std = band_statistics(self.train_set, pooled_from=self.model.arch.n_mels)
        with torch.no_grad():
            self.model.input_mean.copy_(torch.from_numpy(mean))
            self.model.input_std.copy_(torch.from_numpy(std))
        self.silence = silence_frame(self.frontend)
        self.variants = {}
        if cfg.augment.pre_roll_p > 0:
            from streamtag.train.preroll import make_variants

            self.variants = make_variants(
                self.train_set, self.cache, arch, self.silence, targets, self.hop_s,
                share=cfg.augment.pre_roll_p, seconds=cfg.augment.pre_roll_s,
                kinds=cfg.augment.pre_roll_kinds, seed=cfg.train.seed, rank=self.dist.rank,
                world=self.dist.world, barrier=self._barrier,
                progress=lambda xs: self._bar(xs, desc="pre-rolls", unit="clip"))
            log.info("pre-rolls: %d of %d training recordings have a pre-rolled copy",
                     len(self.variants), len(self.train_set))
        self.step_module: nn.Module = SequenceStep(self.model)
        if self.dist.world > 1:
            self.step_module = nn.parallel.DistributedDataParallel(self.step_module)
        o, s = cfg.optimizer, cfg.scheduler
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=o.lr,
                                          betas=(o.betas[0], o.betas[1]),
                                          weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max" if s.monitor == "validation_score" else "min",
            factor=s.factor, patience=s.patience, min_lr=s.min_lr)
        log.info("data: %d training clips (%d hops), %d validation clips (%d hops); %s",
                 len(self.train_set), sum(f.n_hops for f in self.train_set), len(self.val_set),
                 sum(f.n_hops for f in self.val_set), self.data_hashes)

    def _warm_cache(self, clips: Sequence[Any]) -> None:
        """Compute missing features (and per-hop timbre labels), each process a share, before
        anyone reads them."""
        timbre = self.cfg.data.per_hop_timbre and any(
            h.target.target == "timbre" for h in self.heads)
        hop_frames = self.model.arch.hop_frames

        def missing(c: Any) -> bool:
            if not self.cache.has(Path(c.path)):
                return True
            return timbre and c.timbre_per_hop and not self.cache.has_hop_timbre(
                Path(c.path), self.hop_s)

        mine = [c for i, c in enumerate(clips) if i % self.dist.world == self.dist.rank
                and missing(c)]
        if mine:
            log.info("computing features of %d clips into %s", len(mine), self.cache.dir)
        for clip in self._bar(mine, desc="features", unit="clip"):
            try:
                mel = self.cache.mel(Path(clip.path))
                if timbre and clip.timbre_per_hop and mel.shape[0] >= hop_frames:
                    self.cache.hop_timbre(Path(clip.path), mel.shape[0] // hop_frames,
                                          self.hop_s, clip.timbre)
            except Exception as e:  # reported (and skipped) when the features are loaded
                log.debug("features of %s failed: %s", clip.path, e)
        self._barrier()

    # -- state ----------------------------------------------------------------------------------
    def _resume_path(self) -> Path:
        return self.run_dir / RESUME_NAME

    def _save_resume(self, epoch: int) -> None:
        state = {
            "format": RESUME_FORMAT, "version": RESUME_VERSION, "epoch": epoch,
            "config": finite(self.cfg.to_dict()),
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_score": self.best_score, "best_epoch": self.best_epoch,
            "best_monitor": self.best_monitor, "seconds": self.seconds,
            "rng": rng_state(),
        }
        tmp = self._resume_path().with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self._resume_path())

    def _load_resume(self) -> int:
        path = self._resume_path()
        if not path.is_file():
            raise ConfigError(f"--resume: no {RESUME_NAME} in {self.run_dir} to resume from")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # weights_only refuses anything that is not plain data
            raise TrainingError(f"{path}: not a usable resume file: {e}") from e
        if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
            raise TrainingError(f"{path}: not a streamtag resume file")
        changed = [k for k in _diff_keys(state["config"], finite(self.cfg.to_dict()))
                   if not any(k == r or k.startswith(r) for r in RESUMABLE_CHANGES)]
        if changed:
            raise ConfigError([f"{k}: differs from the run being resumed in {self.run_dir} "
                               "(only train.epochs, train.threads, output.* and "
                               "data.cache_dir may change)" for k in changed])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_monitor, self.seconds = state["best_monitor"], state["seconds"]
        set_rng_state(state["rng"])
        history_path = self.run_dir / "metrics.json"
        if history_path.is_file():
            self.history = json.loads(history_path.read_text())[: state["epoch"]]
        return int(state["epoch"])

    # -- epochs ---------------------------------------------------------------------------------
    def _label_count(self, n: float) -> float:
        if self.dist.world == 1:
            return n
        t = torch.tensor([n], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def _epoch_recordings(self, epoch: int) -> list[ClipFeatures]:
        """The recordings this epoch trains on: each pre-rolled clip plays its copy or itself
        (``preroll.epoch_recordings``)."""
        if not getattr(self, "variants", None):
            return list(self.train_set)
        from streamtag.train.preroll import epoch_recordings

        return epoch_recordings(self.train_set, self.variants, self.cfg.train.seed, epoch)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        seed_everything(cfg.train.seed, epoch + 1, self.dist.rank)
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        recordings = self._epoch_recordings(epoch)
        batches = epoch_batches([f.n_hops for f in recordings], cfg.train.batch_clips,
                                cfg.train.seed, epoch,
                                [batch_group(f.clip) for f in recordings],
                                [batch_stratum(f.clip) for f in recordings]
                                if cfg.train.balanced_batches else None)
        sampler = DistributedSampler(range(len(batches)), num_replicas=self.dist.world,
                                     rank=self.dist.rank, shuffle=True, seed=cfg.train.seed)
        sampler.set_epoch(epoch)
        mine = [batches[i] for i in sampler]
        lengths = torch.tensor([max(recordings[j].n_hops for j in b) for b in mine])
        if self.dist.world > 1:  # every process pads to the longest: same number of steps
            dist.all_reduce(lengths, op=dist.ReduceOp.MAX)
        augment = None
        if cfg.augment.spec_augment:
            fill = self.model.input_mean.detach().clone()

            def augment(x: torch.Tensor) -> torch.Tensor:
                return spec_augment(x, fill, cfg.augment, gen, self.model.arch.n_mels)

        self.model.train()
        losses: list[float] = []
        head_losses: dict[str, list[float]] = {h.name: [] for h in self.heads}
        bar = self._bar(list(zip(mine, lengths.tolist(), strict=True)),
                        desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="batch")
        for idx, hops in bar:
            batch = collate([recordings[j] for j in idx], self.heads, self.silence, hops)
            results = train_batch(self.step_module, self.model, self.optimizer, batch,
                                  self.heads, cfg.train.segment_hops, augment=augment,
                                  grad_clip_norm=cfg.train.grad_clip_norm,
                                  label_count=self._label_count)
            for r in results:
                if r.stepped:
                    losses.append(r.loss)
                for k, v in r.heads.items():
                    if v is not None:
                        head_losses[k].append(v)
            if self.progress and losses:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")  # type: ignore[attr-defined]
        sums = torch.tensor([sum(losses), len(losses)]
                            + [x for h in self.heads for x in (sum(head_losses[h.name]),
                                                               len(head_losses[h.name]))],
                            dtype=torch.float64)
        if self.dist.world > 1:
            dist.all_reduce(sums)
        s = sums.tolist()
        return {
            "loss": s[0] / s[1] if s[1] else None,
            "heads": {h.name: (s[2 + 2 * i] / s[3 + 2 * i] if s[3 + 2 * i] else None)
                      for i, h in enumerate(self.heads)},
            "segments": int(s[1]),
        }

    def validate(self) -> tuple[dict[str, Any], dict[str, HeadData]]:
        """Validation loss, per-head metrics and score on the cached windows (windows path)."""
        data = {h.name: HeadData(h.target) for h in self.heads}
        logits_all: dict[str, list[torch.Tensor]] = {h.name: [] for h in self.heads}
        targets_all: dict[str, list[np.ndarray]] = {h.name: [] for h in self.heads}
        masks_all: dict[str, list[np.ndarray]] = {h.name: [] for h in self.heads}
        self.model.eval()
        by_len: dict[int, list[ClipFeatures]] = {}
        for f in self.val_set:
            by_len.setdefault(f.n_hops, []).append(f)
        for _, group in sorted(by_len.items()):
            for i in range(0, len(group), 32):
                chunk = group[i:i + 32]
                windows = torch.from_numpy(np.stack([f.windows for f in chunk]).astype(np.float32))
                with torch.inference_mode():
                    logits, _ = self.model.forward_chunked(windows, activate=False)
                for h in self.heads:
                    act = activate_head(h.target.spec, logits[h.name]).numpy()
                    for b, f in enumerate(chunk):
                        data[h.name].add(act[b], f.targets[h.name], f.masks[h.name],
                                         f.clip.texture)
                        logits_all[h.name].append(logits[h.name][b])
                        targets_all[h.name].append(f.targets[h.name])
                        masks_all[h.name].append(f.masks[h.name])
        # The loss over all validation hops at once (a per-segment CCC would be meaningless).
        # Embedding heads compare recordings, so they keep one row per clip (padded, masked).
        with torch.no_grad():
            outputs, targets, masks = {}, {}, {}
            for h in self.heads:
                k = h.name
                if h.target.spec.kind == "embedding":
                    outputs[k] = pad_sequence(logits_all[k], batch_first=True)
                    targets[k] = pad_sequence([torch.from_numpy(t) for t in targets_all[k]],
                                              batch_first=True)
                    masks[k] = pad_sequence([torch.from_numpy(m) for m in masks_all[k]],
                                            batch_first=True)
                else:
                    outputs[k] = torch.cat(logits_all[k])[None]
                    targets[k] = torch.from_numpy(np.concatenate(targets_all[k]))[None]
                    masks[k] = torch.from_numpy(np.concatenate(masks_all[k]))[None]
            total, parts = multitask_loss(outputs, targets, masks, self.heads)
        metrics = {h.name: head_metrics(data[h.name], self.hop_s) for h in self.heads
                   if any(m.any() for m in data[h.name].masks)}
        scores = {h.name: head_score(metrics[h.name], h.loss) for h in self.heads
                  if h.name in metrics}
        labelled = {h.name for h in self.heads if h.name in metrics}
        return {
            "loss": float(total),
            "heads_loss": {k: (float(v) if k in labelled else None) for k, v in parts.items()},
            "scores": scores,
            "score": overall_score(scores, {h.name: h.weight for h in self.heads}),
            "metrics": metrics,
        }, data

    # -- outputs --------------------------------------------------------------------------------
    def _provenance(self, epochs: int) -> dict[str, Any]:
        return finite({
            "kind": "trained", "trainer": "streamtag.train", "streamtag": __version__,
            "torch": torch.__version__, "config": self.cfg.to_dict(),
            "data": self.data_hashes, "git": git_commit(), "epochs": epochs,
            "best_epoch": self.best_epoch, "seconds": round(self.seconds, 1),
            "world_size": self.dist.world,
            "clips": {"train": len(self.train_set), "validation": len(self.val_set)},
            "hops": {"train": sum(f.n_hops for f in self.train_set),
                     "validation": sum(f.n_hops for f in self.val_set)},
            "head_targets": {h.name: h.target.target for h in self.heads},
            "losses": {h.name: h.loss for h in self.heads},
            "validation_method": "forward_sequence on cached windows",
        })

    def _write_best(self, epoch: int, val: dict[str, Any]) -> None:
        path = self.run_dir / BEST_NAME
        tmp = self.run_dir / f".{BEST_NAME}.tmp"
        metrics = {"epoch": epoch, "validation": {k: val.get(k) for k in (
            "loss", "score", "scores", "metrics")}}
        save_checkpoint(tmp, self.model, self.frontend, self._provenance(epoch), finite(metrics))
        os.replace(tmp, path)

    def _write_plots(self, val_data: dict[str, HeadData] | None,
                     val: dict[str, Any] | None) -> None:
        from streamtag.train import plots
        from streamtag.train.evaluate import report_figures

        try:
            plots.loss_curves_png(self.history, self.run_dir / "plots" / "loss.png")
            if val_data is not None and val is not None:
                report_figures(val_data, val["metrics"], self.run_dir / "plots")
        except Exception as e:  # a figure is never worth a run
            log.warning("plotting failed: %s", e)

    # -- the run --------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train (or resume) to ``train.epochs``; return where the results are."""
        handler = self._setup_logging()
        try:
            return self._fit()
        finally:
            if handler is not None:
                log.removeHandler(handler)
                handler.close()
            if self.dist.initialized_here and dist.is_initialized():
                dist.destroy_process_group()

    def _fit(self) -> TrainResult:
        cfg = self.cfg
        if self.resume and not self._resume_path().is_file():
            raise ConfigError(f"--resume: no {RESUME_NAME} in {self.run_dir} to resume from")
        self._setup()
        self.history: list[dict[str, Any]] = []
        self.best_score: float | None = None
        self.best_monitor: float | None = None
        self.best_epoch = 0
        self.seconds = 0.0
        start_epoch = self._load_resume() if self.resume else 0
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(dump_train_config(cfg), encoding="utf-8")
        if start_epoch >= cfg.train.epochs:
            log.info("already trained %d epochs (train.epochs %d): nothing to do", start_epoch,
                     cfg.train.epochs)
        for epoch in range(start_epoch, cfg.train.epochs):
            t0 = time.perf_counter()
            train = self._train_epoch(epoch)
            val, val_data = (self.validate() if self.dist.main and self.val_set
                             else ({}, None))
            # The scheduler and the best-epoch choice must agree on every process.
            monitor_name = cfg.scheduler.monitor
            if self.dist.main:
                if not self.val_set or monitor_name == "train_loss":
                    monitor = train["loss"]
                else:
                    monitor = val["loss"] if monitor_name == "validation_loss" else val["score"]
                score = val.get("score") if self.val_set else None
                if score is None:  # no validation score: lower training loss is better
                    score = -train["loss"] if train["loss"] is not None else None
                shared = [monitor, score]
            else:
                shared = [None, None]
            if self.dist.world > 1:
                dist.broadcast_object_list(shared, src=0)
            monitor, score = shared
            if monitor is not None:
                self.scheduler.step(monitor)
            improved = score is not None and (self.best_score is None or score > self.best_score)
            if improved:
                self.best_score, self.best_epoch, self.best_monitor = score, epoch + 1, monitor
            self.seconds += time.perf_counter() - t0
            entry = finite({
                "epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t0, 3), "train": train,
                "validation": val, "best": improved,
            })
            self.history.append(entry)
            if self.dist.main:
                if improved or not (self.run_dir / BEST_NAME).exists():
                    self._write_best(epoch + 1, val)
                self._save_resume(epoch + 1)
                (self.run_dir / "metrics.json").write_text(
                    json.dumps(self.history, indent=1, allow_nan=False) + "\n", encoding="utf-8")
                if cfg.output.plots:
                    self._write_plots(val_data if improved else None, val if improved else None)
                vs = val.get("score")
                log.info("epoch %d/%d: train loss %.4f, validation loss %s, score %s%s, "
                         "lr %.2g, %.1f s", epoch + 1, cfg.train.epochs, train["loss"] or 0.0,
                         f"{val['loss']:.4f}" if val else "–",
                         f"{vs:.4f}" if vs is not None else "–", " (best)" if improved else "",
                         entry["lr"], entry["seconds"])
            self._barrier()
        best = self.run_dir / BEST_NAME
        if self.dist.main and cfg.output.final_report and best.exists() and self.val_set:
            self._final_report(best)
        return TrainResult(self.run_dir, best if self.dist.main else None, self.best_epoch,
                           self.best_score, cfg.train.epochs, self.seconds, self.history)

    def _final_report(self, best: Path) -> None:
        from streamtag.checkpoint import load_checkpoint
        from streamtag.train.evaluate import evaluate

        emb = None
        try:
            from streamtag.train.finalize import finalize_embedding

            emb = finalize_embedding(best, self.train_set, [f.clip for f in self.val_set])
        except Exception as e:  # the checkpoint stays usable without a projection
            log.warning("embedding projection / calibration failed: %s", e)
        try:
            ck = load_checkpoint(best)
            # The embedding was just measured on these clips (the stored projection and
            # threshold do not change those numbers): the report reuses it.
            report = evaluate(ck, [f.clip for f in self.val_set], method="engine",
                              embedding_report=emb if emb and (emb.retrieval or emb.novelty)
                              else None,
                              out_dir=self.run_dir / "report", plots=self.cfg.output.plots,
                              progress=lambda it: self._bar(list(it), desc="report",
                                                            unit="clip"))
            log.info("report: %s (%.1f s)", self.run_dir / "report" / "report.md", report.seconds)
        except Exception as e:  # the checkpoint is written; a failed report is not fatal
            log.warning("final report failed: %s", e)


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False,
          progress: bool | None = None) -> TrainResult:
    """Train a model as ``cfg`` says, writing into ``run_dir`` (see the module docstring)."""
    return Trainer(cfg, run_dir, resume=resume, progress=progress).fit()


__all__ = [
    "Batch",
    "SegmentResult",
    "SequenceStep",
    "TrainHead",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "band_statistics",
    "batch_group",
    "batch_hard_pairs",
    "batch_hard_triplet_loss",
    "batch_stratum",
    "class_balance_weights",
    "clip_embeddings",
    "collate",
    "epoch_batches",
    "masked_bce",
    "masked_cross_entropy",
    "masked_regression_loss",
    "multitask_loss",
    "spec_augment",
    "train",
    "train_batch",
]
