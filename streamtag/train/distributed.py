"""Distributed training under ``torchrun``: which process this is, the gloo process group.

Under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel on the gloo
backend; batches are dealt by a ``DistributedSampler``; each batch is padded to the longest in
any process so every process takes the same number of steps; only rank 0 validates, writes and
logs at info level, and broadcasts what the others need (the scheduler's input).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist


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
