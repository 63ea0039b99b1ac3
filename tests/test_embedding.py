"""Embedding runtime parts: the fixed projection, its checkpoint metadata (strictly validated),
and novelty on synthetic embedding sequences with a known splice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from streamtag.checkpoint import load_checkpoint, save_checkpoint, update_embedding_meta
from streamtag.embedding import (
    PITCH_MATCH_WEIGHT,
    EmbeddingMeta,
    HopHistory,
    MatchProjection,
    NoveltyMeter,
    Projection,
    fit_projection,
    fit_sound_scale,
    match_vectors,
    novelty_of,
    validate_embedding_meta,
)
from streamtag.errors import CheckpointError
from streamtag.frontend import DEFAULT_FRONTEND
from streamtag.model import EMOTION_HEAD, HeadSpec, build_model
from streamtag.testing import EMBEDDING_HEAD, TAGS_HEAD, make_checkpoint


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# -- projection ------------------------------------------------------------------------------
def test_projection_finds_the_main_axes_with_a_fixed_sign_and_scale() -> None:
    rng = np.random.default_rng(0)
    # Spread 3 along d2, 1 along d0, 0.1 elsewhere, around a centre.
    x = rng.standard_normal((2000, 5)) * [1.0, 0.1, 3.0, 0.1, 0.1] + [0.5, 0, 0, 0, -1]
    p = fit_projection(x)
    assert np.abs(p.axes[0]) == pytest.approx([0, 0, 1, 0, 0], abs=0.02)
    assert np.abs(p.axes[1]) == pytest.approx([1, 0, 0, 0, 0], abs=0.02)
    # Sign convention: the largest-magnitude component of each axis is positive.
    assert p.axes[0, 2] > 0 and p.axes[1, 0] > 0
    assert p.scale == pytest.approx([6.0, 2.0], rel=0.05)  # 2·std of each component
    xy = p.project(x)
    assert xy.shape == (2000, 2) and np.abs(xy).max() <= 1.0
    inside = (np.abs(xy) < 1).all(axis=1).mean()
    assert 0.85 < inside < 0.95  # ≈ 95 % per axis for Gaussian data, so ~90 % for both
    # Flipping the data's sign does not flip the map: deterministic, refit gives the same.
    q = fit_projection(-x + 2 * x.mean(axis=0))
    np.testing.assert_allclose(q.axes, p.axes, atol=1e-9)
    np.testing.assert_allclose(fit_projection(x).axes, p.axes)
    assert p.project(x[0]).shape == (2,)


@pytest.mark.parametrize("bad", [np.zeros((1, 4)), np.zeros((5, 1)), np.zeros(4),
                                 np.full((3, 4), np.nan)])
def test_fit_projection_refuses_unusable_input(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="fit_projection"):
        fit_projection(bad)


def test_a_flat_component_is_not_blown_up() -> None:
    x = np.zeros((10, 3))
    x[:, 0] = np.arange(10)
    p = fit_projection(x)
    assert p.scale[1] == 1.0 and np.isfinite(p.project(x)).all()


# -- checkpoint metadata -------------------------------------------------------------------
def test_embedding_metadata_round_trips_through_the_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("default", [EMOTION_HEAD, EMBEDDING_HEAD], channels=[4, 8, 8, 8],
                        lstm_hidden=16, neck=[16]).eval()
    proj = fit_projection(np.random.default_rng(1).standard_normal((50, 8)))
    path = save_checkpoint(tmp_path / "m-{hash}.safetensors", model, DEFAULT_FRONTEND,
                           embedding=EmbeddingMeta(proj, 0.4))
    ck = load_checkpoint(path)
    assert ck.embedding is not None and ck.embedding.known_distance == 0.4
    np.testing.assert_allclose(ck.embedding.projection.axes, proj.axes)
    np.testing.assert_allclose(ck.embedding.projection.center, proj.center)
    np.testing.assert_allclose(ck.embedding.projection.scale, proj.scale)
    # The trainer's route: rewrite the metadata of a saved checkpoint; weights and id unchanged.
    update_embedding_meta(path, EmbeddingMeta(None, 0.7))
    again = load_checkpoint(path)
    assert again.id == ck.id and again.embedding == EmbeddingMeta(None, 0.7)
    update_embedding_meta(path, None)
    assert load_checkpoint(path).embedding is None


def test_embedding_head_outputs_are_unit_vectors(tiny_embedding) -> None:
    windows = torch.randn(3, 76, 50) * 4 - 4
    out, _ = tiny_embedding.model.step(windows)
    torch.testing.assert_close(out["embedding"].norm(dim=-1), torch.ones(3))


def test_save_refuses_metadata_that_does_not_fit_the_model(tmp_path: Path) -> None:
    model = build_model("default", [EMOTION_HEAD, EMBEDDING_HEAD], channels=[4, 8, 8, 8],
                        lstm_hidden=16, neck=[16])
    wrong = Projection(np.zeros(5), np.zeros((2, 5)), np.ones(2))
    with pytest.raises(ValueError, match=r"center: expected finite numbers of shape \[8\]"):
        save_checkpoint(tmp_path / "a.safetensors", model, DEFAULT_FRONTEND,
                        embedding=EmbeddingMeta(wrong))
    no_head = build_model("default", [EMOTION_HEAD], channels=[4, 8, 8, 8], lstm_hidden=16,
                          neck=[16])
    with pytest.raises(ValueError, match="no head named 'embedding'"):
        save_checkpoint(tmp_path / "b.safetensors", no_head, DEFAULT_FRONTEND,
                        embedding=EmbeddingMeta(None, 0.5))


def _rewrite_meta(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    """Write the checkpoint again with its metadata edited (as a hand-edited file would be)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["streamtag"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    edit(meta)
    save_file(state, str(path), metadata={"streamtag": json.dumps(meta)})  # NaN allowed here


GOOD = {"center": [0.0] * 8, "axes": [[1.0] + [0.0] * 7, [0.0, 1.0] + [0.0] * 6],
        "scale": [0.5, 0.5]}


@pytest.mark.parametrize("block,message", [
    ({"projection": {**GOOD, "center": [0.0] * 7}, "known_distance": None},
     r"embedding.projection.center: expected finite numbers of shape \[8\]"),
    ({"projection": {**GOOD, "axes": [[0.0] * 8]}, "known_distance": None},
     r"embedding.projection.axes: expected finite numbers of shape \[2, 8\]"),
    ({"projection": {**GOOD, "center": [float("nan")] + [0.0] * 7}, "known_distance": None},
     r"embedding.projection.center: expected finite numbers"),
    ({"projection": {**GOOD, "scale": [0.5, 0.0]}, "known_distance": None},
     r"embedding.projection.scale: expected two numbers > 0"),
    ({"projection": {k: v for k, v in GOOD.items() if k != "axes"}, "known_distance": None},
     r"embedding.projection.axes: missing"),
    ({"projection": None, "known_distance": float("nan")},
     r"embedding.known_distance: expected a number in \(0, 2\]"),
    ({"projection": None, "known_distance": 3.0}, r"embedding.known_distance"),
    ({"projection": None, "known_distance": "near"}, r"embedding.known_distance"),
    ({"projection": None, "threshold": 0.3}, r"embedding.threshold: unknown key"),
    ([1, 2], r"embedding: expected an object"),
])
def test_bad_embedding_metadata_is_refused_naming_the_problem(tmp_path: Path, block,
                                                               message: str) -> None:
    path = make_checkpoint(tmp_path / "e.safetensors", heads=[EMOTION_HEAD, EMBEDDING_HEAD])
    _rewrite_meta(path, lambda m: m.__setitem__("embedding", block))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_embedding_metadata_without_an_embedding_head_is_refused(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "e.safetensors", heads=[EMOTION_HEAD])
    _rewrite_meta(path, lambda m: m.__setitem__("embedding", {"known_distance": 0.3}))
    with pytest.raises(CheckpointError, match="no head named 'embedding'"):
        load_checkpoint(path)


def test_tags_head_must_be_multilabel_with_address_safe_distinct_tags(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "t.safetensors",
                           heads=[HeadSpec("tags", "multilabel", ("hip hop", "hip_hop"))])
    with pytest.raises(CheckpointError, match="'hip hop' and 'hip_hop' both become OSC"):
        load_checkpoint(path)
    path = make_checkpoint(tmp_path / "u.safetensors",
                           heads=[HeadSpec("tags", "multiclass", ("a", "b"))])
    with pytest.raises(CheckpointError, match="named 'tags' must be of kind 'multilabel'"):
        load_checkpoint(path)
    assert load_checkpoint(make_checkpoint(tmp_path / "v.safetensors", heads=[TAGS_HEAD]))


# -- novelty -------------------------------------------------------------------------------
def piece(rng: np.random.Generator, centre: np.ndarray, n: int, noise: float = 0.15
          ) -> np.ndarray:
    """n per-hop unit embeddings scattered around one direction (one piece of music); with
    noise 0.15 per dim in 16 dims a hop lies ~30° from its piece's direction."""
    return unit(centre + noise * rng.standard_normal((n, centre.size)))


def novelty_curve(seq: np.ndarray, recent: int = 2, memory: int = 60) -> np.ndarray:
    meter = NoveltyMeter(seq.shape[1], recent, memory)
    return np.array([meter.push(e) for e in seq])


def test_novelty_rises_at_a_splice_and_stays_low_within_a_piece() -> None:
    rng = np.random.default_rng(0)
    d = 16
    a, b = unit(rng.standard_normal(d)), unit(rng.standard_normal(d))
    seq = np.concatenate([piece(rng, a, 80), piece(rng, b, 40)])
    nov = novelty_curve(seq)
    within_a = nov[4:80]
    after = nov[80:84]  # the splice enters the 1 s (2-hop) recent window
    assert within_a.max() < 0.12
    assert after.max() > 0.35  # the two directions are ~76° apart: (1 − cos 76°)/2 ≈ 0.38
    assert after.max() > 3 * within_a.max()
    # As the memory fills with the new piece, novelty falls back.
    assert nov[-1] < 0.5 * after.max()


def test_a_baseline_lag_keeps_a_change_out_of_its_own_baseline() -> None:
    """A change shows in two hops' distances (each window holds the hop before): with lag 0 the
    first is the second's baseline and takes it under the threshold; lag 1 leaves it out."""
    e = np.eye(3)
    # Two hops of the old sound, a hop half new, then the new sound.
    seq = np.stack([e[0], e[0], unit(e[0] + e[1]), e[1]])
    plain = NoveltyMeter(3, 1, 4)
    d = [plain.push(v) for v in seq]
    assert d[2] > 0.0 and d[3] > d[2]
    lag0 = NoveltyMeter(3, 1, 4, baseline_hops=6)
    lag1 = NoveltyMeter(3, 1, 4, baseline_hops=6, baseline_lag=1)
    got0, got1 = [lag0.push(v) for v in seq], [lag1.push(v) for v in seq]
    assert d[1] == 0.0  # the old sound against itself
    assert got0[3] == pytest.approx(d[3] - (d[1] + d[2]) / 2)  # the median of d1 and d2
    assert got1[3] == d[3]  # the median of d1 alone


def test_novelty_is_zero_until_there_is_memory_to_compare_with() -> None:
    rng = np.random.default_rng(1)
    seq = piece(rng, unit(rng.standard_normal(8)), 10)
    nov = novelty_curve(seq, recent=3)
    assert (nov[:5] == 0).all() and nov[5] > 0


def test_novelty_of_is_half_one_minus_cosine() -> None:
    e = np.eye(4)
    assert novelty_of(e[:1], e[:1]) == 0.0
    assert novelty_of(e[:1], e[1:2]) == pytest.approx(0.5)
    assert novelty_of(e[:1], -e[:1]) == pytest.approx(1.0)
    assert novelty_of(e[:0], e[:1]) == 0.0


def reference_novelty(seq: np.ndarray, recent: int, memory: int, baseline: int,
                      lag: int = 0) -> list[float]:
    """Novelty as the module docstring defines it, with numpy's mean, norm, product and median
    over the whole history each hop (as the meter computed it before it ran chunks): what
    ``NoveltyMeter`` must give to the bit."""
    out: list[float] = []
    distances: list[float] = []
    for i in range(len(seq)):
        held = seq[max(0, i + 1 - recent - memory):i + 1].astype(np.float64)
        if len(held) < 2 * recent:
            out.append(0.0)
            continue
        r, m = held[-recent:].mean(axis=0), held[:-recent].mean(axis=0)
        nr, nm = float(np.linalg.norm(r)), float(np.linalg.norm(m))
        d = 0.0 if nr < 1e-12 or nm < 1e-12 else min(1.0, max(0.0, (1.0 - float(r @ m)
                                                                    / (nr * nm)) / 2.0))
        assert novelty_of(held[-recent:], held[:-recent]) == d
        if not baseline:
            out.append(d)
            continue
        earlier = distances[:len(distances) - lag]
        usual = float(np.median(earlier[-baseline:])) if earlier else 0.0
        distances.append(d)
        out.append(max(0.0, d - usual))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_novelty_one_hop_at_a_time_or_in_runs_is_the_same_to_the_bit(seed: int) -> None:
    """``push`` (the daemon) and ``push_many`` (analyze's chunks) of any run lengths give the
    definition's numbers exactly; a run after reset starts over; without reset it differs."""
    rng = np.random.default_rng(seed)
    for trial in range(40):
        dims = int(rng.choice([1, 2, 3, 16, 64, 257]))
        recent, memory = int(rng.integers(1, 4)), int(rng.integers(1, 12))
        baseline = int(rng.choice([0, 1, 2, 5, 6]))
        lag = int(rng.choice([0, 1, 2])) if baseline else 0
        seq = rng.standard_normal((int(rng.integers(1, 70)), dims))
        seq = seq.astype(np.float32) if trial % 2 else seq
        if trial % 3 == 0:
            seq[len(seq) // 2:, 0] += 3.0  # a change of piece
        if trial % 5 == 0:
            seq[: len(seq) // 3] = 0.0  # zero vectors: nothing to compare
        want = reference_novelty(seq, recent, memory, baseline, lag)
        one = NoveltyMeter(dims, recent, memory, baseline, lag)
        assert [one.push(v) for v in seq] == want
        runs = NoveltyMeter(dims, recent, memory, baseline, lag)
        for _ in range(2):
            got: list[float] = []
            i = 0
            while i < len(seq):
                k = int(rng.integers(1, 12))
                got += runs.push_many(seq[i:i + k])
                i += k
            assert got == want, (dims, recent, memory, baseline)
            runs.reset()
    meter = NoveltyMeter(4, 1, 3)
    first = meter.push_many(np.eye(4)[[0, 0, 0, 1]])
    assert first[-1] > 0 and meter.push_many(np.eye(4)[[1]]) != [0.0]  # the state is real


@pytest.mark.parametrize("dims", [2, 8, 32, 257])
def test_projection_of_rows_is_the_projection_of_each_row(dims: int) -> None:
    """The engine projects a chunk of hops' embeddings at once offline and one live: the same
    positions to the bit (a matrix product of the batch could round differently)."""
    rng = np.random.default_rng(4)
    proj = fit_projection(unit(rng.standard_normal((50, dims))))
    emb = unit(rng.standard_normal((300, dims))).astype(np.float32)
    emb[0] *= 40.0  # clipped
    rows = proj.project_rows(emb)
    assert rows.shape == (300, 2)
    assert np.array_equal(rows, np.stack([proj.project(e) for e in emb]))
    assert np.array_equal(proj.project_rows(emb[:1]), proj.project(emb[0])[None])
    assert proj.project_rows(emb[:0]).shape == (0, 2)


def test_history_keeps_only_its_capacity_and_resets() -> None:
    h = HopHistory(2, capacity=4)
    for i in range(10):
        h.push(np.array([float(i), 1.0]))
    assert len(h) == 4
    np.testing.assert_array_equal(h.last(10)[:, 0], [6, 7, 8, 9])
    np.testing.assert_array_equal(h.last(2), [[8.0, 1.0], [9.0, 1.0]])  # the newest two
    h.reset()
    assert len(h) == 0 and h.last(3).shape == (0, 2)


def test_novelty_meter_forgets_on_reset() -> None:
    meter = NoveltyMeter(2, recent_hops=1, memory_hops=3)
    assert meter.push(np.array([1.0, 0.0])) == 0.0  # nothing to compare with yet
    assert meter.push(np.array([0.0, 1.0])) == pytest.approx(0.5)
    meter.reset()
    assert meter.push(np.array([0.0, 1.0])) == 0.0


# -- match vectors -------------------------------------------------------------------------
def test_match_vectors_weigh_unit_blocks() -> None:
    rng = np.random.default_rng(3)
    enc = np.abs(rng.standard_normal((5, 20 + 12 + 8)))
    v = match_vectors(enc, sound_dims=20, n_chroma=12)
    assert v.shape == enc.shape
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)
    # Each block carries its weight whatever its scale: sound 1, mean profile and templates
    # PITCH_MATCH_WEIGHT each.
    w = PITCH_MATCH_WEIGHT
    total = np.sqrt(1 + 2 * w * w)
    np.testing.assert_allclose(np.linalg.norm(v[:, :20], axis=1), 1 / total)
    np.testing.assert_allclose(np.linalg.norm(v[:, 20:32], axis=1), w / total)
    np.testing.assert_allclose(np.linalg.norm(v[:, 32:], axis=1), w / total)
    scaled = enc * np.r_[np.full(20, 7.0), np.full(12, 0.1), np.full(8, 3.0)]
    np.testing.assert_allclose(match_vectors(scaled, 20, 12), v)
    # Without pitch-class rows: the unit sound vector.
    np.testing.assert_allclose(match_vectors(enc[:, :20], 20, 0), unit(enc[:, :20]))
    # An all-zero block stays zero rather than dividing by zero.
    assert np.isfinite(match_vectors(np.zeros((1, 40)), 20, 12)).all()


def test_match_projection_is_fitted_stored_and_checked(tmp_path: Path) -> None:
    from streamtag.checkpoint import load_checkpoint as load
    from streamtag.engine import Engine
    from streamtag.testing import make_signal

    path = make_checkpoint(tmp_path / "m.safetensors", heads=[EMOTION_HEAD, EMBEDDING_HEAD],
                           match_dims=6)
    ck = load(path)
    match = ck.embedding.match
    assert match is not None and match.dims == 6
    assert match.features == ck.model.encoded_features
    np.testing.assert_allclose(match.axes @ match.axes.T, np.eye(6), atol=1e-5)  # orthonormal
    engine = Engine(ck)
    v = engine.reference_vectors(make_signal(3.0, 22050, seed=5))
    assert v.shape[1] == engine.match_dims == 6
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    # Refitting the same vectors gives the same map (deterministic signs), so the same id.
    raw = Engine(load(make_checkpoint(tmp_path / "r.safetensors",
                                      heads=[EMOTION_HEAD, EMBEDDING_HEAD])))
    assert raw.match_id == "full" and raw.match_dims == ck.model.encoded_features
    again = make_checkpoint(tmp_path / "again.safetensors", heads=[EMOTION_HEAD, EMBEDDING_HEAD],
                            match_dims=6)
    assert Engine(load(again)).match_id == engine.match_id
    # A map for window encodings of another size does not fit this model.
    wrong = EmbeddingMeta(match=MatchProjection(np.zeros(5), np.eye(5)[:2]))
    with pytest.raises(ValueError, match="made for 5-dim window encodings"):
        update_embedding_meta(path, wrong)


@pytest.mark.parametrize("block,message", [
    ({"center": [0.0, 1.0], "axes": [[1.0, 0.0, 0.0]]}, "axes: expected K rows"),
    ({"center": [], "axes": []}, "center: expected a non-empty list"),
    ({"center": [0.0], "axes": [[1.0]], "extra": 1}, "match.extra: unknown key"),
])
def test_broken_match_blocks_are_named(block: dict, message: str) -> None:
    problems = validate_embedding_meta({"projection": None, "known_distance": None,
                                        "match": block}, 8)
    assert any(message in p for p in problems), problems


def test_sound_scale_is_fitted_stored_and_checked(tmp_path: Path) -> None:
    from streamtag.checkpoint import load_checkpoint as load

    rng = np.random.default_rng(1)
    x = rng.normal([1.0, -2.0, 5.0], [0.5, 2.0, 1.0], size=(400, 3))
    x[:, 2] = 5.0  # a feature that never varies keeps scale 1: nothing to amplify
    fit = fit_sound_scale(x)
    np.testing.assert_allclose(fit.center, x.mean(axis=0))
    np.testing.assert_allclose(fit.scale, [x[:, 0].std(), x[:, 1].std(), 1.0])
    z = fit.apply(x)
    np.testing.assert_allclose(z[:, :2].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z[:, :2].std(axis=0), 1.0)
    with pytest.raises(ValueError, match="N >= 2"):
        fit_sound_scale(x[:1])
    with pytest.raises(ValueError, match="NaN"):
        fit_sound_scale(np.full((3, 2), np.nan))

    path = make_checkpoint(tmp_path / "m.safetensors", heads=[EMOTION_HEAD, EMBEDDING_HEAD])
    d = load(path).model.sound_features
    sound = fit_sound_scale(rng.normal(size=(50, d)))
    update_embedding_meta(path, EmbeddingMeta(sound=sound))
    stored = load(path).embedding
    assert stored is not None and stored.sound is not None
    np.testing.assert_allclose(stored.sound.center, sound.center, rtol=1e-6)
    np.testing.assert_allclose(stored.sound.scale, sound.scale, rtol=1e-6)
    # A scale for sound vectors of another size does not fit this model.
    with pytest.raises(ValueError, match=f"made for {d + 1}-dim sound vectors"):
        update_embedding_meta(path, EmbeddingMeta(sound=fit_sound_scale(np.eye(d + 1))))


@pytest.mark.parametrize("block,message", [
    ({"center": [0.0, 1.0], "scale": [1.0]}, "sound.scale: expected 2 finite numbers"),
    ({"center": [0.0, 1.0], "scale": [1.0, 0.0]}, "sound.scale: expected numbers > 0"),
    ({"center": [], "scale": []}, "sound.center: expected a non-empty list"),
    ({"center": [0.0], "scale": [1.0], "extra": 1}, "sound.extra: unknown key"),
    ([1.0], "sound: expected an object or null"),
])
def test_broken_sound_blocks_are_named(block: object, message: str) -> None:
    problems = validate_embedding_meta({"projection": None, "known_distance": None,
                                        "sound": block}, 8)
    assert any(message in p for p in problems), problems


def test_novelty_takes_off_the_usual_distance_of_the_hops_before() -> None:
    rng = np.random.default_rng(3)
    vecs = rng.normal(scale=0.3, size=(40, 5))
    vecs[:20, 0] += 3.0  # one piece, then another from hop 20 on
    vecs[20:, 1] += 3.0
    plain = NoveltyMeter(5, recent_hops=1, memory_hops=4)
    based = NoveltyMeter(5, recent_hops=1, memory_hops=4, baseline_hops=6)
    d = [plain.push(v) for v in vecs]
    got = [based.push(v) for v in vecs]
    primed = [x for i, x in enumerate(d) if i >= 1]  # the memory is full from the 2nd hop on
    assert got[0] == d[0] == 0.0
    for i in range(1, len(vecs)):
        before = primed[max(0, i - 1 - 6):i - 1]
        usual = float(np.median(before)) if before else 0.0
        assert got[i] == pytest.approx(max(0.0, d[i] - usual), abs=1e-12), i
    # The change stands out more against the usual wobble than the wobble itself does.
    assert np.argmax(got) == 20 and got[20] > 3 * max(got[2:20])
    based.reset()
    assert based.push(vecs[0]) == 0.0 and based.push(vecs[1]) == pytest.approx(d[1])
