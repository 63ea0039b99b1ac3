"""The trainer: losses, masks, state carry, features, learning, resume, checkpoints, torchrun."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from torch import nn

from streamtag.checkpoint import load_checkpoint
from streamtag.config import parse_dataclass
from streamtag.engine import Engine, hop_windows
from streamtag.errors import ConfigError
from streamtag.frontend import DEFAULT_FRONTEND, MelFrontend
from streamtag.model import EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD, HeadSpec, build_model
from streamtag.testing import TINY_OVERRIDES
from streamtag.train.average import WeightAverage
from streamtag.train.batches import collate
from streamtag.train.cli import main as train_main
from streamtag.train.config import TrainConfig, load_train_config, train_config_from_dict
from streamtag.train.datasets import Clip
from streamtag.train.features import (
    FeatureCache,
    HeadTarget,
    corpus_clips,
    encode_labels,
    source_clips,
)
from streamtag.train.losses import (
    TrainHead,
    batch_hard_pairs,
    batch_hard_triplet_loss,
    class_balance_weights,
    head_loss_value,
    masked_bce,
    masked_cross_entropy,
    masked_regression_loss,
    multitask_loss,
)
from streamtag.train.specaugment import spec_augment
from streamtag.train.statistics import band_statistics
from streamtag.train.step import SequenceStep, train_batch
from streamtag.train.trainer import train

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "train" / "tiny.yaml"

HEADS = [EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD]
TARGETS = {"emotion": "emotion", "instrument": "instrument", "timbre": "timbre"}


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("default", HEADS, **TINY_OVERRIDES["default"])


def train_heads(model, losses=None) -> list[TrainHead]:
    losses = losses or {"emotion": "mse", "instrument": "ce", "timbre": "l1"}
    return [TrainHead(HeadTarget(s, TARGETS[s.name]), losses[s.name]) for s in model.heads]


# -- losses ---------------------------------------------------------------------------------------

def test_a_head_without_labels_in_the_batch_contributes_zero_and_gets_zero_gradient() -> None:
    model = tiny_model()
    heads = train_heads(model)
    b, s = 2, 3
    windows = torch.randn(b, s, 76, 50)
    out, _ = model.forward_sequence(windows, activate=False)
    targets = {"emotion": torch.rand(b, s, 2) * 2 - 1,
               "instrument": torch.zeros(b, s, dtype=torch.long), "timbre": torch.rand(b, s, 7)}
    masks = {"emotion": torch.ones(b, s, 2), "instrument": torch.zeros(b, s),
             "timbre": torch.zeros(b, s, 7)}
    total, parts = multitask_loss(out, targets, masks, heads)
    assert parts["instrument"].item() == 0.0 and parts["timbre"].item() == 0.0
    assert parts["emotion"].item() > 0
    total.backward()
    for name in ("instrument", "timbre"):
        layer = model.head_layers[name]
        assert layer.weight.grad is not None and torch.count_nonzero(layer.weight.grad) == 0
    assert torch.count_nonzero(model.head_layers["emotion"].weight.grad) > 0


def test_mse_and_l1_average_over_labelled_entries_only() -> None:
    pred = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    target = torch.tensor([[1.0, 100.0], [0.0, 3.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert masked_regression_loss(pred, target, mask, "mse").item() == pytest.approx((1 + 4) / 3)
    assert masked_regression_loss(pred, target, mask, "l1").item() == pytest.approx((1 + 2) / 3)


def test_ccc_loss_is_zero_for_identical_sequences_and_two_for_mirrored_ones() -> None:
    x = torch.linspace(-0.9, 0.9, 20)[:, None].repeat(1, 2)
    ones = torch.ones_like(x)
    assert masked_regression_loss(x, x.clone(), ones, "ccc").item() == pytest.approx(0, abs=1e-6)
    assert masked_regression_loss(-x, x, ones, "ccc").item() == pytest.approx(2, abs=1e-6)
    # A shifted copy correlates perfectly but does not agree: CCC < 1, loss > 0.
    assert masked_regression_loss(x + 0.5, x, ones, "ccc").item() > 0.1


def test_class_balance_weights_equalise_the_classes_total_weight() -> None:
    counts = np.array([10, 30, 0, 60])
    w = class_balance_weights(counts)
    assert w[2] == 0
    totals = (w * counts)[counts > 0]
    assert np.allclose(totals, totals[0]) and (w * counts).sum() == pytest.approx(counts.sum())
    assert np.allclose(class_balance_weights([5, 5, 5]), 1.0)


def test_weighted_cross_entropy_is_the_weighted_mean_over_labelled_hops() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    target = torch.tensor([0, 1, 0])
    mask = torch.tensor([1.0, 1.0, 0.0])
    w = torch.tensor([1.0, 3.0])
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    expected = (ce[0] * 1 + ce[1] * 3) / 4
    assert masked_cross_entropy(logits, target, mask, w).item() == pytest.approx(expected.item())
    assert masked_cross_entropy(logits, target, torch.zeros(3), w).item() == 0.0


def test_bce_ignores_unlabelled_hops() -> None:
    logits = torch.tensor([[5.0, -5.0], [0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert masked_bce(logits, target, torch.tensor([1.0, 0.0])).item() < 0.01
    assert masked_bce(logits, target, torch.tensor([0.0, 1.0])).item() == pytest.approx(
        np.log(2), rel=1e-5)


def _unit(v: list[float]) -> list[float]:
    a = np.asarray(v, float)
    return (a / np.linalg.norm(a)).tolist()


def test_triplet_loss_is_zero_when_classes_are_well_separated_and_positive_otherwise() -> None:
    sep = torch.tensor([_unit([1, 0.01]), _unit([1, -0.01]), _unit([-1, 0.01]),
                        _unit([-1, -0.01])])
    labels = torch.tensor([0, 0, 1, 1])
    ones = torch.ones(4)
    assert batch_hard_triplet_loss(sep, labels, ones, margin=0.2).item() == 0.0
    mixed = torch.tensor([_unit([1, 0]), _unit([-1, 0]), _unit([1, 0.1]), _unit([-1, 0.1])])
    assert batch_hard_triplet_loss(mixed, labels, ones, margin=0.2).item() > 0.5
    # Masked-out hops take no part: with only one labelled hop there is no triplet.
    assert batch_hard_triplet_loss(mixed, labels, torch.tensor([1.0, 0, 0, 0]), 0.2).item() == 0


def test_batch_hard_mining_picks_the_farthest_positive_and_the_nearest_negative() -> None:
    # 1-D points: class 0 at 0, 1, 5; class 1 at 2, 9.
    x = torch.tensor([[0.0], [1.0], [5.0], [2.0], [9.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    d = torch.cdist(x, x)
    pos, neg, valid = batch_hard_pairs(d, labels)
    assert valid.all()
    assert pos.tolist() == [2, 2, 0, 4, 3]  # farthest same-class point
    assert neg.tolist() == [3, 3, 3, 1, 2]  # nearest other-class point


# -- truncated BPTT -------------------------------------------------------------------------------

class Recorder(torch.nn.Module):
    """Wraps SequenceStep and records the state each segment starts from."""

    def __init__(self, step: SequenceStep) -> None:
        super().__init__()
        self.step = step
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.outputs: list[dict[str, torch.Tensor]] = []

    def forward(self, windows, h, c):
        out, h2, c2 = self.step(windows, h, c)
        self.calls.append((h, c, h2, c2))
        self.outputs.append({k: v.detach() for k, v in out.items()})
        return out, h2, c2


def _batch(model, n_clips: int, hops: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    feats = []
    from streamtag.train.features import ClipFeatures

    heads = train_heads(model)
    for i in range(n_clips):
        windows = rng.standard_normal((hops, 76, 50)).astype(np.float32)
        clip = Clip(Path(f"x{i}.wav"), "t", "train", f"g{i}", instrument="violin",
                    valence=0.1, arousal=-0.2)
        f = ClipFeatures(clip, windows.reshape(-1, 76), windows)
        for h in heads:
            f.targets[h.name], f.masks[h.name] = encode_labels(clip, h.target, hops, 0.5)
        feats.append(f)
    return collate(feats, heads, np.zeros(76, np.float32)), heads


def test_state_is_carried_detached_between_segments_and_reset_between_recordings() -> None:
    model = tiny_model()
    model.eval()  # no dropout, so outputs can be compared with one whole-sequence pass
    rec = Recorder(SequenceStep(model))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # steps happen but change nothing
    batch, heads = _batch(model, n_clips=2, hops=7)
    results = train_batch(rec, model, opt, batch, heads, segment_hops=3)
    assert [r.stepped for r in results] == [True, True, True]  # 3 + 3 + 1 hops
    first_h, first_c = rec.calls[0][0], rec.calls[0][1]
    assert torch.count_nonzero(first_h) == 0 and torch.count_nonzero(first_c) == 0
    for prev, cur in zip(rec.calls, rec.calls[1:], strict=False):
        assert torch.equal(cur[0], prev[2].detach()) and torch.equal(cur[1], prev[3].detach())
        assert cur[0].grad_fn is None and not cur[0].requires_grad  # detached: BPTT truncated
        assert prev[2].grad_fn is not None
    carried = {k: torch.cat([o[k] for o in rec.outputs], dim=1) for k in rec.outputs[0]}
    with torch.no_grad():
        whole, _ = model.forward_sequence(batch.windows, activate=False)
    for k in whole:
        torch.testing.assert_close(carried[k], whole[k], rtol=1e-5, atol=1e-6)
    # The next batch (other recordings) starts again from zeros.
    batch2, _ = _batch(model, n_clips=2, hops=4, seed=1)
    rec.calls.clear()
    train_batch(rec, model, opt, batch2, heads, segment_hops=3)
    assert torch.count_nonzero(rec.calls[0][0]) == 0


def test_a_segment_with_no_label_anywhere_only_advances_the_state() -> None:
    model = tiny_model()
    batch, heads = _batch(model, n_clips=1, hops=4)
    for m in batch.masks.values():
        m[:, :2] = 0  # first segment unlabelled
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    rec = Recorder(SequenceStep(model))
    results = train_batch(rec, model, opt, batch, heads, segment_hops=2)
    assert [r.stepped for r in results] == [False, True]
    assert len(rec.calls) == 1 and torch.count_nonzero(rec.calls[0][0]) > 0  # state advanced
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- labels and features --------------------------------------------------------------------------

def test_static_labels_repeat_on_every_hop_and_missing_heads_are_masked() -> None:
    clip = Clip(Path("a.wav"), "t", "train", "g", instrument="flute")
    t, m = encode_labels(clip, HeadTarget(INSTRUMENT_HEAD, "instrument"), 3, 0.5)
    assert t.tolist() == [3, 3, 3] and m.tolist() == [1, 1, 1]
    t, m = encode_labels(clip, HeadTarget(EMOTION_HEAD, "emotion"), 3, 0.5)
    assert not m.any()
    unknown = Clip(Path("a.wav"), "t", "train", "g", instrument="banjo")
    assert not encode_labels(unknown, HeadTarget(INSTRUMENT_HEAD, "instrument"), 3, 0.5)[1].any()


def test_dynamic_emotion_labels_go_to_the_hop_ending_at_their_time() -> None:
    clip = Clip(Path("a.wav"), "t", "train", "g", valence=0.9, arousal=0.9,
                dynamic=((0.5, 0.1, -0.1), (1.0, 0.2, -0.2), (2.0, 0.4, -0.4), (9.0, 1, 1)))
    t, m = encode_labels(clip, HeadTarget(EMOTION_HEAD, "emotion"), 5, 0.5)
    assert m[:, 0].tolist() == [1, 1, 0, 1, 0]  # hop 2 (ends 1.5 s) and hop 4 have no label
    assert t[[0, 1, 3], 0].tolist() == pytest.approx([0.1, 0.2, 0.4])
    assert t[[0, 1, 3], 1].tolist() == pytest.approx([-0.1, -0.2, -0.4])
    assert t[2].tolist() == [0, 0]  # masked hops carry zeros, not the static label


def test_cached_windows_are_exactly_the_engines_windows(tmp_path: Path) -> None:
    audio = np.random.default_rng(0).standard_normal(44100).astype(np.float32) * 0.1
    wav = tmp_path / "a.wav"
    sf.write(wav, audio, 44100, subtype="FLOAT")
    cache = FeatureCache(tmp_path / "cache", DEFAULT_FRONTEND)
    mel = cache.mel(wav)
    assert cache.has(wav) and np.array_equal(np.load(cache.path_for(wav)), mel)
    fe = MelFrontend(DEFAULT_FRONTEND, 44100, fast_lane=False)
    expected = fe.process_offline(audio).features
    assert np.array_equal(mel, expected)
    arch = build_model("default", HEADS).arch
    assert hop_windows(mel, arch, fe.silence_frame()).shape == (2, 76, 50)


def test_feature_cache_is_reused_until_the_file_changes(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(22050, np.float32), 22050)
    cache = FeatureCache(tmp_path / "cache", DEFAULT_FRONTEND)
    calls = []
    real = cache.compute
    monkeypatch.setattr(cache, "compute", lambda p: calls.append(p) or real(p))
    cache.mel(wav)
    cache.mel(wav)
    assert len(calls) == 1
    st = wav.stat()
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    cache.mel(wav)
    assert len(calls) == 2
    assert not list(cache.dir.glob("*.tmp"))


def test_input_statistics_are_per_band_over_the_training_windows() -> None:
    from streamtag.train.features import ClipFeatures

    w = np.zeros((2, 3, 4), np.float32)
    w[:, 0] = 5.0
    w[:, 1] = np.array([1.0, -1.0, 1.0, -1.0])
    clip = Clip(Path("a.wav"), "t", "train", "g", instrument="flute")
    mean, std = band_statistics([ClipFeatures(clip, w.reshape(-1, 3), w)])
    assert mean.tolist() == pytest.approx([5.0, 0.0, 0.0])
    assert std.tolist() == pytest.approx([1.0, 1.0, 1.0])  # a constant band gets std 1


def test_pitch_class_rows_share_one_mean_and_std() -> None:
    from streamtag.train.features import ClipFeatures

    w = np.zeros((2, 4, 4), np.float32)
    w[:, 0] = 5.0
    w[:, 2] = 1.0  # pitch class rows: 1.0 and 3.0 → pooled mean 2, std 1
    w[:, 3] = 3.0
    clip = Clip(Path("a.wav"), "t", "train", "g", instrument="flute")
    mean, std = band_statistics([ClipFeatures(clip, w.reshape(-1, 4), w)], pooled_from=2)
    assert mean.tolist() == pytest.approx([5.0, 0.0, 2.0, 2.0])
    assert std.tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0])


def test_frequency_masks_stay_on_the_mel_bands() -> None:
    class Cfg:
        time_masks, time_mask_frames, freq_masks, freq_mask_bands = 0, 0, 4, 6

    x = torch.randn(8, 3, 16, 20)
    a = spec_augment(x, torch.full((16,), 7.0), Cfg, torch.Generator().manual_seed(1), bands=10)
    assert (a[..., :10, :] != x[..., :10, :]).any()
    assert torch.equal(a[..., 10:, :], x[..., 10:, :])


def test_spec_augment_masks_with_the_band_mean_and_is_reproducible() -> None:
    class Cfg:
        time_masks, time_mask_frames, freq_masks, freq_mask_bands = 1, 5, 1, 4

    x = torch.randn(2, 3, 16, 20)
    fill = torch.full((16,), 7.0)
    a = spec_augment(x, fill, Cfg, torch.Generator().manual_seed(1))
    b = spec_augment(x, fill, Cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    changed = a != x
    assert torch.all(a[changed] == 7.0) and changed.any()
    assert changed.float().mean() < 0.6


def test_corpus_manifest_lines_become_clips(tone_corpus: Path) -> None:
    clips, skipped = corpus_clips(tone_corpus)
    assert not skipped and len(clips) == 12
    c = clips[0]
    assert c.dataset == "corpus" and c.path.is_file() and c.instrument in ("clarinet", "flute")
    assert c.timbre is not None and c.valence is not None


def test_an_extra_corpus_trains_beside_the_corpus_and_keeps_its_pieces_apart(
        tone_corpus: Path, extra_tone_corpus: Path, tmp_path: Path) -> None:
    # A second build (other seed, training clips only) names its groups as the first does.
    extra = extra_tone_corpus
    alone, _ = source_clips(str(tone_corpus), [], 0.1)
    both, hashes = source_clips(str(tone_corpus), [], 0.1, [str(extra)])
    added = both[len(alone):]
    assert both[:len(alone)] == alone and len(added) == 4
    assert {c.split for c in added} == {"train"}  # no groups moved: the corpus has validation
    assert [c.split for c in both if c.split == "validation"] == \
        [c.split for c in alone if c.split == "validation"]
    names = {c.group for c in alone}
    assert all(c.group.startswith("+1/") and c.group[3:] in names for c in added)
    assert set(hashes) == {"corpus_manifest_sha256", "corpus_manifest_sha256+1"}
    with pytest.raises(ConfigError, match=r"data.extra_corpora\[0\]: no manifest.jsonl"):
        train_config_from_dict({"data": {"corpus": str(tone_corpus),
                                         "extra_corpora": [str(tmp_path / "none")]}})


def test_a_run_trains_on_its_extra_corpus(make_config, extra_tone_corpus: Path,
                                          tmp_path: Path) -> None:
    cfg = make_config(f"data.extra_corpora=['{extra_tone_corpus}']", "train.epochs=1")
    ck = load_checkpoint(train(cfg, tmp_path / "run").best_checkpoint)
    assert ck.provenance["clips"]["train"] == 8 + 4
    assert ck.provenance["clips"]["validation"] == 4
    assert "corpus_manifest_sha256+1" in ck.provenance["data"]


# -- training runs --------------------------------------------------------------------------------

def test_training_learns_the_toy_and_writes_a_checkpoint_the_engine_runs(trained_run: Path,
                                                                         tone_corpus: Path
                                                                         ) -> None:
    history = json.loads((trained_run / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 9))
    first, last = history[0], history[-1]
    assert last["train"]["loss"] < 0.7 * first["train"]["loss"]
    assert last["validation"]["loss"] < first["validation"]["loss"]
    best = [h for h in history if h["best"]][-1]
    assert best["validation"]["metrics"]["instrument"]["per_clip"]["accuracy"] == 1.0
    ck = load_checkpoint(trained_run / "best.safetensors")
    prov = ck.provenance
    assert prov["kind"] == "trained" and prov["epochs"] == best["epoch"]
    assert len(prov["data"]["corpus_manifest_sha256"]) == 64
    assert prov["config"]["train"]["epochs"] == 8 and prov["seconds"] > 0
    assert "commit" in (prov["git"] or {"commit": None})
    assert ck.metrics["validation"]["score"] == pytest.approx(best["validation"]["score"])
    assert torch.count_nonzero(ck.model.input_mean) > 0  # statistics were set and stored
    wav = tone_corpus / "audio" / "validation" / "val-flute-0.wav"
    audio, rate = sf.read(wav, dtype="float32")
    records = Engine(ck, input_rate_hz=rate).analyze(audio)
    assert len(records) == 4 and records[-1]["instrument"]["top"] == "flute"
    assert (trained_run / "plots" / "loss.png").is_file()
    assert (trained_run / "plots" / "instrument_confusion.png").is_file()


def test_resume_continues_exactly(make_config, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(make_config(), straight)
    train(make_config("train.epochs=1"), split)
    train(make_config(), split, resume=True)
    a = torch.load(straight / "last.train.pt", weights_only=True)
    b = torch.load(split / "last.train.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["optimizer"]["state"][0]["exp_avg"].equal(b["optimizer"]["state"][0]["exp_avg"])
    assert load_checkpoint(straight / "best.safetensors").id == \
        load_checkpoint(split / "best.safetensors").id
    hist = json.loads((split / "metrics.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]


def test_weight_average_follows_the_model_at_its_rate() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    avg = WeightAverage(model, decay=0.5)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(4, 3))  # moves the running statistics, counts one batch
    avg.update(model)
    d = avg.rate(1)
    assert d == pytest.approx(2 / 11)  # early updates follow fast (decay 0.5 not reached)
    now = model.state_dict()
    for k, v in avg.model.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, d * start[k] + (1 - d) * now[k]), k
        else:  # num_batches_tracked is copied, not averaged
            assert torch.equal(v, now[k]), k
    assert avg.rate(1000) == 0.5
    assert not any(p.requires_grad for p in avg.model.parameters())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_weight_average_is_what_the_run_validates_saves_and_resumes(
        make_config, tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(make_config("train.ema_decay=0.9"), straight)
    train(make_config("train.ema_decay=0.9", "train.epochs=1"), split)
    # After one epoch (the best so far), the checkpoint holds the average, which is not the
    # last step's weights.
    one = torch.load(split / "last.train.pt", weights_only=True)
    saved = load_checkpoint(split / "best.safetensors").model.state_dict()
    names = [k for k in one["model"] if k.endswith("weight") and one["model"][k].ndim == 2]
    assert names
    for name in names:
        assert torch.allclose(saved[name], one["average"]["model"][name]), name
    assert not all(torch.allclose(saved[k], one["model"][k]) for k in names)
    train(make_config("train.ema_decay=0.9"), split, resume=True)
    a = torch.load(straight / "last.train.pt", weights_only=True)
    b = torch.load(split / "last.train.pt", weights_only=True)
    assert a["average"]["updates"] == b["average"]["updates"] > 0
    for k in a["average"]["model"]:
        assert torch.equal(a["average"]["model"][k], b["average"]["model"][k]), k
    assert load_checkpoint(straight / "best.safetensors").id == \
        load_checkpoint(split / "best.safetensors").id
    with pytest.raises(ConfigError, match=r"train.ema_decay"):
        train(make_config("train.ema_decay=0.5"), split, resume=True)


def test_resume_may_go_on_at_another_learning_rate(make_config, tmp_path: Path) -> None:
    train(make_config("train.epochs=1"), tmp_path)
    train(make_config("train.epochs=2", "optimizer.lr=0.0001"), tmp_path, resume=True)
    state = torch.load(tmp_path / "last.train.pt", weights_only=True)
    assert state["epoch"] == 2
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0001)
    hist = json.loads((tmp_path / "metrics.json").read_text())
    assert [h["lr"] for h in hist] == [pytest.approx(0.003), pytest.approx(0.0001)]


def test_resume_refuses_a_changed_model(make_config, tmp_path: Path) -> None:
    train(make_config("train.epochs=1"), tmp_path)
    with pytest.raises(ConfigError, match=r"model.overrides.lstm_hidden"):
        train(make_config("model.overrides.lstm_hidden=8"), tmp_path,
              resume=True)


def test_torchrun_two_processes_train_and_write_a_loadable_checkpoint(
        tone_corpus: Path, feature_cache: Path, tmp_path: Path) -> None:
    # torch installs torchrun beside the interpreter (.venv/bin), which need not be on PATH.
    torchrun = shutil.which("torchrun", path=sysconfig.get_path("scripts"))
    assert torchrun is not None, "torch's torchrun is missing beside this interpreter"
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "streamtag.train.cli",
         "train", "--config", str(TINY_CONFIG), "--corpus", str(tone_corpus),
         "--cache-dir", str(feature_cache), "--out", str(run), "--epochs", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ck = load_checkpoint(run / "best.safetensors")
    assert ck.provenance["world_size"] == 2
    assert len(json.loads((run / "metrics.json").read_text())) == 2


# -- configuration --------------------------------------------------------------------------------

def test_config_errors_name_the_key_path(tone_corpus: Path) -> None:
    bad = {
        "data": {"corpus": str(tone_corpus), "cache_dri": "x"},
        "train": {"epochs": 0, "batch_clips": "many"},
        "heads": [{"name": "emotion", "loss": "ce"}, {"name": "instrument", "kind": "regression"},
                  {"name": "mood"}],
    }
    with pytest.raises(ConfigError) as e:
        train_config_from_dict(bad)
    text = "\n".join(e.value.problems)
    assert "data.cache_dri: unknown key" in text
    assert "train.epochs: expected 1..100000, got 0" in text
    assert "train.batch_clips: expected an integer" in text
    bad2 = {"data": {"corpus": str(tone_corpus)},
            "heads": [{"name": "emotion", "loss": "ce"}, {"name": "instrument",
                                                          "kind": "regression"},
                      {"name": "mood"}, {"name": "timbre", "labels": ["sparkle"]}]}
    with pytest.raises(ConfigError) as e:
        train_config_from_dict(bad2)
    text = "\n".join(e.value.problems)
    assert "heads[0].loss: a regression head takes mse, ccc, l1, not 'ce'" in text
    assert "heads[1].kind" in text and "heads[2].target" in text and "heads[3].labels" in text
    with pytest.raises(ConfigError, match=r"data.corpus: no manifest.jsonl"):
        train_config_from_dict({"data": {"corpus": "/nonexistent"}})


def test_shipped_configs_are_valid(tone_corpus: Path) -> None:
    for name in ("default", "seed", "tiny"):
        cfg = load_train_config(REPO / "configs" / "train" / f"{name}.yaml",
                                [f"data.corpus={tone_corpus}"])
        assert cfg.heads
    seed = load_train_config(REPO / "configs" / "train" / "seed.yaml",
                             [f"data.corpus={tone_corpus}"])
    assert seed.model.preset == "seed" and seed.optimizer.lr == 1e-4
    assert (seed.scheduler.factor, seed.scheduler.patience) == (0.5, 3)
    assert [h.loss for h in seed.heads] == ["mse"]


def test_cli_exit_codes(tone_corpus: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    assert train_main(["train", "--config", str(bad), "--corpus", str(tone_corpus),
                       "--out", str(tmp_path / "r")]) == 2
    assert "train.epochz: unknown key" in capsys.readouterr().err
    assert train_main(["train", "--config", str(TINY_CONFIG), "--out",
                       str(tmp_path / "r")]) == 2
    assert "data: no training source" in capsys.readouterr().err
    assert train_main(["train", "--config", str(TINY_CONFIG), "--corpus", str(tone_corpus),
                       "--set", "train.lr", "--out", str(tmp_path / "r")]) == 2
    assert train_main(["train", "--config", str(TINY_CONFIG), "--corpus", str(tone_corpus),
                       "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "--resume: no last.train.pt" in capsys.readouterr().err


def test_the_streamtag_command_has_the_training_commands() -> None:
    from streamtag.cli import build_parser

    p = build_parser()
    args = p.parse_args(["train", "--out", "x", "--epochs", "3"])
    assert args.epochs == 3 and args.func.__name__ == "cmd_train"
    args = p.parse_args(["corpus", "build", "--out", "y", "--size", "tiny"])
    assert args.corpus_args == ["--out", "y", "--size", "tiny"]
    proc = subprocess.run([sys.executable, "-m", "streamtag.train.cli", "corpus", "build",
                           "--size", "nope", "--out", "z"], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 2


def test_seed_preset_trains_too(tone_corpus: Path, feature_cache: Path, tmp_path: Path) -> None:
    cfg = load_train_config(REPO / "configs" / "train" / "seed.yaml", [
        f"data.corpus={tone_corpus}", f"data.cache_dir={feature_cache}", "train.epochs=1",
        "model.overrides.channels=[4]", "model.overrides.lstm_hidden=16", "data.max_clips=2",
        "output.plots=false", "output.final_report=false", "output.progress=false"])
    result = train(cfg, tmp_path)
    ck = load_checkpoint(result.best_checkpoint)
    assert ck.model.arch.preset == "seed" and ck.frontend.sample_rate_hz == 44100
    assert [h.name for h in ck.heads] == ["emotion"]


def test_head_specs_follow_the_config() -> None:
    from streamtag.train.config import HeadConfig, head_spec

    spec = head_spec(HeadConfig(name="inst_embedding", target="instrument", kind="embedding",
                                dims=8))
    assert spec == HeadSpec("inst_embedding", "embedding", tuple(f"d{i}" for i in range(8)))
    assert head_spec(HeadConfig(name="timbre", labels=["brightness"])).labels == ("brightness",)


def test_dataset_loaders_are_a_training_source_too(tone_corpus: Path, feature_cache: Path,
                                                    tmp_path: Path) -> None:
    # A generic dataset (labels.csv) without a split column: whole groups go to validation.
    rows = ["file,instrument,valence,arousal,group"]
    for wav in sorted((tone_corpus / "audio" / "train").glob("*.wav")):
        shutil.copy(wav, tmp_path / wav.name)
        name = "flute" if "flute" in wav.name else "clarinet"
        rows.append(f"{wav.name},{name},0.5,0.5,{wav.stem}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    cfg = load_train_config(TINY_CONFIG, [
        "data.corpus=null", f"data.datasets=[{{kind: generic, root: '{tmp_path}'}}]",
        "data.validation_fraction=0.5", f"data.cache_dir={feature_cache}", "train.epochs=1"])
    result = train(cfg, tmp_path / "run")
    ck = load_checkpoint(result.best_checkpoint)
    assert ck.provenance["clips"]["train"] + ck.provenance["clips"]["validation"] == 8
    assert ck.provenance["clips"]["validation"] > 0
    assert f"generic:{tmp_path}" in ck.provenance["data"]


def test_default_yaml_shows_every_key_with_the_built_in_defaults() -> None:
    shown = yaml.safe_load((REPO / "configs" / "train" / "default.yaml").read_text())
    assert parse_dataclass(TrainConfig, shown) == TrainConfig()
    defaults = dataclasses.asdict(TrainConfig())
    # Every key is written out, except each head's optional fields (documented in a comment).
    shown.pop("heads"), defaults.pop("heads")
    assert shown == defaults


def _clip(tmp_path: Path, **labels) -> Clip:
    return Clip(path=tmp_path / "x.wav", dataset="corpus", split="train", group="g1", **labels)


def test_tags_are_masked_where_the_clip_does_not_know_them(tmp_path: Path):
    spec = HeadSpec("tags", "multilabel", ("major", "minor", "fast"))
    clip = _clip(tmp_path, tags=("fast",), tags_known=("fast",))
    target, mask = encode_labels(clip, HeadTarget(spec, "tags"), 3, 0.5)
    assert target.tolist() == [[0, 0, 1]] * 3 and mask.tolist() == [[0, 0, 1]] * 3
    # A user's tag list (no tags_known) states every tag: absent ones are negatives.
    target, mask = encode_labels(_clip(tmp_path, tags=("minor",)), HeadTarget(spec, "tags"),
                                 2, 0.5)
    assert target.tolist() == [[0, 1, 0]] * 2 and mask.tolist() == [[1, 1, 1]] * 2
    with pytest.raises(ValueError, match="tags_known"):
        _clip(tmp_path, tags=("fast",), tags_known=("major",))


def test_masked_bce_ignores_masked_tags():
    logits = torch.tensor([[8.0, -8.0], [8.0, -8.0]])
    target = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # the second tag would be badly wrong
    assert masked_bce(logits, target, torch.tensor([[1.0, 0.0], [1.0, 0.0]])).item() < 0.01
    assert masked_bce(logits, target, torch.tensor([[1.0, 1.0], [1.0, 1.0]])).item() > 3.0


def test_piece_embedding_targets_name_the_piece_not_the_render(tmp_path: Path):
    spec = HeadSpec("embedding", "embedding", tuple(f"d{i}" for i in range(4)))
    head = HeadTarget(spec, "piece")
    a = Clip(path=tmp_path / "a.wav", dataset="corpus", split="train", group="p1",
             instrument="violin")
    b = Clip(path=tmp_path / "b.wav", dataset="corpus", split="train", group="p1",
             instrument="flute")
    c = Clip(path=tmp_path / "c.wav", dataset="corpus", split="train", group="p2",
             instrument="violin")
    ta, ma = encode_labels(a, head, 3, 0.5)
    tb, _ = encode_labels(b, head, 3, 0.5)
    tc, _ = encode_labels(c, head, 3, 0.5)
    assert ma.tolist() == [0, 0, 1] and len(set(ta.tolist())) == 1  # first second: no identity
    assert ta[0] == tb[0] and ta[0] != tc[0]


def test_epoch_batches_keep_a_pieces_renders_together():
    from streamtag.train.batches import epoch_batches

    groups = [f"p{i // 2}" for i in range(32)]  # 16 pieces, 2 renders each
    for epoch in range(3):
        batches = epoch_batches([12] * 32, 8, seed=0, epoch=epoch, groups=groups)
        assert sorted(i for b in batches for i in b) == list(range(32))
        for b in batches:
            pieces = [groups[i] for i in b]
            assert all(pieces.count(p) == 2 for p in pieces)
    plain = epoch_batches([12] * 32, 8, seed=0, epoch=0)
    assert any(len({groups[i] for i in b}) > 4 for b in plain)  # without groups: mixed


def test_per_hop_timbre_labels_follow_the_audio_and_are_cached(tmp_path: Path):
    from streamtag.train.features import hop_timbre

    sr = 22050
    t = np.arange(sr * 2) / sr
    dull = 0.3 * np.sin(2 * np.pi * 110 * t)
    rng = np.random.default_rng(0)
    bright = 0.3 * rng.standard_normal(sr * 2)  # white noise: energy far above 2 kHz
    audio = np.concatenate([dull, bright]).astype(np.float32)
    fallback = dict.fromkeys(TIMBRE_HEAD.labels, 0.5)
    labels = hop_timbre(audio, sr, 8, 0.5, fallback)
    b = TIMBRE_HEAD.labels.index("brightness")
    assert labels.shape == (8, 7) and np.all((labels >= 0) & (labels <= 1))
    assert labels[:4, b].max() < labels[6:, b].min()  # hops 7-8 hear only the noise
    path = tmp_path / "splice.wav"
    sf.write(path, audio, sr, subtype="FLOAT")  # the exact samples, so the labels match
    cache = FeatureCache(tmp_path / "cache", DEFAULT_FRONTEND)
    assert not cache.has_hop_timbre(path, 0.5)
    first = cache.hop_timbre(path, 8, 0.5, fallback)
    assert cache.has_hop_timbre(path, 0.5)
    np.testing.assert_array_equal(first, labels)
    np.testing.assert_array_equal(cache.hop_timbre(path, 8, 0.5, fallback), labels)
    spec = HeadTarget(TIMBRE_HEAD, "timbre")
    clip = _clip(tmp_path, timbre=fallback, timbre_per_hop=True)
    target, mask = encode_labels(clip, spec, 8, 0.5, labels)
    np.testing.assert_allclose(target, labels)
    assert mask.all()


def test_clip_triplet_compares_recordings_by_their_mean_embedding():
    from streamtag.train.losses import clip_embeddings

    spec = HeadSpec("embedding", "embedding", ("d0", "d1"))
    head = TrainHead(HeadTarget(spec, "piece"), "triplet", margin=0.2)
    # Four recordings of 3 hops, pieces [7, 7, 9, 9]: each recording's hops wander, but their
    # means point along x for piece 7 and along y for piece 9 (the answer is known).
    hops = torch.tensor([
        [[1.0, 0.5], [1.0, -0.5], [1.0, 0.0]],
        [[1.0, 0.2], [1.0, -0.2], [1.0, 0.0]],
        [[0.5, 1.0], [-0.5, 1.0], [0.0, 1.0]],
        [[0.3, 1.0], [-0.3, 1.0], [0.0, 1.0]],
    ])
    labels = torch.tensor([[7] * 3, [7] * 3, [9] * 3, [9] * 3])
    mask = torch.ones(4, 3)
    vec, lab = clip_embeddings(F_normalize(hops), labels, mask)
    assert lab.tolist() == [7, 7, 9, 9]
    torch.testing.assert_close(vec[0], torch.tensor([1.0, 0.0]), atol=1e-6, rtol=0)
    assert head_loss_value(head, hops, labels, mask).item() == 0.0  # pieces are far apart
    swapped = torch.tensor([[7] * 3, [9] * 3, [7] * 3, [9] * 3])
    assert head_loss_value(head, hops, swapped, mask).item() > 0.5  # positives lie across
    # A recording with no labelled hop (all in its warm-up) takes no part.
    warm = torch.tensor([[1.0] * 3] * 3 + [[0.0] * 3])
    vec, lab = clip_embeddings(F_normalize(hops), labels, warm)
    assert len(vec) == 3


def F_normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def test_embedding_identity_waits_for_the_first_second(tmp_path: Path):
    spec = HeadSpec("embedding", "embedding", ("d0", "d1"))
    clip = Clip(path=tmp_path / "a.wav", dataset="corpus", split="train", group="p",
                instrument="flute")
    _, mask = encode_labels(clip, HeadTarget(spec, "piece"), 5, 0.5)
    assert mask.tolist() == [0, 0, 1, 1, 1]


def test_emotion_recordings_are_not_kept_together(tmp_path: Path):
    from streamtag.train.batches import batch_group

    a = Clip(path=tmp_path / "a.wav", dataset="corpus", split="train", group="p",
             instrument="flute")
    b = Clip(path=tmp_path / "b.wav", dataset="corpus", split="train", group="p",
             instrument="flute")
    e1 = Clip(path=tmp_path / "e1.wav", dataset="corpus", split="train", group="q", valence=0.5)
    e2 = Clip(path=tmp_path / "e2.wav", dataset="corpus", split="train", group="q", valence=0.5)
    assert batch_group(a) == batch_group(b)
    assert batch_group(e1) != batch_group(e2)


def test_clip_embeddings_cut_recordings_into_parts_like_run_time_queries():
    from streamtag.train.losses import clip_embeddings

    # One recording of 5 hops, the first masked (warm-up): labelled hops 1..4 → parts [1, 2]
    # and [3, 4]; a second recording with a single labelled hop gives only one part.
    emb = F_normalize(torch.tensor([
        [[0.0, 1.0], [1.0, 0.0], [1.0, 0.2], [0.0, 1.0], [0.2, 1.0]],
        [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [-1.0, 1.0]],
    ]))
    labels = torch.tensor([[3] * 5, [5] * 5])
    mask = torch.tensor([[0.0, 1, 1, 1, 1], [0.0, 0, 0, 0, 1]])
    vec, lab = clip_embeddings(emb, labels, mask, parts=2)
    assert lab.tolist() == [3, 3, 5]
    torch.testing.assert_close(vec[0], F_normalize(emb[0, 1] + emb[0, 2]))
    torch.testing.assert_close(vec[1], F_normalize(emb[0, 3] + emb[0, 4]))
    torch.testing.assert_close(vec[2], emb[1, 4])
    one, _ = clip_embeddings(emb, labels, mask, parts=1)
    torch.testing.assert_close(one[0], F_normalize(emb[0, 1:].mean(0)))


def test_init_starts_from_a_checkpoints_weights(make_config, trained_run: Path,
                                                 tmp_path: Path) -> None:
    start = load_checkpoint(trained_run / "best.safetensors")
    # At a learning rate too small to move them, the saved weights are the ones started from.
    train(make_config("train.epochs=1", "optimizer.lr=1e-9",
                      f"train.init={trained_run / 'best.safetensors'}"), tmp_path / "tuned")
    tuned = load_checkpoint(tmp_path / "tuned" / "best.safetensors")
    assert tuned.provenance["init"] == start.id
    # (Batch norm's running statistics move whatever the learning rate: not compared.)
    names = [k for k, _ in start.model.named_parameters()] + ["input_mean", "input_std"]
    now = tuned.model.state_dict()
    for k in names:
        assert torch.allclose(now[k], start.model.state_dict()[k], atol=1e-6), k
    # Without it, the same run starts from random weights, far from those.
    train(make_config("train.epochs=1", "optimizer.lr=1e-9"), tmp_path / "fresh")
    fresh = load_checkpoint(tmp_path / "fresh" / "best.safetensors")
    assert fresh.provenance["init"] is None
    w = next(k for k, v in fresh.model.named_parameters() if v.ndim == 2)
    assert not torch.allclose(fresh.model.state_dict()[w], start.model.state_dict()[w],
                              atol=1e-3)


def test_init_refuses_a_checkpoint_of_another_model(make_config, trained_run: Path,
                                                    tmp_path: Path) -> None:
    best = trained_run / "best.safetensors"
    with pytest.raises(ConfigError, match=r"train.init: .* another architecture"):
        train(make_config("train.epochs=1", "model.overrides.lstm_hidden=8",
                          f"train.init={best}"), tmp_path / "a")
    with pytest.raises(ConfigError, match=r"train.init: no checkpoint file"):
        make_config(f"train.init={tmp_path / 'missing.safetensors'}")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"train.init: "):
        train(make_config("train.epochs=1", f"train.init={broken}"), tmp_path / "b")
