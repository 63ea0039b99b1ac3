"""Checkpoint files: safetensors weights plus validated JSON metadata. No pickle, ever.

A checkpoint is one ``.safetensors`` file. Its header's ``__metadata__`` holds one key,
``streamtag``, a JSON document::

    {"format": "streamtag-checkpoint", "version": 1,
     "arch": {...ArchConfig...}, "frontend": {...FrontendConfig...},
     "heads": [{"name", "kind", "labels", "range", "activation"}, ...],
     "normalization": {"kind": "per_band", "n_mels": 64, "n_chroma": 12},
     "weights_sha256": "…", "provenance": {...}, "metrics": {...},
     "embedding": {"projection": {"center": [D], "axes": [[D], [D]], "scale": [2]} | null,
                   "match": {"center": [F], "axes": [[F] × K]} (optional),
                   "known_distance": float | null}}

``embedding`` is optional and only allowed beside a head named ``embedding`` of kind
``embedding`` (D = its size); see :mod:`streamtag.embedding`.

Loading parses the header with safetensors (which never executes code), validates every field
and names what is wrong, rebuilds the model from the metadata, checks the weights' hash and
loads them strictly. If the file name ends in ``-<12 hex digits>.safetensors`` those digits must
be the start of the weights' hash (EnCodec's convention).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from streamtag.embedding import EmbeddingMeta, validate_embedding_meta
from streamtag.errors import CheckpointError
from streamtag.frontend import FrontendConfig
from streamtag.model import HEAD_KINDS, ArchConfig, HeadSpec, StreamTagModel
from streamtag.record import HEAD_EMBEDDING, HEAD_TAGS, check_labels
from streamtag.tensorfile import FileKind, read_tensor_file, write_tensor_file

FORMAT = "streamtag-checkpoint"
VERSION = 1
_CHECKPOINT_FILE = FileKind(CheckpointError, "safetensors checkpoint",
                            unreadable_note="; pickled .pt files are refused on purpose")
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{12})\.safetensors$")


@dataclass
class Checkpoint:
    """A loaded model with everything needed to run it exactly as it was trained."""

    model: StreamTagModel
    frontend: FrontendConfig
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    path: Path | None = None
    #: Projection and known/unknown threshold of the ``embedding`` head (None: not stored).
    embedding: EmbeddingMeta | None = None
    #: ``inference_model``'s arrangement, made on first use.
    _inference: StreamTagModel | None = field(default=None, init=False, repr=False,
                                              compare=False)

    @property
    def id(self) -> str:
        """Short identity of the weights (first 12 hex digits of their SHA-256)."""
        return self.weights_sha256[:12]

    @property
    def heads(self) -> list[HeadSpec]:
        return self.model.heads

    def inference_model(self) -> StreamTagModel:
        """``model.for_inference()``, made once per checkpoint: what the engine runs."""
        if self._inference is None:
            self._inference = self.model.for_inference()
        return self._inference

    @property
    def embedding_head(self) -> HeadSpec | None:
        """The head named ``embedding`` (of kind embedding), or None."""
        return embedding_head(self.model.heads)


def embedding_head(heads: list[HeadSpec]) -> HeadSpec | None:
    """The head named ``embedding`` of kind ``embedding`` among ``heads``, or None."""
    for h in heads:
        if h.name == HEAD_EMBEDDING and h.kind == "embedding":
            return h
    return None


def weights_hash(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of every tensor, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(
    path: str | Path,
    model: StreamTagModel,
    frontend: FrontendConfig,
    provenance: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    embedding: EmbeddingMeta | None = None,
) -> Path:
    """Write ``model`` with its metadata to ``path``. Returns the path written.

    A ``{hash}`` placeholder in the file name is replaced by the weights' 12-digit hash.
    embedding: projection and known-distance threshold of the model's ``embedding`` head
    (the trainer fits them; see :mod:`streamtag.embedding`). Raises ValueError if they do not
    fit the model (no ``embedding`` head, wrong dims, non-finite numbers).
    """
    if model.inference_only:
        raise ValueError("this model is arranged for inference (for_inference): save the "
                         "model it was made from")
    if frontend.n_mels != model.arch.n_mels:
        raise ValueError(f"frontend n_mels {frontend.n_mels} != model n_mels {model.arch.n_mels}")
    if frontend.n_chroma != model.arch.n_chroma:
        raise ValueError(
            f"frontend n_chroma {frontend.n_chroma} != model n_chroma {model.arch.n_chroma}")
    emb_meta = _embedding_dict(model.heads, embedding, model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    digest = weights_hash(state)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        **model_description(model, frontend),
        "normalization": {"kind": "per_band", "n_mels": model.arch.n_mels,
                          "n_chroma": model.arch.n_chroma},
        "weights_sha256": digest,
        "provenance": provenance or {},
        "metrics": metrics or {},
    }
    if emb_meta is not None:
        meta["embedding"] = emb_meta
    path = Path(str(path).replace("{hash}", digest[:12]))
    return write_tensor_file(path, state, meta, "pt")


def model_description(model: StreamTagModel, frontend: FrontendConfig) -> dict[str, Any]:
    """What a checkpoint records of the model it holds: ``arch``, ``frontend`` and ``heads``
    (plain containers; two models with equal descriptions take each other's weights)."""
    return {"arch": model.arch.to_dict(), "frontend": asdict(frontend),
            "heads": [h.to_dict() for h in model.heads]}


def _embedding_dict(heads: list[HeadSpec], embedding: EmbeddingMeta | None,
                    model: StreamTagModel) -> dict | None:
    if embedding is None:
        return None
    d = embedding.to_dict()
    head = embedding_head(heads)
    problems = validate_embedding_meta(d, None if head is None else head.size)
    problems += _meta_fit(embedding, model)
    if problems:
        raise ValueError("embedding metadata does not fit the model: " + "; ".join(problems))
    return d


def update_embedding_meta(path: str | Path, embedding: EmbeddingMeta | None) -> Path:
    """Rewrite a checkpoint's ``embedding`` metadata (projection, known_distance) in place.

    The weights (and so the hash and the checkpoint id) are unchanged; the file is replaced
    atomically. For the trainer, which fits the projection and calibrates the threshold on
    embeddings computed through the engine from the saved checkpoint. None removes the block.
    Raises CheckpointError (unreadable file) or ValueError (metadata does not fit the model).
    """
    path = Path(path)
    meta, state = _read(path, load_tensors=True)
    heads = [HeadSpec.from_dict(h) for h in meta["heads"]]
    # The model the metadata describes, for the widths the maps must fit (no weights needed).
    emb_meta = _embedding_dict(heads, embedding, StreamTagModel(ArchConfig.from_dict(meta["arch"]),
                                                                heads))
    meta.pop("embedding", None)
    if emb_meta is not None:
        meta["embedding"] = emb_meta
    return write_tensor_file(path, state, meta, "pt")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The validated metadata of a checkpoint file, without building the model."""
    meta, _ = _read(Path(path), load_tensors=False)
    return meta


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and validate a checkpoint; raise CheckpointError naming the problem."""
    path = Path(path)
    meta, state = _read(path, load_tensors=True)
    arch = ArchConfig.from_dict(meta["arch"])
    heads = [HeadSpec.from_dict(h) for h in meta["heads"]]
    frontend = FrontendConfig(**meta["frontend"])
    digest = weights_hash(state)
    if digest != meta["weights_sha256"]:
        raise CheckpointError(
            f"{path}: weights do not match their recorded hash (file corrupted or edited)"
        )
    m = _HASH_IN_NAME.search(path.name)
    if m and not digest.startswith(m.group(1)):
        raise CheckpointError(
            f"{path}: file name says hash {m.group(1)} but the weights hash to {digest[:12]}"
        )
    try:
        model = StreamTagModel(arch, heads)
    except (ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: metadata describes an impossible model: {e}") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the architecture in its metadata: "
                              f"{_first_line(e)}") from e
    model.eval()
    emb = meta.get("embedding")
    emb_meta = None if emb is None else EmbeddingMeta.from_dict(emb)
    problems = _meta_fit(emb_meta, model)
    if problems:
        raise CheckpointError(f"{path}: {problems[0]}")
    return Checkpoint(model, frontend, meta.get("provenance", {}), meta.get("metrics", {}),
                      digest, path, emb_meta)


def _meta_fit(meta: EmbeddingMeta | None, model: StreamTagModel) -> list[str]:
    """Problems if the maps in ``meta`` do not take the model's vectors: ``match`` its window
    encodings [encoded_features], ``sound`` their sound part [sound_features]."""
    problems = []
    match = meta.match if meta else None
    if match is not None and match.features != model.encoded_features:
        problems.append(f"embedding.match: made for {match.features}-dim window encodings, the "
                        f"model's are {model.encoded_features}-dim")
    sound = meta.sound if meta else None
    if sound is not None and sound.dims != model.sound_features:
        problems.append(f"embedding.sound: made for {sound.dims}-dim sound vectors, the "
                        f"model's are {model.sound_features}-dim")
    return problems


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return "; ".join(lines[:3])


def _read(path: Path, load_tensors: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    meta, state = read_tensor_file(path, _CHECKPOINT_FILE, "pt", load_tensors)
    problems = validate_metadata(meta)
    if problems:
        raise CheckpointError(f"{path}: invalid metadata: " + "; ".join(problems))
    return meta, state


def validate_metadata(meta: Any) -> list[str]:
    """Every problem with a metadata document (empty list: valid)."""
    if not isinstance(meta, dict):
        return ["metadata: expected a JSON object"]
    problems: list[str] = []
    if meta.get("format") != FORMAT:
        problems.append(f"format: expected {FORMAT!r}, got {meta.get('format')!r}")
    if meta.get("version") != VERSION:
        problems.append(
            f"version: this streamtag reads version {VERSION}, file has {meta.get('version')!r}"
        )
    for key in ("arch", "frontend", "heads", "weights_sha256"):
        if key not in meta:
            problems.append(f"{key}: missing")
    if problems:
        return problems
    arch = None
    try:
        arch = ArchConfig.from_dict(meta["arch"])
        if arch.preset not in ("seed", "default"):
            problems.append(f"arch.preset: unknown preset {arch.preset!r}")
        if arch.window_frames < 1 or arch.hop_frames < 1 or arch.hop_frames > arch.window_frames:
            problems.append(
                f"arch: expected 1 <= hop_frames <= window_frames, got "
                f"{arch.hop_frames}/{arch.window_frames}"
            )
    except (TypeError, KeyError, ValueError) as e:
        problems.append(f"arch: {e}")
    try:
        fe = FrontendConfig(**meta["frontend"])
        if arch is not None and fe.n_mels != arch.n_mels:
            problems.append(f"frontend.n_mels {fe.n_mels} != arch.n_mels {arch.n_mels}")
        if arch is not None and fe.n_chroma != arch.n_chroma:
            problems.append(f"frontend.n_chroma {fe.n_chroma} != arch.n_chroma {arch.n_chroma}")
    except (TypeError, ValueError) as e:
        problems.append(f"frontend: {e}")
    heads = meta["heads"]
    if not isinstance(heads, list) or not heads:
        problems.append("heads: expected a non-empty list")
        return problems
    names = []
    for i, h in enumerate(heads):
        p = f"heads[{i}]"
        if not isinstance(h, dict):
            problems.append(f"{p}: expected an object")
            continue
        names.append(h.get("name"))
        if not isinstance(h.get("name"), str) or not h["name"].isidentifier():
            problems.append(f"{p}.name: expected an identifier, got {h.get('name')!r}")
        if h.get("kind") not in HEAD_KINDS:
            problems.append(f"{p}.kind: expected one of {HEAD_KINDS}, got {h.get('kind')!r}")
        labels = h.get("labels")
        if (not isinstance(labels, list) or not labels
                or not all(isinstance(x, str) and x for x in labels)
                or len(set(labels)) != len(labels)):
            problems.append(f"{p}.labels: expected a non-empty list of distinct strings")
        rng = h.get("range")
        if rng is not None and (not isinstance(rng, list) or len(rng) != 2
                                or not all(isinstance(x, (int, float)) for x in rng)
                                or not rng[0] < rng[1]):
            problems.append(f"{p}.range: expected [low, high] with low < high, got {rng!r}")
        if h.get("activation", "range") not in ("range", "identity"):
            problems.append(f"{p}.activation: expected 'range' or 'identity'")
    if len(set(names)) != len(names):
        problems.append(f"heads: names must be unique, got {names}")
    emb_dims = None
    for i, h in enumerate(heads):
        if not isinstance(h, dict) or not isinstance(h.get("labels"), list):
            continue
        if h.get("name") == HEAD_EMBEDDING and h.get("kind") != "embedding":
            problems.append(f"heads[{i}]: a head named 'embedding' must be of kind 'embedding'")
        elif h.get("name") == HEAD_EMBEDDING:
            emb_dims = len(h["labels"])
        if h.get("name") == HEAD_TAGS:
            if h.get("kind") != "multilabel":
                problems.append(f"heads[{i}]: a head named 'tags' must be of kind 'multilabel'")
            try:
                check_labels([str(x) for x in h["labels"]], f"heads[{i}] (tags)")
            except ValueError as e:
                problems.append(str(e))
    if meta.get("embedding") is not None:
        problems += validate_embedding_meta(meta["embedding"], emb_dims)
    if not isinstance(meta["weights_sha256"], str) or len(meta["weights_sha256"]) != 64:
        problems.append("weights_sha256: expected 64 hex digits")
    return problems


#: Where the trained default model ships inside the package.
BUNDLED_CHECKPOINT = Path(__file__).parent / "assets" / "default.safetensors"


def resolve_checkpoint(path: str | Path | None) -> Checkpoint:
    """Load ``path``, or the bundled default model when None.

    Until the trainer ships a trained default, asking for it is an error that says so plainly:
    we do not bundle random weights as if they were a model.
    """
    if path is not None:
        return load_checkpoint(path)
    if not BUNDLED_CHECKPOINT.exists():
        raise CheckpointError(
            "no trained model is bundled with this version of streamtag yet; pass "
            "--checkpoint FILE (a .safetensors checkpoint made by `streamtag train`)"
        )
    return load_checkpoint(BUNDLED_CHECKPOINT)
