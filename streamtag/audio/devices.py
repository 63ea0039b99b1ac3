"""Finding audio input devices: list them, and turn a user's ``--input`` into one device.

Every scan runs PortAudio in a short-lived child process (see ``_portaudio_worker``): a scan in
the daemon's own process could never be refreshed, because PortAudio's rescan aborts the process
once a JACK server it knew has gone. A scan therefore costs ~0.2 s and always sees the devices
as they are now.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streamtag.errors import DeviceError

WORKER_PATH = Path(__file__).with_name("_portaudio_worker.py")

NO_INPUT_HELP = (
    "No audio input device was found. Run `streamtag devices` to see what PortAudio can open. "
    "To analyse a recording instead, pass `--input FILE`. On a machine without a sound card, "
    "start a JACK server (for example `jackd -d dummy`), then connect a player to streamtag's "
    "JACK input ports."
)


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio input device.

    Attributes:
        index: PortAudio device index (valid for the scan it came from).
        name: device name as PortAudio reports it (for JACK: the client whose ports we read).
        max_input_channels: input channels the device offers.
        default_sample_rate_hz: the device's native rate [Hz].
        host_api: PortAudio host API, e.g. ``"ALSA"`` or ``"JACK Audio Connection Kit"``.
    """

    index: int
    name: str
    max_input_channels: int
    default_sample_rate_hz: float
    host_api: str

    def describe(self) -> str:
        """One line for listings and error messages."""
        return (
            f"{self.index}: {self.name} ({self.host_api}), {self.max_input_channels} in, "
            f"{self.default_sample_rate_hz:g} Hz"
        )


@dataclass(frozen=True)
class DeviceScan:
    """A snapshot of the input devices: ``devices`` and the index of the default input."""

    devices: list[DeviceInfo]
    default_input: int | None


def worker_command(*args: str) -> list[str]:
    """The command line that runs the PortAudio worker with ``args``."""
    return [sys.executable, str(WORKER_PATH), *args]


def worker_env() -> dict[str, str]:
    """The worker's environment: ours (JACK_DEFAULT_SERVER and friends pass through), and the
    script's own folder kept off ``sys.path`` on Python ≥ 3.11."""
    env = dict(os.environ)
    env["PYTHONSAFEPATH"] = "1"
    return env


def scan_devices(*, timeout_s: float = 15.0) -> DeviceScan:
    """Scan PortAudio's input devices now, in a child process.

    Args:
        timeout_s: give up after this long [s]; a wedged driver must not hang the caller.
    Raises:
        DeviceError: PortAudio is missing, or the scan failed or timed out.
    """
    try:
        proc = subprocess.run(
            worker_command("list", "streamtag_scan"),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=worker_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise DeviceError(
            f"the audio device scan did not finish within {timeout_s:g} s "
            "(a stuck audio driver or JACK server?)"
        ) from exc
    except OSError as exc:
        raise DeviceError(f"cannot run the audio device scan: {exc}") from exc
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        detail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise DeviceError(f"the audio device scan failed: {detail[0]}")
    if "error" in result:
        raise DeviceError(
            f"PortAudio is not available ({result['error']}); install the libportaudio2 package"
        )
    devices = [DeviceInfo(**d) for d in result["devices"]]
    return DeviceScan(devices=devices, default_input=result["default_input"])


def list_devices(*, timeout_s: float = 15.0) -> list[DeviceInfo]:
    """The input devices PortAudio can open now (devices with at least one input channel)."""
    return scan_devices(timeout_s=timeout_s).devices


def resolve_device(spec: int | str | None, *, timeout_s: float = 15.0) -> DeviceInfo:
    """Scan the devices now and pick the one ``spec`` names (see ``match_device``).

    Raises:
        DeviceError: no input device at all, no match, or an ambiguous name.
    """
    found = scan_devices(timeout_s=timeout_s)
    return match_device(spec, found.devices, found.default_input)


def match_device(
    spec: int | str | None, devices: Sequence[DeviceInfo], default_input: int | None
) -> DeviceInfo:
    """Pick the input device ``spec`` names among ``devices``.

    Args:
        spec: ``None`` or ``""`` for the default input; an ``int`` (or a string of digits) for a
            PortAudio index; otherwise a case-insensitive substring of the device name. A name
            that equals one device's name exactly wins over other substring matches.
        devices: the input devices of one scan.
        default_input: that scan's default input index, or None.
    Raises:
        DeviceError: no input device at all, no match, or an ambiguous name; the message lists
            the candidates.
    """
    if isinstance(spec, str):
        spec = spec.strip()
        if spec == "":
            spec = None
        elif spec.isdigit():
            spec = int(spec)
    if not devices:
        looking = "" if spec is None else f" (looking for '{spec}')"
        raise DeviceError(NO_INPUT_HELP.replace("found.", f"found{looking}.", 1))
    listing = "\n".join(f"  {d.describe()}" for d in devices)
    if spec is None:
        for d in devices:
            if d.index == default_input:
                return d
        return devices[0]
    if isinstance(spec, int):
        for d in devices:
            if d.index == spec:
                return d
        raise DeviceError(
            f"no input device has index {spec}. Input devices:\n{listing}\n"
            "(`streamtag devices` lists them)"
        )
    wanted = spec.casefold()
    matches = [d for d in devices if wanted in d.name.casefold()]
    exact = [d for d in matches if d.name.casefold() == wanted]
    if len(exact) == 1:
        return exact[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DeviceError(
            f"no input device name contains '{spec}'. Input devices:\n{listing}\n"
            "(`streamtag devices` lists them)"
        )
    candidates = exact or matches
    names = "\n".join(f"  {d.describe()}" for d in candidates)
    raise DeviceError(
        f"input device '{spec}' is ambiguous, it matches {len(candidates)} devices:\n{names}\n"
        "Give more of the name, or the index."
    )
