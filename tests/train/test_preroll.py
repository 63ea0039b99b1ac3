"""Pre-roll augmentation (streamtag.train.preroll): spliced frames are what the frontend frames
from the spliced audio, labels move with the music, and a tiny training run uses it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from streamtag.checkpoint import load_checkpoint
from streamtag.engine import Engine, hop_windows
from streamtag.frontend import FRONTEND_PRESETS, MelFrontend
from streamtag.model import DEFAULT_ARCH
from streamtag.testing import make_signal
from streamtag.train.config import TrainConfig
from streamtag.train.datasets.base import Clip
from streamtag.train.features import ClipFeatures, silence_frame
from streamtag.train.preroll import (
    NOISE_KINDS,
    draw_preroll,
    noise_bank,
    splice_frames,
    with_preroll,
)

FE = FRONTEND_PRESETS["default"]


def test_spliced_frames_carry_the_pitch_class_memory_as_the_played_audio_does() -> None:
    hop = FE.hop_length
    a = make_signal(3.0, FE.sample_rate_hz, seed=1)[: 150 * hop]
    b = make_signal(3.0, FE.sample_rate_hz, seed=2)[: 150 * hop]
    fe = MelFrontend(FE, fast_lane=False)
    played = fe.process_offline(np.concatenate([a, b])).mel
    pre, music = fe.process_offline(a).mel, fe.process_offline(b).mel
    spliced = splice_frames(pre, music, FE)
    assert spliced.shape == played.shape
    # Two frames straddle the splice (n_fft 1024, hop 441); mel rows have no memory after them.
    after = slice(150 + 2, None)
    m = FE.n_mels
    assert np.abs(spliced[after, :m] - played[after, :m]).max() < 1e-4
    # The pitch-class memory: within the straddling frames' own share of it, ...
    assert np.abs(spliced[after, m:] - played[after, m:]).max() < 0.02
    # ... where frames framed from a fresh start remember nothing of the pre-roll.
    assert np.abs(np.concatenate([pre, music])[after, m:] - played[after, m:]).max() > 0.1


def clip_features(n_hops: int, seed: int = 0) -> ClipFeatures:
    arch = DEFAULT_ARCH
    rng = np.random.default_rng(seed)
    mel = rng.standard_normal((n_hops * arch.hop_frames, arch.n_features)).astype(np.float32)
    mel[:, -12:] = 0.0  # an even pitch-class spread
    clip = Clip(path=Path(f"x{seed}.wav"), dataset="toy", split="train", group=f"g{seed}",
                instrument="flute")
    feats = ClipFeatures(clip, mel, hop_windows(mel, arch, silence_frame(FE)))
    feats.targets["v"] = np.arange(n_hops, dtype=np.float32)[:, None]
    feats.masks["v"] = np.ones((n_hops, 1), np.float32)
    return feats


def test_labels_move_with_the_music_and_the_preroll_is_unlabelled() -> None:
    arch = DEFAULT_ARCH
    feats = clip_features(8)
    pre = np.full((30, arch.n_features), -3.0, np.float32)  # 1.2 hops: the music starts mid-hop
    out = with_preroll(feats, pre, arch, silence_frame(FE), FE)
    assert out.n_hops == feats.n_hops
    # Hop k ends 25·(k + 1) − 30 frames into the music: hops 0 and 1 hold no complete music
    # hop; hop 2 (45 frames in) takes the music's hop 0, hop 7 (170) its hop 5.
    assert out.masks["v"][:, 0].tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    assert out.targets["v"][2:, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert np.array_equal(out.mel[:30], pre)
    assert np.array_equal(out.mel[30:, :arch.n_mels], feats.mel[:170, :arch.n_mels])
    assert np.array_equal(out.windows, hop_windows(out.mel, arch, silence_frame(FE)))
    with pytest.raises(ValueError, match="pre-roll"):
        with_preroll(feats, np.zeros((8 * 25 - 24, arch.n_features), np.float32), arch,
                     silence_frame(FE), FE)


def test_prerolls_are_noise_above_the_gate_or_another_piece() -> None:
    bank = noise_bank(FE, seconds=2.0, per_kind=1)
    assert bank.kinds == NOISE_KINDS
    assert all(-55 <= level <= -25 for level in bank.levels_db)
    rng = np.random.default_rng(0)
    feats, other = clip_features(8, 0), clip_features(8, 1)
    lengths = set()
    for share, source in ((1.0, None), (0.0, other.mel)):
        for _ in range(20):
            pre = draw_preroll(rng, feats, [feats, other], bank, 100, share, 25)
            lengths.add(len(pre))
            assert 1 <= len(pre) <= 100
            if source is not None:  # a stretch of the other piece, never of itself
                start = np.flatnonzero((source == pre[0]).all(axis=1))
                assert start.size and np.array_equal(source[start[0]:start[0] + len(pre)], pre)
    assert len({n % 25 for n in lengths}) > 5  # the hop phase varies


def test_a_tiny_run_trains_with_prerolls(make_config: Callable[..., TrainConfig],
                                         tmp_path: Path, tone_corpus: Path) -> None:
    from streamtag.train.trainer import train

    cfg = make_config("train.epochs=1", "augment.preroll_p=1.0", "augment.preroll_max_s=1.0",
                      "output.plots=false", "output.final_report=false")
    result = train(cfg, tmp_path)
    ck = load_checkpoint(result.best_checkpoint)
    assert ck.provenance["config"]["augment"]["preroll_p"] == 1.0
    assert Engine(ck).analyze(make_signal(2.0, ck.frontend.sample_rate_hz))
