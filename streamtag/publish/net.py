"""Which addresses a port is bound to: loopback only, or reachable from other machines."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or address to bind, e.g. ``127.0.0.1``, ``::1``,
    ``localhost``) is loopback only; ``0.0.0.0`` and any other address are not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
