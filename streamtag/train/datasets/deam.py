"""DEAM, the MediaEval Database for Emotional Analysis in Music (Aljanaki et al. 2017): 1 802 songs.

Layout as distributed (``DEAM_audio.zip`` and ``DEAM_Annotations.zip`` unpacked anywhere under the
root; files are found by name, so extra ``DEAM_Annotations/`` or ``DEAM_audio/`` levels are fine)::

    MEMD_audio/{song_id}.mp3
    annotations/annotations averaged per song/song_level/
        static_annotations_averaged_songs_1_2000.csv
        static_annotations_averaged_songs_2000_2058.csv
    annotations/annotations averaged per song/dynamic (per second annotations)/
        arousal.csv
        valence.csv

Static files: one row per song with columns named ``song_id, valence_mean, …, arousal_mean, …``;
the header names carry leading spaces (stripped here) and the 2000_2058 file has more columns than
the 1_2000 one, so columns are found by name. Values are 9-point means in [1, 9], mapped to
[-1, 1] by ``scales.deam_static_emotion``.

Dynamic files: ``song_id,sample_15000ms,sample_15500ms,…`` with one value in [-1, 1] per 0.5 s.
Rows have unequal lengths (the 2015 songs are whole songs): a row ends at its first empty cell.
``sample_Nms`` is N ms from the start of the song's MP3 and becomes the frame time.

What is checked: the audio folder and at least one annotation file exist (else ``DatasetError``);
header columns exist and the dynamic ones are ``sample_<ms>ms`` every 500 ms; ids are integers,
not repeated; every value is a number in range; a dynamic row has no hole (a value after an empty
cell) and no cell beyond the header; each song's arousal and valence series have the same length
(else only the common part is kept, reported); the MP3 exists and is readable. Annotation files
that are absent are reported and the clips carry what the rest provide.

``found`` counts distinct song ids across the annotation files. Splits follow MediaEval 2015:
songs 1–2000 (the 2013 and 2014 sets) are ``"train"``, songs 2001–2058 (the 2015 evaluation set,
full songs) are ``"test"``. ``group`` is the song id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from streamtag.errors import DatasetError
from streamtag.train.datasets import scales
from streamtag.train.datasets.base import (
    Clip,
    CsvTable,
    Frame,
    LoadReport,
    find_paths,
    finish,
    grid_problem,
    id_sort_key,
    parse_id,
    parse_number,
    pick_one,
    probe_audio,
    read_csv,
    require_root,
)

AUDIO_DIR = "MEMD_audio"
STATIC_NAMES = (
    "static_annotations_averaged_songs_1_2000.csv",
    "static_annotations_averaged_songs_2000_2058.csv",
)
STATIC_COLUMNS = ("song_id", "valence_mean", "arousal_mean")
DYNAMIC_NAMES = ("arousal.csv", "valence.csv")
STATIC_DIR_HINT = "annotations/annotations averaged per song/song_level"
DYNAMIC_DIR_HINT = "annotations/annotations averaged per song/dynamic (per second annotations)"
LAST_TRAIN_SONG = 2000
"""Songs above this id form the MediaEval 2015 evaluation set (streamtag's ``"test"``)."""

_SAMPLE_COLUMN = re.compile(r"^sample_(\d+)ms$")


def _is_averaged(path: Path) -> bool:
    """True for the per-song averaged dynamic files, not per-rater ones."""
    return path.parent.name.startswith("dynamic") and "per each rater" not in str(path)


@dataclass(frozen=True)
class DEAMLoader:
    """Loads DEAM; ``check_audio=False`` skips reading each file's header."""

    check_audio: bool = True
    name: str = "deam"

    def load(self, root: Path) -> tuple[list[Clip], LoadReport]:
        """Read the static and dynamic annotations and pair each song with its MP3."""
        root = require_root(root, self.name, f"{AUDIO_DIR}/ and the DEAM annotations")
        files = find_paths(root, [*STATIC_NAMES, *DYNAMIC_NAMES])
        audio_dir = pick_one(find_paths(root, [AUDIO_DIR], dirs=True)[AUDIO_DIR],
                             f"{AUDIO_DIR} folders")
        if audio_dir is None:
            raise DatasetError(
                f"DEAM audio folder not found: expected a {AUDIO_DIR} folder holding "
                f"{{song_id}}.mp3 files in {root} or below"
            )
        statics = [pick_one(files[name], f"DEAM {name} files") for name in STATIC_NAMES]
        arousal_path, valence_path = (
            pick_one(files[name], f"DEAM dynamic {name} files", prefer=_is_averaged)
            for name in DYNAMIC_NAMES
        )
        if not any(statics) and not (arousal_path or valence_path):
            expected = [f"{STATIC_DIR_HINT}/{name}" for name in STATIC_NAMES]
            expected += [f"{DYNAMIC_DIR_HINT}/{name}" for name in DYNAMIC_NAMES]
            raise DatasetError(
                f"DEAM annotations not found in {root} or below: expected any of "
                + "; ".join(expected)
            )

        report = LoadReport(self.name, root)
        listed: set[str] = set()
        static: dict[str, tuple[float, float]] = {}
        static_line: dict[str, str] = {}
        for name, path in zip(STATIC_NAMES, statics, strict=True):
            if path is None:
                report.add_missing(f"{STATIC_DIR_HINT}/{name}", "static annotations absent")
                continue
            self._read_static(path, report, listed, static, static_line)

        series: dict[str, dict[str, tuple[Frame, ...]]] = {}
        for name, path in zip(DYNAMIC_NAMES, (arousal_path, valence_path), strict=True):
            if path is None:
                report.add_missing(
                    f"{DYNAMIC_DIR_HINT}/{name}", "dynamic annotations absent: no per-0.5 s labels"
                )
                continue
            series[name] = _read_dynamic(path, report, listed)
        dynamic = _pair_dynamic(series, report) if len(series) == 2 else {}

        clips: list[Clip] = []
        for song in sorted(set(static) | set(dynamic), key=id_sort_key):
            path = audio_dir / f"{song}.mp3"
            if not path.is_file():
                report.add_missing(path, f"audio for song_id {song}")
                continue
            if self.check_audio:
                header = probe_audio(path)
                if isinstance(header, str):
                    report.add_malformed(path, header)
                    continue
            valence, arousal = static.get(song, (None, None))
            split = "test" if int(song) > LAST_TRAIN_SONG else "train"
            clips.append(
                Clip(path=path, dataset=self.name, split=split, group=song,
                     valence=valence, arousal=arousal, dynamic=dynamic.get(song))
            )
        report.found = len(listed)
        labelled = {f"{song}.mp3" for song in listed}
        stray = sorted(p.name for p in audio_dir.glob("*.mp3") if p.name not in labelled)
        if stray:
            report.notes.append(
                f"{len(stray)} file(s) in {AUDIO_DIR} have no annotation and are ignored "
                f"(e.g. {stray[0]})"
            )
        return finish(clips, report)

    def _read_static(
        self,
        path: Path,
        report: LoadReport,
        listed: set[str],
        static: dict[str, tuple[float, float]],
        first_seen: dict[str, str],
    ) -> None:
        """Add song_id → (valence, arousal) in [-1, 1] from one static file to ``static``."""
        table = read_csv(path, STATIC_COLUMNS, "DEAM static annotations")
        for line, row, _extra in table.records():
            where = table.where(line)
            try:
                song = parse_id(row["song_id"], "song_id")
                listed.add(song)
                if song in first_seen:
                    raise ValueError(f"song_id {song} repeats {first_seen[song]}")
                first_seen[song] = where
                valence = scales.deam_static_emotion(
                    parse_number(row["valence_mean"], "valence_mean"), "valence_mean"
                )
                arousal = scales.deam_static_emotion(
                    parse_number(row["arousal_mean"], "arousal_mean"), "arousal_mean"
                )
            except ValueError as exc:
                report.add_malformed(where, str(exc))
                continue
            static[song] = (valence, arousal)


def _sample_times(table: CsvTable) -> list[float]:
    """Frame times [s] of a dynamic file's ``sample_<ms>ms`` columns, checked."""
    if table.header[0] != "song_id":
        raise DatasetError(
            f"DEAM dynamic annotations {table.path}: first column is {table.header[0]!r}, "
            "expected song_id"
        )
    times = []
    for column in table.header[1:]:
        match = _SAMPLE_COLUMN.match(column)
        if match is None:
            raise DatasetError(
                f"DEAM dynamic annotations {table.path}: column {column!r} is not "
                "sample_<milliseconds>ms"
            )
        times.append(int(match[1]) / 1000.0)
    problem = grid_problem(times) if times else "no sample_<ms>ms column"
    if problem:
        raise DatasetError(f"DEAM dynamic annotations {table.path}: header {problem}")
    return times


def _read_dynamic(path: Path, report: LoadReport, listed: set[str]) -> dict[str, tuple[Frame, ...]]:
    """song_id → frames (time [s], value, value) of one dynamic file.

    Both value slots hold this file's dimension; ``_pair_dynamic`` combines the two files.
    """
    table = read_csv(path, ["song_id"], "DEAM dynamic annotations")
    times = _sample_times(table)
    dimension = path.stem
    result: dict[str, tuple[Frame, ...]] = {}
    for line, row, extra in table.records():
        where = table.where(line)
        try:
            song = parse_id(row["song_id"], "song_id")
        except ValueError as exc:
            report.add_malformed(where, str(exc))
            continue
        listed.add(song)
        try:
            if song in result:
                raise ValueError(f"song_id {song} appears twice")
            if any(extra):
                raise ValueError(f"row has {len(extra)} cell(s) beyond the header")
            values = _row_values(row, table.header[1:], dimension)
        except ValueError as exc:
            report.add_malformed(where, f"dynamic {dimension} dropped: {exc}")
            continue
        result[song] = tuple((t, v, v) for t, v in zip(times, values, strict=False))
    return result


def _row_values(row: dict[str, str], columns: tuple[str, ...], dimension: str) -> list[float]:
    """A dynamic row's values up to its first empty cell; ValueError on a hole or bad value."""
    values: list[float] = []
    ended_at: str | None = None
    for column in columns:
        cell = row[column]
        if not cell:
            ended_at = ended_at or column
            continue
        if ended_at is not None:
            raise ValueError(f"{column} has a value after the empty cell {ended_at}")
        values.append(
            scales.deam_dynamic_emotion(parse_number(cell, column), f"{dimension} {column}")
        )
    if not values:
        raise ValueError("row holds no value")
    return values


def _pair_dynamic(
    series: dict[str, dict[str, tuple[Frame, ...]]], report: LoadReport
) -> dict[str, tuple[Frame, ...]]:
    """Combine arousal and valence series into (time, valence, arousal) frames per song."""
    arousal, valence = series["arousal.csv"], series["valence.csv"]
    result: dict[str, tuple[Frame, ...]] = {}
    for song in sorted(set(arousal) | set(valence), key=id_sort_key):
        where = f"DEAM dynamic song_id {song}"
        if song not in valence or song not in arousal:
            lacking = "valence.csv" if song not in valence else "arousal.csv"
            report.add_malformed(where, f"dynamic labels dropped: no row in {lacking}")
            continue
        a_frames, v_frames = arousal[song], valence[song]
        if len(a_frames) != len(v_frames):
            report.add_malformed(
                where,
                f"arousal has {len(a_frames)} frames, valence {len(v_frames)}: "
                f"only the first {min(len(a_frames), len(v_frames))} are kept",
            )
        result[song] = tuple(
            (t, v, a) for (t, a, _), (_, v, _) in zip(a_frames, v_frames, strict=False)
        )
    return result
