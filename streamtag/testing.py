"""Deterministic tiny checkpoints and test signals, for tests and benchmarks (not for users).

``scripts/make_test_data.py`` writes these under ``tests/data/``; tests also rebuild them in
memory and compare, so a change in any stage shows up as a golden-data failure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from streamtag.checkpoint import save_checkpoint, update_embedding_meta
from streamtag.embedding import EmbeddingMeta, fit_match_projection, fit_projection
from streamtag.frontend import FRONTEND_PRESETS
from streamtag.model import EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD, HeadSpec, build_model

#: A small tag vocabulary; "Hip Hop" shows the OSC address rule (→ Hip_Hop).
TAGS_HEAD = HeadSpec("tags", "multilabel", ("calm", "energetic", "Hip Hop", "sad"))
#: An 8-dimensional embedding head.
#: known_distance of the tiny embedding checkpoints the tests make: through their 8-dim match
#: projection, a take of the same notes stays within ~0.45 of its reference over 2 s, another
#: signal beyond ~0.9.
TINY_KNOWN_DISTANCE = 0.5
#: Match-vector dims of those checkpoints (a stored MatchProjection, as the trainer makes).
TINY_MATCH_DIMS = 8
EMBEDDING_HEAD = HeadSpec("embedding", "embedding", tuple(f"d{i}" for i in range(8)))

#: Small enough to run in a test in milliseconds, same code path as the shipped preset.
TINY_OVERRIDES: dict[str, dict] = {
    "default": {"channels": [4, 8, 8, 8], "lstm_hidden": 16, "neck": [16]},
    "seed": {"channels": [4], "lstm_hidden": 16},
}


def make_checkpoint(
    path: str | Path,
    preset: str = "default",
    heads: list[HeadSpec] | None = None,
    seed: int = 0,
    tiny: bool = True,
    projection: bool = False,
    known_distance: float | None = None,
    match_dims: int | None = None,
) -> Path:
    """Write a checkpoint with deterministic random weights (for tests; not a trained model).

    The input normalisation is set from the silence frame so that random weights still react
    to the signal instead of saturating on the log floor.

    projection / known_distance (with an ``embedding`` head): store embedding metadata the way
    the trainer does: save, run the engine over a signal (``make_signal(6 s)``), fit the
    projection on those embeddings, and rewrite the metadata (:func:`update_embedding_meta`).
    match_dims: also fit a ``MatchProjection`` to that many dims, on the match vectors of
    ``make_signal(max(6, match_dims) s)`` (the trainer's way: PCA of unprojected match vectors).
    """
    heads = heads if heads is not None else [EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD]
    torch.manual_seed(seed)
    model = build_model(preset, heads, **(TINY_OVERRIDES[preset] if tiny else {}))
    fe = FRONTEND_PRESETS[preset]
    if fe.log:
        model.input_mean.fill_(-4.0)
        model.input_std.fill_(4.0)
    model.eval()
    out = save_checkpoint(
        path, model, fe, provenance={"kind": "test", "seed": seed, "trained": False}
    )
    if projection or known_distance is not None or match_dims:
        from streamtag.checkpoint import load_checkpoint
        from streamtag.engine import Engine

        proj = match = None
        if projection:
            records = Engine(load_checkpoint(out)).analyze(
                make_signal(6.0, fe.sample_rate_hz, seed=seed))
            proj = fit_projection(np.array([r["embedding"]["vector"] for r in records]))
        if match_dims:
            vectors = Engine(load_checkpoint(out)).reference_vectors(
                make_signal(max(6.0, float(match_dims)), fe.sample_rate_hz, seed=seed))
            match = fit_match_projection(vectors, match_dims)
        update_embedding_meta(out, EmbeddingMeta(proj, known_distance, match))
    return out


def make_signal(seconds: float = 3.0, sample_rate_hz: int = 22050, seed: int = 0) -> np.ndarray:
    """A deterministic, musically varied mono signal [n] float32: notes, a chirp, noise bursts."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate_hz)
    t = np.arange(n) / sample_rate_hz
    x = np.zeros(n)
    note_s = 0.25
    for i in range(int(seconds / note_s)):
        f0 = 220.0 * 2 ** (rng.integers(0, 24) / 12)
        seg = (t >= i * note_s) & (t < (i + 1) * note_s)
        tt = t[seg] - i * note_s
        env = np.exp(-tt * rng.uniform(2, 12))
        x[seg] += env * sum(np.sin(2 * np.pi * f0 * h * tt) / h for h in (1, 2, 3))
    x += 0.1 * np.sin(2 * np.pi * (100 + 2000 * t / seconds) * t)
    x += 0.02 * rng.standard_normal(n)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)
