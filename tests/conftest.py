"""Shared fixtures: golden data paths, tiny deterministic checkpoints, a test signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamtag.checkpoint import Checkpoint, load_checkpoint
from streamtag.testing import make_checkpoint, make_signal

DATA = Path(__file__).parent / "data"

# Two cores, several test processes at times: one intra-op thread keeps timings sane.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def tiny_default_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "tiny-default.safetensors")


@pytest.fixture(scope="session")
def tiny_default(tiny_default_path: Path) -> Checkpoint:
    return load_checkpoint(tiny_default_path)


@pytest.fixture(scope="session")
def tiny_seed(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    return load_checkpoint(
        make_checkpoint(tmp_path_factory.mktemp("ck") / "tiny-seed.safetensors", "seed")
    )


@pytest.fixture(scope="session")
def signal() -> np.ndarray:
    return make_signal(3.0, 22050)


@pytest.fixture(scope="session")
def tiny_embedding_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Emotion, tags and an 8-dim embedding head, with a fitted projection and a threshold."""
    from streamtag.model import EMOTION_HEAD
    from streamtag.testing import EMBEDDING_HEAD, TAGS_HEAD, TINY_KNOWN_DISTANCE, TINY_MATCH_DIMS

    return make_checkpoint(tmp_path_factory.mktemp("ck") / "tiny-embedding.safetensors",
                           heads=[EMOTION_HEAD, TAGS_HEAD, EMBEDDING_HEAD], projection=True,
                           known_distance=TINY_KNOWN_DISTANCE,
                           match_dims=TINY_MATCH_DIMS)


@pytest.fixture(scope="session")
def tiny_embedding(tiny_embedding_path: Path) -> Checkpoint:
    return load_checkpoint(tiny_embedding_path)
