"""Medley-solos-DB (Lostanlen & Cella 2016): 21 571 solo clips of 8 instruments, with splits.

Layout as distributed (Zenodo record 3464194)::

    <root>/Medley-solos-DB_metadata.csv
    <root>/Medley-solos-DB_{subset}-{instrument_id}_{uuid4}.wav    (or under <root>/audio/)

The metadata columns are ``subset,instrument,instrument_id,song_id,uuid4``; ``subset`` is
``training``, ``validation`` or ``test`` (streamtag's train / validation / test). Audio is mono,
44.1 kHz, 131 072 samples (2.97 s). Some copies name the audio ``….wav.wav``; both are accepted.
The audio is looked for anywhere under the root, so ``audio/`` or any other subfolder works.

What is checked, per metadata row: the subset is known; ``instrument_id`` is 0..7 and
``instrument`` is the name that id stands for; ``song_id`` is an integer; the uuid4 is present and
not repeated; the audio file exists and its header says mono, 44.1 kHz, 131 072 samples.

``found`` counts metadata rows. ``group`` is the song id: the official splits keep songs apart,
and a song seen in two subsets is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from streamtag.errors import DatasetError
from streamtag.train.datasets.base import (
    AudioHeader,
    Clip,
    LoadReport,
    find_paths,
    finish,
    parse_id,
    pick_one,
    probe_audio,
    read_csv,
    require_root,
    walk,
)

METADATA_NAME = "Medley-solos-DB_metadata.csv"
COLUMNS = ("subset", "instrument", "instrument_id", "song_id", "uuid4")

INSTRUMENTS: tuple[str, ...] = (
    "clarinet",
    "distorted electric guitar",
    "female singer",
    "flute",
    "piano",
    "tenor saxophone",
    "trumpet",
    "violin",
)
"""Class names by ``instrument_id`` (0..7), as the metadata spells them."""

SUBSETS = {"training": "train", "validation": "validation", "test": "test"}
"""Medley subset name → streamtag split."""

SAMPLE_RATE_HZ = 44100
CHANNELS = 1
FRAMES = 131072  # 2.97 s at 44.1 kHz

_AUDIO_NAME = re.compile(
    r"^Medley-solos-DB_(?P<subset>[a-z]+)-(?P<id>\d+)_(?P<uuid>[0-9A-Za-z-]+)\.wav(?P<double>\.wav)?$"
)


def audio_name(subset: str, instrument_id: int, uuid4: str) -> str:
    """The file name the distribution gives a clip."""
    return f"Medley-solos-DB_{subset}-{instrument_id}_{uuid4}.wav"


@dataclass(frozen=True)
class MedleyLoader:
    """Loads Medley-solos-DB; ``check_audio=False`` skips reading each file's header."""

    check_audio: bool = True
    name: str = "medley"

    def load(self, root: Path) -> tuple[list[Clip], LoadReport]:
        """Read the metadata and pair each row with its audio file; see the module docstring."""
        root = require_root(root, self.name, f"{METADATA_NAME} and the Medley-solos-DB_*.wav files")
        found = find_paths(root, [METADATA_NAME])
        metadata = pick_one(found[METADATA_NAME], f"{METADATA_NAME} files")
        if metadata is None:
            raise _missing_metadata(root)
        table = read_csv(metadata, COLUMNS, "Medley-solos-DB metadata")
        report = LoadReport(self.name, root)
        audio, doubles = _index_audio(root, report)

        clips: list[Clip] = []
        seen_uuid: dict[str, int] = {}
        song_splits: dict[str, set[str]] = {}
        referenced: set[tuple[str, int, str]] = set()
        for line, row, extra in table.records():
            report.found += 1
            where = table.where(line)
            if row["instrument_id"].isdigit():  # even a malformed row accounts for its audio
                referenced.add((row["subset"], int(row["instrument_id"]), row["uuid4"]))
            if any(extra):
                report.add_malformed(where, f"row has {len(extra)} cell(s) beyond the header")
                continue
            problem = _check_row(row)
            if problem:
                report.add_malformed(where, problem)
                continue
            subset, uuid4 = row["subset"], row["uuid4"]
            instrument_id = int(row["instrument_id"])
            song = parse_id(row["song_id"], "song_id")
            if uuid4 in seen_uuid:
                report.add_malformed(where, f"uuid4 {uuid4} repeats line {seen_uuid[uuid4]}")
                continue
            seen_uuid[uuid4] = line
            path = audio.get((subset, instrument_id, uuid4))
            if path is None:
                report.add_missing(
                    audio_name(subset, instrument_id, uuid4),
                    f"audio for {where} ({row['instrument']}, {subset}) is not under {root}",
                )
                continue
            if self.check_audio:
                header = probe_audio(path)
                bad = header if isinstance(header, str) else _check_header(header)
                if bad:
                    report.add_malformed(path, bad)
                    continue
            split = SUBSETS[subset]
            song_splits.setdefault(song, set()).add(split)
            clips.append(
                Clip(path=path, dataset=self.name, split=split, group=song,
                     instrument=INSTRUMENTS[instrument_id])
            )

        stray = [path for key, path in audio.items() if key not in referenced]
        if stray:
            report.notes.append(
                f"{len(stray)} Medley audio file(s) have no metadata row and are ignored "
                f"(e.g. {stray[0].name})"
            )
        if doubles:
            report.notes.append(
                f"{doubles} clip(s) exist as both .wav and .wav.wav; the .wav copy is used"
            )
        leaking = sorted(song for song, splits in song_splits.items() if len(splits) > 1)
        if leaking:
            report.notes.append(
                f"song_id(s) {', '.join(leaking[:10])} appear in more than one subset: "
                "their clips leak between splits"
            )
        return finish(clips, report)


def _missing_metadata(root: Path) -> DatasetError:
    return DatasetError(
        f"Medley-solos-DB metadata not found: expected {root / METADATA_NAME} "
        f"(CSV with columns {','.join(COLUMNS)}) in {root} or below"
    )


def _index_audio(root: Path, report: LoadReport) -> tuple[dict[tuple[str, int, str], Path], int]:
    """Map (subset, instrument_id, uuid4) → audio path for every Medley file under ``root``.

    Returns the map and how many clips were present both as ``.wav`` and ``.wav.wav``.
    """
    audio: dict[tuple[str, int, str], Path] = {}
    doubles = 0
    for folder, _subdirs, files in walk(root):
        for name in files:
            match = _AUDIO_NAME.match(name)
            if match is None:
                continue
            key = (match["subset"], int(match["id"]), match["uuid"])
            path = folder / name
            previous = audio.get(key)
            if previous is None:
                audio[key] = path
                continue
            if previous.name.endswith(".wav.wav") != name.endswith(".wav.wav"):
                doubles += 1
                if previous.name.endswith(".wav.wav"):
                    audio[key] = path
            else:
                report.add_malformed(path, f"duplicate of {previous}; the first copy is used")
    return audio, doubles


def _check_row(row: dict[str, str]) -> str | None:
    """Why a metadata row is unusable, or None."""
    if row["subset"] not in SUBSETS:
        return f"subset {row['subset']!r} is not one of {', '.join(SUBSETS)}"
    try:
        instrument_id = int(row["instrument_id"])
    except ValueError:
        return f"instrument_id {row['instrument_id']!r} is not an integer"
    if not 0 <= instrument_id < len(INSTRUMENTS):
        return f"instrument_id {instrument_id} is not 0..{len(INSTRUMENTS) - 1}"
    expected = INSTRUMENTS[instrument_id]
    if row["instrument"].lower() != expected:
        return (
            f"instrument {row['instrument']!r} does not match instrument_id {instrument_id} "
            f"(which is {expected!r})"
        )
    try:
        parse_id(row["song_id"], "song_id")
    except ValueError as exc:
        return str(exc)
    if not row["uuid4"]:
        return "uuid4 is empty"
    return None


def _check_header(header: AudioHeader) -> str | None:
    """Why a clip's audio is not Medley's format, or None."""
    got = (header.sample_rate_hz, header.channels, header.frames)
    if got == (SAMPLE_RATE_HZ, CHANNELS, FRAMES):
        return None
    return (
        f"expected mono {SAMPLE_RATE_HZ} Hz audio of {FRAMES} samples (2.97 s), got "
        f"{header.channels} channel(s) at {header.sample_rate_hz} Hz, {header.frames} samples"
    )
