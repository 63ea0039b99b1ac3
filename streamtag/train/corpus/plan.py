"""Plan the corpus: which pieces, rendered through which sets, cut where, labelled how.

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

``plan_corpus`` lists every clip as a ``ClipJob``; ``plan_tasks`` groups them into the
``Task`` units a worker renders at once (``worker.run_task``).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamtag.train.corpus import augment as aug
from streamtag.train.corpus import emotion_cues, music
from streamtag.train.corpus import stk as stk_set
from streamtag.train.corpus import tonejs as tonejs_set
from streamtag.train.corpus.manifest import FAMILIES, HOP_S, LABEL_KEYS, TEXTURES
from streamtag.train.corpus.soundfonts import TRAIN, VALIDATION, DrumKit, SoundFont

EMOTION_DYNAMICS_DB = 6.0
"""Level offset per unit of the coded dynamics cue in the emotion family [dB]."""
PRE_ROLL_S = 2.0
"""Music rendered before a clip's window to feed the reverb, then dropped [s]."""
BATCH_PIECES = 64
"""Pieces per FluidSynth run: amortises loading a SoundFont."""
BATCH_PIECES_SF3 = 512
"""Pieces per FluidSynth run for ``.sf3`` files, whose Vorbis samples are decoded per run."""
RECORDED_SHARE = 0.25
"""Training pieces per class the recorded set (``tonejs``) plays, as a share of
``n_per_class``: pieces of their own, planned apart from the other sets' (so adding the set
leaves every other clip as it was)."""


@dataclass(frozen=True)
class Source:
    """Where a clip's audio comes from: a SoundFont or a Hydrogen kit."""

    name: str
    kind: str  # "soundfont" | "drumkit" | "stk" | "tonejs"
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


def clip_rng(seed: int, *keys: object) -> np.random.Generator:
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


def _piece_sources(n: int, renders: int, sources: Sequence[Source]
                   ) -> Iterator[tuple[int, list[Source]]]:
    """Pieces k = 0, 1, … with the sources of their renders: ``renders`` renders a piece (the
    last piece fewer), the sources taken in turn across pieces, ``n`` renders in all."""
    for k in range(math.ceil(n / renders)):
        yield k, [sources[(k * renders + r) % len(sources)]
                  for r in range(min(renders, n - k * renders))]


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


def plays(source: Source, instrument: str) -> bool:
    """Whether a source can play an instrument class (STK's models and the recorded set
    cover some classes only)."""
    if source.kind == "stk":
        return instrument in stk_set.STK_CLASSES
    if source.kind == "tonejs":
        return instrument in tonejs_set.TONEJS_CLASSES
    return True


def _plan_instrument(
    split: str, sources: Sequence[Source], n: int, renders: int, seed: int, clip_s: float,
    shared: bool = False, stream: str = "",
) -> list[ClipJob]:
    """stream: names a plan of its own (its random numbers and groups), so one set's pieces
    can be added without moving any other's."""
    jobs = []
    material_cycle = ("phrase", "scale", "phrase", "arpeggio")
    all_sources, all_renders = sources, renders
    for spec in music.INSTRUMENTS:
        keys = ("instrument", split, spec.name) + ((stream,) if stream else ())
        rng = clip_rng(seed, *keys)
        sources = [s for s in all_sources if plays(s, spec.name)]
        if not sources:
            continue
        renders = min(all_renders, len(sources)) if split != VALIDATION else all_renders
        for k, piece_sources in _piece_sources(n, renders, sources):
            material = material_cycle[k % len(material_cycle)]
            piece = music.compose_instrument_piece(
                rng, spec, material=material, min_duration_s=_min_piece_s(clip_s)
            )
            group = f"ins-{_split_code(split)}-{_slug(spec.name)}-{stream}{k:05d}"
            renderer = _Renderer(rng, split, clip_s, shared)
            for source in piece_sources:
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
        rng = clip_rng(seed, "emotion", split, q)
        for k, piece_sources in _piece_sources(n, renders, sources):
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
            for source in piece_sources:
                jobs.append(
                    renderer.job(group=group, family="emotion", source=source, piece=piece,
                                 low=0, high=127, labeller=emotion_labels)
                )
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
    rng = clip_rng(seed, "drums", split)
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
        extra = {e.name for e in EXTRA_SETS}  # their kind is their name
        every = [Source(sf_.name, sf_.name if sf_.name in extra else "soundfont",
                        str(sf_.path), sf_.split)
                 for sf_ in soundfonts if sf_.split == split]
        recorded = [f for f in every if f.kind == "tonejs"]
        fonts = [f for f in every if f.kind != "tonejs"]
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
        if recorded and "instrument" in families:
            # Recorded instruments: pieces of their own, each played once in training.
            n_rec = n if split == VALIDATION else max(1, round(n * RECORDED_SHARE))
            r = _renders(split, recorded, 1, val_renders_per_piece)
            jobs += _plan_instrument(split, recorded, n_rec, r, seed, clip_s, shared_window,
                                     stream=tonejs_set.TONEJS_NAME)
        if general and "emotion" in families:
            r = _renders(split, general, renders_per_piece, val_renders_per_piece)
            jobs += _plan_emotion(split, general, n, r, seed, clip_s, shared_window)
        if "drums" in families and (general or kits):
            r = _renders(split, [*general, *kits], renders_per_piece, val_renders_per_piece)
            jobs += _plan_drums(split, general, kits, n, r, seed, clip_s, shared_window)
    return jobs


@dataclass(frozen=True)
class ExtraSet:
    """A sample set that is not a SoundFont file: its name (also its ``Source.kind``), how to
    find it (``[]`` when absent), the install hint, and what a request for it says when it
    is absent."""

    name: str
    find: Callable[[], list[SoundFont]]
    install: str
    absent: Callable[[], str]


EXTRA_SETS: tuple[ExtraSet, ...] = (
    ExtraSet(stk_set.STK_NAME, stk_set.find_stk_sets, stk_set.STK_INSTALL,
             lambda: f"the STK set is not installed: run `{stk_set.STK_INSTALL}`"),
    ExtraSet(tonejs_set.TONEJS_NAME, tonejs_set.find_tonejs_sets, tonejs_set.TONEJS_INSTALL,
             lambda: "the recorded set is not installed (packages "
                     f"{', '.join(tonejs_set.TONEJS_PACKAGES)} under "
                     f"{tonejs_set.samples_root()}): run `{tonejs_set.TONEJS_INSTALL}`"),
)
"""The sets besides the SoundFonts and kits: STK's physical models, the recorded instruments."""


def plan_tasks(
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
