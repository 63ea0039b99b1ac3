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

and, to change what differs from one sample set (one instrument maker, one player, one
recording chain) to the next rather than only the room:

- **spectral tilt**: the whole spectrum tilted by a few dB per octave around 1 kHz (a brighter
  or darker instrument, microphone or placement);
- **body resonances**: two to five narrow peaks and notches (Q 3-12) between 150 Hz and
  5 kHz, what another instrument body, bore or bell adds to the same notes;
- **vibrato and tremolo**: a slow periodic pitch (5-40 cents at 4-7 Hz) or level (5-30 %
  at 3-8 Hz) modulation, as players add and sample sets often lack or bake in;
- **lossy coding**: an MP3, Ogg Vorbis or Opus round trip through ffmpeg at 32-96 kbit/s, as
  streamed and recorded material has (skipped when ffmpeg is not installed; ``corpus.json``
  says whether it was).

Pitch and tempo are varied earlier, on the MIDI notes (``music.shift_piece``), where they cost
nothing and keep the timbre of the samples intact.

All functions take and return mono float32 signals, shape ``[samples]``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import butter, fftconvolve, sosfilt

PEAK_LIMIT = 0.99
"""Largest absolute sample value a clip may have after augmentation [full scale]."""

NOISE_COLOURS: tuple[str, ...] = ("white", "pink", "brown")
CODECS: dict[str, tuple[str, str]] = {
    "mp3": ("libmp3lame", "mp3"),
    "vorbis": ("libvorbis", "ogg"),
    "opus": ("libopus", "ogg"),
}
"""Lossy codec name → (ffmpeg encoder, container)."""
TILT_PIVOT_HZ = 1000.0
"""The frequency a spectral tilt leaves unchanged [Hz]."""
TILT_LIMIT_DB = 18.0
"""Largest boost or cut a tilt applies at any frequency [dB]."""


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
        tilt_p: probability of a spectral tilt.
        tilt_db_per_octave: largest tilt either way [dB per octave].
        body_p: probability of body resonances.
        body_gain_db: largest boost or cut of one resonance [dB].
        vibrato_p: probability of vibrato.
        vibrato_cents: range of the vibrato depth [cents, peak].
        vibrato_hz: range of the vibrato rate [Hz].
        tremolo_p: probability of tremolo.
        tremolo_depth: range of the tremolo depth [fraction of the level, peak].
        tremolo_hz: range of the tremolo rate [Hz].
        lossy_p: probability of a lossy-codec round trip (ffmpeg).
        lossy_kbps: range of the codec bit rate [kbit/s].
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
    tilt_p: float = 0.5
    tilt_db_per_octave: float = 3.0
    body_p: float = 0.5
    body_gain_db: float = 9.0
    vibrato_p: float = 0.3
    vibrato_cents: tuple[float, float] = (5.0, 40.0)
    vibrato_hz: tuple[float, float] = (4.0, 7.0)
    tremolo_p: float = 0.2
    tremolo_depth: tuple[float, float] = (0.05, 0.3)
    tremolo_hz: tuple[float, float] = (3.0, 8.0)
    lossy_p: float = 0.15
    lossy_kbps: tuple[int, int] = (32, 96)


NO_AUGMENT = AugmentConfig(
    gain_db=(0.0, 0.0),
    noise_p=0.0,
    reverb_p=0.0,
    eq_p=0.0,
    highpass_p=0.0,
    lowpass_p=0.0,
    tilt_p=0.0,
    body_p=0.0,
    vibrato_p=0.0,
    tremolo_p=0.0,
    lossy_p=0.0,
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
        tilt_db_per_octave: spectral tilt around ``TILT_PIVOT_HZ`` [dB/octave], or None.
        body: resonance sections (peaks, narrow), applied before the room, or empty.
        vibrato_cents / vibrato_hz: vibrato depth [cents] and rate [Hz], or None.
        tremolo_depth / tremolo_hz: tremolo depth [fraction] and rate [Hz], or None.
        codec / kbps: lossy codec (``CODECS``) and bit rate [kbit/s], or None.
    """

    gain_db: float = 0.0
    noise: str | None = None
    snr_db: float | None = None
    rt60_s: float | None = None
    drr_db: float | None = None
    predelay_s: float | None = None
    eq: tuple[Biquad, ...] = field(default_factory=tuple)
    seed: int = 0
    tilt_db_per_octave: float | None = None
    body: tuple[Biquad, ...] = field(default_factory=tuple)
    vibrato_cents: float | None = None
    vibrato_hz: float | None = None
    tremolo_depth: float | None = None
    tremolo_hz: float | None = None
    codec: str | None = None
    kbps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, floats rounded to 4 decimals."""
        raw = asdict(self)
        for key in ("eq", "body"):
            raw[key] = [
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in b.items()}
                for b in raw[key]
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
    base = AugmentParams(
        gain_db=float(rng.uniform(*config.gain_db)),
        noise=str(rng.choice(NOISE_COLOURS)) if noisy else None,
        snr_db=float(rng.uniform(*config.snr_db)) if noisy else None,
        rt60_s=float(rng.uniform(*config.rt60_s)) if reverb else None,
        drr_db=float(rng.uniform(*config.drr_db)) if reverb else None,
        predelay_s=float(rng.uniform(0.003, 0.03)) if reverb else None,
        eq=tuple(eq),
        seed=int(rng.integers(2**31)),
    )
    # The timbre levers draw from a generator of their own, so adding them left every draw
    # above (gain, room, noise, EQ) as the earlier corpora had it.
    lever = np.random.default_rng(rng.integers(2**63))
    tilt = body = vibrato = tremolo = codec = None
    if lever.random() < config.tilt_p:
        tilt = float(lever.uniform(-config.tilt_db_per_octave, config.tilt_db_per_octave))
    if lever.random() < config.body_p:
        body = tuple(
            Biquad(
                "peak",
                float(np.exp(lever.uniform(np.log(150.0), np.log(5000.0)))),
                float(lever.uniform(-config.body_gain_db, config.body_gain_db)),
                float(lever.uniform(3.0, 12.0)),
            )
            for _ in range(int(lever.integers(2, 6)))
        )
    if lever.random() < config.vibrato_p:
        vibrato = (
            float(lever.uniform(*config.vibrato_cents)),
            float(lever.uniform(*config.vibrato_hz)),
        )
    if lever.random() < config.tremolo_p:
        tremolo = (
            float(lever.uniform(*config.tremolo_depth)),
            float(lever.uniform(*config.tremolo_hz)),
        )
    if lever.random() < config.lossy_p:
        codec = (
            str(lever.choice(list(CODECS))),
            int(lever.integers(config.lossy_kbps[0], config.lossy_kbps[1] + 1)),
        )
    return replace(
        base,
        tilt_db_per_octave=tilt,
        body=body or (),
        vibrato_cents=vibrato[0] if vibrato else None,
        vibrato_hz=vibrato[1] if vibrato else None,
        tremolo_depth=tremolo[0] if tremolo else None,
        tremolo_hz=tremolo[1] if tremolo else None,
        codec=codec[0] if codec else None,
        kbps=codec[1] if codec else None,
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


def apply_tilt(x: np.ndarray, db_per_octave: float, sample_rate_hz: int) -> np.ndarray:
    """``x`` with its spectrum tilted by ``db_per_octave`` around ``TILT_PIVOT_HZ``
    (zero-phase, in the frequency domain; the gain is limited to ±``TILT_LIMIT_DB``)."""
    if x.size < 2 or db_per_octave == 0:
        return x.astype(np.float32)
    spectrum = np.fft.rfft(x.astype(np.float64))
    freqs = np.fft.rfftfreq(x.shape[0], 1.0 / sample_rate_hz)
    octaves = np.log2(np.maximum(freqs, 20.0) / TILT_PIVOT_HZ)
    gain_db = np.clip(db_per_octave * octaves, -TILT_LIMIT_DB, TILT_LIMIT_DB)
    return np.fft.irfft(spectrum * 10.0 ** (gain_db / 20.0), x.shape[0]).astype(np.float32)


def apply_vibrato(x: np.ndarray, cents: float, rate_hz: float, sample_rate_hz: int) -> np.ndarray:
    """``x`` read through a sinusoidally moving delay: its pitch swings ±``cents`` at
    ``rate_hz`` (linear interpolation between samples)."""
    if x.size < 2 or cents <= 0 or rate_hz <= 0:
        return x.astype(np.float32)
    # Reading at speed 1 + d·cos(ωt) shifts pitch by that factor: d = 2^(cents/1200) − 1.
    depth = 2.0 ** (cents / 1200.0) - 1.0
    n = np.arange(x.shape[0], dtype=np.float64)
    omega = 2.0 * np.pi * rate_hz / sample_rate_hz
    pos = n + depth / omega * np.sin(omega * n)
    return np.interp(np.clip(pos, 0, x.shape[0] - 1), n, x).astype(np.float32)


def apply_tremolo(
    x: np.ndarray, depth: float, rate_hz: float, sample_rate_hz: int, phase: float = 0.0
) -> np.ndarray:
    """``x`` times ``1 + depth · sin(2π rate t + phase)``."""
    t = np.arange(x.shape[0]) / sample_rate_hz
    return (x * (1.0 + depth * np.sin(2.0 * np.pi * rate_hz * t + phase))).astype(np.float32)


def ffmpeg_available() -> bool:
    """True when the ``ffmpeg`` program (Debian ``ffmpeg``) is installed."""
    return shutil.which("ffmpeg") is not None


def lossy_round_trip(
    x: np.ndarray, codec: str, kbps: int, sample_rate_hz: int
) -> np.ndarray | None:
    """``x`` encoded with ``codec`` at ``kbps`` and decoded again by ffmpeg, aligned and cut to
    the length of ``x``; None when ffmpeg is missing or fails (the clip stays uncoded)."""
    exe = shutil.which("ffmpeg")
    if exe is None or codec not in CODECS or x.size == 0:
        return None
    encoder, container = CODECS[codec]
    rate = 48000 if codec == "opus" else sample_rate_hz  # Opus codes at 48 kHz only
    with tempfile.TemporaryDirectory() as tmp:
        src, coded, back = (Path(tmp) / n for n in ("in.wav", f"c.{container}", "out.wav"))
        sf.write(str(src), x, sample_rate_hz, subtype="FLOAT")
        steps = (
            [
                exe,
                "-v",
                "error",
                "-y",
                "-i",
                str(src),
                "-ar",
                str(rate),
                "-c:a",
                encoder,
                "-b:a",
                f"{kbps}k",
                str(coded),
            ],
            [
                exe,
                "-v",
                "error",
                "-y",
                "-i",
                str(coded),
                "-ar",
                str(sample_rate_hz),
                "-ac",
                "1",
                "-c:a",
                "pcm_f32le",
                str(back),
            ],
        )
        for cmd in steps:
            try:
                proc = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
            except (OSError, subprocess.TimeoutExpired):
                return None
            if proc.returncode != 0:
                return None
        y, _ = sf.read(str(back), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    # Encoders add a start-up delay; find it by cross-correlation (at most 100 ms).
    lag = _delay(x, y, int(0.1 * sample_rate_hz))
    y = y[lag:]
    if y.shape[0] < x.shape[0]:
        y = np.pad(y, (0, x.shape[0] - y.shape[0]))
    return y[: x.shape[0]].astype(np.float32)


def _delay(x: np.ndarray, y: np.ndarray, max_lag: int) -> int:
    """The lag [samples, 0 … max_lag] at which ``y`` best matches ``x`` (FFT correlation)."""
    n = min(x.shape[0], y.shape[0] - max_lag)
    if n <= 0:
        return 0
    seg = min(n, 1 << 15)
    size = 1 << int(np.ceil(np.log2(seg + max_lag + seg)))
    ref = np.fft.rfft(x[:seg].astype(np.float64), size)
    sig = np.fft.rfft(y[: seg + max_lag].astype(np.float64), size)
    corr = np.fft.irfft(sig * np.conj(ref), size)[: max_lag + 1]
    return int(np.argmax(corr))


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
    """Apply one clip's augmentation: vibrato → tremolo → body resonances → tilt → EQ →
    reverb → (cut) → noise → lossy coding → gain → peak protection.

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
    y = x.astype(np.float32)
    # What the instrument and player change comes first, then the microphone and the room.
    if params.vibrato_cents is not None and params.vibrato_hz is not None:
        y = apply_vibrato(y, params.vibrato_cents, params.vibrato_hz, sample_rate_hz)
    if params.tremolo_depth is not None and params.tremolo_hz is not None:
        y = apply_tremolo(y, params.tremolo_depth, params.tremolo_hz, sample_rate_hz)
    y = apply_eq(y, params.body, sample_rate_hz)
    if params.tilt_db_per_octave is not None:
        y = apply_tilt(y, params.tilt_db_per_octave, sample_rate_hz)
    y = apply_eq(y, params.eq, sample_rate_hz)
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
    if params.codec is not None and params.kbps is not None:
        coded = lossy_round_trip(y, params.codec, params.kbps, sample_rate_hz)
        if coded is not None:
            y = coded
    y = apply_gain(y, params.gain_db)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    peak_scale_db = 0.0
    if peak > PEAK_LIMIT:
        peak_scale_db = 20.0 * np.log10(PEAK_LIMIT / peak)
        y = apply_gain(y, peak_scale_db)
    return y.astype(np.float32), float(peak_scale_db)
