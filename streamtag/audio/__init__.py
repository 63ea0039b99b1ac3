"""Audio capture: sources (sound card, file, synthetic signal) that deliver ``[n, channels]``
float32 blocks at their native rate, a lock-free ring buffer, and device discovery."""

from streamtag.audio.devices import DeviceInfo, list_devices, resolve_device
from streamtag.audio.ring import RingBuffer
from streamtag.audio.sources import DeviceSource, FileSource, Source, SyntheticSource

__all__ = [
    "DeviceInfo",
    "DeviceSource",
    "FileSource",
    "RingBuffer",
    "Source",
    "SyntheticSource",
    "list_devices",
    "resolve_device",
]
