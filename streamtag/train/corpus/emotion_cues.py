"""An additive cue model that labels rendered melodies with valence and arousal.

The emotion family of the corpus renders melodies whose expressive cues are set on purpose, and
labels each render with the valence and arousal this model predicts from the cues it really
carries. **These labels are a proxy derived from published cue effects, not listener ratings**:
they teach the model the cue directions listeners agree on, nothing more, and no accuracy on
them says how well the model matches people.

Source. Eerola, T., Friberg, A. & Bresin, R. (2013). Emotional expression in music:
contribution, linearity, and additivity of primary musical cues. *Frontiers in Psychology* 4:487,
doi:10.3389/fpsyg.2013.00487. In a factorial design over six cues (mode, tempo, dynamics,
articulation, timbre, register), listeners rated happy, sad, peaceful and scary. The paper finds
that (1) mode matters most, then tempo, register, dynamics, articulation and timbre; (2) most cue
levels act linearly; (3) cues barely interact, i.e. they add up. This model keeps those three
findings: it is linear and additive, and its weights follow the paper's ranking. The weights
are our own normalisation of that ranking onto the valence/arousal plane, not the paper's
regression coefficients (which were fitted per discrete emotion on a 1–7 rating scale).

Directions, each cue coded in [-1, 1] (from the four emotions onto Thayer's quadrants:
happy = +v +a, scary/tense = −v +a, sad = −v −a, peaceful/calm = +v −a):

============ ============================= ======== ======== ==================================
cue          coding −1 … +1                valence  arousal  reading
============ ============================= ======== ======== ==================================
mode         minor … major                 +0.50    0.00     major → happy, peaceful
tempo        1.2 … 6 notes/s (log scale)   +0.05    +0.38    fast → happy, scary
register     MIDI 50 … 78 (median pitch)   +0.28    0.00     high → happy, peaceful
dynamics     velocity 40 … 120             −0.06    +0.18    loud → scary, happy
articulation legato … staccato             +0.04    +0.14    staccato → happy, scary
timbre       dull … bright instrument      −0.04    +0.08    bright → scary, happy
============ ============================= ======== ======== ==================================

Importance (|valence weight| + |arousal weight|) ranks mode 0.50 > tempo 0.43 > register 0.28 >
dynamics 0.24 > articulation 0.18 > timbre 0.12, as in the paper. Valence then spans ±0.97 and
arousal ±0.78; both are clipped to [-1, 1]. The cue levels (tempo 1.2–6 notes per second, five
registers, five dynamics, four articulations, three timbres of rising brightness: French horn,
flute, trumpet and their stand-ins) are modelled on the paper's design.

``sample_cues`` draws cue settings for a requested quadrant by rejection sampling over the cue
levels, keeping settings whose predicted valence and arousal both lie at least ``margin`` from
zero, so that ``sample_balanced`` yields the four quadrants in equal numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# One quadrant function for served and trained labels (streamtag.record).
from streamtag.record import quadrant

CUES: tuple[str, ...] = ("mode", "tempo", "register", "dynamics", "articulation", "timbre")
"""The six cues, in the paper's order of importance."""

WEIGHTS: dict[str, tuple[float, float]] = {
    "mode": (0.50, 0.00),
    "tempo": (0.05, 0.38),
    "register": (0.28, 0.00),
    "dynamics": (-0.06, 0.18),
    "articulation": (0.04, 0.14),
    "timbre": (-0.04, 0.08),
}
"""Cue → (valence weight, arousal weight), applied to the cue coded in [-1, 1]."""

QUADRANT_LABELS: dict[int, str] = {1: "happy", 2: "tense", 3: "sad", 4: "calm"}
"""Thayer quadrant → label (2 is the paper's 'scary', 4 its 'peaceful')."""

MODES: tuple[str, ...] = ("major", "minor")
TEMPO_LEVELS_NPS: tuple[float, ...] = (1.2, 2.0, 2.8, 4.4, 6.0)
"""Melody note rate levels [notes per second]."""
REGISTER_LEVELS_MIDI: tuple[int, ...] = (50, 57, 64, 71, 78)
"""Melody centre levels [MIDI note number]."""
DYNAMICS_LEVELS_VELOCITY: tuple[int, ...] = (40, 60, 80, 100, 120)
"""Melody loudness levels [MIDI velocity]."""
ARTICULATION_LEVELS: tuple[float, ...] = (1.0, 0.8, 0.6, 0.35)
"""Sounding duration / inter-onset interval, legato (1.0) to staccato (0.35)."""
TIMBRES: tuple[str, ...] = ("dull", "medium", "bright")
"""Instrument brightness classes; ``music.TIMBRE_PROGRAMS`` lists the GM programs of each."""

_TEMPO_RANGE_NPS = (TEMPO_LEVELS_NPS[0], TEMPO_LEVELS_NPS[-1])
_REGISTER_RANGE = (REGISTER_LEVELS_MIDI[0], REGISTER_LEVELS_MIDI[-1])
_DYNAMICS_RANGE = (DYNAMICS_LEVELS_VELOCITY[0], DYNAMICS_LEVELS_VELOCITY[-1])
_ARTICULATION_RANGE = (ARTICULATION_LEVELS[-1], ARTICULATION_LEVELS[0])


def _clip1(x: float) -> float:
    return float(min(1.0, max(-1.0, x)))


def _linear(x: float, low: float, high: float) -> float:
    return _clip1(2.0 * (x - low) / (high - low) - 1.0)


@dataclass(frozen=True)
class CueSetting:
    """Nominal cue levels chosen for one melody (before rendering).

    Attributes:
        mode: ``"major"`` or ``"minor"``.
        tempo_nps: melody note rate [notes per second].
        register_midi: melody centre [MIDI note number].
        velocity: melody loudness [MIDI velocity 1..127].
        articulation: sounding duration / inter-onset interval [ratio, 0.35 … 1.0].
        timbre: ``"dull"``, ``"medium"`` or ``"bright"``.
    """

    mode: str
    tempo_nps: float
    register_midi: float
    velocity: float
    articulation: float
    timbre: str

    def codes(self) -> dict[str, float]:
        """Each cue coded in [-1, 1] (see ``code_cues``)."""
        return code_cues(
            mode=self.mode,
            tempo_nps=self.tempo_nps,
            median_pitch_midi=self.register_midi,
            mean_velocity=self.velocity,
            articulation=self.articulation,
            timbre=self.timbre,
        )


def code_cues(
    *,
    mode: str,
    tempo_nps: float,
    median_pitch_midi: float,
    mean_velocity: float,
    articulation: float,
    timbre: str,
) -> dict[str, float]:
    """Code measured cue values onto [-1, 1], positive in the direction named in the table.

    Args:
        mode: ``"major"`` or ``"minor"``.
        tempo_nps: melody note rate [notes per second]; coded on a log scale over 1.2 … 6.
        median_pitch_midi: median melody pitch [MIDI note number]; linear over 50 … 78.
        mean_velocity: mean melody velocity [1..127]; linear over 40 … 120.
        articulation: mean sounding duration / inter-onset interval; 1.0 → −1, 0.35 → +1.
        timbre: ``"dull"`` (−1), ``"medium"`` (0) or ``"bright"`` (+1).

    Raises:
        ValueError: unknown mode or timbre, or a non-positive tempo.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if timbre not in TIMBRES:
        raise ValueError(f"timbre must be one of {TIMBRES}, got {timbre!r}")
    if not tempo_nps > 0:
        raise ValueError(f"tempo_nps must be > 0, got {tempo_nps}")
    low, high = _TEMPO_RANGE_NPS
    return {
        "mode": 1.0 if mode == "major" else -1.0,
        "tempo": _linear(math.log(tempo_nps), math.log(low), math.log(high)),
        "register": _linear(median_pitch_midi, *_REGISTER_RANGE),
        "dynamics": _linear(mean_velocity, *_DYNAMICS_RANGE),
        "articulation": -_linear(articulation, *_ARTICULATION_RANGE),
        "timbre": float(TIMBRES.index(timbre) - 1),
    }


def predict(codes: Mapping[str, float]) -> tuple[float, float]:
    """Valence and arousal [-1, 1] of a melody from its coded cues (all six required).

    Raises:
        KeyError: a cue is missing.
    """
    valence = sum(WEIGHTS[cue][0] * float(codes[cue]) for cue in CUES)
    arousal = sum(WEIGHTS[cue][1] * float(codes[cue]) for cue in CUES)
    return _clip1(valence), _clip1(arousal)


def _draw(rng: np.random.Generator) -> CueSetting:
    return CueSetting(
        mode=MODES[rng.integers(len(MODES))],
        tempo_nps=TEMPO_LEVELS_NPS[rng.integers(len(TEMPO_LEVELS_NPS))],
        register_midi=float(REGISTER_LEVELS_MIDI[rng.integers(len(REGISTER_LEVELS_MIDI))]),
        velocity=float(DYNAMICS_LEVELS_VELOCITY[rng.integers(len(DYNAMICS_LEVELS_VELOCITY))]),
        articulation=ARTICULATION_LEVELS[rng.integers(len(ARTICULATION_LEVELS))],
        timbre=TIMBRES[rng.integers(len(TIMBRES))],
    )


def sample_cues(
    rng: np.random.Generator, target_quadrant: int, *, margin: float = 0.1, max_tries: int = 10000
) -> CueSetting:
    """A cue setting whose predicted emotion lies in ``target_quadrant``.

    Draws every cue uniformly from its levels and keeps the first setting whose predicted
    valence and arousal both lie in the quadrant, at least ``margin`` from zero (so the small
    MIDI-level tempo and pitch shifts applied later rarely move it across an axis).

    Raises:
        ValueError: unknown quadrant, or no setting found in ``max_tries`` draws.
    """
    if target_quadrant not in QUADRANT_LABELS:
        raise ValueError(f"quadrant must be 1..4, got {target_quadrant}")
    for _ in range(max_tries):
        setting = _draw(rng)
        valence, arousal = predict(setting.codes())
        if (
            quadrant(valence, arousal) == target_quadrant
            and abs(valence) >= margin
            and abs(arousal) >= margin
        ):
            return setting
    raise ValueError(f"no cue setting reaches quadrant {target_quadrant} with margin {margin}")


def sample_balanced(rng: np.random.Generator, n: int, *, margin: float = 0.1) -> list[CueSetting]:
    """``n`` cue settings, the four quadrants in equal numbers (±1), in shuffled order."""
    targets = [1 + (i % 4) for i in range(n)]
    order = rng.permutation(n)
    return [sample_cues(rng, targets[i], margin=margin) for i in order]
