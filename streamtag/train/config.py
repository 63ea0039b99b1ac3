"""The trainer's configuration: frozen dataclasses read strictly from YAML.

``configs/train/default.yaml`` (the shipped model's recipe) documents every key with these same
defaults (a test pins that they agree). Loading goes through
``streamtag.config.parse_dataclass`` (unknown keys, wrong types and out-of-range values name the
key path), then ``check_train_config`` adds the rules that span fields (head kinds against
losses, data sources that must exist, architecture overrides that must build), again by key path.

Relative paths in a config (``data.corpus``, ``data.extra_corpora``, ``data.datasets[i].root``,
``data.cache_dir``) are relative to the current directory, like paths given on the command line.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from streamtag.config import _rng, parse_dataclass, read_yaml
from streamtag.errors import ConfigError
from streamtag.model import (
    EMOTION_HEAD,
    INSTRUMENT_CLASSES,
    TIMBRE_NAMES,
    HeadSpec,
    build_model,
)
from streamtag.train.corpus.tags import CORPUS_TAGS

Target = Literal["emotion", "instrument", "timbre", "tags", "piece"]
#: Which clip label trains a head (``HeadConfig.target``) and what kind of head it makes.
TARGET_KINDS: dict[str, tuple[str, ...]] = {
    "emotion": ("regression",),
    "instrument": ("multiclass", "embedding"),
    "timbre": ("regression",),
    "tags": ("multilabel",),
    "piece": ("embedding",),  # identity = the clip's piece (dataset + group): seed 003's triplets
}
#: Losses each head kind accepts; the first is what ``loss: auto`` picks (emotion: mse).
KIND_LOSSES: dict[str, tuple[str, ...]] = {
    "regression": ("mse", "ccc", "l1"),
    "multiclass": ("ce",),
    "multilabel": ("bce",),
    "embedding": ("triplet",),
}
EMBEDDING_DIMS = 32  # the default model's embedding size
#: What a pre-rolled training copy starts with (``streamtag.train.preroll``).
PRE_ROLL_KINDS: tuple[str, ...] = ("silence", "noise", "piece")
#: A run directory's files: the best checkpoint (the trainer writes it, finalize completes it)
#: and the resume state.
BEST_NAME = "best.safetensors"
RESUME_NAME = "last.train.pt"
DATASET_KINDS = Literal["medley", "pmemo", "deam", "freesound_oneshot", "generic"]


@dataclass(frozen=True)
class DatasetSource:
    """One dataset on disk, read by ``streamtag.train.datasets.load_dataset(kind, root)``."""

    kind: DATASET_KINDS = "generic"
    root: str = ""
    csv_name: str | None = None  # generic only: the labels CSV's name inside root


@dataclass(frozen=True)
class DataConfig:
    corpus: str | None = None  # built-in corpus folder (holds manifest.jsonl); None: none
    # More corpus folders whose clips train with the corpus's, each keeping its splits (e.g. an
    # emotion-only set built with another seed: `corpus build --families emotion`).
    extra_corpora: list[str] = field(default_factory=list)
    datasets: list[DatasetSource] = field(default_factory=list)
    # Sources without a validation split get whole groups (pieces, songs) moved there.
    validation_fraction: float = _rng(0.0, 0.9, 0.1)
    cache_dir: str | None = None  # mel-frame cache; None: $XDG_CACHE_HOME/streamtag/features
    max_clips: int | None = _rng(1, None)  # per split, for quick experiments; None: all
    # Corpus clips get one timbre label per hop (the descriptors of that hop's 1 s window)
    # instead of the whole clip's; False: the clip's label on every hop.
    per_hop_timbre: bool = True


@dataclass(frozen=True)
class ArchOverrides:
    """Fields of ``streamtag.model.ArchConfig`` to change; None keeps the preset's value."""

    channels: list[int] | None = None  # conv channels per block (seed: one value, c)
    lstm_hidden: int | None = _rng(1, 4096)
    neck: list[int] | None = None  # widths of the shared layers after the LSTM
    dropout: float | None = _rng(0.0, 0.95)
    window_frames: int | None = _rng(1, 10000)  # frames the CNN sees per hop (context + hop)


@dataclass(frozen=True)
class ModelSection:
    preset: Literal["default", "seed"] = "default"  # frontend + architecture preset
    overrides: ArchOverrides = field(default_factory=ArchOverrides)


@dataclass(frozen=True)
class HeadConfig:
    """One head to train. ``target`` None means the head's name (emotion, instrument, …)."""

    name: str = "emotion"
    target: Target | None = None
    kind: Literal["regression", "multiclass", "multilabel", "embedding"] | None = None
    labels: list[str] | None = None  # outputs / classes; None: the target's standard set
    dims: int = _rng(2, 1024, 16)  # embedding heads: vector size
    loss: Literal["auto", "mse", "ccc", "l1", "ce", "bce", "triplet"] = "auto"
    weight: float = _rng(0.0, 1000.0, 1.0)  # factor of this head's loss in the total
    class_balance: bool = True  # ce: weight classes by inverse training frequency
    margin: float = _rng(0.0, 10.0, 0.2)  # triplet margin [embedding distance]
    parts: int = _rng(1, 16, 1)  # triplet: vectors per recording (runs of its labelled hops)


@dataclass(frozen=True)
class TrainSection:
    epochs: int = _rng(1, 100000, 7)
    batch_clips: int = _rng(1, 4096, 16)  # B: recordings per batch
    segment_hops: int = _rng(1, 100000, 12)  # S: hops per truncated-BPTT segment
    seed: int = _rng(0, 2**31 - 1, 0)
    threads: int | None = _rng(1, 256, 1)  # torch intra-op threads per process; None: torch's
    deterministic: bool = True  # torch.use_deterministic_algorithms (warn-only where missing)
    grad_clip_norm: float | None = _rng(0.0, None, 5.0)  # None: no clipping
    # Each instrument class (and the emotion and other clips) is spread evenly over the
    # epoch's batches: each step sees them in their overall shares, not as chance has it.
    balanced_batches: bool = False
    # Validate and save the exponential moving average of the weights (this decay per
    # optimiser step; streamtag.train.average) instead of the last step's; None: off.
    ema_decay: float | None = _rng(0.0, 0.99999, None)
    # Start from this checkpoint's weights (fine-tuning a model on new material) instead of
    # random ones: same preset, architecture, heads and frontend; a fresh optimiser. None: off.
    init: str | None = None


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float = _rng(1e-9, 10.0, 1e-3)  # Adam learning rate
    weight_decay: float = _rng(0.0, 1.0, 0.0)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass(frozen=True)
class SchedulerConfig:
    """ReduceLROnPlateau: multiply lr by ``factor`` after ``patience`` epochs without progress."""

    monitor: Literal["validation_loss", "train_loss", "validation_score"] = "validation_loss"
    factor: float = _rng(0.01, 0.99, 0.5)
    patience: int = _rng(0, 1000, 2)
    min_lr: float = _rng(0.0, 1.0, 1e-6)


@dataclass(frozen=True)
class AugmentConfig:
    """SpecAugment on training windows only (masked cells get the band's training mean)."""

    spec_augment: bool = True
    time_masks: int = _rng(0, 100, 2)  # masks per window
    time_mask_frames: int = _rng(0, 10000, 6)  # widest time mask [frames]
    freq_masks: int = _rng(0, 100, 2)
    freq_mask_bands: int = _rng(0, 10000, 6)  # widest frequency mask [mel bands]
    # Pre-rolls (streamtag.train.preroll): a share of the training recordings get a copy that
    # starts after silence, room noise or another piece, at a random phase of the hop grid.
    pre_roll_p: float = _rng(0.0, 1.0, 0.0)  # share of training recordings with a copy
    pre_roll_s: list[float] = field(default_factory=lambda: [0.05, 6.0])  # length range [s]
    pre_roll_kinds: list[str] = field(default_factory=lambda: list(PRE_ROLL_KINDS))


@dataclass(frozen=True)
class OutputConfig:
    plots: bool = True  # PNG loss curves, confusion matrix, valence/arousal scatter
    progress: bool | Literal["auto"] = "auto"  # progress bars; auto: when stderr is a terminal
    final_report: bool = True  # evaluate the best checkpoint through the Engine at the end


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    heads: list[HeadConfig] = field(
        default_factory=lambda: [HeadConfig("emotion", loss="ccc"),
                                 HeadConfig("instrument", loss="ce"),
                                 HeadConfig("timbre", loss="l1"),
                                 HeadConfig("tags", loss="bce", labels=list(CORPUS_TAGS)),
                                 HeadConfig("embedding", target="piece", dims=EMBEDDING_DIMS,
                                            loss="triplet")])
    train: TrainSection = field(default_factory=TrainSection)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- heads ----------------------------------------------------------------------------------------

def head_target(head: HeadConfig) -> str:
    return head.target or head.name


def head_kind(head: HeadConfig) -> str:
    return head.kind or TARGET_KINDS.get(head_target(head), ("regression",))[0]


def head_loss(head: HeadConfig) -> str:
    kind = head_kind(head)
    if head.loss != "auto":
        return head.loss
    if head_target(head) == "timbre":
        return "l1"  # seed 004 reports MAE; L1 optimises what is reported
    return KIND_LOSSES[kind][0]


def head_spec(head: HeadConfig) -> HeadSpec:
    """The model's ``HeadSpec`` for a configured head."""
    target, kind = head_target(head), head_kind(head)
    if kind == "embedding":
        labels = tuple(head.labels or [f"d{i}" for i in range(head.dims)])
        return HeadSpec(head.name, "embedding", labels)
    if target == "emotion":
        return HeadSpec(head.name, "regression", tuple(head.labels or EMOTION_HEAD.labels),
                        EMOTION_HEAD.range)
    if target == "timbre":
        return HeadSpec(head.name, "regression", tuple(head.labels or TIMBRE_NAMES), (0.0, 1.0))
    if target == "instrument":
        return HeadSpec(head.name, "multiclass", tuple(head.labels or INSTRUMENT_CLASSES))
    return HeadSpec(head.name, "multilabel", tuple(head.labels or ()))


def arch_overrides(cfg: TrainConfig) -> dict[str, Any]:
    """The non-null ``model.overrides`` as keyword arguments of ``build_model``."""
    return {k: v for k, v in dataclasses.asdict(cfg.model.overrides).items() if v is not None}


# -- checks and loading ---------------------------------------------------------------------------

def check_train_config(cfg: TrainConfig, check_paths: bool = True) -> list[str]:
    """Every cross-field problem of ``cfg``, each naming its key path (empty: fine)."""
    problems: list[str] = []
    d = cfg.data
    if d.corpus is None and not d.extra_corpora and not d.datasets:
        problems.append("data: no training source: set data.corpus (a corpus folder) or "
                        "data.datasets (a list of {kind, root})")
    folders = [("data.corpus", d.corpus)] if d.corpus is not None else []
    folders += [(f"data.extra_corpora[{i}]", c) for i, c in enumerate(d.extra_corpora)]
    if check_paths:
        for key, folder in folders:
            corpus = Path(folder).expanduser()
            if not (corpus / "manifest.jsonl").is_file():
                problems.append(f"{key}: no manifest.jsonl in {corpus} (build one with "
                                "`streamtag corpus build --out DIR`)")
    if check_paths and cfg.train.init is not None \
            and not Path(cfg.train.init).expanduser().is_file():
        problems.append(f"train.init: no checkpoint file {cfg.train.init}")
    for i, ds in enumerate(d.datasets):
        if not ds.root:
            problems.append(f"data.datasets[{i}].root: required")
        elif check_paths and not Path(ds.root).expanduser().exists():
            problems.append(f"data.datasets[{i}].root: not found: {ds.root}")
        if ds.csv_name is not None and ds.kind != "generic":
            problems.append(f"data.datasets[{i}].csv_name: only for kind 'generic'")
    if not cfg.heads:
        problems.append("heads: expected at least one head")
    names = [h.name for h in cfg.heads]
    for i, h in enumerate(cfg.heads):
        p = f"heads[{i}]"
        if not h.name.isidentifier():
            problems.append(f"{p}.name: expected an identifier, got {h.name!r}")
        elif names.count(h.name) > 1:
            problems.append(f"{p}.name: {h.name!r} is used by more than one head")
        target = head_target(h)
        if target not in TARGET_KINDS:
            problems.append(f"{p}.target: head {h.name!r} needs a target (one of "
                            f"{', '.join(TARGET_KINDS)}) since its name is not one")
            continue
        kind = head_kind(h)
        if kind not in TARGET_KINDS[target]:
            problems.append(f"{p}.kind: target {target!r} trains a "
                            f"{' or '.join(TARGET_KINDS[target])} head, not {kind!r}")
            continue
        if head_loss(h) not in KIND_LOSSES[kind]:
            problems.append(f"{p}.loss: a {kind} head takes {', '.join(KIND_LOSSES[kind])}, "
                            f"not {h.loss!r}")
        if h.labels is not None:
            if not h.labels or len(set(h.labels)) != len(h.labels) or not all(h.labels):
                problems.append(f"{p}.labels: expected distinct non-empty names")
            elif target == "emotion" and not set(h.labels) <= set(EMOTION_HEAD.labels):
                problems.append(f"{p}.labels: emotion outputs are some of valence, arousal")
            elif target == "timbre" and not set(h.labels) <= set(TIMBRE_NAMES):
                problems.append(f"{p}.labels: timbre outputs are some of "
                                f"{', '.join(TIMBRE_NAMES)}")
            elif kind == "embedding" and len(h.labels) != h.dims:
                problems.append(f"{p}.labels: an embedding of dims {h.dims} needs {h.dims} names")
        elif target == "tags":
            problems.append(f"{p}.labels: a tags head needs its tag vocabulary")
    pre = cfg.augment.pre_roll_s
    if len(pre) != 2 or not 0 <= pre[0] <= pre[1] <= 60:
        problems.append(f"augment.pre_roll_s: expected [low, high] with 0 <= low <= high <= 60 "
                        f"[s], got {pre}")
    bad = [k for k in cfg.augment.pre_roll_kinds if k not in PRE_ROLL_KINDS]
    if bad or not cfg.augment.pre_roll_kinds:
        problems.append(f"augment.pre_roll_kinds: expected some of {', '.join(PRE_ROLL_KINDS)}, "
                        f"got {cfg.augment.pre_roll_kinds}")
    if len(cfg.optimizer.betas) != 2 or not all(0 <= b < 1 for b in cfg.optimizer.betas):
        problems.append(f"optimizer.betas: expected [b1, b2] in [0, 1), got {cfg.optimizer.betas}")
    ov = cfg.model.overrides
    for key, values in (("channels", ov.channels), ("neck", ov.neck)):
        if values is not None and (not values or min(values) < 1):
            problems.append(f"model.overrides.{key}: expected a non-empty list of positive sizes")
    if not problems:
        try:
            model = build_model(cfg.model.preset, [head_spec(h) for h in cfg.heads],
                                **arch_overrides(cfg))
            if model.arch.hop_frames > model.arch.window_frames:
                problems.append(f"model.overrides.window_frames: expected >= hop_frames "
                                f"({model.arch.hop_frames})")
        except (ValueError, TypeError, RuntimeError) as e:
            problems.append(f"model.overrides: the {cfg.model.preset} preset cannot be built "
                            f"with these overrides: {e}")
    return problems


def train_config_from_dict(data: Any, check_paths: bool = True) -> TrainConfig:
    """Strictly build a TrainConfig from parsed YAML; ConfigError lists every problem."""
    cfg = parse_dataclass(TrainConfig, data)
    problems = check_train_config(cfg, check_paths)
    if problems:
        raise ConfigError(problems)
    return cfg


def apply_overrides(data: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` strings (value parsed as YAML) to a parsed config mapping.

    List items are addressed by index: ``heads.1.weight=0.5``.
    """
    data = json.loads(json.dumps(data if data is not None else {}))
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: value is not valid YAML: {e}") from e
        node: Any = data
        parts = key.split(".")
        for j, part in enumerate(parts):
            last = j == len(parts) - 1
            where = ".".join(parts[: j + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {key}: {where}: no list item {part}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"--set {key}: {where}: not a mapping")
    return data


def load_train_config(
    path: str | Path | None, sets: list[str] | None = None, check_paths: bool = True
) -> TrainConfig:
    """Read a training config file (None: the defaults), apply ``--set`` overrides, check it."""
    data = read_yaml(path) if path is not None else {}
    if sets:
        data = apply_overrides(data, sets)
    try:
        return train_config_from_dict(data, check_paths)
    except ConfigError as e:
        if path is None:
            raise
        raise ConfigError([f"{path}: {p}" for p in e.problems]) from None


def dump_train_config(cfg: TrainConfig) -> str:
    """The config as YAML (what a run directory keeps next to its checkpoint)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
