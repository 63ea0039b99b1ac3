"""Your own labelled recordings: a folder of audio files and one CSV that labels them.

Format
------
Put a CSV named ``labels.csv`` in the folder (or pass the CSV's own path as the root). The first
line names the columns; only ``file`` is required, every other column is optional::

    file,instrument,valence,arousal,tags,split,group
    takes/violin_01.wav,violin,0.4,-0.2,calm;legato,train,session1
    takes/violin_02.wav,violin,,,,validation,session1
    hits/snare.flac,,,,,train,
    ...

========== ==================================================================================
column     meaning
========== ==================================================================================
file       audio path relative to the CSV's folder (any format libsndfile reads: WAV, FLAC,
           OGG, MP3, …)
instrument class name, free text (e.g. ``violin``)
valence    static valence of the whole file, in [-1, 1] (−1 unpleasant … +1 pleasant)
arousal    static arousal of the whole file, in [-1, 1] (−1 calm … +1 energetic)
hardness,  the seven AudioCommons timbral descriptors, each in [0, 1]; a file gives all seven
depth, …   or none: ``hardness, depth, brightness, roughness, warmth, sharpness, boominess``
tags       tags separated by ``;`` (``calm;legato``)
split      ``train``, ``validation`` or ``test``; empty means ``train``
group      the recording or piece the file comes from, so that takes of one piece stay in one
           split; empty means the file itself
========== ==================================================================================

An empty cell means "no label for that head". A row needs at least one label. Values are on
streamtag's scales already: nothing is rescaled, and a value out of range is an error naming the
row and column (the row is skipped). Unknown column names are refused (a typo such as ``valance``
would otherwise drop labels silently), as is a header giving only some timbre columns.

``found`` counts data rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from streamtag.errors import DatasetError
from streamtag.train.datasets import scales
from streamtag.train.datasets.base import (
    SPLITS,
    TIMBRE_NAMES,
    Clip,
    LoadReport,
    finish,
    parse_number,
    probe_audio,
    read_csv,
)

CSV_NAME = "labels.csv"
LABEL_COLUMNS = ("instrument", "valence", "arousal", *TIMBRE_NAMES, "tags")
COLUMNS = ("file", *LABEL_COLUMNS, "split", "group")
TAG_SEPARATOR = ";"


@dataclass(frozen=True)
class GenericLoader:
    """Loads a folder of recordings labelled by a CSV (see the module docstring for the format).

    ``csv_name`` is the CSV looked for in the root; ``name`` becomes ``Clip.dataset``;
    ``check_audio=False`` skips reading each file's header.
    """

    check_audio: bool = True
    name: str = "generic"
    csv_name: str = CSV_NAME

    def load(self, root: Path) -> tuple[list[Clip], LoadReport]:
        """Read the CSV and check every row; ``root`` is the folder or the CSV itself."""
        root = Path(root)
        csv_path = root if root.is_file() else root / self.csv_name
        if not root.exists():
            raise DatasetError(
                f"{self.name} dataset folder not found: {root} does not exist "
                f"(expected a folder holding {self.csv_name} and the audio it lists)"
            )
        if not csv_path.is_file():
            raise DatasetError(
                f"{self.name} labels not found: expected {csv_path} "
                f"(CSV with a 'file' column and any of {', '.join(COLUMNS[1:])})"
            )
        table = read_csv(csv_path, ["file"], f"{self.name} labels")
        unknown = [column for column in table.header if column not in COLUMNS]
        if unknown:
            raise DatasetError(
                f"{csv_path}: unknown column(s) {', '.join(unknown)} "
                f"(accepted: {', '.join(COLUMNS)})"
            )
        if not any(column in table.header for column in LABEL_COLUMNS):
            raise DatasetError(
                f"{csv_path}: no label column (expected any of {', '.join(LABEL_COLUMNS)})"
            )
        partial = [name for name in TIMBRE_NAMES if name not in table.header]
        if 0 < len(partial) < len(TIMBRE_NAMES):
            raise DatasetError(
                f"{csv_path}: timbre columns come all seven or none; missing {', '.join(partial)}"
            )

        base = csv_path.parent
        report = LoadReport(self.name, base)
        clips: list[Clip] = []
        first_line: dict[str, int] = {}
        for line, row, extra in table.records():
            report.found += 1
            where = table.where(line)
            if any(extra):
                report.add_malformed(where, f"row has {len(extra)} cell(s) beyond the header")
                continue
            try:
                relative = _relative_path(row["file"])
                if relative in first_line:
                    raise ValueError(f"file {relative} repeats line {first_line[relative]}")
                first_line[relative] = line
                labels = _labels(row)
            except ValueError as exc:
                report.add_malformed(where, str(exc))
                continue
            path = base / relative
            if not path.is_file():
                report.add_missing(path, f"audio listed at {where}")
                continue
            if self.check_audio:
                header = probe_audio(path)
                if isinstance(header, str):
                    report.add_malformed(f"{where} ({relative})", header)
                    continue
            clips.append(Clip(path=path, dataset=self.name,
                              group=row.get("group") or relative, **labels))
        return finish(clips, report)


def _relative_path(text: str) -> str:
    """The ``file`` cell as a relative POSIX path; ValueError if empty or absolute."""
    if not text:
        raise ValueError("file is empty")
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute():
        raise ValueError(f"file {text!r} must be relative to the CSV's folder")
    return PurePosixPath(text.replace("\\", "/")).as_posix()


def _labels(row: dict[str, str]) -> dict[str, object]:
    """The Clip keyword arguments a row gives (labels and split); ValueError naming the column."""
    labels: dict[str, object] = {}
    split = row.get("split") or "train"
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    labels["split"] = split
    if row.get("instrument"):
        labels["instrument"] = row["instrument"]
    for name in ("valence", "arousal"):
        if row.get(name):
            labels[name] = scales.emotion(parse_number(row[name], name), name)
    given = [name for name in TIMBRE_NAMES if row.get(name)]
    if given:
        if len(given) < len(TIMBRE_NAMES):
            absent = [name for name in TIMBRE_NAMES if name not in given]
            raise ValueError(f"timbre needs all seven values; empty: {', '.join(absent)}")
        labels["timbre"] = {
            name: scales.timbre(parse_number(row[name], name), name) for name in TIMBRE_NAMES
        }
    if row.get("tags"):
        tags = tuple(tag.strip() for tag in row["tags"].split(TAG_SEPARATOR) if tag.strip())
        if tags:
            labels["tags"] = tags
    if len(labels) == 1:
        raise ValueError("row has no label (every label column is empty)")
    return labels
