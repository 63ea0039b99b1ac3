"""Shared test helpers for the publishing tests: a sample record, free ports, a UDP receiver."""

from __future__ import annotations

import socket
from typing import Any

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage

# The README's example record, plus a class name OSC cannot carry as-is ("tenor saxophone").
# wall is exactly representable (…0.125) so timetags are exact.
SAMPLE_RECORD: dict[str, Any] = {
    "seq": 17, "t": 9.0, "stream": "main", "wall": 1763768400.125, "latency_ms": 4.2,
    "level_db": -18.3, "silent": False,
    "emotion": {"valence": 0.41, "arousal": -0.12, "quadrant": 4, "label": "calm"},
    "instrument": {"top": "violin", "confidence": 0.83,
                   "probs": {"clarinet": 0.01, "tenor saxophone": 0.16, "violin": 0.83}},
    "timbre": {"brightness": 0.62, "warmth": 0.40, "roughness": 0.11, "sharpness": 0.55,
               "boominess": 0.20, "depth": 0.33, "hardness": 0.47},
}

HEADS = [
    {"name": "emotion", "kind": "regression", "labels": ["valence", "arousal"], "range": [-1, 1]},
    {"name": "instrument", "kind": "multiclass",
     "labels": ["clarinet", "tenor saxophone", "violin"]},
    {"name": "timbre", "kind": "regression",
     "labels": ["brightness", "warmth", "roughness", "sharpness", "boominess", "depth",
                "hardness"], "range": [0, 1]},
]


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UdpReceiver:
    """A plain UDP socket on 127.0.0.1; what arrives is parsed with python-osc."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(timeout_s)
        self.port: int = self.sock.getsockname()[1]

    def recv(self) -> bytes:
        return self.sock.recv(65535)

    def recv_messages(self) -> tuple[float | None, list[OscMessage]]:
        """(bundle timetag as Unix time, or None for a plain message; messages in order)."""
        data = self.recv()
        if OscBundle.dgram_is_bundle(data):
            bundle = OscBundle(data)
            return bundle.timestamp, [m for m in bundle if isinstance(m, OscMessage)]
        return None, [OscMessage(data)]

    def close(self) -> None:
        self.sock.close()


# SAMPLE_RECORD with the issue-5 fields: tags (one with a space), the embedding (xy and the
# vector), novelty and a reference match.
FULL_RECORD: dict[str, Any] = {
    **SAMPLE_RECORD,
    "tags": {"calm": 0.75, "Hip Hop": 0.125},
    "embedding": {"xy": [0.25, -0.5], "vector": [0.6, 0.8, 0.0]},
    "novelty": 0.375,
    "reference": {"name": "intro", "nearest": "intro", "distance": 0.25, "known": True},
}

FULL_HEADS = [
    *HEADS,
    {"name": "tags", "kind": "multilabel", "labels": ["calm", "Hip Hop"]},
    {"name": "embedding", "kind": "embedding", "labels": ["d0", "d1", "d2"]},
]
