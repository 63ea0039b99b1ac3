"""Build the synthetic training corpus: plan clips, render them, augment, label, write.

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

Families:

- ``instrument``: solo scales, arpeggios and phrases for each of the 8 Medley-solos-DB classes
  (``music.INSTRUMENTS``), across each instrument's range; label ``instrument``.
- ``emotion``: grammar melodies with controlled cues (``emotion_cues``), the four Thayer
  quadrants in equal numbers; labels ``valence``, ``arousal``, ``quadrant`` and ``cues``, a
  cue-model proxy, not listener ratings. Each clip keeps part of its loudness cue: its level
  before augmentation is offset by 6 dB × the coded dynamics cue.
- ``drums``: grooves on General MIDI drums and on real Hydrogen kit recordings; no class label,
  timbre material only.

Every clip also gets ``timbre`` labels from ``streamtag.train.descriptors.describe`` computed on
the final (augmented) audio when that module can be imported; otherwise ``timbre`` is null and
``timbre_source`` is null on every line, and ``corpus.json`` says why.

Groups: all renders of one piece share a ``group`` and a split; different SoundFonts render
the same notes so a model cannot tell classes apart by sample set. The validation split has
pieces of its own, rendered only through validation sets; with ``val_renders_per_piece`` > 1
each validation piece is rendered several times with the same notes and window but its own
augmentation (ids of repeated renders through one set end ``-1``, ``-2``, …), which is what
piece retrieval and known/unknown detection are evaluated on.

Determinism: every random choice comes from a generator seeded by ``seed`` and the clip's
place in the plan, never from worker scheduling, so a rebuild with the same seed, sets and
sizes writes the same corpus.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import re
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from streamtag.errors import ConfigError, StreamtagError
from streamtag.train.corpus import augment as aug
from streamtag.train.corpus import emotion_cues, music
from streamtag.train.corpus import stk as stk_set
from streamtag.train.corpus.render import (
    RenderStats,
    fluidsynth_path,
    load_drumkit,
    render_drumkit,
    render_soundfont_batch,
)
from streamtag.train.corpus.soundfonts import (
    TRAIN,
    VALIDATION,
    CorpusError,
    DrumKit,
    Missing,
    SoundFont,
    SoundFontError,
    check_allowed,
    find_drumkits,
    find_soundfonts,
    holdout_splits,
    require_drumkit,
    require_soundfont,
)

FORMAT = "streamtag-corpus"
FORMAT_VERSION = 1
SAMPLE_RATE_HZ = 22050
"""Output rate [Hz]: the model rate of the ``default`` preset."""
HOP_S = 0.5
"""The analysis hop [s]; clip lengths and window offsets are multiples of it."""
REFERENCE_DB = -26.0
"""RMS level of a clip before the random gain [dBFS]."""
EMOTION_DYNAMICS_DB = 6.0
"""Level offset per unit of the coded dynamics cue in the emotion family [dB]."""
SILENCE_DB = -70.0
"""A rendered window quieter than this [dBFS RMS] is dropped (a program the set lacks)."""
PRE_ROLL_S = 2.0
"""Music rendered before a clip's window to feed the reverb, then dropped [s]."""
BATCH_PIECES = 64
"""Pieces per FluidSynth run: amortises loading a SoundFont."""
BATCH_PIECES_SF3 = 512
"""Pieces per FluidSynth run for ``.sf3`` files, whose Vorbis samples are decoded per run."""
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


@dataclass(frozen=True)
class CorpusSize:
    """A size preset.

    Attributes:
        n_per_class: training clips per class (8 instrument classes, 4 emotion quadrants,
            1 drum class).
        val_per_class: validation clips per class.
        renders_per_piece: training SoundFonts / kits each training piece is rendered through.
        val_renders_per_piece: renders of each validation piece (same notes and window, each
            with its own room, noise, EQ and gain): what piece retrieval is evaluated on.
        shared_window: the training renders of a piece share its notes, pitch shift and window
            (and differ in SoundFont and augmentation), so an embedding's positives are the
            same music through another instrument set; False (default: what the shipped model
            was trained on) gives each render its own shift and window, more views of a piece.
            Measured on the default size (20 epochs, with triplet ``parts: 2``): True left piece
            retrieval as it was and cost 4 points of instrument accuracy.
        workers: worker processes.
    """

    n_per_class: int
    val_per_class: int
    renders_per_piece: int = 2
    val_renders_per_piece: int = 2
    shared_window: bool = False
    workers: int = 2

    @property
    def clips(self) -> int:
        """Clips in the corpus when every set is installed."""
        return 13 * (self.n_per_class + self.val_per_class)


SIZE_PRESETS: dict[str, CorpusSize] = {
    "tiny": CorpusSize(n_per_class=1, val_per_class=1, renders_per_piece=1,
                       val_renders_per_piece=1, workers=1),
    "small": CorpusSize(n_per_class=80, val_per_class=16),
    "default": CorpusSize(n_per_class=320, val_per_class=40),
    "full": CorpusSize(n_per_class=800, val_per_class=160),
}
"""``tiny`` for tests (26 clips, seconds), ``small`` (1,248 clips, 2.1 h of audio, ~2 CPU-min),
``default`` (4,680 clips, 7.8 h: the corpus the shipped model was trained on, ~8 min here),
``full`` (12,480 clips, 20.8 h, ~21 CPU-min: about 11 min on 2 idle cores; 3.2 GB as PCM16)."""


# ---------------------------------------------------------------------------------------------
# Plan


@dataclass(frozen=True)
class Source:
    """Where a clip's audio comes from: a SoundFont or a Hydrogen kit."""

    name: str
    kind: str  # "soundfont" | "drumkit" | "stk"
    path: str
    split: str


@dataclass(frozen=True)
class ClipJob:
    """One clip to render: its source, labels known before rendering, and seeds.

    ``piece`` is already cut to the clip's window plus a pre-roll: its first ``pre_roll_s``
    seconds feed the reverb and are then dropped; ``offset_s`` is where the window starts in
    the uncut piece [s].
    """

    id: str
    group: str
    family: str
    split: str
    source: Source
    piece: music.Piece
    labels: dict[str, Any]
    seed: int
    offset_s: float
    pre_roll_s: float
    level_offset_db: float = 0.0


@dataclass(frozen=True)
class Task:
    """Jobs rendered together by one worker call (one FluidSynth run, or one kit)."""

    source: Source
    jobs: tuple[ClipJob, ...]
    out_dir: str
    clip_s: float
    sample_rate_hz: int
    subtype: str
    augment_config: aug.AugmentConfig


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _rng(seed: int, *keys: object) -> np.random.Generator:
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def _split_code(split: str) -> str:
    return "tra" if split == TRAIN else "val"


def _min_piece_s(clip_s: float) -> float:
    # Survives a 10 % tempo increase with half a hop to spare.
    return 1.12 * clip_s + HOP_S


def _shift(rng: np.random.Generator, piece: music.Piece, low: int, high: int) -> music.Piece:
    return music.shift_piece(
        piece,
        transpose=int(rng.integers(-2, 3)),
        tempo_scale=float(rng.uniform(0.9, 1.1)),
        low_midi=low,
        high_midi=high,
    )


def _empty_labels() -> dict[str, Any]:
    return {key: None for key in LABEL_KEYS}


def _renders(split: str, sources: Sequence[Source], renders_per_piece: int,
             val_renders_per_piece: int = 1) -> int:
    # Validation renders may reuse the one validation set (they differ in augmentation);
    # training renders each go through a different set.
    if split == VALIDATION:
        return max(1, val_renders_per_piece)
    return max(1, min(renders_per_piece, len(sources)))


class _Renderer:
    """Makes the jobs of one piece's renders.

    Validation renders share the notes and the window and differ only in augmentation, so
    piece retrieval is tested on the same music heard in another room. Training renders do the
    same through different SoundFonts when ``shared`` (``CorpusSize.shared_window``), else each
    gets its own pitch/tempo shift and window.
    """

    def __init__(self, rng: np.random.Generator, split: str, clip_s: float,
                 shared: bool = False) -> None:
        self.rng, self.split, self.clip_s = rng, split, clip_s
        self.shared = shared or split == VALIDATION
        self._shared: tuple[music.Piece, float] | None = None
        self._used: dict[str, int] = {}

    def job(self, *, group: str, family: str, source: Source, piece: music.Piece,
            low: int, high: int, labeller: Callable[[music.Piece], dict[str, Any]]) -> ClipJob:
        if not self.shared:
            shifted = _shift(self.rng, piece, low, high)
            offset = None
        else:
            if self._shared is None:
                shifted = _shift(self.rng, piece, low, high)
                self._shared = (shifted, choose_window(self.rng, shifted.duration_s, self.clip_s))
            shifted, offset = self._shared
        repeat = self._used.get(source.name, 0)
        self._used[source.name] = repeat + 1
        return _make_job(self.rng, group=group, family=family, split=self.split, source=source,
                         piece=shifted, clip_s=self.clip_s, labeller=labeller, offset=offset,
                         suffix=f"-{repeat}" if repeat else "")


def _plan_instrument(
    split: str, sources: Sequence[Source], n: int, renders: int, seed: int, clip_s: float,
    shared: bool = False,
) -> list[ClipJob]:
    jobs = []
    material_cycle = ("phrase", "scale", "phrase", "arpeggio")
    all_sources, all_renders = sources, renders
    for spec in music.INSTRUMENTS:
        rng = _rng(seed, "instrument", split, spec.name)
        # STK's physical models play five of the classes; the others skip that set.
        sources = [s for s in all_sources if s.kind != "stk" or spec.name in stk_set.STK_CLASSES]
        if not sources:
            continue
        renders = min(all_renders, len(sources)) if split != VALIDATION else all_renders
        made = 0
        for k in range(math.ceil(n / renders)):
            material = material_cycle[k % len(material_cycle)]
            piece = music.compose_instrument_piece(
                rng, spec, material=material, min_duration_s=_min_piece_s(clip_s)
            )
            group = f"ins-{_split_code(split)}-{_slug(spec.name)}-{k:05d}"
            renderer = _Renderer(rng, split, clip_s, shared)
            for r in range(renders):
                if made >= n:
                    break
                source = sources[(k * renders + r) % len(sources)]
                labels = _empty_labels()
                labels["instrument"] = spec.name
                jobs.append(
                    renderer.job(
                        group=group,
                        family="instrument",
                        source=source,
                        piece=piece,
                        low=spec.low_midi,
                        high=spec.high_midi,
                        labeller=lambda _window, labels=labels: labels,
                    )
                )
                made += 1
    return jobs


def choose_window(rng: np.random.Generator, duration_s: float, clip_s: float) -> float:
    """A hop-aligned start [s] for a ``clip_s`` window inside a piece of ``duration_s``."""
    n_offsets = max(1, math.floor((duration_s - clip_s) / HOP_S + 1e-9) + 1)
    return HOP_S * int(rng.integers(n_offsets))


def _make_job(
    rng: np.random.Generator,
    *,
    group: str,
    family: str,
    split: str,
    source: Source,
    piece: music.Piece,
    clip_s: float,
    labeller: Callable[[music.Piece], dict[str, Any]],
    offset: float | None = None,
    suffix: str = "",
) -> ClipJob:
    if offset is None:
        offset = choose_window(rng, piece.duration_s, clip_s)
    pre = min(offset, PRE_ROLL_S)
    labels = dict(labeller(music.crop_piece(piece, offset, offset + clip_s)))
    labels["texture"] = piece_texture(piece)
    level_offset_db = 0.0
    if family == "emotion":
        level_offset_db = EMOTION_DYNAMICS_DB * labels["cues"]["codes"]["dynamics"]
    return ClipJob(
        id=f"{group}-{_slug(source.name)}{suffix}",
        group=group,
        family=family,
        split=split,
        source=source,
        piece=music.crop_piece(piece, offset - pre, offset + clip_s),
        labels=labels,
        seed=int(rng.integers(2**63)),
        offset_s=offset,
        pre_roll_s=pre,
        level_offset_db=level_offset_db,
    )


def piece_texture(piece: music.Piece) -> str | None:
    """``"accompanied"`` when more than one pitched part plays, ``"solo"`` for one line (a
    doubled line, such as power chords, is one part), None for drums."""
    pitched = [part for part in piece.parts if not part.is_drum and part.notes]
    if not pitched:
        return None
    return TEXTURES[1] if len(pitched) > 1 else TEXTURES[0]


def emotion_labels(piece: music.Piece) -> dict[str, Any]:
    """Valence, arousal, quadrant and cues of an emotion-family piece as heard.

    The cues are measured on the notes of ``parts[0]`` of ``piece`` (the clip's window, after
    any tempo or pitch shift), not taken from the requested setting.
    """
    stats = music.melody_statistics(piece)
    mode = str(piece.meta["mode"])
    timbre = str(piece.meta["timbre"])
    codes = emotion_cues.code_cues(mode=mode, timbre=timbre, **stats)
    valence, arousal = emotion_cues.predict(codes)
    labels = _empty_labels()
    labels.update(
        valence=round(valence, 4),
        arousal=round(arousal, 4),
        quadrant=emotion_cues.quadrant(valence, arousal),
        cues={
            "codes": {k: round(v, 4) for k, v in codes.items()},
            "values": {
                "mode": mode,
                "timbre": timbre,
                **{k: round(float(v), 4) for k, v in stats.items()},
            },
        },
    )
    return labels


def _plan_emotion(
    split: str, sources: Sequence[Source], n: int, renders: int, seed: int, clip_s: float,
    shared: bool = False,
) -> list[ClipJob]:
    jobs = []
    for q in sorted(emotion_cues.QUADRANT_LABELS):
        rng = _rng(seed, "emotion", split, q)
        made = 0
        for k in range(math.ceil(n / renders)):
            cue = emotion_cues.sample_cues(rng, q)
            # Solo melodies and accompanied pieces alternate: valence must not lean on the
            # chords (the shipped model saw 30 % solo and rated every solo quadrant positive).
            piece = music.compose_emotion_piece(
                rng,
                mode=cue.mode,
                tempo_nps=cue.tempo_nps,
                register_midi=cue.register_midi,
                velocity=cue.velocity,
                articulation=cue.articulation,
                timbre=cue.timbre,
                min_duration_s=_min_piece_s(clip_s),
                accompaniment=bool(k % 2),
            )
            group = f"emo-{_split_code(split)}-q{q}-{k:05d}"
            renderer = _Renderer(rng, split, clip_s, shared)
            for r in range(renders):
                if made >= n:
                    break
                source = sources[(k * renders + r) % len(sources)]
                jobs.append(
                    renderer.job(group=group, family="emotion", source=source, piece=piece,
                                 low=0, high=127, labeller=emotion_labels)
                )
                made += 1
    return jobs


def emotion_label_statistics(
    n_per_quadrant: int = 200, *, seed: int = 0, clip_s: float = 6.0, split: str = TRAIN
) -> dict[str, dict[str, Any]]:
    """How the cue model labels a balanced emotion plan, per texture (nothing is rendered).

    Plans ``n_per_quadrant`` pieces per requested quadrant as the corpus does and reads the
    labels of their windows. Returns, per texture: ``n``, ``mean_valence``, ``mean_arousal``,
    ``mean_valence_by_quadrant`` (requested quadrant → mean), ``sign_split`` (share whose
    valence sign is the requested quadrant's: + for 1 and 4) and ``quadrant_kept`` (share
    labelled in the requested quadrant). Centred labels have a mean valence near 0 and a
    ``sign_split`` near 1 for each texture.
    """
    source = Source("plan", "soundfont", "", split)
    jobs = _plan_emotion(split, [source], n_per_quadrant, 1, seed, clip_s)
    rows: dict[str, list[tuple[int, float, float, int]]] = {}
    for job in jobs:
        requested = int(job.group.rsplit("-q", 1)[1].split("-", 1)[0])
        labels = job.labels
        rows.setdefault(str(labels["texture"]), []).append(
            (requested, labels["valence"], labels["arousal"], labels["quadrant"]))
    out: dict[str, dict[str, Any]] = {}
    for texture, items in sorted(rows.items()):
        a = np.asarray(items, np.float64)
        positive = np.isin(a[:, 0], (1, 4))
        out[texture] = {
            "n": len(a),
            "mean_valence": round(float(a[:, 1].mean()), 4),
            "mean_arousal": round(float(a[:, 2].mean()), 4),
            "mean_valence_by_quadrant": {
                int(q): round(float(a[a[:, 0] == q, 1].mean()), 4)
                for q in sorted(set(a[:, 0].astype(int)))
            },
            "sign_split": round(float(np.mean((a[:, 1] >= 0) == positive)), 4),
            "quadrant_kept": round(float(np.mean(a[:, 0] == a[:, 3])), 4),
        }
    return out


def _plan_drums(
    split: str,
    fonts: Sequence[Source],
    kits: Sequence[Source],
    n: int,
    renders: int,
    seed: int,
    clip_s: float,
    shared: bool = False,
) -> list[ClipJob]:
    # Alternate General MIDI drums and real kits so both make up about half.
    pools = [pool for pool in (list(fonts), list(kits)) if pool]
    if not pools:
        return []
    rng = _rng(seed, "drums", split)
    jobs = []
    made = 0
    counters = [0] * len(pools)
    for k in range(math.ceil(n / renders)):
        piece = music.compose_groove(rng, min_duration_s=_min_piece_s(clip_s))
        group = f"drm-{_split_code(split)}-{k:05d}"
        used: set[str] = set()
        renderer = _Renderer(rng, split, clip_s, shared)
        for r in range(renders):
            if made >= n:
                break
            p = (k * renders + r) % len(pools)
            pool = pools[p]
            source = pool[counters[p] % len(pool)]
            counters[p] += 1
            if source.name in used and split != VALIDATION:
                continue
            used.add(source.name)
            jobs.append(
                renderer.job(group=group, family="drums", source=source, piece=piece,
                             low=0, high=127, labeller=lambda _window: _empty_labels())
            )
            made += 1
    return jobs


def plan_corpus(
    *,
    n_per_class: int,
    val_per_class: int,
    seed: int,
    clip_s: float,
    soundfonts: Sequence[SoundFont],
    drumkits: Sequence[DrumKit],
    families: Sequence[str] = FAMILIES,
    renders_per_piece: int = 2,
    val_renders_per_piece: int = 1,
    shared_window: bool = False,
) -> list[ClipJob]:
    """Every clip of the corpus, composed and labelled but not rendered.

    Args:
        n_per_class: training clips per class.
        val_per_class: validation clips per class.
        seed: master seed.
        clip_s: clip length [s].
        soundfonts: SoundFonts to render through (each feeds its own split).
        drumkits: Hydrogen kits for the drum family (each feeds its own split).
        families: which of ``FAMILIES`` to build.
        renders_per_piece: training sets each training piece is rendered through.
        val_renders_per_piece: renders of each validation piece (``CorpusSize``).
        shared_window: training renders share notes and window (``CorpusSize``).
    """
    jobs: list[ClipJob] = []
    for split, n in ((TRAIN, n_per_class), (VALIDATION, val_per_class)):
        fonts = [
            Source(sf_.name, "stk" if sf_.name == stk_set.STK_NAME else "soundfont",
                   str(sf_.path), sf_.split)
            for sf_ in soundfonts
            if sf_.split == split
        ]
        # STK plays single instrument lines: no emotion pieces (chords, horn, piano), no drums.
        general = [f for f in fonts if f.kind != "stk"]
        kits = [
            Source(f"hydrogen:{kit.name}", "drumkit", str(kit.path), kit.split)
            for kit in drumkits
            if kit.split == split
        ]
        if n <= 0:
            continue
        if fonts and "instrument" in families:
            r = _renders(split, fonts, renders_per_piece, val_renders_per_piece)
            jobs += _plan_instrument(split, fonts, n, r, seed, clip_s, shared_window)
        if general and "emotion" in families:
            r = _renders(split, general, renders_per_piece, val_renders_per_piece)
            jobs += _plan_emotion(split, general, n, r, seed, clip_s, shared_window)
        if "drums" in families and (general or kits):
            r = _renders(split, [*general, *kits], renders_per_piece, val_renders_per_piece)
            jobs += _plan_drums(split, general, kits, n, r, seed, clip_s, shared_window)
    return jobs


def _tasks(
    jobs: Sequence[ClipJob],
    out_dir: Path,
    clip_s: float,
    sample_rate_hz: int,
    subtype: str,
    augment_config: aug.AugmentConfig,
) -> list[Task]:
    by_source: dict[tuple[Source, str], list[ClipJob]] = {}
    for job in jobs:
        # One STK run plays one instrument model.
        key = str(job.labels["instrument"]) if job.source.kind == "stk" else ""
        by_source.setdefault((job.source, key), []).append(job)
    tasks = []
    for (source, _), group in by_source.items():
        size = BATCH_PIECES_SF3 if source.path.lower().endswith(".sf3") else BATCH_PIECES
        for i in range(0, len(group), size):
            tasks.append(
                Task(
                    source,
                    tuple(group[i : i + size]),
                    str(out_dir),
                    clip_s,
                    sample_rate_hz,
                    subtype,
                    augment_config,
                )
            )
    return tasks


# ---------------------------------------------------------------------------------------------
# Worker side


_KIT_CACHE: dict[tuple[str, int], Any] = {}
_DESCRIBE: list[Any] = []  # [callable or None, reason]


def _describer() -> tuple[Any, str | None]:
    if not _DESCRIBE:
        try:
            from streamtag.train.descriptors import describe
        except Exception as exc:  # any import failure means: no timbre labels this build
            _DESCRIBE.extend([None, f"{TIMBRE_SOURCE} not importable: {exc!r}"])
        else:
            _DESCRIBE.extend([describe, None])
    return _DESCRIBE[0], _DESCRIBE[1]


def _timbre(audio: np.ndarray, sample_rate_hz: int) -> tuple[dict[str, float] | None, str | None]:
    describe, reason = _describer()
    if describe is None:
        return None, reason
    try:
        values = describe(audio, sample_rate_hz)
        out = {str(k): round(float(v), 4) for k, v in dict(values).items()}
    except Exception as exc:  # a descriptor failure costs one label, not the build
        return None, f"describe failed: {exc!r}"
    if not out or not all(math.isfinite(v) for v in out.values()):
        return None, "describe returned non-finite values"
    return out, None


@dataclass
class TaskResult:
    """What one task produced: manifest rows, cost, and the clips it had to drop."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    stats: RenderStats = field(default_factory=RenderStats)
    dropped: list[str] = field(default_factory=list)
    timbre_failures: list[str] = field(default_factory=list)
    timbre_unavailable: str | None = None
    augment_s: float = 0.0
    describe_s: float = 0.0


def _finish_clip(
    job: ClipJob, audio: np.ndarray, task: Task, result: TaskResult
) -> dict[str, Any] | None:
    rng = np.random.default_rng(job.seed)
    t0 = time.process_time()
    clip_n = round(task.clip_s * task.sample_rate_hz)
    n = round(job.pre_roll_s * task.sample_rate_hz) + clip_n
    segment = audio[:n] if audio.shape[0] >= n else np.pad(audio, (0, n - audio.shape[0]))
    window = segment[-clip_n:]
    raw_db = aug.level_db(window)
    if raw_db < SILENCE_DB:
        result.dropped.append(f"{job.id}: silent render ({raw_db:.1f} dBFS) from {job.source.name}")
        return None
    scale = 10.0 ** ((REFERENCE_DB + job.level_offset_db - raw_db) / 20.0)
    params = aug.sample_params(rng, task.augment_config)
    clip, peak_scale_db = aug.augment(
        (segment * np.float32(scale)).astype(np.float32),
        params,
        task.sample_rate_hz,
        keep_last=clip_n,
    )
    result.augment_s += time.process_time() - t0
    t1 = time.process_time()
    timbre, problem = _timbre(clip, task.sample_rate_hz)
    result.describe_s += time.process_time() - t1
    if timbre is None and problem is not None:
        if problem.startswith(TIMBRE_SOURCE):
            result.timbre_unavailable = problem
        else:
            result.timbre_failures.append(f"{job.id}: {problem}")
    rel = Path("audio") / job.split / f"{job.id}.wav"
    path = Path(task.out_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), clip, task.sample_rate_hz, subtype=task.subtype)
    labels = dict(job.labels)
    labels["timbre"] = timbre
    augment_record = params.to_dict()
    augment_record["peak_scale_db"] = round(peak_scale_db, 4)
    augment_record["level_offset_db"] = round(job.level_offset_db, 4)
    meta = dict(job.piece.meta)
    meta.pop("crop_s", None)
    return {
        "id": job.id,
        "path": rel.as_posix(),
        "split": job.split,
        "soundfont": job.source.name,
        "family": job.family,
        "group": job.group,
        "material": job.piece.material,
        "duration_s": round(clip_n / task.sample_rate_hz, 6),
        "sample_rate_hz": task.sample_rate_hz,
        "labels": labels,
        "timbre_source": TIMBRE_SOURCE if timbre is not None else None,
        "render": {
            "programs": job.piece.programs,
            "bpm": round(job.piece.bpm, 3),
            "transpose": meta.pop("transpose", 0),
            "tempo_scale": meta.pop("tempo_scale", 1.0),
            "offset_s": job.offset_s,
            "meta": meta,
        },
        "augment": augment_record,
    }


def run_task(task: Task) -> TaskResult:
    """Render, augment, label and write every clip of one task (runs in a worker)."""
    result = TaskResult()
    source = task.source
    if source.kind == "stk":
        instrument = stk_set.STK_CLASSES[str(task.jobs[0].labels["instrument"])]
        audios, stats = stk_set.render_stk_batch(
            [job.piece for job in task.jobs],
            instrument,
            [int(_rng(job.seed, "stk").integers(2**31)) for job in task.jobs],
            sample_rate_hz=task.sample_rate_hz,
        )
        result.stats.add(stats)
    elif source.kind == "soundfont":
        audios, stats = render_soundfont_batch(
            [job.piece for job in task.jobs],
            Path(source.path),
            sample_rate_hz=task.sample_rate_hz,
        )
        result.stats.add(stats)
    else:
        key = (source.path, task.sample_rate_hz)
        if key not in _KIT_CACHE:
            _KIT_CACHE[key] = load_drumkit(Path(source.path), task.sample_rate_hz)
        kit = _KIT_CACHE[key]
        audios = []
        for job in task.jobs:
            audio, stats = render_drumkit(job.piece, kit, _rng(job.seed, "kit"))
            audios.append(audio)
            result.stats.add(stats)
    for job, audio in zip(task.jobs, audios, strict=True):
        row = _finish_clip(job, audio, task, result)
        if row is not None:
            result.rows.append(row)
    return result


# ---------------------------------------------------------------------------------------------
# Driver


def _resolve_soundfonts(
    soundfonts: Sequence[str | SoundFont] | None,
) -> tuple[list[SoundFont], list[Missing]]:
    if soundfonts is None:
        found, missing = find_soundfonts()
        stk = stk_set.find_stk_sets()
        if not stk:
            missing.append(Missing(name=stk_set.STK_NAME, install=stk_set.STK_INSTALL))
        return found + stk, missing
    found = []
    for item in soundfonts:
        if isinstance(item, SoundFont):
            check_allowed(item.path)
            found.append(item)
        elif str(item) == stk_set.STK_NAME:
            stk = stk_set.find_stk_sets()
            if not stk:
                raise SoundFontError(
                    f"the STK set is not installed: run `{stk_set.STK_INSTALL}`"
                )
            found += stk
        else:
            found.append(require_soundfont(str(item)))
    return found, []


def _resolve_drumkits(
    drumkits: Sequence[str | Path | DrumKit] | None,
) -> tuple[list[DrumKit], dict[str, str]]:
    if drumkits is None:
        return find_drumkits()
    kits: list[DrumKit] = []
    for item in drumkits:
        if isinstance(item, DrumKit):
            kits.append(require_drumkit(item.path, item.split))
        else:
            kits.append(require_drumkit(Path(item)))
    return kits, {}


def _prepare_out(out_dir: Path, overwrite: bool) -> None:
    manifest = out_dir / "manifest.jsonl"
    if manifest.exists() and not overwrite:
        raise CorpusError(f"{manifest} exists: choose another folder or pass overwrite")
    for split in (TRAIN, VALIDATION):
        target = out_dir / "audio" / split
        if target.exists():
            shutil.rmtree(target)
    for name in ("manifest.jsonl", "corpus.json"):
        (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="clip",
        desc="corpus",
        disable=not (enabled and sys.stderr.isatty()),
    )


def _run(tasks: Sequence[Task], workers: int, progress: bool) -> Iterable[TaskResult]:
    total = sum(len(t.jobs) for t in tasks)
    with _progress_bar(total, progress) as bar:
        if workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                result = run_task(task)
                bar.update(len(task.jobs))
                yield result
            return
        # Longest tasks first keeps both workers busy to the end.
        ordered = sorted(tasks, key=lambda t: -len(t.jobs))
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(processes=workers) as pool:
            for result in pool.imap_unordered(run_task, ordered):
                bar.update(len(result.rows) + len(result.dropped))
                yield result


def _validate_args(n_per_class: int, val_per_class: int, clip_s: float, families, audio_format):
    problems = []
    if n_per_class < 0:
        problems.append(f"n_per_class: expected >= 0, got {n_per_class}")
    if val_per_class < 0:
        problems.append(f"val_per_class: expected >= 0, got {val_per_class}")
    if not (clip_s > 0 and abs(clip_s / HOP_S - round(clip_s / HOP_S)) < 1e-9):
        problems.append(f"clip_s: expected a positive multiple of {HOP_S} s, got {clip_s}")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        problems.append(f"families: unknown {unknown}, expected some of {list(FAMILIES)}")
    if audio_format not in AUDIO_FORMATS:
        problems.append(f"audio_format: expected one of {list(AUDIO_FORMATS)}, got {audio_format}")
    if problems:
        raise ConfigError(problems)


def build_corpus(
    out_dir: Path,
    *,
    n_per_class: int,
    seed: int = 0,
    clip_s: float = 6.0,
    soundfonts: Sequence[str | SoundFont] | None = None,
    progress: bool = True,
    val_per_class: int | None = None,
    drumkits: Sequence[str | Path | DrumKit] | None = None,
    families: Sequence[str] = FAMILIES,
    renders_per_piece: int = 2,
    val_renders_per_piece: int = 1,
    shared_window: bool = False,
    workers: int = 2,
    audio_format: str = "pcm16",
    augment_config: aug.AugmentConfig | None = None,
    overwrite: bool = False,
    holdout: Sequence[str] | None = None,
) -> Path:
    """Render the corpus into ``out_dir`` and return the path of its manifest.

    Args:
        out_dir: output folder (created; see the module docstring for its layout).
        n_per_class: training clips per class (8 instrument classes, 4 emotion quadrants,
            1 drum class).
        seed: master seed; the same seed, sets and sizes rebuild the same corpus.
        clip_s: clip length [s], a multiple of ``HOP_S``.
        soundfonts: names of known SoundFonts (``soundfonts.SOUNDFONT_SPECS``) or ``SoundFont``
            objects; None uses every known one installed (training sets and ``timgm6mb``).
            A split with no SoundFont gets no instrument or emotion clips.
        progress: show a progress bar on a terminal.
        val_per_class: validation clips per class; None takes a fifth of ``n_per_class``
            (at least 1).
        drumkits: Hydrogen kit folders for the drum family; None uses every allowed kit
            installed, ``[]`` none.
        families: which of ``FAMILIES`` to build.
        renders_per_piece: training sets each training piece is rendered through.
        val_renders_per_piece: renders of each validation piece: same notes and window,
            each with its own augmentation (piece retrieval is evaluated on them).
        shared_window: training renders of a piece share notes and window
            (``CorpusSize.shared_window``).
        workers: worker processes (1 renders in this process).
        audio_format: ``"pcm16"`` or ``"float32"`` WAV.
        augment_config: augmentation ranges; None: ``augment.AugmentConfig()``
            (``augment.NO_AUGMENT`` for clean clips).
        overwrite: replace an existing corpus in ``out_dir``.
        holdout: a leave-one-sample-set-out fold: these SoundFonts and kit groups
            (``soundfonts.KIT_GROUPS``) feed validation and every other set feeds training
            (``soundfonts.holdout_splits``); None keeps each set's own split.

    Returns:
        ``out_dir / "manifest.jsonl"``.

    Raises:
        ConfigError: a bad argument (every problem is named).
        SoundFontError: a requested SoundFont is not installed (names the package).
        ReservedSourceError: a requested set is reserved for independent evaluation.
        CorpusError: FluidSynth missing or failing, output folder in use, or nothing to build.
    """
    out_dir = Path(out_dir)
    augment_config = aug.AugmentConfig() if augment_config is None else augment_config
    if val_per_class is None:
        val_per_class = max(1, round(n_per_class / 5)) if n_per_class > 0 else 0
    _validate_args(n_per_class, val_per_class, clip_s, families, audio_format)
    started = time.perf_counter()
    fonts, missing = _resolve_soundfonts(soundfonts)
    kits, refused = _resolve_drumkits(drumkits)
    if holdout:
        fonts, kits = holdout_splits(fonts, kits, holdout)
    if any(f.name != stk_set.STK_NAME for f in fonts):
        fluidsynth_path()
    jobs = plan_corpus(
        n_per_class=n_per_class,
        val_per_class=val_per_class,
        seed=seed,
        clip_s=clip_s,
        soundfonts=fonts,
        drumkits=kits,
        families=families,
        renders_per_piece=renders_per_piece,
        val_renders_per_piece=val_renders_per_piece,
        shared_window=shared_window,
    )
    if not jobs:
        raise CorpusError(
            "nothing to build: no SoundFont or drum kit for the requested families "
            f"(missing: {', '.join(f'{m.name} ({m.install})' for m in missing) or 'none'})"
        )
    _prepare_out(out_dir, overwrite)
    tasks = _tasks(
        jobs, out_dir, clip_s, SAMPLE_RATE_HZ, AUDIO_FORMATS[audio_format], augment_config
    )
    rows: list[dict[str, Any]] = []
    stats = RenderStats()
    dropped: list[str] = []
    timbre_failures: list[str] = []
    timbre_unavailable: str | None = None
    augment_s = describe_s = 0.0
    for result in _run(tasks, workers, progress):
        rows += result.rows
        stats.add(result.stats)
        dropped += result.dropped
        timbre_failures += result.timbre_failures
        timbre_unavailable = timbre_unavailable or result.timbre_unavailable
        augment_s += result.augment_s
        describe_s += result.describe_s
    rows.sort(key=lambda row: row["id"])
    manifest = out_dir / "manifest.jsonl"
    tmp = manifest.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=False) + "\n")
    tmp.replace(manifest)
    wall = time.perf_counter() - started
    audio_total = sum(row["duration_s"] for row in rows)
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["split"], {}).setdefault(row["family"], 0)
        counts[row["split"]][row["family"]] += 1
    info = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "seed": seed,
        "clip_s": clip_s,
        "hop_s": HOP_S,
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "audio_format": audio_format,
        "n_per_class": n_per_class,
        "val_per_class": val_per_class,
        "renders_per_piece": renders_per_piece,
        "val_renders_per_piece": val_renders_per_piece,
        "shared_window": shared_window,
        "holdout": list(holdout) if holdout else None,
        "families": list(families),
        "soundfonts": {f.name: {"path": str(f.path), "split": f.split} for f in fonts},
        "missing_soundfonts": [{"name": m.name, "install": m.install} for m in missing],
        "drumkits": {k.name: {"path": str(k.path), "split": k.split} for k in kits},
        "refused_drumkits": refused,
        "timbre": {
            "source": TIMBRE_SOURCE,
            "available": timbre_unavailable is None,
            "reason": timbre_unavailable,
            "failures": timbre_failures[:50],
            "failure_count": len(timbre_failures),
        },
        "emotion_labels": "cue-model proxy (Eerola, Friberg & Bresin 2013), not listener ratings",
        "clips": len(rows),
        "counts": counts,
        "dropped": dropped,
        "augment": {k: v for k, v in vars(augment_config).items()},
        "ffmpeg": aug.ffmpeg_available(),
        "stats": {
            "audio_s": round(audio_total, 3),
            "wall_s": round(wall, 3),
            "clips_per_s": round(len(rows) / wall, 3) if wall > 0 else None,
            "render_audio_s": round(stats.audio_s, 3),
            "render_cpu_s": round(stats.cpu_s, 3),
            "render_speed_x": round(stats.audio_s / stats.cpu_s, 1) if stats.cpu_s > 0 else None,
            "augment_cpu_s": round(augment_s, 3),
            "describe_cpu_s": round(describe_s, 3),
            "workers": workers,
        },
    }
    (out_dir / "corpus.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return manifest


def build_preset(
    out_dir: Path,
    size: str = "small",
    *,
    seed: int = 0,
    clip_s: float = 6.0,
    progress: bool = True,
    **overrides: Any,
) -> Path:
    """``build_corpus`` with a size from ``SIZE_PRESETS``; ``overrides`` replace its fields.

    Raises:
        ConfigError: unknown size.
    """
    if size not in SIZE_PRESETS:
        raise ConfigError(f"size: expected one of {list(SIZE_PRESETS)}, got '{size}'")
    preset = SIZE_PRESETS[size]
    kwargs: dict[str, Any] = {
        "n_per_class": preset.n_per_class,
        "val_per_class": preset.val_per_class,
        "renders_per_piece": preset.renders_per_piece,
        "val_renders_per_piece": preset.val_renders_per_piece,
        "shared_window": preset.shared_window,
        "workers": preset.workers,
    }
    kwargs.update(overrides)
    return build_corpus(out_dir, seed=seed, clip_s=clip_s, progress=progress, **kwargs)


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamtag corpus build",
        description="Render the synthetic training corpus with FluidSynth (offline).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--size", default="small", choices=list(SIZE_PRESETS), help="size preset (default: small)"
    )
    parser.add_argument("--n-per-class", type=int, help="training clips per class [clips]")
    parser.add_argument("--val-per-class", type=int, help="validation clips per class [clips]")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default: 0)")
    parser.add_argument(
        "--clip-s",
        type=float,
        default=6.0,
        help=f"clip length [s], a multiple of {HOP_S} (default: 6.0)",
    )
    parser.add_argument("--soundfonts", help="comma-separated SoundFont names (default: all found)")
    parser.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help=f"comma-separated families (default: {','.join(FAMILIES)})",
    )
    parser.add_argument("--no-drumkits", action="store_true", help="no Hydrogen kits")
    parser.add_argument(
        "--holdout",
        help="comma-separated SoundFonts and kit groups (kits-acoustic, …) that feed "
        "validation, every other set training: one leave-one-sample-set-out fold",
    )
    parser.add_argument(
        "--shared-windows",
        action="store_true",
        help="training renders of a piece share its notes and window and differ in SoundFont "
        "and augmentation (default: each gets its own pitch shift and window)",
    )
    parser.add_argument("--workers", type=int, help="worker processes")
    parser.add_argument(
        "--format",
        dest="audio_format",
        default="pcm16",
        choices=list(AUDIO_FORMATS),
        help="WAV sample format (default: pcm16)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing corpus")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: build a corpus. Exit 0 ok, 2 usage or config error, 1 failure."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code in (0, None) else 2
    overrides: dict[str, Any] = {
        "families": [f.strip() for f in args.families.split(",") if f.strip()],
        "audio_format": args.audio_format,
        "overwrite": args.overwrite,
    }
    for key in ("n_per_class", "val_per_class", "workers"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.soundfonts:
        overrides["soundfonts"] = [s.strip() for s in args.soundfonts.split(",") if s.strip()]
    if args.no_drumkits:
        overrides["drumkits"] = []
    if args.holdout:
        overrides["holdout"] = [s.strip() for s in args.holdout.split(",") if s.strip()]
    if args.shared_windows:
        overrides["shared_window"] = True
    try:
        manifest = build_preset(
            args.out,
            args.size,
            seed=args.seed,
            clip_s=args.clip_s,
            progress=not args.no_progress,
            **overrides,
        )
    except ConfigError as exc:
        print(f"streamtag corpus: {exc}", file=sys.stderr)
        return 2
    except StreamtagError as exc:
        print(f"streamtag corpus: {exc}", file=sys.stderr)
        return 1
    info = json.loads((manifest.parent / "corpus.json").read_text(encoding="utf-8"))
    stats = info["stats"]
    print(
        f"{info['clips']} clips ({stats['audio_s'] / 3600:.2f} h) in {stats['wall_s']:.1f} s; "
        f"FluidSynth {stats['render_speed_x']}x real time per CPU; manifest: {manifest}"
    )
    for m in info["missing_soundfonts"]:
        print(f"missing SoundFont {m['name']}: {m['install']}", file=sys.stderr)
    if not info["timbre"]["available"]:
        print(f"no timbre labels: {info['timbre']['reason']}", file=sys.stderr)
    return 0
