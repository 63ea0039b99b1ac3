"""The resume file ``last.train.pt`` and the random state a resumed run replays.

Seeds are deterministic per epoch and rank (``seed_everything``), so a resumed run replays the
same randomness. The resume file holds tensors and plain containers only and is loaded with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamtag.atomic import atomic_path
from streamtag.errors import ConfigError, TrainingError

RESUME_FORMAT = "streamtag-train-resume"
RESUME_VERSION = 1
#: Config sections a resumed run may change (the rest must match the run being resumed).
RESUMABLE_CHANGES = ("train.epochs", "train.threads", "output.", "data.cache_dir",
                     "optimizer.lr")


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


def diff_keys(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff_keys(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    return [] if a == b else [path]


def write_resume(path: Path, epoch: int, config: dict[str, Any], model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler: Any, best: dict[str, Any],
                 average: dict[str, Any] | None = None) -> None:
    """Write the resume file for the end of ``epoch`` (atomically: a crash keeps the last one).

    best: ``best_score``, ``best_epoch``, ``best_monitor`` and ``seconds`` of the run so far.
    average: the weight average's ``state_dict`` (``train.ema_decay``), or None.
    """
    state = {
        "format": RESUME_FORMAT, "version": RESUME_VERSION, "epoch": epoch,
        "config": config,
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "best_score": best["best_score"], "best_epoch": best["best_epoch"],
        "best_monitor": best["best_monitor"], "seconds": best["seconds"],
        "rng": rng_state(),
        "average": average,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_resume(path: Path, config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The state in a resume file, checked: a streamtag resume file whose config differs from
    ``config`` only where a resumed run may change it (``RESUMABLE_CHANGES``).

    Raises ConfigError (no file, or a config key that may not change) or TrainingError (not a
    usable resume file).
    """
    if not path.is_file():
        raise ConfigError(f"--resume: no {path.name} in {run_dir} to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything that is not plain data
        raise TrainingError(f"{path}: not a usable resume file: {e}") from e
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise TrainingError(f"{path}: not a streamtag resume file")
    changed = [k for k in diff_keys(state["config"], config)
               if not any(k == r or k.startswith(r) for r in RESUMABLE_CHANGES)]
    if changed:
        raise ConfigError([f"{k}: differs from the run being resumed in {run_dir} "
                           "(only train.epochs, train.threads, output.*, data.cache_dir and "
                           "optimizer.lr may change)" for k in changed])
    return state
