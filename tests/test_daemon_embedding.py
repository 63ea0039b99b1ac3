"""The daemon with tags, embedding, novelty and a reference library: a real process publishing
what `analyze` computes (oscdump and ZeroMQ receiving), and reloads of the library (a corrupt
one refused, the running one kept)."""

from __future__ import annotations

import signal
from pathlib import Path

import soundfile as sf
from support import (
    Subscriber,
    assert_records_equal,
    base_config,
    run_file_through_daemon,
    start_daemon,
    wait_status,
)
from test_daemon import osc_message, send_udp

from streamtag.checkpoint import load_checkpoint
from streamtag.config import ReferenceConfig
from streamtag.engine import Engine
from streamtag.publish.wire import compact_record
from streamtag.references import ReferenceLibrary, load_library
from streamtag.testing import make_signal


def build_library(ck_path: Path, path: Path, names: list[str]) -> ReferenceLibrary:
    ck = load_checkpoint(ck_path)
    lib = Engine(ck).new_library()
    for i, name in enumerate(names):
        lib.add(name, [Engine(ck).reference_vectors(make_signal(3.0, 22050, seed=10 + i))],
                [f"{name}.wav"])
    lib.save(path)
    return lib


def test_daemon_publishes_tags_embedding_novelty_and_reference(
    tmp_path: Path, tiny_embedding_path: Path
) -> None:
    wav = tmp_path / "take.wav"
    sf.write(wav, make_signal(4.0, 44100, seed=10), 44100)
    lib_path = tmp_path / "refs.safetensors"
    build_library(tiny_embedding_path, lib_path, ["intro", "verse"])
    sub, lines = run_file_through_daemon(
        tmp_path, wav, tiny_embedding_path,
        {"reference": {"library": str(lib_path), "window_s": 1.0}})
    audio, rate = sf.read(wav, dtype="float32")
    expected = Engine(load_checkpoint(tiny_embedding_path), input_rate_hz=rate,
                      reference=ReferenceConfig(window_s=1.0),
                      library=load_library(lib_path)).analyze(audio)
    published = sub.topic("streamtag.estimate")
    assert_records_equal(published, [dict(compact_record(r)) for r in expected])
    # The take begins with the intro's notes (same seed; its chirp and noise differ with the
    # length and rate): its first 2 s are recognised as the intro.
    assert [r["reference"]["name"] for r in published[:4]] == ["intro"] * 4
    tags = sub.topic("streamtag.tags")
    emb = sub.topic("streamtag.embedding")
    assert len(tags) == len(emb) == len(expected)
    assert_records_equal([{"seq": r["seq"], "t": r["t"], "stream": r["stream"],
                           "embedding": r["embedding"]} for r in expected], emb)
    assert set(tags[0]["tags"]) == {"calm", "energetic", "Hip Hop", "sad"}
    meta = sub.topic("streamtag.meta")[-1]
    assert meta["references"] == ["intro", "verse"]
    for address, types in (("/streamtag/tags/Hip_Hop", "f"), ("/streamtag/embedding/xy", "ff"),
                           ("/streamtag/novelty", "f"), ("/streamtag/reference", "sf"),
                           ("/streamtag/reference/known", "i")):
        hits = [ln for ln in lines if f" {address} {types} " in ln]
        assert len(hits) == len(expected), address
    assert any(' /streamtag/reference sf "intro" ' in ln for ln in lines)


def test_reload_rereads_the_library_and_keeps_the_old_one_if_corrupt(
    tmp_path: Path, tiny_embedding_path: Path
) -> None:
    lib_path = tmp_path / "refs.safetensors"
    build_library(tiny_embedding_path, lib_path, ["intro", "verse"])
    cfg, endpoint = base_config(tmp_path)
    cfg["model"] = {"checkpoint": str(tiny_embedding_path)}
    cfg["reference"] = {"library": str(lib_path)}
    cfg["input"] = {"device": "synthetic:noise", "sample_rate_hz": 22050, "realtime": True}
    control = cfg["control"]["port"]
    sub = Subscriber(endpoint)
    proc = start_daemon([], cfg, tmp_path)
    try:
        first = wait_status(sub, lambda s: s["hops"] >= 2, proc, timeout_s=60)
        assert first["references"] == 2
        estimate = sub.topic("streamtag.estimate")[-1]
        assert estimate["reference"]["nearest"] in ("intro", "verse")
        # A corrupt library on SIGHUP: refused, the running one kept, analysis goes on.
        good = lib_path.read_bytes()
        lib_path.write_bytes(good[: len(good) // 3])
        proc.send_signal(signal.SIGHUP)
        refused = wait_status(sub, lambda s: s["reloads_refused"] >= 1, proc)
        assert refused["references"] == 2
        later = wait_status(sub, lambda s: s["hops"] >= refused["hops"] + 2, proc)
        assert later["references"] == 2 and later["reloads"] == 0
        # A good library with a third reference, over the control port: taken.
        build_library(tiny_embedding_path, lib_path, ["intro", "verse", "bridge"])
        send_udp(control, osc_message("/streamtag/control/reload"))
        reloaded = wait_status(sub, lambda s: s["reloads"] >= 1, proc)
        assert reloaded["references"] == 3
        assert sub.topic("streamtag.meta")[-1]["references"] == ["intro", "verse", "bridge"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
    err = proc.stderr.read()
    assert "reload refused" in err and "not a readable reference library" in err


def test_daemon_refuses_to_start_with_a_library_of_another_model(
    tmp_path: Path, tiny_embedding_path: Path, tiny_default_path: Path
) -> None:
    lib_path = tmp_path / "refs.safetensors"
    build_library(tiny_embedding_path, lib_path, ["intro"])
    cfg, _ = base_config(tmp_path)
    cfg["reference"] = {"library": str(lib_path)}
    cfg["input"] = {"device": "synthetic:sine", "sample_rate_hz": 22050}
    proc = start_daemon(["--checkpoint", str(tiny_default_path)], cfg, tmp_path)
    assert proc.wait(60) == 2
    assert "has no embedding head" in proc.stderr.read()


def test_touchdesigner_profile_sends_the_reference_as_its_index_in_the_manifest(
    tmp_path: Path, tiny_embedding_path: Path
) -> None:
    """The daemon tells the OSC layer the loaded library's names: a touchdesigner target gets
    ``/streamtag/reference if`` with each hop's match as its index in the manifest's
    ``references`` (-1 for none), and no string anywhere."""
    wav = tmp_path / "take.wav"
    sf.write(wav, make_signal(4.0, 44100, seed=11), 44100)  # the notes of the second reference
    lib_path = tmp_path / "refs.safetensors"
    build_library(tiny_embedding_path, lib_path, ["intro", "verse"])
    sub, lines = run_file_through_daemon(
        tmp_path, wav, tiny_embedding_path,
        {"reference": {"library": str(lib_path), "window_s": 1.0}}, profile="touchdesigner")
    names = sub.topic("streamtag.meta")[-1]["references"]
    published = sub.topic("streamtag.estimate")
    fields = [ln.split(" ") for ln in lines]
    assert fields and all(set(f[2]) <= {"f", "i"} for f in fields)
    sent = [f[3:] for f in fields if f[1] == "/streamtag/reference"]
    assert names == ["intro", "verse"]
    assert sent[0][0] == "1"  # verse: the take starts with its notes
    expected = [str(names.index(r["reference"]["name"]) if r["reference"]["name"] else -1)
                for r in published]
    assert [f[0] for f in sent] == expected
