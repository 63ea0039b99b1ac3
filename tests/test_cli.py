"""`streamtag analyze`: formats, several files, clear errors, the same numbers as the engine."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamtag.checkpoint import load_checkpoint
from streamtag.cli import main
from streamtag.engine import Engine
from streamtag.testing import make_signal


@pytest.fixture()
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "song.wav"
    sf.write(path, make_signal(2.0, 44100), 44100)
    return path


def test_analyze_jsonl_equals_the_engine(wav: Path, tiny_default_path: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(wav), "--checkpoint", str(tiny_default_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    audio, rate = sf.read(wav, dtype="float32")
    expected = Engine(load_checkpoint(tiny_default_path), input_rate_hz=rate).analyze(audio)
    assert len(records) == len(expected) == 4
    for got, exp in zip(records, expected, strict=True):
        assert got["t"] == exp["t"] and "file" not in got
        assert got["emotion"]["valence"] == pytest.approx(exp["emotion"]["valence"], abs=1e-6)


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_analyze_reads_compressed_formats(fmt: str, tmp_path: Path, tiny_default_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"song.{fmt}"
    sf.write(path, make_signal(2.0, 22050), 22050)
    assert main(["analyze", str(path), "--checkpoint", str(tiny_default_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_several_files_carry_their_name_and_bad_ones_do_not_stop_the_rest(
    wav: Path, tmp_path: Path, tiny_default_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 22050)
    missing = tmp_path / "missing.mp3"
    code = main(["analyze", str(garbage), str(wav), str(empty), str(missing), str(wav),
                 "--checkpoint", str(tiny_default_path)])
    out, err = capsys.readouterr()
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 8 and {r["file"] for r in records} == {str(wav)}
    assert f"{garbage}: cannot read audio" in err
    assert f"{empty}: holds no audio samples" in err
    assert f"{missing}: no such file" in err
    assert "3 of 5 file(s) could not be analyzed" in err


def test_csv_output_to_a_file(wav: Path, tmp_path: Path, tiny_default_path: Path) -> None:
    out = tmp_path / "out.csv"
    assert main(["analyze", str(wav), "--checkpoint", str(tiny_default_path),
                 "--format", "csv", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4
    assert {"seq", "t", "emotion.valence", "instrument.top", "instrument.probs.violin",
            "timbre.brightness"} <= rows[0].keys()


def test_no_bundled_model_is_said_plainly(wav: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import streamtag.checkpoint

    # An install without the model file (e.g. a trimmed package) must say so, not crash.
    monkeypatch.setattr(streamtag.checkpoint, "BUNDLED_CHECKPOINT", tmp_path / "none.safetensors")
    assert main(["analyze", str(wav)]) == 2
    assert "no trained model is bundled" in capsys.readouterr().err


def test_bad_checkpoint_and_bad_flags(wav: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    assert main(["analyze", str(wav), "--checkpoint", str(bad)]) == 2
    assert "not a readable safetensors checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["analyze", str(wav), "--format", "xml"])
    assert e.value.code == 2


def test_console_script_runs(wav: Path, tiny_default_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamtag.cli", "analyze", str(wav), "--checkpoint",
         str(tiny_default_path)], capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 4
