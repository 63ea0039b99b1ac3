"""Atomic file writes: a reader (another rank, the daemon reloading a library, a crash) sees
the old file or the new one, never half a file.

Write to a temporary file beside the target (same folder, so the rename stays on one file
system), then ``os.replace`` it onto the target. The temporary name carries the process id, so
processes writing the same target at once (training ranks filling one feature cache) never
share a temporary file; a failed write removes its temporary file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_path(target: Path) -> Path:
    """The temporary file ``atomic_path`` writes before renaming: hidden, beside ``target``."""
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on leaving without error it replaces ``target``.

    The parent folder is created. On an error the temporary file is removed and ``target`` is
    left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(target: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically; returns ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically; returns ``target``."""
    return write_bytes(target, text.encode("utf-8"))
