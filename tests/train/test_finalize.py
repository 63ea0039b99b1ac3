"""After training: the checkpoint gets its 2-D projection and its match projection (fitted on
training hops), and references then compare the projected match vectors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from streamtag.checkpoint import load_checkpoint
from streamtag.engine import Engine, hop_windows
from streamtag.frontend import MelFrontend
from streamtag.model import EMOTION_HEAD
from streamtag.testing import EMBEDDING_HEAD, make_checkpoint, make_signal
from streamtag.train.features import ClipFeatures
from streamtag.train.finalize import finalize_embedding


def test_finalize_stores_the_projection_and_the_match_projection(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "best.safetensors", heads=[EMOTION_HEAD, EMBEDDING_HEAD])
    ck = load_checkpoint(path)
    assert ck.embedding is None
    fe = MelFrontend(ck.frontend)
    feats = []
    for seed in range(4):  # 4 clips × 12 hops of training audio
        mel = fe.process_offline(make_signal(6.0, 22050, seed=seed)).features
        windows = hop_windows(mel, ck.model.arch, fe.silence_frame())
        feats.append(ClipFeatures(SimpleNamespace(), mel, windows))
    report = finalize_embedding(path, feats, [])  # no validation pieces: no threshold
    assert report is not None and report.known_distance is None
    done = load_checkpoint(path)
    assert done.weights_sha256 == ck.weights_sha256  # metadata only
    assert done.embedding.projection is not None and done.embedding.known_distance is None
    match = done.embedding.match
    assert match is not None and match.features == done.model.encoded_features
    assert match.dims == min(64, 4 * 12 - 1)  # PCA of the 48 hops
    vectors = Engine(done).reference_vectors(make_signal(3.0, 22050, seed=9))
    assert vectors.shape == (6, match.dims)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    # The sound scale: mean and spread of the same hops' sound vectors, for novelty.
    sound = done.embedding.sound
    with torch.inference_mode():
        enc = done.model.encode(torch.from_numpy(np.concatenate([f.windows for f in feats])))
    enc = enc.numpy()[:, :done.model.sound_features]
    assert sound is not None and sound.dims == done.model.sound_features
    np.testing.assert_allclose(sound.center, enc.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sound.scale, np.where(enc.std(axis=0) > 1e-6, enc.std(axis=0), 1),
                               rtol=1e-4, atol=1e-6)
