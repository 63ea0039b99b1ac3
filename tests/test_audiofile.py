"""Audio inputs read block by block: the same samples as reading the whole file at once."""

from __future__ import annotations

import io
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamtag import audiofile
from streamtag.audiofile import RawFormat, open_audio, read_audio
from streamtag.errors import AudioError
from streamtag.testing import make_signal


def _stereo(seconds: float, rate: int) -> np.ndarray:
    x = np.stack([make_signal(seconds, rate, seed=1), make_signal(seconds, rate, seed=2)], 1)
    x[10] = [1.0, -1.0]  # full scale both ways
    return x


def test_a_file_is_read_in_blocks_with_the_whole_files_samples(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, _stereo(1.0, 44100), 44100)
    monkeypatch.setattr(audiofile, "BLOCK_FRAMES", 1000)
    source = open_audio(path)
    blocks = list(source.blocks())
    assert source.frames == 44100 and source.seconds == 1.0 and source.channels == 2
    assert len(blocks) == 45 and all(b.dtype == np.float32 for b in blocks)
    whole, _ = sf.read(path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"])
def test_a_wav_stream_on_stdin_gives_the_samples_libsndfile_reads(tmp_path: Path,
                                                                 subtype: str) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, _stereo(0.5, 48000), 48000, subtype=subtype)
    # A pipe cannot seek: a stream that hands out a few bytes per read, like a slow pipe.
    stream = io.BufferedReader(io.BytesIO(path.read_bytes()), buffer_size=7)
    source = open_audio("-", stdin=stream)
    assert (source.rate_hz, source.channels, source.frames) == (48000, 2, 24000)
    expected, _ = sf.read(path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(source.read_all(), expected)


def test_ffmpegs_wav_to_a_pipe_has_no_length_and_a_list_chunk(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, _stereo(1.0, 44100), 44100)
    wav = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "wav", "-"],
                         capture_output=True, check=True, timeout=60).stdout
    assert wav[4:8] == b"\xff\xff\xff\xff" and b"LIST" in wav[:100]
    source = open_audio("-", stdin=io.BytesIO(wav))
    assert source.frames is None and source.seconds is None
    expected, _ = sf.read(path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(source.read_all(), expected)


@pytest.mark.parametrize("fmt", ["f32le", "s16le", "s24le", "s32le"])
def test_raw_pcm_on_stdin(fmt: str) -> None:
    x = _stereo(0.3, 22050).astype(np.float64)
    scale = {"s16le": 2**15, "s24le": 2**23, "s32le": 2**31}.get(fmt)
    if scale is None:
        data, expected = x.astype("<f4").tobytes(), x.astype(np.float32)
    else:
        ints = np.clip(np.round(x * scale), -scale, scale - 1).astype(np.int64)
        if fmt == "s24le":
            data = (ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]).tobytes()
        else:
            data = ints.astype("<i2" if fmt == "s16le" else "<i4").tobytes()
        expected = (ints / scale).astype(np.float32)
    data += b"\x01\x02"  # a trailing partial frame is dropped
    source = open_audio("-", RawFormat(22050, 2, fmt), stdin=io.BytesIO(data))
    assert source.frames is None
    np.testing.assert_array_equal(source.read_all(), expected)


def test_bad_stdin_is_named() -> None:
    with pytest.raises(AudioError, match=r"not a WAV stream .*give --rate and --channels"):
        open_audio("-", stdin=io.BytesIO(b"\x00" * 100))
    with pytest.raises(AudioError, match="ends before its data chunk"):
        open_audio("-", stdin=io.BytesIO(b"RIFF\xff\xff\xff\xffWAVEfmt "))
    header = io.BytesIO()
    sf.write(header, np.zeros((10, 1)), 8000, format="WAV")
    with pytest.raises(AudioError, match="--rate 44100 disagrees with the WAV stream's header"):
        open_audio("-", RawFormat(44100), stdin=io.BytesIO(header.getvalue()))
    with pytest.raises(AudioError, match="holds no audio samples"):
        open_audio("-", RawFormat(8000, 1), stdin=io.BytesIO(b"")).read_all()


def test_the_fallback_decoder_streams_what_librosa_loaded(tmp_path: Path) -> None:
    """A file libsndfile cannot open (AAC in MP4) goes through audioread, block by block,
    with the samples librosa's loader returned."""
    src = tmp_path / "a.wav"
    sf.write(src, _stereo(1.0, 44100), 44100)
    path = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-c:a", "aac", str(path)],
                   check=True, timeout=60)
    with pytest.raises(sf.LibsndfileError):
        sf.info(path)
    audio, rate = read_audio(path)
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, expected_rate = librosa.load(str(path), sr=None, mono=False)
    assert rate == expected_rate == 44100
    np.testing.assert_array_equal(audio, np.atleast_2d(expected).T)
