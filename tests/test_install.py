"""The README's install path: scripts/setup into .venv, the venv's own `streamtag run` reaching a
running capture on a JACK server, and setup failing loudly with the reason.

In CI (`CI=true`), the interpreter under the venv must be Debian's own externally managed
python3, the stock-OS path a performer's fresh machine takes, not a private build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from audio.jack_harness import SAMPLE_RATE_HZ, JackServer, jack_server
from support import Subscriber, base_config, wait_status

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "setup"
__all__ = ["jack_server"]  # the fixture, imported for pytest


def venv_executable() -> Path:
    """`streamtag` beside this interpreter: `.venv/bin/streamtag` when run as the README says."""
    return Path(sysconfig.get_path("scripts")) / "streamtag"


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="CI's path: tests run from .venv")
def test_ci_runs_in_a_venv_over_the_externally_managed_system_python() -> None:
    assert sys.prefix != sys.base_prefix, "the tests must run inside the venv setup made"
    assert Path(sys.prefix).resolve() == (ROOT / ".venv").resolve()
    stdlib = Path(sysconfig.get_paths(vars={"installed_base": sys.base_prefix})["stdlib"])
    # PEP 668: Debian marks its python3 as externally managed; a plain `pip install` fails there.
    assert (stdlib / "EXTERNALLY-MANAGED").exists(), f"{sys.base_prefix} is not Debian's python3"


@pytest.mark.realaudio
def test_the_venvs_streamtag_run_reaches_a_running_capture_on_jack(
    jack_server: JackServer, tmp_path: Path
) -> None:
    exe = venv_executable()
    assert exe.exists(), f"{exe}: the console script setup installs is missing"
    cfg, endpoint = base_config(tmp_path)
    cfg["input"] = {"device": "system", "sample_rate_hz": SAMPLE_RATE_HZ, "blocksize": 256}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    sub = Subscriber(endpoint)
    proc = subprocess.Popen([str(exe), "run", "--config", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        status = wait_status(sub, lambda s: s["input"]["status"].startswith("running"), proc, 60)
        assert status["hops"] >= 0
    finally:
        proc.terminate()
        proc.wait(10)
        sub.close()
    assert proc.returncode == 0, proc.stderr.read()[-2000:]


def run_setup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SETUP), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_setup_refuses_an_unknown_option_by_name() -> None:
    r = run_setup("--gpu")
    assert r.returncode == 1
    assert "unknown option '--gpu'" in r.stderr


def test_setup_refuses_a_python_older_than_3_10_naming_it(tmp_path: Path) -> None:
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\n"
                   "case \"$*\" in *version_info*) exit 1;; -V) echo 'Python 3.9.18';; esac\n")
    old.chmod(0o755)
    r = run_setup(env={"PYTHON": str(old)})
    assert r.returncode == 1
    assert "Python 3.9.18 is too old: streamtag needs Python ≥ 3.10" in r.stderr


def test_setup_names_a_missing_interpreter() -> None:
    r = run_setup(env={"PYTHON": "no-such-python3"})
    assert r.returncode == 1
    assert "no 'no-such-python3' on PATH" in r.stderr
