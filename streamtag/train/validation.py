"""Validation during training: loss, per-head metrics and score on the cached windows.

Every validation clip runs through ``forward_chunked`` from a fresh state with the state
carried across the whole clip (cheap enough for every epoch); the loss is taken over all
validation hops at once. ``streamtag evaluate`` measures the served path (the Engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from streamtag.model import StreamTagModel, activate_head
from streamtag.train.evaluate import HeadData, head_metrics, head_score, overall_score
from streamtag.train.features import ClipFeatures
from streamtag.train.losses import TrainHead, multitask_loss


def validate(model: StreamTagModel, val_set: Sequence[ClipFeatures], heads: Sequence[TrainHead],
             hop_s: float) -> tuple[dict[str, Any], dict[str, HeadData]]:
    """Validation loss, per-head metrics and score of ``model`` on ``val_set``'s windows.

    hop_s: the analysis hop [s]. Returns (the epoch's validation entry: ``loss``,
    ``heads_loss``, ``scores``, ``score``, ``metrics``; each head's collected outputs).
    """
    data = {h.name: HeadData(h.target) for h in heads}
    logits_all: dict[str, list[torch.Tensor]] = {h.name: [] for h in heads}
    targets_all: dict[str, list[np.ndarray]] = {h.name: [] for h in heads}
    masks_all: dict[str, list[np.ndarray]] = {h.name: [] for h in heads}
    model.eval()
    by_len: dict[int, list[ClipFeatures]] = {}
    for f in val_set:
        by_len.setdefault(f.n_hops, []).append(f)
    for _, group in sorted(by_len.items()):
        for i in range(0, len(group), 32):
            chunk = group[i:i + 32]
            windows = torch.from_numpy(np.stack([f.windows for f in chunk]).astype(np.float32))
            with torch.inference_mode():
                logits, _ = model.forward_chunked(windows, activate=False)
            for h in heads:
                act = activate_head(h.target.spec, logits[h.name]).numpy()
                for b, f in enumerate(chunk):
                    data[h.name].add(act[b], f.targets[h.name], f.masks[h.name],
                                     f.clip.texture)
                    logits_all[h.name].append(logits[h.name][b])
                    targets_all[h.name].append(f.targets[h.name])
                    masks_all[h.name].append(f.masks[h.name])
    # The loss over all validation hops at once (a per-segment CCC would be meaningless).
    # Embedding heads compare recordings, so they keep one row per clip (padded, masked).
    with torch.no_grad():
        outputs, targets, masks = {}, {}, {}
        for h in heads:
            k = h.name
            if h.target.spec.kind == "embedding":
                outputs[k] = pad_sequence(logits_all[k], batch_first=True)
                targets[k] = pad_sequence([torch.from_numpy(t) for t in targets_all[k]],
                                          batch_first=True)
                masks[k] = pad_sequence([torch.from_numpy(m) for m in masks_all[k]],
                                        batch_first=True)
            else:
                outputs[k] = torch.cat(logits_all[k])[None]
                targets[k] = torch.from_numpy(np.concatenate(targets_all[k]))[None]
                masks[k] = torch.from_numpy(np.concatenate(masks_all[k]))[None]
        total, parts = multitask_loss(outputs, targets, masks, heads)
    metrics = {h.name: head_metrics(data[h.name], hop_s) for h in heads
               if any(m.any() for m in data[h.name].masks)}
    scores = {h.name: head_score(metrics[h.name], h.loss) for h in heads
              if h.name in metrics}
    labelled = {h.name for h in heads if h.name in metrics}
    return {
        "loss": float(total),
        "heads_loss": {k: (float(v) if k in labelled else None) for k, v in parts.items()},
        "scores": scores,
        "score": overall_score(scores, {h.name: h.weight for h in heads}),
        "metrics": metrics,
    }, data
