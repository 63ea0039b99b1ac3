"""Device discovery: matching a user's ``--input`` against a device list, and the real scan."""

from __future__ import annotations

import pytest

from streamtag.audio.devices import (
    DeviceInfo,
    list_devices,
    match_device,
    resolve_device,
    scan_devices,
)
from streamtag.audio.sources import DeviceSource
from streamtag.errors import DeviceError

JACK = "JACK Audio Connection Kit"
DEVICES = [
    DeviceInfo(0, "HDA Intel PCH: ALC892 Analog (hw:0,0)", 2, 44100.0, "ALSA"),
    DeviceInfo(3, "Scarlett 2i2 USB: Audio (hw:1,0)", 2, 48000.0, "ALSA"),
    DeviceInfo(5, "pulse", 32, 44100.0, "ALSA"),
    DeviceInfo(6, "default", 32, 44100.0, "ALSA"),
    DeviceInfo(7, "system", 2, 48000.0, JACK),
    DeviceInfo(8, "system2", 8, 48000.0, JACK),
]


def test_none_picks_the_default_input() -> None:
    assert match_device(None, DEVICES, 6).index == 6
    assert match_device("", DEVICES, 6).index == 6
    assert match_device(None, DEVICES, None).index == 0  # no default: the first input


def test_index_as_int_or_digits() -> None:
    assert match_device(3, DEVICES, None).name.startswith("Scarlett")
    assert match_device(" 7 ", DEVICES, None).name == "system"


def test_name_substring_is_case_insensitive() -> None:
    assert match_device("scarlett", DEVICES, None).index == 3
    assert match_device("ALC892", DEVICES, None).index == 0


def test_exact_name_wins_over_longer_names() -> None:
    assert match_device("System", DEVICES, None).index == 7
    assert match_device("system2", DEVICES, None).index == 8


def test_ambiguous_name_lists_the_candidates() -> None:
    with pytest.raises(DeviceError, match="ambiguous") as info:
        match_device("hw:", DEVICES, None)
    message = str(info.value)
    assert "0: HDA Intel" in message and "3: Scarlett" in message and "pulse" not in message


def test_no_match_lists_every_input() -> None:
    with pytest.raises(DeviceError, match="'Focusrite'") as info:
        match_device("Focusrite", DEVICES, None)
    assert all(d.name in str(info.value) for d in DEVICES)


def test_unknown_index_lists_every_input() -> None:
    with pytest.raises(DeviceError, match="index 42") as info:
        match_device(42, DEVICES, None)
    assert "system2" in str(info.value)


@pytest.mark.parametrize("spec", [None, "system", 0])
def test_no_input_device_explains_what_to_do(spec: str | int | None) -> None:
    with pytest.raises(DeviceError) as info:
        match_device(spec, [], None)
    message = str(info.value)
    for hint in ("streamtag devices", "--input FILE", "JACK", "jackd -d dummy"):
        assert hint in message


def test_real_scan_returns_input_devices() -> None:
    scan = scan_devices()
    for d in scan.devices:
        assert isinstance(d, DeviceInfo)
        assert d.max_input_channels > 0 and d.default_sample_rate_hz > 0 and d.host_api
    assert scan.default_input is None or scan.default_input in {d.index for d in scan.devices}


def test_real_resolve_errors_name_the_way_out() -> None:
    """With no input device (a CI box without JACK) the message says what to do; otherwise a
    name that matches nothing lists the real devices."""
    devices = list_devices()
    with pytest.raises(DeviceError) as info:
        resolve_device("no such device, surely 7f3a")
    message = str(info.value)
    if not devices:
        assert "streamtag devices" in message and "--input FILE" in message
        assert "jackd -d dummy" in message
    else:
        assert "no input device name contains" in message
        assert all(d.name in message for d in devices)


def test_device_source_on_a_missing_device_fails_at_construction() -> None:
    with pytest.raises(DeviceError):
        DeviceSource("no such device, surely 7f3a", None, None, 256, 1.0)


def test_device_source_rejects_channels_the_device_lacks() -> None:
    two_in = DeviceInfo(7, "system", 2, 48000.0, JACK)
    with pytest.raises(DeviceError, match=r"\[3\].*inputs 1\.\.2"):
        DeviceSource(two_in, [1, 3], None, 256, 1.0)
    with pytest.raises(DeviceError):
        DeviceSource(two_in, [0], None, 256, 1.0)


def test_device_source_settles_rate_and_channels_without_opening_anything() -> None:
    eight_in = DeviceInfo(8, "system2", 8, 44100.0, JACK)
    src = DeviceSource(eight_in, [3, 1], None, 0, 2.0)
    assert (src.sample_rate_hz, src.channels, src.status) == (44100, 2, "idle")
    assert DeviceSource(eight_in, None, 48000, 256, 1.0).channels == 8
    with pytest.raises(RuntimeError, match="start"):
        src.read(10, 0.0)
