"""An exponential moving average of the weights a run trains (Polyak averaging).

Validation scores of the shipped recipe swing from epoch to epoch (instrument accuracy 0.89 →
0.94 → 0.92 on three consecutive epochs of the 7ceabb6616c4 run), so the best epoch picked on
them is partly luck, and the weights of one step carry that step's noise. The average of the
last few hundred steps' weights sits nearer the middle of the valley the optimiser wanders in;
with ``train.ema_decay`` set, the trainer validates and saves the average, not the last step.

Every floating-point entry of the state dict is averaged (parameters and batch-norm running
statistics alike); integer entries (``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The running average of ``model``'s weights, as a model of its own (``.model``).

    decay: the weight of the old average per update, 0 ≤ decay < 1. Early on the average
    follows the model faster (decay ``min(decay, (1 + n) / (10 + n))`` at the n-th update), so
    the random initial weights are forgotten within tens of steps, not within ``1 / (1 -
    decay)``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def rate(self, n: int) -> float:
        """The decay used at the ``n``-th update (1-based)."""
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s weights now (call after each optimiser step)."""
        self.updates += 1
        d = self.rate(self.updates)
        mine = self.model.state_dict()
        for name, value in model.state_dict().items():
            target = mine[name]
            if target.dtype.is_floating_point:
                target.lerp_(value, 1.0 - d)
            else:
                target.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain containers (loadable with ``torch.load(weights_only=True)``)."""
        return {"updates": self.updates,
                "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.model.load_state_dict(state["model"])


__all__ = ["WeightAverage"]
