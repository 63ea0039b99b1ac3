"""`streamtag service`: the unit and agent it writes name an executable that exists, run the
user's config, and pass systemd's own checker."""

from __future__ import annotations

import os
import plistlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from streamtag import service
from streamtag.service import Service, render_launchd, render_systemd

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "default.yaml"


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``streamtag service …`` in a fresh process with ``home`` as HOME and XDG_CONFIG_HOME
    under it, as the installed venv's Python runs it."""
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    return subprocess.run([sys.executable, "-m", "streamtag.cli", "service", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def verify(unit: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify --user`` (skip if systemd-analyze is missing)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    runtime = home / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    return subprocess.run(["systemd-analyze", "verify", "--user", str(unit)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def exec_start(unit: Path) -> list[str]:
    argv = service.read_exec("systemd", unit)
    assert argv is not None
    return argv


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def test_install_writes_a_unit_that_verifies_and_runs_the_installed_executable(
        home: Path) -> None:
    done = cli(home, "install", "--kind", "systemd", "--config", str(CONFIG))
    assert done.returncode == 0, done.stderr
    unit = home / ".config" / "systemd" / "user" / "streamtag.service"
    assert f"wrote {unit}" in done.stdout and "not started" in done.stdout
    argv = exec_start(unit)
    # The streamtag beside the running Python, by its absolute path, with the config given.
    assert argv[0] == str(Path(sys.executable).absolute().parent / "streamtag")
    assert Path(argv[0]).is_file() and os.access(argv[0], os.X_OK)
    assert argv[1:] == ["run", "--config", str(CONFIG), "--log-format", "json"]
    assert "sound.target" not in unit.read_text()
    checked = verify(unit, home)
    assert checked.returncode == 0, checked.stderr

    status = cli(home, "status", "--kind", "systemd")
    assert status.returncode == 0, status.stdout + status.stderr
    assert str(unit) in status.stdout and argv[0] in status.stdout

    gone = cli(home, "uninstall", "--kind", "systemd")
    assert gone.returncode == 0, gone.stderr
    assert not unit.exists()
    assert cli(home, "status", "--kind", "systemd").returncode == 1


def test_the_users_default_config_is_used_when_present(home: Path) -> None:
    assert "no config" in cli(home, "install", "--kind", "systemd").stdout
    unit = home / ".config" / "systemd" / "user" / "streamtag.service"
    assert "--config" not in exec_start(unit)
    config = home / ".config" / "streamtag" / "streamtag.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("analysis:\n  silence_db: -55\n")
    assert cli(home, "install", "--kind", "systemd").returncode == 0
    assert exec_start(unit)[2:4] == ["--config", str(config)]


def test_a_missing_or_broken_config_is_refused_and_nothing_written(home: Path) -> None:
    done = cli(home, "install", "--kind", "systemd", "--config", str(home / "nope.yaml"))
    assert done.returncode == 2 and "nope.yaml" in done.stderr
    bad = home / "bad.yaml"
    bad.write_text("analysis:\n  silence_dbb: -55\n")
    done = cli(home, "install", "--kind", "systemd", "--config", str(bad))
    assert done.returncode == 2 and "silence_dbb" in done.stderr
    assert not (home / ".config" / "systemd").exists()


def test_verify_catches_a_unit_whose_executable_is_missing(home: Path) -> None:
    unit = home / "streamtag.service"
    unit.write_text(render_systemd(Service(str(home / "gone" / "streamtag"), None)))
    checked = verify(unit, home)
    assert checked.returncode != 0 and "gone/streamtag" in checked.stderr


def test_paths_with_spaces_and_percent_signs_survive_systemd_quoting(home: Path) -> None:
    folder = home / "my venv 100%" / "bin"
    folder.mkdir(parents=True)
    exe = folder / "streamtag"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    config = home / "my $config.yaml"
    config.write_text("{}\n")
    unit = home / "streamtag.service"
    unit.write_text(render_systemd(Service(str(exe), str(config))))
    checked = verify(unit, home)
    assert checked.returncode == 0, checked.stderr
    assert exec_start(unit)[:4] == [str(exe), "run", "--config", str(config)]


def test_launchd_agent_is_a_plist_with_the_keys_launchd_needs(home: Path) -> None:
    done = cli(home, "install", "--kind", "launchd", "--config", str(CONFIG))
    assert done.returncode == 0, done.stderr
    path = home / "Library" / "LaunchAgents" / "org.streamtag.daemon.plist"
    plist = plistlib.loads(path.read_bytes())
    assert plist["Label"] == "org.streamtag.daemon"
    args = plist["ProgramArguments"]
    assert Path(args[0]).is_absolute() and Path(args[0]).is_file()
    assert args[1:] == ["run", "--config", str(CONFIG), "--log-format", "json"]
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["StandardErrorPath"] == str(home / "Library" / "Logs" / "streamtag.log")
    assert cli(home, "status", "--kind", "launchd").returncode == 0
    assert cli(home, "uninstall", "--kind", "launchd").returncode == 0 and not path.exists()


def test_example_files_are_what_install_writes() -> None:
    """examples/systemd and examples/launchd come from the same code (regenerate with
    scripts/make_service_examples.py)."""
    for rel, data in service.example_files().items():
        assert (ROOT / rel).read_bytes() == data, f"{rel}: run scripts/make_service_examples.py"
    assert render_launchd(Service("/x/streamtag", None)).startswith(b"<?xml")
