"""The one log-mel frontend: incremental (streaming) and offline, with the same frames.

Framing is causal by construction. The signal is preceded by ``n_fft - hop`` zeros, so frame
``k`` (0-based) covers signal samples ``[(k + 1) * hop - n_fft, (k + 1) * hop)`` and is complete
the moment sample ``(k + 1) * hop - 1`` arrives: the frontend adds no latency beyond its window,
and after ``K`` frames the stream time is exactly ``K * hop / sample_rate_hz`` seconds.

Streaming keeps only the ``n_fft - hop`` samples the next frame still needs, whatever the block
sizes it is fed; offline analysis frames the whole signal at once. Both go through
``_features``, so a frame's value does not depend on how the audio arrived.

A frame's feature row is its ``n_mels`` (log-)mel bands followed, when ``n_chroma`` is 12, by
twelve log pitch-class rows (chroma) from the same power spectrum: the mel bands are about two
semitones wide at 400 Hz, too coarse to tell a major third from a minor one, and mode is what
valence hinges on. The pitch-class rows remember the last few seconds (a leaky average of each
frame's pitch-class shares, ``chroma_memory_s``): a key shows in the notes of several seconds,
rarely in one (measured on the corpus: a key-template probe tells major from minor in 64 % of
1 s windows, 91 % of 6 s clips).

Besides the feature row, each frame carries the mean square of its ``hop`` newest samples (the
engine turns it into ``level_db``) and, for the fast lane, cheap descriptors of its power
spectrum (spectral centroid, flatness, onset strength).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from streamtag.record import FAST_NAMES  # the order of ``Frames.fast`` columns
from streamtag.resample import Resampler


@dataclass(frozen=True)
class FrontendConfig:
    """Parameters of the log-mel frontend (stored in every checkpoint).

    sample_rate_hz: the model rate; input at other rates is resampled to it.
    n_fft [samples], win_length [samples] (<= n_fft, centred Hann), hop_length [samples].
    n_mels bands between f_min_hz and f_max_hz (None: Nyquist), HTK mel scale as torchaudio.
    power: 2 for a power spectrogram, 1 for magnitude. normalized: divide the STFT by the
    window's L2 norm (torchaudio's ``normalized=True``). log: natural log of (mel + log_floor);
    the seed preset feeds linear power to its CNN, so ``log`` is off there.
    n_chroma: 0, or 12 to append pitch-class rows (chroma of the spectral peaks between
    chroma_f_min_hz and chroma_f_max_hz; see ``spectral_peak_chroma``) to each frame's mel bands.
    chroma_memory_s: time constant [s] of the leaky average of the frames' pitch-class shares
    that the rows hold; 0 = each frame's own.
    """

    sample_rate_hz: int = 22050
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 441
    n_mels: int = 64
    f_min_hz: float = 30.0
    f_max_hz: float | None = None
    power: float = 2.0
    normalized: bool = False
    log: bool = True
    log_floor: float = 1e-6
    n_chroma: int = 0
    chroma_f_min_hz: float = 150.0
    chroma_f_max_hz: float = 5000.0
    chroma_memory_s: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate_hz <= 0:
            problems.append(f"sample_rate_hz: expected > 0, got {self.sample_rate_hz}")
        if self.n_fft < 2:
            problems.append(f"n_fft: expected >= 2, got {self.n_fft}")
        if not 1 <= self.win_length <= self.n_fft:
            problems.append(f"win_length: expected 1..n_fft ({self.n_fft}), got {self.win_length}")
        if not 1 <= self.hop_length <= self.n_fft:
            problems.append(f"hop_length: expected 1..n_fft ({self.n_fft}), got {self.hop_length}")
        if self.n_mels < 1:
            problems.append(f"n_mels: expected >= 1, got {self.n_mels}")
        nyquist = self.sample_rate_hz / 2
        f_max = nyquist if self.f_max_hz is None else self.f_max_hz
        if not 0 <= self.f_min_hz < f_max <= nyquist:
            problems.append(
                f"f_min_hz/f_max_hz: expected 0 <= f_min < f_max <= {nyquist:g} (Nyquist), "
                f"got {self.f_min_hz:g}/{f_max:g}"
            )
        if self.power not in (1.0, 2.0):
            problems.append(f"power: expected 1 or 2, got {self.power}")
        if self.log_floor <= 0:
            problems.append(f"log_floor: expected > 0, got {self.log_floor}")
        if self.n_chroma not in (0, 12):
            problems.append(f"n_chroma: expected 0 or 12, got {self.n_chroma}")
        if self.n_chroma and not 0 < self.chroma_f_min_hz < self.chroma_f_max_hz <= nyquist:
            problems.append(
                f"chroma_f_min_hz/chroma_f_max_hz: expected 0 < min < max <= {nyquist:g}, "
                f"got {self.chroma_f_min_hz:g}/{self.chroma_f_max_hz:g}"
            )
        if not 0.0 <= self.chroma_memory_s <= 600.0:
            problems.append(f"chroma_memory_s: expected 0..600, got {self.chroma_memory_s}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def n_features(self) -> int:
        """Rows of a frame: the mel bands, then the pitch-class rows."""
        return self.n_mels + self.n_chroma

    @property
    def frame_rate_hz(self) -> float:
        return self.sample_rate_hz / self.hop_length

    @property
    def frame_s(self) -> float:
        """Frame period [s]: ``hop_length`` samples at the model rate."""
        return self.hop_length / self.sample_rate_hz

    def hop_samples(self, hop_frames: int) -> int:
        """Length [model-rate samples] of a model hop of ``hop_frames`` frames."""
        return hop_frames * self.hop_length

    def hop_seconds(self, hop_frames: int) -> float:
        """Length [s] of a model hop of ``hop_frames`` frames: the one formula the engine,
        the trainer and the evaluation share (0.5 s for the shipped 25 × 20 ms)."""
        return self.hop_samples(hop_frames) / self.sample_rate_hz


#: Seed 000 exactly: torchaudio MelSpectrogram(n_fft=254, win_length=224, hop 112, power 2,
#: normalized=True), 128 HTK mels with no filter norm, linear power into the CNN.
SEED_FRONTEND = FrontendConfig(
    sample_rate_hz=44100, n_fft=254, win_length=224, hop_length=112, n_mels=128,
    f_min_hz=0.0, f_max_hz=None, power=2.0, normalized=True, log=False,
)
#: What the project ships: 20 ms hop (50 frames/s, so a 0.5 s hop is exactly 25 frames and the
#: fast lane runs at 50 Hz from the same spectra), a 46 ms window whose 21.5 Hz bins leave no
#: mel band empty above 30 Hz, 64 log-mel bands (a quarter of the seed's CNN input per second),
#: and 12 pitch-class rows.
DEFAULT_FRONTEND = FrontendConfig(n_chroma=12, chroma_memory_s=4.0)
#: Offline analysis frames a signal in runs of this many frames (82 s at the default 20 ms
#: hop): a run's FFT, power spectra and rows take ~50 MB per channel, whatever the file's length.
OFFLINE_RUN_FRAMES = 4096
FRONTEND_PRESETS: dict[str, FrontendConfig] = {"seed": SEED_FRONTEND, "default": DEFAULT_FRONTEND}



@dataclass
class Frames:
    """A run of consecutive frames.

    features: [N, n_features] float32, each frame's feature row: the n_mels bands (log-mel if
    the config says so), then the config's n_chroma log pitch-class rows; [N, 0] from a
    frontend that defers its rows (see ``power``).
    energy: [N] float64, mean square of each frame's ``hop`` newest samples [full scale²].
    fast: [N, 4] float32, the fast lane (``FAST_NAMES``): loudness [dBFS of the frame],
    spectral centroid [Hz], spectral flatness [0..1], onset strength (half-wave rectified
    log-power flux, mean over bins).
    power: [N, n_freqs] float32 power spectra, only from a frontend that defers its feature
    rows (``defer_rows``): ``features`` is then [N, 0] until ``MelFrontend.rows`` computes the
    rows from these spectra (``streamtag.hops`` does, once per hop); its offline runs carry both
    the rows and the spectra (the beat tracker reads them).
    """

    features: np.ndarray
    energy: np.ndarray
    fast: np.ndarray
    power: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.energy.shape[0])

    @staticmethod
    def empty(n_features: int, n_fast: int = len(FAST_NAMES)) -> Frames:
        return Frames(
            np.zeros((0, n_features), np.float32), np.zeros(0, np.float64),
            np.zeros((0, n_fast), np.float32),
        )

    @staticmethod
    def concat(parts: list[Frames], n_features: int) -> Frames:
        if not parts:
            return Frames.empty(n_features)
        return Frames(
            np.concatenate([p.features for p in parts]),
            np.concatenate([p.energy for p in parts]),
            np.concatenate([p.fast for p in parts]),
            _concat_or_none([p.power for p in parts if p.power is not None]),
        )


def _concat_or_none(arrays: list[np.ndarray]) -> np.ndarray | None:
    return np.concatenate(arrays) if arrays else None


def downmix(block: np.ndarray, channels: list[int] | None = None) -> np.ndarray:
    """Mono float32 [n] from ``block`` [n] or [n, C]: the mean of the selected channels (all if
    None), summed in float64.

    Non-finite samples become 0 so one bad sample cannot poison the model's state.
    """
    block = np.asarray(block)
    if block.ndim == 1:
        mono = block.astype(np.float32, copy=False)
    elif block.ndim == 2:
        if channels is not None:
            bad = [c for c in channels if not 0 <= c < block.shape[1]]
            if bad:
                raise ValueError(f"channels {bad} out of range: input has {block.shape[1]}")
            block = block[:, channels]
        # Column by column: numpy reduces a short inner axis (axis=1 of [n, 2]) ~15x slower
        # than it adds two columns, and this runs 50 times a second.
        acc = block[:, 0].astype(np.float64)
        for c in range(1, block.shape[1]):
            acc += block[:, c]
        mono = (acc / block.shape[1]).astype(np.float32)
    else:
        raise ValueError(f"audio block must be [n] or [n, channels], got shape {block.shape}")
    return finite(mono)


def finite(a: np.ndarray) -> np.ndarray:
    """``a`` with NaN and ±Inf replaced by 0 (a copy only when there are any)."""
    ok = np.isfinite(a)
    # count_nonzero is one C call; ndarray.all goes through Python (this runs 50 times a second).
    return a if np.count_nonzero(ok) == ok.size else np.where(ok, a, 0).astype(a.dtype, copy=False)


def htk_mel_filterbank(n_freqs: int, f_min_hz: float, f_max_hz: float, n_mels: int,
                       sample_rate_hz: int) -> torch.Tensor:
    """Triangular HTK-mel filterbank, unnormalised → [n_freqs, n_mels] float32.

    The same arithmetic, in the same order and precision, as torchaudio's
    ``melscale_fbanks(..., norm=None, mel_scale="htk")``, so the seed preset stays seed 000's
    transform without torchaudio installed (tests compare it with spectra torchaudio made).
    Bands that fall between FFT bins (the seed's n_fft 254) are all zeros.
    """
    all_freqs = torch.linspace(0, sample_rate_hz // 2, n_freqs)
    m_min = 2595.0 * math.log10(1.0 + f_min_hz / 700.0)
    m_max = 2595.0 * math.log10(1.0 + f_max_hz / 700.0)
    m_pts = torch.linspace(m_min, m_max, n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]  # [n_mels + 1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # [n_freqs, n_mels + 2]
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1), torch.min(down, up))


class MelFrontend:
    """Incremental log-mel frontend with an offline twin (``process_offline``).

    ``process(block)`` takes mono samples at ``input_rate_hz`` (any length, including 0 or 1)
    and returns the frames completed by them. ``reset()`` forgets all past audio.
    fast_lane: also compute the fast-lane descriptors (``Frames.fast`` is [N, 0] without).
    channels: independent signals (the engine's streams) framed together, so one FFT batch and
    one set of small-op overheads serve them all (``process_channels``).
    defer_rows: ``process``/``process_channels`` hand out each frame's power spectrum
    (``Frames.power``) instead of its feature row (``Frames.features`` is then [N, 0]); ``rows``
    computes the rows later, in frame order, from any number of frames at once. The hop stage
    (``streamtag.hops``) computes them once per hop, when the hop completes; a live frame then
    costs only its FFT and the fast lane (measured on the 2-core VM: ~1.4 → ~0.9 ms per frame
    with cold caches). The offline methods compute the rows.
    """

    def __init__(
        self,
        config: FrontendConfig,
        input_rate_hz: int | None = None,
        fast_lane: bool = True,
        channels: int = 1,
        defer_rows: bool = False,
    ) -> None:
        if channels < 1:
            raise ValueError(f"channels: expected >= 1, got {channels}")
        self.config = config
        self.fast_lane = fast_lane
        self.channels = channels
        self.defer_rows = defer_rows
        self.input_rate_hz = input_rate_hz or config.sample_rate_hz
        self._resampler = (
            Resampler(self.input_rate_hz, config.sample_rate_hz)
            if self.input_rate_hz != config.sample_rate_hz
            else None
        )
        n_fft, win = config.n_fft, config.win_length
        window = np.zeros(n_fft)
        left = (n_fft - win) // 2  # torch.stft centres a short window inside n_fft
        window[left:left + win] = torch.hann_window(win, periodic=True, dtype=torch.float64).numpy()
        if config.normalized:
            window /= np.sqrt(np.sum(window**2))
        self._window = torch.from_numpy(window).float()
        self._window_np = self._window.numpy()  # [n_fft] float32, the same values
        fb = htk_mel_filterbank(
            config.n_freqs, config.f_min_hz,
            config.f_max_hz if config.f_max_hz is not None else config.sample_rate_hz / 2,
            config.n_mels, config.sample_rate_hz,
        )
        self._fbank = fb.float()  # [n_freqs, n_mels]
        freqs = torch.linspace(0, config.sample_rate_hz / 2, config.n_freqs).numpy()
        # [n_freqs, 2]: one product of the power spectrum gives its sum and first moment.
        self._moments = np.stack([np.ones_like(freqs), freqs], axis=1)
        # Sized up front: the tail a frame still needs never exceeds n_fft - hop samples.
        self._keep = n_fft - config.hop_length
        self._n_fast = len(FAST_NAMES) if fast_lane else 0
        self.reset()

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all audio: the next sample is stream time 0."""
        # Per channel: the causal zero prefix, then the newest samples.
        # float32 throughout: the FFT runs in float32 anyway, so casting early changes nothing.
        self._tail = np.zeros((self.channels, self._keep), np.float32)
        # Input held back until it completes a frame (see _push).
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._prev_logpow: np.ndarray | None = None  # [C, n_freqs], for the onset flux
        self._chroma_avg: np.ndarray | None = None  # [C, 12], the pitch-class memory
        self.frames_out = 0
        if self._resampler is not None:
            self._resampler.reset()

    @property
    def latency_samples(self) -> float:
        """Delay [model-rate samples] between a sound entering and its frame, beyond framing."""
        return self._resampler.delay_out_samples if self._resampler is not None else 0.0

    # -- processing ------------------------------------------------------------------------
    def process(self, block: np.ndarray) -> Frames:
        """Feed samples [n] (or [n, C], mixed to mono) at ``input_rate_hz``; return the frames
        they complete. For a frontend of one channel."""
        return self._push(downmix(block)[None, :])[0]

    def process_channels(self, block: np.ndarray) -> list[Frames]:
        """Feed [n, channels] samples, each column an independent signal (a stream); return
        each channel's completed frames. One FFT batch serves every channel."""
        return self._push(self._columns(block).T)

    def process_offline(self, signal: np.ndarray) -> Frames:
        """Frames of a whole signal [n] (or [n, C], mixed to mono), from a fresh state.

        Leaves this object reset. Equal to feeding ``signal`` to ``process`` in any blocks.
        """
        return self._offline(downmix(signal)[None, :])[0]

    def process_offline_channels(self, signal: np.ndarray) -> list[Frames]:
        """``process_offline`` for [n, channels] independent signals."""
        return self._offline(self._columns(signal).T)

    def _columns(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"expected a block [n, {self.channels}], got shape {block.shape}")
        return finite(block)

    def input_needed(self, frames: int = 1) -> int:
        """Input samples [at input_rate_hz] still to come before the next ``frames`` frames
        complete."""
        # model-rate samples
        need_out = self.config.n_fft - self._tail.shape[1] + (frames - 1) * self.config.hop_length
        if self._resampler is None:
            return need_out - self._pending_n
        r = self._resampler
        # Output m exists once input floor(m * down / up) has arrived.
        last = r.outputs_produced + need_out - 1
        return last * r.down // r.up + 1 - r.inputs_consumed - self._pending_n

    def _push(self, x: np.ndarray) -> list[Frames]:
        """x [C, n] → per channel, the frames completed by x.

        Input that completes no frame is only held (a live 5 ms capture block usually does
        not): frames come out at exactly the same samples, with a fraction of the calls.
        """
        if x.shape[0] != self.channels:
            raise ValueError(f"this frontend has {self.channels} channel(s), got {x.shape[0]}")
        if x.shape[1] < self.input_needed():
            self._pending.append(x)
            self._pending_n += x.shape[1]
            return self._no_frames(self.channels)
        if self._pending:
            x = np.concatenate([*self._pending, x], axis=1)
            self._pending.clear()
            self._pending_n = 0
        if self._resampler is not None:
            x = self._resampler.process(x).astype(np.float32)
        buf = np.concatenate([self._tail, x], axis=1) if x.shape[1] else self._tail
        n_frames = self._n_frames(buf.shape[1])
        if n_frames <= 0:
            self._tail = buf
            return self._no_frames(self.channels)
        out = self._features(buf, n_frames, defer_rows=self.defer_rows)
        self._tail = buf[:, n_frames * self.config.hop_length:].copy()
        self.frames_out += n_frames
        return out

    def process_offline_blocks(self, blocks: Iterable[np.ndarray]) -> Iterator[list[Frames]]:
        """Frames of a whole signal that arrives as consecutive blocks [n, channels] (any sizes,
        e.g. read from a file block by block), from a fresh state; yields each channel's frames
        a run of at most ``OFFLINE_RUN_FRAMES`` at a time, so memory does not grow with the
        signal. The frames equal ``process_offline_channels`` of the whole signal, bit for bit,
        whatever the block sizes: the runs start at the same frames. Leaves this object reset.
        """
        return self._offline_runs(self._columns(b).T for b in blocks)

    def _offline(self, x: np.ndarray) -> list[Frames]:
        parts = list(self._offline_runs(iter([x])))
        if not parts:
            return self._no_frames(x.shape[0])
        return [Frames.concat([p[c] for p in parts], self.config.n_features)
                for c in range(x.shape[0])]

    def _offline_runs(self, blocks: Iterator[np.ndarray]) -> Iterator[list[Frames]]:
        """[C, n] blocks → per run of OFFLINE_RUN_FRAMES frames (the last one shorter), each
        channel's Frames with their feature rows."""
        self.reset()
        hop, run = self.config.hop_length, OFFLINE_RUN_FRAMES
        # A run of frames needs keep + run·hop samples; the next run starts run·hop later.
        need = self._keep + run * hop
        try:
            # The causal zero prefix, then samples not yet framed, joined only when they
            # complete a run (joining each block would copy the run again and again).
            parts = [np.zeros((self.channels, self._keep), np.float32)]
            held = self._keep
            if self._resampler is not None:
                blocks = self._resampled(blocks)
            for x in blocks:
                if not x.shape[1]:
                    continue
                parts.append(x.astype(np.float32, copy=False))
                held += x.shape[1]
                if held < need:
                    continue
                buf = np.concatenate(parts, axis=1)
                # Runs start at frames 0, run, 2·run …: the per-frame arithmetic is identical
                # whatever the runs, only the onset flux needs the previous run's last frame.
                start = 0
                while buf.shape[1] - start >= need:
                    yield self._features(buf[:, start:], run)
                    start += run * hop
                parts, held = [buf[:, start:]], buf.shape[1] - start
            buf = np.concatenate(parts, axis=1)
            n_frames = self._n_frames(buf.shape[1])
            if n_frames > 0:
                yield self._features(buf, n_frames)
        finally:
            self.reset()

    def _resampled(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """[C, n] input blocks → the resampler's float32 output, fed in whole multiples of its
        ``run_in`` (whole rows of its matrix products, none computed twice; the output does
        not depend on the blocks)."""
        r = self._resampler
        assert r is not None
        held: list[np.ndarray] = []
        n = 0
        for x in blocks:
            held.append(x)
            n += x.shape[1]
            if n >= r.run_in:
                x = np.concatenate(held, axis=1) if len(held) > 1 else held[0]
                cut = n - n % r.run_in
                yield r.process(x[:, :cut]).astype(np.float32)
                held, n = [x[:, cut:]], n - cut
        if n:
            yield r.process(np.concatenate(held, axis=1)).astype(np.float32)

    def _no_frames(self, channels: int) -> list[Frames]:
        rows = 0 if self.defer_rows else self.config.n_features
        return [Frames.empty(rows, self._n_fast) for _ in range(channels)]

    def _n_frames(self, n_samples: int) -> int:
        n_fft, hop = self.config.n_fft, self.config.hop_length
        return (n_samples - n_fft) // hop + 1 if n_samples >= n_fft else 0

    def _features(self, buf: np.ndarray, n_frames: int,
                  defer_rows: bool = False) -> list[Frames]:
        """The first ``n_frames`` frames of ``buf`` [C, L] float32 (frame k = samples
        ``[k*hop, k*hop + n_fft)``) → per channel Frames. Carries the onset-flux state.

        One real FFT of the windowed frames (``torch.stft``'s arithmetic, float32): the same
        per-frame arithmetic whatever the number of frames or channels. The rest is numpy,
        float32: the daemon runs this for one frame at a time, 50 times a second, where each
        call's fixed cost is most of the work, so it makes as few calls as it can.
        """
        cfg = self.config
        c, hop = buf.shape[0], cfg.hop_length
        used = self._keep + n_frames * hop  # = (n_frames - 1) * hop + n_fft
        xs = np.ascontiguousarray(buf[:, :used], dtype=np.float32)
        # [C, N, n_fft]: the frames, a strided view (frame k starts at sample k*hop).
        s0, s1 = xs.strides  # (np.ndarray on the buffer: as_strided costs ~10x more per call)
        frames = np.ndarray((c, n_frames, cfg.n_fft), np.float32, xs, 0, (s0, hop * s1, s1))
        # numpy's rfft of the windowed frames was cheaper per live frame (~15 % with cold
        # caches), but with it the benchmark's JACK graph (5 ms periods) missed deadlines about
        # twice a second, at the hop rate (cause not found); with torch.stft, none. Kept torch.
        # torch.stft's own arithmetic (the window product, then its real FFT of each frame),
        # called directly: bit for bit the same (tests/test_frontend.py), without torch.stft's
        # per-call checks and reshapes, ~40 % of its cost for a live frame.
        spec = torch.fft.rfft(torch.from_numpy(frames * self._window_np)).numpy()
        power = np.square(spec.real)
        power += np.square(spec.imag)  # [C, N, n_freqs]
        # Mean square of each frame's hop newest samples (the engine's level_db): frame k's
        # newest samples are buf[keep + k*hop : keep + (k+1)*hop].
        newest = xs[:, self._keep:].reshape(c, n_frames, hop)
        energy = np.einsum("cnh,cnh->cn", newest, newest, dtype=np.float64) / hop
        fast = (self._fast_lane(frames, power) if self.fast_lane
                else np.zeros((c, n_frames, 0), np.float32))
        if defer_rows:
            rows = np.zeros((c, n_frames, 0), np.float32)
            return [Frames(rows[i], energy[i], fast[i], power[i]) for i in range(c)]
        rows = self.rows(power)
        # A frontend that defers rows (the engine's) keeps the spectra in its offline runs
        # too: the beat tracker reads them (streamtag.tempo).
        return [Frames(rows[i], energy[i], fast[i], power[i] if self.defer_rows else None)
                for i in range(c)]

    def _fast_lane(self, frames: np.ndarray, power: np.ndarray) -> np.ndarray:
        """Frames [C, N, n_fft] and their power spectra [C, N, n_freqs] (float32) → [C, N, 4]
        fast-lane values (float32; one log serves two, one product gives the spectrum's sum
        and centroid)."""
        cfg = self.config
        c, n_frames = power.shape[:2]
        eps = np.float32(1e-10)
        frames = frames[..., cfg.n_fft - cfg.win_length:]  # each frame's windowed (newest) part
        out = np.empty((c, n_frames, 4), np.float32)
        mean_square = np.einsum("cnw,cnw->cn", frames, frames) / np.float32(cfg.win_length)
        out[..., 0] = 10 * np.log10(mean_square + eps)
        moments = power @ self._moments  # [C, N, 2]: Σ p, Σ f·p
        out[..., 1] = moments[..., 1] / (moments[..., 0] + eps)
        logp = np.log(power + eps)
        # Means as sums times 1/n: ndarray.mean is Python around the same C sum.
        inv_n = np.float32(1.0 / cfg.n_freqs)
        out[..., 2] = np.minimum(np.exp(np.add.reduce(logp, axis=2) * inv_n)
                                 / (moments[..., 0] * inv_n + eps), 1.0)
        first_prev = self._prev_logpow if self._prev_logpow is not None else logp[:, 0]
        if n_frames == 1:
            flux = logp[:, 0] - first_prev
            out[:, 0, 3] = np.add.reduce(np.maximum(flux, 0.0, out=flux), axis=1) * inv_n
        else:
            prev = np.concatenate([first_prev[:, None, :], logp[:, :-1]], axis=1)
            flux = logp - prev
            out[..., 3] = np.add.reduce(np.maximum(flux, 0.0, out=flux), axis=2) * inv_n
        self._prev_logpow = logp[:, -1].copy()
        return out

    def rows(self, power: np.ndarray) -> np.ndarray:
        """[C, N, n_freqs] power spectra of each channel's next N frames → [C, N, n_features]
        their feature rows: the n_mels (log-)mel bands, then the pitch-class rows. Advances the
        pitch-class memory: call it once per frame, in frame order (see ``defer_rows``)."""
        cfg = self.config
        mag = power if cfg.power == 2.0 else np.sqrt(power)
        mel = torch.from_numpy(np.ascontiguousarray(mag)) @ self._fbank  # [C, N, n_mels]
        if cfg.log:
            mel = torch.log(mel + cfg.log_floor)
        if not cfg.n_chroma:
            return mel.numpy()
        return np.concatenate([mel.numpy(), self.pitch_rows(power)], axis=2)

    def pitch_rows(self, power: np.ndarray) -> np.ndarray:
        """[C, N, n_freqs] power spectra of each channel's next N frames → [C, N, 12] their
        pitch-class rows: log(12 · share), the shares averaged over the last chroma_memory_s.
        Advances the memory: call it once per frame, in frame order (see ``defer_rows``)."""
        share = _pitch_class_shares(spectral_peak_chroma(power, self.config))
        if self.config.chroma_memory_s > 0:
            a = np.exp(-self.config.hop_length
                       / (self.config.sample_rate_hz * self.config.chroma_memory_s))
            # y[k] = a·y[k-1] + (1-a)·share[k], frame by frame in order, so the rows do not
            # depend on how the frames were batched. A fresh memory holds an even spread, as
            # after silence.
            prev = (self._chroma_avg if self._chroma_avg is not None
                    else np.full((share.shape[0], 12), 1.0 / 12.0))
            share = leaky_average(share.astype(np.float64), a, prev)
            self._chroma_avg = share[:, -1]
        return np.log(12.0 * share).astype(np.float32)

    def restart_pitch_memory(self, channels: np.ndarray) -> None:
        """Restart the pitch-class memory of the channels where ``channels`` [C] (bool) is
        true: their next rows are computed from an even spread, as after ``reset``."""
        if self._chroma_avg is not None:
            self._chroma_avg[np.asarray(channels, bool)] = 1.0 / 12.0

    def silence_frame(self) -> np.ndarray:
        """The frame [n_features] of digital silence: what the engine pads its context with."""
        z = np.zeros((1, self.config.n_mels))
        if self.config.log:
            z = np.log(z + self.config.log_floor)
        chroma = np.zeros(self.config.n_chroma)  # log(12 · an even share)
        return np.concatenate([z[0], chroma]).astype(np.float32)


@dataclass
class PitchCarry:
    """What ``restart_pitch_rows`` carries from one run of a channel's frames into the next:
    y [12], the unrestarted pitch-class memory at the run's last frame, and offset [12], how
    far the restarted memory is below it there."""

    y: np.ndarray
    offset: np.ndarray


def restart_pitch_rows(rows: np.ndarray, restarts: np.ndarray, config: FrontendConfig,
                       carry: PitchCarry | None = None) -> tuple[np.ndarray, PitchCarry | None]:
    """Feature rows [N, n_features] of one channel, framed with one continuous pitch-class
    memory → the rows had the memory been restarted (``MelFrontend.restart_pitch_memory``)
    before each frame where ``restarts`` [N] (bool) is true; and what the next run of the same
    channel's frames needs (None: nothing to carry), so restarting a signal run by run equals
    restarting it whole.

    Exact up to float32 rounding: the memory y is linear in its start, so a restart to the even
    spread p0 = 1/12 before frame r changes every later frame k ≥ r (up to the next restart) by
    −a^(k−r+1) · (y[r−1] − p0), with a the memory's per-frame factor and y the unrestarted
    memory (log(12·y) is what the rows hold).
    """
    c = config.n_chroma
    if not c or config.chroma_memory_s <= 0:
        return rows, None
    if carry is None and not np.any(restarts):
        # Nothing moves here, but a restart at the next run's first frame needs this run's
        # memory at its last frame (an even spread would make that restart a no-op).
        if not rows.shape[0]:
            return rows, None
        return rows, PitchCarry(np.exp(rows[-1, -c:].astype(np.float64)) / 12.0, np.zeros(c))
    a = np.exp(-config.hop_length / (config.sample_rate_hz * config.chroma_memory_s))
    n = rows.shape[0]
    k = np.arange(n)
    y = np.exp(rows[:, -c:].astype(np.float64)) / 12.0
    p0 = np.full(c, 1.0 / 12.0)
    # y before each frame: the previous run's last (an even spread at the start), then this run's.
    y_before = np.concatenate([[carry.y if carry is not None else p0], y[:-1]])
    latest = np.maximum.accumulate(np.where(restarts, k, -1))  # latest restart at or before k
    hit = latest >= 0
    shift = np.zeros((n, c))
    shift[hit] = (a ** (k[hit] - latest[hit] + 1))[:, None] * (y_before[latest[hit]] - p0)
    if carry is not None:
        shift[~hit] = (a ** (k[~hit] + 1))[:, None] * carry.offset
    moved = np.any(shift != 0.0, axis=1)
    out = rows.copy()
    out[moved, -c:] = np.log(12.0 * (y[moved] - shift[moved])).astype(np.float32)
    return out, PitchCarry(y[-1].copy(), shift[-1].copy()) if n else carry


def spectral_peak_chroma(power: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """[..., n_freqs] power spectra (float32) → [..., 12] pitch-class magnitudes (0 = C).

    A 1024-point frame's 21.5 Hz bins are a semitone wide at 360 Hz and two at 180 Hz, and a
    Hann window spreads each partial over four bins: folding bins into pitch classes blurs a
    triad into its neighbours. So only spectral peaks count, each at its parabolically
    interpolated frequency (on log magnitude; accurate to a small fraction of a bin for an
    isolated partial), adding its magnitude to the two nearest pitch classes in proportion
    to closeness. Peaks between chroma_f_min_hz and chroma_f_max_hz count. numpy, and only
    the peaks go through the logarithms (the daemon runs this once per hop, for 25 frames).
    """
    df = config.sample_rate_hz / config.n_fft
    lo = max(1, int(np.ceil(config.chroma_f_min_hz / df)))
    hi = min(config.n_freqs - 2, int(config.chroma_f_max_hz / df))
    lead = power.shape[:-1]
    seg = power.reshape(-1, power.shape[-1])[:, lo - 1:hi + 2]
    left, mid, right = seg[:, :-2], seg[:, 1:-1], seg[:, 2:]
    row, col = np.nonzero((mid > left) & (mid >= right))
    logp = np.log(seg + np.float32(1e-20))
    a, b, c = logp[row, col], logp[row, col + 1], logp[row, col + 2]
    # The vertex of the parabola through the three log powers; |shift| <= 0.5 since b is
    # the largest of the three. (Log power is twice log magnitude: the vertex is the same.)
    # Powers too close for float32 logs to tell apart (near-silence, a click's flat spectrum)
    # make a flat parabola: the peak stays on its bin instead of dividing by zero.
    curve = np.minimum(a - 2.0 * b + c, np.float32(-1e-6))
    shift = np.clip(0.5 * (a - c) / curve, -0.5, 0.5)
    pitch = np.remainder(12.0 * np.log2((col + lo + shift) * (df / 440.0)) + 9.0, 12.0)
    below = np.floor(pitch)
    frac = pitch - below
    weight = np.sqrt(mid[row, col])
    cls = below.astype(np.int64) + 12 * row
    nxt = cls + 1 - 12 * (below == 11)
    out = np.bincount(np.concatenate([cls, nxt]),
                      np.concatenate([weight * (1.0 - frac), weight * frac]),
                      minlength=12 * seg.shape[0])
    return out.reshape(*lead, 12).astype(np.float32)


def leaky_average(x: np.ndarray, a: float, prev: np.ndarray) -> np.ndarray:
    """[C, N, P] values → [C, N, P] y[k] = a·y[k-1] + (1-a)·x[k] over the N frames, y[-1] =
    ``prev`` [C, P]: bit for bit ``scipy.signal.lfilter([1 - a], [1, -a], x, axis=1,
    zi=a * prev[:, None, :])[0]`` (its direct form II transposed: y = z + b·x, then z = a·y; a
    test checks it), without importing scipy.signal (~0.9 s at start-up). A loop over the
    frames, two C·P-long operations each: ~1.2-1.7 µs a frame on a busy machine (~35-50 ms
    for 600 s at 50 frames/s; lfilter: ~2-4 ms, but importing it ~0.9 s)."""
    c, n, p = x.shape
    bx = ((1.0 - a) * x).transpose(1, 0, 2).reshape(n, c * p)  # [N, C·P]: frame rows
    y = np.empty_like(bx)
    z = (a * prev).reshape(c * p).copy()
    a_lanes = np.full(c * p, a)  # array operands only: the cheapest ufunc calls
    add, mul = np.add, np.multiply
    for bx_k, y_k in zip(list(bx), list(y), strict=True):
        add(z, bx_k, out=y_k)
        mul(y_k, a_lanes, out=z)
    return y.reshape(n, c, p).transpose(1, 0, 2)


def _pitch_class_shares(chroma: np.ndarray) -> np.ndarray:
    """[..., 12] pitch-class magnitudes → each class's share (x + f) / Σ(x + f), with a floor
    f of 2 % of the mean plus a tiny constant: independent of loudness, an even spread in
    silence, and never below ~0.2 % (log bounded near −4 after scaling by 12)."""
    f = np.float32(0.02) * chroma.mean(axis=-1, keepdims=True) + np.float32(1e-8)
    x = chroma + f
    return x / x.sum(axis=-1, keepdims=True)
