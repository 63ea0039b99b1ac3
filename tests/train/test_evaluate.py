"""Evaluation: metrics with known answers, per hop / after 1 s / per clip, the report, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from streamtag.checkpoint import load_checkpoint
from streamtag.model import EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD, HeadSpec
from streamtag.train.cli import main as train_main
from streamtag.train.evaluate import (
    HeadData,
    accuracy,
    balanced_accuracy,
    ccc,
    confusion_matrix,
    evaluate,
    head_metrics,
    head_score,
    measure_step_cost,
    ordering,
    overall_score,
    pearson_r,
    quadrant_accuracy,
    rmse,
)
from streamtag.train.features import FeatureCache, HeadTarget, corpus_clips

INSTRUMENT = HeadTarget(INSTRUMENT_HEAD, "instrument")
EMOTION = HeadTarget(EMOTION_HEAD, "emotion")
TIMBRE = HeadTarget(TIMBRE_HEAD, "timbre")


# -- elementary metrics ---------------------------------------------------------------------------

def test_classification_metrics_on_a_known_case() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1])
    y_pred = np.array([0, 0, 0, 0, 0, 1])
    m = confusion_matrix(y_true, y_pred, 3)
    assert m.tolist() == [[4, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert accuracy(y_true, y_pred) == pytest.approx(5 / 6)
    assert balanced_accuracy(y_true, y_pred, 3) == pytest.approx((1.0 + 0.5) / 2)  # class 2 absent
    assert accuracy(np.array([]), np.array([])) is None


def test_regression_metrics_on_known_cases() -> None:
    x = np.array([0.1, 0.4, -0.3, 0.8])
    assert rmse(x, x) == 0 and ccc(x, x) == pytest.approx(1.0)
    assert pearson_r(x, 2 * x + 1) == pytest.approx(1.0)
    assert ccc(x, 2 * x + 1) < 0.5  # correlated but not concordant
    assert pearson_r(x, np.ones(4)) is None  # undefined, not NaN
    assert rmse(np.zeros(2), np.array([3.0, 4.0])) == pytest.approx(np.sqrt(12.5))


def test_quadrant_accuracy_follows_thayer() -> None:
    true = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
    assert quadrant_accuracy(true, true * 0.1) == 1.0
    assert quadrant_accuracy(true, -true) == 0.0


# -- per-head metrics -----------------------------------------------------------------------------

def _one_hot(idx: list[int], k: int = 8) -> np.ndarray:
    return np.eye(k)[idx]


def test_a_perfect_classifier_scores_one_everywhere() -> None:
    data = HeadData(INSTRUMENT)
    for cls in (0, 3, 7):
        data.add(_one_hot([cls] * 4), np.full(4, cls), np.ones(4))
    m = head_metrics(data, hop_s=0.5)
    for scope in ("per_hop", "per_hop_after_1s", "per_clip"):
        assert m[scope]["accuracy"] == 1.0 and m[scope]["balanced_accuracy"] == 1.0
    assert m["per_hop"]["n"] == 12 and m["per_hop_after_1s"]["n"] == 6 and m["per_clip"]["n"] == 3
    assert np.trace(np.asarray(m["per_hop"]["confusion"])) == 12
    assert head_score(m) == 1.0


def test_after_the_first_second_drops_the_first_two_half_second_hops() -> None:
    data = HeadData(INSTRUMENT)
    # Wrong for the first second (hops ending at 0.5 s and 1.0 s), right afterwards.
    data.add(_one_hot([1, 1, 2, 2, 2]), np.full(5, 2), np.ones(5))
    m = head_metrics(data, hop_s=0.5)
    assert m["per_hop"]["accuracy"] == pytest.approx(3 / 5)
    assert m["per_hop_after_1s"]["accuracy"] == 1.0
    assert m["per_clip"]["accuracy"] == 1.0  # the mean of the probabilities favours class 2


def test_regression_is_also_scored_after_three_seconds() -> None:
    data = HeadData(EMOTION)
    truth = np.tile([[0.5, 0.5], [-0.5, -0.5]], (4, 1))  # 8 hops = 4 s
    pred = truth.copy()
    pred[:6] = -truth[:6]  # wrong quadrant until 3 s, right in the last two hops
    data.add(pred, truth, np.ones((8, 2)))
    m = head_metrics(data, hop_s=0.5)
    assert m["per_hop"]["quadrant_accuracy"] == 0.25
    late = m["per_hop_after_3s"]
    assert late["n_quadrant"] == 2 and late["quadrant_accuracy"] == 1.0
    assert late["outputs"]["valence"]["pearson_r"] == pytest.approx(1.0)


def test_emotion_is_broken_down_by_texture() -> None:
    data = HeadData(EMOTION)
    hops = 8  # 4 s: the last two hops are after 3 s
    for sign in (1, -1):
        truth = np.tile([[0.5 * sign, 0.4], [0.5 * sign, -0.4]], (hops // 2, 1))
        data.add(truth.copy(), truth, np.ones((hops, 2)), "accompanied")
        # The solo line is always rated happy: right for positive valence, wrong for negative.
        data.add(np.tile([0.5, 0.4], (hops, 1)), truth, np.ones((hops, 2)), "solo")
    data.add(np.zeros((hops, 2)), np.zeros((hops, 2)), np.ones((hops, 2)), None)
    m = head_metrics(data, hop_s=0.5)
    tx = m["textures"]
    assert set(tx) == {"solo", "accompanied"}
    assert tx["accompanied"]["quadrants_after_3s"] == 1.0 and tx["accompanied"]["clips"] == 2
    assert tx["solo"]["quadrants_after_3s"] == pytest.approx(0.25)
    assert tx["solo"]["valence_r_after_3s"] is None  # a constant output has no r
    assert tx["solo"]["mean_valence_by_true_quadrant"]["3"] == pytest.approx(0.5)
    assert tx["accompanied"]["mean_valence_by_true_quadrant"]["3"] == pytest.approx(-0.5)


def test_quadrants_on_clear_clips_leave_out_clips_on_an_axis() -> None:
    data = HeadData(EMOTION)
    hops = 8
    clear = np.tile([0.6, 0.4], (hops, 1))
    border = np.tile([0.6, 0.1], (hops, 1))  # arousal 0.1 from zero: not a clear clip
    data.add(clear.copy(), clear, np.ones((hops, 2)), "solo")
    data.add(-border, border, np.ones((hops, 2)), "solo")  # its quadrant is wrong
    data.add(np.tile([-0.6, 0.4], (hops, 1)), -clear, np.ones((hops, 2)), "solo")  # wrong too
    solo = head_metrics(data, hop_s=0.5)["textures"]["solo"]
    assert solo["quadrants_after_3s"] == pytest.approx(1 / 3)
    assert solo["clear_clips"] == 2
    assert solo["quadrants_clear_after_3s"] == pytest.approx(1 / 2)


def test_per_clip_is_the_mean_of_the_hops_not_a_vote() -> None:
    data = HeadData(INSTRUMENT)
    probs = np.zeros((3, 8))
    probs[:2, 0], probs[:2, 1] = 0.4, 0.35  # two hops lean to 0 by a little
    probs[2, 1] = 0.95  # one hop is sure of 1
    data.add(probs, np.full(3, 1), np.ones(3))
    m = head_metrics(data, hop_s=0.5)
    assert m["per_hop"]["accuracy"] == pytest.approx(1 / 3)
    assert m["per_clip"]["accuracy"] == 1.0


def test_regression_metrics_per_output_with_masks_and_quadrants() -> None:
    data = HeadData(EMOTION)
    truth = np.array([[0.5, 0.5], [-0.5, 0.2], [-0.4, -0.6], [0.3, -0.2]])
    mask = np.ones((4, 2))
    mask[3, 1] = 0  # arousal unlabelled on the last hop
    data.add(truth.copy(), truth, mask)
    data.add(truth * 0 + 0.1, truth, np.ones((4, 2)))
    m = head_metrics(data, hop_s=0.5)
    assert m["per_hop"]["outputs"]["valence"]["n"] == 8
    assert m["per_hop"]["outputs"]["arousal"]["n"] == 7
    assert m["per_hop"]["n_quadrant"] == 7
    assert m["per_hop"]["quadrant_accuracy"] == pytest.approx((3 + 1) / 7)
    perfect = HeadData(TIMBRE)
    t = np.random.default_rng(0).random((5, 7))
    perfect.add(t, t, np.ones((5, 7)))
    pm = head_metrics(perfect, hop_s=0.5)
    assert pm["per_hop"]["mean_mae"] == 0 and pm["per_clip"]["mean_mae"] == 0
    assert all(o["ccc"] == pytest.approx(1) for o in pm["per_hop"]["outputs"].values())
    assert head_score(pm, "l1") == 1.0


def test_ordering_counts_clearly_ranked_pairs_the_outputs_keep_in_order() -> None:
    true = np.array([-0.8, -0.5, 0.4, 0.7])
    # Pairs at least 0.5 apart: (-0.8, 0.4), (-0.8, 0.7), (-0.5, 0.4), (-0.5, 0.7): 4 pairs;
    # (-0.8, -0.5) and (0.4, 0.7) are too close to rank.
    assert ordering(true, true) == 1.0
    assert ordering(-true, true) == 0.0
    assert ordering(np.array([0.0, 0.5, 0.1, 0.6]), true) == pytest.approx(3 / 4)
    assert ordering(np.zeros(4), true) == 0.5  # ties count half
    assert ordering(true, np.array([0.1, 0.2, 0.3, 0.4])) is None
    data = HeadData(EMOTION)
    for v in true:  # one clip per label, outputs in order for valence, reversed for arousal
        data.add(np.array([[v, -v]] * 3), np.array([[v, v]] * 3), np.ones((3, 2)))
    per_clip = head_metrics(data, hop_s=0.5)["per_clip"]["outputs"]
    assert per_clip["valence"]["ordering"] == 1.0 and per_clip["arousal"]["ordering"] == 0.0


def test_multilabel_and_embedding_heads_are_scored() -> None:
    tags = HeadTarget(HeadSpec("tags", "multilabel", ("a", "b")), "tags")
    d = HeadData(tags)
    d.add(np.array([[0.9, 0.1], [0.8, 0.3]]), np.array([[1.0, 0.0], [1.0, 0.0]]), np.ones(2))
    assert head_metrics(d, 0.5)["per_hop"]["accuracy"] == 1.0
    emb = HeadTarget(HeadSpec("e", "embedding", ("d0", "d1")), "instrument")
    d = HeadData(emb)
    for cls, v in ((0, [1, 0]), (0, [0.9, 0.1]), (1, [0, 1]), (1, [0.1, 0.9])):
        d.add(np.array([v, v], float), np.full(2, cls), np.ones(2))
    assert head_metrics(d, 0.5)["per_clip"]["centroid_accuracy"] == 1.0


def test_overall_score_is_the_weighted_mean_of_available_head_scores() -> None:
    assert overall_score({"a": 1.0, "b": 0.0, "c": None}, {"a": 3.0}) == pytest.approx(0.75)
    assert overall_score({"a": None}, {}) is None


def test_step_cost_is_measured(tiny_default) -> None:
    before = torch.get_num_threads()
    cost = measure_step_cost(tiny_default.model, repeats=20, warmup=2)
    assert 0 < cost["mean_ms"] <= cost["p99_ms"] and cost["repeats"] == 20
    # One thread, as the daemon runs the model; the caller's setting is left as it was.
    assert cost["threads"] == 1 and torch.get_num_threads() == before


# -- the report -----------------------------------------------------------------------------------

def test_report_through_the_engine_equals_the_windows_path_and_has_every_part(
        trained_run: Path, tone_corpus: Path, feature_cache: Path, tmp_path: Path) -> None:
    ck = load_checkpoint(trained_run / "best.safetensors")
    clips, _ = corpus_clips(tone_corpus)
    out = tmp_path / "report"
    by_engine = evaluate(ck, clips, method="engine", out_dir=out, cost_repeats=20)
    by_windows = evaluate(ck, clips, method="windows", cache=FeatureCache(feature_cache,
                                                                          ck.frontend),
                          cost_repeats=5)
    assert by_engine.clips == by_windows.clips == 4  # the validation split
    e, w = by_engine.heads, by_windows.heads
    assert set(e) == {"emotion", "instrument", "timbre"}
    assert e["instrument"]["per_hop"]["confusion"] == w["instrument"]["per_hop"]["confusion"]
    for head in ("emotion", "timbre"):
        for name, o in e[head]["per_hop"]["outputs"].items():
            assert o["mae"] == pytest.approx(w[head]["per_hop"]["outputs"][name]["mae"],
                                             abs=1e-5)
    # The toy is learnt: low tones are clarinet, high tones flute, on every clip.
    assert e["instrument"]["per_clip"]["accuracy"] == 1.0
    md = (out / "report.md").read_text()
    for part in ("## instrument", "per hop after 1 s", "balanced accuracy", "## emotion",
                 "Quadrant accuracy", "## timbre", "Mean MAE", "## Cost per hop", "p99",
                 "`Engine.analyze`", "instrument_confusion.png", "emotion_scatter.png"):
        assert part in md, part
    for png in ("instrument_confusion.png", "emotion_scatter.png", "timbre_mae.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "report.json").read_text())
    assert data["method"] == "engine" and data["cost"]["p99_ms"] > 0


def test_descriptor_labels_are_scored_per_hop_on_both_paths(
        trained_run: Path, tone_corpus: Path, feature_cache: Path) -> None:
    """Clips labelled by the descriptors are scored against each hop's own descriptors through
    the engine too, as the trainer validates them (not against the clip's one label)."""
    ck = load_checkpoint(trained_run / "best.safetensors")
    clips, _ = corpus_clips(tone_corpus)
    per_hop = [replace(c, timbre_per_hop=True) for c in clips]
    cache = FeatureCache(feature_cache, ck.frontend)
    by_engine = evaluate(ck, per_hop, method="engine", cost_repeats=5)
    by_windows = evaluate(ck, per_hop, method="windows", cache=cache, cost_repeats=5)
    clip_labels = evaluate(ck, clips, method="engine", cost_repeats=5)
    e, w, c = (r.heads["timbre"]["per_hop"]["outputs"]
               for r in (by_engine, by_windows, clip_labels))
    for name in e:
        assert e[name]["mae"] == pytest.approx(w[name]["mae"], abs=1e-5), name
    # the tone corpus's hand-made labels are not what the descriptors measure
    assert any(abs(e[n]["mae"] - c[n]["mae"]) > 0.01 for n in e)


def test_evaluate_command(trained_run: Path, tone_corpus: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    ck = str(trained_run / "best.safetensors")
    out = tmp_path / "r"
    assert train_main(["evaluate", "--checkpoint", ck, "--corpus", str(tone_corpus),
                       "--out", str(out), "--no-plots"]) == 0
    assert (out / "report.md").is_file() and not list(out.glob("*.png"))
    assert train_main(["evaluate", "--checkpoint", ck, "--out", str(out)]) == 2
    assert train_main(["evaluate", "--checkpoint", ck, "--dataset", "nosuch:/x",
                       "--out", str(out)]) == 2
    assert "unknown kind 'nosuch'" in capsys.readouterr().err
    assert train_main(["evaluate", "--checkpoint", ck, "--dataset", f"medley:{tmp_path}/no",
                       "--out", str(out)]) == 2
    assert train_main(["evaluate", "--checkpoint", str(tmp_path / "missing.safetensors"),
                       "--corpus", str(tone_corpus), "--out", str(out)]) == 2
    assert train_main(["evaluate", "--checkpoint", ck, "--corpus", str(tone_corpus),
                       "--split", "test", "--out", str(out)]) == 1


def test_average_precision_and_f1_on_known_rankings():
    from streamtag.train.evaluate import average_precision, f1_score

    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0])) == 1.0
    # Positives ranked 1st and 3rd: (1/1 + 2/3) / 2.
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 0, 1])) == \
        pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.5, 0.4]), np.array([0, 0])) is None
    assert f1_score(np.array([1, 1, 0]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert f1_score(np.array([0, 0]), np.array([0, 0])) is None
