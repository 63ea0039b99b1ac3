"""Musical material for the corpus: scales, arpeggios, grammar-built melodies and drum grooves.

Everything is generated from a ``numpy.random.Generator``, so a seed fixes every note. Material
is written in beats and converted to seconds at the piece's tempo; a ``Piece`` holds notes in
seconds, ready for MIDI.

Material types
--------------
``scale``
    A scale (major, natural or harmonic minor, major pentatonic, occasionally chromatic) run up
    and down over one or two octaves, straight or in broken thirds, on a steady subdivision,
    ending on a long tonic.
``arpeggio``
    A four-chord progression (I–IV–V–I, I–vi–IV–V, i–iv–V–i, …) broken into triads or seventh
    chords, up, down, up-down or Alberti, over one or two octaves.
``phrase``
    A melody from a small grammar, repeated until the piece is long enough::

        period     := antecedent consequent
        antecedent := motif  variant(motif)  contrast  half-cadence     (ends on degree 2 or 5)
        consequent := motif  variant(motif)  contrast' full-cadence     (ends on the tonic)
        motif      := rhythm pattern (from a vocabulary per density and metre) + contour
                      (scale-degree steps: mostly steps, some skips and leaps)
        variant    := repeat | sequence (shifted one or two degrees) | inversion | new rhythm

    Harmony is one chord per bar (antecedent I–IV/vi–ii/IV–V, consequent I–IV/vi–V–I); the
    first note of each bar snaps to the nearest chord tone, cadences approach their goal by
    step and hold it. Metre is 4/4 or 3/4. The piano adds a left hand (bass and chords) and the
    distorted guitar may double its line a fifth below (power chords).
``groove``
    Drum patterns on a 16-step grid (rock, four-on-the-floor, half-time, breakbeat, shuffle,
    jazz ride, hand percussion) with velocity accents, a tom fill at the end of every fourth
    bar, a crash after it, swing and small timing jitter. Written with General MIDI drum notes.

Instruments play only inside their ``InstrumentSpec`` range, and the register of each piece is
drawn uniformly across that range, so the corpus covers every instrument's playable range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

MAJOR: tuple[int, ...] = (0, 2, 4, 5, 7, 9, 11)
NATURAL_MINOR: tuple[int, ...] = (0, 2, 3, 5, 7, 8, 10)
HARMONIC_MINOR: tuple[int, ...] = (0, 2, 3, 5, 7, 8, 11)
MAJOR_PENTATONIC: tuple[int, ...] = (0, 2, 4, 7, 9)
CHROMATIC: tuple[int, ...] = tuple(range(12))

MATERIALS: tuple[str, ...] = ("scale", "arpeggio", "phrase")
"""Melodic material types, see the module docstring."""


@dataclass(frozen=True)
class InstrumentSpec:
    """How the corpus plays one instrument class.

    Attributes:
        name: class name as Medley-solos-DB spells it.
        programs: General MIDI programs (0-based) that stand for it, first is the main one.
        low_midi: lowest note played [MIDI note number].
        high_midi: highest note played [MIDI note number].
    """

    name: str
    programs: tuple[int, ...]
    low_midi: int
    high_midi: int


INSTRUMENTS: tuple[InstrumentSpec, ...] = (
    InstrumentSpec("clarinet", (71,), 50, 91),
    InstrumentSpec("distorted electric guitar", (30, 29), 40, 86),
    # No GM program is a solo female voice; the choir and "oohs" pads are the closest.
    InstrumentSpec("female singer", (52, 53), 55, 81),
    InstrumentSpec("flute", (73,), 60, 96),
    InstrumentSpec("piano", (0, 1), 28, 100),
    InstrumentSpec("tenor saxophone", (66,), 44, 76),
    InstrumentSpec("trumpet", (56,), 54, 84),
    InstrumentSpec("violin", (40,), 55, 100),
)
"""Medley-solos-DB's 8 classes, in its instrument_id order, as General MIDI programs."""

INSTRUMENT_CLASSES: tuple[str, ...] = tuple(spec.name for spec in INSTRUMENTS)
INSTRUMENT_SPECS: dict[str, InstrumentSpec] = {spec.name: spec for spec in INSTRUMENTS}

TIMBRE_PROGRAMS: dict[str, tuple[tuple[int, int, int], ...]] = {
    # (program, low, high): the last of each class spans every register level.
    "dull": ((60, 41, 77), (4, 28, 100)),  # French horn; electric piano (Rhodes)
    "medium": ((73, 60, 96), (0, 21, 108)),  # flute; acoustic grand piano
    "bright": ((56, 54, 84), (68, 58, 91), (6, 29, 89)),  # trumpet; oboe; harpsichord
}
"""Emotion-family melody instruments by brightness: ``(GM program, low MIDI, high MIDI)``."""

ACCOMPANIMENT_PROGRAM = 48
"""String ensemble: the accompaniment of melody instruments that cannot play chords."""
_CHORDAL_PROGRAMS = frozenset({0, 1, 4, 6})

GM_DRUMS: dict[str, int] = {
    "kick": 36,
    "stick": 37,
    "snare": 38,
    "clap": 39,
    "tom_low": 45,
    "hh_closed": 42,
    "hh_pedal": 44,
    "hh_open": 46,
    "tom_mid": 47,
    "crash": 49,
    "tom_high": 50,
    "ride": 51,
    "ride_bell": 53,
    "tambourine": 54,
    "cowbell": 56,
    "conga_high": 62,
    "conga_low": 64,
    "shaker": 70,
}
"""Drum roles → General MIDI percussion key (channel 10)."""


@dataclass(frozen=True)
class Note:
    """One note.

    Attributes:
        pitch: MIDI note number 0..127 (a GM percussion key on a drum part).
        start_s: onset from the start of the piece [s].
        dur_s: sounding duration [s].
        velocity: MIDI velocity 1..127.
    """

    pitch: int
    start_s: float
    dur_s: float
    velocity: int


@dataclass(frozen=True)
class Part:
    """The notes one General MIDI program plays (or the drum kit, with ``is_drum``)."""

    program: int
    notes: tuple[Note, ...]
    is_drum: bool = False
    role: str = "melody"


@dataclass(frozen=True)
class Piece:
    """A short piece ready for MIDI.

    Attributes:
        parts: the parts; ``parts[0]`` is the labelled instrument (the melody).
        duration_s: length of the music [s] (the last note may ring past it).
        material: ``"scale"``, ``"arpeggio"``, ``"phrase"`` or ``"groove"``.
        bpm: tempo [beats per minute].
        meta: free description (key, mode, metre, pattern, …), JSON-serialisable.
    """

    parts: tuple[Part, ...]
    duration_s: float
    material: str
    bpm: float
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def programs(self) -> list[int]:
        """GM program of every part (drum parts report -1)."""
        return [-1 if part.is_drum else part.program for part in self.parts]


# ---------------------------------------------------------------------------------------------
# Pitch helpers


def degree_pitch(tonic: int, scale: Sequence[int], degree: int) -> int:
    """MIDI pitch of a scale degree (0 = tonic; negative and > len(scale) wrap by octaves)."""
    octave, index = divmod(degree, len(scale))
    return tonic + 12 * octave + scale[index]


def into_range(pitch: int, low: int, high: int) -> int:
    """A pitch moved by octaves until it lies in [low, high] (as near as whole octaves get;
    a range narrower than an octave may leave it outside)."""
    while pitch > high and pitch - 12 >= low:
        pitch -= 12
    while pitch < low and pitch + 12 <= high:
        pitch += 12
    return pitch


def degree_bounds(tonic: int, scale: Sequence[int], low: int, high: int) -> tuple[int, int]:
    """Lowest and highest scale degree whose pitch lies in [low, high] [MIDI]."""
    n = len(scale)
    degrees = [d for d in range(-5 * n, 6 * n) if low <= degree_pitch(tonic, scale, d) <= high]
    return min(degrees), max(degrees)


def choose_tonic(rng: np.random.Generator, low: int, high: int, span: int) -> int:
    """A tonic so that ``span`` semitones above it fit in [low, high] when possible [MIDI].

    The tonic is drawn uniformly over the feasible range, so pieces cover the whole register.
    """
    top = max(low, high - span)
    return int(rng.integers(low, top + 1))


# ---------------------------------------------------------------------------------------------
# Rhythm vocabulary, in beats (quarter notes); each pattern fills one bar.

_RHYTHMS: dict[tuple[str, int], tuple[tuple[float, ...], ...]] = {
    ("slow", 4): ((2, 2), (4,), (3, 1), (2, 1, 1), (1, 1, 2), (1.5, 0.5, 2), (1, 3)),
    ("medium", 4): (
        (1, 1, 1, 1),
        (1.5, 0.5, 1, 1),
        (1, 0.5, 0.5, 2),
        (0.5, 0.5, 1, 1, 1),
        (1, 1, 2),
        (2, 0.5, 0.5, 1),
        (0.75, 0.25, 1, 0.5, 0.5, 1),
    ),
    ("fast", 4): (
        (0.5,) * 8,
        (0.5, 0.5, 1, 0.5, 0.5, 1),
        (0.25, 0.25, 0.5, 0.5, 0.5, 1, 1),
        (0.25,) * 4 + (0.5,) * 4 + (1,),
        (0.5, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5, 1),
        (0.75, 0.25, 0.5, 0.5, 0.75, 0.25, 0.5, 0.5),
    ),
    ("slow", 3): ((3,), (2, 1), (1.5, 1.5), (1, 2)),
    ("medium", 3): ((1, 1, 1), (1.5, 0.5, 1), (0.5, 0.5, 1, 1), (2, 0.5, 0.5)),
    ("fast", 3): ((0.5,) * 6, (0.5, 0.5, 1, 0.5, 0.5), (0.25, 0.25, 0.5, 0.5, 0.5, 1)),
}
_CADENCE_RHYTHMS: dict[int, tuple[tuple[float, ...], ...]] = {
    4: ((1, 1, 2), (2, 2), (0.5, 0.5, 1, 2), (1, 3)),
    3: ((1, 2), (0.5, 0.5, 2), (3,)),
}
DENSITIES: tuple[str, ...] = ("slow", "medium", "fast")

_STEP_CHOICES = np.array([-4, -3, -2, -1, 0, 1, 2, 3, 4])
_STEP_WEIGHTS = np.array([0.03, 0.05, 0.12, 0.26, 0.08, 0.26, 0.12, 0.05, 0.03])

_PROGRESSIONS_A = ((0, 3, 1, 4), (0, 5, 3, 4), (0, 3, 4, 4), (0, 5, 1, 4))
_PROGRESSIONS_B = ((0, 3, 4, 0), (5, 3, 4, 0), (0, 5, 4, 0), (3, 4, 0, 0))


@dataclass(frozen=True)
class _Event:
    degree: int | None
    start_beat: float
    dur_beats: float


def _reflect(degree: int, low: int, high: int) -> int:
    while degree < low or degree > high:
        degree = 2 * low - degree if degree < low else 2 * high - degree
    return degree


def _chord_tones(root: int) -> tuple[int, int, int]:
    return (root, root + 2, root + 4)


def _nearest_chord_tone(degree: int, root: int, low: int, high: int) -> int:
    best = degree
    best_distance = 99
    for tone in _chord_tones(root):
        for octave in range(-4, 5):
            candidate = tone + 7 * octave
            distance = abs(candidate - degree)
            if low <= candidate <= high and distance < best_distance:
                best, best_distance = candidate, distance
    return best


def _contour(rng: np.random.Generator, n: int) -> list[int]:
    steps = rng.choice(_STEP_CHOICES, size=max(0, n - 1), p=_STEP_WEIGHTS)
    return [int(s) for s in steps]


def _realise(start: int, steps: Sequence[int], low: int, high: int) -> list[int]:
    degrees = [_reflect(start, low, high)]
    for step in steps:
        degrees.append(_reflect(degrees[-1] + step, low, high))
    return degrees


def _bar_events(rhythm: Sequence[float], degrees: Sequence[int], bar_start: float) -> list[_Event]:
    events = []
    t = bar_start
    for dur, degree in zip(rhythm, degrees, strict=True):
        events.append(_Event(degree, t, float(dur)))
        t += dur
    return events


def compose_period(
    rng: np.random.Generator,
    *,
    beats_per_bar: int,
    density: str,
    low_degree: int,
    high_degree: int,
    scale_len: int = 7,
) -> tuple[list[_Event], list[int]]:
    """One 8-bar period (antecedent + consequent) of the melody grammar.

    Args:
        beats_per_bar: 3 or 4.
        density: ``"slow"``, ``"medium"`` or ``"fast"`` (rhythm vocabulary).
        low_degree, high_degree: melody range in scale degrees (0 = tonic).
        scale_len: notes per octave of the scale (7 for diatonic).

    Returns:
        ``(events, chord roots)``: events in beats from the period start; one chord root
        (scale degree) per bar.
    """
    vocab = _RHYTHMS[(density, beats_per_bar)]
    lo, hi = low_degree, high_degree
    home = _reflect(0, lo, hi)
    if home + scale_len <= hi and rng.random() < 0.3:
        home += scale_len

    rhythm_a = vocab[rng.integers(len(vocab))]
    steps_a = _contour(rng, len(rhythm_a))
    rhythm_c = vocab[rng.integers(len(vocab))]
    steps_c = _contour(rng, len(rhythm_c))
    prog_a = _PROGRESSIONS_A[rng.integers(len(_PROGRESSIONS_A))]
    prog_b = _PROGRESSIONS_B[rng.integers(len(_PROGRESSIONS_B))]

    def variant(rhythm: Sequence[float], steps: Sequence[int], start: int):
        kind = rng.choice(["repeat", "sequence", "inversion", "rhythm"], p=[0.3, 0.35, 0.15, 0.2])
        if kind == "sequence":
            return rhythm, steps, start + int(rng.choice([-2, -1, 1, 2]))
        if kind == "inversion":
            return rhythm, [-s for s in steps], start
        if kind == "rhythm":
            new = vocab[rng.integers(len(vocab))]
            steps = list(steps)[: len(new) - 1] + _contour(rng, len(new))[len(steps) :]
            return new, steps[: len(new) - 1], start
        return rhythm, steps, start

    def cadence(start: int, goal: int) -> tuple[Sequence[float], list[int]]:
        rhythm = _CADENCE_RHYTHMS[beats_per_bar][rng.integers(len(_CADENCE_RHYTHMS[beats_per_bar]))]
        n = len(rhythm)
        # Approach the goal by step from whichever side is nearer to where the line is.
        direction = 1 if start <= goal else -1
        approach = [goal - direction * (n - 1 - i) for i in range(n - 1)]
        return rhythm, [*approach, goal]

    events: list[_Event] = []
    chords: list[int] = []
    last = home
    for half, prog in enumerate((prog_a, prog_b)):
        base = half * 4 * beats_per_bar
        for bar in range(4):
            root = prog[bar]
            bar_start = base + bar * beats_per_bar
            if bar == 0:
                rhythm, steps, start = rhythm_a, steps_a, home
            elif bar == 1:
                rhythm, steps, start = variant(rhythm_a, steps_a, home)
                start = _reflect(start, lo, hi)
            elif bar == 2:
                rhythm, steps = rhythm_c, steps_c
                if half == 1 and rng.random() < 0.5:
                    rhythm, steps, _ = variant(rhythm_c, steps_c, last)
                start = last + int(rng.choice([-1, 1]))
            else:
                goal_degree = 0 if half == 1 else int(rng.choice([4, 1]))
                goal = _nearest_chord_tone(last, goal_degree, lo, hi)
                if half == 1:
                    goal = min(
                        (d for d in range(lo, hi + 1) if d % scale_len == 0),
                        key=lambda d: abs(d - last),
                        default=goal,
                    )
                rhythm, degrees = cadence(last, goal)
                degrees = [_reflect(d, lo, hi) for d in degrees]
                events += _bar_events(rhythm, degrees, bar_start)
                chords.append(root)
                last = degrees[-1]
                continue
            start = _nearest_chord_tone(_reflect(start, lo, hi), root, lo, hi)
            degrees = _realise(start, steps, lo, hi)
            events += _bar_events(rhythm, degrees, bar_start)
            chords.append(root)
            last = degrees[-1]
    return events, chords


# ---------------------------------------------------------------------------------------------
# Helpers that turn beat events into notes.


def _velocity(rng: np.random.Generator, base: float, beat: float, beats_per_bar: int) -> int:
    accent = 8.0 if abs(beat % beats_per_bar) < 1e-6 else (3.0 if abs(beat % 1) < 1e-6 else 0.0)
    return int(np.clip(round(base + accent + rng.normal(0.0, 4.0)), 1, 127))


def _notes_from_events(
    rng: np.random.Generator,
    events: Sequence[_Event],
    *,
    tonic: int,
    scale: Sequence[int],
    sec_per_beat: float,
    velocity: float,
    articulation: float,
    beats_per_bar: int,
    offset_beats: float = 0.0,
) -> list[Note]:
    notes = []
    for ev in events:
        if ev.degree is None:
            continue
        beat = offset_beats + ev.start_beat
        notes.append(
            Note(
                pitch=degree_pitch(tonic, scale, ev.degree),
                start_s=beat * sec_per_beat,
                dur_s=max(0.05, ev.dur_beats * sec_per_beat * articulation),
                velocity=_velocity(rng, velocity, ev.start_beat, beats_per_bar),
            )
        )
    return notes


def _accompaniment(
    rng: np.random.Generator,
    chords: Sequence[int],
    *,
    tonic: int,
    scale: Sequence[int],
    beats_per_bar: int,
    sec_per_beat: float,
    velocity: float,
    articulation: float,
    top_midi: int,
    offset_beats: float = 0.0,
    low_midi: int = 36,
) -> list[Note]:
    """Bass plus a three-note chord per bar, below ``top_midi``; block, pulsed or Alberti."""
    style = rng.choice(["block", "pulse", "alberti"])
    chord_tonic = tonic
    while chord_tonic + 12 + 7 > top_midi and chord_tonic - 12 >= low_midi:
        chord_tonic -= 12
    while chord_tonic + 12 + 7 < top_midi - 12:
        chord_tonic += 12
    notes = []
    for bar, root in enumerate(chords):
        bar_start = offset_beats + bar * beats_per_bar
        tones = [degree_pitch(chord_tonic, scale, root + k) for k in (0, 2, 4)]
        tones = [pitch + 12 if pitch < low_midi else pitch for pitch in tones]
        bass = degree_pitch(chord_tonic - 12, scale, root)
        while bass < low_midi:
            bass += 12
        vel = int(np.clip(velocity - 18, 1, 127))
        bar_s = beats_per_bar * sec_per_beat
        notes.append(Note(bass, bar_start * sec_per_beat, bar_s * max(articulation, 0.5), vel))
        if style == "block":
            for pitch in tones:
                notes.append(Note(pitch, bar_start * sec_per_beat, bar_s * articulation, vel - 6))
        elif style == "pulse":
            for beat in range(beats_per_bar):
                t = (bar_start + beat) * sec_per_beat
                for pitch in tones:
                    notes.append(Note(pitch, t, sec_per_beat * articulation, vel - 8))
        else:
            order = (0, 2, 1, 2)
            for k in range(beats_per_bar * 2):
                t = (bar_start + 0.5 * k) * sec_per_beat
                notes.append(
                    Note(tones[order[k % 4]], t, 0.5 * sec_per_beat * articulation, vel - 8)
                )
    return [n for n in notes if n.velocity >= 1]


def _repeat_until(
    make_period, min_beats: float
) -> tuple[list[tuple[float, list[_Event], list[int]]], float]:
    periods = []
    total = 0.0
    while total < min_beats:
        events, chords, length = make_period()
        periods.append((total, events, chords))
        total += length
    return periods, total


# ---------------------------------------------------------------------------------------------
# Instrument-family pieces


def compose_instrument_piece(
    rng: np.random.Generator,
    spec: InstrumentSpec,
    *,
    material: str,
    min_duration_s: float,
    program: int | None = None,
) -> Piece:
    """A solo piece for one instrument class, somewhere in its playable range.

    Args:
        spec: the instrument.
        material: ``"scale"``, ``"arpeggio"`` or ``"phrase"``.
        min_duration_s: the music lasts at least this long [s].
        program: GM program; None draws one of ``spec.programs``.

    Raises:
        ValueError: unknown material.
    """
    if material not in MATERIALS:
        raise ValueError(f"material must be one of {MATERIALS}, got {material!r}")
    if program is None:
        program = int(spec.programs[rng.integers(len(spec.programs))])
    bpm = float(rng.uniform(60.0, 150.0))
    velocity = float(rng.uniform(55.0, 110.0))
    articulation = float(rng.choice([1.0, 0.9, 0.75, 0.5]))
    if material == "scale":
        return _scale_piece(rng, spec, program, bpm, velocity, articulation, min_duration_s)
    if material == "arpeggio":
        return _arpeggio_piece(rng, spec, program, bpm, velocity, articulation, min_duration_s)
    return _phrase_piece(rng, spec, program, bpm, velocity, articulation, min_duration_s)


def _scale_piece(rng, spec, program, bpm, velocity, articulation, min_duration_s) -> Piece:
    names = ["major", "natural minor", "harmonic minor", "major pentatonic", "chromatic"]
    kind = rng.choice(names, p=[0.35, 0.2, 0.2, 0.17, 0.08])
    scale = {
        "major": MAJOR,
        "natural minor": NATURAL_MINOR,
        "harmonic minor": HARMONIC_MINOR,
        "major pentatonic": MAJOR_PENTATONIC,
        "chromatic": CHROMATIC,
    }[kind]
    octaves = 2 if spec.high_midi - spec.low_midi >= 30 and rng.random() < 0.5 else 1
    tonic = choose_tonic(rng, spec.low_midi, spec.high_midi, 12 * octaves)
    n = len(scale) * octaves
    up = list(range(n + 1))
    if rng.random() < 0.3 and kind != "chromatic":
        up = [d for i in range(n - 1) for d in (i, i + 2)] + [n]  # broken thirds
    line = up + up[-2::-1] if rng.random() < 0.7 else up[::-1] + up[1:]
    subdivision = float(rng.choice([1.0, 0.5, 0.5, 1 / 3, 0.25]))
    if subdivision == 0.25:
        bpm = min(bpm, 90.0)
    sec_per_beat = 60.0 / bpm
    notes: list[Note] = []
    t_beats = 0.0
    while t_beats * sec_per_beat < min_duration_s:
        for i, degree in enumerate(line):
            pitch = degree_pitch(tonic, scale, degree)
            if not spec.low_midi <= pitch <= spec.high_midi:
                continue
            last = i == len(line) - 1
            dur = 2.0 if last else subdivision
            notes.append(
                Note(
                    pitch,
                    t_beats * sec_per_beat,
                    max(0.05, dur * sec_per_beat * articulation),
                    _velocity(rng, velocity, t_beats, 4),
                )
            )
            t_beats += dur
        t_beats = float(np.ceil(t_beats))
    return Piece(
        parts=(Part(program, tuple(notes)),),
        duration_s=t_beats * sec_per_beat,
        material="scale",
        bpm=bpm,
        meta={"scale": str(kind), "tonic_midi": tonic, "octaves": octaves},
    )


def _arpeggio_piece(rng, spec, program, bpm, velocity, articulation, min_duration_s) -> Piece:
    minor = rng.random() < 0.4
    scale = HARMONIC_MINOR if minor else MAJOR
    progressions = ((0, 3, 4, 0), (0, 5, 3, 4), (0, 3, 1, 4), (5, 1, 4, 0))
    progression = progressions[rng.integers(len(progressions))]
    sevenths = rng.random() < 0.3
    octaves = 2 if spec.high_midi - spec.low_midi >= 30 and rng.random() < 0.5 else 1
    tonic = choose_tonic(rng, spec.low_midi, spec.high_midi - 12 * octaves + 5, 7)
    shape = rng.choice(["up", "down", "updown", "alberti"])
    subdivision = float(rng.choice([0.5, 0.5, 1 / 3, 0.25]))
    sec_per_beat = 60.0 / bpm
    notes: list[Note] = []
    t_beats = 0.0
    while t_beats * sec_per_beat < min_duration_s:
        for root in progression:
            tones = [root + k for k in ((0, 2, 4, 6) if sevenths else (0, 2, 4))]
            chord = [d + 7 * o for o in range(octaves) for d in tones] + [root + 7 * octaves]
            if shape == "down":
                seq = chord[::-1]
            elif shape == "updown":
                seq = chord + chord[-2:0:-1]
            elif shape == "alberti":
                seq = [tones[0], tones[2], tones[1], tones[2]] * 2
            else:
                seq = chord
            for degree in seq:
                pitch = degree_pitch(tonic, scale, degree)
                while pitch > spec.high_midi:
                    pitch -= 12
                while pitch < spec.low_midi:
                    pitch += 12
                notes.append(
                    Note(
                        pitch,
                        t_beats * sec_per_beat,
                        max(0.05, subdivision * sec_per_beat * max(articulation, 0.6)),
                        _velocity(rng, velocity, t_beats, 4),
                    )
                )
                t_beats += subdivision
            t_beats = float(np.ceil(t_beats - 1e-9))
    return Piece(
        parts=(Part(program, tuple(notes)),),
        duration_s=t_beats * sec_per_beat,
        material="arpeggio",
        bpm=bpm,
        meta={
            "mode": "minor" if minor else "major",
            "tonic_midi": tonic,
            "progression": list(progression),
            "shape": str(shape),
            "sevenths": bool(sevenths),
        },
    )


def _phrase_piece(rng, spec, program, bpm, velocity, articulation, min_duration_s) -> Piece:
    minor = rng.random() < 0.4
    scale = HARMONIC_MINOR if minor else MAJOR
    beats_per_bar = 3 if rng.random() < 0.25 else 4
    density = DENSITIES[rng.integers(len(DENSITIES))]
    if density == "fast":
        bpm = min(bpm, 110.0)
    centre = int(rng.integers(spec.low_midi + 5, spec.high_midi - 5 + 1))
    low, high = max(spec.low_midi, centre - 10), min(spec.high_midi, centre + 10)
    tonic = centre - int(rng.integers(0, 7))
    lo_deg, hi_deg = degree_bounds(tonic, scale, low, high)
    sec_per_beat = 60.0 / bpm

    def make_period():
        events, chords = compose_period(
            rng,
            beats_per_bar=beats_per_bar,
            density=density,
            low_degree=lo_deg,
            high_degree=hi_deg,
        )
        return events, chords, 8 * beats_per_bar

    periods, total_beats = _repeat_until(make_period, min_duration_s / sec_per_beat)
    melody: list[Note] = []
    left: list[Note] = []
    with_left_hand = program in (0, 1) and rng.random() < 0.6
    power_chords = program in (29, 30) and rng.random() < 0.4
    for offset, events, chords in periods:
        melody += _notes_from_events(
            rng,
            events,
            tonic=tonic,
            scale=scale,
            sec_per_beat=sec_per_beat,
            velocity=velocity,
            articulation=articulation,
            beats_per_bar=beats_per_bar,
            offset_beats=offset,
        )
        if with_left_hand:
            left += _accompaniment(
                rng,
                chords,
                tonic=tonic,
                scale=scale,
                beats_per_bar=beats_per_bar,
                sec_per_beat=sec_per_beat,
                velocity=velocity,
                articulation=articulation,
                top_midi=min(tonic, 64),
                offset_beats=offset,
                low_midi=spec.low_midi,
            )
    if power_chords:
        melody += [replace(n, pitch=n.pitch - 7) for n in melody if n.pitch - 7 >= spec.low_midi]
    parts = [Part(program, tuple(melody))]
    if left:
        parts.append(Part(program, tuple(left), role="accompaniment"))
    return Piece(
        parts=tuple(parts),
        duration_s=total_beats * sec_per_beat,
        material="phrase",
        bpm=bpm,
        meta={
            "mode": "minor" if minor else "major",
            "tonic_midi": tonic,
            "metre": f"{beats_per_bar}/4",
            "density": density,
            "left_hand": with_left_hand,
            "power_chords": power_chords,
        },
    )


# ---------------------------------------------------------------------------------------------
# Emotion-family pieces


def timbre_program(
    rng: np.random.Generator, timbre: str, low: int, high: int
) -> tuple[int, int, int]:
    """A melody instrument of brightness ``timbre`` whose range holds [low, high] [MIDI].

    Returns ``(program, low MIDI, high MIDI)``; the last entry of each class spans every
    register level, so one always fits.
    """
    options = [entry for entry in TIMBRE_PROGRAMS[timbre] if entry[1] <= low and high <= entry[2]]
    if not options:
        options = [TIMBRE_PROGRAMS[timbre][-1]]
    return options[rng.integers(len(options))]


def compose_emotion_piece(
    rng: np.random.Generator,
    *,
    mode: str,
    tempo_nps: float,
    register_midi: float,
    velocity: float,
    articulation: float,
    timbre: str,
    min_duration_s: float,
    accompaniment: bool | None = None,
) -> Piece:
    """A grammar melody with the given expressive cues (see ``emotion_cues``).

    Args:
        mode: ``"major"`` or ``"minor"`` (harmonic minor, so the V chord is major).
        tempo_nps: target melody note rate [notes per second]; the tempo is set from the
            melody's notes per beat and clamped to 40..220 BPM.
        register_midi: melody centre [MIDI].
        velocity: melody loudness [MIDI velocity].
        articulation: sounding duration / inter-onset interval [0.35 … 1].
        timbre: instrument brightness class.
        min_duration_s: the music lasts at least this long [s].
        accompaniment: add chords below the melody; None draws it (70 %).
    """
    scale = MAJOR if mode == "major" else HARMONIC_MINOR
    centre = round(register_midi)
    low, high = centre - 8, centre + 8
    program, prog_low, prog_high = timbre_program(rng, timbre, low, high)
    low, high = max(low, prog_low), min(high, prog_high)
    tonic = centre - int(rng.integers(0, 7))
    lo_deg, hi_deg = degree_bounds(tonic, scale, low, high)
    beats_per_bar = 3 if rng.random() < 0.25 else 4
    density = "slow" if tempo_nps <= 2.0 else ("medium" if tempo_nps <= 3.5 else "fast")
    if accompaniment is None:
        accompaniment = bool(rng.random() < 0.7)

    def make_period():
        events, chords = compose_period(
            rng,
            beats_per_bar=beats_per_bar,
            density=density,
            low_degree=lo_deg,
            high_degree=hi_deg,
        )
        return events, chords, 8 * beats_per_bar

    first, chords0, length0 = make_period()
    notes_per_beat = len(first) / length0
    bpm = float(np.clip(60.0 * tempo_nps / notes_per_beat, 40.0, 220.0))
    sec_per_beat = 60.0 / bpm
    periods = [(0.0, first, chords0)]
    total = float(length0)
    while total * sec_per_beat < min_duration_s:
        events, chords, length = make_period()
        periods.append((total, events, chords))
        total += length
    melody: list[Note] = []
    accomp: list[Note] = []
    accomp_program = program if program in _CHORDAL_PROGRAMS else ACCOMPANIMENT_PROGRAM
    for offset, events, chords in periods:
        melody += _notes_from_events(
            rng,
            events,
            tonic=tonic,
            scale=scale,
            sec_per_beat=sec_per_beat,
            velocity=velocity,
            articulation=articulation,
            beats_per_bar=beats_per_bar,
            offset_beats=offset,
        )
        if accompaniment:
            accomp += _accompaniment(
                rng,
                chords,
                tonic=tonic,
                scale=scale,
                beats_per_bar=beats_per_bar,
                sec_per_beat=sec_per_beat,
                velocity=velocity,
                articulation=articulation,
                top_midi=max(40, low - 2),
                offset_beats=offset,
                low_midi=28,
            )
    parts = [Part(program, tuple(melody))]
    if accomp:
        parts.append(Part(accomp_program, tuple(accomp), role="accompaniment"))
    return Piece(
        parts=tuple(parts),
        duration_s=total * sec_per_beat,
        material="phrase",
        bpm=bpm,
        meta={
            "mode": mode,
            "tonic_midi": tonic,
            "metre": f"{beats_per_bar}/4",
            "density": density,
            "timbre": timbre,
            "accompaniment": accompaniment,
        },
    )


def melody_statistics(piece: Piece) -> dict[str, float]:
    """Cue measurements of ``parts[0]``: note rate [notes/s], median pitch [MIDI], mean
    velocity, and articulation (mean sounding duration / inter-onset interval)."""
    notes = sorted(piece.parts[0].notes, key=lambda n: n.start_s)
    if not notes:
        raise ValueError("the melody has no notes")
    onsets = np.array([n.start_s for n in notes])
    iois = np.diff(onsets)
    ratios = [n.dur_s / ioi for n, ioi in zip(notes[:-1], iois, strict=True) if ioi > 1e-6]
    return {
        "tempo_nps": len(notes) / max(piece.duration_s, 1e-6),
        "median_pitch_midi": float(np.median([n.pitch for n in notes])),
        "mean_velocity": float(np.mean([n.velocity for n in notes])),
        "articulation": float(np.clip(np.mean(ratios), 0.0, 1.0)) if ratios else 1.0,
    }


# ---------------------------------------------------------------------------------------------
# Drum grooves: 16 steps per 4/4 bar; each entry: role → steps (velocity scale 0..1 optional).

_GROOVES: dict[str, dict[str, tuple[int, ...]]] = {
    "rock": {"kick": (0, 8, 10), "snare": (4, 12), "hh_closed": (0, 2, 4, 6, 8, 10, 12, 14)},
    "four_on_floor": {
        "kick": (0, 4, 8, 12),
        "clap": (4, 12),
        "hh_open": (2, 6, 10, 14),
        "hh_closed": tuple(range(16)),
    },
    "half_time": {"kick": (0, 6, 11), "snare": (8,), "hh_closed": (0, 2, 4, 6, 8, 10, 12, 14)},
    "breakbeat": {
        "kick": (0, 3, 10),
        "snare": (4, 7, 9, 12, 15),
        "hh_closed": tuple(range(16)),
        "hh_open": (14,),
    },
    "shuffle": {"kick": (0, 8), "snare": (4, 12), "hh_closed": (0, 3, 4, 7, 8, 11, 12, 15)},
    "jazz_ride": {"ride": (0, 4, 7, 8, 12, 15), "hh_pedal": (4, 12), "kick": (0,), "stick": (10,)},
    "hand_percussion": {
        "conga_low": (0, 6, 10),
        "conga_high": (3, 4, 11, 12, 14),
        "shaker": tuple(range(16)),
        "cowbell": (0, 4, 8, 12),
        "tambourine": (4, 12),
    },
}
GROOVES: tuple[str, ...] = tuple(_GROOVES)
_FILLS = (
    ("tom_high", "tom_high", "tom_mid", "tom_mid", "tom_low", "tom_low", "snare", "snare"),
    ("snare", "snare", "tom_high", "tom_mid", "snare", "tom_mid", "tom_low", "kick"),
    ("snare",) * 8,
)


def compose_groove(rng: np.random.Generator, *, min_duration_s: float) -> Piece:
    """A drum groove (GM percussion keys) lasting at least ``min_duration_s`` [s]."""
    name = GROOVES[rng.integers(len(GROOVES))]
    pattern = _GROOVES[name]
    bpm = float(rng.uniform(70.0, 170.0) if name != "half_time" else rng.uniform(60.0, 100.0))
    swing = float(rng.uniform(0.0, 0.6)) if name in ("shuffle", "jazz_ride") else 0.0
    sec_per_step = 60.0 / bpm / 4.0
    base = float(rng.uniform(70.0, 115.0))
    fill = _FILLS[rng.integers(len(_FILLS))]
    notes: list[Note] = []
    bars = int(np.ceil(min_duration_s / (16 * sec_per_step)))
    for bar in range(bars):
        last_of_phrase = bar % 4 == 3 and bar != bars - 1
        for role, steps in pattern.items():
            for step in steps:
                if last_of_phrase and step >= 8 and role not in ("kick",):
                    continue
                if rng.random() < 0.04:  # drop an occasional hit: nobody plays a loop
                    continue
                notes.append(_drum_note(rng, role, bar * 16 + step, sec_per_step, swing, base))
        if last_of_phrase:
            for i, role in enumerate(fill):
                notes.append(_drum_note(rng, role, bar * 16 + 8 + i, sec_per_step, swing, base))
        if bar % 4 == 0 and bar > 0 and name != "hand_percussion":
            notes.append(_drum_note(rng, "crash", bar * 16, sec_per_step, 0.0, base + 10))
    return Piece(
        parts=(Part(0, tuple(sorted(notes, key=lambda n: n.start_s)), is_drum=True),),
        duration_s=bars * 16 * sec_per_step,
        material="groove",
        bpm=bpm,
        meta={"groove": name, "swing": round(swing, 3)},
    )


def _drum_note(
    rng: np.random.Generator, role: str, step: int, sec_per_step: float, swing: float, base: float
) -> Note:
    t = step * sec_per_step
    if step % 2 == 1:
        t += swing * sec_per_step / 2.0
    t = max(0.0, t + rng.normal(0.0, 0.004))
    accent = 12.0 if step % 4 == 0 else (0.0 if step % 2 == 0 else -12.0)
    velocity = int(np.clip(round(base + accent + rng.normal(0.0, 6.0)), 1, 127))
    return Note(GM_DRUMS[role], t, 0.1, velocity)


# ---------------------------------------------------------------------------------------------
# MIDI-level augmentation


def shift_piece(
    piece: Piece, *, transpose: int, tempo_scale: float, low_midi: int = 0, high_midi: int = 127
) -> Piece:
    """The piece transposed and played faster or slower.

    Args:
        transpose: semitones added to every pitched note (drum parts are left alone).
        tempo_scale: tempo multiplier (1.1 = 10 % faster: times and durations divided by it).
        low_midi, high_midi: allowed range of the melody part; the transposition is reduced
            toward 0 until the melody fits.

    Returns:
        A new ``Piece``; ``meta`` gains ``transpose`` and ``tempo_scale``.
    """
    if tempo_scale <= 0:
        raise ValueError(f"tempo_scale must be > 0, got {tempo_scale}")
    pitches = [n.pitch for n in piece.parts[0].notes] if not piece.parts[0].is_drum else []
    step = -1 if transpose > 0 else 1
    while (
        transpose != 0
        and pitches
        and (min(pitches) + transpose < low_midi or max(pitches) + transpose > high_midi)
    ):
        transpose += step
    parts = []
    for part in piece.parts:
        shift = 0 if part.is_drum else transpose
        notes = tuple(
            Note(
                int(np.clip(n.pitch + shift, 0, 127)),
                n.start_s / tempo_scale,
                n.dur_s / tempo_scale,
                n.velocity,
            )
            for n in part.notes
        )
        parts.append(replace(part, notes=notes))
    meta = dict(piece.meta)
    meta.update(transpose=transpose, tempo_scale=round(tempo_scale, 4))
    return replace(
        piece,
        parts=tuple(parts),
        duration_s=piece.duration_s / tempo_scale,
        bpm=piece.bpm * tempo_scale,
        meta=meta,
    )


def crop_piece(piece: Piece, start_s: float, end_s: float) -> Piece:
    """The part of a piece between ``start_s`` and ``end_s`` [s], re-timed to start at 0.

    A note sounding across ``start_s`` is kept, re-attacked at 0 (the caller discards a
    pre-roll that hides it); a note sounding past ``end_s`` is released there.

    Raises:
        ValueError: an empty or negative span.
    """
    if not end_s > start_s:
        raise ValueError(f"crop needs end_s > start_s, got {start_s}..{end_s}")
    parts = []
    for part in piece.parts:
        notes = []
        for n in part.notes:
            n_end = n.start_s + n.dur_s
            if n_end <= start_s or n.start_s >= end_s:
                continue
            begin = max(n.start_s, start_s)
            notes.append(Note(n.pitch, begin - start_s, min(n_end, end_s) - begin, n.velocity))
        parts.append(replace(part, notes=tuple(notes)))
    meta = dict(piece.meta)
    meta["crop_s"] = [round(start_s, 4), round(end_s, 4)]
    return replace(piece, parts=tuple(parts), duration_s=end_s - start_s, meta=meta)
