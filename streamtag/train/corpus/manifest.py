"""The corpus on disk: its layout, the manifest's keys, and reading and writing the manifest.

Output layout (``OUT`` is the folder given)::

    OUT/audio/train/<id>.wav         clips rendered through training SoundFonts / kits
    OUT/audio/validation/<id>.wav    clips rendered through TimGM6mb / the held-out kit
    OUT/manifest.jsonl               one JSON object per clip (``MANIFEST_KEYS``)
    OUT/corpus.json                  how it was built: sources, missing sets, counts, speed

A manifest line::

    {"id": "emo-tra-q1-00003-fluidr3", "path": "audio/train/emo-tra-q1-00003-fluidr3.wav",
     "split": "train", "soundfont": "fluidr3", "family": "emotion",
     "group": "emo-tra-q1-00003", "material": "phrase", "duration_s": 6.0,
     "sample_rate_hz": 22050,
     "labels": {"instrument": null, "valence": 0.61, "arousal": 0.35, "quadrant": 1,
                "cues": {"codes": {...}, "values": {...}}, "timbre": {...} or null},
     "timbre_source": "streamtag.train.descriptors" or null,
     "render": {"programs": [56, 48], "bpm": 131.2, "transpose": -1, "tempo_scale": 1.04,
                "offset_s": 1.5, "meta": {...}},
     "augment": {"gain_db": -3.2, "noise": "pink", "snr_db": 24.1, "rt60_s": 0.8, ...}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamtag.atomic import atomic_path
from streamtag.train.corpus.soundfonts import CorpusError

FORMAT = "streamtag-corpus"
FORMAT_VERSION = 1
SAMPLE_RATE_HZ = 22050
"""Output rate [Hz]: the model rate of the ``default`` preset."""
HOP_S = 0.5
"""The analysis hop [s]; clip lengths and window offsets are multiples of it."""
FAMILIES: tuple[str, ...] = ("instrument", "emotion", "drums")
AUDIO_FORMATS: dict[str, str] = {"pcm16": "PCM_16", "float32": "FLOAT"}
TIMBRE_SOURCE = "streamtag.train.descriptors"
MANIFEST_KEYS: tuple[str, ...] = (
    "id", "path", "split", "soundfont", "family", "group", "material", "duration_s",
    "sample_rate_hz", "labels", "timbre_source", "render", "augment",
)  # fmt: skip
"""Keys of every manifest line."""
LABEL_KEYS: tuple[str, ...] = (
    "instrument", "valence", "arousal", "quadrant", "cues", "timbre", "texture",
)  # fmt: skip
"""Keys of every ``labels`` object; a label a family does not carry is null."""
TEXTURES: tuple[str, ...] = ("solo", "accompanied")
"""``texture`` of a melodic clip: one line, or a melody with chords, a bass or a left hand.
Emotion pieces alternate between the two, so each quadrant has as many of each."""


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as ``manifest.jsonl`` at ``path``, one JSON object a line, atomically (a
    reader never sees a half-written manifest)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=False) + "\n")
    return path


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Every line of a corpus manifest, parsed.

    Raises:
        CorpusError: unreadable file or a malformed line (names the line number).
    """
    rows = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CorpusError(f"cannot read manifest {path}: {exc}") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{number}: not JSON: {exc}") from exc
        missing = [key for key in MANIFEST_KEYS if key not in row]
        if missing:
            raise CorpusError(f"{path}:{number}: missing keys {missing}")
        rows.append(row)
    return rows
