"""Causal tempo and beat tracking on the frontend's power spectra, frame by frame.

The tracker follows the shape of madmom's online beat tracking (a tempo estimate from the
periodicity of the onset signal, then a causal beat phase that predicts the next beat) but is
our own, built for a cheap per-frame step at the frontend's 50 frames/s:

1. Onset signal. From each frame's power spectrum (the frontend's): the level [dB] of eight
   bands of about an octave (30 Hz … Nyquist, ``BAND_EDGES_HZ``), each held at least ``FLOOR_DB``
   below its own slowly decaying peak; the mean over bands of their rise since the previous
   frame (half-wave rectified), divided by its running mean; minus the result's running mean,
   half-wave rectified again: peaks stand out whatever the level of the music's continuous
   flux. Octave bands weigh a kick, a snare and a hi-hat alike, where the frontend's flux (a
   mean over linear-frequency bins) hears mostly the hi-hats. The floor matters as much: drum
   samples cut by their note-off fall to digital silence, and the next hit then rises by
   100 dB where a hit into a ringing drum rises by 20: the pickup hi-hat before each beat of
   a shuffle outweighed the beat. On the benchmark's drum grooves (the tuning half of the
   kits, see benchmarks/bench_tempo.py) the beats' F-measure at ±30 ms went from 0.55 to
   0.89 with both. The tempo (2.) reads a second such signal, of the bands up to
   ``TEMPO_MAX_HZ`` (2 kHz) only: hi-hat eighths and sixteenths otherwise made slow grooves read
   at double tempo (tempo right throughout in 12 → 15 of the 16 tuning grooves). Without
   spectra (``process`` without ``power``) both signals are the frontend's onset strength
   plus the rise of its loudness, each divided by its own running mean.
2. Tempo. A leaky autocorrelation of the tempo signal over lags up to four beat periods of the
   slowest tempo (one multiply-add over ~200 lags per frame; ``memory_s`` is its time
   constant). Each candidate tempo on a 0.5 % grid between ``min_bpm`` and ``max_bpm`` scores
   the autocorrelation at its first four multiples, weighted by a broad log-normal prior
   around 120 BPM that only breaks near-ties. A pulse train at period P is as periodic at 2P
   and 3P, so the best candidate gives way to its double or triple tempo when that scores
   nearly as high (``FASTER_SHARE``). The winning candidate is refined to a fraction of a
   frame from where the autocorrelation's mass sits around its multiples (integer lags alone
   would be 2 % apart at 180 BPM). A new candidate takes over only when it beats the current
   tempo's score clearly (hysteresis), so the beat phase is not thrown between octaves.
3. Beat phase. A comb filter at the current period, ``c[t] = x[t] + a·c[t − P]`` (P
   fractional, linearly interpolated): it sums the onsets of the same beat phase over the last
   few beats. The largest value of the last period marks the latest beat; the next one is
   predicted one period later. A beat is reported at the frame it is predicted in (no look
   ahead, so no delay: the beat goes out when it happens), or at an onset that comes early,
   shortly before the predicted one. Beats are reported only while the tempo's confidence is
   at least ``MIN_CONFIDENCE`` and the onset signal has been active within the last two beats.

Latency: the tracker adds none (``LATENCY_FRAMES``). A beat's position is a fractional frame
index; frame ``k``'s stream time is the frontend's (end of frame ``k``, less the resampler's
delay), and the engine converts with it. Streaming and offline are the same per-frame
arithmetic, so ``process`` in any blocks equals ``process_offline`` exactly.

Cost: a call with a few frames (live input) runs them one by one over plain floats; a longer
one runs each stage over the whole block (numpy where the frames are independent, the
recursions over plain floats), ~3x faster per frame. Both compute every number by the same
floating-point operations in the same order, so they agree to the bit (tests/test_tempo.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Frames of delay the tracker adds beyond the frontend's: none, it predicts.
LATENCY_FRAMES = 0
#: Where an onset lies, on average, before the end of the frame whose band levels show its
#: rise [frames]. A beat's stream time is taken this much before its frame position. Measured:
#: with the band signal the beats of the benchmark's tuning grooves came a median 20 ms late
#: at 0.5 frames, within ±8 ms at 1.2 (click tracks within ±8 ms too).
ONSET_DELAY_FRAMES = 1.2
#: The same for the onset signal without spectra (the fast lane's flux and loudness rise): a
#: frame's flux rises with the sound that entered its newest hop, anywhere in it, so half a
#: hop (click tracks at random phases against the frame grid: mean error within ±2 ms).
ONSET_DELAY_FRAMES_FAST = 0.5
#: Band edges of the onset signal [Hz] (the last band reaches up to Nyquist): octaves, so
#: that kick, snare and hi-hats count alike (a mean over linear-frequency bins is mostly
#: the hi-hats).
BAND_EDGES_HZ = (30.0, 120.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)
#: A band's level is held at least this far below its own peak [dB] (a rise from digital
#: silence counts as one from this floor). Tuning grooves: 20 → F 0.83, 30 → 0.78, none → 0.69.
FLOOR_DB = 20.0
#: How fast a band's peak decays [dB per frame] (2.5 dB/s at 50 frames/s).
PEAK_DECAY_DB = 0.05
#: The tempo is found from the rise of the bands up to this frequency only [Hz] (30 Hz …
#: 2 kHz, five bands: kick, toms, snare), the beat phase from all: the hi-hats' eighths or
#: sixteenths made slow grooves read at double tempo. Tuning grooves: tempo within 2 %
#: throughout in 15 of 16 with the five lowest bands, 12 with all eight (14 … 15 with
#: three … six).
TEMPO_MAX_HZ = 2000.0
#: Tempo grid step (ratio between neighbouring candidates).
GRID_STEP = 1.005
#: Multiples of the period whose autocorrelation a candidate scores.
HARMONICS = 4
#: A pulse train at period P is as periodic at 2P and 3P: the tempo is the fastest candidate
#: whose score is at least this share of the best one's, looking at 2 and 3 times the best.
FASTER_SHARE = 0.8
FASTER_RATIOS = (2, 3)
#: The tempo is re-estimated every this many frames (10 times a second at 50 frames/s); the
#: beat phase follows every frame.
TEMPO_EVERY = 5
#: Binomial smoothing of the onset signal before the autocorrelation [taps]: spreads a peak
#: over neighbouring frames, so that periods between two integer lags score as high as those
#: on one (a 180 BPM beat is 16.67 frames: its onsets fall 16 and 17 frames apart).
SMOOTHING = (0.0625, 0.25, 0.375, 0.25, 0.0625)
#: Centre [BPM] and width [octaves] of the log-normal tempo prior (breaks near-ties only).
PRIOR_BPM = 120.0
PRIOR_OCTAVES = 1.5
#: A new tempo candidate replaces the current one when its score is this much higher.
SWITCH_RATIO = 1.15
#: Candidates within this ratio of the current period are followed at once (tempo drift).
FOLLOW_RATIO = 1.04
#: Feedback of the beat-phase comb filter (memory of about 1 / (1 - a) beats).
COMB_FEEDBACK = 0.85
#: Beats are reported only at a tempo confidence at least this.
MIN_CONFIDENCE = 0.15
#: Time constant [s] of the running mean subtracted from the onset signal.
ONSET_MEAN_S = 1.0
#: Time constant [s] of the running means the onset strength and loudness rise are divided by.
NORM_S = 10.0
#: An onset up to this fraction of a period before the predicted beat is taken as the beat.
EARLY_FRACTION = 0.2
#: Frames ``process`` works on at once (longer inputs go in pieces of this many): bounds its
#: temporaries, the largest the autocorrelation's products [frames, n_lags] (≤ 1.7 MB).
BLOCK_FRAMES = 1024
#: Fewer frames than this (live input: a frame or two per call) go one by one, over plain
#: floats; more, stage by stage over the block (numpy). Both give the same numbers.
FRAME_BY_FRAME = 16


@dataclass(frozen=True)
class TempoParams:
    """Tracker parameters. frame_rate_hz: onset frames per second (the frontend's, 50).
    min_bpm, max_bpm: the tempo range [BPM]. memory_s: time constant [s] of the
    autocorrelation, how long the tempo takes to follow a change. sample_rate_hz, n_fft: the
    frontend's, to place the onset bands on the power spectra's bins."""

    frame_rate_hz: float = 50.0
    min_bpm: float = 60.0
    max_bpm: float = 180.0
    memory_s: float = 8.0
    sample_rate_hz: float = 22050.0
    n_fft: int = 1024

    def __post_init__(self) -> None:
        if not self.frame_rate_hz > 0:
            raise ValueError(f"frame_rate_hz: expected > 0, got {self.frame_rate_hz}")
        if not 0 < self.min_bpm < self.max_bpm:
            raise ValueError(f"min_bpm/max_bpm: expected 0 < min < max, got "
                             f"{self.min_bpm}/{self.max_bpm}")
        if 60.0 * self.frame_rate_hz / self.max_bpm < 4.0:
            raise ValueError(f"max_bpm {self.max_bpm}: a beat must span at least 4 onset "
                             f"frames ({self.frame_rate_hz:g} frames/s)")
        if not self.memory_s > 0:
            raise ValueError(f"memory_s: expected > 0, got {self.memory_s}")
        if not self.sample_rate_hz > 0 or self.n_fft < 2:
            raise ValueError(f"sample_rate_hz {self.sample_rate_hz}, n_fft {self.n_fft}: "
                             f"expected > 0 and ≥ 2")


@dataclass
class TempoFrames:
    """What one ``process`` call produced, for its N frames.

    bpm: [N] float64 tempo after each frame [BPM], 0 until one is found.
    confidence: [N] float64 periodicity of the onsets at that tempo, 0 … 1.
    beats: [M] float64 positions of the beats reported, fractional frame indices counted
    from the last reset (a beat at position p lies p - k frames after the end of frame k).
    counts: [M] int64 beat counter of each (1 for the first beat after a reset).
    frames: [M] int64 frame index (from the last reset) at which each was reported.
    """

    bpm: np.ndarray
    confidence: np.ndarray
    beats: np.ndarray
    counts: np.ndarray
    frames: np.ndarray

    def __len__(self) -> int:
        return int(self.bpm.shape[0])


class BeatTracker:
    """Causal tempo and beat tracker (see the module docstring), one onset signal.

    ``process(onsets)`` takes any number of consecutive onset frames [N] and returns their
    ``TempoFrames``; ``reset()`` forgets everything; ``process_offline`` is the twin for a whole
    signal. Buffers are sized from the parameters up front.
    """

    def __init__(self, params: TempoParams | None = None) -> None:
        self.params = p = params or TempoParams()
        fps = p.frame_rate_hz
        self._min_period = 60.0 * fps / p.max_bpm  # [frames]
        self._max_period = 60.0 * fps / p.min_bpm
        self._gamma = math.exp(-1.0 / (p.memory_s * fps))
        self._mean_a = math.exp(-1.0 / (ONSET_MEAN_S * fps))
        self._norm_a = math.exp(-1.0 / (NORM_S * fps))
        # Lags 0 … n_lags-1 [frames]: the highest multiple of the slowest period, interpolated.
        self._n_lags = math.ceil(HARMONICS * self._max_period) + 2
        # The decay per frame once per lag: numpy multiplies two arrays faster than an array by
        # a Python float.
        self._gammas = np.full(self._n_lags, self._gamma)
        n_tempi = math.ceil(math.log(p.max_bpm / p.min_bpm) / math.log(GRID_STEP)) + 1
        self.bpm_grid = p.min_bpm * GRID_STEP ** np.arange(n_tempi)
        self.bpm_grid[-1] = min(self.bpm_grid[-1], p.max_bpm)
        self._periods = 60.0 * fps / self.bpm_grid  # [T] frames
        self._period_list = self._periods.tolist()
        self._weights = self._score_matrix()  # [T, n_lags]
        # Grid index of each candidate's tempo × r (-1 outside the range).
        self._faster = {}
        for r in FASTER_RATIOS:
            j = np.rint(np.log(r) / np.log(GRID_STEP)).astype(int) + np.arange(n_tempi)
            self._faster[r] = np.where(j < n_tempi, j, -1)
        # Per candidate, the three lags nearest each multiple [T, K, 3], and each lag divided
        # by its multiple (what a unit of mass there says the period is).
        k = np.arange(1, HARMONICS + 1)
        centre = np.rint(self._periods[:, None] * k[None, :]).astype(int)  # [T, K]
        near = np.clip(centre[..., None] + np.arange(-1, 2), 1, self._n_lags - 1)
        self._near = near
        self._near_lag = near / k[None, :, None]
        octaves = np.log2(self.bpm_grid / PRIOR_BPM) / PRIOR_OCTAVES
        self._prior = np.exp(-0.5 * octaves**2)
        # Comb history: a period back plus the interpolation's neighbour, and the last period.
        self._hc = math.ceil(self._max_period) + 3
        # The onset bands as runs of bins: band k sums bins starts[k] … starts[k+1] - 1, the
        # last up to Nyquist (np.add.reduceat: sequential sums, the same in any blocks). A band
        # without bins (a coarse or a low-rate frontend) is left out.
        self._n_freqs = p.n_fft // 2 + 1
        freqs = np.arange(self._n_freqs) * p.sample_rate_hz / p.n_fft
        first = np.searchsorted(freqs, BAND_EDGES_HZ)  # the first bin ≥ each edge
        keep = [k for k in range(len(first)) if first[k] < self._n_freqs
                and (k + 1 == len(first) or first[k + 1] > first[k])]
        starts = first[keep] if keep else np.array([0])
        self._band_from = int(starts[0])
        self._band_starts = starts - starts[0]
        n_bands = len(starts)
        self._inv_bands = 1.0 / n_bands
        # The tempo signal's bands: those up to TEMPO_MAX_HZ (all, if none is).
        uppers = [BAND_EDGES_HZ[k + 1] if k + 1 < len(BAND_EDGES_HZ) else math.inf
                  for k in keep]
        self._n_low = sum(hi <= TEMPO_MAX_HZ for hi in uppers) or n_bands
        self._inv_low = 1.0 / self._n_low
        self.reset()

    def _score_matrix(self) -> np.ndarray:
        """[T, n_lags]: a candidate's score is this times the autocorrelation [n_lags]."""
        w = np.zeros((len(self._periods), self._n_lags))
        rows = np.arange(len(self._periods))

        def add(lags: np.ndarray, weight: float) -> None:
            lo = np.floor(lags).astype(int)
            frac = lags - lo
            np.add.at(w, (rows, lo), weight * (1.0 - frac))
            np.add.at(w, (rows, lo + 1), weight * frac)

        for k in range(1, HARMONICS + 1):
            add(k * self._periods, 1.0)
        return w

    def reset(self) -> None:
        """Forget all onsets: the next frame is frame 0."""
        # The smoothed tempo signal, frame t at t % n_lags and again n_lags further on, so the
        # newest n_lags values are always one slice.
        self._x = np.zeros(2 * self._n_lags)
        self._acf = np.zeros(self._n_lags)  # leaky autocorrelation at lags 0 … n_lags-1
        self._decay = 1.0  # decay owed to the autocorrelation by frames of silence
        self._raw = (0.0,) * len(SMOOTHING)  # the newest onset values, oldest first
        self._grid_index = 0
        self._c = [0.0] * self._hc  # the comb's output at the last hc frames, oldest first
        self._mean = 0.0
        self._level = 0.0  # the previous frame's loudness [dB]
        self._band_level: list[float] | None = None  # the previous frame's band levels [dB]
        self._band_peak = [-math.inf] * len(self._band_starts)  # decaying peaks [dB]
        self._norm_band = 0.0  # recent means of the band signals: all bands, the lowest
        self._norm_low = 0.0
        self._tempo_mean = 0.0
        self._norm_onset = 0.0  # recent means of the onset strength and the loudness rise
        self._norm_rise = 0.0
        self._norm_weight = 0.0
        self._active = 0  # frames since the onset signal was last above zero
        self._t = 0  # frames seen
        self._period = 0.0  # current beat period [frames]; 0: no tempo yet
        self._confidence = 0.0
        self._next = math.inf  # predicted position of the next beat [frames]
        self._last_beat = -math.inf
        self.beats_out = 0

    @property
    def bpm(self) -> float:
        """The current tempo [BPM], 0 before one is found."""
        return 60.0 * self.params.frame_rate_hz / self._period if self._period else 0.0

    @property
    def frames_seen(self) -> int:
        """Frames processed since the last reset."""
        return self._t

    @property
    def confidence(self) -> float:
        return self._confidence

    @property
    def last_beat(self) -> float | None:
        """Position [fractional frame index] of the last beat reported, None if none yet."""
        return None if self._last_beat == -math.inf else self._last_beat

    def process(self, onsets: np.ndarray, level_db: np.ndarray | None = None,
                power: np.ndarray | None = None) -> TempoFrames:
        """Feed the onset strengths [N] of consecutive frames, their loudness [N] [dB] (the
        fast lane's ``onset`` and ``loudness``; without loudness, the onsets alone) and their
        power spectra [N, n_fft/2 + 1] (the frontend's; with them, the onset signal is their
        band levels' rise and the other two are not used); return their tempo and beats.
        Give each input always or never after a reset."""
        onsets = np.asarray(onsets, dtype=np.float64).reshape(-1)
        n = onsets.shape[0]
        levels = (np.zeros(n) if level_db is None
                  else np.asarray(level_db, dtype=np.float64).reshape(-1))
        if levels.shape[0] != n:
            raise ValueError(f"level_db: expected {n} values, one per onset, got "
                             f"{levels.shape[0]}")
        band_levels = None
        if power is not None:
            power = np.asarray(power, dtype=np.float32)
            if power.shape != (n, self._n_freqs):
                raise ValueError(f"power: expected [{n}, {self._n_freqs}], got "
                                 f"{list(power.shape)}")
            energy = np.add.reduceat(power[:, self._band_from:], self._band_starts, axis=1)
            # Levels [dB], each frame's alone (row by row, so the same in any blocks). fmax and
            # fmin take a hostile caller's NaN, negative or infinite power to -100 … 200 dB.
            band_levels = np.fmin(10.0 * np.log10(np.fmax(energy, 0.0) + 1e-10), 200.0)
        parts = []
        for s in range(0, n, BLOCK_FRAMES):
            e = min(s + BLOCK_FRAMES, n)
            if e - s < FRAME_BY_FRAME:
                parts.append(self._frame_by_frame(onsets[s:e], levels[s:e], None
                                                  if band_levels is None else band_levels[s:e]))
            elif band_levels is None:
                value = self._fast_values(onsets[s:e], levels[s:e])
                parts.append(self._frames(value, value))
            else:
                parts.append(self._frames(*self._band_values(band_levels[s:e])))
        if len(parts) == 1:
            return parts[0]
        return TempoFrames(*(np.concatenate([getattr(p, k) for p in parts] or [np.empty(0, d)])
                             for k, d in (("bpm", np.float64), ("confidence", np.float64),
                                          ("beats", np.float64), ("counts", np.int64),
                                          ("frames", np.int64))))

    def process_offline(self, onsets: np.ndarray, level_db: np.ndarray | None = None,
                        power: np.ndarray | None = None) -> TempoFrames:
        """The whole onset signal [N] (and loudness [N] [dB], power spectra [N, n_freqs])
        from a fresh state (the same arithmetic as ``process``, so equal to it in any blocks).
        Leaves the tracker reset."""
        self.reset()
        out = self.process(onsets, level_db, power)
        self.reset()
        return out

    # -- a block of frames -------------------------------------------------------------------
    # The tracker is a recursion over frames, and its numbers are those of a frame-by-frame
    # step: every value below comes from the same floating-point operations, in the same order,
    # as if each frame were processed alone (so any blocks give the same results, to the bit).
    # What does not depend on the recursion is computed for the whole block at once (numpy,
    # elementwise: the same rounding as one by one); the recursions over plain floats; the
    # autocorrelation's products for all frames at once, its leaky sum frame by frame. The
    # stages depend on each other in one direction only: onset signals → autocorrelation →
    # tempo → beat phase, so each runs over the whole block before the next.

    def _band_values(self, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Band levels [m, n_bands] [dB] (float32) of m frames → their onset values [m] for
        the beat phase and for the tempo: the mean rise of the band levels (floored under their
        peaks), of all bands and of those up to ``TEMPO_MAX_HZ``, each over its recent mean."""
        m = level.shape[0]
        level = level.astype(np.float64)  # float32 levels; the arithmetic in float64
        top = np.empty_like(level)
        for k, p in enumerate(self._band_peak):
            # The peak decays by PEAK_DECAY_DB a frame unless the level is above it.
            top[:, k] = col = [p := v if v > (d := p - PEAK_DECAY_DB) else d
                               for v in level[:, k].tolist()]
            self._band_peak[k] = col[-1]
        floor = top - FLOOR_DB
        level = np.where(level < floor, floor, level)
        # The first frame after a reset has no previous levels: no rise.
        prev = level[:1] if self._band_level is None else np.asarray([self._band_level])
        prev = np.concatenate([prev, level[:-1]])
        up = np.where(level > prev, level - prev, 0.0)
        # Summed band after band, as one frame's floats are (adding a 0.0 changes nothing).
        rise = np.zeros(m)
        low = rise
        for k in range(up.shape[1]):
            rise = rise + up[:, k]
            if k + 1 == self._n_low:
                low = rise
        self._band_level = level[-1].tolist()
        (rise, low), (self._norm_band, self._norm_low) = self._over_recent_means(
            (rise * self._inv_bands, low * self._inv_low), (self._norm_band, self._norm_low))
        return rise, low

    def _fast_values(self, onset: np.ndarray, level_db: np.ndarray) -> np.ndarray:
        """Onset strengths [m] and loudness [m] [dB] of m frames → their onset values [m]
        (without spectra)."""
        m = onset.shape[0]
        # Finite and non-negative: the frontend guarantees it, a hostile caller might not. A
        # loudness out of range holds the last one in range.
        onset = np.where((onset > 0.0) & (onset < 1e30), onset, 0.0)
        ok = (level_db > -1e4) & (level_db < 1e4)
        held = np.maximum.accumulate(np.where(ok, np.arange(m), -1))
        level_db = np.where(held >= 0, level_db[np.maximum(held, 0)], self._level)
        prev = np.concatenate([[self._level], level_db[:-1]])
        rise = np.maximum(level_db - prev, 0.0)
        if self._t == 0:
            rise[0] = 0.0
        self._level = float(level_db[-1])
        # Each part relative to its own recent mean: neither dominates by its units.
        (onset, rise), (self._norm_onset, self._norm_rise) = self._over_recent_means(
            (onset, rise), (self._norm_onset, self._norm_rise))
        return onset + rise

    def _over_recent_means(self, signals: tuple[np.ndarray, ...], sums: tuple[float, ...]
                           ) -> tuple[list[np.ndarray], tuple[float, ...]]:
        """Signals [m] (≥ 0) of m frames, each over its recent mean: the leaky sums ``sums``
        (one per signal, carried from frame to frame) divided by the leaky total weight they
        share (``_norm_weight``), so the mean is of all frames so far while fewer than NORM_S
        seconds have passed and the first onsets are not magnified; 0 where a signal is 0.
        Returns the signals so scaled and the sums after the last frame."""
        a, m = self._norm_a, len(signals[0])
        weight = np.asarray(_leaky(a, 1.0, self._norm_weight, [1.0] * m))
        self._norm_weight = float(weight[-1])
        out, after = [], []
        for x, s in zip(signals, sums, strict=True):
            norm = _leaky(a, 1.0, s, x.tolist())
            out.append(np.divide(x * weight, norm, out=np.zeros(m), where=x > 0.0))
            after.append(norm[-1])
        return out, tuple(after)

    def _frames(self, value: np.ndarray, tempo_value: np.ndarray) -> TempoFrames:
        """Advance by m frames of onset values [m] (for the beat phase) and tempo onset values
        [m] (for the tempo; the same without spectra); their tempo and beats."""
        a = self._mean_a
        # Each onset value less its running mean (before the frame), half-wave rectified.
        mean = _leaky(a, 1.0 - a, self._mean, value.tolist())
        x = np.maximum(value - np.asarray([self._mean, *mean[:-1]]), 0.0)
        self._mean = mean[-1]
        mean = _leaky(a, 1.0 - a, self._tempo_mean, tempo_value.tolist())
        xt = np.maximum(tempo_value - np.asarray([self._tempo_mean, *mean[:-1]]), 0.0)
        self._tempo_mean = mean[-1]
        # Smoothed: r[i + 4] is frame i's value, r[0 … 3] the four before the block.
        r = np.concatenate([self._raw[1:], xt])
        self._raw = tuple(r[-len(SMOOTHING):].tolist())
        w = SMOOTHING
        m = len(xt)
        xs = w[0] * (r[:m] + r[4:]) + w[1] * (r[1:m + 1] + r[3:m + 3]) + w[2] * r[2:m + 2]
        updates = self._update_tempo(*self._autocorrelate(xs))
        return self._update_phase(x, updates)

    def _autocorrelate(self, xs: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Advance the leaky autocorrelation by m frames of the smoothed tempo signal [m].
        Returns the tempo frames (indices in the block) at which it holds energy, and there
        each candidate's score [F, T] and the autocorrelation [F, n_lags]."""
        m, n_lags, t = len(xs), self._n_lags, self._t
        # The frames t - n_lags + 1 … t - 1 (from the history), then the block's.
        s = (t + 1) % n_lags
        history = np.concatenate([self._x[s:s + n_lags - 1], xs])
        end = (t + m - n_lags + 1 + np.arange(n_lags - 1)) % n_lags
        self._x[end] = self._x[end + n_lags] = history[m:]
        # Each frame's products with the frames 0 … n_lags-1 before it, newest first: windows
        # of the history reversed (frame b's starts at m - 1 - b). In silence the
        # autocorrelation only decays: frames without onsets have none.
        on = np.flatnonzero(xs > 0.0)
        newest_first = np.lib.stride_tricks.sliding_window_view(history[::-1].copy(), n_lags)
        products = newest_first[m - 1 - on] * xs[on, None]
        first = (TEMPO_EVERY - 1 - t) % TEMPO_EVERY
        n_tempo = len(range(first, m, TEMPO_EVERY))
        scores = np.zeros((n_tempo, len(self._periods)))
        acfs = np.empty((n_tempo, n_lags))
        frames: list[int] = []
        acf, gamma, gammas, decay = self._acf, self._gamma, self._gammas, self._decay
        weights = self._weights
        tempo = first  # the next tempo frame
        changed = True  # since the last scores: if not, they are the same numbers
        last = -1  # the last frame with onsets
        for b, row in zip([*on.tolist(), m], [*products, None], strict=True):
            while tempo < b:  # tempo frames before this frame: the autocorrelation so far
                if acf[0] > 0.0:
                    # A common decay factor (owed, not applied yet) cancels in what is read.
                    f = len(frames)
                    if changed:
                        np.matmul(weights, acf, out=scores[f])
                        acfs[f] = acf
                        changed = False
                    else:
                        scores[f], acfs[f] = scores[f - 1], acfs[f - 1]
                    frames.append(tempo)
                tempo += TEMPO_EVERY
            for _ in range(b - last - 1):  # one multiply per silent frame
                decay *= gamma
            if row is None:
                break
            if decay != 1.0:  # the decay owed by silent frames, then this frame's
                np.multiply(acf, decay, out=acf)
                decay = 1.0
            np.multiply(acf, gammas, out=acf)
            np.add(acf, row, out=acf)
            last = b
            changed = True
        self._decay = decay
        return frames, scores[:len(frames)], acfs[:len(frames)]

    def _update_tempo(self, frames: list[int], score: np.ndarray, acf: np.ndarray
                      ) -> list[tuple[int, float, float]]:
        """The tempo at each of the frames [F] (block indices) whose candidates' scores [F, T]
        and autocorrelations [F, n_lags] are given. Returns, where it was found, each new
        (frame, period [frames], confidence)."""
        if not frames:
            return []
        weighted = score * self._prior
        rows = np.arange(len(frames))
        best = weighted.argmax(axis=1)
        top = score[rows, best].tolist()
        fastest = self._fastest(score, best).tolist()
        periods = self._period_list
        found: list[tuple[int, int]] = []  # (row, grid index)
        for f, best in enumerate(fastest):
            if top[f] <= 0.0:
                continue  # nothing periodic (yet): keep what there is
            if self._period or found:
                cur = self._grid_index
                ratio = periods[best] / periods[cur]
                if not (1.0 / FOLLOW_RATIO < ratio < FOLLOW_RATIO
                        or weighted[f, best] > SWITCH_RATIO * weighted[f, cur]):
                    best = cur
            self._grid_index = best
            found.append((f, best))
        if not found:
            return []
        rows, bests = (np.asarray(v) for v in zip(*found, strict=True))
        periods = self._refine(acf[rows], bests)
        return [(frames[f], period,
                 min(max(float(score[f, best]) / (HARMONICS * acf[f, 0]), 0.0), 1.0))
                for (f, best), period in zip(found, periods, strict=True)]

    def _fastest(self, score: np.ndarray, best: np.ndarray) -> np.ndarray:
        """Per row of scores [F, T], the fastest of candidate ``best`` [F] and its tempo × 2,
        × 3 (within the range) that scores at least ``FASTER_SHARE`` of it: clicks at 180 BPM
        are as periodic at 90 and 60, whose harmonics the prior may favour; onsets between the
        beats are what tell them apart."""
        rows = np.arange(len(best))
        share = FASTER_SHARE * score[rows, best]
        out = best
        for r in FASTER_RATIOS:
            j = self._faster[r][best]
            # A higher index is a faster tempo. (j = -1: none; its score is not looked at.)
            out = np.where((j >= 0) & (score[rows, j] >= share), np.maximum(out, j), out)
        return out

    def _refine(self, acf: np.ndarray, best: np.ndarray) -> list[float]:
        """Grid candidates ``best`` [F] → their periods [frames] refined to the mass centre of
        the autocorrelations [F, n_lags] around their multiples (each divided by its multiple,
        weighted by mass): sub-frame precise, where the grid's integer-lag interpolation is
        not. (Sums over each row's [K, 3] values: the same as over each alone.)"""
        a = np.maximum(acf[np.arange(len(best))[:, None, None], self._near[best]], 0.0)
        masses = a.sum(axis=(1, 2)).tolist()
        centres = np.einsum("fkj,fkj->f", a, self._near_lag[best]).tolist()
        out = []
        for period, mass, centre in zip(self._periods[best].tolist(), masses, centres,
                                        strict=True):
            if mass <= 0.0:
                out.append(period)
                continue
            # Stay within the candidate's neighbourhood and the tempo range.
            lo = max(period / FOLLOW_RATIO, self._min_period)
            out.append(min(max(centre / mass, lo), period * FOLLOW_RATIO, self._max_period))
        return out

    def _update_phase(self, x: np.ndarray, updates: list[tuple[int, float, float]]
                      ) -> TempoFrames:
        """Advance the beat phase by m frames of onset values [m], the tempo changing at the
        frames given (block index, period, confidence); their tempo and beats."""
        m = len(x)
        t = self._t + np.arange(m)  # frame indices
        # Each frame's tempo: the one after the tempo update at that frame, if any.
        periods, confidences = np.empty(m), np.empty(m)
        start, period, confidence = 0, self._period, self._confidence
        for b, new_period, new_confidence in updates:
            periods[start:b], confidences[start:b] = period, confidence
            start, period, confidence = b, new_period, new_confidence
        periods[start:], confidences[start:] = period, confidence
        on = periods != 0.0  # frames with a tempo (all after the first frame with one)
        # The comb filter: c[t] = x[t] + a·c[t - period], c[t - period] interpolated between
        # the frames j0 and j0 + 1 back. c[hc + b] is frame b's; before it, the last hc
        # frames'. Without a tempo c[t] = x[t]: both taps weigh 0.0 (the comb is finite).
        hc = self._hc
        j0 = np.floor(periods)
        frac = periods - j0
        newer = (hc + np.arange(m) - np.where(on, j0, 1.0).astype(np.int64)).tolist()
        w_newer = np.where(on, 1.0 - frac, 0.0).tolist()
        w_older = np.where(on, frac, 0.0).tolist()
        c = self._c.copy()
        for xb, j, a, f in zip(x.tolist(), newer, w_newer, w_older, strict=True):
            c.append(xb + COMB_FEEDBACK * (a * c[j] + f * c[j - 1]))
        self._c = c[-hc:]
        # The latest beat: the largest comb value of the last period (newest wins ties), k
        # frames back from each frame, n the frames looked at.
        n = np.where(on, np.minimum(np.ceil(periods), t + 1), 1.0).astype(np.int64)
        width = int(n.max())
        comb = np.asarray(c)
        windows = np.lib.stride_tricks.sliding_window_view(comb, width)[hc - width + 1:, ::-1]
        back = np.arange(width)
        windows = np.where(back < n[:, None], windows, -np.inf)  # newest first
        k = windows.argmax(axis=1)
        rows = np.arange(m)
        peak = windows[rows, k]
        # Its position, to a fraction of a frame from the parabola through its neighbours.
        pos = (t - k).astype(np.float64)
        inner = (k > 0) & (k < n - 1)
        older = windows[rows, np.minimum(k + 1, width - 1)]
        newer = windows[rows, np.maximum(k - 1, 0)]
        with np.errstate(invalid="ignore", divide="ignore"):
            curve = older - 2.0 * peak + newer
            bend = inner & (curve < 0.0)
            shift = np.minimum(np.maximum(0.5 * (older - newer) / curve, -0.5), 0.5)
        pos = np.where(bend, pos + shift, pos)
        # The next beat is predicted one period after the latest; none while the comb is 0.
        predicted = np.where(on, np.where(peak > 0.0, pos + periods, np.inf), self._next)
        expected = np.concatenate([[self._next], predicted[:-1]])  # the previous frame's
        # A beat is reported at the frame it is predicted in, or at an onset that comes
        # shortly before it, when the tempo is confident and the onsets active.
        last_on = np.maximum.accumulate(np.where(x > 0.0, rows, -1))
        active = np.where(last_on >= 0, rows - last_on, self._active + 1 + rows)
        candidate = (on & (peak > 0.0) & (confidences >= MIN_CONFIDENCE)
                     & (active <= 2 * periods)
                     & (((expected < t + 0.5) & (expected >= t - 0.5))
                        | ((k == 0) & (x > 0.0) & (expected - t < EARLY_FRACTION * periods))))
        # ... and not within half a period of the last beat: the one test that depends on the
        # beats reported before, so frame by frame, over the candidates only.
        last_beat, count = self._last_beat, self.beats_out
        beats: list[float] = []
        counts: list[int] = []
        frames: list[int] = []
        for b in np.flatnonzero(candidate).tolist():
            tb, p, e = int(t[b]), float(periods[b]), float(expected[b])
            if tb - last_beat < 0.5 * p:
                continue
            last_beat = e if e < tb + 0.5 and e >= tb - 0.5 else float(tb)
            count += 1
            beats.append(last_beat)
            counts.append(count)
            frames.append(tb)
        self._period, self._confidence = period, confidence
        self._next, self._last_beat, self.beats_out = float(predicted[-1]), last_beat, count
        self._active = int(active[-1])
        self._t += m
        bpm = np.divide(60.0 * self.params.frame_rate_hz, periods, out=np.zeros(m), where=on)
        return TempoFrames(bpm, confidences, np.asarray(beats, np.float64),
                           np.asarray(counts, np.int64), np.asarray(frames, np.int64))

    # -- frame by frame ----------------------------------------------------------------------
    # The same arithmetic as the block's stages, one frame at a time over plain floats: what a
    # call with a frame or two costs (numpy's per-call cost would dominate).

    def _frame_by_frame(self, onsets: np.ndarray, levels: np.ndarray,
                        band_levels: np.ndarray | None) -> TempoFrames:
        """``process`` for a few frames: onset strengths [m], loudness [m] [dB] and band
        levels [m, n_bands] [dB] (None without spectra)."""
        m = onsets.shape[0]
        bpm, conf = np.empty(m), np.empty(m)
        beats: list[float] = []
        counts: list[int] = []
        frames: list[int] = []
        rows = None if band_levels is None else band_levels.tolist()
        for i in range(m):
            if rows is None:
                value = self._fast_value(float(onsets[i]), float(levels[i]))
                beat = self._step(value, value)
            else:
                beat = self._step(*self._band_value(rows[i]))
            if beat is not None:
                beats.append(beat)
                counts.append(self.beats_out)
                frames.append(self._t - 1)
            bpm[i], conf[i] = self.bpm, self._confidence
        return TempoFrames(bpm, conf, np.asarray(beats, np.float64),
                           np.asarray(counts, np.int64), np.asarray(frames, np.int64))

    def _band_value(self, level: list[float]) -> tuple[float, float]:
        """One frame's band levels [n_bands] [dB] → its two onset values (``_band_values``)."""
        peak = self._band_peak
        prev = self._band_level
        rise = low = 0.0
        for k, v in enumerate(level):
            top = peak[k] - PEAK_DECAY_DB
            if v > top:
                top = v
            peak[k] = top
            if v < top - FLOOR_DB:
                v = level[k] = top - FLOOR_DB
            if prev is not None and v > prev[k]:
                rise += v - prev[k]
                if k < self._n_low:
                    low += v - prev[k]
        self._band_level = level
        rise *= self._inv_bands
        low *= self._inv_low
        a = self._norm_a
        self._norm_band = a * self._norm_band + rise
        self._norm_low = a * self._norm_low + low
        self._norm_weight = w = a * self._norm_weight + 1.0
        return (rise * w / self._norm_band if rise > 0.0 else 0.0,
                low * w / self._norm_low if low > 0.0 else 0.0)

    def _fast_value(self, onset: float, level_db: float) -> float:
        """One frame's onset strength and loudness [dB] → its onset value (``_fast_values``)."""
        onset = onset if 0.0 < onset < 1e30 else 0.0
        level_db = level_db if -1e4 < level_db < 1e4 else self._level
        rise = max(level_db - self._level, 0.0) if self._t else 0.0
        self._level = level_db
        a = self._norm_a
        self._norm_onset = a * self._norm_onset + onset
        self._norm_rise = a * self._norm_rise + rise
        self._norm_weight = a * self._norm_weight + 1.0
        return (onset * self._norm_weight / self._norm_onset if onset > 0.0 else 0.0) + (
            rise * self._norm_weight / self._norm_rise if rise > 0.0 else 0.0)

    def _step(self, value: float, tempo_value: float) -> float | None:
        """Advance by one frame of onset value and tempo onset value (``_frames``); return
        the position of a beat reported at this frame, else None."""
        t = self._t
        a = self._mean_a
        x = max(value - self._mean, 0.0)
        self._mean = a * self._mean + (1.0 - a) * value
        self._active = 0 if x > 0.0 else self._active + 1
        xt = max(tempo_value - self._tempo_mean, 0.0)
        self._tempo_mean = a * self._tempo_mean + (1.0 - a) * tempo_value
        r = self._raw
        r0, r1, r2, r3 = r[1], r[2], r[3], r[4]
        self._raw = (r0, r1, r2, r3, xt)
        w = SMOOTHING
        xs = w[0] * (r0 + xt) + w[1] * (r1 + r3) + w[2] * r2
        n_lags = self._n_lags
        i = t % n_lags
        self._x[i] = self._x[i + n_lags] = xs
        if xs > 0.0:
            recent = self._x[i + 1:i + n_lags + 1][::-1]  # newest first
            if self._decay != 1.0:
                self._acf *= self._decay
                self._decay = 1.0
            self._acf *= self._gammas
            self._acf += xs * recent
        else:
            self._decay *= self._gamma
        if t % TEMPO_EVERY == TEMPO_EVERY - 1:
            self._tempo_step()
        beat = self._phase_step(t, x)
        self._t = t + 1
        return beat

    def _tempo_step(self) -> None:
        """The tempo update of one frame (``_update_tempo`` for one row, its numpy calls on
        one frame's arrays: fewer calls)."""
        energy = self._acf[0]
        if energy <= 0.0:
            return
        score = self._weights @ self._acf  # [T]; a common decay factor cancels below
        weighted = score * self._prior
        best = int(weighted.argmax())
        if score[best] <= 0.0:
            return  # nothing periodic (yet): keep what there is
        top = FASTER_SHARE * score[best]
        out = best
        for r in FASTER_RATIOS:
            j = int(self._faster[r][best])
            if j >= 0 and score[j] >= top:
                out = max(out, j)
        best = out
        if self._period:
            cur = self._grid_index
            ratio = self._period_list[best] / self._period_list[cur]
            if not (1.0 / FOLLOW_RATIO < ratio < FOLLOW_RATIO
                    or weighted[best] > SWITCH_RATIO * weighted[cur]):
                best = cur
        self._grid_index = best
        period = self._period_list[best]
        a = np.maximum(self._acf[self._near[best]], 0.0)  # [K, 3]
        mass = float(a.sum())
        if mass > 0.0:
            centre = float(np.einsum("kj,kj->", a, self._near_lag[best]))
            lo = max(period / FOLLOW_RATIO, self._min_period)
            period = min(max(centre / mass, lo), period * FOLLOW_RATIO, self._max_period)
        self._period = period
        self._confidence = min(max(float(score[best]) / (HARMONICS * energy), 0.0), 1.0)

    def _phase_step(self, t: int, x: float) -> float | None:
        """The beat phase at frame t, onset value x (``_update_phase``): the beat reported
        there, else None."""
        c = self._c
        period = self._period
        if not period:
            c.append(x)
            del c[0]
            return None
        j0 = math.floor(period)
        frac = period - j0
        cb = x + COMB_FEEDBACK * ((1.0 - frac) * c[-j0] + frac * c[-j0 - 1])
        c.append(cb)
        del c[0]
        expected = self._next
        n = min(math.ceil(period), t + 1)
        window = c[:-n - 1:-1]  # the last n frames, newest first
        peak = max(window)
        if peak <= 0.0:
            self._next = math.inf
            return None
        k = window.index(peak)
        pos = float(t - k)
        if 0 < k < n - 1:
            older, newer = window[k + 1], window[k - 1]
            curve = older - 2.0 * peak + newer
            if curve < 0.0:
                pos += min(max(0.5 * (older - newer) / curve, -0.5), 0.5)
        self._next = pos + period
        if (self._confidence < MIN_CONFIDENCE or self._active > 2 * period
                or t - self._last_beat < 0.5 * period):
            return None
        if expected < t + 0.5 and expected >= t - 0.5:
            beat = expected
        elif k == 0 and x > 0.0 and expected - t < EARLY_FRACTION * period:
            beat = float(t)
        else:
            return None
        self._last_beat = beat
        self.beats_out += 1
        return beat


def _leaky(a: float, b: float, s: float, values: list[float]) -> list[float]:
    """The leaky sum s ← a·s + b·v over values in turn, from s: each step's result (plain
    floats, one frame's rounding each; b = 1 leaves v as it is)."""
    return [s := a * s + b * v for v in values]
