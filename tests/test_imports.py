"""The package's modules import one another without a cycle (imports inside functions count).

A submodule importing a name from its own package (``streamtag.audio.sources`` from
``streamtag.audio``, whose ``__init__`` re-exports it) is the package's face, not a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "streamtag"


def import_graph() -> dict[str, set[str]]:
    """Module name → the package modules it imports, anywhere in its source."""
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[m] |= {t for t in targets
                         if t in mods and t != m and not m.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert "streamtag.train.cli" in graph["streamtag.cli"]  # the graph sees lazy imports
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_shared_names_sit_below_everything() -> None:
    """streamtag.record is the bottom layer: it imports no streamtag module, and the frontend,
    model, checkpoint, engine and references take the record names from it, not from the
    publishing layer."""
    graph = import_graph()
    assert graph["streamtag.record"] == set()
    for m in ("streamtag.frontend", "streamtag.model", "streamtag.checkpoint",
              "streamtag.engine", "streamtag.references", "streamtag.analysis"):
        assert not {t for t in graph[m] if t.startswith("streamtag.publish")}, m
