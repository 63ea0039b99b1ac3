"""The runtime (daemon and analyze) starts without importing scipy.signal.

scipy.signal builds its docstrings at import: ~0.9 s of a 1 s file's ~3 s `streamtag analyze`.
The runtime computes what it took from there itself (the resampler's filter, the pitch-class
memory's recursion; tests check both against scipy); training code may still import it.
"""

from __future__ import annotations

import subprocess
import sys


def test_the_runtime_does_not_import_scipy_signal() -> None:
    code = ("import sys\n"
            "import streamtag.analysis, streamtag.cli, streamtag.daemon, streamtag.engine\n"
            "print(sorted(m for m in sys.modules if m.startswith('scipy.signal')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout
