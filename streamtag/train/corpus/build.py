"""Build the synthetic training corpus: the driver that plans, runs the workers and writes.

The parts: ``plan`` (which clips: ``ClipJob`` and ``Task``), ``worker`` (render, augment,
label and write one task's clips), ``manifest`` (the layout on disk, ``manifest.jsonl``),
``sizes`` (size presets) and ``cli`` (``streamtag corpus build``).

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

import json
import multiprocessing
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from streamtag.errors import ConfigError
from streamtag.progress import progress_bar, wanted
from streamtag.train.corpus import augment as aug
from streamtag.train.corpus.manifest import (
    AUDIO_FORMATS,
    FAMILIES,
    FORMAT,
    FORMAT_VERSION,
    HOP_S,
    SAMPLE_RATE_HZ,
    TIMBRE_SOURCE,
    write_manifest,
)
from streamtag.train.corpus.plan import EXTRA_SETS, Task, plan_corpus, plan_tasks
from streamtag.train.corpus.render import RenderStats, fluidsynth_path
from streamtag.train.corpus.sizes import SIZE_PRESETS
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
from streamtag.train.corpus.worker import TaskResult, run_task


def _resolve_soundfonts(
    soundfonts: Sequence[str | SoundFont] | None,
) -> tuple[list[SoundFont], list[Missing]]:
    if soundfonts is None:
        found, missing = find_soundfonts()
        for extra in EXTRA_SETS:
            sets = extra.find()
            if not sets:
                missing.append(Missing(name=extra.name, install=extra.install))
            found += sets
        return found, missing
    found = []
    extras = {e.name: e for e in EXTRA_SETS}
    for item in soundfonts:
        if isinstance(item, SoundFont):
            check_allowed(item.path)
            found.append(item)
        elif str(item) in extras:
            sets = extras[str(item)].find()
            if not sets:
                raise SoundFontError(extras[str(item)].absent())
            found += sets
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


def _run(tasks: Sequence[Task], workers: int, progress: bool) -> Iterable[TaskResult]:
    total = sum(len(t.jobs) for t in tasks)
    with progress_bar(total=total, enabled=progress and wanted("auto"), leave=True,
                      unit="clip", desc="corpus") as bar:
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
    if any(f.name not in {e.name for e in EXTRA_SETS} for f in fonts):
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
    tasks = plan_tasks(
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
    write_manifest(manifest, rows)
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
