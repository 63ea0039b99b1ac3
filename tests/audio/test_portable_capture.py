"""The capture path must run on Linux, macOS and Windows: no Linux-only socket family or path.

Macs and Windows machines are not available to test on, so this scans the source (AST) of
every module live capture runs through for what those systems lack: Unix-domain or packet
sockets, abstract socket names, ``/proc`` or ``/dev/shm`` paths, XDG variables, fd passing,
``fork``, and ``select`` (which does not work on Windows pipes). The JACK capture tests run
the same transport (shared-memory ring, stdout/stdin pipes) on Linux.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import streamtag.audio

AUDIO = Path(streamtag.audio.__file__).parent
CAPTURE_MODULES = sorted(AUDIO.glob("*.py"))

#: Names (attributes, keywords, imports) that exist only on some systems.
FORBIDDEN_NAMES = {
    "AF_UNIX": "Unix-domain sockets (Windows has no SOCK_SEQPACKET and no socketpair AF_UNIX)",
    "SOCK_SEQPACKET": "packet sockets (Linux only)",
    "AF_NETLINK": "netlink (Linux only)",
    "pass_fds": "fd inheritance by number (POSIX only)",
    "preexec_fn": "preexec_fn (POSIX only)",
    "fork": "fork (no fork on Windows; unsafe with threads on macOS)",
    "forkserver": "forkserver (POSIX only)",
    "getppid": "parent polling (the child learns from its stdin's end of file instead)",
    "prctl": "prctl (Linux only)",
}
#: Modules that exist only on some systems, or do not work on pipes everywhere.
FORBIDDEN_MODULES = {
    "select": "select on pipes (not on Windows)",
    "fcntl": "fcntl (POSIX only)",
    "termios": "termios (POSIX only)",
}
#: String literals that name Linux-only places.
FORBIDDEN_PREFIXES = ("/proc", "/dev/shm", "/sys/", "/run/user", "\0", "XDG_")


def violations(source: str) -> list[str]:
    """What in ``source`` (Python) would not run on macOS or Windows, one line each."""
    found = []
    for node in ast.walk(ast.parse(source)):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.keyword):
            name = node.arg
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                base = alias.name.split(".")[-1]
                why = FORBIDDEN_NAMES.get(base) or FORBIDDEN_MODULES.get(alias.name)
                if why:
                    found.append(f"line {node.lineno}: import {alias.name}: {why}")
            if isinstance(node, ast.ImportFrom) and node.module in FORBIDDEN_MODULES:
                found.append(f"line {node.lineno}: from {node.module}: "
                             f"{FORBIDDEN_MODULES[node.module]}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            # Docstrings may explain what was left behind; only code that uses a path counts.
            if text in ("fork", "forkserver"):
                found.append(f"line {node.lineno}: start method {text!r}: POSIX only")
            if text.startswith(FORBIDDEN_PREFIXES) and "\n" not in text:
                found.append(f"line {node.lineno}: {text[:40]!r}: a Linux-only path or name")
        if name in FORBIDDEN_NAMES:
            found.append(f"line {node.lineno}: {name}: {FORBIDDEN_NAMES[name]}")
    return found


def test_the_capture_modules_are_the_ones_we_think() -> None:
    names = {p.name for p in CAPTURE_MODULES}
    assert {"_portaudio_worker.py", "sources.py", "shared_ring.py", "devices.py"} <= names


@pytest.mark.parametrize("path", CAPTURE_MODULES, ids=lambda p: p.name)
def test_capture_module_uses_nothing_linux_only(path: Path) -> None:
    assert violations(path.read_text()) == []


@pytest.mark.parametrize("snippet", [
    "import socket\na, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)",
    "from socket import AF_UNIX",
    "s.bind('\\0streamtag-capture')",
    "open('/proc/self/status')",
    "shm = '/dev/shm/streamtag'",
    "base = os.environ.get('XDG_DATA_HOME')",
    "subprocess.Popen(cmd, pass_fds=(3,))",
    "import select\nselect.select([fd], [], [], 0.1)",
    "pid = os.fork()",
    "multiprocessing.get_context('fork')",
])
def test_the_scan_catches_what_it_forbids(snippet: str) -> None:
    assert violations(snippet), snippet
