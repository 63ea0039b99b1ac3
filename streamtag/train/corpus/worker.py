"""The worker side of a corpus build: render one task's clips, augment, label, write.

``run_task`` runs in a worker process (or in the driver with one worker). Every random choice
comes from the clip's own seed, never from which worker runs it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from streamtag.train.corpus import augment as aug
from streamtag.train.corpus import stk as stk_set
from streamtag.train.corpus import tonejs as tonejs_set
from streamtag.train.corpus.manifest import TIMBRE_SOURCE
from streamtag.train.corpus.plan import ClipJob, Task, clip_rng
from streamtag.train.corpus.render import (
    RenderStats,
    load_drumkit,
    render_drumkit,
    render_soundfont_batch,
)

REFERENCE_DB = -26.0
"""RMS level of a clip before the random gain [dBFS]."""
SILENCE_DB = -70.0
"""A rendered window quieter than this [dBFS RMS] is dropped (a program the set lacks)."""


_KIT_CACHE: dict[tuple[str, int], Any] = {}
_SAMPLED_CACHE: dict[tuple[str, str, int], Any] = {}  # recorded instruments, per process
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
            [int(clip_rng(job.seed, "stk").integers(2**31)) for job in task.jobs],
            sample_rate_hz=task.sample_rate_hz,
        )
        result.stats.add(stats)
    elif source.kind == "tonejs":
        audios = []
        for job in task.jobs:
            name = str(job.labels["instrument"])
            key = (source.path, name, task.sample_rate_hz)
            if key not in _SAMPLED_CACHE:
                _SAMPLED_CACHE[key] = tonejs_set.load_instrument(
                    tonejs_set.package_folder(Path(source.path), name), task.sample_rate_hz)
            audio, stats = tonejs_set.render_tonejs_piece(
                job.piece, _SAMPLED_CACHE[key], clip_rng(job.seed, "tonejs"),
                distorted=name in tonejs_set.DISTORTED)
            audios.append(audio)
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
            audio, stats = render_drumkit(job.piece, kit, clip_rng(job.seed, "kit"))
            audios.append(audio)
            result.stats.add(stats)
    for job, audio in zip(task.jobs, audios, strict=True):
        row = _finish_clip(job, audio, task, result)
        if row is not None:
            result.rows.append(row)
    return result
