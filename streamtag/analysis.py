"""``streamtag analyze``'s machinery: each input streamed through the engine block by block, its
records written as they come; many files in parallel across processes, in input order.

One file: decoded in blocks (``audiofile``), ``Engine.analyze_blocks`` turns each chunk of hops
into records, which are written at once; memory does not depend on the file's length.
Several files with ``jobs`` > 1: worker processes (one checkpoint each, their share of the
torch threads each) analyse whole files, each into a spool file; the parent copies the spools
to the output in input order as they complete, so the output is the same as one by one.
Standard input is read by the parent process, in its place in the order.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import queue as queue_mod
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from streamtag.audiofile import STDIN, RawFormat, check_rate, open_audio, shorter_than_a_hop
from streamtag.checkpoint import resolve_checkpoint
from streamtag.config import load_config
from streamtag.engine import Engine, StreamSpec
from streamtag.errors import AudioError
from streamtag.record import compact_record
from streamtag.references import load_library
from streamtag.workers import worker_context

# What json.dumps(r, allow_nan=False) makes, without making an encoder per record.
_JSON = json.JSONEncoder(allow_nan=False)


def flatten_record(rec: dict, prefix: str = "") -> dict[str, object]:
    """Nested record → flat columns (``emotion.valence``, ``instrument.probs.violin``, …)."""
    flat: dict[str, object] = {}
    for k, v in rec.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(flatten_record(v, key + "."))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                flat[f"{key}.{i}"] = x
        else:
            flat[key] = v
    return flat


class RecordWriter:
    """Writes records as they come: JSON lines, or CSV whose columns (and header, unless
    ``header`` is False: a spool) are those of the first record (one checkpoint and config
    give every record the same keys)."""

    def __init__(self, out: io.TextIOBase, fmt: str, header: bool = True) -> None:
        self.out, self.fmt, self.header = out, fmt, header
        self.columns: list[str] | None = None
        self._csv: csv.DictWriter | None = None

    def _start_csv(self, columns: list[str]) -> csv.DictWriter:
        if self._csv is None:
            self.columns = columns
            self._csv = csv.DictWriter(self.out, fieldnames=columns, lineterminator="\n")
            if self.header:
                self._csv.writeheader()
        return self._csv

    def write(self, records: Iterable[dict]) -> None:
        if self.fmt == "jsonl":
            self.out.write("".join(_JSON.encode(r) + "\n" for r in records))
            return
        rows = [flatten_record(r) for r in records]
        if rows:
            self._start_csv(list(rows[0])).writerows(rows)

    def append(self, path: str, columns: list[str] | None) -> None:
        """Copy a spool written by a ``RecordWriter(..., header=False)`` with these columns."""
        if self.fmt == "csv" and columns:
            self._start_csv(columns)
        with open(path, encoding="utf-8", newline="") as f:
            shutil.copyfileobj(f, self.out)


@dataclass(frozen=True)
class AnalyzeJob:
    """What every process needs to analyse files as ``streamtag analyze`` was asked to.

    checkpoint: the --checkpoint flag (None: the config's model, else the bundled one).
    config: the --config file. fmt: jsonl | csv. vectors: keep embedding.vector. several: add
    a ``file`` field. raw: the format of raw PCM on standard input. cores: the cores one
    input may use (``use_cores``).
    """

    checkpoint: str | None
    config: str | None
    fmt: str = "jsonl"
    vectors: bool = False
    several: bool = False
    raw: RawFormat = field(default_factory=RawFormat)
    cores: int = 1


def use_cores(n: int) -> None:
    """Size this process's work for ``n`` cores (``--jobs``: the cores analyze may use): with
    one, the hop stage and the model share one thread and torch runs single-threaded; with
    more, the hop stage has a thread of its own and torch the other n - 1 cores. numpy's BLAS
    (the hop stage's products) runs in the caller's thread: its own threads would take the
    cores torch and the other workers have (threads that wait for a core make every parallel
    call wait: a 1 s file took 0.47 s with two torch threads beside a busy one, 0.016 s with
    one)."""
    threadpool_limits(limits=1, user_api="blas")
    torch.set_num_threads(max(1, n - 1))


class Analyzer:
    """One process's checkpoint, config and reference library; an engine per input rate.
    Raises CheckpointError or LibraryError (usage errors) when they cannot be used."""

    def __init__(self, job: AnalyzeJob) -> None:
        self.job = job
        self.cfg = load_config(job.config)
        self.checkpoint = resolve_checkpoint(job.checkpoint or self.cfg.model.checkpoint)
        lib = self.cfg.reference.library
        self.library = load_library(lib) if lib else None
        self._engines: dict[int, Engine] = {}
        # The engine at the model's rate: checks the library against the checkpoint (and its
        # threshold) now, before any audio (LibraryError: a usage error).
        self.engine(self.checkpoint.frontend.sample_rate_hz)

    def engine(self, rate_hz: int) -> Engine:
        eng = self._engines.get(rate_hz)
        if eng is None:
            cfg = self.cfg
            eng = Engine(self.checkpoint, input_rate_hz=rate_hz,
                         streams=[StreamSpec(cfg.analysis.stream)],
                         silence_db=cfg.analysis.silence_db, novelty=cfg.novelty,
                         reference=cfg.reference, library=self.library,
                         tempo=cfg.tempo)
            self._engines[rate_hz] = eng
        return eng

    def run(self, name: str, writer: RecordWriter,
            progress: Callable[[float], None] = lambda s: None) -> str | None:
        """Analyse one input into ``writer``, chunk by chunk; progress(seconds) is called with
        the audio seconds each chunk covered. Returns None, or the message naming why the
        input could not be (fully) analysed; records before a failure are kept."""
        done = 0.0
        frames = 0

        def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
            nonlocal frames
            for block in blocks:
                frames += block.shape[0]
                yield block

        try:
            source = open_audio(name, self.job.raw)
            check_rate(name, source.rate_hz)
            engine = self.engine(source.rate_hz)
            written = 0
            for chunk in engine.analyze_blocks(counted(source.blocks()), self.job.vectors,
                                               overlap=self.job.cores > 1):
                if not self.job.vectors:
                    chunk = [dict(compact_record(r)) for r in chunk]
                if self.job.several:
                    for r in chunk:
                        r["file"] = name
                writer.write(chunk)
                written += len(chunk)
                seconds = len(chunk) / len(engine.streams) * engine.hop_s
                done += seconds
                progress(seconds)
            if source.seconds is not None and source.seconds > done:
                progress(source.seconds - done)  # the trailing partial hop
            if not written:  # shorter than one hop: named, never an empty success
                raise shorter_than_a_hop(name, frames, source.rate_hz, engine.hop_s)
        except AudioError as e:
            return str(e)
        except ValueError as e:  # what the engine refuses of this input, named
            return f"{name}: cannot analyze: {e}"
        return None


def audio_seconds(names: list[str]) -> float | None:
    """Total length [s] of the inputs, for a progress bar; None if any is unknown (a pipe)."""
    import soundfile as sf

    total = 0.0
    for name in names:
        if name == STDIN:
            return None
        try:
            info = sf.info(name)
            total += info.frames / info.samplerate
        except Exception:  # an input soundfile cannot size: known only once decoded
            return None
    return total


# -- worker processes ---------------------------------------------------------------------------
_WORKER: tuple[Analyzer, multiprocessing.Queue] | None = None


def _worker_init(job: AnalyzeJob, progress: multiprocessing.Queue) -> None:
    global _WORKER
    # Workers share the cores: each its share (job.cores), not all of them.
    use_cores(job.cores)
    _WORKER = (Analyzer(job), progress)


def _worker_run(index: int, name: str, spool_dir: str
                ) -> tuple[str, list[str] | None, str | None, float]:
    """Analyse input ``index`` (``name``) into a spool file → (its path, CSV columns, error or
    None, the audio seconds reported as progress: (index, seconds) messages)."""
    assert _WORKER is not None
    analyzer, progress = _WORKER
    reported = 0.0

    def report(seconds: float) -> None:
        nonlocal reported
        reported += seconds
        progress.put((index, seconds))

    fd, path = tempfile.mkstemp(dir=spool_dir, suffix=".part")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        writer = RecordWriter(f, analyzer.job.fmt, header=False)
        err = analyzer.run(name, writer, report)
    return path, writer.columns, err, reported


def run_parallel(job: AnalyzeJob, names: list[str], jobs: int, writer: RecordWriter,
                 progress: Callable[[float], None], failed: Callable[[str], None]) -> None:
    """Analyse ``names`` with ``jobs`` worker processes, writing each input's records to
    ``writer`` in input order; failed(message) for each input that could not be analysed.
    ``job.cores``: the cores each worker may use."""
    ctx = worker_context()  # torch imported once, then forked (started early by the CLI)
    queue: multiprocessing.Queue = ctx.Queue()
    files = [n for n in names if n != STDIN]
    workers = max(1, min(jobs, len(files)))

    # Progress messages travel apart from the results and may come after them: each input's
    # seconds are counted once, whichever arrives first.
    received: dict[int, float] = {}
    finished: set[int] = set()

    def drain() -> None:
        while True:
            try:
                i, seconds = queue.get_nowait()
            except queue_mod.Empty:
                return
            if i not in finished:
                received[i] = received.get(i, 0.0) + seconds
                progress(seconds)

    with tempfile.TemporaryDirectory(prefix="streamtag-analyze-") as spool_dir, \
            ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                initargs=(job, queue)) as pool:
        futures: dict[int, Future] = {
            i: pool.submit(_worker_run, i, n, spool_dir) for i, n in enumerate(names)
            if n != STDIN}
        local: Analyzer | None = None
        try:
            for i, name in enumerate(names):
                if name == STDIN:  # only this process has our standard input
                    local = local or Analyzer(job)
                    err = local.run(name, writer, progress)
                    if err:
                        failed(err)
                    continue
                fut = futures[i]
                while True:
                    try:
                        path, columns, err, reported = fut.result(timeout=0.1)
                        break
                    except FutureTimeout:
                        drain()
                    except BrokenProcessPool:
                        path, columns, err = None, None, f"{name}: analysis process died"
                        reported = received.get(i, 0.0)
                        break
                drain()
                finished.add(i)
                if reported > received.get(i, 0.0):
                    progress(reported - received.get(i, 0.0))
                if path is not None:
                    writer.append(path, columns)
                    os.unlink(path)
                if err:
                    failed(err)
        except BaseException:
            for f in futures.values():
                f.cancel()
            raise
