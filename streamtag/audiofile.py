"""Reading audio for analysis, block by block: files (WAV, FLAC, OGG, MP3, anything libsndfile
reads) and standard input (a WAV stream, or raw PCM of a stated format).

libsndfile (through soundfile) decodes the four formats; files it cannot open fall back to
audioread (ffmpeg, GStreamer or Core Audio, as librosa's loader did), also read block by block.
Standard input cannot seek, so its WAV header is parsed here (the RIFF/RF64 chunks as ffmpeg and
sox write them to a pipe, with the data size unknown) and its samples converted as libsndfile
converts them: the same float32 values as reading the same WAV file.

Every source yields float32 blocks [n, channels] in [-1, 1]; memory does not depend on the
length of the audio.
"""

from __future__ import annotations

import struct
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from streamtag.errors import AudioError

#: Samples [per channel] per block read from a source (1.5 s at 44.1 kHz: ~0.5 MB in stereo).
BLOCK_FRAMES = 65536
#: The name that means standard input.
STDIN = "-"
#: Raw PCM sample formats on standard input (``--sample-format``): interleaved little-endian
#: float32 in [-1, 1], or signed integers of full scale 2^15, 2^23, 2^31.
SAMPLE_FORMATS = ("f32le", "s16le", "s24le", "s32le")


@dataclass(frozen=True)
class RawFormat:
    """Raw PCM on standard input: interleaved little-endian samples.

    rate_hz [Hz], channels, sample_format: one of SAMPLE_FORMATS (f32le: float32 in [-1, 1];
    s16le/s24le/s32le: signed integers, full scale 2^15 / 2^23 / 2^31).
    """

    rate_hz: int | None = None
    channels: int | None = None
    sample_format: str = "f32le"


#: Sample rates of audio inputs [Hz]: beyond them resampling to the model's rate costs without
#: bound (a 1 Hz file asked for 76 GB) and no real recording lies there.
FILE_RATES_HZ = (4000, 768000)


def check_rate(name: str, rate: int) -> None:
    """AudioError naming an input whose sample rate is outside ``FILE_RATES_HZ``."""
    lo, hi = FILE_RATES_HZ
    if not lo <= rate <= hi:
        raise AudioError(f"{name}: sample rate {rate} Hz, expected {lo}..{hi} Hz")


def shorter_than_a_hop(name: str, frames: int, rate: int, hop_s: float) -> AudioError:
    """The error for an input shorter than one hop: it makes no estimate (README: Commands)."""
    return AudioError(f"{name}: {frames / rate:.3f} s of audio, shorter than one hop "
                      f"({hop_s:g} s): no estimate")


def check_long_enough(name: str, audio: np.ndarray, rate: int, hop_s: float) -> None:
    """AudioError naming decoded ``audio`` [n, channels] shorter than one hop."""
    if audio.shape[0] < round(hop_s * rate):
        raise shorter_than_a_hop(name, audio.shape[0], rate, hop_s)


@dataclass
class AudioSource:
    """An opened audio input. ``blocks()`` yields float32 [n, channels] blocks once, in order,
    and raises AudioError naming the input if decoding fails partway or it holds no samples.
    frames: total samples per channel when known up front (a file), else None (a pipe)."""

    name: str
    rate_hz: int
    channels: int
    frames: int | None
    _read: Callable[[], Iterator[np.ndarray]]
    _close: Callable[[], None] = lambda: None

    @property
    def seconds(self) -> float | None:
        """Length [s] when known."""
        return None if self.frames is None else self.frames / self.rate_hz

    def blocks(self) -> Iterator[np.ndarray]:
        total = 0
        try:
            for block in self._read():
                if not block.shape[0]:
                    continue
                if not np.isfinite(block).all():
                    # Decoders can return NaN/Inf for corrupt frames; the frontend would zero
                    # them anyway, but the user should know the file is damaged.
                    raise AudioError(f"{self.name}: contains non-finite samples (corrupt file?)")
                total += block.shape[0]
                yield block
        except AudioError:
            raise
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError, EOFError) as e:
            raise AudioError(f"{self.name}: cannot read audio ({e})") from e
        finally:
            self.close()
        if total == 0:
            raise AudioError(f"{self.name}: holds no audio samples")

    def close(self) -> None:
        self._close()

    def read_all(self) -> np.ndarray:
        """Every sample at once, [n, channels] float32."""
        parts = list(self.blocks())
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode ``path`` → (samples [n, channels] float32 in [-1, 1], sample rate [Hz])."""
    source = open_audio(path)
    return source.read_all(), source.rate_hz


def open_audio(path: str | Path, raw: RawFormat | None = None,
               stdin: BinaryIO | None = None) -> AudioSource:
    """Open a file, or standard input for ``-`` (``raw``: its format when it is not a WAV
    stream; ``stdin``: the byte stream, default sys.stdin.buffer). Raises AudioError naming
    the input when it cannot be opened."""
    if str(path) == STDIN:
        return open_stdin(stdin if stdin is not None else sys.stdin.buffer, raw or RawFormat())
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as sf_err:
        return _open_audioread(path, sf_err)

    def read() -> Iterator[np.ndarray]:
        while True:
            block = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
            if not block.shape[0]:
                return
            yield block

    return AudioSource(str(path), int(f.samplerate), int(f.channels), int(f.frames), read,
                       f.close)


def _open_audioread(path: Path, sf_err: Exception) -> AudioSource:
    """The fallback decoder, streamed: its 16-bit buffers → float32 blocks, scaled as librosa
    scaled them (x / 2^15)."""
    try:
        import audioread

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = audioread.audio_open(str(path))
    except Exception as e:  # any decoder failure means "cannot read"
        raise AudioError(
            f"{path}: cannot read audio ({sf_err}; fallback decoder: {type(e).__name__})"
        ) from e
    channels = int(f.channels)

    def read() -> Iterator[np.ndarray]:
        carry = b""
        frame_bytes = 2 * channels
        for buf in f:
            data = carry + bytes(buf)
            cut = len(data) - len(data) % frame_bytes  # buffers may end inside a frame
            carry = data[cut:]
            if cut:
                x = np.frombuffer(data[:cut], "<i2").astype(np.float32) * np.float32(2.0**-15)
                yield x.reshape(-1, channels)

    frames = round(f.duration * f.samplerate) if f.duration else None
    return AudioSource(str(path), int(f.samplerate), channels, frames, read, f.close)


# -- standard input ------------------------------------------------------------------------------
def _read_exact(stream: BinaryIO, n: int) -> bytes:
    """n bytes, or fewer only at the end of the stream (a pipe hands out what it has)."""
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def open_stdin(stream: BinaryIO, raw: RawFormat) -> AudioSource:
    """Standard input: a WAV stream if it starts with a RIFF/RF64 header, else raw PCM as
    ``raw`` says (rate and channels then required)."""
    head = _read_exact(stream, 4)
    if head in (b"RIFF", b"RF64"):
        return _open_wav_stream(stream, head, raw)
    if raw.rate_hz is None or raw.channels is None:
        raise AudioError("-: standard input is not a WAV stream (no RIFF header): for raw PCM "
                         "give --rate and --channels (and --sample-format, default f32le)")
    return _pcm_source("-", stream, raw.rate_hz, raw.channels, raw.sample_format, None, head)


def _open_wav_stream(stream: BinaryIO, head: bytes, raw: RawFormat) -> AudioSource:
    rest = _read_exact(stream, 8)
    if len(rest) < 8 or rest[4:8] != b"WAVE":
        raise AudioError("-: standard input starts with RIFF but is not a WAV stream")
    fmt: tuple[str, int, int] | None = None
    data_size: int | None = None
    while True:
        chunk = _read_exact(stream, 8)
        if len(chunk) < 8:
            raise AudioError("-: WAV stream ends before its data chunk")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"data":
            # 0 or 0xFFFFFFFF: written before the length was known (ffmpeg, sox to a pipe);
            # RF64 keeps the real size in ds64.
            if size in (0, 0xFFFFFFFF):
                size = data_size if head == b"RF64" and data_size else None
            data_size = size
            break
        body = _read_exact(stream, size + (size & 1))  # chunks are padded to even lengths
        if len(body) < size:
            raise AudioError(f"-: WAV stream ends inside its {cid!r} chunk")
        if cid == b"fmt ":
            fmt = _wav_format(body)
        elif cid == b"ds64" and size >= 16:
            data_size = struct.unpack("<Q", body[8:16])[0]
    if fmt is None:
        raise AudioError("-: WAV stream has no fmt chunk before its data")
    sample_format, rate, channels = fmt
    for flag, given, found in (("--rate", raw.rate_hz, rate),
                               ("--channels", raw.channels, channels)):
        if given is not None and given != found:
            raise AudioError(f"-: {flag} {given} disagrees with the WAV stream's header "
                             f"({found}); leave {flag} out for WAV input")
    return _pcm_source("-", stream, rate, channels, sample_format, data_size, b"")


def _wav_format(body: bytes) -> tuple[str, int, int]:
    """A fmt chunk → (sample format key, rate [Hz], channels)."""
    if len(body) < 16:
        raise AudioError("-: WAV fmt chunk is too short")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
        tag = struct.unpack("<H", body[24:26])[0]
    kinds = {(1, 16): "s16le", (1, 24): "s24le", (1, 32): "s32le", (3, 32): "f32le",
             (3, 64): "f64le", (1, 8): "u8"}
    kind = kinds.get((tag, bits))
    if kind is None:
        raise AudioError(f"-: WAV stream's sample format is not supported (format tag {tag}, "
                         f"{bits} bits): use 8/16/24/32-bit PCM or 32/64-bit float")
    if channels < 1 or rate < 1:
        raise AudioError(f"-: WAV header says {channels} channel(s) at {rate} Hz")
    return kind, rate, channels


def _pcm_source(name: str, stream: BinaryIO, rate: int, channels: int, sample_format: str,
                data_size: int | None, head: bytes) -> AudioSource:
    """Interleaved samples from ``stream`` (``head``: bytes already read), at most data_size
    bytes when known, as float32 blocks [n, channels], converted as libsndfile converts them."""
    width = {"f32le": 4, "s16le": 2, "s24le": 3, "s32le": 4, "f64le": 8, "u8": 1}[sample_format]
    frame_bytes = width * channels
    frames = None if data_size is None else data_size // frame_bytes

    def read() -> Iterator[np.ndarray]:
        left = data_size  # data bytes still to read (None: up to the end of the stream)
        carry = head
        while True:
            want = BLOCK_FRAMES * frame_bytes - len(carry)
            if left is not None:
                want = min(want, left)
            chunk = _read_exact(stream, want) if want > 0 else b""
            if left is not None:
                left -= len(chunk)
            data = carry + chunk
            cut = len(data) - len(data) % frame_bytes
            carry = data[cut:]
            if cut:
                yield _decode(data[:cut], sample_format).reshape(-1, channels)
            if len(chunk) < want or left == 0:
                return  # the end (a trailing partial frame is dropped)

    return AudioSource(name, rate, channels, frames, read)


def _decode(data: bytes, sample_format: str) -> np.ndarray:
    """Little-endian samples → float32 in [-1, 1]."""
    if sample_format == "f32le":
        return np.frombuffer(data, "<f4").astype(np.float32)
    if sample_format == "f64le":
        return np.frombuffer(data, "<f8").astype(np.float32)
    if sample_format == "u8":
        return (np.frombuffer(data, np.uint8).astype(np.float32) - 128) * np.float32(1 / 128)
    if sample_format == "s24le":
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        x = (b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)  # as a 32-bit sample
        return x.astype(np.float32) * np.float32(2.0**-31)
    if sample_format == "s16le":
        return np.frombuffer(data, "<i2").astype(np.float32) * np.float32(2.0**-15)
    return np.frombuffer(data, "<i4").astype(np.float32) * np.float32(2.0**-31)
