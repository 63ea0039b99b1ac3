"""Worker processes for ``streamtag analyze --jobs``: the cores to share, and the process
context that starts them.

Light on purpose (no torch, no model code): the CLI starts the worker server before it imports
the analysis machinery itself, so the server's own import of torch and the model code (~3 s of
CPU) overlaps the parent's instead of following it.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.context import BaseContext

#: What the worker server imports once, before it forks the workers.
PRELOAD = ["streamtag.analysis"]


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_context() -> BaseContext:
    """The context worker processes start from: a forkserver that has imported ``PRELOAD``
    (torch imported once, then forked), else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_workers_early() -> None:
    """Start the worker server now (it imports ``PRELOAD`` in its own process while the caller
    goes on); a no-op where there is no forkserver."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        worker_context()
        from multiprocessing import forkserver

        forkserver.ensure_running()
