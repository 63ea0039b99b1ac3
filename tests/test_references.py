"""The reference library: file round trip, every broken file refused clearly, matching on
synthetic embeddings, and the `streamtag reference` commands end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors.numpy import save_file

from streamtag.cli import main
from streamtag.errors import LibraryError
from streamtag.model import EMOTION_HEAD
from streamtag.references import (
    ReferenceLibrary,
    ReferenceMatcher,
    SequenceIndex,
    load_library,
)
from streamtag.testing import EMBEDDING_HEAD, make_checkpoint, make_signal

SHA = "ab" * 32


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def small_library(path: Path | None = None) -> ReferenceLibrary:
    rng = np.random.default_rng(0)
    lib = ReferenceLibrary(SHA, 4, 0.5)
    lib.add("intro", [unit(rng.standard_normal((6, 4))), unit(rng.standard_normal((3, 4)))],
            ["intro.wav", "intro2.wav"])
    lib.add("chorus", [unit(rng.standard_normal((5, 4)))], ["chorus.wav"])
    if path is not None:
        lib.save(path)
    return lib


def test_library_round_trip(tmp_path: Path) -> None:
    lib = small_library(tmp_path / "lib.safetensors")
    back = load_library(tmp_path / "lib.safetensors")
    assert back.names == ["intro", "chorus"] and back.checkpoint_sha256 == SHA
    assert back.references["intro"].segments == [6, 3]
    assert back.references["intro"].files == ["intro.wav", "intro2.wav"]
    np.testing.assert_array_equal(back.references["chorus"].match_vectors,
                                  lib.references["chorus"].match_vectors)
    back.add("intro", [np.ones((2, 4), np.float32) / 2], ["again.wav"])  # appends
    assert back.references["intro"].segments == [6, 3, 2]
    back.remove("chorus")
    back.save()
    assert load_library(tmp_path / "lib.safetensors").names == ["intro"]
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file is gone
    with pytest.raises(LibraryError, match="no reference named 'verse'"):
        back.remove("verse")


@pytest.mark.parametrize("name", ["", " intro", "a\nb", "x" * 65])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(LibraryError, match="reference name"):
        small_library().add(name, [np.ones((1, 4))], ["f.wav"])


def _write(path: Path, tensors: dict, meta: object) -> None:
    save_file(tensors, str(path), metadata={"streamtag": json.dumps(meta)})


def _meta(**over: object) -> dict:
    m = {"format": "streamtag-references", "version": 2, "checkpoint_sha256": SHA, "dims": 4,
         "hop_s": 0.5, "match": "full", "references": [{"name": "a", "tensor": "r0", "hops": 2,
                                       "segments": [2], "files": ["a.wav"]}]}
    m.update(over)
    return m


GOOD = {"r0": np.ones((2, 4), np.float32)}


@pytest.mark.parametrize("tensors,meta,message", [
    (GOOD, _meta(format="other"), "format: expected 'streamtag-references'"),
    (GOOD, _meta(version=9), "reads version 2, file has 9"),
    (GOOD, _meta(version=1), "version 1: made by an older streamtag .* add the references again"),
    (GOOD, _meta(match="pca"), "match: expected 'full' or 12 hex digits, got 'pca'"),
    (GOOD, _meta(checkpoint_sha256="abc"), "checkpoint_sha256: expected 64 hex digits"),
    ({"r0": np.ones((2, 3), np.float32)}, _meta(), r"shape \[2, 3\] float32, expected \[hops, 4\]"),
    ({"r0": np.full((2, 4), np.nan, np.float32)}, _meta(), "NaN or infinite"),
    ({"r0": np.ones((2, 4), np.float64)}, _meta(), "float64"),
    ({}, _meta(), "no tensor 'r0'"),
    ({**GOOD, "r9": np.ones((1, 4), np.float32)}, _meta(), "not described in the metadata: r9"),
    (GOOD, _meta(references=[{"name": "a", "tensor": "r0", "hops": 2, "segments": [1],
                              "files": ["a.wav"]}]), "segments: expected positive hop counts"),
    (GOOD, _meta(references="x"), "references: expected a list"),
])
def test_broken_library_files_are_refused_naming_the_problem(tmp_path: Path, tensors, meta,
                                                             message: str) -> None:
    path = tmp_path / "lib.safetensors"
    _write(path, tensors, meta)
    with pytest.raises(LibraryError, match=message):
        load_library(path)


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="not found"):
        load_library(tmp_path / "none.safetensors")
    path = small_library(tmp_path / "lib.safetensors").path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LibraryError, match="truncated, corrupt or another format"):
        load_library(path)
    path.write_bytes(b"\x80\x04pickle")
    with pytest.raises(LibraryError, match="not a readable reference library"):
        load_library(path)
    save_file({"x": np.ones(1, np.float32)}, str(path))
    with pytest.raises(LibraryError, match="without streamtag metadata"):
        load_library(path)


def test_sequence_index_slides_the_query_within_each_file() -> None:
    lib = small_library()
    intro = lib.references["intro"].match_vectors.astype(np.float64)
    chorus = lib.references["chorus"].match_vectors.astype(np.float64)
    index = SequenceIndex([[intro[:6], intro[6:]], [chorus]], 4)
    # The intro's hops 2..4 played again: distance 0 to the intro, not to the chorus.
    d = index.distances(intro[2:5])
    assert d[0] == pytest.approx(0.0, abs=1e-3) and d[1] > 0.3  # float32 storage, √ of ~1e-8
    # The same hops in another order are no longer a perfect match: order counts.
    assert index.distances(intro[[4, 2, 3]])[0] > 0.1
    # Hops 5 (end of the first file) and 6 (start of the second) never meet as one run.
    joined = index.distances(intro[5:7])[0]
    best_inside = min(
        np.sqrt(max(0.0, 2 - 2 * float(np.mean(np.sum(intro[5:7] * w, axis=1)))))
        for w in (intro[j:j + 2] for j in (0, 1, 2, 3, 4, 6, 7)))
    assert joined == pytest.approx(best_inside, abs=1e-6)  # float32 products
    # A file shorter than the query meets the query's last hops: the 3-hop file inside a
    # 5-hop query that ends with it.
    q = np.concatenate([chorus[:2], intro[6:9]])
    assert index.distances(q)[0] == pytest.approx(0.0, abs=1e-3)
    # One hop: the Euclidean distance of unit vectors, to the nearest hop.
    one = unit(np.array([[1.0, 0.0, 0.0, 0.0]]))
    expect = min(np.linalg.norm(one[0] - h) for h in intro)
    assert index.distances(one)[0] == pytest.approx(expect, abs=1e-6)
    # At most max_hops of an owner take part.
    short = SequenceIndex([[intro[:6]]], 4, max_hops=2)
    assert short.distances(intro[4:6])[0] > 0.1


def test_matcher_picks_the_nearest_and_says_unknown_beyond_the_threshold() -> None:
    lib = ReferenceLibrary(SHA, 3, 0.5)
    lib.add("x", [np.tile([1.0, 0.0, 0.0], (4, 1))], ["x.wav"])
    lib.add("y", [np.tile([0.0, 1.0, 0.0], (4, 1))], ["y.wav"])
    m = ReferenceMatcher(lib, window_hops=2, known_distance=0.5)
    near_y = unit(np.array([[0.1, 1.0, 0.0], [0.0, 1.0, 0.1]]))
    assert m.match(near_y) == {"name": "y", "nearest": "y",
                               "distance": pytest.approx(np.linalg.norm(near_y[0] - [0, 1, 0]),
                                                         abs=1e-6),
                               "known": True}
    far = m.match(np.array([[0.0, 0.0, 1.0]]))  # orthogonal to both: √2 away
    assert far["name"] is None and far["nearest"] in ("x", "y") and not far["known"]
    assert far["distance"] == pytest.approx(np.sqrt(2), abs=1e-5)  # 6 significant digits
    # Only the last window_hops of a longer query count.
    longer = np.concatenate([np.tile([[1.0, 0.0, 0.0]], (3, 1)), near_y])
    assert m.match(longer)["nearest"] == "y"
    empty = ReferenceMatcher(ReferenceLibrary(SHA, 3, 0.5), 2, 0.5)
    assert empty.match(near_y)["nearest"] is None


# -- the CLI -----------------------------------------------------------------------------------
def run_cli(*args: str) -> tuple[int, str, str]:
    """The real command in its own process (exit code and streams as a user sees them)."""
    proc = subprocess.run([sys.executable, "-m", "streamtag.cli", *args], capture_output=True,
                          text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``streamtag.cli.main`` in this process: faster; an uncaught exception fails the test."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_reference_commands_round_trip(tmp_path: Path, tiny_embedding_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    intro, verse = tmp_path / "intro.wav", tmp_path / "verse.wav"
    sf.write(intro, make_signal(3.0, 44100, seed=1), 44100)
    sf.write(verse, make_signal(2.0, 22050, seed=2), 22050)
    lib = tmp_path / "refs" / "lib.safetensors"
    ck = str(tiny_embedding_path)
    assert main(["reference", "add", "intro", str(intro), "--library", str(lib),
                 "--checkpoint", ck]) == 0
    assert "intro: 6 hops (3.0 s of sound) from 1 file(s)" in capsys.readouterr().out
    assert main(["reference", "add", "verse", str(verse), "--library", str(lib),
                 "--checkpoint", ck]) == 0
    assert main(["reference", "list", "--library", str(lib)]) == 0
    out = capsys.readouterr().out
    assert "2 reference(s)" in out and "intro\t3.0 s" in out and "verse\t2.0 s" in out
    assert main(["reference", "remove", "verse", "--library", str(lib)]) == 0
    assert load_library(lib).names == ["intro"]
    # analyze with the library given by config: the intro is recognised in itself.
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"reference: {{library: {lib}, window_s: 1.0}}\n")
    out_file = tmp_path / "out.jsonl"
    assert main(["analyze", str(intro), "--checkpoint", ck, "--config", str(cfg),
                 "--out", str(out_file)]) == 0
    recs = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [r["reference"]["name"] for r in recs[2:]] == ["intro"] * 4
    assert "vector" not in recs[0]["embedding"]  # compact record by default
    assert main(["analyze", str(intro), "--checkpoint", ck, "--vectors",
                 "--out", str(out_file)]) == 0
    rec = json.loads(out_file.read_text().splitlines()[0])
    assert len(rec["embedding"]["vector"]) == 8 and "reference" not in rec


def test_reference_cli_refusals(tmp_path: Path, tiny_embedding_path: Path,
                                tiny_default_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, make_signal(1.0, 22050), 22050)
    lib = tmp_path / "lib.safetensors"
    # A checkpoint without an embedding head.
    code, _, err = in_process(capsys, "reference", "add", "a", str(wav), "--library", str(lib),
                              "--checkpoint", str(tiny_default_path))
    assert code == 2 and "has no embedding head" in err
    # A library made with another model: refused naming both ids.
    other = make_checkpoint(tmp_path / "o.safetensors", heads=[EMOTION_HEAD, EMBEDDING_HEAD],
                            seed=7)
    assert main(["reference", "add", "a", str(wav), "--library", str(lib),
                 "--checkpoint", str(other)]) == 0
    code, _, err = in_process(capsys, "reference", "add", "b", str(wav), "--library", str(lib),
                              "--checkpoint", str(tiny_embedding_path))
    assert code == 2 and "made with checkpoint" in err and "loaded checkpoint is" in err
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"reference: {{library: {lib}}}\n")
    code, _, err = in_process(capsys, "analyze", str(wav), "--checkpoint",
                              str(tiny_embedding_path), "--config", str(cfg))
    assert code == 2 and "made with checkpoint" in err
    # A corrupt library file: a clear message, exit 2, nothing else printed.
    lib.write_bytes(b"garbage" * 10)
    code, out, err = run_cli("reference", "list", "--library", str(lib))
    assert code == 2 and "not a readable reference library" in err and "Traceback" not in err
    for args in (["remove", "a"], ["add", "a", str(wav), "--checkpoint",
                                   str(tiny_embedding_path)]):
        code, out, err = in_process(capsys, "reference", *args, "--library", str(lib))
        assert code == 2 and "not a readable reference library" in err, args
    code, out, err = in_process(capsys, "reference", "list", "--library",
                                str(tmp_path / "none"))
    assert code == 0 and "does not exist" in out
    code, _, err = in_process(capsys, "reference", "add", " bad", str(wav), "--library",
                              str(lib))
    assert code == 2 and "reference name" in err


def test_a_library_is_used_only_with_the_match_map_that_made_it(tmp_path: Path) -> None:
    small_library(tmp_path / "lib.safetensors")
    loaded = load_library(tmp_path / "lib.safetensors")
    assert loaded.match == "full"
    loaded.check_checkpoint(SHA, "full")
    with pytest.raises(LibraryError, match=r"made with match vectors 'full'.* now makes "
                                           r"'0123456789ab'.* rebuild the library"):
        loaded.check_checkpoint(SHA, "0123456789ab")
