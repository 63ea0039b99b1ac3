"""One batch of recordings through the model, segment by segment (truncated BPTT).

Each recording is cut into segments of S consecutive hops; the LSTM state runs from a fresh
(zero) state at the recording's start, is carried from one segment to the next and detached
between them, and one optimiser step is taken per segment. A segment where no head has a label
anywhere (in any process) only advances the state, without a step, so Adam's momentum does not
move the weights on nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from streamtag.errors import TrainingError
from streamtag.model import LstmState, StreamTagModel
from streamtag.train.batches import Batch
from streamtag.train.losses import TrainHead, multitask_loss


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
    on_step: Callable[[], None] | None = None,
) -> list[SegmentResult]:
    """Train on one batch of recordings, segment by segment (truncated BPTT).

    The state starts fresh (zeros) for these recordings, is carried from each segment into the
    next, and detached in between so gradients stop at segment boundaries. step: the
    ``SequenceStep`` (or its DDP wrapper). label_count: turns this process's count of labels
    in a segment into the count over all processes (identity when alone). on_step: called
    after each optimiser step (the weight average's update).
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
        if on_step is not None:
            on_step()
        state = LstmState(h_.detach(), c_.detach())
        results.append(SegmentResult(
            float(loss.detach()),
            {h.name: float(parts[h.name].detach()) if float(masks[h.name].sum()) > 0 else None
             for h in heads},
            True,
        ))
    return results
