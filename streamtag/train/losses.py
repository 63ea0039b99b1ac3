"""The training losses, each masked per hop: a head with no label contributes exactly zero.

MSE or CCC (emotion), L1 (timbre), cross-entropy with class-balance weights from the training
counts (multiclass), BCE (multilabel), batch-hard triplet between recordings (embedding); the
total is the weighted sum over heads (``multitask_loss``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from streamtag.model import activate_head
from streamtag.train.features import HeadTarget

#: Most hops a triplet loss compares at once (an [N, N] distance matrix; 4096² floats = 64 MB).
TRIPLET_MAX_ITEMS = 4096


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
