"""Pre-rolled training copies (entry after a pause) and class-balanced batches."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from streamtag.audiofile import read_audio
from streamtag.frontend import FRONTEND_PRESETS, MelFrontend
from streamtag.model import EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD, build_model
from streamtag.train.batches import batch_stratum, epoch_batches
from streamtag.train.features import (
    FeatureCache,
    HeadTarget,
    corpus_clips,
    load_features,
    silence_frame,
)
from streamtag.train.preroll import (
    LABEL_AFTER_S,
    PreRoll,
    draw_pre_roll,
    epoch_recordings,
    make_variants,
    pre_roll_audio,
    pre_rolled_mel,
)

HEADS = [HeadTarget(INSTRUMENT_HEAD, "instrument"), HeadTarget(EMOTION_HEAD, "emotion"),
         HeadTarget(TIMBRE_HEAD, "timbre")]


@pytest.mark.parametrize("kind", ["silence", "noise", "piece"])
def test_pre_roll_audio_has_its_length_and_level(kind: str, tone_corpus: Path):
    other = str(next((tone_corpus / "audio" / "train").glob("*.wav")))
    rng = np.random.default_rng(1)
    spec = draw_pre_roll(rng, [1.3, 1.3], [kind], [other])
    assert spec.kind == kind and spec.seconds == pytest.approx(1.3)
    audio = pre_roll_audio(spec, 22050)
    assert audio.shape == (round(1.3 * 22050),) and audio.dtype == np.float32
    level = 10 * np.log10(np.mean(audio.astype(np.float64) ** 2) + 1e-30)
    if kind == "silence":
        assert -95 < level < -65
    if kind == "piece":
        tail, _ = read_audio(Path(other))
        music = audio[: audio.shape[0] - round(spec.gap_s * 22050)]
        assert np.allclose(music[-100:], tail[-100:, 0], atol=1e-6)
    assert np.array_equal(audio, pre_roll_audio(spec, 22050))  # seeded


def test_copies_hear_the_pre_roll_then_the_clip_and_label_only_the_music(
        tone_corpus: Path, tmp_path: Path):
    frontend = FRONTEND_PRESETS["default"]
    arch = build_model("default", [INSTRUMENT_HEAD, EMOTION_HEAD, TIMBRE_HEAD]).arch
    cache = FeatureCache(tmp_path, frontend)
    clips = [c for c in corpus_clips(tone_corpus)[0] if c.split == "train"]
    hop_s = arch.hop_frames * frontend.hop_length / frontend.sample_rate_hz
    feats, _ = load_features(clips, cache, arch, HEADS, hop_s)
    silence = silence_frame(frontend)
    variants = make_variants(feats, cache, arch, silence, HEADS, hop_s, share=1.0,
                             seconds=[0.3, 2.7], kinds=["silence", "noise", "piece"], seed=0)
    assert set(variants) == set(range(len(feats)))
    again = make_variants(feats, cache, arch, silence, HEADS, hop_s, share=1.0,
                          seconds=[0.3, 2.7], kinds=["silence", "noise", "piece"], seed=0)
    phases = set()
    for i, v in variants.items():
        assert np.array_equal(v.mel, again[i].mel)  # the same copies on every process
        plain = feats[i]
        extra = v.mel.shape[0] - plain.mel.shape[0]
        assert extra > 0 and v.n_hops >= plain.n_hops
        pre_s = extra * frontend.hop_length / frontend.sample_rate_hz
        phases.add(round(pre_s % hop_s, 2))
        ends = (np.arange(v.n_hops) + 1) * hop_s
        labelled = v.masks["instrument"] > 0
        # Hops before the music (less LABEL_AFTER_S) carry no label; every later hop does.
        assert not labelled[ends < pre_s + LABEL_AFTER_S - 0.03].any()
        assert labelled[ends > pre_s + LABEL_AFTER_S + 0.03].all()
        assert (v.targets["instrument"][labelled] == plain.targets["instrument"][0]).all()
        assert not v.masks["timbre"].any()
    assert len(phases) > 1  # the music starts at different phases of the hop grid
    # The frames are the frontend's over the joined audio, as the engine would compute them.
    spec = PreRoll("noise", 0.77, -40.0, bursts=True, seed=3)
    audio, rate = read_audio(Path(feats[0].clip.path))
    joined = np.concatenate([pre_roll_audio(spec, rate), audio[:, 0]])
    expected = MelFrontend(frontend, rate, fast_lane=False).process_offline(joined).features
    got = pre_rolled_mel(cache, Path(feats[0].clip.path), spec)
    assert np.array_equal(got, expected.astype(np.float32))
    assert np.array_equal(pre_rolled_mel(cache, Path(feats[0].clip.path), spec), got)  # cached


def test_each_epoch_plays_a_copy_or_the_clip():
    plain = [f"clip{i}" for i in range(200)]
    variants = {i: f"copy{i}" for i in range(0, 200, 2)}
    epochs = [epoch_recordings(plain, variants, seed=0, epoch=e) for e in range(2)]  # type: ignore[arg-type]
    for recordings in epochs:
        assert all(r in (f"clip{i}", f"copy{i}") for i, r in enumerate(recordings))
        assert all(r == f"clip{i}" for i, r in enumerate(recordings) if i % 2)
        copies = sum(r.startswith("copy") for r in recordings)
        assert 30 < copies < 70
    assert epochs[0] != epochs[1]
    assert epoch_recordings(plain, {}, 0, 0) == plain  # type: ignore[arg-type]


def test_balanced_batches_mix_the_classes_and_keep_renders_together():
    strata, groups = [], []
    for k in range(4):  # four classes, eight pieces each, two renders per piece
        for piece in range(8):
            strata += [f"instrument:c{k}"] * 2
            groups += [f"c{k}-{piece}"] * 2
    plain = epoch_batches([12] * 64, 8, seed=0, epoch=0, groups=groups)
    mixed = epoch_batches([12] * 64, 8, seed=0, epoch=0, groups=groups, strata=strata)
    assert sorted(i for b in mixed for i in b) == list(range(64))
    for batch in mixed:
        counts = Counter(strata[i] for i in batch)
        assert len(counts) == 4 and set(counts.values()) == {2}
        assert all(Counter(groups[i] for i in batch)[groups[i]] == 2 for i in batch)
    worst_plain = min(len({strata[i] for i in b}) for b in plain)
    assert worst_plain < 4  # without balancing some batch misses a class
    # A stratum four times as large comes four times as often in every part of the epoch.
    strata2 = ["emotion"] * 64 + ["instrument:a"] * 16
    groups2 = [f"g{i}" for i in range(80)]
    batches = epoch_batches([12] * 80, 10, seed=1, epoch=0, groups=groups2, strata=strata2)
    assert all(sum(strata2[i] == "instrument:a" for i in b) in (1, 2, 3) for b in batches)


def test_strata_name_the_class_or_the_family(tone_corpus: Path):
    clips, _ = corpus_clips(tone_corpus)
    assert {batch_stratum(c) for c in clips} == {"instrument:clarinet", "instrument:flute"}


def test_a_tiny_run_trains_with_pre_rolls_and_balanced_batches(make_config, tmp_path: Path):
    from streamtag.train.trainer import train

    cfg = make_config("train.epochs=2", "augment.pre_roll_p=0.5", "train.balanced_batches=true",
                      "augment.pre_roll_s=[0.2,1.5]")
    result = train(cfg, tmp_path / "run")
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    log = (tmp_path / "run" / "train.log").read_text()
    assert "pre-rolled copy" in log
    assert all(e["train"]["loss"] is not None for e in result.history)


def test_bad_pre_roll_settings_are_config_errors_naming_the_key(make_config):
    from streamtag.errors import ConfigError

    with pytest.raises(ConfigError, match=r"augment\.pre_roll_s"):
        make_config("augment.pre_roll_s=[3,1]")
    with pytest.raises(ConfigError, match=r"augment\.pre_roll_kinds"):
        make_config("augment.pre_roll_kinds=[applause]")
    assert isinstance(PreRoll("noise", 1.0, -40.0).key(), str)


def test_field_recipe_is_the_default_recipe_with_pre_rolls_balanced_batches_and_averaging():
    import yaml

    from streamtag.train.config import load_train_config

    repo = Path(__file__).resolve().parents[2] / "configs" / "train"
    sets = ["data.corpus=corpus"]
    field = load_train_config(repo / "field.yaml", sets, check_paths=False).to_dict()
    default = load_train_config(repo / "default.yaml", sets, check_paths=False).to_dict()
    differs = {(section, key) for section in default for key in default[section]
               if isinstance(default[section], dict)
               and field[section][key] != default[section][key]}
    assert differs == {("train", "epochs"), ("train", "balanced_batches"),
                       ("train", "ema_decay"), ("augment", "pre_roll_p")}
    assert field["heads"] == default["heads"]
    assert yaml.safe_load((repo / "field.yaml").read_text())["augment"]["pre_roll_p"] == 0.3
