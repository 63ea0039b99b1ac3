"""``streamtag corpus build`` (and ``python -m streamtag.train.corpus``): its flags and what
it runs.

``streamtag corpus build`` hands its arguments to ``build_parser`` (``streamtag.train.cli``),
and what ``cmd_build`` raises maps to exit codes through ``console.run`` like every command:
0 ok, 2 usage or config error, 1 failure. This module imports only light modules (sizes and
the manifest's constants), so building the parser needs no training extra.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamtag.console import EXIT_OK, Parser, run
from streamtag.train.corpus.manifest import AUDIO_FORMATS, FAMILIES, HOP_S
from streamtag.train.corpus.sizes import SIZE_PRESETS

DESCRIPTION = "Render the synthetic training corpus with FluidSynth (offline)."


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``corpus build``."""
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


def cmd_build(args: argparse.Namespace) -> int:
    """Build the corpus the flags describe; print what was built."""
    from streamtag.train.corpus.build import build_preset

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
    manifest = build_preset(
        args.out,
        args.size,
        seed=args.seed,
        clip_s=args.clip_s,
        progress=not args.no_progress,
        **overrides,
    )
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
    return EXIT_OK


def build_parser() -> Parser:
    """The parser of ``corpus build``'s flags, its command set."""
    parser = Parser(prog="streamtag corpus build", description=DESCRIPTION)
    add_build_arguments(parser)
    parser.set_defaults(func=cmd_build)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamtag.train.corpus``: build a corpus. Exit 0 ok, 2 usage or config
    error, 1 failure; a bad flag returns 2 (argparse's exit is caught, for callers in
    Python)."""
    try:
        return run(build_parser(), list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0) if exc.code in (0, None) else 2
