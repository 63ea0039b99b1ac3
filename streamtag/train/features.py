"""From training sources to what the model sees: clips, cached mel frames, windows, per-hop labels.

Sources: the built-in corpus (``OUT/manifest.jsonl`` written by ``streamtag.train.corpus``) and
dataset loaders (``streamtag.train.datasets.load_dataset``) both become ``Clip`` objects with
per-head optional labels.

Features: audio → ``MelFrontend(checkpoint frontend config, file rate).process_offline`` → mel
frames [N, n_mels], cached on disk as ``.npy`` (no pickle) under a folder named by the frontend
config's hash, one file per (resolved path, mtime, size). Windows are ``engine.hop_windows`` of
those frames — the exact windows the engine serves — so the cache stores the frames the windows
are views of (half the bytes of the windows themselves for the default preset's 50 % overlap)
and epochs never recompute either.

Per-hop labels: a static label is repeated on every hop; a dynamic emotion label
``(time [s], v, a)`` goes to the hop whose end time ``(k + 1) * hop_s`` is nearest, if within
half a hop; hops of a clip with dynamic labels that no label reaches are masked (no loss), so a
recording's unlabelled start still warms up the LSTM state. Masks are per head and per hop
(per output too, for regression heads): a clip labelled for one head trains only that head.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from streamtag.audiofile import read_audio
from streamtag.engine import hop_windows
from streamtag.frontend import FrontendConfig, MelFrontend
from streamtag.model import ArchConfig, HeadSpec
from streamtag.train.datasets import Clip, assign_splits_by_group, load_dataset

log = logging.getLogger("streamtag.train")

CACHE_VERSION = 1
CORPUS_DATASET = "corpus"


# -- sources --------------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def corpus_clips(corpus_dir: str | Path) -> tuple[list[Clip], list[str]]:
    """Clips of a built-in corpus, and the lines that could not become clips (with why).

    A manifest line becomes a ``Clip`` with dataset ``corpus``, the line's split and group, and
    the labels it carries (instrument, valence/arousal, timbre); the quadrant and cue details
    are derived data, not labels.
    """
    from streamtag.train.corpus import read_manifest  # the corpus package owns its format

    root = Path(corpus_dir).expanduser()
    clips, skipped = [], []
    for row in read_manifest(root / "manifest.jsonl"):
        labels = row.get("labels") or {}
        try:
            clips.append(Clip(
                path=root / row["path"], dataset=CORPUS_DATASET, split=row["split"],
                group=row["group"], instrument=labels.get("instrument"),
                valence=labels.get("valence"), arousal=labels.get("arousal"),
                timbre=labels.get("timbre"),
            ))
        except (ValueError, TypeError) as e:
            skipped.append(f"{row.get('id', row.get('path'))}: {e}")
    return clips, skipped


def source_clips(
    corpus: str | None, datasets: Sequence[object], validation_fraction: float
) -> tuple[list[Clip], dict[str, str]]:
    """Every clip of the configured sources, and a fingerprint of each source.

    datasets: ``DatasetSource``-like objects (kind, root, csv_name). A source with no
    validation clip gets whole groups moved there (``validation_fraction``), so pieces never
    straddle splits. Fingerprints: the corpus manifest's SHA-256, a dataset's label digest.
    """
    clips: list[Clip] = []
    hashes: dict[str, str] = {}
    if corpus is not None:
        got, skipped = corpus_clips(corpus)
        if skipped:
            log.warning("corpus %s: %d manifest line(s) skipped, e.g. %s", corpus,
                        len(skipped), skipped[0])
        clips += _ensure_validation(got, validation_fraction)
        hashes["corpus_manifest_sha256"] = file_sha256(
            Path(corpus).expanduser() / "manifest.jsonl")
    for ds in datasets:
        options = {"csv_name": ds.csv_name} if getattr(ds, "csv_name", None) else {}
        got, report = load_dataset(ds.kind, Path(ds.root).expanduser(), **options)
        if not report.ok:
            log.warning("%s", report.summary(limit=5))
        clips += _ensure_validation(got, validation_fraction)
        hashes[f"{ds.kind}:{ds.root}"] = clips_digest(got)
    return clips, hashes


def _ensure_validation(clips: list[Clip], fraction: float) -> list[Clip]:
    if fraction > 0 and not any(c.split == "validation" for c in clips):
        return assign_splits_by_group(clips, fraction)
    return clips


def clips_digest(clips: Iterable[Clip]) -> str:
    """SHA-256 over each clip's path, split, group and labels (data provenance)."""
    h = hashlib.sha256()
    for c in clips:
        labels = {k: (dict(v) if k == "timbre" else v) for k, v in c.labels.items()}
        h.update(json.dumps([str(c.path), c.split, c.group, labels], sort_keys=True,
                            default=list).encode())
    return h.hexdigest()


# -- per-hop labels -------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeadTarget:
    """How one head reads its labels off a clip.

    spec: the model head. target: which label trains it (emotion, instrument, timbre, tags).
    """

    spec: HeadSpec
    target: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def per_output_mask(self) -> bool:
        return self.spec.kind == "regression"


def encode_labels(
    clip: Clip, head: HeadTarget, n_hops: int, hop_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """(target, mask) of one head for every hop of a clip.

    regression: target [N, K] float32, mask [N, K]. multiclass / embedding (class identity):
    target [N] int64 class index, mask [N]. multilabel: target [N, K] multi-hot, mask [N].
    Masked hops carry 0 in the target, so no NaN or bad index reaches a loss.
    """
    spec, k = head.spec, head.spec.size
    if spec.kind == "regression":
        target = np.zeros((n_hops, k), np.float32)
        mask = np.zeros((n_hops, k), np.float32)
        if head.target == "timbre" and clip.timbre is not None:
            for j, name in enumerate(spec.labels):
                target[:, j] = clip.timbre[name]
                mask[:, j] = 1.0
        elif head.target == "emotion":
            values = {"valence": clip.valence, "arousal": clip.arousal}
            if clip.dynamic is not None:
                for t, v, a in clip.dynamic:
                    hop = round(t / hop_s) - 1
                    if 0 <= hop < n_hops and abs((hop + 1) * hop_s - t) <= hop_s / 2:
                        for j, name in enumerate(spec.labels):
                            target[hop, j] = v if name == "valence" else a
                            mask[hop, j] = 1.0
            else:
                for j, name in enumerate(spec.labels):
                    if values.get(name) is not None:
                        target[:, j] = values[name]
                        mask[:, j] = 1.0
        return target, mask
    if spec.kind in ("multiclass", "embedding"):
        target = np.zeros(n_hops, np.int64)
        mask = np.zeros(n_hops, np.float32)
        if head.target == "instrument" and clip.instrument in spec.labels:
            target[:] = spec.labels.index(clip.instrument)
            mask[:] = 1.0
        return target, mask
    target = np.zeros((n_hops, k), np.float32)
    mask = np.zeros(n_hops, np.float32)
    if head.target == "tags" and clip.tags is not None:
        known = [t for t in clip.tags if t in spec.labels]
        if known:
            for t in known:
                target[:, spec.labels.index(t)] = 1.0
            mask[:] = 1.0
    return target, mask


# -- the feature cache ----------------------------------------------------------------------------

def frontend_digest(config: FrontendConfig) -> str:
    text = json.dumps({"cache": CACHE_VERSION, **asdict(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamtag" / "features"


class FeatureCache:
    """Mel frames of audio files on disk: ``root/<frontend hash>/<file key>.npy``.

    The file key hashes the resolved path, modification time [ns] and size, so an edited file
    is recomputed and a moved one is not confused with another. Writes are atomic (temporary
    file, then rename), so concurrent ranks and interrupted runs never leave half a file.
    """

    def __init__(self, root: str | Path | None, frontend: FrontendConfig) -> None:
        self.frontend = frontend
        self.dir = Path(root).expanduser() if root else default_cache_dir()
        self.dir = self.dir / frontend_digest(frontend)
        self._frontends: dict[int, MelFrontend] = {}

    def path_for(self, audio: Path) -> Path:
        st = audio.stat()
        key = f"{audio.resolve()}|{st.st_mtime_ns}|{st.st_size}"
        return self.dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npy"

    def has(self, audio: Path) -> bool:
        return self.path_for(audio).is_file()

    def compute(self, audio: Path) -> np.ndarray:
        """Mel frames [N, n_mels] float32 of an audio file (frontend run, not cached)."""
        signal, rate = read_audio(audio)
        if rate not in self._frontends:
            self._frontends[rate] = MelFrontend(self.frontend, rate, fast_lane=False)
        return np.ascontiguousarray(self._frontends[rate].process_offline(signal).mel,
                                    dtype=np.float32)

    def mel(self, audio: Path) -> np.ndarray:
        """Mel frames [N, n_mels] of ``audio``, from the cache or computed and stored."""
        target = self.path_for(audio)
        if target.is_file():
            try:
                return np.load(target, allow_pickle=False)
            except (OSError, ValueError) as e:  # a damaged entry is recomputed, not fatal
                log.warning("feature cache: recomputing damaged %s (%s)", target, e)
        mel = self.compute(audio)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, mel, allow_pickle=False)
        os.replace(tmp, target)
        return mel


# -- clips with features --------------------------------------------------------------------------

@dataclass
class ClipFeatures:
    """One recording ready for training or validation.

    windows: [S, n_mels, window_frames] float32, a read-only view of ``mel`` made by
    ``engine.hop_windows`` (what the engine would serve at each hop).
    targets / masks: per head, as ``encode_labels`` makes them.
    """

    clip: Clip
    mel: np.ndarray
    windows: np.ndarray
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_hops(self) -> int:
        return int(self.windows.shape[0])


def silence_frame(frontend: FrontendConfig) -> np.ndarray:
    """The frame the engine pads a recording's first window with [n_mels]."""
    return MelFrontend(frontend, fast_lane=False).silence_frame()


def make_features(
    clip: Clip, mel: np.ndarray, arch: ArchConfig, silence: np.ndarray,
    heads: Sequence[HeadTarget], hop_s: float,
) -> ClipFeatures:
    windows = hop_windows(mel, arch, silence)  # [S, M, W], exactly as the engine serves
    feats = ClipFeatures(clip, mel, windows)
    for h in heads:
        feats.targets[h.name], feats.masks[h.name] = encode_labels(clip, h, feats.n_hops, hop_s)
    return feats


def labelled(feats: ClipFeatures) -> bool:
    """True if any head has at least one labelled hop in this clip."""
    return any(m.any() for m in feats.masks.values())


def load_features(
    clips: Sequence[Clip], cache: FeatureCache, arch: ArchConfig,
    heads: Sequence[HeadTarget], hop_s: float,
    progress: Callable[[Iterable[Clip]], Iterable[Clip]] | None = None,
) -> tuple[list[ClipFeatures], list[str]]:
    """Features of every clip (computing and caching what is missing), and what was skipped.

    Clips shorter than one hop, unreadable, or with no label any head uses are skipped, each
    named in the second return value.
    """
    silence = silence_frame(cache.frontend)
    out, skipped = [], []
    for clip in progress(clips) if progress else clips:
        try:
            mel = cache.mel(Path(clip.path))
        except Exception as e:  # an unreadable file costs that clip, not the run
            skipped.append(f"{clip.path}: {e}")
            continue
        feats = make_features(clip, mel, arch, silence, heads, hop_s)
        if feats.n_hops == 0:
            skipped.append(f"{clip.path}: shorter than one hop ({hop_s:g} s)")
        elif not labelled(feats):
            skipped.append(f"{clip.path}: no label for any head of this model")
        else:
            out.append(feats)
    return out, skipped


def limit_clips(clips: list[Clip], max_clips: int | None, seed: int) -> list[Clip]:
    """At most ``max_clips`` per split, chosen deterministically (order kept)."""
    if max_clips is None:
        return clips
    rng = np.random.default_rng(seed)
    out: list[Clip] = []
    for split in dict.fromkeys(c.split for c in clips):
        members = [c for c in clips if c.split == split]
        if len(members) > max_clips:
            keep = set(rng.choice(len(members), max_clips, replace=False).tolist())
            members = [c for i, c in enumerate(members) if i in keep]
        out += members
    return out



__all__ = [
    "CORPUS_DATASET", "ClipFeatures", "FeatureCache", "HeadTarget", "clips_digest",
    "corpus_clips", "encode_labels", "file_sha256", "limit_clips", "load_features",
    "make_features", "silence_frame", "source_clips",
]
