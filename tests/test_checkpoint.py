"""Checkpoints: round trip, and every wrong file refused with a message naming the problem."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from streamtag.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from streamtag.errors import CheckpointError
from streamtag.frontend import DEFAULT_FRONTEND, SEED_FRONTEND
from streamtag.model import EMOTION_HEAD, build_model
from streamtag.testing import make_checkpoint


def test_round_trip_keeps_weights_and_metadata(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("default", [EMOTION_HEAD]).eval()
    path = save_checkpoint(tmp_path / "m-{hash}.safetensors", model, DEFAULT_FRONTEND,
                           provenance={"corpus": "x"}, metrics={"r": 0.5})
    ck = load_checkpoint(path)
    assert path.name == f"m-{ck.id}.safetensors"
    assert ck.frontend == DEFAULT_FRONTEND
    assert ck.provenance == {"corpus": "x"} and ck.metrics == {"r": 0.5}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ck.model.state_dict()[k], v)
    assert read_metadata(path)["heads"][0]["labels"] == ["valence", "arousal"]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "a.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt or another format"):
        load_checkpoint(path)


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.safetensors"
    path.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(path)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what a malicious pickle does on load
        return (Path.write_text, (self.marker, "pwned"))


def test_a_pickle_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(CheckpointError, match=r"pickled \.pt files are refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_tampered_weights_fail_the_hash(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "a.safetensors")
    ck = load_checkpoint(path)
    meta = read_metadata(path)
    state = {k: v.clone().contiguous() for k, v in ck.model.state_dict().items()}
    state["lstm.bias_hh_l0"] += 1.0
    save_file(state, str(path), metadata={"streamtag": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="do not match their recorded hash"):
        load_checkpoint(path)


def test_hash_in_name_is_checked(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "m-{hash}.safetensors")
    wrong = path.with_name("m-000000000000.safetensors")
    path.rename(wrong)
    with pytest.raises(CheckpointError, match="file name says hash 000000000000"):
        load_checkpoint(wrong)


def _rewrite_meta(path: Path, edit) -> None:
    ck = load_checkpoint(path)
    meta = read_metadata(path)
    edit(meta)
    save_file({k: v.contiguous() for k, v in ck.model.state_dict().items()}, str(path),
              metadata={"streamtag": json.dumps(meta)})


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(format="other"), "format: expected 'streamtag-checkpoint'"),
    (lambda m: m.update(version=99), "version: this streamtag reads version 1"),
    (lambda m: m.pop("heads"), "heads: missing"),
    (lambda m: m["heads"][0].update(kind="mystery"), r"heads\[0\].kind"),
    (lambda m: m["heads"][0].update(labels=[]), r"heads\[0\].labels"),
    (lambda m: m["heads"][0].update(range=[1, -1]), r"heads\[0\].range"),
    (lambda m: m["frontend"].update(win_length=99999), "frontend: win_length"),
    (lambda m: m["frontend"].update(n_mels=32), "frontend.n_mels 32 != arch.n_mels 64"),
    (lambda m: m["frontend"].update(n_chroma=0), "frontend.n_chroma 0 != arch.n_chroma 12"),
    (lambda m: m["frontend"].update(n_chroma=7), "n_chroma: expected 0 or 12"),
    (lambda m: m["arch"].update(hop_frames=0), "hop_frames"),
    (lambda m: m["arch"].update(bogus=1), "arch:"),
])
def test_invalid_metadata_is_named(tmp_path: Path, edit, match: str) -> None:
    path = make_checkpoint(tmp_path / "a.safetensors")
    _rewrite_meta(path, edit)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_metadata_that_does_not_fit_the_weights_is_refused(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "a.safetensors")
    _rewrite_meta(path, lambda m: m["arch"].update(lstm_hidden=32))
    with pytest.raises(CheckpointError, match="weights do not fit the architecture"):
        load_checkpoint(path)


def test_safetensors_without_our_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="without streamtag metadata"):
        load_checkpoint(path)


def test_frontend_and_model_must_agree_on_save(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_mels"):
        save_checkpoint(tmp_path / "x.safetensors", build_model("default", [EMOTION_HEAD]),
                        SEED_FRONTEND)
