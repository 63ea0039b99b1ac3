"""Evaluating the embedding the way a performer uses it: which piece is this, is it known at all,
and did something just change.

Everything goes through the ``Engine`` (the records a user gets) and the run-time matcher
(``streamtag.references``), so the numbers describe the shipped behaviour, not a proxy:

- **Piece retrieval.** Pieces with at least two renders (the corpus's validation pieces are
  rendered twice: same notes, another room). Render 0 of every piece goes into a reference
  library; render 1 is played from its start, and after ``t`` seconds the run-time query (the
  unit mean of the last ``reference.window_s`` of hops) is compared with every reference's
  anchors. Top-1 accuracy and mean average precision (one relevant reference: 1 / its rank)
  for ``t`` = 1 … 5 s.
- **Known / unknown.** Half of the pieces (every other one, in id order) are left out of the
  library. ROC AUC of the nearest distance as a "new music" score, known pieces' render 1 vs
  left-out pieces' render 1, at ``t`` = 5 s. The threshold ``known_distance`` is calibrated on
  half the pieces (maximising balanced accuracy) and its accuracy reported on the other half;
  the value returned for the checkpoint is calibrated on all of them.
- **Novelty at splices.** Streams made of render-0 clips of different pieces back to back, run
  through the engine from a fresh state (the LSTM hears the splices as a listener would).
  An alarm is a hop whose novelty rises to the threshold or above from below it; a splice is
  detected when an alarm falls within ``DETECT_S`` after it, and every other alarm is a false
  alarm. The threshold is the lowest that keeps false alarms at or below
  ``MAX_FALSE_ALARMS_PER_MIN`` on half of the streams; detection and false alarms are reported
  on the other half.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamtag.checkpoint import Checkpoint
from streamtag.config import NoveltyConfig, ReferenceConfig
from streamtag.embedding import MAX_DISTANCE, hops_for, unit_mean
from streamtag.engine import Engine
from streamtag.references import Reference, ReferenceLibrary, anchors

QUERY_SECONDS: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)
"""Audio heard before the retrieval query [s]."""
DETECT_S = 1.0
"""A splice counts as detected by an alarm within this long after it [s]."""
MAX_FALSE_ALARMS_PER_MIN = 1.0
SPLICE_CLIPS = 10
"""Clips per novelty stream (60 s of 6 s corpus clips, 9 splices)."""


@dataclass
class PieceAudio:
    """One piece's renders: audio [n] at ``rate_hz`` each, render 0 first."""

    piece: str
    renders: list[np.ndarray]
    rate_hz: int


@dataclass
class EmbeddingReport:
    """What ``evaluate_embedding`` measured (all plain numbers, JSON-ready)."""

    retrieval: dict[str, Any] = field(default_factory=dict)
    known_unknown: dict[str, Any] = field(default_factory=dict)
    novelty: dict[str, Any] = field(default_factory=dict)
    known_distance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"retrieval": self.retrieval, "known_unknown": self.known_unknown,
                "novelty": self.novelty, "known_distance": self.known_distance}


def roc_auc(negatives: np.ndarray, positives: np.ndarray) -> float | None:
    """P(positive score > negative score), ties counting half (Mann-Whitney U / (n·m))."""
    neg, pos = np.asarray(negatives, np.float64), np.asarray(positives, np.float64)
    if not len(neg) or not len(pos):
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def calibrate_threshold(known: np.ndarray, unknown: np.ndarray) -> tuple[float, float]:
    """(threshold, balanced accuracy) that best separates distances of known pieces (≤ it)
    from unknown ones (> it). Candidates: midpoints between sorted distinct distances."""
    values = np.unique(np.concatenate([known, unknown]))
    candidates = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2,
                                 [values[-1] + 1e-6]])
    best, best_acc = float(candidates[0]), -1.0
    for c in candidates:
        acc = 0.5 * (float(np.mean(known <= c)) + float(np.mean(unknown > c)))
        if acc > best_acc:
            best, best_acc = float(c), acc
    return min(max(best, 1e-6), MAX_DISTANCE), best_acc


def _records_embeddings(records: Sequence[dict], head: str) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings [S, D], silent [S]) of one stream's records."""
    emb = np.asarray([r[head]["vector"] for r in records], np.float64)
    silent = np.asarray([bool(r["silent"]) for r in records])
    return emb, silent


def _query_at(emb: np.ndarray, silent: np.ndarray, hops: int, window: int) -> np.ndarray | None:
    """The run-time query after ``hops`` hops: unit mean of the last ``window`` sounding hops."""
    sounding = emb[:hops][~silent[:hops]]
    return unit_mean(sounding[-window:]) if len(sounding) else None


def _distances(query: np.ndarray, refs: Sequence[np.ndarray]) -> np.ndarray:
    """Distance [0, 2] of a unit query to each reference: min over its anchors [A_i, D]."""
    out = np.empty(len(refs))
    for i, a in enumerate(refs):
        dots = float(np.max(a @ query))
        out[i] = math.sqrt(max(0.0, 2.0 - 2.0 * dots))
    return np.minimum(out, MAX_DISTANCE)


def evaluate_embedding(
    ck: Checkpoint, pieces: Sequence[PieceAudio], *, head: str = "embedding",
    novelty: NoveltyConfig | None = None, reference: ReferenceConfig | None = None,
    progress: Callable[[Sequence[Any], str], Sequence[Any]] | None = None, seed: int = 0,
) -> EmbeddingReport:
    """Retrieval, known/unknown and novelty metrics of ``ck``'s embedding (module docstring).

    pieces: at least two pieces; those with two or more renders take part in retrieval and
    known/unknown. progress(items, description) may wrap the loops (a progress bar).
    """
    reference = reference or ReferenceConfig()
    novelty = novelty or NoveltyConfig()
    wrap = progress or (lambda items, _desc: items)
    engine = Engine(ck, input_rate_hz=pieces[0].rate_hz, novelty=novelty)
    window = hops_for(reference.window_s, engine.hop_s)
    report = EmbeddingReport()

    # -- embeddings of every render, through the engine
    dims = ck.embedding_head.size if ck.embedding_head is not None else 0
    if dims == 0:
        raise ValueError(f"checkpoint {ck.id} has no embedding head")
    renders: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for p in wrap(list(pieces), "embeddings"):
        renders[p.piece] = [_records_embeddings(engine.analyze(a), head) for a in p.renders]
    paired = sorted(k for k, v in renders.items() if len(v) >= 2)

    # -- retrieval: render 0 in the library, render 1 queried
    if len(paired) >= 2:
        lib = [anchors(Reference(k, renders[k][0][0][~renders[k][0][1]].astype(np.float32),
                                 [int((~renders[k][0][1]).sum())], []), window)
               for k in paired]
        by_t: dict[str, Any] = {}
        for t in QUERY_SECONDS:
            hops = hops_for(t, engine.hop_s)
            ranks = []
            for i, k in enumerate(paired):
                emb, silent = renders[k][1]
                q = _query_at(emb, silent, hops, window)
                if q is None:
                    ranks.append(len(paired))
                    continue
                d = _distances(q, lib)
                ranks.append(1 + int(np.sum(d < d[i])))
            r = np.asarray(ranks)
            by_t[f"{t:g}"] = {"top1": float(np.mean(r == 1)), "map": float(np.mean(1.0 / r)),
                              "median_rank": float(np.median(r))}
        report.retrieval = {"pieces": len(paired), "window_s": reference.window_s,
                            "by_seconds": by_t}

        # -- known / unknown at 5 s
        hops = hops_for(QUERY_SECONDS[-1], engine.hop_s)
        known = paired[0::2]
        lib_known = [lib[i] for i in range(0, len(paired), 2)]
        nearest = {}
        for k in paired:
            emb, silent = renders[k][1]
            q = _query_at(emb, silent, hops, window)
            nearest[k] = float(_distances(q, lib_known).min()) if q is not None else MAX_DISTANCE
        d_known = np.asarray([nearest[k] for k in known])
        d_new = np.asarray([nearest[k] for k in paired[1::2]])
        # Calibrate on pieces 0, 1 (mod 4) and test on 2, 3 (mod 4): both halves hold known
        # and left-out pieces.
        fold = {k: (i % 4) < 2 for i, k in enumerate(paired)}
        cal_k = np.asarray([nearest[k] for k in known if fold[k]])
        cal_n = np.asarray([nearest[k] for k in paired[1::2] if fold[k]])
        test_k = np.asarray([nearest[k] for k in known if not fold[k]])
        test_n = np.asarray([nearest[k] for k in paired[1::2] if not fold[k]])
        thr_half, _ = calibrate_threshold(cal_k, cal_n)
        thr_all, acc_all = calibrate_threshold(d_known, d_new)
        report.known_distance = round(thr_all, 4)
        report.known_unknown = {
            "known_pieces": len(d_known), "left_out_pieces": len(d_new),
            "roc_auc": roc_auc(d_known, d_new),
            "threshold_half": thr_half,
            "test_balanced_accuracy": 0.5 * (float(np.mean(test_k <= thr_half))
                                             + float(np.mean(test_n > thr_half))),
            "threshold_all": thr_all, "balanced_accuracy_all": acc_all,
            "median_distance_known": float(np.median(d_known)),
            "median_distance_left_out": float(np.median(d_new)),
        }

    # -- novelty at splices
    order = sorted(renders)
    rng = np.random.default_rng(seed)
    order = [order[i] for i in rng.permutation(len(order))]
    audio = {p.piece: p.renders[0] for p in pieces}
    streams = [order[i:i + SPLICE_CLIPS] for i in range(0, len(order), SPLICE_CLIPS)]
    streams = [s for s in streams if len(s) >= 2]
    curves = []
    for s in wrap(streams, "splices"):
        sig = np.concatenate([audio[k] for k in s])
        bounds = np.cumsum([len(audio[k]) for k in s])[:-1] / pieces[0].rate_hz
        recs = engine.analyze(sig)
        t = np.asarray([r["t"] for r in recs])
        nov = np.asarray([r["novelty"] for r in recs])
        curves.append((t, nov, bounds))
    if curves:
        cal, test = curves[0::2], curves[1::2] or curves[0::2]
        thr = _novelty_threshold(cal)
        det, fa, minutes, splices = _detect(test, thr)
        report.novelty = {
            "streams": len(curves), "memory_s": novelty.memory_s, "recent_s": novelty.recent_s,
            "threshold": thr, "test_splices": splices, "test_minutes": minutes,
            "detection_rate": det / splices if splices else None,
            "false_alarms_per_min": fa / minutes if minutes else None,
            "auc_hop": _novelty_auc(curves),
        }
    return report


def _alarms(nov: np.ndarray, thr: float) -> np.ndarray:
    """Hop indices where novelty rises to ``thr`` or above from below it."""
    above = nov >= thr
    return np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))


def _detect(curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], thr: float
            ) -> tuple[int, int, float, int]:
    """(splices detected, false alarms, minutes of audio, splices) at threshold ``thr``."""
    det = fa = splices = 0
    minutes = 0.0
    for t, nov, bounds in curves:
        minutes += (t[-1] if len(t) else 0.0) / 60.0
        alarm_t = t[_alarms(nov, thr)]
        used = np.zeros(len(alarm_t), bool)
        for b in bounds:
            splices += 1
            hit = (alarm_t > b) & (alarm_t <= b + DETECT_S + 1e-9)
            if hit.any():
                det += 1
                used |= hit
        fa += int((~used).sum())
    return det, fa, minutes, splices


def _novelty_threshold(curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """The lowest threshold whose false alarms per minute stay ≤ the limit on ``curves``."""
    values = np.unique(np.concatenate([nov for _, nov, _ in curves]))
    for thr in values[values > 0]:
        _, fa, minutes, _ = _detect(curves, float(thr))
        if minutes and fa / minutes <= MAX_FALSE_ALARMS_PER_MIN:
            return float(thr)
    return float(values[-1]) + 1e-6


def _novelty_auc(curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float | None:
    """ROC AUC of per-hop novelty: hops within DETECT_S after a splice vs every other hop."""
    pos, neg = [], []
    for t, nov, bounds in curves:
        near = np.zeros(len(t), bool)
        for b in bounds:
            near |= (t > b) & (t <= b + DETECT_S + 1e-9)
        pos.append(nov[near])
        neg.append(nov[~near])
    return roc_auc(np.concatenate(neg), np.concatenate(pos))


__all__ = ["EmbeddingReport", "PieceAudio", "calibrate_threshold", "evaluate_embedding",
           "roc_auc"]
