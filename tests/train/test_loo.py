"""Leave-one-sample-set-out: folds, re-split corpora, and one fold run end to end (tiny)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from streamtag.errors import ConfigError
from streamtag.train import loo
from streamtag.train.corpus import manifest as corpus_manifest
from streamtag.train.corpus.soundfonts import (
    TRAIN,
    VALIDATION,
    DrumKit,
    SoundFont,
    holdout_splits,
    kit_group,
    loo_folds,
)

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "train" / "tiny.yaml"

KITS = Path("/usr/share/hydrogen/data/drumkits")


def _fonts() -> list[SoundFont]:
    return [SoundFont(n, Path(f"/x/{n}.sf2"), s) for n, s in
            (("fluidr3", TRAIN), ("csound", TRAIN), ("timgm6mb", VALIDATION))]


def _kits() -> list[DrumKit]:
    return [DrumKit(n, Path(f"/k/{n}"), s) for n, s in
            (("BJA_Pacific", TRAIN), ("ForzeeStereo", TRAIN), ("VariBreaks", TRAIN),
             ("rumpf_kit_z01_h2", VALIDATION))]


def test_every_set_is_held_out_once_paired_with_a_kit_group():
    folds = loo_folds(_fonts(), _kits())
    assert folds == [("fluidr3", "kits-acoustic"), ("csound", "kits-varibreaks"),
                     ("timgm6mb", "kits-rumpf")]
    assert kit_group("Some New Kit") == "kits-some_new_kit"


def test_holdout_moves_the_named_sets_to_validation_and_the_rest_to_training():
    fonts, kits = holdout_splits(_fonts(), _kits(), ["csound", "kits-acoustic"])
    assert {f.name: f.split for f in fonts} == {"fluidr3": TRAIN, "csound": VALIDATION,
                                                "timgm6mb": TRAIN}
    assert {k.name: k.split for k in kits} == {"BJA_Pacific": VALIDATION,
                                               "ForzeeStereo": VALIDATION,
                                               "VariBreaks": TRAIN, "rumpf_kit_z01_h2": TRAIN}


def test_unknown_holdout_name_is_a_config_error_listing_the_sets():
    with pytest.raises(ConfigError, match="kits-varibreaks"):
        holdout_splits(_fonts(), _kits(), ["steinway"])


def test_markdown_marks_classes_below_target():
    result = {"soundfont": {"name": "csound", "per_class": {"clarinet": 0.5, "flute": 0.9},
                            "instrument_after_1s": 0.7, "instrument_balanced_after_1s": 0.7},
              "kits": {"name": "kits-hand", "clips": 3, "drums_tag_recall": 0.9,
                       "timbre_mae": 0.1},
              "recipe": {"size": "small", "epochs": 8, "config": "default.yaml"}}
    md = loo.loo_markdown([result])
    assert "| csound | 0.50 ✗ | 0.90 |" in md
    assert "| kits-hand | 3 | 0.90 | 0.100 |" in md


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not (KITS / "VariBreaks").is_dir(),
                    reason="needs fluidsynth and the Debian hydrogen-drumkits")
def test_one_fold_builds_trains_and_scores_its_held_out_sets(tmp_path: Path):
    options = loo.LooOptions(
        size="tiny", config=TINY_CONFIG, epochs=1, nproc=1, cache_dir=tmp_path / "cache",
        corpus_options=(("soundfonts", ["fluidr3", "timgm6mb"]),
                        ("drumkits", [KITS / "VariBreaks", KITS / "rumpf_kit_z01_h2"]),
                        ("families", ["instrument", "drums"]),
                        ("n_per_class", 2), ("val_per_class", 2)))
    fold = ("fluidr3", "kits-varibreaks")
    results = loo.run_all(tmp_path / "loo", options, folds=[fold])
    corpus = tmp_path / "loo" / loo.fold_name(0, fold) / "corpus"
    rows = corpus_manifest.read_manifest(corpus / "manifest.jsonl")
    splits = {(r["soundfont"], r["split"]) for r in rows}
    assert splits == {("fluidr3", "validation"), ("hydrogen:VariBreaks", "validation"),
                      ("timgm6mb", "train"), ("hydrogen:rumpf_kit_z01_h2", "train")}
    assert json.loads((corpus / "corpus.json").read_text())["holdout"] == list(fold)
    (result,) = results
    assert result["soundfont"]["name"] == "fluidr3"
    assert set(result["soundfont"]["per_class"]) >= {"clarinet", "tenor saxophone"}
    assert result["kits"]["name"] == "kits-varibreaks" and result["kits"]["clips"] >= 1
    md = (tmp_path / "loo" / "loo.md").read_text()
    assert "| fluidr3 |" in md and "| kits-varibreaks |" in md
    # A second run finds the fold done and rewrites the tables without training again.
    again = loo.run_all(tmp_path / "loo", options, folds=[fold])
    assert again == results
