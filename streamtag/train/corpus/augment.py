"""Audio augmentation: what a live room, a microphone and a mixing desk change.

A rendered clip is clean, dry and level; the daemon hears a performer through a microphone in a
room. Each clip therefore gets, with a seed of its own so a corpus rebuilds bit for bit:

- **EQ / microphone colouring**: one to three random biquads (low shelf, high shelf, peaking,
  RBJ cookbook), sometimes a high-pass (stage mic low cut) or a low-pass (dull mic);
- **room reverb**: convolution with a synthetic impulse response: a direct impulse, a pre-delay,
  then exponentially decaying Gaussian noise whose energy falls 60 dB in ``rt60_s`` (the high
  band decays faster than the low band, as in real rooms), mixed at a random direct-to-
  reverberant ratio;
- **noise**: white, pink or brown noise at a random signal-to-noise ratio;
- **gain**: a random level in dB (then scaled down only if the peak would clip).

Pitch and tempo are varied earlier, on the MIDI notes (``music.shift_piece``), where they cost
nothing and keep the timbre of the samples intact.

All functions take and return mono float32 signals, shape ``[samples]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

PEAK_LIMIT = 0.99
"""Largest absolute sample value a clip may have after augmentation [full scale]."""

NOISE_COLOURS: tuple[str, ...] = ("white", "pink", "brown")


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation. Probabilities are per clip.

    Attributes:
        gain_db: range of the random gain [dB].
        noise_p: probability of adding noise.
        snr_db: range of the signal-to-noise ratio [dB].
        reverb_p: probability of room reverb.
        rt60_s: range of the reverberation time [s].
        drr_db: range of the direct-to-reverberant energy ratio [dB].
        eq_p: probability of EQ colouring.
        eq_gain_db: largest boost or cut of an EQ band [dB].
        highpass_p: probability of a microphone low cut.
        lowpass_p: probability of a dull-microphone high cut.
    """

    gain_db: tuple[float, float] = (-12.0, 6.0)
    noise_p: float = 0.8
    snr_db: tuple[float, float] = (10.0, 45.0)
    reverb_p: float = 0.75
    rt60_s: tuple[float, float] = (0.2, 1.8)
    drr_db: tuple[float, float] = (-3.0, 12.0)
    eq_p: float = 0.8
    eq_gain_db: float = 9.0
    highpass_p: float = 0.3
    lowpass_p: float = 0.2


NO_AUGMENT = AugmentConfig(
    gain_db=(0.0, 0.0), noise_p=0.0, reverb_p=0.0, eq_p=0.0, highpass_p=0.0, lowpass_p=0.0
)
"""A configuration that leaves the signal unchanged."""


@dataclass(frozen=True)
class Biquad:
    """One EQ section.

    Attributes:
        kind: ``"lowshelf"``, ``"highshelf"``, ``"peak"``, ``"highpass"`` or ``"lowpass"``.
        freq_hz: corner or centre frequency [Hz].
        gain_db: boost (+) or cut (−) [dB]; 0 for pass filters.
        q: quality factor (peak) or slope (shelves).
    """

    kind: str
    freq_hz: float
    gain_db: float = 0.0
    q: float = 0.707


@dataclass(frozen=True)
class AugmentParams:
    """The augmentation drawn for one clip (recorded in the manifest).

    Attributes:
        gain_db: gain applied last [dB] (before peak protection).
        noise: noise colour, or None for no noise.
        snr_db: signal-to-noise ratio of the added noise [dB], or None.
        rt60_s: reverberation time [s], or None for a dry clip.
        drr_db: direct-to-reverberant ratio [dB], or None.
        predelay_s: delay between the direct sound and the reverberant tail [s], or None.
        eq: EQ sections, applied in order.
        seed: seed of the noise generators (IR and noise).
    """

    gain_db: float = 0.0
    noise: str | None = None
    snr_db: float | None = None
    rt60_s: float | None = None
    drr_db: float | None = None
    predelay_s: float | None = None
    eq: tuple[Biquad, ...] = field(default_factory=tuple)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, floats rounded to 4 decimals."""
        raw = asdict(self)
        raw["eq"] = [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in b.items()}
            for b in raw["eq"]
        ]
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in raw.items()}


def sample_params(rng: np.random.Generator, config: AugmentConfig | None = None) -> AugmentParams:
    """Draw one clip's augmentation from ``config`` (None: ``AugmentConfig()``)."""
    config = AugmentConfig() if config is None else config
    eq: list[Biquad] = []
    if rng.random() < config.eq_p:
        for _ in range(int(rng.integers(1, 4))):
            kind = str(rng.choice(["lowshelf", "highshelf", "peak"]))
            gain = float(rng.uniform(-config.eq_gain_db, config.eq_gain_db))
            if kind == "lowshelf":
                eq.append(Biquad(kind, float(np.exp(rng.uniform(np.log(80), np.log(400)))), gain))
            elif kind == "highshelf":
                eq.append(
                    Biquad(kind, float(np.exp(rng.uniform(np.log(2000), np.log(8000)))), gain)
                )
            else:
                eq.append(
                    Biquad(
                        kind,
                        float(np.exp(rng.uniform(np.log(200), np.log(6000)))),
                        gain,
                        float(rng.uniform(0.5, 3.0)),
                    )
                )
    if rng.random() < config.highpass_p:
        eq.append(Biquad("highpass", float(rng.uniform(40.0, 150.0))))
    if rng.random() < config.lowpass_p:
        eq.append(Biquad("lowpass", float(rng.uniform(5000.0, 10000.0))))
    reverb = rng.random() < config.reverb_p
    noisy = rng.random() < config.noise_p
    return AugmentParams(
        gain_db=float(rng.uniform(*config.gain_db)),
        noise=str(rng.choice(NOISE_COLOURS)) if noisy else None,
        snr_db=float(rng.uniform(*config.snr_db)) if noisy else None,
        rt60_s=float(rng.uniform(*config.rt60_s)) if reverb else None,
        drr_db=float(rng.uniform(*config.drr_db)) if reverb else None,
        predelay_s=float(rng.uniform(0.003, 0.03)) if reverb else None,
        eq=tuple(eq),
        seed=int(rng.integers(2**31)),
    )


# ---------------------------------------------------------------------------------------------
# Building blocks


def rms(x: np.ndarray) -> float:
    """Root mean square of a signal [full scale]."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def level_db(x: np.ndarray) -> float:
    """RMS level [dBFS]; −inf for silence."""
    value = rms(x)
    return 20.0 * np.log10(value) if value > 0 else float("-inf")


def apply_gain(x: np.ndarray, gain_db: float) -> np.ndarray:
    """``x`` scaled by ``gain_db`` [dB]."""
    return (x * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def normalise(x: np.ndarray, target_db: float) -> np.ndarray:
    """``x`` scaled to an RMS level of ``target_db`` [dBFS]; silence is returned unchanged."""
    value = rms(x)
    if value <= 0:
        return x.astype(np.float32)
    return (x * np.float32(10.0 ** (target_db / 20.0) / value)).astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    """Unit-RMS noise of ``n`` samples: ``"white"`` (flat), ``"pink"`` (−3 dB/octave) or
    ``"brown"`` (−6 dB/octave), shaped in the frequency domain."""
    if colour not in NOISE_COLOURS:
        raise ValueError(f"noise colour must be one of {NOISE_COLOURS}, got {colour!r}")
    white = rng.standard_normal(n)
    if colour != "white" and n > 1:
        spectrum = np.fft.rfft(white)
        freqs = np.arange(spectrum.shape[0], dtype=np.float64)
        freqs[0] = 1.0
        exponent = 0.5 if colour == "pink" else 1.0
        spectrum /= freqs**exponent
        spectrum[0] = 0.0
        white = np.fft.irfft(spectrum, n)
    scale = rms(white)
    return (white / scale if scale > 0 else white).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "white"):
    """``x`` plus noise whose power is ``snr_db`` [dB] below the power of ``x``."""
    signal = rms(x)
    if signal <= 0:
        return x.astype(np.float32)
    noise = coloured_noise(rng, x.shape[0], colour) * np.float32(signal * 10.0 ** (-snr_db / 20.0))
    return (x + noise).astype(np.float32)


def biquad_sos(b: Biquad, sample_rate_hz: int) -> np.ndarray:
    """Second-order section ``[1, 6]`` of an EQ band (RBJ Audio EQ Cookbook)."""
    nyquist = sample_rate_hz / 2.0
    freq = min(b.freq_hz, 0.45 * sample_rate_hz)
    if b.kind in ("highpass", "lowpass"):
        return butter(2, freq / nyquist, btype=b.kind, output="sos")
    a_gain = 10.0 ** (b.gain_db / 40.0)
    w0 = 2.0 * np.pi * freq / sample_rate_hz
    cos_w0, sin_w0 = np.cos(w0), np.sin(w0)
    if b.kind == "peak":
        alpha = sin_w0 / (2.0 * b.q)
        num = [1 + alpha * a_gain, -2 * cos_w0, 1 - alpha * a_gain]
        den = [1 + alpha / a_gain, -2 * cos_w0, 1 - alpha / a_gain]
    elif b.kind in ("lowshelf", "highshelf"):
        alpha = sin_w0 / 2.0 * np.sqrt((a_gain + 1 / a_gain) * (1 / b.q - 1) + 2)
        two_sqrt_a_alpha = 2 * np.sqrt(a_gain) * alpha
        sign = 1.0 if b.kind == "lowshelf" else -1.0
        num = [
            a_gain * ((a_gain + 1) - sign * (a_gain - 1) * cos_w0 + two_sqrt_a_alpha),
            sign * 2 * a_gain * ((a_gain - 1) - sign * (a_gain + 1) * cos_w0),
            a_gain * ((a_gain + 1) - sign * (a_gain - 1) * cos_w0 - two_sqrt_a_alpha),
        ]
        den = [
            (a_gain + 1) + sign * (a_gain - 1) * cos_w0 + two_sqrt_a_alpha,
            -sign * 2 * ((a_gain - 1) + sign * (a_gain + 1) * cos_w0),
            (a_gain + 1) + sign * (a_gain - 1) * cos_w0 - two_sqrt_a_alpha,
        ]
    else:
        raise ValueError(f"unknown EQ kind {b.kind!r}")
    num_arr = np.asarray(num) / den[0]
    den_arr = np.asarray(den) / den[0]
    return np.concatenate([num_arr, den_arr])[None, :]


def apply_eq(x: np.ndarray, bands: tuple[Biquad, ...], sample_rate_hz: int) -> np.ndarray:
    """``x`` through every EQ band in order."""
    if not bands:
        return x.astype(np.float32)
    sos = np.concatenate([biquad_sos(b, sample_rate_hz) for b in bands], axis=0)
    return sosfilt(sos, x).astype(np.float32)


def room_impulse_response(
    rng: np.random.Generator,
    *,
    rt60_s: float,
    drr_db: float,
    predelay_s: float,
    sample_rate_hz: int,
) -> np.ndarray:
    """A synthetic room impulse response, shape ``[samples]`` (about ``1.2 * rt60_s`` long).

    A unit direct impulse, then after ``predelay_s`` a tail of Gaussian noise under an
    exponential envelope that falls 60 dB in ``rt60_s`` (above 3 kHz: in 0.6 × ``rt60_s``),
    scaled so that direct energy / tail energy = ``drr_db``.
    """
    if rt60_s <= 0:
        raise ValueError(f"rt60_s must be > 0, got {rt60_s}")
    n_tail = max(1, round(1.2 * rt60_s * sample_rate_hz))
    t = np.arange(n_tail) / sample_rate_hz
    noise = rng.standard_normal(n_tail)
    split = butter(2, 3000.0 / (sample_rate_hz / 2.0), btype="low", output="sos")
    low = sosfilt(split, noise)
    high = noise - low
    # 60 dB of energy = a factor 1000 in amplitude: exp(-6.908 t / rt60).
    tail = low * np.exp(-6.908 * t / rt60_s) + high * np.exp(-6.908 * t / (0.6 * rt60_s))
    tail_energy = float(np.sum(tail**2))
    if tail_energy > 0:
        tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / tail_energy)
    delay = round(predelay_s * sample_rate_hz)
    ir = np.zeros(1 + delay + n_tail)
    ir[0] = 1.0
    ir[1 + delay :] = tail
    return ir.astype(np.float32)


def apply_reverb(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """``x`` convolved with ``ir``, cut to the length of ``x`` (the tail past the end is lost)."""
    return fftconvolve(x, ir, mode="full")[: x.shape[0]].astype(np.float32)


def augment(
    x: np.ndarray,
    params: AugmentParams,
    sample_rate_hz: int,
    *,
    keep_last: int | None = None,
) -> tuple[np.ndarray, float]:
    """Apply one clip's augmentation: EQ → reverb → (cut) → noise → gain → peak protection.

    Args:
        x: mono signal, shape ``[samples]``; may start with a pre-roll that feeds the reverb.
        params: what to apply (from ``sample_params``).
        sample_rate_hz: rate of ``x`` [Hz].
        keep_last: keep only the last ``keep_last`` samples after reverb (drops the pre-roll);
            None keeps everything.

    Returns:
        ``(y, peak_scale_db)``: the augmented float32 signal, and the extra attenuation [dB,
        ≤ 0] applied so that ``max |y| ≤ PEAK_LIMIT``.
    """
    rng = np.random.default_rng(params.seed)
    y = apply_eq(x.astype(np.float32), params.eq, sample_rate_hz)
    if params.rt60_s is not None:
        ir = room_impulse_response(
            rng,
            rt60_s=params.rt60_s,
            drr_db=params.drr_db if params.drr_db is not None else 6.0,
            predelay_s=params.predelay_s or 0.0,
            sample_rate_hz=sample_rate_hz,
        )
        y = apply_reverb(y, ir)
    if keep_last is not None:
        y = y[-keep_last:] if keep_last > 0 else y[:0]
    if params.noise is not None and params.snr_db is not None:
        y = add_noise(y, params.snr_db, rng, params.noise)
    y = apply_gain(y, params.gain_db)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    peak_scale_db = 0.0
    if peak > PEAK_LIMIT:
        peak_scale_db = 20.0 * np.log10(PEAK_LIMIT / peak)
        y = apply_gain(y, peak_scale_db)
    return y.astype(np.float32), float(peak_scale_db)
