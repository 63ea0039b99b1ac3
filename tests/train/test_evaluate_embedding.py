"""Embedding evaluation: the metrics on answers known by construction, and the whole path
(engine → retrieval, known/unknown, novelty → report → checkpoint) on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamtag.checkpoint import load_checkpoint
from streamtag.model import EMOTION_HEAD
from streamtag.testing import EMBEDDING_HEAD, make_checkpoint
from streamtag.train.datasets import Clip
from streamtag.train.evaluate import evaluate
from streamtag.train.evaluate_embedding import (
    SPLICE_CLIPS,
    PieceAudio,
    _detect,
    _novelty_threshold,
    calibrate_threshold,
    evaluate_embedding,
    pieces_from_clips,
    roc_auc,
)

SR = 22050


def test_roc_auc_counts_ordered_pairs_and_ties():
    assert roc_auc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert roc_auc(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0
    assert roc_auc(np.array([0.1, 0.3]), np.array([0.2, 0.3])) == pytest.approx(0.625)
    assert roc_auc(np.array([]), np.array([0.2])) is None


def test_threshold_separates_known_from_unknown_distances():
    thr, acc = calibrate_threshold(np.array([0.1, 0.15, 0.2]), np.array([0.5, 0.6]))
    assert 0.2 < thr < 0.5 and acc == 1.0
    _, acc = calibrate_threshold(np.array([0.1, 0.6]), np.array([0.5, 0.2]))
    assert acc < 1.0


def _curve(splices: list[float], bumps: list[float], seconds: float = 60.0):
    """Novelty 0.05 everywhere with 0.6 for one hop at each bump time [s]."""
    t = np.arange(1, int(seconds / 0.5) + 1) * 0.5
    nov = np.full(len(t), 0.05)
    for b in bumps:
        nov[np.argmin(np.abs(t - b))] = 0.6
    return t, nov, np.asarray(splices)


def test_splice_detection_counts_hits_misses_and_false_alarms():
    # Splices at 10 and 20 s: the first answered 0.5 s later, the second 3 s too late, plus a
    # spurious bump at 40 s.
    curve = _curve([10.0, 20.0], [10.5, 23.0, 40.0])
    det, fa, minutes, splices = _detect([curve], 0.3)
    assert (det, fa, splices) == (1, 2, 2) and minutes == pytest.approx(1.0)
    # A threshold above every bump raises no alarm at all.
    assert _detect([curve], 0.7)[:2] == (0, 0)
    # Calibration keeps at most 1 false alarm per minute: catching the first splice here costs
    # 2, so the chosen threshold catches nothing; without the spurious bumps it catches it.
    assert _detect([curve], _novelty_threshold([curve]))[0] == 0
    clean = _curve([10.0], [10.5])
    assert _detect([clean], _novelty_threshold([clean]))[:2] == (1, 0)


def _tone_piece(f0: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * 2.01 * f0 * t)
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_pieces_group_renders_by_dataset_and_group(tmp_path: Path):
    clips = []
    for g, f0 in (("a", 220.0), ("b", 330.0)):
        for r in range(2):
            path = tmp_path / f"{g}-{r}.wav"
            sf.write(path, _tone_piece(f0, 1.0, r), SR)
            clips.append(Clip(path=path, dataset="corpus", split="validation", group=g,
                              instrument="violin"))
    clips.append(Clip(path=tmp_path / "missing.wav", dataset="corpus", split="validation",
                      group="c", instrument="violin"))
    pieces, skipped = pieces_from_clips(clips)
    assert [p.piece for p in pieces] == ["corpus:a", "corpus:b"]
    assert all(len(p.renders) == 2 and p.rate_hz == SR for p in pieces)
    assert len(skipped) == 1 and "missing.wav" in skipped[0]


def test_whole_embedding_evaluation_runs_through_the_engine(tmp_path: Path):
    """A tiny untrained model: the numbers are not meaningful, the path and ranges are."""
    ck = load_checkpoint(make_checkpoint(tmp_path / "emb.safetensors",
                                         heads=[EMOTION_HEAD, EMBEDDING_HEAD]))
    pieces = [PieceAudio(f"p{i}", [_tone_piece(110.0 * (1 + i), 6.0, s) for s in (0, 1)], SR)
              for i in range(SPLICE_CLIPS + 2)]
    report = evaluate_embedding(ck, pieces)
    ret = report.retrieval
    assert ret["pieces"] == len(pieces) and set(ret["by_seconds"]) == {"1", "2", "3", "4", "5"}
    for m in ret["by_seconds"].values():
        assert 0 <= m["top1"] <= 1 and 0 < m["map"] <= 1
    ku = report.known_unknown
    assert ku["known_pieces"] + ku["left_out_pieces"] == len(pieces)
    assert 0 <= ku["roc_auc"] <= 1 and 0 < report.known_distance <= 2
    nv = report.novelty
    # 10 + 2 clips: streams of 10 and 2, each scored at the threshold the other one picked
    assert nv["streams"] == 2 and nv["test_splices"] == 9 + 1
    assert len(nv["fold_thresholds"]) == 2 and nv["test_minutes"] == pytest.approx(72 / 60)
    assert 0 <= nv["all_streams"]["detection_rate"] <= 1 and nv["baseline_s"] == 3.0
    assert 0 <= nv["detection_rate"] <= 1 and len(nv["example"]["t"]) == 24
    json.dumps(report.to_dict(), allow_nan=False)


def test_evaluate_report_has_the_embedding_section(tmp_path: Path):
    ck = load_checkpoint(make_checkpoint(tmp_path / "emb.safetensors",
                                         heads=[EMOTION_HEAD, EMBEDDING_HEAD]))
    clips = []
    for i in range(4):
        for r in range(2):
            path = tmp_path / f"p{i}-{r}.wav"
            sf.write(path, _tone_piece(150.0 * (1 + i), 6.0, r), SR)
            clips.append(Clip(path=path, dataset="corpus", split="validation", group=f"p{i}",
                              valence=0.1 * i, arousal=-0.1 * i))
    report = evaluate(ck, clips, out_dir=tmp_path / "report", cost_repeats=5)
    assert report.embedding is not None and report.embedding["retrieval"]["pieces"] == 4
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Piece retrieval" in md and "Known / unknown" in md and "Novelty at splices" in md
    assert (tmp_path / "report" / "embedding_retrieval.png").stat().st_size > 1000
    assert (tmp_path / "report" / "embedding_novelty.png").stat().st_size > 1000
