"""The OSC address space as OSCQuery JSON (the Vidvox OSCQuery proposal), built from the manifest.

The manifest (:func:`streamtag.publish.wire.build_manifest`) is the single source: every address
it lists (per-hop values, fast lane, user mappings, the manifest reply, control) becomes a node
with ``FULL_PATH``, ``TYPE``, ``ACCESS``, ``RANGE`` and ``DESCRIPTION``; the containers between
them get ``FULL_PATH``, ``ACCESS`` 0 and ``CONTENTS``. A published address whose parent is also
an address (``/streamtag/emotion ff`` above ``/streamtag/emotion/valence f``) is a method and a
container at once, as the proposal allows.

ACCESS, after the proposal: published values are 1 (the value is sent by streamtag, never
received); control addresses are 2 (send them to streamtag's control port, ``OSC_PORT`` in
``HOST_INFO``). ``VALUE`` is not served (the values stream over OSC, ZeroMQ and the WebSocket
feed): a ``?VALUE`` query answers 204, as the proposal asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

#: Service type of the zeroconf/mDNS advertisement (the proposal's).
SERVICE_TYPE = "_oscjson._tcp.local."

ACCESS_NONE, ACCESS_READ, ACCESS_WRITE = 0, 1, 2

#: The optional attributes this server supports (HOST_INFO ``EXTENSIONS``).
EXTENSIONS: dict[str, bool] = {
    "ACCESS": True, "VALUE": False, "RANGE": True, "DESCRIPTION": True, "TAGS": False,
    "EXTENDED_TYPE": False, "UNIT": False, "CRITICAL": False, "CLIPMODE": False,
    "LISTEN": False, "PATH_CHANGED": False, "PATH_RENAMED": False, "PATH_ADDED": False,
    "PATH_REMOVED": False, "HTML": False,
}
#: Attributes a node may answer one by one (``/path?ATTR``).
NODE_ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "RANGE", "DESCRIPTION")


def _range(args: Any) -> list[dict[str, float] | None]:
    out: list[dict[str, float] | None] = []
    for a in args or ():
        rng = a.get("range") if isinstance(a, Mapping) else None
        out.append({"MIN": min(rng), "MAX": max(rng)} if rng else None)
    return out


def _node(root: dict[str, Any], path: str) -> dict[str, Any]:
    """The node at ``path`` in the tree under ``root``, made (as a container) if missing."""
    node = root
    full = ""
    for part in path.strip("/").split("/"):
        full += "/" + part
        contents = node.setdefault("CONTENTS", {})
        node = contents.setdefault(part, {"FULL_PATH": full, "ACCESS": ACCESS_NONE})
    return node


def _method(root: dict[str, Any], address: str, types: str, args: Any, description: str,
            access: int) -> None:
    node = _node(root, address)
    node["ACCESS"] = access
    if types:
        node["TYPE"] = types
        rng = _range(args)
        if any(r is not None for r in rng):
            node["RANGE"] = rng
    if description:
        node["DESCRIPTION"] = description


def namespace(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The whole address space as one OSCQuery root node (JSON-ready).

    Args:
        manifest: a manifest from :func:`streamtag.publish.wire.build_manifest` (its
            ``osc.addresses``, ``osc.manifest``, ``osc.control`` and ``mappings``).
    """
    root: dict[str, Any] = {"FULL_PATH": "/", "ACCESS": ACCESS_NONE,
                            "DESCRIPTION": "streamtag: live audio analysis"
                            + (f" (checkpoint {manifest['checkpoint']})"
                               if manifest.get("checkpoint") else "")}
    osc = manifest.get("osc") or {}
    for entry in osc.get("addresses") or ():
        _method(root, entry["address"], entry.get("types", ""), entry.get("args"),
                entry.get("description", ""), ACCESS_READ)
    for m in manifest.get("mappings") or ():
        address = m.get("address") or m.get("to")
        if address:
            _method(root, address, m.get("types", "f"), m.get("args"),
                    m.get("description") or f"mapping of {m.get('source', '?')}", ACCESS_READ)
    reply = osc.get("manifest")
    if reply:
        _method(root, reply["address"], reply.get("types", "s"), None,
                reply.get("description", ""), ACCESS_READ)
    for c in osc.get("control") or ():
        _method(root, c["address"], c.get("types", ""), None, c.get("description", ""),
                ACCESS_WRITE)
    return root


def methods(node: Mapping[str, Any]) -> list[str]:
    """Every address under ``node`` that is a method (has ``TYPE`` or ``ACCESS`` ≠ 0)."""
    out = []
    if node.get("TYPE") or node.get("ACCESS"):
        out.append(str(node["FULL_PATH"]))
    for child in (node.get("CONTENTS") or {}).values():
        out.extend(methods(child))
    return out


def host_info(name: str, osc_host: str | None, osc_port: int | None) -> dict[str, Any]:
    """The ``?HOST_INFO`` object: NAME, EXTENSIONS and, when streamtag receives OSC (its control
    port is on), OSC_PORT, OSC_TRANSPORT and OSC_IP (omitted for a wildcard bind: the same
    address as the OSCQuery server)."""
    info: dict[str, Any] = {"NAME": name, "EXTENSIONS": dict(EXTENSIONS)}
    if osc_port is not None:
        info["OSC_PORT"] = osc_port
        info["OSC_TRANSPORT"] = "UDP"
        if osc_host and osc_host not in ("0.0.0.0", "::", ""):
            info["OSC_IP"] = osc_host
    return info


def answer(root: Mapping[str, Any], info: Mapping[str, Any], target: str
           ) -> tuple[int, dict[str, Any] | None]:
    """Answer one HTTP request target (``/path?QUERY#fragment``): ``(status, JSON or None)``.

    ``?HOST_INFO`` at any path gives the host info; a path gives its node (404 if none); a path
    with an attribute gives ``{ATTR: value}``: 204 for VALUE (not served) or an attribute the
    node lacks, 400 for an unknown attribute.
    """
    target = target.split("#", 1)[0]
    path, _, query = target.partition("?")
    if query == "HOST_INFO":
        return 200, dict(info)
    path = unquote(path).rstrip("/") or "/"
    node: Mapping[str, Any] | None = root
    if path != "/":
        for part in path.strip("/").split("/"):
            node = (node.get("CONTENTS") or {}).get(part) if node is not None else None
    if node is None:
        return 404, None
    if not query:
        return 200, dict(node)
    if query == "VALUE":
        return 204, None
    if query not in NODE_ATTRIBUTES:
        return 400, None
    if query not in node:
        return 204, None
    return 200, {query: node[query]}
