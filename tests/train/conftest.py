"""Tiny synthetic corpora for trainer and evaluation tests, written by the tests themselves.

``make_tone_corpus`` writes short WAVs (tones with known labels) and a ``manifest.jsonl`` in the
built-in corpus format, so the trainer reads it exactly as it reads a FluidSynth corpus. The
toy is learnable: a low tone is "clarinet", a high one "flute"; valence follows pitch (low −,
high +), arousal follows loudness; brightness follows pitch, the other descriptors are fixed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from streamtag.train.config import TrainConfig, load_train_config
from streamtag.train.corpus import MANIFEST_KEYS

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "train" / "tiny.yaml"
RATE = 22050
TONES = {"clarinet": 220.0, "flute": 1760.0}  # class → fundamental [Hz]

torch.set_num_threads(1)


def tone(f0_hz: float, seconds: float, level: float, rng: np.random.Generator) -> np.ndarray:
    """A steady harmonic tone with a little noise [n] float32."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = rng.uniform(0, 2 * np.pi)
    f = f0_hz * rng.uniform(0.97, 1.03)
    x = sum(np.sin(2 * np.pi * f * h * t + phase * h) / h for h in (1, 2, 3))
    x = level * x / np.max(np.abs(x)) + 0.003 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def manifest_row(clip_id: str, split: str, group: str, seconds: float,
                 labels: dict[str, Any]) -> dict[str, Any]:
    full = {"instrument": None, "valence": None, "arousal": None, "quadrant": None,
            "cues": None, "timbre": None, **labels}
    row = {"id": clip_id, "path": f"audio/{split}/{clip_id}.wav", "split": split,
           "soundfont": "synthetic", "family": "instrument", "group": group, "material": "tone",
           "duration_s": seconds, "sample_rate_hz": RATE, "labels": full,
           "timbre_source": "test" if labels.get("timbre") else None, "render": {},
           "augment": {}}
    assert set(MANIFEST_KEYS) <= set(row)
    return row


def make_tone_corpus(root: Path, n_train: int = 4, n_val: int = 2, seconds: float = 2.0,
                     seed: int = 0) -> Path:
    """Write ``n_train``/``n_val`` clips per class; return the corpus folder."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", n_train), ("validation", n_val)):
        for name, f0 in TONES.items():
            high = f0 > 500
            for i in range(n):
                loud = i % 2 == 0
                clip_id = f"{split[:3]}-{name}-{i}"
                path = root / "audio" / split / f"{clip_id}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, tone(f0, seconds, 0.5 if loud else 0.05, rng), RATE)
                timbre = {d: 0.5 for d in ("hardness", "depth", "brightness", "roughness",
                                           "warmth", "sharpness", "boominess")}
                timbre["brightness"] = 0.8 if high else 0.2
                labels = {"instrument": name, "valence": 0.5 if high else -0.5,
                          "arousal": 0.5 if loud else -0.5, "timbre": timbre}
                rows.append(manifest_row(clip_id, split, f"{split}-{name}-{i}", seconds, labels))
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tone_corpus(tmp_path_factory.mktemp("tones"))


@pytest.fixture(scope="session")
def extra_tone_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second build of the tone corpus (seed 1, training clips only) whose groups are named
    as the first one's: an extra corpus (``data.extra_corpora``)."""
    return make_tone_corpus(tmp_path_factory.mktemp("extra-tones"), n_train=2, n_val=0, seed=1)


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


def tiny_config(corpus: Path, cache: Path, *sets: str) -> TrainConfig:
    """configs/train/tiny.yaml on ``corpus`` with ``key=value`` overrides."""
    return load_train_config(TINY_CONFIG, [f"data.corpus={corpus}", f"data.cache_dir={cache}",
                                           *sets])


@pytest.fixture(scope="session")
def make_config(tone_corpus: Path, feature_cache: Path) -> Callable[..., TrainConfig]:
    """``make_config("train.epochs=1", …)``: the tiny config on the tone corpus."""
    return lambda *sets: tiny_config(tone_corpus, feature_cache, *sets)


@pytest.fixture(scope="session")
def trained_run(make_config: Callable[..., TrainConfig],
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained on the tone toy until it gets it (shared by several tests)."""
    from streamtag.train.trainer import train

    run = tmp_path_factory.mktemp("run")
    train(make_config("train.epochs=8", "output.plots=true"), run)
    return run
