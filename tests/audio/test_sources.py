"""FileSource and SyntheticSource: exact delivery in fast mode, wall-clock pacing in realtime
mode, and errors that name the file and the reason."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamtag.audio import sources
from streamtag.audio.sources import FileSource, Source, SyntheticSource
from streamtag.errors import AudioError


def drain(src: Source, sizes: list[int], timeout_s: float = 1.0, limit: int = 10**7) -> np.ndarray:
    """Read with the block sizes cycled until the source is finished (or ``limit`` frames)."""
    parts, got, i = [], 0, 0
    while not src.finished and got < limit:
        block = src.read(sizes[i % len(sizes)], timeout_s)
        assert block.dtype == np.float32 and block.ndim == 2
        assert block.shape[1] == src.channels and len(block) <= sizes[i % len(sizes)]
        parts.append(block)
        got += len(block)
        i += 1
    return np.concatenate(parts)


@pytest.fixture
def noise_wav(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(3).uniform(-0.9, 0.9, (12_345, 3)).astype(np.float32)
    path = tmp_path / "noise.wav"
    sf.write(path, data, 22050, subtype="FLOAT")
    return path, data


def test_sources_satisfy_the_protocol(noise_wav: tuple[Path, np.ndarray]) -> None:
    assert isinstance(FileSource(noise_wav[0], realtime=False), Source)
    assert isinstance(SyntheticSource("sine", 16000), Source)


def test_fast_file_delivers_every_sample_exactly(noise_wav: tuple[Path, np.ndarray]) -> None:
    path, data = noise_wav
    with FileSource(path, realtime=False) as src:
        assert (src.sample_rate_hz, src.channels) == (22050, 3)
        got = drain(src, [1, 7, 1000, 4096, 333])
        assert src.finished and src.status.startswith("finished")
        assert len(src.read(100, 0.1)) == 0
        assert src.stream_time_s == pytest.approx(len(data) / 22050)
        assert src.counters()["frames_delivered"] == len(data)
    np.testing.assert_array_equal(got, data)


def test_restart_replays_from_the_beginning(noise_wav: tuple[Path, np.ndarray]) -> None:
    path, data = noise_wav
    src = FileSource(path, realtime=False)
    src.start()
    drain(src, [5000])
    src.stop()
    src.start()
    np.testing.assert_array_equal(drain(src, [4096]), data)
    src.stop()


def test_loop_wraps_to_the_start(noise_wav: tuple[Path, np.ndarray]) -> None:
    path, data = noise_wav
    with FileSource(path, realtime=False, loop=True) as src:
        got = drain(src, [5000], limit=3 * len(data) + 10)
        assert not src.finished
        assert src.counters()["loops"] == 3
    np.testing.assert_array_equal(got[: 3 * len(data)], np.concatenate([data] * 3))


def test_flac_reads_the_stored_samples(tmp_path: Path) -> None:
    data = np.random.default_rng(5).uniform(-0.5, 0.5, (5000, 2)).astype(np.float32)
    path = tmp_path / "x.flac"
    sf.write(path, data, 44100, subtype="PCM_24")
    expected, _ = sf.read(path, dtype="float32", always_2d=True)
    with FileSource(path, realtime=False) as src:
        np.testing.assert_array_equal(drain(src, [777]), expected)
        np.testing.assert_allclose(expected, data, atol=2**-22)


@pytest.mark.parametrize("fmt,subtype", [("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_lossy_formats_decode_to_the_right_length(tmp_path: Path, fmt: str, subtype: str) -> None:
    t = np.arange(44100) / 44100
    tone = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, tone, 44100, format=fmt, subtype=subtype)
    with FileSource(path, realtime=False) as src:
        got = drain(src, [4096])
    assert src.sample_rate_hz == 44100 and src.channels == 1
    assert abs(len(got) - len(tone)) < 0.1 * 44100  # codec padding, not lost audio
    assert 0.3 < np.abs(got).max() < 0.5


def test_mp3_falls_back_to_audioread_when_libsndfile_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("audioread") is None:
        pytest.skip("audioread is not installed")
    tone = (0.4 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)).astype(np.float32)
    path = tmp_path / "tone.mp3"
    sf.write(path, np.stack([tone, tone], 1), 22050, format="MP3")

    def refuse(self: object, p: Path) -> None:
        raise RuntimeError("libsndfile refuses (simulated)")

    monkeypatch.setattr(sources._SoundFileReader, "__init__", refuse)
    try:
        src = FileSource(path, realtime=False)
    except AudioError as exc:
        pytest.skip(f"no audioread backend (ffmpeg/GStreamer) here: {exc}")
    with src:
        got = drain(src, [4096])
    assert src.channels == 2 and src.sample_rate_hz == 22050
    assert abs(len(got) - len(tone)) < 0.1 * 22050
    assert 0.3 < np.abs(got).max() < 0.5


def test_missing_file_names_path_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match=r"nope\.wav.*no such file"):
        FileSource(path, realtime=False)


def test_garbage_file_names_path_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError, match=r"notes\.wav.*libsndfile") as info:
        FileSource(path, realtime=False)
    assert "audioread" in str(info.value)


def test_zero_byte_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.flac"
    path.touch()
    with pytest.raises(AudioError, match=r"empty\.flac.*empty \(0 bytes\)"):
        FileSource(path, realtime=False)


def test_wav_without_frames_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 8000)
    with pytest.raises(AudioError, match=r"silent\.wav.*holds no audio"):
        FileSource(path, realtime=False)


def test_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="folder"):
        FileSource(tmp_path, realtime=False)


def test_read_before_start_is_a_programming_error(noise_wav: tuple[Path, np.ndarray]) -> None:
    with pytest.raises(RuntimeError, match="start"):
        FileSource(noise_wav[0], realtime=False).read(10, 0.0)


def test_realtime_file_is_paced_by_the_wall_clock(tmp_path: Path) -> None:
    path = tmp_path / "one_second.wav"
    sf.write(path, np.zeros((8000, 1), np.float32), 8000)
    t0 = time.monotonic()
    with FileSource(path, realtime=True, blocksize_frames=400) as src:
        got = drain(src, [1000], timeout_s=0.5)
    elapsed = time.monotonic() - t0
    assert len(got) == 8000
    assert 0.8 <= elapsed < 3.0  # loose: pacing, not a timing test


def test_realtime_read_times_out_empty_between_blocks(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, np.zeros((8000, 1), np.float32), 8000)
    with FileSource(path, realtime=True, blocksize_frames=4000) as src:
        assert len(src.read(4000, 0.0)) == 0  # the first block is released after 0.5 s
        assert len(src.read(4000, 2.0)) == 4000


@pytest.mark.parametrize("kind", ["sine", "noise", "click", "silence"])
def test_synthetic_signal_does_not_depend_on_block_sizes(kind: str) -> None:
    whole = SyntheticSource(kind, 16000, channels=2, duration_s=0.5)
    pieces = SyntheticSource(kind, 16000, channels=2, duration_s=0.5)
    with whole, pieces:
        a = drain(whole, [8000])
        b = drain(pieces, [1, 13, 999, 4096])
    assert a.shape == (8000, 2)
    np.testing.assert_array_equal(a, b)


def test_sine_has_the_requested_frequency_and_amplitude() -> None:
    with SyntheticSource("sine", 16000, frequency_hz=1000.0, amplitude=0.25) as src:
        x = src.read(16000, 0.0)[:, 0]
    spectrum = np.abs(np.fft.rfft(x))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins over one second
    assert np.abs(x).max() == pytest.approx(0.25, abs=1e-3)


def test_clicks_fall_on_the_interval() -> None:
    with SyntheticSource("click", 1000, click_interval_s=0.25, amplitude=1.0) as src:
        x = src.read(1000, 0.0)[:, 0]
    np.testing.assert_array_equal(np.flatnonzero(x), [0, 250, 500, 750])


def test_noise_is_reproducible_by_seed() -> None:
    with SyntheticSource("noise", 8000, seed=1) as a, SyntheticSource("noise", 8000, seed=1) as b:
        np.testing.assert_array_equal(a.read(500, 0.0), b.read(500, 0.0))
    with SyntheticSource("noise", 8000, seed=2) as c, SyntheticSource("noise", 8000, seed=1) as d:
        assert not np.array_equal(c.read(500, 0.0), d.read(500, 0.0))


def test_realtime_synthetic_is_paced() -> None:
    t0 = time.monotonic()
    with SyntheticSource("sine", 8000, duration_s=0.5, realtime=True, blocksize_frames=200) as src:
        got = drain(src, [800], timeout_s=0.5)
    assert len(got) == 4000
    assert 0.4 <= time.monotonic() - t0 < 2.0


def test_unknown_synthetic_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="kind"):
        SyntheticSource("square", 8000)  # type: ignore[arg-type]


def test_realtime_reads_wait_for_min_frames(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, np.zeros((8000, 1), np.float32), 8000)
    with SyntheticSource("sine", 8000, realtime=True, blocksize_frames=100) as syn:
        sizes = [len(syn.read(8000, 2.0, min_frames=450)) for _ in range(4)]
    # Released 100 frames at a time: each read wakes once 450 are there, not at the first 100.
    assert all(n >= 450 for n in sizes), sizes
    with FileSource(path, realtime=True, blocksize_frames=100) as src:
        assert len(src.read(8000, 2.0, min_frames=450)) >= 450
        src.read(8000, 2.0, min_frames=8000)  # waits for the rest of the file, no longer
        assert len(src.read(8000, 2.0, min_frames=450)) == 0 and src.finished
