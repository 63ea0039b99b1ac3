"""Dataset loaders: tiny copies of each dataset's real layout, written in tmp_path, then broken.

Each fixture follows the layout the dataset is distributed in. Every malformed variant asserts
that the message names the problem (file, row, column or value), not just that something failed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamtag.errors import DatasetError
from streamtag.train.datasets import (
    LOADERS,
    TIMBRE_NAMES,
    Clip,
    DatasetLoader,
    DEAMLoader,
    FreesoundOneShotLoader,
    GenericLoader,
    LoadReport,
    MedleyLoader,
    PMEmoLoader,
    assign_splits_by_group,
    load_dataset,
    scales,
)

# libsndfile ≥ 1.1 writes MP3; with an older one the MP3 fixtures hold placeholder bytes and the
# loaders run with check_audio=False, so only the decoding checks are skipped.
CAN_WRITE_MP3 = "MP3" in sf.available_formats()
needs_mp3 = pytest.mark.skipif(
    not CAN_WRITE_MP3, reason="this libsndfile cannot write MP3, so MP3 decoding is not tested"
)


def write_wav(path: Path, seconds: float = 0.05, rate: int = 16000, channels: int = 1,
              frames: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = frames if frames is not None else int(seconds * rate)
    data = np.zeros((n, channels), dtype=np.int16)
    sf.write(path, data, rate, subtype="PCM_16")


def write_mp3(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if CAN_WRITE_MP3:
        sf.write(path, np.zeros((4410, 2), dtype=np.float32), 44100, format="MP3")
    else:
        path.write_bytes(b"placeholder: no MP3 encoder")


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def messages(problems: list) -> str:
    return "\n".join(str(problem) for problem in problems)


# --- common model ------------------------------------------------------------------------------


def test_clip_keeps_only_given_labels_and_is_immutable() -> None:
    timbre = {name: 0.5 for name in TIMBRE_NAMES}
    clip = Clip(Path("a.wav"), "generic", "train", "g", valence=0.1,
                dynamic=[(15.0, 0.2, -0.3)], timbre=timbre)
    assert set(clip.labels) == {"valence", "dynamic", "timbre"}
    assert clip.dynamic == ((15.0, 0.2, -0.3),)
    timbre["hardness"] = 0.9  # the clip holds its own copy
    assert clip.timbre is not None and clip.timbre["hardness"] == 0.5
    with pytest.raises(TypeError):
        clip.timbre["hardness"] = 1.0  # type: ignore[index]
    assert hash(clip) == hash(Clip(Path("a.wav"), "generic", "train", "g", valence=0.1,
                                   dynamic=[(15.0, 0.2, -0.3)], timbre=timbre))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"split": "training", "instrument": "x"}, "split 'training'"),
        ({"split": "train", "valence": 1.5}, "valence 1.5 is outside"),
        ({"split": "train", "arousal": math.nan}, "arousal nan"),
        ({"split": "train", "timbre": {"hardness": 0.5}}, "timbre must hold exactly"),
        ({"split": "train", "dynamic": [(1.0, 0, 0), (0.5, 0, 0)]}, "increase strictly"),
        ({"split": "train"}, "carries no label"),
    ],
)
def test_clip_refuses_wrong_labels(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        Clip(Path("a.wav"), "generic", group="g", **kwargs)


def test_scales_map_each_source_onto_streamtag_ranges() -> None:
    assert [scales.pmemo_emotion(v) for v in (0.0, 0.5, 1.0)] == [-1.0, 0.0, 1.0]
    assert [scales.deam_static_emotion(v) for v in (1.0, 5.0, 9.0)] == [-1.0, 0.0, 1.0]
    assert scales.deam_dynamic_emotion(-0.25) == -0.25
    assert [scales.freesound_timbre(v) for v in (-3.0, 50.0, 150.0)] == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        scales.pmemo_emotion(1.2)
    with pytest.raises(ValueError, match=r"outside 1\.\.9"):
        scales.deam_static_emotion(0.5)
    with pytest.raises(ValueError, match=r"outside -1\.\.1"):
        scales.deam_dynamic_emotion(1.01)
    with pytest.raises(ValueError, match="not a finite"):
        scales.freesound_timbre(math.inf)


def test_assign_splits_by_group_moves_whole_groups_and_keeps_official_splits() -> None:
    clips = [Clip(Path(f"{g}_{i}.wav"), "d", "train", str(g), valence=0.0)
             for g in range(200) for i in range(3)]
    clips.append(Clip(Path("t.wav"), "d", "test", "official", valence=0.0))
    first = assign_splits_by_group(clips, validation_fraction=0.2, test_fraction=0.1)
    assert first == assign_splits_by_group(clips, validation_fraction=0.2, test_fraction=0.1)
    by_group: dict[tuple[str, str], set[str]] = {}
    for clip in first:
        by_group.setdefault((clip.dataset, clip.group), set()).add(clip.split)
    assert all(len(splits) == 1 for splits in by_group.values())
    counts = {s: sum(c.split == s for c in first[:-1]) / 600 for s in ("validation", "test")}
    assert 0.1 < counts["validation"] < 0.3 and 0.03 < counts["test"] < 0.2
    assert first[-1].split == "test"


def test_registry_names_every_loader_and_refuses_unknown_kinds(tmp_path: Path) -> None:
    assert set(LOADERS) == {"medley", "pmemo", "deam", "freesound_oneshot", "generic"}
    for kind, loader_class in LOADERS.items():
        loader = loader_class()
        assert isinstance(loader, DatasetLoader)
        assert loader.name == kind
    with pytest.raises(DatasetError, match=r"unknown dataset kind 'medly'.*medley"):
        load_dataset("medly", tmp_path)
    with pytest.raises(DatasetError, match="bad option"):
        load_dataset("medley", tmp_path, colour="red")


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_every_loader_names_a_missing_root(tmp_path: Path, kind: str) -> None:
    absent = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="not found") as caught:
        load_dataset(kind, absent)
    assert str(absent) in str(caught.value)


# --- Medley-solos-DB ---------------------------------------------------------------------------

MEDLEY_HEADER = "subset,instrument,instrument_id,song_id,uuid4\n"
MEDLEY_FRAMES = 131072
UUIDS = [f"0000000{i}-1c6a-51ab-fdb7-f8abd5fbf1a3" for i in range(6)]


def make_medley(root: Path, rows: list[tuple[str, str, int, int, str]],
                where: dict[str, str] | None = None, skip_audio: set[str] = frozenset()) -> Path:
    """Metadata plus audio; ``where[uuid]`` puts a file in 'root', 'audio' or 'double'."""
    where = where or {}
    lines = [f"{s},{name},{i},{song},{uuid}" for s, name, i, song, uuid in rows]
    write_text(root / "Medley-solos-DB_metadata.csv", MEDLEY_HEADER + "\n".join(lines) + "\n")
    for subset, _name, instrument_id, _song, uuid in rows:
        if uuid in skip_audio:
            continue
        file_name = f"Medley-solos-DB_{subset}-{instrument_id}_{uuid}.wav"
        place = where.get(uuid, "audio")
        if place == "root":
            path = root / file_name
        elif place == "double":
            path = root / "audio" / (file_name + ".wav")
        else:
            path = root / "audio" / file_name
        write_wav(path, rate=44100, frames=MEDLEY_FRAMES)
    return root


GOOD_MEDLEY = [
    ("training", "clarinet", 0, 11, UUIDS[0]),
    ("training", "distorted electric guitar", 1, 11, UUIDS[1]),
    ("validation", "piano", 4, 12, UUIDS[2]),
    ("test", "violin", 7, 13, UUIDS[3]),
]


def test_medley_reads_splits_instruments_and_songs(tmp_path: Path) -> None:
    root = make_medley(tmp_path / "medley", GOOD_MEDLEY,
                       where={UUIDS[0]: "root", UUIDS[3]: "double"})
    clips, report = MedleyLoader().load(root)
    assert (report.found, report.used) == (4, 4)
    assert report.ok, report.summary()
    assert [c.split for c in clips] == ["train", "train", "validation", "test"]
    assert [c.instrument for c in clips] == [
        "clarinet", "distorted electric guitar", "piano", "violin"]
    assert [c.group for c in clips] == ["11", "11", "12", "13"]
    assert clips[0].path.parent == root  # audio beside the metadata
    assert clips[3].path.name.endswith(".wav.wav")  # the doubled extension is accepted
    assert all(c.dataset == "medley" and set(c.labels) == {"instrument"} for c in clips)


def test_medley_follows_a_symlinked_audio_folder_without_looping(tmp_path: Path) -> None:
    make_medley(tmp_path / "disk", GOOD_MEDLEY)
    root = tmp_path / "medley"
    root.mkdir()
    (root / "Medley-solos-DB_metadata.csv").symlink_to(
        tmp_path / "disk" / "Medley-solos-DB_metadata.csv")
    (root / "audio").symlink_to(tmp_path / "disk" / "audio", target_is_directory=True)
    (tmp_path / "disk" / "audio" / "loop").symlink_to(root, target_is_directory=True)
    clips, report = MedleyLoader().load(root)
    assert (report.found, report.used) == (4, 4)
    assert report.ok, report.summary()
    assert all(clip.path.parent == root / "audio" for clip in clips)


def test_medley_prefers_plain_wav_when_both_names_exist(tmp_path: Path) -> None:
    root = make_medley(tmp_path, GOOD_MEDLEY[:1])
    write_wav(root / "audio" / f"Medley-solos-DB_training-0_{UUIDS[0]}.wav.wav",
              rate=44100, frames=MEDLEY_FRAMES)
    clips, report = MedleyLoader().load(root)
    assert clips[0].path.name.endswith("f1a3.wav")
    assert "both .wav and .wav.wav" in " ".join(report.notes)


def test_medley_without_metadata_names_the_expected_file(tmp_path: Path) -> None:
    write_wav(tmp_path / f"Medley-solos-DB_training-0_{UUIDS[0]}.wav", rate=44100)
    with pytest.raises(DatasetError, match=r"Medley-solos-DB_metadata\.csv") as caught:
        MedleyLoader().load(tmp_path)
    assert "subset,instrument,instrument_id,song_id,uuid4" in str(caught.value)


def test_medley_names_missing_audio(tmp_path: Path) -> None:
    root = make_medley(tmp_path, GOOD_MEDLEY, skip_audio={UUIDS[2]})
    _clips, report = MedleyLoader().load(root)
    assert (report.found, report.used) == (4, 3)
    assert f"Medley-solos-DB_validation-4_{UUIDS[2]}.wav" in messages(report.missing)


def test_medley_names_id_name_mismatch_and_bad_ids(tmp_path: Path) -> None:
    rows = [
        *GOOD_MEDLEY[:1],
        ("training", "flute", 5, 20, UUIDS[4]),  # id 5 is tenor saxophone
        ("training", "trumpet", 9, 21, UUIDS[5]),
        ("train", "piano", 4, 22, "aaaa-bbbb"),
        ("test", "violin", 7, "x", "cccc-dddd"),
    ]
    _clips, report = MedleyLoader().load(make_medley(tmp_path, rows))
    assert (report.found, report.used) == (5, 1)
    text = messages(report.malformed)
    assert ("Medley-solos-DB_metadata.csv:3: instrument 'flute' does not match instrument_id 5 "
            "(which is 'tenor saxophone')") in text
    assert "instrument_id 9 is not 0..7" in text
    assert "subset 'train' is not one of training, validation, test" in text
    assert "song_id 'x' is not an integer id" in text


def test_medley_names_audio_in_the_wrong_format(tmp_path: Path) -> None:
    root = make_medley(tmp_path, GOOD_MEDLEY[:2])
    write_wav(root / "audio" / f"Medley-solos-DB_training-1_{UUIDS[1]}.wav", rate=22050,
              frames=65536)
    clips, report = MedleyLoader().load(root)
    assert [c.instrument for c in clips] == ["clarinet"]
    assert "expected mono 44100 Hz audio of 131072 samples" in messages(report.malformed)
    assert "at 22050 Hz" in messages(report.malformed)
    _clips, report = MedleyLoader(check_audio=False).load(root)
    assert report.used == 2


def test_medley_with_nothing_usable_fails_naming_the_problems(tmp_path: Path) -> None:
    root = make_medley(tmp_path, [("training", "piano", 0, 1, UUIDS[0])])
    with pytest.raises(DatasetError, match="no usable clip") as caught:
        MedleyLoader().load(root)
    assert "instrument 'piano' does not match instrument_id 0" in str(caught.value)
    assert "no metadata row" not in str(caught.value)  # its audio is accounted for


def test_medley_notes_audio_that_no_row_lists(tmp_path: Path) -> None:
    root = make_medley(tmp_path, GOOD_MEDLEY[:1])
    write_wav(root / "audio" / f"Medley-solos-DB_test-3_{UUIDS[5]}.wav", rate=44100)
    _clips, report = MedleyLoader().load(root)
    assert "1 Medley audio file(s) have no metadata row" in " ".join(report.notes)


def test_medley_notes_a_song_split_across_subsets(tmp_path: Path) -> None:
    rows = [("training", "piano", 4, 30, UUIDS[0]), ("test", "piano", 4, 30, UUIDS[1])]
    _clips, report = MedleyLoader().load(make_medley(tmp_path, rows))
    assert "song_id(s) 30 appear in more than one subset" in " ".join(report.notes)


# --- PMEmo 2019 --------------------------------------------------------------------------------


def make_pmemo(root: Path, static: str | None = None, dynamic: str | None = None,
               songs: tuple[int, ...] = (1, 4, 7)) -> Path:
    base = root / "PMEmo2019"
    for song in songs:
        write_mp3(base / "chorus" / f"{song}.mp3")
    if static is None:
        static = "musicId,Arousal(mean),Valence(mean)\n1,0.25,0.75\n4,1.0,0.0\n7,0.5,0.5\n"
    if dynamic is None:
        dynamic = (
            "musicId,frameTime,Arousal(mean),Valence(mean)\n"
            "1,15.5,0.25,1.0\n1,16.0,0.5,0.75\n1,16.5,0.75,0.5\n"
            "4,15.5,0.0,0.0\n4,16.0,0.1,0.2\n"
        )
    write_text(base / "annotations" / "static_annotations.csv", static)
    if dynamic:
        write_text(base / "annotations" / "dynamic_annotations.csv", dynamic)
    return root


def test_pmemo_maps_static_and_dynamic_ratings(tmp_path: Path) -> None:
    clips, report = PMEmoLoader(check_audio=CAN_WRITE_MP3).load(make_pmemo(tmp_path))
    assert (report.found, report.used) == (3, 3)
    assert report.ok, report.summary()
    first, second, third = clips
    assert (first.valence, first.arousal) == (0.5, -0.5)  # Valence 0.75, Arousal 0.25
    assert (second.valence, second.arousal) == (-1.0, 1.0)
    # (time as given, valence, arousal): the CSV lists arousal before valence
    assert first.dynamic == ((15.5, 1.0, -0.5), (16.0, 0.5, 0.0), (16.5, 0.0, 0.5))
    assert second.dynamic is not None and len(second.dynamic) == 2
    assert third.dynamic is None
    assert [c.group for c in clips] == ["1", "4", "7"]
    assert {c.split for c in clips} == {"train"}
    assert first.path == tmp_path / "PMEmo2019" / "chorus" / "1.mp3"


def test_pmemo_accepts_the_pmemo2019_folder_itself_as_root(tmp_path: Path) -> None:
    make_pmemo(tmp_path)
    clips, _ = PMEmoLoader(check_audio=CAN_WRITE_MP3).load(tmp_path / "PMEmo2019")
    assert len(clips) == 3


def test_pmemo_without_static_annotations_names_the_file(tmp_path: Path) -> None:
    write_mp3(tmp_path / "PMEmo2019" / "chorus" / "1.mp3")
    with pytest.raises(DatasetError, match=r"static_annotations\.csv") as caught:
        PMEmoLoader().load(tmp_path)
    assert "musicId,Arousal(mean),Valence(mean)" in str(caught.value)


def test_pmemo_without_chorus_folder_names_it(tmp_path: Path) -> None:
    write_text(tmp_path / "annotations" / "static_annotations.csv",
               "musicId,Arousal(mean),Valence(mean)\n1,0.5,0.5\n")
    with pytest.raises(DatasetError, match=r"audio folder not found.*chorus"):
        PMEmoLoader().load(tmp_path)


def test_pmemo_names_missing_columns(tmp_path: Path) -> None:
    make_pmemo(tmp_path, static="musicId,Arousal,Valence(mean)\n1,0.5,0.5\n")
    with pytest.raises(DatasetError, match=r"lacks column\(s\) Arousal\(mean\)"):
        PMEmoLoader().load(tmp_path)


def test_pmemo_names_missing_audio_and_dynamic_file(tmp_path: Path) -> None:
    make_pmemo(tmp_path, dynamic="", songs=(1, 4))
    clips, report = PMEmoLoader(check_audio=CAN_WRITE_MP3).load(tmp_path)
    assert (report.found, report.used) == (3, 2)
    assert "7.mp3: chorus audio for musicId 7" in messages(report.missing)
    assert "dynamic_annotations.csv" in messages(report.missing)
    assert all(c.dynamic is None for c in clips)


def test_pmemo_names_bad_numbers(tmp_path: Path) -> None:
    static = ("musicId,Arousal(mean),Valence(mean)\n1,0.25,0.75\n4,abc,0.5\n7,0.5,1.2\n"
              "1,0.5,0.5\nx,0.5,0.5\n")
    clips, report = PMEmoLoader(check_audio=CAN_WRITE_MP3).load(make_pmemo(tmp_path, static))
    text = messages(report.malformed)
    assert "static_annotations.csv:3: Arousal(mean) 'abc' is not a number" in text
    assert "static_annotations.csv:4: Valence(mean) 1.2 is outside 0..1" in text
    assert "static_annotations.csv:5: musicId 1 repeats line 2" in text
    assert "musicId 'x' is not an integer id" in text
    # song 4 keeps its dynamic labels; 7 has nothing usable left and is not returned
    assert [(c.group, c.valence is None) for c in clips] == [("1", False), ("4", True)]


def test_pmemo_drops_a_broken_dynamic_series_but_keeps_static_labels(tmp_path: Path) -> None:
    dynamic = ("musicId,frameTime,Arousal(mean),Valence(mean)\n"
               "1,15.5,0.5,0.5\n1,16.5,0.5,0.5\n"  # a gap
               "4,15.5,0.5,0.5\n4,16.0,0.5,nan\n")
    clips, report = PMEmoLoader(check_audio=CAN_WRITE_MP3).load(make_pmemo(tmp_path, None, dynamic))
    text = messages(report.malformed)
    assert ("dynamic_annotations.csv musicId 1: dynamic labels dropped: time jumps from 15.5 s "
            "to 16.5 s") in text
    assert "dynamic_annotations.csv:5: Valence(mean) 'nan' is not a finite number" in text
    assert report.used == 3
    assert all(c.dynamic is None and c.valence is not None for c in clips)


@needs_mp3
def test_pmemo_names_unreadable_audio(tmp_path: Path) -> None:
    make_pmemo(tmp_path)
    (tmp_path / "PMEmo2019" / "chorus" / "4.mp3").write_bytes(b"\0" * 64)
    _clips, report = PMEmoLoader().load(tmp_path)
    assert report.used == 2
    assert "4.mp3: audio cannot be read" in messages(report.malformed)


# --- DEAM --------------------------------------------------------------------------------------

DEAM_AVG = Path("DEAM_Annotations/annotations/annotations averaged per song")
DEAM_STATIC_1 = (
    "song_id, valence_mean, valence_std, arousal_mean, arousal_std\n"
    "2,9,0.9,1,0.7\n"
    "3,5,1.1,7,1.2\n"
)
# The 2015 file has more columns: arousal_mean is the 8th, so access by position would be wrong.
DEAM_STATIC_2 = (
    "song_id, valence_mean, valence_std, valence_max_mean, valence_max_std, valence_min_mean,"
    " valence_min_std, arousal_mean, arousal_std, arousal_max_mean, arousal_max_std,"
    " arousal_min_mean, arousal_min_std\n"
    "2001,3,1,8,1,2,1,6,1,9,1,1,1\n"
)
DEAM_COLUMNS = ",".join(f"sample_{ms}ms" for ms in range(15000, 17500, 500))
DEAM_AROUSAL = (
    f"song_id,{DEAM_COLUMNS}\n"
    "2,0.1,0.2,0.3,,\n"  # a 45 s excerpt: shorter row, empty trailing cells
    "3,-0.1,-0.2\n"  # a short row without trailing commas
    "2001,0.5,0.5,0.5,0.5,0.5\n"  # a full song: the longest row
)
DEAM_VALENCE = (
    f"song_id,{DEAM_COLUMNS}\n"
    "2,-0.4,-0.5,-0.6,,\n"
    "3,0.9,1.0\n"
    "2001,0,0,0,0,0\n"
)


def make_deam(root: Path, files: dict[str, str | None] | None = None,
              songs: tuple[int, ...] = (2, 3, 2001)) -> Path:
    content = {
        "static_annotations_averaged_songs_1_2000.csv": DEAM_STATIC_1,
        "static_annotations_averaged_songs_2000_2058.csv": DEAM_STATIC_2,
        "arousal.csv": DEAM_AROUSAL,
        "valence.csv": DEAM_VALENCE,
    }
    content.update(files or {})
    for name, text in content.items():
        if text is None:
            continue
        folder = "song_level" if name.startswith("static") else "dynamic (per second annotations)"
        write_text(root / DEAM_AVG / folder / name, text)
    for song in songs:
        write_mp3(root / "DEAM_audio" / "MEMD_audio" / f"{song}.mp3")
    return root


def test_deam_reads_the_nested_layout_with_spaced_headers(tmp_path: Path) -> None:
    clips, report = DEAMLoader(check_audio=CAN_WRITE_MP3).load(make_deam(tmp_path))
    assert (report.found, report.used) == (3, 3)
    assert report.ok, report.summary()
    by_song = {c.group: c for c in clips}
    assert (by_song["2"].valence, by_song["2"].arousal) == (1.0, -1.0)  # 9 and 1 on 1..9
    assert (by_song["3"].valence, by_song["3"].arousal) == (0.0, 0.5)
    assert (by_song["2001"].valence, by_song["2001"].arousal) == (-0.5, 0.25)  # 3 and 6
    assert {g: c.split for g, c in by_song.items()} == {"2": "train", "3": "train",
                                                        "2001": "test"}
    assert by_song["2"].path == tmp_path / "DEAM_audio" / "MEMD_audio" / "2.mp3"


def test_deam_dynamic_rows_of_unequal_length_keep_their_own_length(tmp_path: Path) -> None:
    clips, _ = DEAMLoader(check_audio=CAN_WRITE_MP3).load(make_deam(tmp_path))
    by_song = {c.group: c for c in clips}
    assert by_song["2"].dynamic == ((15.0, -0.4, 0.1), (15.5, -0.5, 0.2), (16.0, -0.6, 0.3))
    assert by_song["3"].dynamic == ((15.0, 0.9, -0.1), (15.5, 1.0, -0.2))
    assert by_song["2001"].dynamic is not None and len(by_song["2001"].dynamic) == 5
    assert by_song["2001"].dynamic[-1] == (17.0, 0.0, 0.5)


def test_deam_names_a_length_mismatch_between_arousal_and_valence(tmp_path: Path) -> None:
    valence = DEAM_VALENCE.replace("2,-0.4,-0.5,-0.6,,", "2,-0.4,,,,")
    clips, report = DEAMLoader(check_audio=CAN_WRITE_MP3).load(
        make_deam(tmp_path, {"valence.csv": valence}))
    assert ("DEAM dynamic song_id 2: arousal has 3 frames, valence 1: only the first 1 are kept"
            in messages(report.malformed))
    assert {c.group: c for c in clips}["2"].dynamic == ((15.0, -0.4, 0.1),)


def test_deam_names_holes_and_bad_values_in_dynamic_rows(tmp_path: Path) -> None:
    arousal = (f"song_id,{DEAM_COLUMNS}\n"
               "2,0.1,,0.3,,\n"  # a hole
               "3,-0.1,1.5\n"  # out of range
               "2001,0.5,0.5,0.5,0.5,0.5,0.5\n")  # one cell beyond the header
    clips, report = DEAMLoader(check_audio=CAN_WRITE_MP3).load(
        make_deam(tmp_path, {"arousal.csv": arousal}))
    text = messages(report.malformed)
    assert ("arousal.csv:2: dynamic arousal dropped: sample_16000ms has a value after the empty "
            "cell sample_15500ms") in text
    assert "arousal.csv:3: dynamic arousal dropped: arousal sample_15500ms 1.5 is outside" in text
    assert "arousal.csv:4: dynamic arousal dropped: row has 1 cell(s) beyond the header" in text
    assert "song_id 2: dynamic labels dropped: no row in arousal.csv" in text
    assert report.used == 3  # static labels remain
    assert all(c.dynamic is None for c in clips)


def test_deam_names_bad_static_numbers(tmp_path: Path) -> None:
    static = ("song_id, valence_mean, valence_std, arousal_mean, arousal_std\n"
              "2,0.5,0.9,1,0.7\n3,5,1.1,seven,1.2\n")
    clips, report = DEAMLoader(check_audio=CAN_WRITE_MP3).load(make_deam(
        tmp_path, {"static_annotations_averaged_songs_1_2000.csv": static}))
    text = messages(report.malformed)
    name = "static_annotations_averaged_songs_1_2000.csv"
    assert f"{name}:2: valence_mean 0.5 is outside 1..9" in text
    assert f"{name}:3: arousal_mean 'seven' is not a number" in text
    assert {c.group: c.valence for c in clips} == {"2": None, "3": None, "2001": -0.5}


def test_deam_names_a_static_file_that_lacks_a_column(tmp_path: Path) -> None:
    static = "song_id, valence_mean, valence_std\n2,5,1\n"
    with pytest.raises(DatasetError, match=r"lacks column\(s\) arousal_mean"):
        DEAMLoader().load(make_deam(tmp_path, {"static_annotations_averaged_songs_1_2000.csv":
                                               static}))


def test_deam_names_a_bad_dynamic_header(tmp_path: Path) -> None:
    arousal = "song_id,sample_15000ms,sample_16000ms\n2,0.1,0.2\n"
    with pytest.raises(DatasetError, match=r"arousal.csv: header time jumps from 15 s to 16 s"):
        DEAMLoader().load(make_deam(tmp_path, {"arousal.csv": arousal}))
    arousal = "song_id,sample_15000ms,t15500\n2,0.1,0.2\n"
    with pytest.raises(DatasetError, match=r"column 't15500' is not sample_<milliseconds>ms"):
        DEAMLoader().load(make_deam(tmp_path, {"arousal.csv": arousal}))


def test_deam_names_absent_files_and_missing_audio(tmp_path: Path) -> None:
    make_deam(tmp_path, {"static_annotations_averaged_songs_2000_2058.csv": None,
                         "valence.csv": None}, songs=(2,))
    clips, report = DEAMLoader(check_audio=CAN_WRITE_MP3).load(tmp_path)
    text = messages(report.missing)
    assert "static_annotations_averaged_songs_2000_2058.csv: static annotations absent" in text
    assert "valence.csv: dynamic annotations absent" in text
    assert "3.mp3: audio for song_id 3" in text
    assert [c.group for c in clips] == ["2"]
    assert clips[0].dynamic is None  # arousal alone is not a dynamic label


def test_deam_without_annotations_or_audio_folder_fails_naming_them(tmp_path: Path) -> None:
    write_mp3(tmp_path / "MEMD_audio" / "2.mp3")
    with pytest.raises(DatasetError, match=r"static_annotations_averaged_songs_1_2000\.csv"):
        DEAMLoader().load(tmp_path)
    other = tmp_path / "other"
    make_deam(other, songs=())
    with pytest.raises(DatasetError, match="MEMD_audio"):
        DEAMLoader().load(other)


# --- Freesound One-Shot Percussive Sounds ------------------------------------------------------


def analysis(**overrides: object) -> str:
    values: dict[str, object] = {"duration": 0.35, "samplerate": 16000.0, "reverb": False,
                                 "hardness": 63.75, "depth": 44.4, "brightness": 72.8,
                                 "roughness": 69.5, "warmth": 35.0, "sharpness": 61.0,
                                 "boominess": 23.6}
    values.update(overrides)
    return json.dumps({k: v for k, v in values.items() if v is not None})


def make_freesound(root: Path, sounds: dict[str, str | None]) -> Path:
    """``sounds[id]`` is the analysis JSON text, or None for audio without analysis."""
    for index, (sound_id, text) in enumerate(sounds.items()):
        folder = str(index % 2 + 1)
        write_wav(root / "one_shot_percussive_sounds" / folder / f"{sound_id}.wav")
        if text is not None:
            write_text(root / "analysis" / folder / f"{sound_id}_analysis.json", text)
    return root


def test_freesound_pairs_by_id_and_maps_timbre(tmp_path: Path) -> None:
    root = make_freesound(tmp_path, {"183": analysis(), "184": analysis(hardness=150.0,
                                                                       depth=-2.0)})
    clips, report = FreesoundOneShotLoader().load(root)
    assert (report.found, report.used) == (2, 2)
    assert report.ok, report.summary()
    assert clips[0].timbre == pytest.approx({"hardness": 0.6375, "depth": 0.444,
                                             "brightness": 0.728, "roughness": 0.695,
                                             "warmth": 0.35, "sharpness": 0.61,
                                             "boominess": 0.236})
    assert (clips[1].timbre["hardness"], clips[1].timbre["depth"]) == (1.0, 0.0)
    assert "2 timbral value(s) outside the nominal 0..100 were clipped" in " ".join(report.notes)
    assert [c.group for c in clips] == ["183", "184"]
    assert {c.split for c in clips} == {"train"}


def test_freesound_names_unpaired_ids(tmp_path: Path) -> None:
    root = make_freesound(tmp_path, {"183": analysis(), "185": None})
    write_text(root / "analysis" / "2" / "186_analysis.json", analysis())
    _clips, report = FreesoundOneShotLoader().load(root)
    assert (report.found, report.used) == (3, 1)
    text = messages(report.missing)
    assert "185_analysis.json: analysis for" in text
    assert "186.wav: audio for" in text


def test_freesound_names_missing_keys_and_bad_values(tmp_path: Path) -> None:
    root = make_freesound(tmp_path, {
        "1": analysis(),
        "2": analysis(boominess=None, warmth=None),
        "3": analysis(hardness="loud"),
        "4": analysis(depth=float("nan")),
        "5": "{not json",
        "6": "[1, 2]",
        "7": analysis(sharpness=True),
    })
    _clips, report = FreesoundOneShotLoader().load(root)
    assert report.used == 1
    text = messages(report.malformed)
    assert "2_analysis.json: analysis lacks timbral key(s) warmth, boominess" in text
    assert "3_analysis.json: hardness 'loud' is not a number" in text
    assert "4_analysis.json: depth nan is not a finite number" in text
    assert "5_analysis.json: analysis cannot be read as JSON" in text
    assert "6_analysis.json: analysis is a JSON list, expected an object" in text
    assert "7_analysis.json: sharpness True is not a number" in text


def test_freesound_without_its_folders_names_them(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="one_shot_percussive_sounds"):
        FreesoundOneShotLoader().load(tmp_path)
    write_wav(tmp_path / "one_shot_percussive_sounds" / "1" / "183.wav")
    with pytest.raises(DatasetError, match=r"analysis folder not found.*_analysis.json"):
        FreesoundOneShotLoader().load(tmp_path)


def test_freesound_names_unreadable_audio(tmp_path: Path) -> None:
    root = make_freesound(tmp_path, {"183": analysis(), "184": analysis()})
    (root / "one_shot_percussive_sounds" / "2" / "184.wav").write_bytes(b"RIFF....")
    _clips, report = FreesoundOneShotLoader().load(root)
    assert report.used == 1
    assert "184.wav: audio cannot be read" in messages(report.malformed)


# --- generic -----------------------------------------------------------------------------------

TIMBRE_HEADER = ",".join(TIMBRE_NAMES)


def make_generic(root: Path, csv_text: str, audio: tuple[str, ...] = ("a.wav", "sub/b.wav",
                                                                      "c.wav")) -> Path:
    for name in audio:
        write_wav(root / name)
    write_text(root / "labels.csv", csv_text)
    return root


def test_generic_reads_every_label_kind(tmp_path: Path) -> None:
    csv_text = (
        f"file,instrument,valence,arousal,{TIMBRE_HEADER},tags,split,group\n"
        "a.wav,violin,0.4,-0.2,,,,,,,,calm; legato,,session1\n"
        f"sub/b.wav,,,,{','.join(['0.5'] * 7)},,validation,\n"
        "c.wav,,-1,1,,,,,,,,,test,session1\n"
    )
    clips, report = GenericLoader().load(make_generic(tmp_path, csv_text))
    assert (report.found, report.used) == (3, 3)
    assert report.ok, report.summary()
    a, b, c = clips
    assert (a.instrument, a.valence, a.arousal, a.tags) == ("violin", 0.4, -0.2,
                                                            ("calm", "legato"))
    assert a.timbre is None and a.split == "train" and a.group == "session1"
    assert b.timbre == {name: 0.5 for name in TIMBRE_NAMES}
    assert (b.split, b.group, b.path) == ("validation", "sub/b.wav", tmp_path / "sub" / "b.wav")
    assert (c.valence, c.arousal, c.split) == (-1.0, 1.0, "test")


def test_generic_accepts_the_csv_path_as_root(tmp_path: Path) -> None:
    make_generic(tmp_path, "file,tags\na.wav,kick\n")
    clips, _ = load_dataset("generic", tmp_path / "labels.csv")
    assert clips[0].tags == ("kick",)


def test_generic_names_out_of_range_and_malformed_rows(tmp_path: Path) -> None:
    csv_text = (
        f"file,instrument,valence,arousal,{TIMBRE_HEADER},split\n"
        "a.wav,,1.5,,,,,,,,,\n"
        f"sub/b.wav,,,,0.5,0.5,1.2,0.5,0.5,0.5,0.5,\n"
        "c.wav,,,,0.5,,,,,,,\n"
        "a.wav,piano,,,,,,,,,,\n"
        "/abs/d.wav,piano,,,,,,,,,,\n"
        "e.wav,,,,,,,,,,,\n"
        "f.wav,piano,,,,,,,,,,training\n"
        "g.wav,piano,x,,,,,,,,,\n"
        "h.wav,piano,,,,,,,,,,,extra\n"
    )
    with pytest.raises(DatasetError, match="no usable clip") as caught:
        GenericLoader().load(make_generic(tmp_path, csv_text))
    text = str(caught.value)
    assert "labels.csv:2: valence 1.5 is outside -1..1" in text
    assert "labels.csv:3: roughness 1.2 is outside 0..1" in text
    assert ("labels.csv:4: timbre needs all seven values; empty: warmth, roughness, sharpness, "
            "boominess, depth, hardness") in text
    assert "labels.csv:5: file a.wav repeats line 2" in text
    assert "labels.csv:6: file '/abs/d.wav' must be relative" in text
    assert "labels.csv:7: row has no label" in text
    assert "labels.csv:8: split 'training' is not one of train, validation, test" in text
    assert "labels.csv:9: valence 'x' is not a number" in text
    assert "labels.csv:10: row has 1 cell(s) beyond the header" in text


def test_generic_names_missing_audio_and_keeps_the_rest(tmp_path: Path) -> None:
    root = make_generic(tmp_path, "file,instrument\na.wav,kick\nnope.wav,snare\n")
    _clips, report = GenericLoader().load(root)
    assert (report.found, report.used) == (2, 1)
    assert "nope.wav: audio listed at labels.csv:3" in messages(report.missing)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("file,valance\n", r"unknown column\(s\) valance"),
        ("file,split\n", "no label column"),
        ("file,hardness,depth\n", "timbre columns come all seven or none; missing brightness"),
        ("name,valence\n", r"lacks column\(s\) file"),
    ],
)
def test_generic_refuses_a_wrong_header(tmp_path: Path, header: str, words: str) -> None:
    with pytest.raises(DatasetError, match=words):
        GenericLoader().load(make_generic(tmp_path, header + "a.wav,0.1\n"))


def test_generic_without_labels_csv_names_it(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav")
    with pytest.raises(DatasetError, match=r"labels.csv.*'file' column"):
        GenericLoader().load(tmp_path)


def test_load_report_summary_lists_problems(tmp_path: Path) -> None:
    report = LoadReport("x", tmp_path, found=3, used=1)
    report.add_missing("a.wav", "audio")
    report.add_malformed("labels.csv:2", "bad")
    report.notes.append("something")
    text = report.summary()
    assert "found 3, used 1, missing 1, malformed 1" in text
    assert "missing: a.wav: audio" in text and "malformed: labels.csv:2: bad" in text
    assert not report.ok
