"""Freesound One-Shot Percussive Sounds (Ramires et al. 2020): 10 254 one-shots, timbre analysed.

Layout as distributed (Zenodo record 3665275: ``one_shot_percussive_sounds.zip`` and
``analysis.zip`` unpacked side by side; the root may be their parent or any folder above it)::

    one_shot_percussive_sounds/{folder}/{id}.wav
    analysis/{folder}/{id}_analysis.json

Each JSON file holds the AudioCommons timbral descriptors ``hardness, depth, brightness,
roughness, warmth, sharpness, boominess`` (nominally 0..100, among other keys that are ignored),
mapped to [0, 1] by ``scales.freesound_timbre``, which clips the values the AudioCommons models
put outside 0..100 (their number is noted in the report).

What is checked: both folders exist (else ``DatasetError``); audio and analysis pair by id, and
each side without the other is named as missing; an id is not repeated in two subfolders; the
JSON parses to an object holding all seven descriptors as finite numbers; the audio is readable.

``found`` counts distinct ids on either side. The dataset has no official split: every clip is
``"train"`` and ``group`` is the Freesound sound id (each sound is its own recording).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from streamtag.errors import DatasetError
from streamtag.train.datasets import scales
from streamtag.train.datasets.base import (
    TIMBRE_NAMES,
    Clip,
    LoadReport,
    find_paths,
    finish,
    id_sort_key,
    pick_one,
    probe_audio,
    require_root,
    walk,
)

AUDIO_DIR = "one_shot_percussive_sounds"
ANALYSIS_DIR = "analysis"
ANALYSIS_SUFFIX = "_analysis.json"


@dataclass(frozen=True)
class FreesoundOneShotLoader:
    """Loads Freesound One-Shot Percussive Sounds; ``check_audio=False`` skips audio headers."""

    check_audio: bool = True
    name: str = "freesound_oneshot"

    def load(self, root: Path) -> tuple[list[Clip], LoadReport]:
        """Pair each sound with its analysis file by id and map the seven descriptors."""
        root = require_root(root, self.name, f"{AUDIO_DIR}/ and {ANALYSIS_DIR}/")
        audio_dir = pick_one(
            find_paths(root, [AUDIO_DIR], dirs=True)[AUDIO_DIR], f"{AUDIO_DIR} folders"
        )
        if audio_dir is None:
            raise DatasetError(
                f"Freesound one-shot audio folder not found: expected {root / AUDIO_DIR} "
                "holding {folder}/{id}.wav files"
            )
        analysis_dir = audio_dir.parent / ANALYSIS_DIR
        if not analysis_dir.is_dir():
            raise DatasetError(
                f"Freesound one-shot analysis folder not found: expected {analysis_dir} "
                f"holding {{folder}}/{{id}}{ANALYSIS_SUFFIX} files beside {audio_dir}"
            )
        report = LoadReport(self.name, root)
        audio = _index(audio_dir, ".wav", report)
        analysis = _index(analysis_dir, ANALYSIS_SUFFIX, report)
        ids = sorted(set(audio) | set(analysis), key=id_sort_key)
        report.found = len(ids)

        clips: list[Clip] = []
        clipped = 0
        for sound_id in ids:
            if sound_id not in analysis:
                report.add_missing(
                    f"{ANALYSIS_DIR}/…/{sound_id}{ANALYSIS_SUFFIX}",
                    f"analysis for {audio[sound_id]}",
                )
                continue
            if sound_id not in audio:
                report.add_missing(f"{AUDIO_DIR}/…/{sound_id}.wav",
                                   f"audio for {analysis[sound_id]}")
                continue
            try:
                raw = _read_descriptors(analysis[sound_id])
            except ValueError as exc:
                report.add_malformed(analysis[sound_id], str(exc))
                continue
            if self.check_audio:
                header = probe_audio(audio[sound_id])
                if isinstance(header, str):
                    report.add_malformed(audio[sound_id], header)
                    continue
            clipped += sum(not scales.freesound_timbre_in_range(v) for v in raw.values())
            timbre = {name: scales.freesound_timbre(raw[name], name) for name in TIMBRE_NAMES}
            clips.append(
                Clip(path=audio[sound_id], dataset=self.name, split="train", group=sound_id,
                     timbre=timbre)
            )
        if clipped:
            report.notes.append(
                f"{clipped} timbral value(s) outside the nominal 0..100 were clipped to [0, 1]"
            )
        report.notes.append("Freesound one-shot has no official split: every clip is 'train'")
        return finish(clips, report)


def _index(folder: Path, suffix: str, report: LoadReport) -> dict[str, Path]:
    """id → file for every ``{id}{suffix}`` under ``folder``; repeats are reported."""
    found: dict[str, Path] = {}
    paths = [where / name for where, _, names in walk(folder) for name in names
             if name.endswith(suffix) and len(name) > len(suffix)]
    for path in paths:
        sound_id = path.name[: -len(suffix)]
        if sound_id in found:
            report.add_malformed(path, f"id {sound_id} repeats {found[sound_id]}; first one used")
            continue
        found[sound_id] = path
    return found


def _read_descriptors(path: Path) -> dict[str, float]:
    """The seven raw descriptors (0..100 nominal) of one analysis file; ValueError if unusable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"analysis cannot be read as JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"analysis is a JSON {type(data).__name__}, expected an object")
    absent = [name for name in TIMBRE_NAMES if name not in data]
    if absent:
        raise ValueError(f"analysis lacks timbral key(s) {', '.join(absent)}")
    raw: dict[str, float] = {}
    for name in TIMBRE_NAMES:
        value = data[name]
        # bool is an int in Python; a true/false here is not a rating
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} {value!r} is not a number")
        raw[name] = float(value)
        scales.freesound_timbre(raw[name], name)  # rejects NaN and infinities
    return raw
