"""Progress bars on stderr (tqdm), for every command that shows one.

``--progress auto|on|off`` (or a config's ``output.progress``) means the same everywhere:
auto shows a bar when stderr is a terminal (``wanted``). Bars are not left behind on the
terminal unless asked, so the command's result line stands alone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def wanted(mode: str | bool | None) -> bool:
    """Whether to show a bar: ``"on"``/True yes, ``"off"``/False/None no, ``"auto"`` when
    stderr is a terminal."""
    if mode == "auto":
        return sys.stderr.isatty()
    return mode in ("on", True)


def progress_bar(items: Iterable[Any] | None = None, *, enabled: bool, leave: bool = False,
                 **options: Any) -> Any:
    """A tqdm bar on stderr over ``items`` (or updated by hand with ``total=``); a silent
    pass-through when not ``enabled``. options: tqdm's (``desc``, ``unit``, ``total``, …)."""
    from tqdm import tqdm  # not imported by commands that never show a bar

    return tqdm(items, disable=not enabled, file=sys.stderr, leave=leave, **options)
