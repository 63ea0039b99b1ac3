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


@pytest.fixture(scope="session")
def bundled() -> Checkpoint:
    """The model that ships in the package (tests using it skip when it is absent)."""
    from streamtag.checkpoint import BUNDLED_CHECKPOINT

    if not BUNDLED_CHECKPOINT.exists():
        pytest.skip("no bundled model")
    return load_checkpoint(BUNDLED_CHECKPOINT)


@pytest.fixture(scope="session")
def pieces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """One 8 s piece per instrument class [n] float32 at 22050 Hz, by class name: validation
    renders through TimGM6mb, the SoundFont the bundled model never trained on (FluidSynth;
    about 3 s). Skips without fluidsynth."""
    import shutil

    import soundfile as sf

    from streamtag.train.corpus import build_corpus, read_manifest

    if shutil.which("fluidsynth") is None:
        pytest.skip("needs fluidsynth")
    out = tmp_path_factory.mktemp("pieces")
    manifest = build_corpus(out, n_per_class=0, val_per_class=1, seed=11, clip_s=8.0,
                            soundfonts=["timgm6mb"], drumkits=[], families=["instrument"],
                            workers=1, progress=False)
    return {row["labels"]["instrument"]: sf.read(out / row["path"], dtype="float32")[0]
            for row in read_manifest(manifest)}
