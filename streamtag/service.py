"""``streamtag service install|uninstall|status``: run the daemon at login, as the user.

Linux: a systemd user unit, ``~/.config/systemd/user/streamtag.service`` (``$XDG_CONFIG_HOME``
respected, as systemd does). macOS: a launchd agent, ``~/Library/LaunchAgents/
org.streamtag.daemon.plist``. Both start the *installed* executable, the ``streamtag`` beside
the Python that runs this command (the project's ``.venv/bin/streamtag`` after
``scripts/setup``), by its absolute path, with the user's config. ``install`` only writes the
file unless ``--now`` is given; ``uninstall`` stops the service, disables it and removes the
file.

The unit has no ordering on ``sound.target`` (a system target a user manager never sees) and no
dependency on JACK or PipeWire: the daemon waits for its input device and retries by itself.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import platformdirs

from streamtag import atomic
from streamtag.errors import StreamtagError
from streamtag.paths import default_config_path

Kind = Literal["systemd", "launchd"]
UNIT_NAME = "streamtag.service"
LABEL = "org.streamtag.daemon"
#: Seconds systemd waits before restarting a daemon that failed.
RESTART_S = 2


class ServiceError(StreamtagError):
    """The service cannot be installed, removed or inspected here (message says why)."""


@dataclass(frozen=True)
class Service:
    """What a service file runs: ``executable run [--config F] --log-format json``."""

    executable: str
    config: str | None

    def argv(self) -> list[str]:
        args = [self.executable, "run"]
        if self.config is not None:
            args += ["--config", self.config]
        return [*args, "--log-format", "json"]


def this_kind() -> Kind:
    """The service manager of this system (ServiceError where there is none we support)."""
    if sys.platform == "darwin":
        return "launchd"
    if sys.platform.startswith("linux"):
        return "systemd"
    raise ServiceError(f"`streamtag service` supports Linux (systemd) and macOS (launchd), not "
                       f"{sys.platform}; start `streamtag run` from your system's own task "
                       "scheduler instead")


def installed_executable() -> Path:
    """The absolute path of the ``streamtag`` installed beside the running Python (the venv's
    ``bin``/``Scripts`` folder; the interpreter's symlink is not followed, or we would leave
    the venv)."""
    folder = Path(sys.executable).absolute().parent
    for name in ("streamtag", "streamtag.exe"):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ServiceError(f"no `streamtag` executable next to {sys.executable}: install streamtag "
                       "first (`bash scripts/setup`), then run this command with the "
                       "installed one (`.venv/bin/streamtag service install`)")


def service_file(kind: Kind) -> Path:
    """Where the service file of ``kind`` goes for this user."""
    if kind == "systemd":
        # systemd reads $XDG_CONFIG_HOME/systemd/user (~/.config/...); platformdirs says where.
        return platformdirs.user_config_path() / "systemd" / "user" / UNIT_NAME
    return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def _systemd_arg(arg: str) -> str:
    """One ExecStart argument, quoted and escaped as systemd.service(5) reads it."""
    escaped = (arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
               .replace("$", "$$"))
    return f'"{escaped}"' if any(c in arg for c in ' \t"\\\'') else escaped


def render_systemd(service: Service) -> str:
    """The text of the systemd user unit."""
    exec_start = " ".join(_systemd_arg(a) for a in service.argv())
    return f"""\
# Written by `streamtag service install`.
# Start now and at every login:  systemctl --user enable --now {UNIT_NAME}
# Logs: journalctl --user -u streamtag -f     Reload model/config: systemctl --user reload streamtag
# (without a graphical login, `loginctl enable-linger $USER` keeps it running after logout)
[Unit]
Description=streamtag real-time audio analysis

[Service]
Type=simple
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec={RESTART_S}
# SIGTERM stops it cleanly within a second.
TimeoutStopSec=5

[Install]
WantedBy=default.target
"""


def render_launchd(service: Service, home: Path | None = None) -> bytes:
    """The launchd agent's property list (XML); its log goes to ``~/Library/Logs`` of
    ``home`` (default: this user's)."""
    log = str((home or Path.home()) / "Library" / "Logs" / "streamtag.log")
    plist = {
        "Label": LABEL,
        "ProgramArguments": service.argv(),
        "RunAtLoad": True,
        # Restarted when it fails, not after a clean stop.
        "KeepAlive": {"SuccessfulExit": False},
        # Audio: not throttled as a background process would be.
        "ProcessType": "Interactive",
        "StandardErrorPath": log,
        "StandardOutPath": log,
    }
    return plistlib.dumps(plist, sort_keys=False)


def render(kind: Kind, service: Service) -> bytes:
    return render_systemd(service).encode() if kind == "systemd" else render_launchd(service)


def resolve_config(config: str | None) -> str | None:
    """The config the service runs with: ``config`` (must exist), else the user's default
    config if it exists, else None (built-in defaults). Absolute."""
    if config is not None:
        path = Path(config).expanduser()
        if not path.is_file():
            raise ServiceError(f"config file '{config}' does not exist")
        return str(path.absolute())
    default = default_config_path()
    return str(default) if default.is_file() else None


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"`{' '.join(cmd)}` failed: {exc}") from exc


def _manager_commands(kind: Kind, action: Literal["start", "stop"], path: Path) -> list[list[str]]:
    """The service manager's commands that start (enable) or stop (disable) the service."""
    if kind == "systemd":
        verb = "enable" if action == "start" else "disable"
        return [["systemctl", "--user", "daemon-reload"],
                ["systemctl", "--user", verb, "--now", UNIT_NAME]]
    domain = f"gui/{os.getuid()}"
    if action == "start":
        return [["launchctl", "bootstrap", domain, str(path)]]
    return [["launchctl", "bootout", f"{domain}/{LABEL}"]]


def install(kind: Kind, config: str | None, now: bool) -> tuple[Path, Service, list[str]]:
    """Write the service file; with ``now``, also enable and start it. Returns the file, what
    it runs, and what was done or is left to do (lines for the user)."""
    service = Service(str(installed_executable()), resolve_config(config))
    path = service_file(kind)
    atomic.write_bytes(path, render(kind, service))
    commands = _manager_commands(kind, "start", path)
    notes = []
    if service.config is None:
        notes.append(f"no config: the service runs with the built-in defaults (write "
                     f"{default_config_path()} or pass --config F, then install again)")
    if not now:
        notes.append("not started; to start it now and at every login: "
                     + " && ".join(" ".join(c) for c in commands))
        return path, service, notes
    for cmd in commands:
        if shutil.which(cmd[0]) is None:
            raise ServiceError(f"`{cmd[0]}` is not available here; the service file is written "
                               f"({path}), start it with: {' '.join(cmd)}")
        done = _run(cmd)
        if done.returncode != 0:
            raise ServiceError(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.stdout}")
    notes.append("enabled and started")
    return path, service, notes


def uninstall(kind: Kind) -> tuple[Path, bool, list[str]]:
    """Stop and disable the service (where the manager is available) and remove its file.
    Returns the file, whether it existed, and notes for the user."""
    path = service_file(kind)
    notes = []
    existed = path.exists()
    if existed:
        for cmd in _manager_commands(kind, "stop", path)[::-1]:
            if shutil.which(cmd[0]) is None:
                notes.append(f"`{cmd[0]}` is not available: if the service runs, stop it "
                             "yourself")
                break
            done = _run(cmd)
            if done.returncode != 0 and cmd[-1] != "daemon-reload":
                notes.append(f"`{' '.join(cmd)}`: {done.stderr.strip() or 'failed'}")
        path.unlink()
        if kind == "systemd" and shutil.which("systemctl"):
            _run(["systemctl", "--user", "daemon-reload"])
    return path, existed, notes


def read_exec(kind: Kind, path: Path) -> list[str] | None:
    """The command line an installed service file runs (None if it cannot be read)."""
    try:
        if kind == "launchd":
            args = plistlib.loads(path.read_bytes()).get("ProgramArguments")
            return [str(a) for a in args] if isinstance(args, list) else None
        import shlex

        for line in path.read_text().splitlines():
            if line.startswith("ExecStart="):
                return shlex.split(line[len("ExecStart="):].replace("%%", "%")
                                   .replace("$$", "$"))
    except (OSError, ValueError, plistlib.InvalidFileException):
        return None
    return None


def status(kind: Kind) -> tuple[bool, list[str]]:
    """Lines describing the installed service; True if it is installed and what it runs
    exists."""
    path = service_file(kind)
    if not path.exists():
        return False, [f"not installed ({path} does not exist)"]
    lines = [f"service file: {path}"]
    argv = read_exec(kind, path)
    ok = bool(argv) and Path(argv[0]).is_file()  # type: ignore[index]
    if argv:
        lines.append(f"runs: {' '.join(argv)}")
        if not ok:
            lines.append(f"problem: {argv[0]} does not exist any more; run "
                         "`streamtag service install` again from the installed streamtag")
    else:
        lines.append("problem: cannot read the command it runs")
    if kind == "systemd" and shutil.which("systemctl"):
        for verb in ("is-enabled", "is-active"):
            done = _run(["systemctl", "--user", verb, UNIT_NAME])
            answer = (done.stdout.strip() or done.stderr.strip() or "unknown").splitlines()[0]
            lines.append(f"{verb[3:]}: {answer}")
    elif kind == "launchd" and shutil.which("launchctl"):
        done = _run(["launchctl", "print", f"gui/{os.getuid()}/{LABEL}"])
        lines.append("loaded: " + ("yes" if done.returncode == 0 else "no"))
    return ok, lines


#: The homes the example files in examples/ are written for (a checkout in ~/streamtag).
EXAMPLE_HOME_LINUX = Path("/home/me")
EXAMPLE_HOME_MACOS = Path("/Users/me")


def example_files() -> dict[str, bytes]:
    """examples/systemd and examples/launchd as ``streamtag service install`` would write them
    for a checkout in ``~/streamtag`` and a config in the default place."""
    linux = Service(str(EXAMPLE_HOME_LINUX / "streamtag/.venv/bin/streamtag"),
                    str(EXAMPLE_HOME_LINUX / ".config/streamtag/streamtag.yaml"))
    mac = Service(str(EXAMPLE_HOME_MACOS / "streamtag/.venv/bin/streamtag"),
                  str(EXAMPLE_HOME_MACOS / "Library/Application Support/streamtag/streamtag.yaml"))
    return {
        f"examples/systemd/{UNIT_NAME}": render_systemd(linux).encode(),
        f"examples/launchd/{LABEL}.plist": render_launchd(mac, EXAMPLE_HOME_MACOS),
    }
