"""The engine with tags and embedding heads: streaming == offline for tags, embedding, xy,
novelty and reference; novelty and reference are fed the right hops (silence skipped); heads
absent from a checkpoint leave their fields absent."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from support import assert_records_equal
from test_engine import stream_records

from streamtag.checkpoint import Checkpoint, load_checkpoint, update_embedding_meta
from streamtag.config import NoveltyConfig, ReferenceConfig
from streamtag.embedding import EmbeddingMeta, SoundScale, novelty_of
from streamtag.engine import Engine, StreamSpec
from streamtag.errors import LibraryError
from streamtag.model import EMOTION_HEAD
from streamtag.record import compact_record
from streamtag.references import ReferenceLibrary
from streamtag.testing import EMBEDDING_HEAD, make_checkpoint, make_signal


def vectors(records: list[dict]) -> np.ndarray:
    return np.array([r["embedding"]["vector"] for r in records])


def library_of(ck: Checkpoint, signals: dict[str, np.ndarray]) -> ReferenceLibrary:
    """A library built as `streamtag reference add` builds it (engine, non-silent hops)."""
    lib = Engine(ck).new_library()
    for name, x in signals.items():
        lib.add(name, [Engine(ck).reference_vectors(x)], [f"{name}.wav"])
    return lib


def sine(seconds: float, f0: float, rate: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def test_record_carries_tags_embedding_and_novelty(tiny_embedding: Checkpoint) -> None:
    rec = Engine(tiny_embedding).analyze(make_signal(2.0, 22050))[-1]
    assert set(rec["tags"]) == {"calm", "energetic", "Hip Hop", "sad"}
    assert all(0 <= p <= 1 for p in rec["tags"].values())
    assert list(rec["embedding"]) == ["xy", "vector"]
    assert len(rec["embedding"]["xy"]) == 2 and all(-1 <= v <= 1
                                                    for v in rec["embedding"]["xy"])
    assert np.linalg.norm(rec["embedding"]["vector"]) == pytest.approx(1.0, abs=1e-5)
    assert 0 <= rec["novelty"] <= 1
    assert "reference" not in rec  # no library
    json.dumps(rec, allow_nan=False)


@pytest.mark.parametrize("sizes", [[1], [333, 4096], [10**9]], ids=["1", "odd-mix", "whole"])
def test_streaming_equals_offline_with_novelty_and_reference(tiny_embedding: Checkpoint,
                                                             sizes: list[int]) -> None:
    a, b = make_signal(4.0, 22050, seed=1), make_signal(4.0, 22050, seed=2)
    lib = library_of(tiny_embedding, {"a": a, "b": b})
    # A pause in the middle: silent hops are skipped by novelty and the reference query.
    x = np.concatenate([b[:22050 * 2], np.zeros(22050, np.float32), a])
    if sizes == [1]:
        x = x[: 22050 * 4]
    engine = Engine(tiny_embedding, novelty=NoveltyConfig(memory_s=3.0, recent_s=1.0),
                    reference=ReferenceConfig(window_s=1.0), library=lib)
    offline = engine.analyze(x)
    assert all("reference" in r and "novelty" in r for r in offline)
    assert_records_equal(stream_records(engine, x, sizes), offline)
    # Rerun after reset equals the first run (history cleared).
    engine.reset()
    assert_records_equal(stream_records(engine, x, [4096]), offline)


@pytest.mark.parametrize("scaled", [False, True])
def test_engine_feeds_novelty_the_non_silent_hops(tiny_embedding: Checkpoint, tmp_path: Path,
                                                  scaled: bool) -> None:
    """Novelty compares the sound vectors (the CNN's window summary, before the LSTM) of the
    non-silent hops, standardised by the checkpoint's sound scale if it has one: recomputed here
    from what ``encode_sound`` returned for the file's hops (one chunk; the fresh-start rule at
    changes off, so no hop is reframed)."""
    recent, memory = 2, 6  # hops (1 s and 3 s)
    x = np.concatenate([make_signal(3.0, 22050, seed=3), np.zeros(22050, np.float32),
                        sine(4.0, 330.0)])
    ck, scale = tiny_embedding, None
    if scaled:
        rng = np.random.default_rng(0)
        d = ck.model.sound_features
        scale = SoundScale(rng.normal(size=d), rng.uniform(0.1, 2.0, d))
        path = tmp_path / "scaled.safetensors"
        shutil.copy(ck.path, path)
        update_embedding_meta(path, replace(ck.embedding or EmbeddingMeta(), sound=scale))
        ck = load_checkpoint(path)
        assert ck.embedding is not None and ck.embedding.sound is not None
        np.testing.assert_allclose(ck.embedding.sound.scale, scale.scale, rtol=1e-6)
    engine = Engine(ck, novelty=NoveltyConfig(memory_s=3.0, recent_s=1.0, restart=None))
    model = engine.model
    encoded: list[np.ndarray] = []
    encode = model.encode_sound

    def spy(windows: torch.Tensor) -> torch.Tensor:
        y = encode(windows)
        encoded.append(y.numpy().copy())
        return y

    model.encode_sound = spy  # type: ignore[method-assign]
    try:
        recs = engine.analyze(x)
    finally:
        del model.encode_sound
    sound = np.concatenate(encoded)
    assert sound.shape == (len(recs), model.sound_features) and model.sound_features > 0
    if scale is not None:
        sound = (sound - scale.center) / scale.scale
    silent = [r["silent"] for r in recs]
    assert silent[6:8] == [True, True] and sum(silent) == 2
    sounding = sound[~np.asarray(silent)]
    baseline = 6  # hops of the default baseline_s (3 s): their median distance is taken off
    k = 0
    distances: list[float] = []  # of the hops whose memory was full
    for r in recs:
        if r["silent"]:
            assert r["novelty"] == 0.0
            continue
        k += 1  # hops heard so far, this one included
        expected = 0.0
        if k >= 2 * recent:
            d = novelty_of(sounding[k - recent:k],
                           sounding[max(0, k - recent - memory):k - recent])
            usual = float(np.median(distances[-baseline:])) if distances else 0.0
            distances.append(d)
            expected = max(0.0, d - usual)
        assert r["novelty"] == pytest.approx(expected, abs=1e-5), r["seq"]
    assert max(r["novelty"] for r in recs) > 0.0
    # Not the embedding's novelty: the two differ where the music changes.
    emb = vectors([r for r in recs if not r["silent"]])
    assert any(abs(novelty_of(emb[j - recent:j], emb[max(0, j - recent - memory):j - recent])
                   - novelty_of(sounding[j - recent:j],
                                sounding[max(0, j - recent - memory):j - recent])) > 1e-3
               for j in range(2 * recent, len(sounding)))


def test_reference_query_is_the_last_window_of_hops(tiny_embedding: Checkpoint) -> None:
    a = make_signal(4.0, 22050, seed=1)
    lib = library_of(tiny_embedding, {"a": a, "tone": sine(4.0, 220.0)})
    engine = Engine(tiny_embedding, reference=ReferenceConfig(window_s=1.5), library=lib)
    recs, v = engine.analyze_with_matches(a)
    assert len(v) == len(recs) and not any(r["silent"] for r in recs)
    # Playing the reference itself: it is the nearest, at distance ~0 once the window is full.
    assert all(r["reference"]["nearest"] == "a" for r in recs[3:])
    assert all(r["reference"]["distance"] < 1e-3 and r["reference"]["known"]
               and r["reference"]["name"] == "a" for r in recs[3:])
    # Each hop's answer is the matcher's answer for the sequence of the last 3 match vectors.
    for k, r in enumerate(recs):
        expected = engine.matcher.match(v[max(0, k - 2):k + 1])
        assert r["reference"]["nearest"] == expected["nearest"]
        assert r["reference"]["distance"] == pytest.approx(expected["distance"], abs=1e-3)


def test_unknown_music_is_not_forced_onto_the_nearest_name(tiny_embedding: Checkpoint) -> None:
    lib = library_of(tiny_embedding, {"a": make_signal(4.0, 22050, seed=1)})
    tone = sine(4.0, 1000.0)
    far = Engine(tiny_embedding, library=lib).analyze(tone)[-1]["reference"]
    assert far["nearest"] == "a" and far["distance"] > 0
    # Threshold below the distance (config overrides the checkpoint): unknown, no name.
    below = ReferenceConfig(known_distance=far["distance"] * 0.9)
    ref = Engine(tiny_embedding, reference=below, library=lib).analyze(tone)[-1]["reference"]
    assert ref == {"name": None, "nearest": "a", "distance": far["distance"], "known": False}
    above = ReferenceConfig(known_distance=far["distance"] * 1.1)
    ref = Engine(tiny_embedding, reference=above, library=lib).analyze(tone)[-1]["reference"]
    assert ref["name"] == "a" and ref["known"]


def test_before_any_sound_the_reference_is_null(tiny_embedding: Checkpoint) -> None:
    lib = library_of(tiny_embedding, {"a": make_signal(2.0, 22050)})
    recs = Engine(tiny_embedding, library=lib).analyze(np.zeros(22050, np.float32))
    assert all(r["reference"] == {"name": None, "nearest": None, "distance": None,
                                  "known": False} for r in recs)


def test_streams_have_their_own_history(tiny_embedding: Checkpoint) -> None:
    a, b = make_signal(3.0, 22050, seed=1), sine(3.0, 440.0)
    both = Engine(tiny_embedding, streams=[StreamSpec("l", (0,)), StreamSpec("r", (1,))])
    recs = both.analyze(np.stack([a, b], axis=1))
    left = [{**r, "stream": "main"} for r in recs if r["stream"] == "l"]
    assert_records_equal(left, Engine(tiny_embedding).analyze(a))


def test_library_checks(tiny_embedding: Checkpoint, tmp_path: Path) -> None:
    other = load_checkpoint(make_checkpoint(tmp_path / "o.safetensors",
                                            heads=[EMOTION_HEAD, EMBEDDING_HEAD], seed=5))
    lib = library_of(other, {"a": make_signal(2.0, 22050)})
    with pytest.raises(LibraryError, match=f"made with checkpoint {other.id}, but the loaded "
                                           f"checkpoint is {tiny_embedding.id}"):
        Engine(tiny_embedding, library=lib)
    # No threshold anywhere: refused, saying where to set one.
    with pytest.raises(LibraryError, match=r"set reference\.known_distance"):
        Engine(other, library=lib)
    no_emb = load_checkpoint(make_checkpoint(tmp_path / "n.safetensors", heads=[EMOTION_HEAD]))
    with pytest.raises(LibraryError, match="no embedding head"):
        Engine(no_emb, library=lib)


def test_without_a_projection_xy_is_absent(tmp_path: Path) -> None:
    ck = load_checkpoint(make_checkpoint(tmp_path / "np.safetensors",
                                         heads=[EMOTION_HEAD, EMBEDDING_HEAD]))
    rec = Engine(ck).analyze(make_signal(1.0, 22050))[0]
    assert list(rec["embedding"]) == ["vector"] and "novelty" in rec


def test_checkpoint_without_the_new_heads_has_none_of_the_new_fields(
        tiny_default: Checkpoint) -> None:
    rec = Engine(tiny_default).analyze(make_signal(1.0, 22050))[0]
    assert not {"tags", "embedding", "novelty", "reference"} & set(rec)


def test_golden_records_with_tags_embedding_novelty_and_reference(data_dir: Path) -> None:
    """A fixed tiny checkpoint and library on a fixed signal give the recorded records."""
    import soundfile as sf

    from streamtag.references import load_library

    x, _ = sf.read(data_dir / "signal.wav", dtype="float32")
    ck = load_checkpoint(data_dir / "tiny-embedding.safetensors")
    lib = load_library(data_dir / "tiny-embedding-references.safetensors")
    # The windows the golden records were made with (pinned: the defaults are tunable).
    records = Engine(ck, novelty=NoveltyConfig(memory_s=30.0, recent_s=1.0, baseline_s=0.0,
                                               restart=None),
                     reference=ReferenceConfig(window_s=1.0), library=lib).analyze(x)
    golden = [json.loads(line) for line in (data_dir / "golden_records_embedding.jsonl").open()]
    assert_records_equal(records, golden)


def test_history_state_is_real_without_reset(tiny_embedding: Checkpoint) -> None:
    """Without reset the embedding history carries on (novelty compares with the old audio);
    after reset the first hops report 0 again."""
    x = make_signal(3.0, 22050, seed=4)
    engine = Engine(tiny_embedding, novelty=NoveltyConfig(memory_s=2.0, recent_s=0.5))
    first = stream_records(engine, x, [4096])
    continued = stream_records(engine, sine(3.0, 660.0), [4096])
    assert first[0]["novelty"] == 0.0 and continued[0]["novelty"] > 0.0
    engine.reset()
    assert stream_records(engine, x, [4096])[0]["novelty"] == 0.0


@pytest.mark.parametrize("projection", [True, False], ids=["xy", "no-projection"])
def test_records_without_vectors_equal_the_compact_records(tiny_embedding: Checkpoint,
                                                           tmp_path: Path,
                                                           projection: bool) -> None:
    """``analyze_blocks(..., vectors=False)`` (what `analyze` writes without --vectors) makes
    the records ``compact_record`` makes of the full ones, key order included."""
    ck = tiny_embedding if projection else load_checkpoint(make_checkpoint(
        tmp_path / "np.safetensors", heads=[EMOTION_HEAD, EMBEDDING_HEAD]))
    x = make_signal(2.0, 22050)
    engine = Engine(ck)
    full = [r for chunk in engine.analyze_blocks([x]) for r in chunk]
    small = [r for chunk in engine.analyze_blocks([x], vectors=False) for r in chunk]
    compact = [dict(compact_record(r)) for r in full]
    strip = ("wall", "latency_ms")
    assert [[(k, v) for k, v in r.items() if k not in strip] for r in small] == \
        [[(k, v) for k, v in r.items() if k not in strip] for r in compact]
    assert all("vector" not in r.get("embedding", {}) for r in small)
