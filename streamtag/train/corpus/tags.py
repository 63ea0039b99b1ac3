"""The built-in corpus's tag vocabulary: what a rendered clip can be tagged with honestly.

Every tag is read off how the clip was made (its General MIDI programs, its composed mode, its
tempo), never guessed from the audio, so a tag is exactly as true as the renderer is. A tag
that a clip's recipe does not determine is *unknown* for that clip (masked in training, left
out of evaluation), not negative. ``TAG_DEFINITIONS`` is what the model card prints.

Program families follow the General MIDI 1 program groups (programs 0-127, drums -1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Family tags by General MIDI program range [first, last] (inclusive).
_FAMILIES: tuple[tuple[str, int, int], ...] = (
    ("keyboard", 0, 7),      # pianos, electric pianos, harpsichord, clavinet
    ("guitar", 24, 31),      # nylon … distortion, harmonics
    ("strings", 40, 51),     # violin … string ensembles, synth strings
    ("voice", 52, 54),       # choir aahs, voice oohs, synth voice
    ("brass", 56, 63),       # trumpet … synth brass
    ("woodwind", 64, 79),    # reeds (saxophones, oboe, clarinet) and pipes (flute …)
)  # fmt: skip
#: Lead parts whose notes decay after the attack (struck or plucked): pianos, chromatic
#: percussion, plucked guitars (overdriven and distorted guitars sustain), the drum kit.
_PERCUSSIVE_PROGRAMS = frozenset([*range(0, 16), *range(24, 29), -1])
#: Tempo classes [beats per minute]: slow below 90, fast from 140 (Moelants 2002 puts the
#: preferred tempo near 120 bpm; these bounds split the corpus's 55-240 bpm range in three).
SLOW_BELOW_BPM = 90.0
FAST_FROM_BPM = 140.0

CORPUS_TAGS: tuple[str, ...] = (
    "keyboard", "guitar", "strings", "voice", "brass", "woodwind", "drums",
    "accompanied", "percussive", "major", "minor", "slow", "medium", "fast",
)  # fmt: skip
"""The default model's tag vocabulary, in head order."""

TAG_DEFINITIONS: dict[str, str] = {
    "keyboard": "a part is played on a General MIDI piano or keyboard (programs 0-7)",
    "guitar": "a part is played on a guitar (programs 24-31, clean to distorted)",
    "strings": "a part is played on bowed strings or a string ensemble (programs 40-51)",
    "voice": "a part is sung: choir or voice pads (programs 52-54)",
    "brass": "a part is played on brass (programs 56-63)",
    "woodwind": "a part is played on a reed or pipe (programs 64-79: saxophones, clarinet, "
                "oboe, flute)",
    "drums": "a drum kit plays (General MIDI drums or a recorded Hydrogen kit)",
    "accompanied": "more than one part sounds: a melody with chords, a bass line or a left "
                   "hand; unknown for drum grooves",
    "percussive": "the lead part's notes decay after their attack (piano, chromatic "
                  "percussion, plucked guitar, drums); otherwise sustained",
    "major": "the music was composed in a major key; unknown where the recipe has no mode "
             "(scales and arpeggios without one, drum grooves)",
    "minor": "the music was composed in a minor key; unknown as for major",
    "slow": f"the written beat tempo is below {SLOW_BELOW_BPM:g} bpm",
    "medium": f"the written beat tempo is {SLOW_BELOW_BPM:g}-{FAST_FROM_BPM:g} bpm",
    "fast": f"the written beat tempo is {FAST_FROM_BPM:g} bpm or more",
}


def _family(program: int) -> str | None:
    if program < 0:
        return "drums"
    for name, lo, hi in _FAMILIES:
        if lo <= program <= hi:
            return name
    return None


def corpus_tags(row: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(tags that hold, tags whose truth the recipe determines) of one manifest line.

    ``row`` is a line of a built-in corpus manifest (``render.programs``, ``render.bpm``,
    ``render.meta.mode``, ``family``). A tag in the second tuple but not the first is a known
    negative; a tag in neither is unknown for this clip.

    Raises:
        ValueError: the line has no ``render.programs`` or ``render.bpm``.
    """
    render = row.get("render") or {}
    programs: Sequence[int] = render.get("programs") or ()
    bpm = render.get("bpm")
    if not programs or bpm is None:
        raise ValueError("manifest line has no render.programs or render.bpm to tag from")
    programs = [int(p) for p in programs]
    meta = render.get("meta") or {}
    drums = row.get("family") == "drums" or programs == [-1]
    on: set[str] = {f for f in map(_family, programs) if f is not None}
    known: set[str] = {name for name, _, _ in _FAMILIES} | {"drums"}
    if not drums:
        known.add("accompanied")
        if len(programs) > 1:
            on.add("accompanied")
    known.add("percussive")
    if programs[0] in _PERCUSSIVE_PROGRAMS:
        on.add("percussive")
    mode = meta.get("mode")
    if mode in ("major", "minor") and not drums:
        known |= {"major", "minor"}
        on.add(mode)
    known |= {"slow", "medium", "fast"}
    bpm = float(bpm)
    on.add("slow" if bpm < SLOW_BELOW_BPM else ("fast" if bpm >= FAST_FROM_BPM else "medium"))
    order = {t: i for i, t in enumerate(CORPUS_TAGS)}
    return (tuple(sorted(on, key=order.__getitem__)),
            tuple(sorted(known, key=order.__getitem__)))


__all__ = ["CORPUS_TAGS", "FAST_FROM_BPM", "SLOW_BELOW_BPM", "TAG_DEFINITIONS", "corpus_tags"]
