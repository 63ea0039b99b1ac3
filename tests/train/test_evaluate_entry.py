"""The entry-after-a-pause evaluation (streamtag.train.evaluate_entry) on the bundled model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from streamtag.checkpoint import Checkpoint
from streamtag.train.datasets.base import Clip
from streamtag.train.evaluate import Report, render_markdown
from streamtag.train.evaluate_entry import APPLAUSE_DB, NOISE_DB, evaluate_entry, preroll_audio


def test_prerolls_are_what_they_say() -> None:
    rate = 22050
    noise = preroll_audio("noise", 2.0, rate, None)
    assert noise.size == 2 * rate
    assert 10 * np.log10(np.mean(noise.astype(np.float64) ** 2)) == \
        pytest_approx(NOISE_DB)
    other = np.ones(1000, np.float32)
    assert np.array_equal(preroll_audio("other", 0.1, rate, other), np.ones(2205, np.float32))
    both = preroll_audio("other, silence", 0.1, rate, other)
    assert both.size == 1000 + 2205 and not both[1000:].any()
    claps = preroll_audio("applause", 3.0, rate, None, seed=4)
    assert claps.size == 3 * rate
    x = claps.astype(np.float64)
    assert 10 * np.log10(np.mean(x**2)) == pytest_approx(APPLAUSE_DB)
    # Claps, not steady noise: the loudest 10 ms are far above the level (crest), and the
    # level of 50 ms stretches moves by more than a steady noise's would.
    assert np.abs(x).max() / np.sqrt(np.mean(x**2)) > 8  # pink noise: ~4.6
    blocks = 10 * np.log10(np.mean(x[: 60 * 1102].reshape(60, 1102) ** 2, axis=1) + 1e-12)
    assert blocks.std() > 4.0  # pink noise: ~1.8 dB
    assert np.array_equal(claps, preroll_audio("applause", 3.0, rate, None, seed=4))


def pytest_approx(x: float) -> object:
    import pytest

    return pytest.approx(x, abs=0.01)


def test_the_bundled_model_enters_after_silence_as_a_fresh_start(
    bundled: Checkpoint, pieces: dict[str, np.ndarray], tmp_path: Path
) -> None:
    clips = []
    for name in ("violin", "flute", "piano", "trumpet"):
        path = tmp_path / f"{name}.wav"
        sf.write(path, pieces[name], bundled.frontend.sample_rate_hz)
        clips.append(Clip(path=path, dataset="corpus", split="validation", group=name,
                          instrument=name))
    report = evaluate_entry(bundled, clips, kinds=("silence", "other, silence"),
                            seconds=(1.0, 4.0))
    assert report.clips == 4 and len(report.cases) == 4
    for case in report.cases:
        assert case.hops >= 4 * 12
        assert case.agreement is not None and case.agreement >= 0.95, case
        assert case.median_dvalence is not None and case.median_dvalence <= 0.1, case
    table = render_markdown(Report("x", "id", "engine", "validation", 4, 0.5, {},
                                   {"mean_ms": 1.0, "p99_ms": 2.0, "repeats": 1, "threads": 1},
                                   entry=report.to_dict()))
    assert "## Entry after a pause" in table and "| other, silence | 4 |" in table
