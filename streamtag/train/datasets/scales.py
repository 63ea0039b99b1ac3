"""Every mapping from a dataset's label scale to streamtag's, in one place.

streamtag's scales: valence and arousal in [-1, 1] (Thayer: + is pleasant / energetic), timbral
descriptors in [0, 1]. No other module maps or range-checks label scales.

Source scales:

=====================  ==========================  =======================================
source                 as distributed              mapping
=====================  ==========================  =======================================
PMEmo 2019 (static     mean rating in [0, 1]       v' = 2 v − 1
and dynamic)
DEAM static            9-point SAM mean in [1, 9]  v' = (v − 5) / 4
DEAM dynamic           already in [-1, 1]          v' = v
Freesound one-shot     AudioCommons model output,  t' = clip(t / 100, 0, 1): the models are
timbral descriptors    nominally 0..100            regressions that overshoot their range
generic CSV            already ours                checked only
=====================  ==========================  =======================================

Every function raises ``ValueError`` naming the value and the expected range when a value is
outside what the source promises (except the Freesound mapping, which clips by design); loaders
turn that into a malformed-entry report naming the file and row.
"""

from __future__ import annotations

import math

PMEMO_RANGE = (0.0, 1.0)
DEAM_STATIC_RANGE = (1.0, 9.0)
DEAM_DYNAMIC_RANGE = (-1.0, 1.0)
FREESOUND_TIMBRE_RANGE = (0.0, 100.0)
EMOTION_RANGE = (-1.0, 1.0)
TIMBRE_RANGE = (0.0, 1.0)


def _check(value: float, bounds: tuple[float, float], what: str) -> float:
    low, high = bounds
    if not math.isfinite(value):
        raise ValueError(f"{what} {value!r} is not a finite number")
    if not low <= value <= high:
        raise ValueError(f"{what} {value:g} is outside {low:g}..{high:g}")
    return float(value)


def pmemo_emotion(value: float, what: str = "PMEmo rating") -> float:
    """PMEmo valence or arousal, [0, 1] → [-1, 1]."""
    return 2.0 * _check(value, PMEMO_RANGE, what) - 1.0


def deam_static_emotion(value: float, what: str = "DEAM static rating") -> float:
    """DEAM song-level valence or arousal mean, 9-point scale [1, 9] → [-1, 1] (5 → 0)."""
    return (_check(value, DEAM_STATIC_RANGE, what) - 5.0) / 4.0


def deam_dynamic_emotion(value: float, what: str = "DEAM dynamic rating") -> float:
    """DEAM per-0.5 s valence or arousal: already [-1, 1], checked only."""
    return _check(value, DEAM_DYNAMIC_RANGE, what)


def freesound_timbre(value: float, what: str = "timbral value") -> float:
    """AudioCommons timbral descriptor, nominal 0..100 → [0, 1], clipped.

    The AudioCommons models are regressions fitted to 0–100 listener ratings and overshoot that
    range on some sounds; the overshoot carries no meaning beyond "very", so it is clipped.
    Use ``freesound_timbre_in_range`` to count how often that happens.
    """
    if not math.isfinite(value):
        raise ValueError(f"{what} {value!r} is not a finite number")
    low, high = FREESOUND_TIMBRE_RANGE
    return min(max((value - low) / (high - low), 0.0), 1.0)


def freesound_timbre_in_range(value: float) -> bool:
    """True when a raw AudioCommons value lies in its nominal 0..100 range (no clipping)."""
    low, high = FREESOUND_TIMBRE_RANGE
    return low <= value <= high


def emotion(value: float, what: str = "emotion value") -> float:
    """A valence or arousal already on streamtag's scale: checked to lie in [-1, 1]."""
    return _check(value, EMOTION_RANGE, what)


def timbre(value: float, what: str = "timbre value") -> float:
    """A timbral descriptor already on streamtag's scale: checked to lie in [0, 1]."""
    return _check(value, TIMBRE_RANGE, what)
