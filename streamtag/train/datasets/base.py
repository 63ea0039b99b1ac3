"""The common model every dataset loader returns: ``Clip``, ``LoadReport`` and the loader protocol.

A loader reads a user's local copy of a dataset exactly as it was distributed, turns every usable
entry into a ``Clip`` with labels already on streamtag's scales (see ``scales``), and says in a
``LoadReport`` how many entries it found, how many it used, and what was missing or malformed.

Failure policy, shared by every loader:

- a missing root folder, metadata file or audio folder is a ``DatasetError`` that names the path
  and what was expected there;
- a malformed entry (bad number, unknown id, unreadable audio, …) is skipped and named in
  ``LoadReport.malformed``; an expected file that is absent is named in ``LoadReport.missing``;
- if nothing usable remains, the load fails with a ``DatasetError`` that quotes the first problems.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import soundfile as sf

from streamtag.errors import DatasetError
from streamtag.record import TIMBRE_NAMES

SPLITS: tuple[str, ...] = ("train", "validation", "test")
"""The split names a ``Clip`` may carry."""


DYNAMIC_HOP_S = 0.5
"""Spacing [s] of dynamic (per-frame) emotion labels: one (valence, arousal) pair per 0.5 s."""

_GRID_TOLERANCE_S = 1e-3

Frame = tuple[float, float, float]
"""One dynamic emotion label: (time [s], valence [-1, 1], arousal [-1, 1])."""


def _finite_in(value: float, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high


@dataclass(frozen=True)
class Clip:
    """One labelled audio file, ready for the trainer.

    Every label is optional on its own; a clip carries at least one. Labels are on streamtag's
    scales whatever the source dataset used (the mapping lives in ``scales``).

    Attributes:
        path: the audio file [any format libsndfile reads].
        dataset: the loader's name (``"medley"``, ``"pmemo"``, …).
        split: ``"train"``, ``"validation"`` or ``"test"``. Datasets without an official split
            put everything in ``"train"``; ``assign_splits_by_group`` carves the rest.
        group: the song or piece the clip comes from, unique within ``dataset``. Clips that share
            ``(dataset, group)`` must stay in one split, or the evaluation leaks.
        instrument: instrument class name (e.g. ``"violin"``), or None.
        valence: static valence of the whole clip [-1, 1], or None.
        arousal: static arousal of the whole clip [-1, 1], or None.
        dynamic: per-0.5 s emotion, a tuple of ``(time [s], valence [-1, 1], arousal [-1, 1])``
            with strictly increasing times measured from the start of the audio file, or None.
        timbre: the seven ``TIMBRE_NAMES`` → value [0, 1] (read-only mapping), or None.
        tags: free-form tags that hold, or None.
        tags_known: the tags whose truth is known for this clip (a superset of ``tags``): one
            known but absent is a negative, one not known is masked. None: every tag of the
            model's vocabulary is known (a user's tag list names all that holds).
        timbre_per_hop: the ``timbre`` label was computed by ``streamtag.train.descriptors``
            from this very audio, so the trainer may recompute it for each hop's window.
        texture: ``"solo"`` (one line sounds) or ``"accompanied"`` (a melody with chords, a
            bass or a left hand), or None when unknown; not a label, a way to break the
            evaluation down (``evaluate`` reports emotion per texture).
    """

    path: Path
    dataset: str
    split: str
    group: str
    instrument: str | None = None
    valence: float | None = None
    arousal: float | None = None
    dynamic: tuple[Frame, ...] | None = None
    timbre: Mapping[str, float] | None = field(default=None, hash=False)
    tags: tuple[str, ...] | None = None
    tags_known: tuple[str, ...] | None = None
    timbre_per_hop: bool = False
    texture: str | None = None

    def __post_init__(self) -> None:
        # Loaders validate with messages naming the file and row; these checks are the safety net
        # that keeps a wrong Clip from ever reaching the trainer.
        if self.split not in SPLITS:
            raise ValueError(f"split {self.split!r} is not one of {', '.join(SPLITS)}")
        if not self.dataset or not self.group:
            raise ValueError("dataset and group must be non-empty")
        if self.instrument is not None and not self.instrument.strip():
            raise ValueError("instrument must be a non-empty name or None")
        for name in ("valence", "arousal"):
            value = getattr(self, name)
            if value is not None and not _finite_in(value, -1.0, 1.0):
                raise ValueError(f"{name} {value!r} is outside [-1, 1]")
        if self.dynamic is not None:
            frames = tuple((float(t), float(v), float(a)) for t, v, a in self.dynamic)
            if not frames:
                raise ValueError("dynamic must hold at least one frame or be None")
            for t, v, a in frames:
                if not (_finite_in(v, -1.0, 1.0) and _finite_in(a, -1.0, 1.0)):
                    raise ValueError(f"dynamic frame at {t} s has values outside [-1, 1]")
            times = [t for t, _, _ in frames]
            if any(later <= earlier for earlier, later in itertools.pairwise(times)):
                raise ValueError("dynamic frame times must increase strictly")
            object.__setattr__(self, "dynamic", frames)
        if self.timbre is not None:
            if set(self.timbre) != set(TIMBRE_NAMES):
                raise ValueError(f"timbre must hold exactly {', '.join(TIMBRE_NAMES)}")
            for name in TIMBRE_NAMES:
                if not _finite_in(self.timbre[name], 0.0, 1.0):
                    raise ValueError(f"timbre {name} {self.timbre[name]!r} is outside [0, 1]")
            frozen = {name: float(self.timbre[name]) for name in TIMBRE_NAMES}
            object.__setattr__(self, "timbre", MappingProxyType(frozen))
        if self.tags is not None:
            tags = tuple(self.tags)
            if not tags or any(not isinstance(t, str) or not t.strip() for t in tags):
                raise ValueError("tags must be a non-empty tuple of non-empty strings or None")
            object.__setattr__(self, "tags", tags)
        if self.tags_known is not None:
            known = tuple(self.tags_known)
            if self.tags is None or not set(self.tags) <= set(known):
                raise ValueError("tags_known must hold every tag in tags")
            object.__setattr__(self, "tags_known", known)
        if not self.labels:
            raise ValueError(f"clip {self.path} carries no label")

    @property
    def labels(self) -> dict[str, object]:
        """The labels this clip carries, per head: only the ones that are not None.

        Keys: ``instrument``, ``valence``, ``arousal``, ``dynamic``, ``timbre``, ``tags``.
        """
        heads = {
            "instrument": self.instrument,
            "valence": self.valence,
            "arousal": self.arousal,
            "dynamic": self.dynamic,
            "timbre": self.timbre,
            "tags": self.tags,
        }
        return {head: value for head, value in heads.items() if value is not None}


@dataclass(frozen=True)
class Problem:
    """One missing or malformed entry: where it is (file, line, id) and what is wrong."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class LoadReport:
    """What a loader found on disk.

    Attributes:
        dataset: the loader's name.
        root: the folder that was read.
        found: entries the dataset's metadata lists (rows, songs or ids; each loader says which).
        used: clips returned.
        missing: expected files that are absent (the entry is skipped).
        malformed: entries, or parts of entries, that are skipped, each with the reason.
        notes: observations that change nothing returned but deserve a look (stray audio,
            clipped values, no official split, …).
    """

    dataset: str
    root: Path
    found: int = 0
    used: int = 0
    missing: list[Problem] = field(default_factory=list)
    malformed: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was missing or malformed."""
        return not self.missing and not self.malformed

    def add_missing(self, where: str | Path, what: str) -> None:
        """Name an expected file that is absent."""
        self.missing.append(Problem(str(where), what))

    def add_malformed(self, where: str | Path, what: str) -> None:
        """Name an entry that is skipped (or partly skipped) and why."""
        self.malformed.append(Problem(str(where), what))

    def summary(self, limit: int = 20) -> str:
        """A human-readable account, listing at most ``limit`` problems of each kind."""
        lines = [
            f"{self.dataset} at {self.root}: found {self.found}, used {self.used}, "
            f"missing {len(self.missing)}, malformed {len(self.malformed)}"
        ]
        for title, problems in (("missing", self.missing), ("malformed", self.malformed)):
            for problem in problems[:limit]:
                lines.append(f"  {title}: {problem}")
            if len(problems) > limit:
                lines.append(f"  … and {len(problems) - limit} more {title}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


@runtime_checkable
class DatasetLoader(Protocol):
    """What every loader offers: a name and ``load(root) -> (clips, report)``."""

    name: str

    def load(self, root: Path) -> tuple[list[Clip], LoadReport]:
        """Read the dataset under ``root``; raise ``DatasetError`` if it cannot be used at all."""
        ...


def finish(clips: list[Clip], report: LoadReport) -> tuple[list[Clip], LoadReport]:
    """Stamp ``report.used`` and fail with the report's summary if no clip is usable."""
    report.used = len(clips)
    if not clips:
        raise DatasetError(
            f"no usable clip in the {report.dataset} dataset\n{report.summary(limit=10)}"
        )
    return clips, report


# --- file finding -------------------------------------------------------------------------------


def require_root(root: Path | str, dataset: str, expected: str) -> Path:
    """Return ``root`` as a Path, or raise ``DatasetError`` if it is not an existing folder."""
    path = Path(root)
    if not path.is_dir():
        raise DatasetError(
            f"{dataset} dataset folder not found: {path} does not exist or is not a folder "
            f"(expected a folder holding {expected})"
        )
    return path


def walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk`` in sorted order that follows symlinked folders, each real folder once.

    Datasets often live on another disk and are linked into place; a link cycle is not a reason
    to walk forever.
    """
    seen: set[str] = set()
    for folder, subdirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subdirs.clear()
            continue
        seen.add(real)
        subdirs.sort()
        yield Path(folder), subdirs, sorted(files)


def find_paths(root: Path, names: Iterable[str], *, dirs: bool = False) -> dict[str, list[Path]]:
    """Every file (or folder, with ``dirs=True``) under ``root`` whose name is one of ``names``.

    One walk of the tree, so nested copies (``DEAM/DEAM_Annotations/…``) are found wherever the
    user unpacked them.
    """
    wanted = set(names)
    found: dict[str, list[Path]] = {name: [] for name in wanted}
    for folder, subdirs, files in walk(root):
        for name in subdirs if dirs else files:
            if name in wanted:
                found[name].append(folder / name)
    return found


def pick_one(
    candidates: Sequence[Path],
    what: str,
    prefer: Callable[[Path], bool] | None = None,
) -> Path | None:
    """The single candidate path, preferring those ``prefer`` accepts; None if there is none.

    Raises ``DatasetError`` naming every candidate when the choice is ambiguous.
    """
    if not candidates:
        return None
    by_target: dict[str, Path] = {}
    for path in candidates:  # links to one file are one candidate
        by_target.setdefault(os.path.realpath(path), path)
    pool = list(by_target.values())
    if prefer is not None and len(pool) > 1:
        preferred = [path for path in pool if prefer(path)]
        pool = preferred or pool
    if len(pool) > 1:
        listed = ", ".join(str(path) for path in pool)
        raise DatasetError(f"found several {what}, keep only one: {listed}")
    return pool[0]


def grid_problem(times: Sequence[float]) -> str | None:
    """Why sorted frame times [s] are not an unbroken series every ``DYNAMIC_HOP_S``, or None."""
    for time_s in times:
        steps = time_s / DYNAMIC_HOP_S
        if abs(steps - round(steps)) > _GRID_TOLERANCE_S:
            return f"time {time_s:g} s is not on the {DYNAMIC_HOP_S:g} s grid"
    for earlier, later in itertools.pairwise(times):
        if abs(later - earlier) < _GRID_TOLERANCE_S:
            return f"time {earlier:g} s appears twice"
        if abs(later - earlier - DYNAMIC_HOP_S) > _GRID_TOLERANCE_S:
            return (
                f"time jumps from {earlier:g} s to {later:g} s "
                f"(expected every {DYNAMIC_HOP_S:g} s)"
            )
    return None


# --- CSV and numbers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvTable:
    """A CSV file read as text: stripped header names and rows with their line numbers."""

    path: Path
    header: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]

    def where(self, line: int) -> str:
        """``file:line`` for a problem message."""
        return f"{self.path.name}:{line}"

    def records(self) -> Iterator[tuple[int, dict[str, str], tuple[str, ...]]]:
        """Each row as ``(line, {column: stripped cell}, extra cells beyond the header)``.

        Cells a short row lacks read as ``""``.
        """
        width = len(self.header)
        for line, cells in self.rows:
            padded = tuple(cells[:width]) + ("",) * max(0, width - len(cells))
            yield line, dict(zip(self.header, padded, strict=True)), tuple(cells[width:])


def read_csv(path: Path, required: Iterable[str], what: str) -> CsvTable:
    """Read a CSV whose header names the columns; header names are stripped of spaces.

    Blank lines are skipped. Raises ``DatasetError`` naming the file if it cannot be read,
    is empty, or lacks a ``required`` column.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            lines: list[tuple[int, tuple[str, ...]]] = []
            for cells in reader:
                stripped = tuple(cell.strip() for cell in cells)
                if any(stripped):
                    lines.append((reader.line_num, stripped))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {what} {path}: {exc}") from exc
    if not lines:
        raise DatasetError(f"{what} {path} is empty (expected a header line and rows)")
    header = lines[0][1]
    while header and not header[-1]:  # a trailing comma names no column
        header = header[:-1]
    absent = [name for name in required if name not in header]
    if absent:
        raise DatasetError(
            f"{what} {path} lacks column(s) {', '.join(absent)} "
            f"(header has: {', '.join(header) or 'nothing'})"
        )
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise DatasetError(f"{what} {path} repeats column(s) {', '.join(duplicated)}")
    return CsvTable(path, header, tuple(lines[1:]))


def parse_number(text: str, what: str) -> float:
    """``text`` as a finite float; ValueError naming ``what`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a finite number")
    return value


def parse_id(text: str, what: str) -> str:
    """An integer id as its canonical text (``" 12"`` → ``"12"``); ValueError otherwise."""
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not an integer id") from None
    if number < 0:
        raise ValueError(f"{what} {text!r} is negative")
    return str(number)


def id_sort_key(text: str) -> tuple[int, int | str]:
    """Sort numeric ids numerically, then any other ids by text."""
    return (0, int(text)) if text.isdigit() else (1, text)


# --- audio --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioHeader:
    """What an audio file's header says."""

    sample_rate_hz: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        """Length [s]."""
        return self.frames / self.sample_rate_hz


def probe_audio(path: Path) -> AudioHeader | str:
    """The header of an audio file, or the reason it cannot be read.

    Only the header is read, so probing a whole dataset stays cheap.
    """
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        return f"audio cannot be read: {exc}"
    if info.frames <= 0:
        return "audio holds no samples"
    return AudioHeader(int(info.samplerate), int(info.channels), int(info.frames))


# --- splits -------------------------------------------------------------------------------------


def assign_splits_by_group(
    clips: Iterable[Clip],
    validation_fraction: float,
    test_fraction: float = 0.0,
    salt: str = "streamtag",
) -> list[Clip]:
    """Move whole groups of ``"train"`` clips to validation or test, deterministically.

    Each ``(dataset, group)`` is hashed (with ``salt``) to a number u in [0, 1): u < test_fraction
    goes to test, u < test_fraction + validation_fraction to validation, the rest stays in
    train. Clips already in validation or test keep their split, so official splits survive.
    """
    if not (0.0 <= validation_fraction and 0.0 <= test_fraction
            and validation_fraction + test_fraction < 1.0):
        raise ValueError("fractions must be ≥ 0 and sum to less than 1")

    def draw(clip: Clip) -> float:
        key = f"{salt}\0{clip.dataset}\0{clip.group}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64

    result = []
    for clip in clips:
        if clip.split == "train":
            u = draw(clip)
            if u < test_fraction:
                clip = replace(clip, split="test")
            elif u < test_fraction + validation_fraction:
                clip = replace(clip, split="validation")
        result.append(clip)
    return result
