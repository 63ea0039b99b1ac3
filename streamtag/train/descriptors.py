"""Reference timbre descriptors: the labels for the model's timbre head.

Seven AudioCommons timbral attributes (seed 004), each written here from its published definition,
not taken from the ``timbral_models`` package. One function per descriptor returns the raw model
value in its own unit; :func:`describe` returns all seven mapped to [0, 1] through the fixed maps
in :data:`MAPPINGS`, the only place where raw values meet the [0, 1] scale.

========== ============================================================== ======================
descriptor what the raw value is                                          unit
========== ============================================================== ======================
brightness AudioCommons brightness regression (Pearce et al., D5.8):      AC points (~0-100)
           high-frequency energy ratio above 2 kHz and the centroid of
           the spectrum above 100 Hz, both power-weighted over frames
sharpness  Fastl / DIN 45692 sharpness of Zwicker-style specific          acum
           loudness on the Bark scale
roughness  Vassilakis (2007) pairwise spectral-peak roughness, scaled     asper
           so that the reference tone below gives 1 asper
boominess  Hatano & Hashimoto (2000) booming index as used by             booming index
           AudioCommons: low-frequency-weighted loudness times the        (weighted sone)
           share of loudness below 280 Hz
warmth     AudioCommons warmth approach, simplified (see :func:`warmth`)  AC points (~0-100)
depth      AudioCommons depth regression (D5.8) on our own features       AC points (~0-100)
hardness   simplified AudioCommons hardness: attack time and attack       hardness points
           spectral centroid (see :func:`hardness`)
========== ============================================================== ======================

Calibration. Digital full scale maps to sound pressure level through :data:`FULL_SCALE_DB_SPL`:
a signal whose mean square is 1.0 (RMS 1.0, e.g. a full-scale square wave) is 100 dB SPL, so a
sine of amplitude 1.0 is 97 dB SPL and RMS 0.01 is 60 dB SPL. The raw functions take the audio at
that calibration. :func:`describe` first scales the clip so that its loudest analysis frame sits
at :data:`REFERENCE_LEVEL_DB_SPL`: the training corpus randomises gain, and a label must not
change when the same sound is played louder.

Physical references (pinned by the tests, measured with this module):

- 1 kHz narrow-band noise, one critical band wide (920-1080 Hz), 60 dB SPL: 0.98-1.00 acum
  over noise draws and sample rates 16-48 kHz (DIN 45692: 1 acum). The nominal DIN constant
  :data:`SHARPNESS_SCALE_ACUM` = 0.11 meets it without adjustment.
- 1 kHz tone 100 % amplitude-modulated at 70 Hz, 60 dB SPL: 1.00 asper at 22.05 and 44.1 kHz,
  0.97 at 16 and 48 kHz (Zwicker & Fastl: 1 asper). The Vassilakis model has no absolute unit,
  so :data:`ROUGHNESS_SCALE_ASPER` is calibrated on this very signal at 22.05 kHz.
- 1 kHz tone at 40 dB SPL: 1.00 sone; :data:`LOUDNESS_SCALE` is calibrated on it (ISO 532-1's
  0.0635 times 1.27, which our simpler excitation pattern needs). +10 dB doubles loudness.

Silence (loudest frame below -200 dB re full scale) has no timbre: every raw function and every
:func:`describe` value is 0.0 for it. Empty or non-finite input raises :class:`ValueError`.

Speed: :func:`describe` on 1 s of 22.05 kHz noise takes 6-9 ms (best of 50; median 13-16 ms
while other jobs kept the 2-core development machine at a load of ~4.5). One shared STFT of
2048 points, hop 1024, feeds every descriptor, and nothing calls BLAS: on a busy machine its
thread start-up alone cost more than the whole analysis.

References: A. Pearce, T. Brookes, R. Mason, *AudioCommons Deliverable D5.8: Release of timbral
characterisation tools for semantically annotating non-musical content* (2019); DIN 45692:2009
*Measurement technique for the simulation of the auditory sensation of sharpness*; E. Zwicker,
H. Fastl, *Psychoacoustics: Facts and Models*; E. Terhardt, *Calculating virtual pitch* (1979)
for the threshold in quiet and the level-dependent upper masking slope; P. N. Vassilakis,
*SRA: a web-based research tool for spectral and roughness analysis of sound signals*, SMC 2007;
S. Hatano, T. Hashimoto, *Booming index as a measure for evaluating booming sensation*,
Inter-Noise 2000.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import scipy.fft
from scipy.ndimage import convolve1d, maximum_filter1d

from streamtag.record import TIMBRE_NAMES

__all__ = [
    "DESCRIPTOR_NAMES",
    "FULL_SCALE_DB_SPL",
    "MAPPINGS",
    "REFERENCE_LEVEL_DB_SPL",
    "LogisticScale",
    "boominess",
    "brightness",
    "depth",
    "describe",
    "hardness",
    "map_to_unit",
    "raw_descriptors",
    "roughness",
    "sharpness",
    "warmth",
]

DESCRIPTOR_NAMES: tuple[str, ...] = TIMBRE_NAMES  # the record's order, from the wire module

FULL_SCALE_DB_SPL = 100.0
"""dB SPL of a digital signal with mean square 1.0 (RMS 1.0)."""

REFERENCE_LEVEL_DB_SPL = 70.0
"""dB SPL at which :func:`describe` places the loudest analysis frame of every clip."""

MIN_SAMPLE_RATE_HZ = 8000
"""Below this the 2 kHz brightness split and the Bark scale lose their meaning."""

_SILENCE_MEAN_SQUARE = 1e-20  # -200 dB re full scale: below any real recording's noise floor


# ------------------------------------------------------------------------------------------------
# The mapping table: raw value -> [0, 1]. Keep every constant of the mapping here.
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogisticScale:
    """A fixed logistic map from a raw descriptor value to [0, 1].

    ``y = 1 / (1 + exp(-(t - centre) / width))`` with ``t = raw`` or, when ``log10`` is set,
    ``t = log10(max(raw, floor))`` for raw values that span decades. ``centre`` is the raw value
    (or its log) that maps to 0.5; one ``width`` below and above it map to 0.27 and 0.73. A
    logistic never quite reaches 0 or 1, so labels keep their order at the extremes, where a
    clipped line would make them ties.
    """

    unit: str
    centre: float
    width: float
    log10: bool = False
    floor: float = 1e-6

    def __call__(self, raw: float) -> float:
        t = math.log10(max(raw, self.floor)) if self.log10 else raw
        z = (t - self.centre) / self.width
        # exp overflows for z < -709; the answer there is 0 to double precision anyway
        if z < -700.0:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))


MAPPINGS: dict[str, LogisticScale] = {
    # name: LogisticScale(raw unit, centre -> 0.5, centre -+ width -> 0.27 / 0.73, log10 of raw?)
    "brightness": LogisticScale("AC points", centre=60.0, width=10.0),
    "warmth": LogisticScale("AC points", centre=40.0, width=8.0),
    "roughness": LogisticScale("asper", centre=0.4, width=0.4, log10=True, floor=1e-3),
    "sharpness": LogisticScale("acum", centre=1.5, width=0.5),
    "boominess": LogisticScale("booming index", centre=0.0, width=0.4, log10=True, floor=1e-4),
    "depth": LogisticScale("AC points", centre=45.0, width=12.0),
    "hardness": LogisticScale("hardness points", centre=90.0, width=20.0),
}
"""The fixed raw -> [0, 1] maps. Centres and widths were read off the raw values of a survey of
synthetic signals and one-second General MIDI notes (FluidR3) at the reference level, so that
typical sounds spread over the middle of the range. Where things land (raw -> mapped):

- brightness: sine 100 Hz 24.6 -> 0.03; white noise 82.2 -> 0.90
- warmth: white noise 21.5 -> 0.09; sine 100 Hz 67.7 -> 0.97
- roughness: flute 0.19 asper -> 0.06; the AM reference (at 70 dB) 1.26 -> 0.32; sawtooth
  110 Hz 39 -> 0.95 (peak-pair models score rich spectra and noise far above the AM reference)
- sharpness: 1 kHz narrow-band noise (at 70 dB) 1.02 acum -> 0.27; white noise 2.65 -> 0.91
- boominess: 1 kHz tone 0.002 -> 0.00; GM kick 1.96 -> 0.67
- depth: sine 4 kHz 1.8 -> 0.03; GM bass 73.2 -> 0.91
- hardness: GM violin 34 -> 0.06; GM snare 120 -> 0.82
"""


def map_to_unit(name: str, raw: float) -> float:
    """Map one raw descriptor value to [0, 1] through :data:`MAPPINGS`.

    Args:
        name: one of :data:`DESCRIPTOR_NAMES`.
        raw: the value the descriptor's own function returns, in its unit.

    Returns:
        A float in [0, 1].

    Raises:
        KeyError: ``name`` is not a descriptor.
        ValueError: ``raw`` is not finite.
    """
    if not math.isfinite(raw):
        raise ValueError(f"raw {name} value is non-finite: {raw!r}")
    return MAPPINGS[name](raw)


# ------------------------------------------------------------------------------------------------
# Psychoacoustic building blocks
# ------------------------------------------------------------------------------------------------


def _hz_to_bark(f_hz: np.ndarray) -> np.ndarray:
    """Critical-band rate [Bark] of frequencies [Hz] (Zwicker & Terhardt 1980)."""
    return 13.0 * np.arctan(0.00076 * f_hz) + 3.5 * np.arctan((f_hz / 7500.0) ** 2)


_F_TABLE_HZ = np.linspace(0.0, 30000.0, 30001)
_Z_TABLE = _hz_to_bark(_F_TABLE_HZ)


def _bark_to_hz(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_bark` by table lookup (the formula has no closed inverse)."""
    return np.interp(z, _Z_TABLE, _F_TABLE_HZ)


def _threshold_in_quiet_db(f_hz: np.ndarray) -> np.ndarray:
    """Threshold in quiet [dB SPL] after Terhardt (1979), which also stands in for the outer and
    middle ear transmission that ISO 532-1 models separately."""
    f = np.maximum(f_hz, 1.0) / 1000.0
    return 3.64 * f**-0.8 - 6.5 * np.exp(-0.6 * (f - 3.3) ** 2) + 1e-3 * f**4


# Bark grid for specific loudness: 0.2-Bark slices (ISO 532-1 uses 0.1; 0.2 changes sharpness by
# < 0.2 % on noise bands and tones and halves the cost of the spreading below).
_DZ_BARK = 0.2
_Z_BARK = np.arange(_DZ_BARK / 2, 24.0, _DZ_BARK)  # slice centres [Z]
_F_Z_HZ = _bark_to_hz(_Z_BARK)
_LTQ_DB = _threshold_in_quiet_db(_F_Z_HZ)
_CB_SLICES = round(1.0 / _DZ_BARK)  # slices per critical band (odd, so it centres)
# Excitation spreading (Terhardt 1979): flat over the critical band around the source, then
# 27 dB/Bark towards lower rates and a level-dependent slope towards higher rates.
_LOWER_SLOPE_DB_PER_BARK = 27.0
_MIN_UPPER_SLOPE_DB_PER_BARK = 5.0  # Terhardt's line would reach 0 dB/Bark near 120 dB SPL

LOUDNESS_SCALE = 0.0635 * 1.270
"""Constant of the specific-loudness law [sone/Bark]; calibrated (see module docstring)."""

# DIN 45692 weighting g(z): 1 up to 15.8 Bark, rising exponentially above.
_SHARPNESS_WEIGHT = np.where(_Z_BARK <= 15.8, 1.0, 0.15 * np.exp(0.42 * (_Z_BARK - 15.8)) + 0.85)
SHARPNESS_SCALE_ACUM = 0.11
"""DIN 45692 constant k [acum·Bark⁻¹]; checked against the 1 kHz narrow-band reference."""

# Booming index weighting after Hatano & Hashimoto (2000) in AudioCommons' form:
# 2.13 * exp(-0.151 * k) with k the one-third-octave band number counted from 25 Hz = 1.
# Held flat below 25 Hz so that infrasound cannot dominate the index.
_THIRD_OCTAVE_INDEX = 1.0 + 3.0 * np.log2(np.maximum(_F_Z_HZ, 25.0) / 25.0)
_BOOMING_WEIGHT = 2.13 * np.exp(-0.151 * _THIRD_OCTAVE_INDEX)
_BOOMING_SPLIT_HZ = 280.0


# Warmth loudness regions, AudioCommons-style bumps: "warm region" 1-4 Bark (~100-400 Hz),
# "high-frequency region" 8-24 Bark (~900 Hz and up).
def _bump(lo_bark: float, hi_bark: float) -> np.ndarray:
    inside = (_Z_BARK >= lo_bark) & (_Z_BARK <= hi_bark)
    phase = (_Z_BARK - lo_bark) / (hi_bark - lo_bark)
    return np.where(inside, np.sin(np.pi * phase) ** 2, 0.0)


_WARM_REGION = _bump(1.0, 4.0)
_HF_REGION = _bump(8.0, 24.0)

# Vassilakis (2007) constants
_V_B1, _V_B2 = 3.5, 5.75
_V_XSTAR, _V_S1, _V_S2 = 0.24, 0.0207, 18.96
ROUGHNESS_SCALE_ASPER = 1.0 / 0.02259
"""Factor from the Vassilakis sum (amplitudes re full scale) to asper; calibrated."""
_PEAK_FLOOR_DB = -40.0  # spectral peaks more than 40 dB below the frame's largest are ignored
# The largest 40 peaks per frame: bounds the pair tensor to [frames, 40, 40]. Tones and chords
# have fewer; for noise, which has hundreds, this makes the score a lower bound of the full sum.
_MAX_PEAKS = 40

# Hardness (own simplified model)
_ATTACK_MAX_S = 0.2
_ATTACK_START, _ATTACK_END = 0.1, 0.6  # fractions of the event's level (see _attack)
_ATTACK_CENTROID_MIN_HZ = 200.0
_ATTACK_WINDOW_S = 0.125  # the spectrum of the attack: 125 ms from its start, as AudioCommons

_ENVELOPE_BLOCK_S = 0.0005
_ENVELOPE_HOLD_S = 0.02  # |x| of a 25 Hz tone peaks every 20 ms; longer steadies noise
# Onsets in running music (describe's lead): a rise over the least envelope of the 50 ms before,
# to its peak within 100 ms, of at least 6 dB (less is a swell or a held note's wobble).
_ONSET_LOOKBACK_S = 0.05
_ONSET_PEAK_S = 0.1
_ONSET_MIN_RISE = 2.0
_DECAY_DB = -40.0  # depth's duration: until the envelope falls 40 dB below its peak


def _butter_power(f_hz: np.ndarray, fc_hz: float, *, highpass: bool, order: int = 3) -> np.ndarray:
    """Power response |H|^2 of a Butterworth filter, applied as spectral weights so that the
    AudioCommons pre-filters (-18 dB/octave) cost nothing beyond the shared STFT."""
    with np.errstate(divide="ignore"):
        ratio = fc_hz / f_hz if highpass else f_hz / fc_hz
    return 1.0 / (1.0 + ratio ** (2 * order))


# ------------------------------------------------------------------------------------------------
# Shared analysis
# ------------------------------------------------------------------------------------------------


def _validate(audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, (int, np.integer)):
        raise ValueError(f"sample_rate_hz must be an int, got {sample_rate_hz!r}")
    if sample_rate_hz < MIN_SAMPLE_RATE_HZ:
        raise ValueError(
            f"sample_rate_hz {sample_rate_hz} is too low: need at least {MIN_SAMPLE_RATE_HZ} Hz"
        )
    a = np.asarray(audio)
    if a.ndim != 1:
        raise ValueError(f"audio must be mono with shape [T], got shape {list(a.shape)}")
    if a.size == 0:
        raise ValueError("audio is empty: need at least one sample")
    if a.dtype.kind not in "iuf":
        raise ValueError(f"audio must be real numbers, got dtype {a.dtype}")
    if a.dtype.kind in "iu":
        # integer PCM: full scale of the type is 1.0 (unsigned PCM is offset by half its range)
        half = float(2 ** (8 * a.dtype.itemsize - 1))
        a = (a.astype(np.float64) - (half if a.dtype.kind == "u" else 0.0)) / half
    a = a.astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(a)))
    if bad:
        raise ValueError(f"audio is non-finite: {bad} of {a.size} samples are NaN or infinite")
    return a


@lru_cache(maxsize=16)
def _stft_layout(sample_rate_hz: int) -> tuple[int, np.ndarray, np.ndarray]:
    """FFT size [samples] (~93 ms, a power of two), Hann window [N] and bin frequencies [F]."""
    n_fft = 2 ** round(math.log2(0.093 * sample_rate_hz))
    window = np.hanning(n_fft + 2)[1:-1]  # no zero end points: every sample counts
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz)
    return n_fft, window, freqs


@lru_cache(maxsize=16)
def _slice_layout(sample_rate_hz: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """How FFT bins fall into 0.2-Bark slices: bin frequency is monotonic in Bark, so each
    slice is a contiguous run of bins. Returns the first bin of each non-empty slice, those
    slices' indices, and the bin range [lo, hi) used (20 Hz up to the top of the grid)."""
    _, _, freqs = _stft_layout(sample_rate_hz)
    idx = np.floor(_hz_to_bark(freqs) / _DZ_BARK).astype(int)
    keep = np.flatnonzero((freqs >= 20.0) & (idx < _Z_BARK.size))
    lo, hi = int(keep[0]), int(keep[-1]) + 1
    slices, first = np.unique(idx[lo:hi], return_index=True)
    return first, slices, lo, hi


class _Analysis:
    """Everything the descriptors share, computed once per clip and lazily where costly.

    Attributes:
        x: the audio [T] at the module calibration (after any level normalisation).
        power: per-bin mean square [F, frames]; a band's sum is that band's mean square.
        amplitude: per-bin sinusoid amplitude [F, frames] (a sine of amplitude A peaks at A).
        freqs: bin frequencies [F] [Hz].
        frame_power: mean square of each frame [frames].
        silent: the loudest frame is below -200 dB re full scale.
    """

    def __init__(self, audio: np.ndarray, sample_rate_hz: int, *, normalise: bool) -> None:
        x = _validate(audio, sample_rate_hz)
        self.sample_rate_hz = int(sample_rate_hz)
        n_fft, window, freqs = _stft_layout(self.sample_rate_hz)
        hop = n_fft // 2
        n_frames = 1 + max(0, math.ceil((x.size - n_fft) / hop))
        padded = np.zeros(n_fft + (n_frames - 1) * hop)
        padded[: x.size] = x
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
        spec = np.abs(scipy.fft.rfft(frames * window, axis=1)).T  # [F, frames]
        # one-sided scaling: interior bins carry both the positive and the negative frequency
        side = np.full(freqs.size, 2.0)
        side[0] = 1.0
        if n_fft % 2 == 0:
            side[-1] = 1.0
        power = spec**2 * (side / (n_fft * np.sum(window**2)))[:, None]
        amplitude = spec * (2.0 / np.sum(window))
        frame_power = power.sum(axis=0)
        peak = float(frame_power.max())
        self.silent = peak <= _SILENCE_MEAN_SQUARE
        if normalise and not self.silent:
            target = 10.0 ** ((REFERENCE_LEVEL_DB_SPL - FULL_SCALE_DB_SPL) / 10.0)
            gain2 = target / peak
            x = x * math.sqrt(gain2)
            power = power * gain2
            amplitude = amplitude * math.sqrt(gain2)
            frame_power = frame_power * gain2
        self.x = x
        self.freqs = freqs
        self.power = power
        self.amplitude = amplitude
        self.frame_power = frame_power

    # -- spectra -----------------------------------------------------------------------------

    @cached_property
    def hp20_power(self) -> np.ndarray:
        """Power [F, frames] after the 20 Hz high-pass every AudioCommons model starts with."""
        return self.power * _butter_power(self.freqs, 20.0, highpass=True)[:, None]

    @cached_property
    def long_term_power(self) -> np.ndarray:
        """Mean over frames of :attr:`hp20_power` [F]."""
        return self.hp20_power.mean(axis=1)

    @cached_property
    def lowest_peak_hz(self) -> float:
        """Frequency [Hz] of the lowest spectral peak within 20 dB of the largest (>= 20 Hz).

        AudioCommons' pitch estimate for depth and warmth: the lowest prominent partial.
        Falls back to the largest bin when the spectrum has no local maximum (a click).
        """
        p = self.long_term_power
        f = self.freqs
        is_peak = np.zeros(p.size, dtype=bool)
        is_peak[1:-1] = (p[1:-1] > p[:-2]) & (p[1:-1] >= p[2:])
        is_peak &= (p >= 0.01 * p.max()) & (f >= 20.0)
        hits = np.flatnonzero(is_peak)
        k = int(hits[0]) if hits.size else int(np.argmax(p))
        return float(max(f[k], 20.0))

    # -- loudness ----------------------------------------------------------------------------

    @cached_property
    def specific_loudness(self) -> np.ndarray:
        """Zwicker-style specific loudness N'(z) [sone/Bark], shape [Z, frames].

        Band powers on 0.2-Bark slices are spread into an excitation pattern (flat over one
        critical band, 27 dB/Bark below, 24 + 230/f - 0.2 L dB/Bark above, after Terhardt) and
        turned into specific loudness with Zwicker's law
        ``N' = c 10^(0.025 LTQ) ((0.75 + 0.25 E/E_TQ)^0.25 - 1)``, which is 0 at threshold.
        """
        first_bin, slices, lo, hi = _slice_layout(self.sample_rate_hz)
        bands = np.zeros((_Z_BARK.size, self.power.shape[1]))  # [Z, frames] mean square
        bands[slices] = np.add.reduceat(self.power[lo:hi], first_bin, axis=0)
        cal = 10.0 ** (FULL_SCALE_DB_SPL / 10.0)
        # flat top: the power within +-0.5 Bark is the critical-band intensity itself
        excitation = convolve1d(bands, np.ones(_CB_SLICES), axis=0, mode="constant")
        cb_db = 10.0 * np.log10(np.maximum(excitation * cal, 1e-10))
        upper_slope = np.maximum(
            24.0 + 230.0 / _F_Z_HZ[:, None] - 0.2 * cb_db, _MIN_UPPER_SLOPE_DB_PER_BARK
        )  # [Z_source, frames] dB/Bark
        # Skirts: a source m slices away (outside its critical band) is attenuated by
        # 10^(-slope (0.2 m - 0.5) / 10) = step^(m - 2.5) with step = 10^(-slope 0.2 / 10).
        # Walking m outwards multiplies by `step` each time: no [Z, Z, frames] tensor, no powers
        # in the loop, and no BLAS call (its thread start-up costs more than this whole model).
        up_step = 10.0 ** (-upper_slope * _DZ_BARK / 10.0)  # [Z_source, frames]
        low_step = 10.0 ** (-_LOWER_SLOPE_DB_PER_BARK * _DZ_BARK / 10.0)
        first = _CB_SLICES // 2 + 1  # the first slice outside the source's critical band
        offset = first - 0.5 / _DZ_BARK
        up = bands * up_step**offset
        down = bands * low_step**offset
        z = _Z_BARK.size
        for m in range(first, z):
            excitation[m:] += up[: z - m]  # sources below the target
            excitation[: z - m] += down[m:]  # sources above the target
            up *= up_step
            down *= low_step
        ratio = excitation * (cal * 10.0 ** (-_LTQ_DB / 10.0))[:, None]  # E / E_TQ
        n = (0.75 + 0.25 * ratio) ** 0.25 - 1.0
        return LOUDNESS_SCALE * 10.0 ** (0.025 * _LTQ_DB)[:, None] * np.maximum(n, 0.0)

    @cached_property
    def loudness(self) -> np.ndarray:
        """Total loudness N [sone] of each frame, shape [frames]."""
        return self.specific_loudness.sum(axis=0) * _DZ_BARK

    # -- envelope ----------------------------------------------------------------------------

    @cached_property
    def envelope(self) -> tuple[np.ndarray, float]:
        """Peak-hold amplitude envelope [blocks] and its block duration [s].

        Block maxima of |x| over 0.5 ms, then the maximum over the next 20 ms: |x| of any tone
        of 25 Hz or more peaks at least every 20 ms, so tones do not ripple, and the held
        maxima of noise scatter less than over shorter holds. Looking ahead rather than back
        moves a monotonic rise earlier by exactly the hold and leaves its duration alone, and
        the first block already holds 20 ms of signal: a trailing maximum would creep up over
        the first milliseconds of noise (the largest of few samples is small) and invent an
        attack where the clip starts abruptly.
        """
        block = max(1, round(_ENVELOPE_BLOCK_S * self.sample_rate_hz))
        n_blocks = math.ceil(self.x.size / block)
        padded = np.zeros(n_blocks * block)
        padded[: self.x.size] = np.abs(self.x)
        peaks = padded.reshape(n_blocks, block).max(axis=1)
        hold = max(1, round(_ENVELOPE_HOLD_S * self.sample_rate_hz / block))
        env = maximum_filter1d(peaks, hold, origin=-(hold // 2), mode="constant", cval=0.0)
        return env, block / self.sample_rate_hz


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    total = float(weights.sum())
    return float((values * weights).sum() / total) if total > 0.0 else 0.0


# ------------------------------------------------------------------------------------------------
# Descriptor models on an analysis
# ------------------------------------------------------------------------------------------------


def _brightness(a: _Analysis) -> float:
    if a.silent:
        return 0.0
    p = a.hp20_power
    total = p.sum(axis=0)
    hf = (p * _butter_power(a.freqs, 2000.0, highpass=True)[:, None]).sum(axis=0)
    p100 = p * _butter_power(a.freqs, 100.0, highpass=True)[:, None]
    p100_total = p100.sum(axis=0)
    safe = np.where(total > 0.0, total, 1.0)
    safe100 = np.where(p100_total > 0.0, p100_total, 1.0)
    ratio = _weighted_mean(hf / safe, total)
    centroid = _weighted_mean(np.einsum("f,ft->t", a.freqs, p100) / safe100, p100_total)
    # floors keep the logs finite for a pure low tone; they sit far below any real sound
    return 4.613 * math.log10(max(ratio, 1e-6)) + 17.379 * math.log10(max(centroid, 20.0)) + 17.435


def _sharpness(a: _Analysis) -> float:
    if a.silent:
        return 0.0
    # the loudness-weighted mean over frames = sharpness of the summed specific loudness
    n = a.specific_loudness.sum(axis=1)
    total = float(n.sum())
    if total <= 0.0:
        return 0.0
    return SHARPNESS_SCALE_ACUM * float((n * _SHARPNESS_WEIGHT * _Z_BARK).sum()) / total


def _roughness(a: _Analysis) -> float:
    if a.silent:
        return 0.0
    amp = a.amplitude  # [F, frames]
    f_res = a.freqs[1]
    mid = amp[1:-1]
    is_peak = (mid > amp[:-2]) & (mid >= amp[2:])
    floor = amp.max(axis=0) * 10.0 ** (_PEAK_FLOOR_DB / 20.0)
    is_peak &= (mid >= floor[None, :]) & (a.freqs[1:-1, None] >= 20.0)
    cand = np.where(is_peak, mid, 0.0).T  # [frames, F-2]
    k = min(_MAX_PEAKS, cand.shape[1])
    top = np.argpartition(-cand, k - 1, axis=1)[:, :k]  # [frames, K] bin index - 1
    rows = np.arange(cand.shape[0])[:, None]
    present = cand[rows, top] > 0.0
    # parabolic interpolation on log amplitude: frequency and height of the true peak
    bins = top + 1
    eps = 1e-300
    alpha = np.log(amp.T[rows, bins - 1] + eps)
    beta = np.log(amp.T[rows, bins] + eps)
    gamma = np.log(amp.T[rows, bins + 1] + eps)
    denom = alpha - 2.0 * beta + gamma
    curved = present & (denom < 0.0)
    offset = np.where(curved, 0.5 * (alpha - gamma) / np.where(curved, denom, -1.0), 0.0)
    offset = np.clip(offset, -0.5, 0.5)  # a true local maximum lies within half a bin
    freq = np.where(present, (bins + offset) * f_res, 0.0)
    # the Hann-window correction is at most ~1.4 dB; clipping guards against exact-zero bins
    gain = np.clip(-0.25 * (alpha - gamma) * offset, 0.0, math.log(1.5))
    level = np.where(present, np.exp(beta + gain), 0.0)
    # Vassilakis 2007 for every pair: X^0.1 * 0.5 * Y^3.11 * Z
    a1, a2 = level[:, :, None], level[:, None, :]
    f1, f2 = freq[:, :, None], freq[:, None, :]
    a_sum = a1 + a2
    x = a1 * a2
    y = 2.0 * np.minimum(a1, a2) / np.where(a_sum > 0.0, a_sum, 1.0)
    f_min = np.minimum(f1, f2)
    df = np.abs(f2 - f1)
    s = _V_XSTAR / (_V_S1 * f_min + _V_S2)
    z = np.exp(-_V_B1 * s * df) - np.exp(-_V_B2 * s * df)
    pair = x**0.1 * 0.5 * y**3.11 * z
    upper = np.triu(np.ones((k, k), dtype=bool), 1)  # each unordered pair once
    per_frame = np.where(upper[None], pair, 0.0).sum(axis=(1, 2))
    return ROUGHNESS_SCALE_ASPER * _weighted_mean(per_frame, a.frame_power)


def _boominess(a: _Analysis) -> float:
    if a.silent:
        return 0.0
    n_prime = a.specific_loudness  # [Z, frames]
    total = n_prime.sum(axis=0)
    weighted = (n_prime * _BOOMING_WEIGHT[:, None]).sum(axis=0) * _DZ_BARK
    low = n_prime[_F_Z_HZ < _BOOMING_SPLIT_HZ].sum(axis=0)
    share = low / np.where(total > 0.0, total, 1.0)
    return _weighted_mean(weighted * share, a.frame_power)


def _warmth(a: _Analysis) -> float:
    if a.silent:
        return 0.0
    p = a.long_term_power
    f = a.freqs
    total = float(p.sum())
    if total <= 0.0:
        return 0.0
    centroid = max(float(f @ p) / total, 20.0)
    f0 = a.lowest_peak_hz
    lf_ratio = float(p[(f >= f0) & (f < 260.0)].sum()) / total if f0 < 260.0 else 0.0
    # how well a straight line in log-log describes the spectrum above the warm region
    above = (f >= min(3.5 * f0, 12000.0)) & (f > 0.0)
    decay_r2 = 0.0
    if np.count_nonzero(above) >= 3:
        xs = np.log10(f[above])
        ys = np.log10(p[above] + 1e-12 * p.max())
        xs = xs - xs.mean()
        ys = ys - ys.mean()
        sxx, syy = float(xs @ xs), float(ys @ ys)
        if sxx > 0.0 and syy > 0.0:
            decay_r2 = float(xs @ ys) ** 2 / (sxx * syy)
    n_prime = a.specific_loudness.sum(axis=1)
    n_total = float(n_prime.sum())
    region = float((n_prime * (_WARM_REGION - _HF_REGION)).sum()) / n_total if n_total else 0.0
    return (
        45.21 - 4.464 * math.log10(centroid) + 17.27 * decay_r2 + 8.403 * lf_ratio + 20.0 * region
    )


def _depth(a: _Analysis) -> float:
    if a.silent:
        return 0.0
    p = a.hp20_power
    total = p.sum(axis=0)
    safe = np.where(total > 0.0, total, 1.0)
    lp2k = p * _butter_power(a.freqs, 2000.0, highpass=False)[:, None]
    lp2k_total = lp2k.sum(axis=0)
    lower_centroid = _weighted_mean(
        np.einsum("f,ft->t", a.freqs, lp2k) / np.where(lp2k_total > 0.0, lp2k_total, 1.0), total
    )
    lower_centroid = min(lower_centroid, 2000.0)
    lp500 = (p * _butter_power(a.freqs, 500.0, highpass=False)[:, None]).sum(axis=0)
    lower_ratio = _weighted_mean(lp500 / safe, total)
    env, block_s = a.envelope
    top = int(np.argmax(env))
    below = np.flatnonzero(env[top:] < env[top] * 10.0 ** (_DECAY_DB / 20.0))
    blocks = int(below[0]) if below.size else env.size - top
    log_duration = math.log10(max(blocks, 1) * block_s)
    log_pitch = math.log10(a.lowest_peak_hz)
    squash = 1.0 / (1.0 + math.exp(-lower_ratio))
    return (
        -0.004370 * lower_centroid
        + 32.84 * lower_ratio
        + 4.751 * log_duration
        - 14.22 * log_pitch
        + 3.878 * lower_ratio * log_duration
        - 0.8545 * squash * log_duration
        + 66.70
    )


def _attack(a: _Analysis) -> tuple[float, int]:
    """Attack time [s] of the loudest event and where it starts [sample].

    From 10 % to 60 % of the event's level, taken as the median of the envelope over its loud
    part (blocks above half the maximum) rather than the maximum itself: the held maxima of
    noise scatter, and timing the attack to the largest would put its end at a random spike.
    60 % rather than the usual 90 % keeps low, narrow-band noise (whose envelope swings
    slowly) from having a random attack time when it starts abruptly. For a steady tone the
    level is the amplitude; for a decaying hit ~0.7 of the peak, the same for every decay
    rate. A linear fade-in of duration T therefore measures about T / 2. Audio before the clip
    counts as silence.
    """
    env, block_s = a.envelope
    top = float(env.max())
    level = float(np.median(env[env >= 0.5 * top]))
    reach = int(np.argmax(env >= _ATTACK_END * level))
    quiet = np.flatnonzero(env[:reach] < _ATTACK_START * level)
    start = int(quiet[-1]) + 1 if quiet.size else 0  # the clip starts from silence before it
    return _attack_between(env, block_s, start, reach, 0.0, level), start * _block(a)


def _onset_attack(a: _Analysis, first_block: int) -> tuple[float, int]:
    """Attack time [s] of the strongest onset after envelope block ``first_block`` and where it
    starts [sample]; the blocks before it are the sound leading up to the described audio.

    Music rarely falls silent between notes, so an onset is a rise over the sound before it:
    the block whose envelope most exceeds the least envelope of the ``_ONSET_LOOKBACK_S``
    before it (the floor). The attack goes from the floor plus 10 % to the floor plus 60 % of
    the rise to the event's peak (the envelope's maximum over ``_ONSET_PEAK_S`` from the
    onset). From silence that is the usual 10-60 % of the level. A rise of less than
    ``_ONSET_MIN_RISE`` (the peak over the floor) is no attack (a held or swelling sound):
    the longest attack time, at the start of the described audio.
    """
    env, block_s = a.envelope
    back = max(1, round(_ONSET_LOOKBACK_S / block_s))
    ahead = max(1, round(_ONSET_PEAK_S / block_s))
    # floor[i]: least envelope over the `back` blocks before block i (none before the first)
    padded = np.concatenate([np.full(back, np.inf), env])
    floor = np.lib.stride_tricks.sliding_window_view(padded, back)[: env.size].min(axis=1)
    floor = np.where(np.isfinite(floor), floor, 0.0)
    onset = first_block + int(np.argmax(env[first_block:] - floor[first_block:]))
    base = float(floor[onset])
    peak = float(env[onset : onset + ahead].max())
    if peak <= 0.0 or peak < _ONSET_MIN_RISE * base:
        return _ATTACK_MAX_S, first_block * _block(a)
    lo = max(0, onset - back)
    low = lo + int(np.argmin(env[lo:onset])) if onset > lo else onset
    reach = low + int(np.argmax(env[low:] >= base + _ATTACK_END * (peak - base)))
    quiet = np.flatnonzero(env[low:reach] < base + _ATTACK_START * (peak - base))
    start = low + int(quiet[-1]) + 1 if quiet.size else low
    return _attack_between(env, block_s, start, reach, base, peak), start * _block(a)


def _block(a: _Analysis) -> int:
    """Samples per envelope block."""
    return max(1, round(_ENVELOPE_BLOCK_S * a.sample_rate_hz))


def _attack_between(env: np.ndarray, block_s: float, start: int, reach: int, base: float,
                    level: float) -> float:
    """Attack time [s] from where ``env`` rises through ``base`` + 10 % of ``level - base``
    (just before block ``start``) to where it reaches ``base`` + 60 % (block ``reach``).

    Both ends are interpolated between blocks: counting whole blocks made an instant attack 1 or
    2 blocks long (12 hardness points apart) by where the onset fell in its block. At least
    one block, at most ``_ATTACK_MAX_S``.
    """
    end_at = _crossing(env, reach, base + _ATTACK_END * (level - base))
    start_at = _crossing(env, start, base + _ATTACK_START * (level - base)) if start else 0.0
    return min(max(end_at - start_at, 1.0) * block_s, _ATTACK_MAX_S)


def _crossing(env: np.ndarray, i: int, threshold: float) -> float:
    """Fractional block where ``env`` rises through ``threshold`` (env[i-1] < it <= env[i])."""
    if i == 0:
        return 0.0
    below, above = float(env[i - 1]), float(env[i])
    return i - 1 + (threshold - below) / (above - below)


def _hardness(a: _Analysis, first_block: int = 0) -> float:
    """Raw hardness (see ``hardness``); with ``first_block`` > 0, of the strongest onset after
    that envelope block (``_onset_attack``), else of the loudest event (``_attack``)."""
    if a.silent:
        return 0.0
    attack_s, start = _onset_attack(a, first_block) if first_block else _attack(a)
    n = max(2, round(_ATTACK_WINDOW_S * a.sample_rate_hz))
    seg = np.zeros(n)
    piece = a.x[start : start + n]
    seg[: piece.size] = piece
    p = np.abs(np.fft.rfft(seg * np.hanning(n))) ** 2
    f = np.fft.rfftfreq(n, 1.0 / a.sample_rate_hz)
    total = float(p.sum())
    centroid = float(f @ p) / total if total > 0.0 else 0.0
    centroid = max(centroid, _ATTACK_CENTROID_MIN_HZ)
    return 40.0 * math.log10(_ATTACK_MAX_S / attack_s) + 20.0 * math.log10(
        centroid / _ATTACK_CENTROID_MIN_HZ
    )


_MODELS: dict[str, Callable[[_Analysis], float]] = {
    "brightness": _brightness,
    "warmth": _warmth,
    "roughness": _roughness,
    "sharpness": _sharpness,
    "boominess": _boominess,
    "depth": _depth,
    "hardness": _hardness,
}


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------


def brightness(audio: np.ndarray, sample_rate_hz: int) -> float:
    """Brightness [AC points] of mono audio [T] (AudioCommons ``timbral_brightness`` model).

    Features, each weighted by frame power over ~93 ms Hann frames after a 20 Hz high-pass:
    the share of power above 2 kHz (3rd-order Butterworth high-pass, as AudioCommons) and the
    spectral centroid [Hz] above 100 Hz (same filter). Raw value
    ``4.613 log10(ratio) + 17.379 log10(centroid) + 17.435`` (D5.8 regression), roughly 0-100
    for real sounds. Scale-free: gain does not change it.
    """
    return _brightness(_Analysis(audio, sample_rate_hz, normalise=False))


def sharpness(audio: np.ndarray, sample_rate_hz: int) -> float:
    """Sharpness [acum] of mono audio [T] at the module calibration (DIN 45692, Fastl weighting).

    ``S = k * sum(N'(z) g(z) z) / sum(N'(z))`` over the loudness-weighted specific loudness
    N'(z) [sone/Bark] of the clip, g(z) = 1 up to 15.8 Bark and ``0.15 e^(0.42 (z - 15.8))
    + 0.85`` above, k = :data:`SHARPNESS_SCALE_ACUM`. Level-dependent through the masking
    slopes, as real sharpness is.
    """
    return _sharpness(_Analysis(audio, sample_rate_hz, normalise=False))


def roughness(audio: np.ndarray, sample_rate_hz: int) -> float:
    """Roughness [asper] of mono audio [T] by Vassilakis' (2007) pairwise-peak model.

    In each ~93 ms frame the spectral peaks within 40 dB of the largest (at most 40, with
    parabolic interpolation of frequency and amplitude) are paired; each pair of amplitudes
    A1, A2 and frequencies f1 < f2 adds ``(A1 A2)^0.1 * 0.5 * (2 min(A) / (A1 + A2))^3.11 *
    (e^(-3.5 s df) - e^(-5.75 s df))`` with ``s = 0.24 / (0.0207 f1 + 18.96)``, df = f2 - f1.
    The frame sums are averaged with frame-power weights and scaled by
    :data:`ROUGHNESS_SCALE_ASPER` so that a 1 kHz tone, 100 % AM at 70 Hz, 60 dB SPL, is
    1 asper. The model's own level dependence is weak ((A1 A2)^0.1).
    """
    return _roughness(_Analysis(audio, sample_rate_hz, normalise=False))


def boominess(audio: np.ndarray, sample_rate_hz: int) -> float:
    """Booming index [weighted sone] of mono audio [T] (Hatano & Hashimoto 2000).

    Per frame: ``sum(N'(z) w(z) dz) * N(f < 280 Hz) / N`` with w = 2.13 e^(-0.151 k), k the
    one-third-octave band number from 25 Hz (= 1), held flat below 25 Hz; frame-power-weighted
    mean over frames. Depends on level through the loudness N'.
    """
    return _boominess(_Analysis(audio, sample_rate_hz, normalise=False))


def warmth(audio: np.ndarray, sample_rate_hz: int) -> float:
    """Warmth [AC points] of mono audio [T], the AudioCommons ``timbral_warmth`` approach.

    Simplified: one long-term spectrum instead of one per onset. Features: log10 spectral
    centroid [Hz] (-4.464), R² of a straight-line fit to the log-log spectrum above 3.5 times
    the lowest prominent partial f0 (a smooth roll-off is warm, +17.27), share of power from f0
    to 260 Hz when f0 < 260 Hz (+8.403), intercept 45.21 (D5.8 constants). AudioCommons' two
    raw loudness sums over a warm region (1-4 Bark) and a high region (8-24 Bark) are replaced
    by one scale-free term, 20 times the difference of their shares of the total loudness (our
    constant; it spans a similar +-10 points).
    """
    return _warmth(_Analysis(audio, sample_rate_hz, normalise=False))


def depth(audio: np.ndarray, sample_rate_hz: int) -> float:
    """Depth [AC points] of mono audio [T], the AudioCommons ``timbral_depth`` regression.

    Features: frame-power-weighted centroid [Hz] of the spectrum below 2 kHz (3rd-order
    low-pass, capped at 2000 Hz), share of power below 500 Hz (same filter), log10 of the
    time [s] from the envelope peak until it falls 40 dB (or the clip ends), and log10 of the
    lowest prominent spectral peak [Hz]. Combined with the D5.8 coefficients (-0.00437,
    32.84, 4.751, -14.22, 3.878 ratio*log_duration, -0.8545 sigmoid(ratio)*log_duration,
    66.70). Simplified: the decay is measured once, from the loudest peak, not per onset.
    """
    return _depth(_Analysis(audio, sample_rate_hz, normalise=False))


def hardness(audio: np.ndarray, sample_rate_hz: int) -> float:
    """Hardness [hardness points] of mono audio [T]: a simplified AudioCommons hardness.

    AudioCommons regresses listener ratings on attack time, onset strength, attack bandwidth
    and the spectral centroid of the attack. We keep the two that carry the idea, for the
    attack of the loudest event: attack time T [s] from 10 % to 60 % of the event's level
    (see ``_attack``; 0.5 ms resolution, capped at 0.2 s) and the spectral centroid C [Hz] of
    the 125 ms from the attack start (floored at 200 Hz). Raw value
    ``40 log10(0.2 / T) + 20 log10(C / 200)``: 0 for a slow fade-in of a dull sound, ~130 for
    an instant bright click. Our constants, not D5.8's. Audio before the clip counts as
    silence, as in AudioCommons (which zero-pads): a clip cut from the middle of a sound
    starts with an abrupt, hard attack, so label clips that begin before the note does.
    """
    return _hardness(_Analysis(audio, sample_rate_hz, normalise=False))


def raw_descriptors(
    audio: np.ndarray, sample_rate_hz: int, *, normalise_level: bool = True
) -> dict[str, float]:
    """All seven raw descriptor values from one shared analysis.

    Args:
        audio: mono samples [T], full scale = 1.0 (see :data:`FULL_SCALE_DB_SPL`).
        sample_rate_hz: at least :data:`MIN_SAMPLE_RATE_HZ`.
        normalise_level: scale the loudest frame to :data:`REFERENCE_LEVEL_DB_SPL` first,
            as :func:`describe` does; False analyses the audio at its own calibrated level.

    Returns:
        ``{name: raw value}`` in :data:`DESCRIPTOR_NAMES` order, units as in the module table.

    Raises:
        ValueError: empty, non-finite or non-mono audio, or a bad sample rate.
    """
    a = _Analysis(audio, sample_rate_hz, normalise=normalise_level)
    return {name: float(_MODELS[name](a)) for name in DESCRIPTOR_NAMES}


def describe(audio: np.ndarray, sample_rate_hz: int, *, lead: int = 0) -> dict[str, float]:
    """The seven timbre labels in [0, 1] for mono audio [T].

    The clip is level-normalised (:data:`REFERENCE_LEVEL_DB_SPL`), analysed once, and each raw
    value mapped by :data:`MAPPINGS`. Digital silence gives 0.0 for every descriptor.

    Args:
        audio: mono samples [T], float or int, full scale = 1.0. Any length >= 1 sample;
            shorter than one ~93 ms frame is zero-padded.
        sample_rate_hz: at least :data:`MIN_SAMPLE_RATE_HZ`.
        lead: the first ``lead`` samples are the sound before the described audio, not part
            of it. With a lead, hardness is that of the strongest onset in the described audio
            (a rise over the sound before it, which the lead shows: ``_onset_attack``), not of
            its loudest event timed from silence: cut from the middle of a note, the audio
            would otherwise start with an abrupt, hard attack. 0: audio before the clip counts
            as silence.

    Returns:
        ``{name: value in [0, 1]}`` in :data:`DESCRIPTOR_NAMES` order; never NaN.

    Raises:
        ValueError: empty audio, non-finite samples, audio not of shape [T], bad sample rate,
            lead outside 0..T-1.
    """
    if lead and not 0 < lead < np.shape(audio)[0]:
        raise ValueError(f"lead: expected 0..{np.shape(audio)[0] - 1} samples, got {lead}")
    a = _Analysis(audio[lead:], sample_rate_hz, normalise=True)
    if a.silent:
        return dict.fromkeys(DESCRIPTOR_NAMES, 0.0)
    out = {name: map_to_unit(name, float(_MODELS[name](a))) for name in DESCRIPTOR_NAMES}
    if lead:
        whole = _Analysis(audio, sample_rate_hz, normalise=True)
        out["hardness"] = map_to_unit("hardness", _hardness(whole, lead // _block(whole)))
    return out
