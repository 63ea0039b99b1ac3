"""`streamtag analyze`: formats, several files, clear errors, the same numbers as the engine."""

from __future__ import annotations

import csv
import io
import json
import re
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


def _exact(text: str) -> list[dict]:
    """Records without the measurement fields (wall, latency_ms), in output order."""
    return [{k: v for k, v in json.loads(line).items() if k not in ("wall", "latency_ms")}
            for line in text.splitlines()]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "streamtag.cli", "analyze", *args]


def test_stdin_from_a_real_ffmpeg_pipe_equals_the_file(
        tmp_path: Path, tiny_default_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ffmpeg -i x -f wav - | streamtag analyze -` gives the file's records; so does raw PCM
    with --rate/--channels/--sample-format."""
    path = tmp_path / "song.flac"
    sf.write(path, np.stack([make_signal(3.0, 44100, seed=1),
                             make_signal(3.0, 44100, seed=2)], 1), 44100)
    ck = ["--checkpoint", str(tiny_default_path)]
    assert main(["analyze", str(path), *ck]) == 0
    direct = _exact(capsys.readouterr().out)
    assert len(direct) == 6
    for ff, flags in ((["-f", "wav"], []),
                      (["-f", "s16le"], ["--rate", "44100", "--channels", "2",
                                         "--sample-format", "s16le"])):
        ffmpeg = subprocess.Popen(["ffmpeg", "-v", "error", "-i", str(path), *ff, "-"],
                                  stdout=subprocess.PIPE)
        piped = subprocess.run(_cli("-", *flags, *ck), stdin=ffmpeg.stdout, capture_output=True,
                               text=True, timeout=120)
        ffmpeg.stdout.close()
        assert ffmpeg.wait(timeout=60) == 0
        assert piped.returncode == 0, piped.stderr
        assert _exact(piped.stdout) == direct


def test_stdin_errors_are_named(tiny_default_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    ck = ["--checkpoint", str(tiny_default_path)]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\x00" * 4000)))
    assert main(["analyze", "-", *ck]) == 1
    err = capsys.readouterr().err
    assert "-: standard input is not a WAV stream" in err and "give --rate and --channels" in err
    assert main(["analyze", "-", "-", *ck]) == 2
    assert "standard input (-) can be read only once" in capsys.readouterr().err
    assert main(["analyze", "-", "--jobs", "0", *ck]) == 2
    assert "--jobs 0: expected 1 or more" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_jobs_give_the_same_output_in_the_same_order_as_one_by_one(
        tmp_path: Path, tiny_default_path: Path, capsys: pytest.CaptureFixture[str],
        fmt: str) -> None:
    names = []
    for i, (seconds, rate) in enumerate([(3.0, 44100), (1.2, 22050), (4.1, 48000), (2.0, 22050),
                                         (2.6, 44100)]):
        names.append(tmp_path / f"f{i}.wav")
        sf.write(names[-1], make_signal(seconds, rate, seed=i), rate)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    files = [str(names[0]), str(bad), *map(str, names[1:])]
    outputs = {}
    for jobs in ("1", "2", "3"):
        code = main(["analyze", *files, "--checkpoint", str(tiny_default_path), "--jobs", jobs,
                     "--format", fmt])
        out, err = capsys.readouterr()
        assert code == 1 and f"{bad}: cannot read audio" in err
        assert "1 of 6 file(s) could not be analyzed" in err
        outputs[jobs] = out
    if fmt == "jsonl":
        one = _exact(outputs["1"])
        assert [r["file"] for r in one] == [str(names[0])] * 6 + [str(names[1])] * 2 + \
            [str(names[2])] * 8 + [str(names[3])] * 4 + [str(names[4])] * 5
        assert _exact(outputs["2"]) == one and _exact(outputs["3"]) == one
    else:
        rows = {j: [{k: v for k, v in r.items() if k not in ("wall", "latency_ms")}
                    for r in csv.DictReader(io.StringIO(out))] for j, out in outputs.items()}
        assert len(rows["1"]) == 25 and rows["2"] == rows["1"] and rows["3"] == rows["1"]


def test_progress_bar_moves_over_seconds_of_audio(
        tmp_path: Path, tiny_default_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import streamtag.cli

    monkeypatch.setattr(streamtag.cli, "PROGRESS_INTERVAL_S", 0.0)  # every update drawn
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, make_signal(150.0, 22050), 22050)  # two chunks of hops: 128 s, then 22 s
    sf.write(b, make_signal(60.0, 22050, seed=3), 22050)
    for files, jobs in (([str(a)], "1"), ([str(a), str(b)], "2")):
        assert main(["analyze", *files, "--checkpoint", str(tiny_default_path), "--progress",
                     "on", "--jobs", jobs, "--out", str(tmp_path / "o.jsonl")]) == 0
        err = capsys.readouterr().err
        total = 150.0 if len(files) == 1 else 210.0
        shown = [float(m) for m in re.findall(rf"([\d.]+)/{total:g}", err)]
        assert shown[0] == 0 and shown[-1] == pytest.approx(total, abs=0.1)
        assert len(set(shown)) >= 3, err  # it moved: 0, chunk by chunk, the end


def test_analyze_takes_the_configs_tempo(wav: Path, tmp_path: Path, tiny_default_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The config's ``tempo`` reaches the engine: records have a tempo section by default (the
    engine's, with the config's range), and none with ``tempo.enabled: false``."""
    from streamtag.config import TempoConfig

    narrow = tmp_path / "narrow.yaml"
    narrow.write_text("tempo:\n  min_bpm: 90.0\n  max_bpm: 180.0\n  memory_s: 2.0\n")
    assert main(["analyze", str(wav), "--checkpoint", str(tiny_default_path),
                 "--config", str(narrow)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    audio, rate = sf.read(wav, dtype="float32")
    expected = Engine(load_checkpoint(tiny_default_path), input_rate_hz=rate,
                      tempo=TempoConfig(min_bpm=90.0, max_bpm=180.0, memory_s=2.0)
                      ).analyze(audio)
    assert [r["tempo"] for r in records] == [r["tempo"] for r in expected]
    default = Engine(load_checkpoint(tiny_default_path), input_rate_hz=rate).analyze(audio)
    assert [r["tempo"] for r in records] != [r["tempo"] for r in default]  # the config's range
    off = tmp_path / "off.yaml"
    off.write_text("tempo:\n  enabled: false\n")
    assert main(["analyze", str(wav), "--checkpoint", str(tiny_default_path),
                 "--config", str(off)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 4 and not any("tempo" in r for r in records)
