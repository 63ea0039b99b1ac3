"""The reference library: named recordings (seed 003's anchors) that the running sound is matched
against, so a performer hears "the intro is back" and new material is reported as new.

File format: one ``.safetensors`` file (never pickle; loading executes no code). One float32
tensor per reference, ``r0``, ``r1``, … of shape [hops, D]: the per-hop match vectors of the
reference's non-silent hops (``Engine.reference_vectors``: unit vectors derived from the
model's window encoding, see :func:`streamtag.embedding.match_vectors`), in playing order,
computed through the engine with the checkpoint named in the metadata. The header's
``__metadata__["streamtag"]`` is JSON::

    {"format": "streamtag-references", "version": 2,
     "checkpoint_sha256": "<64 hex>", "dims": D, "hop_s": 0.5, "match": "full" | "<12 hex>",
     "references": [{"name": "intro", "tensor": "r0", "hops": N,
                     "segments": [n1, n2, …], "files": ["intro.wav", …]}, …]}

``match`` names the map that made the vectors (``Engine.match_id``: the checkpoint's stored
PCA, or "full"); a library is used only with the same map. Version 1 files held the embedding
head's vectors; they are refused with a message to add the
references again (the audio files are listed in the file).

``segments`` are the hop counts contributed by each file (they sum to ``hops``); query windows
never span two files. A library is tied to the weights it was made with: loading it for another
checkpoint is refused, naming both ids. Writes go to a temporary file that replaces the old one
(atomic on POSIX), so a crash mid-write never leaves a half library. A change (read, modify,
write) holds :func:`library_lock`, an exclusive lock on a companion file ``.<name>.lock``, from
the read to the rename, so two ``reference add`` at once both land (without it, one of two
concurrent writers was lost in 4 of 7 trials). Readers (the daemon) need no lock: the rename
shows them the old file or the new one whole.

Matching (:class:`ReferenceMatcher`, :class:`SequenceIndex`): the query is the sequence of the
last ``window_s`` of non-silent hops' match vectors, oldest first (``k`` hops, fewer at the
start of a stream; see :mod:`streamtag.embedding`). It is slid along every
recording of every reference: at each alignment the similarity is the mean over the ``k`` hops
of the cosine between a query hop and the reference hop it meets, and the distance
``sqrt(2 − 2·similarity)`` (0 … 2; for one hop, the Euclidean distance of the two unit
vectors). Alignments stay inside one file; a file shorter than the query meets the query's
last hops. A reference's distance is its best alignment's; the nearest reference is reported,
and counted as known when its distance is ≤ ``known_distance``. Matching the sequence rather
than its mean keeps the order of events: on the validation renders of an earlier model
(260 pieces, 4 s queries after 5 s) top-1 retrieval was 0.62 against 0.45 for the mean of the
same hops. At most :data:`MAX_HOPS_PER_REFERENCE` hops of each reference are matched (its
first 20 minutes).
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamtag import record
from streamtag.embedding import MAX_DISTANCE, unit_rows
from streamtag.errors import LibraryError
from streamtag.tensorfile import FileKind, read_tensor_file, write_tensor_file

FORMAT = "streamtag-references"
VERSION = 2
_LIBRARY_FILE = FileKind(LibraryError, "reference library", missing_hint=(
    " (create it with `streamtag reference add NAME FILE…`)"))
#: Hops of each reference matched: its first 20 min at 0.5 s hops. Bounds the per-hop cost
#: whatever the recordings' length (each new query hop meets every reference hop once:
#: 20 references × 2400 hops × 64 dims ≈ 3 M multiply-adds).
MAX_HOPS_PER_REFERENCE = 2400
NAME_MAX_CHARS = 64
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def default_library_path() -> Path:
    """Where ``streamtag reference`` reads and writes when no ``--library`` is given:
    ``references.safetensors`` in the user's data folder (``streamtag.paths``; Linux
    ``~/.local/share/streamtag``, macOS ``~/Library/Application Support/streamtag``)."""
    from streamtag.paths import default_library_path as path

    return path()


def check_name(name: str) -> str:
    """Return ``name`` if usable as a reference name, else raise LibraryError saying why."""
    if (not isinstance(name, str) or not name or len(name) > NAME_MAX_CHARS
            or not name.isprintable() or name != name.strip()):
        raise LibraryError(
            f"reference name {name!r}: expected 1..{NAME_MAX_CHARS} printable characters "
            "without leading or trailing spaces"
        )
    return name


@dataclass
class Reference:
    """One named reference. match_vectors: [hops, D] float32 unit match vectors
    (``embedding.match_vectors``) of its non-silent hops; segments: hops per file (sum = hops);
    files: the files as given when added."""

    name: str
    match_vectors: np.ndarray
    segments: list[int]
    files: list[str]

    @property
    def hops(self) -> int:
        return int(self.match_vectors.shape[0])


@dataclass
class ReferenceLibrary:
    """References made with one checkpoint (identified by its full weights hash)."""

    checkpoint_sha256: str
    dims: int
    hop_s: float
    references: dict[str, Reference] = field(default_factory=dict)
    path: Path | None = None
    #: The map that made the vectors (``Engine.match_id``): "full" or a projection's id.
    match: str = "full"

    @property
    def checkpoint_id(self) -> str:
        return self.checkpoint_sha256[:12]

    @property
    def names(self) -> list[str]:
        return list(self.references)

    def check_checkpoint(self, sha256: str, match: str = "full") -> None:
        """Raise LibraryError unless this library was made with the weights hashing to
        ``sha256`` and the match-vector map ``match``; the message names both."""
        where = f"{self.path}: " if self.path else ""
        if sha256 == self.checkpoint_sha256 and match != self.match:
            raise LibraryError(
                f"{where}reference library made with match vectors {self.match!r}, but checkpoint "
                f"{sha256[:12]} now makes {match!r} (its embedding metadata was refitted): "
                "rebuild the library with `streamtag reference add`")
        if sha256 != self.checkpoint_sha256:
            raise LibraryError(
                f"{where}reference library made with checkpoint {self.checkpoint_id}, but the "
                f"loaded checkpoint is {sha256[:12]}; match vectors of different models cannot be "
                "compared: rebuild the library with `streamtag reference add` and this "
                "checkpoint, or load the checkpoint it was made with"
            )

    def add(self, name: str, segments: list[np.ndarray], files: list[str]) -> Reference:
        """Add per-file match vectors [n_i, D] under ``name`` (appended if the name exists)."""
        check_name(name)
        if len(segments) != len(files):
            raise ValueError("one match-vector array per file")
        arrays = [np.asarray(s, np.float32).reshape(-1, self.dims) for s in segments]
        kept = [(a, f) for a, f in zip(arrays, files, strict=True) if len(a)]
        if not kept:
            raise LibraryError(f"reference {name!r}: no non-silent audio in {', '.join(files)}")
        if not all(np.isfinite(a).all() for a, _ in kept):
            raise LibraryError(f"reference {name!r}: match vectors are not finite")
        old = self.references.get(name)
        kept_before = [old.match_vectors] if old else []
        ref = Reference(
            name,
            np.concatenate(kept_before + [a for a, _ in kept]).astype(np.float32),
            (old.segments if old else []) + [len(a) for a, _ in kept],
            (old.files if old else []) + [f for _, f in kept],
        )
        self.references[name] = ref
        return ref

    def remove(self, name: str) -> None:
        if name not in self.references:
            known = ", ".join(self.references) or "none"
            raise LibraryError(f"no reference named {name!r} (references: {known})")
        del self.references[name]

    def save(self, path: str | Path | None = None) -> Path:
        """Write atomically (temporary file, then rename) to ``path`` (default: where it was
        loaded from)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("save: no path")
        tensors: dict[str, np.ndarray] = {}
        entries = []
        for i, ref in enumerate(self.references.values()):
            key = f"r{i}"
            tensors[key] = np.ascontiguousarray(ref.match_vectors, np.float32)
            entries.append({"name": ref.name, "tensor": key, "hops": ref.hops,
                            "segments": list(ref.segments), "files": list(ref.files)})
        meta = {"format": FORMAT, "version": VERSION, "checkpoint_sha256": self.checkpoint_sha256,
                "dims": self.dims, "hop_s": self.hop_s, "match": self.match,
                "references": entries}
        write_tensor_file(target, tensors, meta, "numpy")
        self.path = target
        return target


@contextlib.contextmanager
def library_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock for changing the library at ``path`` (blocks until it is free).

    The lock is on ``.<name>.lock`` beside the library (the library itself is replaced by a
    rename, so a lock on it would not outlive the write): ``fcntl.flock`` on POSIX,
    ``msvcrt.locking`` on Windows. Advisory: it orders streamtag's own writers. Released when
    the block ends or the process dies.
    """
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_name(f".{target.name}.lock")
    try:
        f = open(lock_path, "a+b")
    except OSError as e:
        raise LibraryError(f"{lock_path}: cannot open the library's lock file "
                           f"({e.strerror or e})") from e
    with f:
        if sys.platform == "win32":
            import msvcrt

            f.seek(0)
            while True:
                try:  # LK_LOCK retries for 10 s then raises; keep waiting like flock
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def load_library(path: str | Path) -> ReferenceLibrary:
    """Read and validate a library file; LibraryError names the file and every problem."""
    path = Path(path).expanduser()
    meta, tensors = read_tensor_file(path, _LIBRARY_FILE, "numpy")
    problems = _validate(meta, tensors)
    if problems:
        raise LibraryError(f"{path}: invalid reference library: " + "; ".join(problems))
    lib = ReferenceLibrary(meta["checkpoint_sha256"], int(meta["dims"]), float(meta["hop_s"]),
                           path=path, match=meta["match"])
    for e in meta["references"]:
        lib.references[e["name"]] = Reference(e["name"], tensors[e["tensor"]],
                                              list(e["segments"]), list(e["files"]))
    return lib


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _validate(meta: Any, tensors: dict[str, np.ndarray]) -> list[str]:
    if not isinstance(meta, dict):
        return ["metadata: expected a JSON object"]
    if meta.get("format") != FORMAT:
        return [f"format: expected {FORMAT!r}, got {meta.get('format')!r}"]
    if meta.get("version") == 1:
        return ["version 1: made by an older streamtag from the embedding head's vectors, "
                "which references no longer compare; add the references again with "
                "`streamtag reference add` (the files it lists)"]
    if meta.get("version") != VERSION:
        return [f"version: this streamtag reads version {VERSION}, file has "
                f"{meta.get('version')!r}"]
    problems = []
    if not isinstance(meta.get("checkpoint_sha256"), str) or not _HEX64.match(
            meta["checkpoint_sha256"]):
        problems.append("checkpoint_sha256: expected 64 hex digits")
    dims = meta.get("dims")
    if not _is_int(dims) or dims < 1:
        problems.append(f"dims: expected a positive integer, got {dims!r}")
        dims = None
    match = meta.get("match")
    if not isinstance(match, str) or not (match == "full" or re.fullmatch(r"[0-9a-f]{12}", match)):
        problems.append(f"match: expected 'full' or 12 hex digits, got {match!r}")
    hop = meta.get("hop_s")
    if isinstance(hop, bool) or not isinstance(hop, (int, float)) or not (
            math.isfinite(hop) and hop > 0):
        problems.append(f"hop_s: expected a number > 0, got {hop!r}")
    refs = meta.get("references")
    if not isinstance(refs, list):
        return [*problems, "references: expected a list"]
    names, used = set(), set()
    for i, e in enumerate(refs):
        p = f"references[{i}]"
        if not isinstance(e, dict):
            problems.append(f"{p}: expected an object")
            continue
        try:
            check_name(e.get("name"))  # type: ignore[arg-type]
        except LibraryError as err:
            problems.append(f"{p}.name: {err}")
        if e.get("name") in names:
            problems.append(f"{p}.name: {e.get('name')!r} appears twice")
        names.add(e.get("name"))
        key = e.get("tensor")
        t = tensors.get(key) if isinstance(key, str) else None
        hops = e.get("hops")
        if t is None:
            problems.append(f"{p}.tensor: no tensor {key!r} in the file")
        elif t.dtype != np.float32 or t.ndim != 2 or (dims and t.shape[1] != dims):
            problems.append(f"{p}: tensor {key!r} has shape {list(t.shape)} {t.dtype}, expected "
                            f"[hops, {dims}] float32")
        elif not np.isfinite(t).all():
            problems.append(f"{p}: tensor {key!r} holds NaN or infinite values")
        elif not _is_int(hops) or hops != t.shape[0] or hops < 1:
            problems.append(f"{p}.hops: expected {t.shape[0]} (the tensor's rows), got {hops!r}")
        used.add(key)
        seg = e.get("segments")
        if (not isinstance(seg, list) or not seg or not all(_is_int(n) and n > 0 for n in seg)
                or (_is_int(hops) and sum(seg) != hops)):
            problems.append(f"{p}.segments: expected positive hop counts summing to hops")
        files = e.get("files")
        if (not isinstance(files, list) or not all(isinstance(f, str) for f in files)
                or (isinstance(seg, list) and len(files) != len(seg))):
            problems.append(f"{p}.files: expected one file name per segment")
    extra = sorted(set(tensors) - used)
    if extra:
        problems.append(f"tensors not described in the metadata: {', '.join(extra)}")
    return problems


class SequenceIndex:
    """Recordings to slide a query sequence along (see the module docstring).

    owners: per owner (e.g. a reference), its recordings as [n_i, D] vectors in playing
    order (unit vectors; normalised again here; kept as float32); at most ``max_hops`` hops of
    each owner are kept. ``distances(query)`` gives each owner's distance to the query
    [owners].

    A running query moves on by one hop at a time, so each query hop's similarities to every
    reference hop ([H], one matrix-vector product) are computed once and kept for the next
    ``cache_hops`` calls: the per-hop cost is one product, not one per query hop.
    """

    def __init__(self, owners: list[list[np.ndarray]], dims: int,
                 max_hops: int = MAX_HOPS_PER_REFERENCE, cache_hops: int = 64) -> None:
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._cache_hops = cache_hops
        rows: list[np.ndarray] = []
        room: list[np.ndarray] = []
        self._files: list[tuple[int, int, int]] = []  # (owner, first row, hops) per recording
        self._bounds: list[tuple[int, int]] = []  # (first row, end row) per owner: contiguous
        at = 0
        for o, recordings in enumerate(owners):
            first, left = at, max_hops
            for seg in recordings:
                seg = np.asarray(seg, np.float64)[:left]
                n = len(seg)
                if not n:
                    continue
                left -= n
                rows.append(unit_rows(seg))
                room.append(np.arange(n, 0, -1))  # hops from each row to its file's end
                self._files.append((o, at, n))
                at += n
            self._bounds.append((first, at))
        self.owners = len(owners)
        self._rows = (np.concatenate(rows) if rows else np.zeros((0, dims))).astype(np.float32)
        self._room = np.concatenate(room) if room else np.zeros(0, int)  # [H]

    @property
    def hops(self) -> int:
        """Reference hops a query is slid along."""
        return len(self._rows)

    def distances(self, query: np.ndarray) -> np.ndarray:
        """Each owner's distance [owners] (0 … 2) to ``query`` [k, D] (oldest hop first); an owner
        with no hops is ``MAX_DISTANCE`` away."""
        q = np.asarray(query, np.float32)
        k, h = len(q), len(self._rows)
        if k == 0 or h == 0:
            return np.full(self.owners, MAX_DISTANCE)
        best = np.full(self.owners, -1.0)  # best mean cosine per owner
        # [H, k]: every reference hop against every query hop
        sims = np.stack([self._similarities(v) for v in q], axis=1)
        m = h - k + 1  # alignments: query hop i meets reference hop j + i
        if m > 0:
            score = sims[:m, 0].copy()
            for i in range(1, k):
                score += sims[i:m + i, i]
            score /= k
            score[self._room[:m] < k] = -1.0  # would run past the end of its file
            for o, (a, b) in enumerate(self._bounds):
                if a < min(b, m):
                    best[o] = float(score[a:min(b, m)].max())
        for o, at, n in self._files:  # files shorter than the query meet its last n hops
            if n < k:
                best[o] = max(best[o], float(np.trace(sims[at:at + n, k - n:])) / n)
        d = np.sqrt(np.clip(2.0 - 2.0 * best, 0.0, 4.0))
        return np.minimum(d, MAX_DISTANCE)

    def _similarities(self, v: np.ndarray) -> np.ndarray:
        """Cosines [H] (float64) of one query hop v [D] (float32) with every reference hop."""
        key = v.tobytes()
        col = self._cache.get(key)
        if col is None:
            col = (self._rows @ v).astype(np.float64)
            self._cache[key] = col
            if len(self._cache) > self._cache_hops:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return col


class ReferenceMatcher:
    """Nearest reference of a query sequence, with a known/unknown decision.

    library: the references (already checked against the running checkpoint).
    window_hops: the longest query [hops] (``reference.window_s``).
    known_distance: threshold [0 … 2]: a nearest reference further than this is "unknown".
    """

    def __init__(self, library: ReferenceLibrary, window_hops: int,
                 known_distance: float) -> None:
        self.library, self.window_hops, self.known_distance = library, window_hops, known_distance
        self.names = library.names
        self._index = SequenceIndex([_segments(r) for r in library.references.values()],
                                    library.dims)

    @property
    def hops(self) -> int:
        """Reference hops matched (after ``MAX_HOPS_PER_REFERENCE``)."""
        return self._index.hops

    def match(self, query: np.ndarray | None) -> dict[str, Any]:
        """The record's ``reference`` section for a query [k, D] (None: no sound yet)."""
        if query is None or not len(query) or not self.names:
            return {record.REFERENCE_NAME: None, record.REFERENCE_NEAREST: None,
                    record.REFERENCE_DISTANCE: None, record.REFERENCE_KNOWN: False}
        dist = self._index.distances(query[-self.window_hops:])
        best = int(np.argmin(dist))
        nearest = self.names[best]
        known = bool(dist[best] <= self.known_distance)
        return {record.REFERENCE_NAME: nearest if known else None,
                record.REFERENCE_NEAREST: nearest,
                record.REFERENCE_DISTANCE: float(f"{float(dist[best]):.6g}"),
                record.REFERENCE_KNOWN: known}


def _segments(ref: Reference) -> list[np.ndarray]:
    """A reference's recordings, each [n_i, D]."""
    out, start = [], 0
    for n in ref.segments:
        out.append(ref.match_vectors[start:start + n])
        start += n
    return out


__all__ = [
    "FORMAT", "MAX_HOPS_PER_REFERENCE", "VERSION", "Reference", "ReferenceLibrary",
    "ReferenceMatcher", "SequenceIndex", "check_name", "default_library_path", "load_library",
]
