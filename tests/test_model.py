"""The model: the seed preset is AudioLSTMCNN2 exactly; stepping equals the batched sequence."""

from __future__ import annotations

import pytest
import torch

from streamtag.model import (
    EMOTION_HEAD,
    INSTRUMENT_HEAD,
    TIMBRE_HEAD,
    HeadSpec,
    build_model,
    count_parameters,
)

# Seed 000's table: the input size of each layer (B=1).
SEED_LAYER_INPUTS = {
    "conv11": (1, 1, 128, 196), "conv12": (1, 64, 128, 196), "maxpool1": (1, 64, 128, 196),
    "conv21": (1, 64, 64, 98), "conv22": (1, 64, 64, 98), "maxpool2": (1, 64, 64, 98),
    "conv3": (1, 64, 32, 49), "maxpool3": (1, 128, 32, 49), "dropout3": (1, 128, 10, 16),
    "conv4": (1, 128, 10, 16), "maxpool4": (1, 256, 10, 16), "dropout4": (1, 256, 3, 5),
    "conv5": (1, 256, 3, 5), "maxpool5": (1, 256, 3, 5), "dropout5": (1, 256, 1, 1),
}


def test_seed_preset_has_the_published_parameter_count() -> None:
    model = build_model("seed", [EMOTION_HEAD])
    assert count_parameters(model) == 1_640_658


def test_seed_preset_layer_shapes_follow_the_seed_table() -> None:
    model = build_model("seed", [EMOTION_HEAD]).eval()
    seen: dict[str, tuple[int, ...]] = {}
    for name, layer in model.trunk.named_children():
        layer.register_forward_hook(
            lambda mod, inp, out, name=name: seen.__setitem__(name, tuple(inp[0].shape))
        )
    with torch.no_grad():
        out, state = model.step(torch.rand(128, 196))
    for name, shape in SEED_LAYER_INPUTS.items():
        assert seen[name] == shape, name
    assert model.lstm.input_size == 256 and model.lstm.hidden_size == 256
    assert [m.out_features for m in model.neck if isinstance(m, torch.nn.Linear)] == [
        128, 64, 32, 16]
    assert out["emotion"].shape == (1, 2)
    assert state.h.shape == (1, 1, 256)


@pytest.mark.parametrize("preset", ["default", "seed"])
def test_step_by_step_equals_forward_sequence(preset: str) -> None:
    torch.manual_seed(0)
    overrides = {"channels": [4], "lstm_hidden": 16} if preset == "seed" else {}
    model = build_model(preset, [EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD], **overrides).eval()
    a = model.arch
    windows = torch.randn(2, 6, a.n_features, a.window_frames)  # [B, S, M, T]
    with torch.no_grad():
        seq, final = model.forward_sequence(windows)
        state = None
        for s in range(6):
            out, state = model.step(windows[:, s], state)
            for k in out:
                torch.testing.assert_close(out[k], seq[k][:, s], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(state.h, final.h, rtol=1e-4, atol=1e-5)


def test_state_is_real_and_none_means_fresh() -> None:
    torch.manual_seed(1)
    model = build_model("default", [EMOTION_HEAD]).eval()
    x = torch.randn(1, 76, 50)
    with torch.no_grad():
        fresh, state = model.step(x, None)
        again, _ = model.step(x, None)
        carried, _ = model.step(x, state)
    torch.testing.assert_close(fresh["emotion"], again["emotion"])
    assert not torch.allclose(fresh["emotion"], carried["emotion"])


def test_head_activations_keep_their_ranges() -> None:
    torch.manual_seed(2)
    emb = HeadSpec("embedding", "embedding", tuple(f"d{i}" for i in range(8)))
    tags = HeadSpec("tags", "multilabel", ("a", "b", "c"))
    model = build_model("default", [EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD, emb, tags]).eval()
    with torch.no_grad():
        out, _ = model.step(100 * torch.randn(3, 76, 50))
    assert out["emotion"].abs().max() <= 1
    assert ((out["timbre"] >= 0) & (out["timbre"] <= 1)).all()
    torch.testing.assert_close(out["instrument"].sum(-1), torch.ones(3))
    torch.testing.assert_close(out["embedding"].norm(dim=-1), torch.ones(3))
    assert ((out["tags"] >= 0) & (out["tags"] <= 1)).all()


def test_seed_regression_heads_stay_identity_as_published() -> None:
    model = build_model("seed", [EMOTION_HEAD])
    assert model.heads[0].activation == "identity"


def test_bad_models_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model("huge", [EMOTION_HEAD])
    with pytest.raises(ValueError, match="unique"):
        build_model("default", [EMOTION_HEAD, EMOTION_HEAD])
    with pytest.raises(ValueError, match="at least one head"):
        build_model("default", [])


def test_pitch_class_encoder_is_the_same_in_every_key_but_tells_major_from_minor() -> None:
    from streamtag.model import PitchClassEncoder

    torch.manual_seed(0)
    enc = PitchClassEncoder(templates=8)
    chroma = torch.randn(3, 12, 50)
    out = enc(chroma)
    for k in (1, 5, 11):
        moved = enc(torch.roll(chroma, k, dims=1))
        torch.testing.assert_close(moved[:, 12:], out[:, 12:])  # the template matches
        torch.testing.assert_close(moved[:, :12], torch.roll(out[:, :12], k, dims=1))
    major = torch.full((1, 12, 4), -2.0)
    major[0, [0, 4, 7]] = 2.0
    minor = torch.flip(major, dims=[1])  # the mirror image: a minor triad (on F)
    assert not torch.allclose(enc(major)[:, 12:], enc(minor)[:, 12:])


@pytest.mark.parametrize("preset", ["default", "seed"])
def test_inference_arrangement_gives_the_models_outputs(preset: str) -> None:
    """``for_inference`` (batch norm folded, heads joined, rotations computed once) runs the
    same model: outputs equal to float rounding, stepped and batched; the model it came from
    is untouched, and the arrangement cannot be saved as a checkpoint."""
    from streamtag.checkpoint import save_checkpoint
    from streamtag.frontend import FrontendConfig

    torch.manual_seed(3)
    over = {} if preset == "seed" else {"n_chroma": 12}
    model = build_model(preset, [EMOTION_HEAD, INSTRUMENT_HEAD, TIMBRE_HEAD], **over)
    # Batch norm statistics far from the identity, so folding them has something to do.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-2.0, 2.0)
            m.running_var.uniform_(0.2, 5.0)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-1.0, 1.0)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = model.for_inference()
    a = model.arch
    windows = torch.randn(2, 5, a.n_features, a.window_frames)
    with torch.inference_mode():
        want, want_state = model.forward_sequence(windows)
        got, got_state = fast.forward_sequence(windows)
        step_want, _ = model.step(windows[:, 0])
        step_got, _ = fast.step(windows[:, 0])
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-5), k
        assert torch.allclose(step_got[k], step_want[k], atol=1e-5), k
    assert torch.allclose(got_state.h, want_state.h, atol=1e-5)
    if preset == "default":
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert fast.inference_only and not model.inference_only
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="for_inference"):
        save_checkpoint("/nonexistent/x.safetensors", fast, FrontendConfig(
            n_mels=a.n_mels, n_chroma=a.n_chroma))
