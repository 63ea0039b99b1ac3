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


def test_bundled_model_has_tags_and_a_calibrated_embedding() -> None:
    from streamtag.train.corpus.tags import CORPUS_TAGS

    ck = resolve_checkpoint(None)
    heads = {h.name: h for h in ck.heads}
    assert heads["tags"].kind == "multilabel" and heads["tags"].labels == CORPUS_TAGS
    assert heads["embedding"].kind == "embedding"
    assert ck.embedding is not None and ck.embedding.projection is not None
    assert ck.embedding.known_distance is not None and 0 < ck.embedding.known_distance < 2


def _unseen(tmp_path: Path, families: list[str], renders: int = 1) -> list[dict]:
    from streamtag.train.corpus import build_corpus, read_manifest

    # TimGM6mb is never used in training; seed 11 composes pieces the corpus (seed 0) lacks.
    manifest = build_corpus(tmp_path / "corpus", n_per_class=0, val_per_class=renders, seed=11,
                            clip_s=6.0, soundfonts=["timgm6mb"], drumkits=[], families=families,
                            val_renders_per_piece=renders, workers=1, progress=False)
    rows = read_manifest(manifest)
    for row in rows:
        row["file"] = manifest.parent / row["path"]
    return rows


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth")
def test_bundled_model_tags_a_drum_groove_as_drums(tmp_path: Path) -> None:
    (row,) = _unseen(tmp_path, ["drums"])
    audio, _ = sf.read(row["file"], dtype="float32")
    records = [r for r in Engine(load_checkpoint(BUNDLED_CHECKPOINT)).analyze(audio)
               if r["t"] > 1.0]
    mean = {t: float(np.mean([r["tags"][t] for r in records])) for t in records[0]["tags"]}
    assert mean["drums"] > 0.5, mean
    assert mean["drums"] > max(mean[t] for t in ("keyboard", "strings", "brass", "woodwind"))


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth")
def test_bundled_model_recognises_a_piece_played_again(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Two unseen pieces, each rendered twice (same notes, another room): the first render of
    each goes into a reference library; the second render is recognised as its piece."""
    import json

    rows = _unseen(tmp_path, ["instrument"], renders=2)
    pieces: dict[str, list[Path]] = {}
    for row in rows:
        pieces.setdefault(row["group"], []).append(row["file"])
    chosen = [sorted(pieces[g]) for g in sorted(pieces)[:16:8]]  # clarinet, then guitar
    lib = tmp_path / "refs.safetensors"
    for i, (first, _) in enumerate(chosen):
        assert main(["reference", "add", f"piece{i}", str(first), "--library", str(lib)]) == 0
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"reference:\n  library: {lib}\n")
    for i, (_, again) in enumerate(chosen):
        capsys.readouterr()
        assert main(["analyze", str(again), "--config", str(cfg)]) == 0
        last = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert last["reference"]["nearest"] == f"piece{i}", last["reference"]
