"""The OSC address space as OSCQuery JSON (the Vidvox OSCQuery proposal), built from the manifest.

The manifest (:func:`streamtag.publish.wire.build_manifest`) is the single source: every address
it lists (per-hop values, fast lane, user mappings, the manifest reply, control) becomes a node
with ``FULL_PATH``, ``TYPE`` (if it has arguments), ``ACCESS``, ``RANGE`` and ``DESCRIPTION``;
the containers between them get ``FULL_PATH``, ``ACCESS`` 0 and ``CONTENTS``.

ACCESS and VALUE, after the proposal: a published value is 1 (sent by streamtag, never
received), and its node carries ``VALUE``, the arguments last published there (``null`` for
each until something is, and always for user mappings, the manifest reply and the beat, whose
values the OSCQuery server does not see). A control address takes no argument: ACCESS 0 (no
value), no TYPE; send it to streamtag's control port (``OSC_PORT`` in ``HOST_INFO``).

A published address whose parent is also one (``/streamtag/emotion ff`` above
``/streamtag/emotion/valence f``; also ``instrument`` and ``reference``) is a method and a
container at once. The proposal allows that, but clients do not all read it: python-oscquery
refuses a node with both ``CONTENTS`` and ``VALUE``, and one with ACCESS ≠ 0 without ``VALUE``,
and then reads none of the tree. So such a node is served as a container, ACCESS 0 without
VALUE, and keeps its TYPE, RANGE and DESCRIPTION (a method's signature); ``?VALUE`` at its path
still answers its last value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

#: Service type of the zeroconf/mDNS advertisement (the proposal's).
SERVICE_TYPE = "_oscjson._tcp.local."

ACCESS_NONE, ACCESS_READ, ACCESS_WRITE = 0, 1, 2

#: The optional attributes this server supports (HOST_INFO ``EXTENSIONS``).
EXTENSIONS: dict[str, bool] = {
    "ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TAGS": False,
    "EXTENDED_TYPE": False, "UNIT": False, "CRITICAL": False, "CLIPMODE": False,
    "LISTEN": False, "PATH_CHANGED": False, "PATH_RENAMED": False, "PATH_ADDED": False,
    "PATH_REMOVED": False, "HTML": False,
}
#: Attributes a node may answer one by one (``/path?ATTR``).
NODE_ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "RANGE", "DESCRIPTION", "VALUE")
#: Arguments last published, by address: what VALUE says (see :func:`answer`).
Values = Mapping[str, Sequence[Any]]


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
    _settle_access(root)
    return root


def _settle_access(node: dict[str, Any]) -> None:
    """ACCESS 0 where there is no value to read or set in the tree: a method without arguments
    (the proposal's "no value"), and a method that is also a container (see the module
    docstring)."""
    if node.get("CONTENTS"):
        if "TYPE" in node:
            node["ACCESS"] = ACCESS_NONE
        for child in node["CONTENTS"].values():
            _settle_access(child)
    elif "TYPE" not in node:
        node["ACCESS"] = ACCESS_NONE


def methods(node: Mapping[str, Any]) -> list[str]:
    """Every address under ``node`` that is a method: a node with ``TYPE`` or without
    ``CONTENTS`` (containers exist only above methods)."""
    out = []
    if node.get("TYPE") or not node.get("CONTENTS"):
        out.append(str(node["FULL_PATH"]))
    for child in (node.get("CONTENTS") or {}).values():
        out.extend(methods(child))
    return out


def _value(node: Mapping[str, Any], values: Values) -> list[Any]:
    """A method's VALUE: its last published arguments, else one null per type."""
    types = str(node["TYPE"])
    got = values.get(str(node["FULL_PATH"]))
    return list(got) if got is not None and len(got) == len(types) else [None] * len(types)


def with_values(node: Mapping[str, Any], values: Values) -> dict[str, Any]:
    """A copy of ``node`` and its sub-nodes, each method with ACCESS ≠ 0 carrying VALUE."""
    out = dict(node)
    if "TYPE" in node and node.get("ACCESS"):
        out["VALUE"] = _value(node, values)
    if node.get("CONTENTS"):
        out["CONTENTS"] = {k: with_values(c, values) for k, c in node["CONTENTS"].items()}
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


def answer(root: Mapping[str, Any], info: Mapping[str, Any], target: str,
           values: Values | None = None) -> tuple[int, dict[str, Any] | None]:
    """Answer one HTTP request target (``/path?QUERY#fragment``): ``(status, JSON or None)``.

    ``?HOST_INFO`` at any path gives the host info; a path gives its node with its sub-nodes,
    methods with their VALUE from ``values`` (404 if none); a path with an attribute gives
    ``{ATTR: value}``: 204 for an attribute the node lacks (VALUE: a node without TYPE), 400
    for an unknown attribute.
    """
    values = values or {}
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
        return 200, with_values(node, values)
    if query == "VALUE":
        return (200, {"VALUE": _value(node, values)}) if "TYPE" in node else (204, None)
    if query not in NODE_ATTRIBUTES:
        return 400, None
    if query not in node:
        return 204, None
    return 200, {query: node[query]}
