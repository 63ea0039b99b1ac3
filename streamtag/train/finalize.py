"""After training: give the best checkpoint's embedding its fixed projection and its threshold.

The daemon publishes ``embedding.xy`` through a projection stored in the checkpoint (never refit
live, so a position means the same thing every evening), and decides "known / new" against a
reference library with the checkpoint's ``known_distance``. Both are fitted here, once:

- projection: PCA (``streamtag.embedding.fit_projection``) of the embeddings of up to
  ``PROJECTION_CLIPS`` training clips, every hop, through the model with the state carried;
- match projection: PCA (``fit_match_projection``, ``MATCH_DIMS``) of the same hops' match
  vectors, what reference libraries then store and compare;
- sound scale: mean and standard deviation (``fit_sound_scale``) of the same hops' sound
  vectors, which novelty standardises before comparing them;
- known_distance: calibrated on the validation pieces by ``evaluate_embedding`` (render 1 of
  pieces in the library against render 1 of pieces left out).

The checkpoint's metadata is rewritten in place (``update_embedding_meta``): same weights,
same id. The trainer calls ``finalize_embedding`` at the end of a run;
``python3 -m streamtag.train.finalize RUN_DIR`` does it for a finished run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamtag.checkpoint import Checkpoint, load_checkpoint, update_embedding_meta
from streamtag.console import EXIT_OK, EXIT_RUNTIME, Parser, run
from streamtag.embedding import (
    EmbeddingMeta,
    fit_match_projection,
    fit_projection,
    fit_sound_scale,
    match_vectors,
)
from streamtag.logs import log_to_stderr
from streamtag.train.evaluate import hop_seconds, window_outputs
from streamtag.train.evaluate_embedding import (
    EmbeddingReport,
    evaluate_embedding,
    pieces_from_clips,
)
from streamtag.train.features import ClipFeatures

log = logging.getLogger("streamtag.train")

PROJECTION_CLIPS = 800
"""Training clips whose hop embeddings fit the projection (evenly spaced over the set)."""


def finalize_embedding(best: str | Path, train_feats: Sequence[ClipFeatures],
                       val_clips: Sequence[Any]) -> EmbeddingReport | None:
    """Fit and store the projection and ``known_distance`` of ``best``'s embedding head.

    Returns the validation embedding report, or None when the checkpoint has no embedding head.
    known_distance stays None (not calibrated) when no validation piece has two renders.
    """
    ck = load_checkpoint(best)
    head = ck.embedding_head
    if head is None:
        return None
    pick = np.linspace(0, len(train_feats) - 1, min(PROJECTION_CLIPS, len(train_feats)))
    picked = [train_feats[int(i)] for i in np.unique(pick.round().astype(int))]
    emb = [window_outputs(ck.model, f.windows[None])[head.name][0] for f in picked]
    if not emb:
        raise ValueError("no training clip to fit the embedding projection on")
    projection = fit_projection(np.concatenate(emb))
    encoded = [_encodings(ck, f.windows) for f in picked]
    match = fit_match_projection(np.concatenate([
        match_vectors(e, ck.model.sound_features, ck.model.arch.n_chroma) for e in encoded]))
    sound = fit_sound_scale(np.concatenate([e[:, :ck.model.sound_features] for e in encoded]))
    # Calibrate with the maps as stored (rounded), through a checkpoint that holds them.
    update_embedding_meta(best, EmbeddingMeta(projection, None, match, sound))
    ck = load_checkpoint(best)
    pieces, skipped = pieces_from_clips(val_clips)
    for s in skipped[:5]:
        log.warning("embedding evaluation skipped %s", s)
    report = evaluate_embedding(ck, pieces) if len(pieces) >= 2 else EmbeddingReport()
    assert ck.embedding is not None  # written just above
    update_embedding_meta(best, replace(ck.embedding, known_distance=report.known_distance))
    log.info("embedding: projection fitted on %d hops, match vectors reduced to %d dims; "
             "known_distance %s; %s", sum(len(e) for e in emb), match.dims,
             report.known_distance, _summary(report))
    return report


def _encodings(ck: Checkpoint, windows: np.ndarray) -> np.ndarray:
    """Window encodings [S, F] (``StreamTagModel.encode``) of one clip's windows
    [S, n_features, W]."""
    with torch.inference_mode():
        return ck.model.encode(torch.from_numpy(np.array(windows, np.float32))).numpy()


def _summary(r: EmbeddingReport) -> dict[str, Any]:
    """The headline numbers, for the log."""
    out: dict[str, Any] = {"known_distance": r.known_distance}
    if r.retrieval:
        last = list(r.retrieval["by_seconds"].values())[-1]
        out.update(retrieval_top1_5s=last["top1"], retrieval_map_5s=last["map"],
                   pieces=r.retrieval["pieces"])
    if r.known_unknown:
        out["known_unknown_auc"] = r.known_unknown["roc_auc"]
    if r.novelty:
        out.update(novelty_detection=r.novelty["detection_rate"],
                   novelty_false_alarms_per_min=r.novelty["false_alarms_per_min"])
    return {k: (round(float(v), 4) if v is not None else None) for k, v in out.items()}


def cmd_finalize(args: argparse.Namespace) -> int:
    """Finalize ``RUN_DIR/best.safetensors`` of a finished run (reads ``RUN_DIR/config.yaml``)."""
    from streamtag.train.config import BEST_NAME, head_target, load_train_config
    from streamtag.train.features import FeatureCache, HeadTarget, load_features, source_clips

    log_to_stderr(replace=False)
    cfg = load_train_config(args.run_dir / "config.yaml")
    best = args.run_dir / BEST_NAME
    ck = load_checkpoint(best)
    clips, _ = source_clips(cfg.data.corpus, cfg.data.datasets, cfg.data.validation_fraction,
                            cfg.data.extra_corpora)
    cache = FeatureCache(args.cache_dir or cfg.data.cache_dir, ck.frontend)
    hop_s = hop_seconds(ck)
    feats, _ = load_features([c for c in clips if c.split == "train"], cache, ck.model.arch,
                             [HeadTarget(spec, head_target(h))
                              for h, spec in zip(cfg.heads, ck.model.heads, strict=True)], hop_s,
                             per_hop_timbre=False)
    report = finalize_embedding(best, feats, [c for c in clips if c.split == "validation"])
    if report is None:
        print(f"{best}: no embedding head, nothing to do", file=sys.stderr)
        return EXIT_RUNTIME
    print(f"{best}: known_distance {report.known_distance}; {_summary(report)}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python3 -m streamtag.train.finalize RUN_DIR``: errors map to exit codes through
    ``console.run`` (0 ok, 2 usage or config error, 1 failure)."""
    p = Parser(prog="python3 -m streamtag.train.finalize",
               description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--cache-dir", help="feature cache folder (default: the run's)")
    p.set_defaults(func=cmd_finalize)
    return run(p, list(argv) if argv is not None else None)


if __name__ == "__main__":
    sys.exit(main())
