"""safetensors files with a JSON document in their metadata: checkpoints and reference
libraries.

Tensors in the safetensors layout (no pickle: nothing in the file runs code), and one JSON
object under the metadata key ``"streamtag"`` saying what the tensors are. Each kind of file
validates its own document; reading and writing, with errors that name the file and what
went wrong, are the same for both and live here. Writes are atomic (``streamtag.atomic``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from safetensors import SafetensorError, safe_open

from streamtag.atomic import atomic_path
from streamtag.errors import StreamtagError

META_KEY = "streamtag"
"""The safetensors metadata key holding the JSON document."""

Framework = Literal["pt", "numpy"]


@dataclass(frozen=True)
class FileKind:
    """How errors about one kind of file read: its error type and the words for it."""

    error: type[StreamtagError]
    noun: str  # "safetensors checkpoint", "reference library"
    missing_hint: str = ""  # appended to "not found": how to make one
    unreadable_note: str = ""  # appended to "(truncated, corrupt or another format"


def read_tensor_file(path: Path, kind: FileKind, framework: Framework,
                     load_tensors: bool = True) -> tuple[Any, dict[str, Any]]:
    """The JSON document and the tensors ({} unless ``load_tensors``) of ``path``.

    The document is returned as parsed, not validated (the caller knows its schema). Raises
    ``kind.error`` for a missing path, a folder, a file safetensors cannot read, a file
    without the document, or a document that is not JSON.
    """
    if not path.exists():
        raise kind.error(f"{path}: {kind.noun} not found{kind.missing_hint}")
    if path.is_dir():
        raise kind.error(f"{path}: is a directory, expected a {kind.noun} file")
    try:
        with safe_open(str(path), framework=framework) as f:
            raw = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if load_tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise kind.error(f"{path}: not a readable {kind.noun} (truncated, corrupt or another "
                         f"format{kind.unreadable_note}): {e}") from e
    if META_KEY not in raw:
        raise kind.error(f"{path}: safetensors file without streamtag metadata; not a "
                         f"{kind.noun}")
    try:
        meta = json.loads(raw[META_KEY])
    except json.JSONDecodeError as e:
        raise kind.error(f"{path}: metadata is not valid JSON: {e}") from e
    return meta, tensors


def write_tensor_file(path: Path, tensors: dict[str, Any], meta: dict[str, Any],
                      framework: Framework) -> Path:
    """Write ``tensors`` (torch tensors for ``"pt"``, numpy arrays for ``"numpy"``) with the
    JSON document ``meta`` (finite numbers only) to ``path``, atomically."""
    if framework == "pt":
        from safetensors.torch import save_file
    else:
        from safetensors.numpy import save_file
    metadata = {META_KEY: json.dumps(meta, allow_nan=False)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path
