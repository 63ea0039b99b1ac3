"""Evaluating the embedding the way a performer uses it: which piece is this, is it known at all,
and did something just change.

Everything goes through the ``Engine`` (the records a user gets, and the match vectors a
reference library stores: ``Engine.reference_vectors``) and the run-time matcher
(``streamtag.references``), so the numbers describe the shipped behaviour, not a proxy:

- **Piece retrieval.** Pieces with at least two renders (the corpus's validation pieces are
  rendered twice: same notes, another room). Render 0 of every piece goes into a reference
  library; render 1 is played from its start, and after ``t`` seconds the run-time query (the
  last ``reference.window_s`` of hops) is slid along every reference (``SequenceIndex``).
  Top-1 accuracy and mean average precision (one relevant reference: 1 / its rank) for
  ``t`` = 1 … 5 s.
- **Known / unknown.** Half of the pieces (every other one, in id order) are left out of the
  library. ROC AUC of the nearest distance as a "new music" score, known pieces' render 1 vs
  left-out pieces' render 1, at ``t`` = 5 s. The threshold ``known_distance`` is calibrated on
  half the pieces (maximising balanced accuracy) and its accuracy reported on the other half;
  the value returned for the checkpoint is calibrated on all of them.
- **Novelty at splices.** Streams made of render-0 clips of different pieces back to back, run
  through the engine from a fresh state (the LSTM hears the splices as a listener would).
  An alarm is a hop whose novelty rises to the threshold or above from below it; a splice is
  detected when an alarm falls within ``DETECT_S`` after it, and every other alarm is a false
  alarm. Two folds: each half of the streams picks the threshold detecting most of its splices
  while its false alarms stay at or below ``MAX_FALSE_ALARMS_PER_MIN``, and the other half is
  scored at it; detection and false alarms are summed over both scored halves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamtag.checkpoint import Checkpoint
from streamtag.config import NoveltyConfig, ReferenceConfig
from streamtag.embedding import MAX_DISTANCE, hops_for
from streamtag.engine import Engine
from streamtag.record import KEY_NOVELTY
from streamtag.references import SequenceIndex

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


def pieces_from_clips(clips: Sequence[Any]) -> tuple[list[PieceAudio], list[str]]:
    """Clips grouped into pieces by (dataset, group), renders in path order, and the clips
    left out (unreadable, or at another sample rate than the first readable clip)."""
    from streamtag.audiofile import read_audio

    groups: dict[str, list[Any]] = {}
    for c in clips:
        groups.setdefault(f"{c.dataset}:{c.group}", []).append(c)
    pieces, skipped = [], []
    rate0: int | None = None
    for key in sorted(groups):
        audio = []
        for c in sorted(groups[key], key=lambda c: str(c.path)):
            try:
                sig, rate = read_audio(c.path)
            except Exception as e:  # one unreadable file costs that render only
                skipped.append(f"{c.path}: {e}")
                continue
            rate0 = rate0 or rate
            if rate != rate0:
                skipped.append(f"{c.path}: {rate} Hz, the others {rate0} Hz")
                continue
            audio.append(sig if sig.ndim == 1 else sig.mean(axis=1))
        if audio and rate0 is not None:
            pieces.append(PieceAudio(key, audio, rate0))
    return pieces, skipped


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


def _hop_matches(engine: Engine, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(match vectors [S, F], silent [S]) of every hop of ``audio`` (rows of silent hops 0)."""
    records, matches = engine.analyze_with_matches(audio)
    silent = np.asarray([bool(r["silent"]) for r in records])
    out = np.zeros((len(records), engine.match_dims))
    out[~silent] = matches
    return out, silent


def _query_at(emb: np.ndarray, silent: np.ndarray, hops: int, window: int) -> np.ndarray | None:
    """The run-time query after ``hops`` hops: the last ``window`` sounding hops [k, D]."""
    sounding = emb[:hops][~silent[:hops]]
    return sounding[-window:] if len(sounding) else None


def evaluate_embedding(
    ck: Checkpoint, pieces: Sequence[PieceAudio], *,
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

    # -- match vectors of every render, through the engine
    if ck.embedding_head is None:
        raise ValueError(f"checkpoint {ck.id} has no embedding head")
    dims = engine.match_dims
    renders: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for p in wrap(list(pieces), "match vectors"):
        renders[p.piece] = [_hop_matches(engine, a) for a in p.renders]
    paired = sorted(k for k, v in renders.items() if len(v) >= 2)

    # -- retrieval: render 0 in the library, render 1 queried
    if len(paired) >= 2:
        lib = SequenceIndex([[renders[k][0][0][~renders[k][0][1]]] for k in paired], dims)
        by_t: dict[str, Any] = {}
        dists: dict[str, np.ndarray | None] = {}  # per piece, after the latest t
        for t in QUERY_SECONDS:
            hops = hops_for(t, engine.hop_s)
            ranks = []
            for i, k in enumerate(paired):
                emb, silent = renders[k][1]
                q = _query_at(emb, silent, hops, window)
                d = dists[k] = None if q is None else lib.distances(q)
                ranks.append(len(paired) if d is None else 1 + int(np.sum(d < d[i])))
            r = np.asarray(ranks)
            by_t[f"{t:g}"] = {"top1": float(np.mean(r == 1)), "map": float(np.mean(1.0 / r)),
                              "median_rank": float(np.median(r))}
        report.retrieval = {"pieces": len(paired), "window_s": reference.window_s,
                            "by_seconds": by_t}

        # -- known / unknown at the last t: the library keeps every other piece, so a query's
        # nearest known reference is the least of its distances at even positions.
        known = paired[0::2]
        nearest = {k: float(d[0::2].min()) if d is not None else MAX_DISTANCE
                   for k, d in dists.items()}
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
        nov = np.asarray([r[KEY_NOVELTY] for r in recs])
        curves.append((t, nov, bounds))
    if curves:
        # Two folds: each half of the streams picks the threshold the other half is scored at,
        # so every splice is scored once, by a threshold chosen without it.
        # One stream alone is both (scored once, not twice).
        halves = [curves[0::2], curves[1::2]]
        folds = ([(halves[0], halves[1]), (halves[1], halves[0])] if len(curves) >= 2
                 else [(curves, curves)])
        det = fa = splices = 0
        minutes = 0.0
        fold_thresholds = []
        for cal, test in folds:
            thr = _novelty_threshold(cal)
            d, f, m, n = _detect(test, thr)
            det, fa, minutes, splices = det + d, fa + f, minutes + m, splices + n
            fold_thresholds.append(thr)
        t0, n0, b0 = folds[0][1][0]
        thr_all = _novelty_threshold(curves)  # the one to start from: chosen on every stream
        det_all, fa_all, min_all, n_all = _detect(curves, thr_all)
        report.novelty = {
            "example": {"t": [float(x) for x in t0], "novelty": [float(x) for x in n0],
                        "splices": [float(x) for x in b0]},
            "streams": len(curves), "memory_s": novelty.memory_s, "recent_s": novelty.recent_s,
            "baseline_s": novelty.baseline_s,
            "threshold": thr_all, "fold_thresholds": fold_thresholds,
            "all_streams": {"detection_rate": det_all / n_all if n_all else None,
                            "false_alarms_per_min": fa_all / min_all if min_all else None},
            "test_splices": splices, "test_minutes": minutes,
            "detection_rate": det / splices if splices else None,
            "false_alarms_per_min": fa / minutes if minutes else None,
            "auc_hop": _novelty_auc(curves),
        }
    return report


def _alarms(nov: np.ndarray, thr: float) -> np.ndarray:
    """Hop indices where novelty rises to ``thr`` or above from below it (the first hop has
    nothing before it to rise from)."""
    above = nov >= thr
    return np.flatnonzero(above & ~np.concatenate([[True], above[:-1]]))


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
    """The threshold detecting the most splices of ``curves`` while false alarms stay at or
    below the limit per minute (the lowest such threshold on a tie)."""
    values = np.unique(np.concatenate([nov for _, nov, _ in curves]))
    best, best_det = float(values[-1]) + 1e-6, -1
    for thr in values[values > 0]:
        det, fa, minutes, _ = _detect(curves, float(thr))
        if minutes and fa / minutes <= MAX_FALSE_ALARMS_PER_MIN and det > best_det:
            best, best_det = float(thr), det
    return best


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


def report_markdown(r: EmbeddingReport, figures: dict[str, str]) -> list[str]:
    """The report's embedding section (markdown lines)."""
    def f(x: float | None, d: int = 3) -> str:
        return "–" if x is None else f"{x:.{d}f}"

    lines = ["## embedding: which piece, known or new, did it change", ""]
    ret = r.retrieval
    if ret:
        lines += [f"Piece retrieval: {ret['pieces']} pieces, render 0 of each in the library, "
                  f"render 1 queried after t seconds (query = the last "
                  f"{ret['window_s']:g} s of hops, slid along each reference).", "",
                  "| t [s] | top-1 | mAP | median rank |",
                  "| --- | --- | --- | --- |"]
        for t, m in ret["by_seconds"].items():
            lines.append(f"| {t} | {f(m['top1'])} | {f(m['map'])} | {m['median_rank']:g} |")
        ku = r.known_unknown
        lines += ["", f"Known / unknown ({ku['known_pieces']} pieces in the library, "
                      f"{ku['left_out_pieces']} left out, t = {QUERY_SECONDS[-1]:g} s): ROC AUC "
                      f"{f(ku['roc_auc'])}; threshold calibrated on half the pieces "
                      f"{f(ku['threshold_half'])} gives balanced accuracy "
                      f"{f(ku['test_balanced_accuracy'])} on the other half; calibrated on "
                      f"all: known_distance = {f(r.known_distance, 4)} (stored in the "
                      f"checkpoint). Median nearest distance: known "
                      f"{f(ku['median_distance_known'])}, left out "
                      f"{f(ku['median_distance_left_out'])}.", ""]
    else:
        lines += ["Piece retrieval: no piece has two renders in this data.", ""]
    nv = r.novelty
    if nv:
        lines += [f"Novelty at splices ({nv['streams']} streams of {SPLICE_CLIPS} clips; memory "
                  f"{nv['memory_s']:g} s, recent {nv['recent_s']:g} s, baseline "
                  f"{nv['baseline_s']:g} s): each half of the "
                  f"streams picks the threshold (the one detecting most splices with ≤ "
                  f"{MAX_FALSE_ALARMS_PER_MIN:g} false alarm per minute there: "
                  f"{' and '.join(f(t) for t in nv['fold_thresholds'])}) that the other half is "
                  f"scored at; together they detect {f(nv['detection_rate'])} of "
                  f"{nv['test_splices']} splices within {DETECT_S:g} s, with "
                  f"{f(nv['false_alarms_per_min'], 2)} false alarms per minute "
                  f"({nv['test_minutes']:.1f} min). Chosen on all streams the threshold is "
                  f"{f(nv['threshold'])}, which detects "
                  f"{f(nv['all_streams']['detection_rate'])} of them at "
                  f"{f(nv['all_streams']['false_alarms_per_min'], 2)} false alarms per minute "
                  f"(in-sample). Per-hop ROC AUC (hops within "
                  f"{DETECT_S:g} s after a splice vs the rest): {f(nv['auc_hop'])}.", ""]
    for key, path in figures.items():
        if key.startswith("embedding_"):
            lines += [f"![{key}]({path.rsplit('/', 1)[-1]})", ""]
    return lines


def report_figures(r: EmbeddingReport, out: Any) -> dict[str, str]:
    """PNGs: retrieval against query length; one test stream's novelty with its splices."""
    from pathlib import Path

    from streamtag.train import plots

    figures: dict[str, str] = {}
    if r.retrieval:
        secs = [float(t) for t in r.retrieval["by_seconds"]]
        path = Path(out) / "embedding_retrieval.png"
        plots.lines_png(secs, {k: [m[k] for m in r.retrieval["by_seconds"].values()]
                               for k in ("top1", "map")}, path,
                        "piece retrieval against seconds heard", "audio heard [s]", "score")
        figures["embedding_retrieval"] = str(path)
    if r.novelty:
        ex = r.novelty["example"]
        path = Path(out) / "embedding_novelty.png"
        plots.novelty_png(ex["t"], ex["novelty"], ex["splices"], r.novelty["threshold"], path)
        figures["embedding_novelty"] = str(path)
    return figures


__all__ = ["EmbeddingReport", "PieceAudio", "calibrate_threshold", "evaluate_embedding",
           "pieces_from_clips", "report_figures", "report_markdown", "roc_auc"]
