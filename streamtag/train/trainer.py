"""The offline trainer: multi-task, masked, truncated-BPTT training of ``StreamTagModel``.

Data: clips from the built-in corpus and/or dataset loaders (``features.source_clips``), mel
frames cached on disk, windows made by ``engine.hop_windows`` (the served windows, exactly).

The run is composed of parts that each live in their own module:

- ``batches``: which recordings train together and how they are stacked and padded;
- ``step``: one batch through the model, segment by segment (truncated BPTT, state carried
  and detached between segments, one optimiser step per labelled segment);
- ``losses``: the per-head masked losses and their weighted sum;
- ``specaugment``: masks on training windows only;
- ``statistics``: per-band input normalisation (stored in the model's ``input_mean`` /
  ``input_std``) and class counts for the class-balance weights;
- ``validation``: loss, metrics and score on the cached validation windows;
- ``resume``: the resume file and the random state (seeds per epoch and rank, so a resumed
  run replays the same randomness);
- ``distributed``: the process group under ``torchrun``;
- ``average``: the running average of the weights (``train.ema_decay``), which is then what
  is validated and saved.

Optimisation: Adam + ReduceLROnPlateau, from random weights or, with ``train.init``, from a
checkpoint's (fine-tuning; its id is recorded in the new checkpoint's ``provenance.init``).

Outputs in RUN_DIR: ``best.safetensors`` (the best epoch by validation score, written with
``save_checkpoint``), ``last.train.pt`` (resume state: tensors and plain containers only,
loaded with ``torch.load(weights_only=True)``), ``metrics.json`` (one entry per epoch),
``config.yaml``, ``train.log``, ``plots/`` and, at the end, ``report/`` (the best checkpoint
evaluated through the Engine).

Distributed: under ``torchrun`` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel
on the gloo backend; batches are dealt by a ``DistributedSampler``; each batch is padded to the
longest in any process so every process takes the same number of steps; only rank 0 validates,
writes and logs at info level, and broadcasts what the others need (the scheduler's input).
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from streamtag import __version__, logs
from streamtag.checkpoint import load_checkpoint, model_description, save_checkpoint
from streamtag.errors import CheckpointError, ConfigError, DatasetError
from streamtag.frontend import FRONTEND_PRESETS, FrontendConfig
from streamtag.model import StreamTagModel, build_model
from streamtag.progress import progress_bar, wanted
from streamtag.train.average import WeightAverage
from streamtag.train.batches import batch_group, batch_stratum, collate, epoch_batches
from streamtag.train.config import (
    BEST_NAME,
    RESUME_NAME,
    TrainConfig,
    arch_overrides,
    dump_train_config,
    head_loss,
    head_spec,
    head_target,
)
from streamtag.train.distributed import init_distributed
from streamtag.train.evaluate import HeadData, finite
from streamtag.train.features import (
    ClipFeatures,
    FeatureCache,
    HeadTarget,
    limit_clips,
    load_features,
    silence_frame,
    source_clips,
)
from streamtag.train.losses import TrainHead, class_balance_weights
from streamtag.train.resume import read_resume, seed_everything, set_rng_state, write_resume
from streamtag.train.specaugment import spec_augment
from streamtag.train.statistics import band_statistics, label_counts
from streamtag.train.step import SequenceStep, train_batch
from streamtag.train.validation import validate

log = logging.getLogger("streamtag.train")


def git_commit() -> dict[str, Any] | None:
    """The source tree's commit and whether it had local changes (None outside git)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "."],
                               check=True, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty.strip())}


@dataclass
class TrainResult:
    """What a run produced. best_checkpoint is None on ranks other than 0."""

    run_dir: Path
    best_checkpoint: Path | None
    best_epoch: int
    best_score: float | None
    epochs: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """One training run in ``run_dir`` from a ``TrainConfig``.

    resume: continue from ``run_dir/last.train.pt`` (the config may change only the number of
    epochs, threads, output options and the cache folder). progress: show tqdm bars (None:
    from ``output.progress``, auto = stderr is a terminal).
    """

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, resume: bool = False,
                 progress: bool | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.dist = init_distributed()
        self.progress = (progress if progress is not None else wanted(cfg.output.progress)
                         ) and self.dist.main

    # -- setup ----------------------------------------------------------------------------------
    def _setup_logging(self) -> logging.Handler | None:
        if not self.dist.main:
            log.setLevel(logging.WARNING)
            return None
        return logs.log_to_file(log, self.run_dir / "train.log")

    def _bar(self, items: Iterable[Any], **kw: Any) -> Iterable[Any]:
        return progress_bar(items, enabled=self.progress, **kw)

    def _barrier(self) -> None:
        if self.dist.world > 1:
            dist.barrier()

    def _setup(self) -> None:
        cfg = self.cfg
        torch.use_deterministic_algorithms(cfg.train.deterministic, warn_only=True)
        if cfg.train.threads is not None:
            torch.set_num_threads(cfg.train.threads)
        self.frontend: FrontendConfig = FRONTEND_PRESETS[cfg.model.preset]
        seed_everything(cfg.train.seed, 0, 0)  # same initial weights on every process
        self.model = build_model(cfg.model.preset, [head_spec(h) for h in cfg.heads],
                                 **arch_overrides(cfg))
        # Channels-last convolutions train ~1.4x faster on CPU (measured on the default
        # preset); the checkpoint stores plain contiguous tensors whatever the layout here.
        self.model = self.model.to(memory_format=torch.channels_last)
        arch = self.model.arch
        self.hop_s = self.frontend.hop_seconds(arch.hop_frames)
        self.heads = [
            TrainHead(HeadTarget(spec, head_target(h)), head_loss(h), h.weight, h.margin,
                      h.parts)
            for h, spec in zip(cfg.heads, self.model.heads, strict=True)
        ]
        clips, self.data_hashes = source_clips(cfg.data.corpus, cfg.data.datasets,
                                               cfg.data.validation_fraction,
                                               cfg.data.extra_corpora)
        clips = limit_clips(clips, cfg.data.max_clips, cfg.train.seed)
        self.cache = FeatureCache(cfg.data.cache_dir, self.frontend)
        self._warm_cache([c for c in clips if c.split in ("train", "validation")])
        targets = [h.target for h in self.heads]
        per_hop = cfg.data.per_hop_timbre
        self.train_set, skipped = load_features(
            [c for c in clips if c.split == "train"], self.cache, arch, targets, self.hop_s,
            progress=lambda xs: self._bar(xs, desc="labels", unit="clip"),
            per_hop_timbre=per_hop)
        self.val_set, skipped_val = load_features(
            [c for c in clips if c.split == "validation"], self.cache, arch, targets, self.hop_s,
            per_hop_timbre=per_hop)
        for s in (skipped + skipped_val)[:10]:
            log.warning("skipped %s", s)
        if len(skipped) + len(skipped_val) > 10:
            log.warning("… %d clips skipped in all", len(skipped) + len(skipped_val))
        if not self.train_set:
            raise DatasetError("no usable training clip: every training clip was skipped or "
                               "the sources hold none (check data.corpus / "
                               "data.extra_corpora / data.datasets)")
        if not self.val_set:
            log.warning("no validation clip: the best epoch is chosen by training loss")
        for h, h_cfg in zip(self.heads, cfg.heads, strict=True):
            if h.target.spec.kind == "multiclass":
                counts = label_counts(self.train_set, h)
                log.info("%s: training hops per class %s", h.name,
                         dict(zip(h.target.spec.labels, counts.tolist(), strict=True)))
                if h_cfg.class_balance:
                    h.class_weights = torch.from_numpy(
                        class_balance_weights(counts).astype(np.float32))
        mean, std = band_statistics(self.train_set, pooled_from=self.model.arch.n_mels)
        with torch.no_grad():
            self.model.input_mean.copy_(torch.from_numpy(mean))
            self.model.input_std.copy_(torch.from_numpy(std))
        self.silence = silence_frame(self.frontend)
        self.variants = {}
        if cfg.augment.pre_roll_p > 0:
            from streamtag.train.preroll import make_variants

            self.variants = make_variants(
                self.train_set, self.cache, arch, self.silence, targets, self.hop_s,
                share=cfg.augment.pre_roll_p, seconds=cfg.augment.pre_roll_s,
                kinds=cfg.augment.pre_roll_kinds, seed=cfg.train.seed, rank=self.dist.rank,
                world=self.dist.world, barrier=self._barrier,
                progress=lambda xs: self._bar(xs, desc="pre-rolls", unit="clip"))
            log.info("pre-rolls: %d of %d training recordings have a pre-rolled copy",
                     len(self.variants), len(self.train_set))
        self.init_id: str | None = None  # the model this run started from (train.init)
        if cfg.train.init is not None:
            self._init_from(Path(cfg.train.init).expanduser())
        # After the input statistics are set: the average starts from these weights.
        self.average = (WeightAverage(self.model, cfg.train.ema_decay)
                        if cfg.train.ema_decay is not None else None)
        self.step_module: nn.Module = SequenceStep(self.model)
        if self.dist.world > 1:
            self.step_module = nn.parallel.DistributedDataParallel(self.step_module)
        o, s = cfg.optimizer, cfg.scheduler
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=o.lr,
                                          betas=(o.betas[0], o.betas[1]),
                                          weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max" if s.monitor == "validation_score" else "min",
            factor=s.factor, patience=s.patience, min_lr=s.min_lr)
        log.info("data: %d training clips (%d hops), %d validation clips (%d hops); %s",
                 len(self.train_set), sum(f.n_hops for f in self.train_set), len(self.val_set),
                 sum(f.n_hops for f in self.val_set), self.data_hashes)

    def _init_from(self, path: Path) -> None:
        """Start from a checkpoint's weights (``train.init``), its input statistics included:
        its weights were learned on inputs scaled by them. The checkpoint must describe the
        model this config builds; ConfigError names what differs."""
        try:
            ck = load_checkpoint(path)
        except CheckpointError as e:
            raise ConfigError(f"train.init: {e}") from e
        mine = model_description(self.model, self.frontend)
        theirs = model_description(ck.model, ck.frontend)
        for key, what in (("arch", "architecture"), ("heads", "heads"), ("frontend", "frontend")):
            if mine[key] != theirs[key]:
                raise ConfigError(
                    f"train.init: {path} has another {what} than this config builds (model "
                    f"{ck.id}: {theirs[key]}; the config: {mine[key]})")
        with torch.no_grad():
            self.model.load_state_dict(ck.model.state_dict(), strict=True)
        self.init_id = ck.id
        log.info("starting from the weights of model %s (%s)", ck.id, path)

    def _warm_cache(self, clips: Sequence[Any]) -> None:
        """Compute missing features (and per-hop timbre labels), each process a share, before
        anyone reads them."""
        timbre = self.cfg.data.per_hop_timbre and any(
            h.target.target == "timbre" for h in self.heads)
        hop_frames = self.model.arch.hop_frames

        def missing(c: Any) -> bool:
            if not self.cache.has(Path(c.path)):
                return True
            return timbre and c.timbre_per_hop and not self.cache.has_hop_timbre(
                Path(c.path), self.hop_s)

        mine = [c for i, c in enumerate(clips) if i % self.dist.world == self.dist.rank
                and missing(c)]
        if mine:
            log.info("computing features of %d clips into %s", len(mine), self.cache.dir)
        for clip in self._bar(mine, desc="features", unit="clip"):
            try:
                mel = self.cache.mel(Path(clip.path))
                if timbre and clip.timbre_per_hop and mel.shape[0] >= hop_frames:
                    self.cache.hop_timbre(Path(clip.path), mel.shape[0] // hop_frames,
                                          self.hop_s, clip.timbre)
            except Exception as e:  # reported (and skipped) when the features are loaded
                log.debug("features of %s failed: %s", clip.path, e)
        self._barrier()

    # -- state ----------------------------------------------------------------------------------
    def _resume_path(self) -> Path:
        return self.run_dir / RESUME_NAME

    def _save_resume(self, epoch: int) -> None:
        write_resume(self._resume_path(), epoch, finite(self.cfg.to_dict()), self.model,
                     self.optimizer, self.scheduler,
                     {"best_score": self.best_score, "best_epoch": self.best_epoch,
                      "best_monitor": self.best_monitor, "seconds": self.seconds},
                     self.average.state_dict() if self.average is not None else None)

    def _load_resume(self) -> int:
        state = read_resume(self._resume_path(), finite(self.cfg.to_dict()), self.run_dir)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        lr = self.cfg.optimizer.lr
        if lr != state["config"]["optimizer"]["lr"]:
            # A resumed run may go on at another learning rate (a fine-tuning phase): the
            # optimiser's moments are kept, its step size is the config's from here on.
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            log.info("resumed at learning rate %g (the run trained at %g until epoch %d)", lr,
                     state["config"]["optimizer"]["lr"], state["epoch"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_monitor, self.seconds = state["best_monitor"], state["seconds"]
        set_rng_state(state["rng"])
        history_path = self.run_dir / "metrics.json"
        if history_path.is_file():
            self.history = json.loads(history_path.read_text())[: state["epoch"]]
        return int(state["epoch"])

    # -- epochs ---------------------------------------------------------------------------------
    def _label_count(self, n: float) -> float:
        if self.dist.world == 1:
            return n
        t = torch.tensor([n], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def _epoch_recordings(self, epoch: int) -> list[ClipFeatures]:
        """The recordings this epoch trains on: each pre-rolled clip plays its copy or itself
        (``preroll.epoch_recordings``)."""
        if not getattr(self, "variants", None):
            return list(self.train_set)
        from streamtag.train.preroll import epoch_recordings

        return epoch_recordings(self.train_set, self.variants, self.cfg.train.seed, epoch)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        seed_everything(cfg.train.seed, epoch + 1, self.dist.rank)
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        recordings = self._epoch_recordings(epoch)
        batches = epoch_batches([f.n_hops for f in recordings], cfg.train.batch_clips,
                                cfg.train.seed, epoch,
                                [batch_group(f.clip) for f in recordings],
                                [batch_stratum(f.clip) for f in recordings]
                                if cfg.train.balanced_batches else None)
        sampler = DistributedSampler(range(len(batches)), num_replicas=self.dist.world,
                                     rank=self.dist.rank, shuffle=True, seed=cfg.train.seed)
        sampler.set_epoch(epoch)
        mine = [batches[i] for i in sampler]
        lengths = torch.tensor([max(recordings[j].n_hops for j in b) for b in mine])
        if self.dist.world > 1:  # every process pads to the longest: same number of steps
            dist.all_reduce(lengths, op=dist.ReduceOp.MAX)
        augment = None
        if cfg.augment.spec_augment:
            fill = self.model.input_mean.detach().clone()

            def augment(x: torch.Tensor) -> torch.Tensor:
                return spec_augment(x, fill, cfg.augment, gen, self.model.arch.n_mels)

        self.model.train()
        losses: list[float] = []
        head_losses: dict[str, list[float]] = {h.name: [] for h in self.heads}
        bar = self._bar(list(zip(mine, lengths.tolist(), strict=True)),
                        desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="batch")
        for idx, hops in bar:
            batch = collate([recordings[j] for j in idx], self.heads, self.silence, hops)
            results = train_batch(self.step_module, self.model, self.optimizer, batch,
                                  self.heads, cfg.train.segment_hops, augment=augment,
                                  grad_clip_norm=cfg.train.grad_clip_norm,
                                  label_count=self._label_count,
                                  on_step=(None if self.average is None
                                           else lambda: self.average.update(self.model)))
            for r in results:
                if r.stepped:
                    losses.append(r.loss)
                for k, v in r.heads.items():
                    if v is not None:
                        head_losses[k].append(v)
            if self.progress and losses:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")  # type: ignore[attr-defined]
        sums = torch.tensor([sum(losses), len(losses)]
                            + [x for h in self.heads for x in (sum(head_losses[h.name]),
                                                               len(head_losses[h.name]))],
                            dtype=torch.float64)
        if self.dist.world > 1:
            dist.all_reduce(sums)
        s = sums.tolist()
        return {
            "loss": s[0] / s[1] if s[1] else None,
            "heads": {h.name: (s[2 + 2 * i] / s[3 + 2 * i] if s[3 + 2 * i] else None)
                      for i, h in enumerate(self.heads)},
            "segments": int(s[1]),
        }

    @property
    def served_model(self) -> StreamTagModel:
        """The weights validated and saved: the running average with ``train.ema_decay``,
        else the last step's."""
        return self.average.model if self.average is not None else self.model

    def validate(self) -> tuple[dict[str, Any], dict[str, HeadData]]:
        """Validation loss, per-head metrics and score (``validation.validate``) of
        ``served_model``."""
        return validate(self.served_model, self.val_set, self.heads, self.hop_s)

    # -- outputs --------------------------------------------------------------------------------
    def _provenance(self, epochs: int) -> dict[str, Any]:
        return finite({
            "kind": "trained", "trainer": "streamtag.train", "streamtag": __version__,
            "torch": torch.__version__, "config": self.cfg.to_dict(),
            "data": self.data_hashes, "git": git_commit(), "epochs": epochs,
            "best_epoch": self.best_epoch, "seconds": round(self.seconds, 1),
            "world_size": self.dist.world,
            "clips": {"train": len(self.train_set), "validation": len(self.val_set)},
            "hops": {"train": sum(f.n_hops for f in self.train_set),
                     "validation": sum(f.n_hops for f in self.val_set)},
            "head_targets": {h.name: h.target.target for h in self.heads},
            "losses": {h.name: h.loss for h in self.heads},
            "validation_method": "forward_sequence on cached windows",
            "init": self.init_id,
        })

    def _write_best(self, epoch: int, val: dict[str, Any]) -> None:
        metrics = {"epoch": epoch, "validation": {k: val.get(k) for k in (
            "loss", "score", "scores", "metrics")}}
        # Written atomically (``tensorfile``): a crash mid-write keeps the previous best.
        save_checkpoint(self.run_dir / BEST_NAME, self.served_model, self.frontend,
                        self._provenance(epoch), finite(metrics))

    def _write_plots(self, val_data: dict[str, HeadData] | None,
                     val: dict[str, Any] | None) -> None:
        from streamtag.train import plots
        from streamtag.train.evaluate import report_figures

        try:
            plots.loss_curves_png(self.history, self.run_dir / "plots" / "loss.png")
            if val_data is not None and val is not None:
                report_figures(val_data, val["metrics"], self.run_dir / "plots")
        except Exception as e:  # a figure is never worth a run
            log.warning("plotting failed: %s", e)

    # -- the run --------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train (or resume) to ``train.epochs``; return where the results are."""
        handler = self._setup_logging()
        try:
            return self._fit()
        finally:
            if handler is not None:
                log.removeHandler(handler)
                handler.close()
            if self.dist.initialized_here and dist.is_initialized():
                dist.destroy_process_group()

    def _fit(self) -> TrainResult:
        cfg = self.cfg
        if self.resume and not self._resume_path().is_file():
            raise ConfigError(f"--resume: no {RESUME_NAME} in {self.run_dir} to resume from")
        self._setup()
        self.history: list[dict[str, Any]] = []
        self.best_score: float | None = None
        self.best_monitor: float | None = None
        self.best_epoch = 0
        self.seconds = 0.0
        start_epoch = self._load_resume() if self.resume else 0
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(dump_train_config(cfg), encoding="utf-8")
        if start_epoch >= cfg.train.epochs:
            log.info("already trained %d epochs (train.epochs %d): nothing to do", start_epoch,
                     cfg.train.epochs)
        for epoch in range(start_epoch, cfg.train.epochs):
            t0 = time.perf_counter()
            train = self._train_epoch(epoch)
            val, val_data = (self.validate() if self.dist.main and self.val_set
                             else ({}, None))
            # The scheduler and the best-epoch choice must agree on every process.
            monitor_name = cfg.scheduler.monitor
            if self.dist.main:
                if not self.val_set or monitor_name == "train_loss":
                    monitor = train["loss"]
                else:
                    monitor = val["loss"] if monitor_name == "validation_loss" else val["score"]
                score = val.get("score") if self.val_set else None
                if score is None:  # no validation score: lower training loss is better
                    score = -train["loss"] if train["loss"] is not None else None
                shared = [monitor, score]
            else:
                shared = [None, None]
            if self.dist.world > 1:
                dist.broadcast_object_list(shared, src=0)
            monitor, score = shared
            if monitor is not None:
                self.scheduler.step(monitor)
            improved = score is not None and (self.best_score is None or score > self.best_score)
            if improved:
                self.best_score, self.best_epoch, self.best_monitor = score, epoch + 1, monitor
            self.seconds += time.perf_counter() - t0
            entry = finite({
                "epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t0, 3), "train": train,
                "validation": val, "best": improved,
            })
            self.history.append(entry)
            if self.dist.main:
                if improved or not (self.run_dir / BEST_NAME).exists():
                    self._write_best(epoch + 1, val)
                self._save_resume(epoch + 1)
                (self.run_dir / "metrics.json").write_text(
                    json.dumps(self.history, indent=1, allow_nan=False) + "\n", encoding="utf-8")
                if cfg.output.plots:
                    self._write_plots(val_data if improved else None, val if improved else None)
                vs = val.get("score")
                log.info("epoch %d/%d: train loss %.4f, validation loss %s, score %s%s, "
                         "lr %.2g, %.1f s", epoch + 1, cfg.train.epochs, train["loss"] or 0.0,
                         f"{val['loss']:.4f}" if val else "–",
                         f"{vs:.4f}" if vs is not None else "–", " (best)" if improved else "",
                         entry["lr"], entry["seconds"])
            self._barrier()
        best = self.run_dir / BEST_NAME
        if self.dist.main and cfg.output.final_report and best.exists() and self.val_set:
            self._final_report(best)
        return TrainResult(self.run_dir, best if self.dist.main else None, self.best_epoch,
                           self.best_score, cfg.train.epochs, self.seconds, self.history)

    def _final_report(self, best: Path) -> None:
        from streamtag.checkpoint import load_checkpoint
        from streamtag.train.evaluate import evaluate

        emb = None
        try:
            from streamtag.train.finalize import finalize_embedding

            emb = finalize_embedding(best, self.train_set, [f.clip for f in self.val_set])
        except Exception as e:  # the checkpoint stays usable without a projection
            log.warning("embedding projection / calibration failed: %s", e)
        try:
            ck = load_checkpoint(best)
            # The embedding was just measured on these clips (the stored projection and
            # threshold do not change those numbers): the report reuses it.
            report = evaluate(ck, [f.clip for f in self.val_set], method="engine",
                              embedding_report=emb if emb and (emb.retrieval or emb.novelty)
                              else None,
                              out_dir=self.run_dir / "report", plots=self.cfg.output.plots,
                              progress=lambda it: self._bar(list(it), desc="report",
                                                            unit="clip"))
            log.info("report: %s (%.1f s)", self.run_dir / "report" / "report.md", report.seconds)
        except Exception as e:  # the checkpoint is written; a failed report is not fatal
            log.warning("final report failed: %s", e)


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False,
          progress: bool | None = None) -> TrainResult:
    """Train a model as ``cfg`` says, writing into ``run_dir`` (see the module docstring)."""
    return Trainer(cfg, run_dir, resume=resume, progress=progress).fit()


__all__ = ["TrainResult", "Trainer", "git_commit", "train"]
