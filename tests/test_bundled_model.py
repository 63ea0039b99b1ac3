"""The model that ships inside the package: loads, is what its card says, and does its job on
renders it never heard (a SoundFont and pieces outside its training data)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamtag.checkpoint import BUNDLED_CHECKPOINT, load_checkpoint, resolve_checkpoint
from streamtag.cli import main
from streamtag.engine import Engine
from streamtag.model import INSTRUMENT_CLASSES
from streamtag.publish.wire import TIMBRE_NAMES

pytestmark = pytest.mark.skipif(not BUNDLED_CHECKPOINT.exists(), reason="no bundled model")


def test_bundled_model_loads_with_its_card() -> None:
    ck = resolve_checkpoint(None)
    assert ck.path == BUNDLED_CHECKPOINT
    heads = {h.name: h for h in ck.heads}
    assert heads["emotion"].labels == ("valence", "arousal")
    assert heads["instrument"].labels == INSTRUMENT_CLASSES
    assert set(heads["timbre"].labels) == set(TIMBRE_NAMES)
    assert ck.model.arch.preset == "default"
    assert ck.provenance["data"]["corpus_manifest_sha256"]
    assert ck.provenance["best_epoch"] >= 1
    card = (BUNDLED_CHECKPOINT.parent / "MODEL_CARD.md").read_text()
    assert ck.id in card and "proxy, not listener ratings" in card


def test_analyze_uses_the_bundled_model(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    wav = tmp_path / "tone.wav"
    sf.write(wav, 0.3 * np.sin(2 * np.pi * 440 * np.arange(44100) / 44100), 44100)
    assert main(["analyze", str(wav)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth")
def test_bundled_model_names_instruments_from_an_unseen_soundfont(tmp_path: Path) -> None:
    from streamtag.train.corpus import build_corpus, read_manifest

    out = tmp_path / "corpus"
    # TimGM6mb is never used in training; seed 11 composes pieces the corpus (seed 0) lacks.
    manifest = build_corpus(out, n_per_class=0, val_per_class=2, seed=11, clip_s=4.0,
                 soundfonts=["timgm6mb"], drumkits=[], families=["instrument"], workers=1,
                 progress=False)
    engine = Engine(load_checkpoint(BUNDLED_CHECKPOINT))
    right = 0
    rows = read_manifest(manifest)
    for row in rows:
        audio, rate = sf.read(manifest.parent / row["path"], dtype="float32")
        assert rate == engine.input_rate_hz
        records = engine.analyze(audio)
        votes = Counter(r["instrument"]["top"] for r in records if r["t"] > 1.0)
        right += votes.most_common(1)[0][0] == row["labels"]["instrument"]
    assert len(rows) == 16
    assert right >= 12, f"{right}/16 clips named right"
