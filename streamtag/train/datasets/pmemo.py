"""PMEmo 2019 (Zhang et al. 2018): chorus excerpts of 794 pop songs with valence/arousal ratings.

Layout as distributed (the ``PMEmo2019`` folder; the root may be that folder or any parent)::

    PMEmo2019/chorus/{musicId}.mp3
    PMEmo2019/annotations/static_annotations.csv    musicId,Arousal(mean),Valence(mean)
    PMEmo2019/annotations/dynamic_annotations.csv   musicId,frameTime,Arousal(mean),Valence(mean)

Ratings are means in [0, 1], mapped to [-1, 1] by ``scales.pmemo_emotion``. Dynamic ratings come
every 0.5 s from ``frameTime`` 15.5 s; ``frameTime`` is seconds from the start of the chorus file
and is kept as given, so a dynamic frame's time is a position in the clip's own audio.

What is checked: ``static_annotations.csv`` exists (else ``DatasetError``); ids are integers and
not repeated; every rating is a number in [0, 1]; each song's dynamic frames lie on the 0.5 s grid
with no gap or repeat (a song whose series breaks loses its dynamic labels, not its static ones);
the chorus file exists and is readable. A missing ``dynamic_annotations.csv`` is reported and the
clips keep their static labels.

``found`` counts distinct musicIds in the two annotation files. PMEmo has no official split:
every clip is ``"train"`` and ``group`` is the musicId.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamtag.errors import DatasetError
from streamtag.train.datasets import scales
from streamtag.train.datasets.base import (
    Clip,
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

STATIC_NAME = "static_annotations.csv"
DYNAMIC_NAME = "dynamic_annotations.csv"
STATIC_COLUMNS = ("musicId", "Arousal(mean)", "Valence(mean)")
DYNAMIC_COLUMNS = ("musicId", "frameTime", "Arousal(mean)", "Valence(mean)")

@dataclass(frozen=True)
class PMEmoLoader:
    """Loads PMEmo 2019; ``check_audio=False`` skips reading each file's header."""

    check_audio: bool = True
    name: str = "pmemo"

    def load(self, root: Path) -> tuple[list[Clip], LoadReport]:
        """Read both annotation files and pair each song with its chorus MP3."""
        root = require_root(root, self.name, "PMEmo2019/annotations and PMEmo2019/chorus")
        static_path = pick_one(
            find_paths(root, [STATIC_NAME])[STATIC_NAME],
            f"PMEmo {STATIC_NAME} files",
            prefer=lambda path: path.parent.name == "annotations",
        )
        if static_path is None:
            raise DatasetError(
                f"PMEmo annotations not found: expected {root / 'annotations' / STATIC_NAME} "
                f"(columns {','.join(STATIC_COLUMNS)}) in {root} or below"
            )
        base = static_path.parent.parent
        chorus = base / "chorus"
        if not chorus.is_dir():
            raise DatasetError(
                f"PMEmo audio folder not found: expected {chorus} holding {{musicId}}.mp3 files"
            )
        report = LoadReport(self.name, root)
        listed: set[str] = set()

        static = self._read_static(static_path, report, listed)
        dynamic_path = static_path.parent / DYNAMIC_NAME
        if dynamic_path.is_file():
            dynamic = self._read_dynamic(dynamic_path, report, listed)
        else:
            dynamic = {}
            report.add_missing(dynamic_path, "dynamic annotations absent: no per-0.5 s labels")

        clips: list[Clip] = []
        for music_id in sorted(set(static) | set(dynamic), key=id_sort_key):
            path = chorus / f"{music_id}.mp3"
            if not path.is_file():
                report.add_missing(path, f"chorus audio for musicId {music_id}")
                continue
            if self.check_audio:
                header = probe_audio(path)
                if isinstance(header, str):
                    report.add_malformed(path, header)
                    continue
            valence, arousal = static.get(music_id, (None, None))
            clips.append(
                Clip(path=path, dataset=self.name, split="train", group=music_id,
                     valence=valence, arousal=arousal, dynamic=dynamic.get(music_id))
            )
        report.found = len(listed)
        labelled = {f"{music_id}.mp3" for music_id in listed}
        stray = sorted(p.name for p in chorus.glob("*.mp3") if p.name not in labelled)
        if stray:
            report.notes.append(
                f"{len(stray)} chorus file(s) have no annotation and are ignored (e.g. {stray[0]})"
            )
        report.notes.append("PMEmo has no official split: every clip is 'train'")
        return finish(clips, report)

    def _read_static(
        self, path: Path, report: LoadReport, listed: set[str]
    ) -> dict[str, tuple[float, float]]:
        """musicId → (valence, arousal) in [-1, 1] from the static file."""
        table = read_csv(path, STATIC_COLUMNS, "PMEmo static annotations")
        result: dict[str, tuple[float, float]] = {}
        first_line: dict[str, int] = {}
        for line, row, _extra in table.records():
            where = table.where(line)
            try:
                music_id = parse_id(row["musicId"], "musicId")
                listed.add(music_id)
                if music_id in first_line:
                    raise ValueError(f"musicId {music_id} repeats line {first_line[music_id]}")
                first_line[music_id] = line
                arousal = _rating(row, "Arousal(mean)")
                valence = _rating(row, "Valence(mean)")
            except ValueError as exc:
                report.add_malformed(where, str(exc))
                continue
            result[music_id] = (valence, arousal)
        return result

    def _read_dynamic(
        self, path: Path, report: LoadReport, listed: set[str]
    ) -> dict[str, tuple[Frame, ...]]:
        """musicId → per-0.5 s frames (time [s], valence, arousal) from the dynamic file."""
        table = read_csv(path, DYNAMIC_COLUMNS, "PMEmo dynamic annotations")
        series: dict[str, list[tuple[int, Frame]]] = {}
        broken: dict[str, str] = {}
        for line, row, _extra in table.records():
            where = table.where(line)
            try:
                music_id = parse_id(row["musicId"], "musicId")
            except ValueError as exc:
                report.add_malformed(where, str(exc))
                continue
            listed.add(music_id)
            if music_id in broken:
                continue
            try:
                time_s = parse_number(row["frameTime"], "frameTime")
                arousal = _rating(row, "Arousal(mean)")
                valence = _rating(row, "Valence(mean)")
            except ValueError as exc:
                broken[music_id] = f"{where}: {exc}"
                continue
            series.setdefault(music_id, []).append((line, (time_s, valence, arousal)))

        result: dict[str, tuple[Frame, ...]] = {}
        for music_id, rows in series.items():
            if music_id not in broken:
                frames = sorted(frame for _, frame in rows)
                problem = grid_problem([t for t, _, _ in frames])
                if problem is None:
                    result[music_id] = tuple(frames)
                    continue
                broken[music_id] = problem
        for music_id, problem in sorted(broken.items(), key=lambda item: id_sort_key(item[0])):
            report.add_malformed(
                f"{path.name} musicId {music_id}", f"dynamic labels dropped: {problem}"
            )
        return result


def _rating(row: dict[str, str], column: str) -> float:
    """A PMEmo rating cell on streamtag's scale; ValueError naming the column."""
    return scales.pmemo_emotion(parse_number(row[column], column), column)
