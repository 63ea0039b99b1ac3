"""The built-in training corpus: musical material rendered offline through General MIDI sets.

``build_corpus`` (or ``build_preset`` with a size from ``SIZE_PRESETS``) composes scales,
arpeggios, grammar melodies and drum grooves, renders them with FluidSynth through every
training SoundFont found (validation through TimGM6mb only) and through Hydrogen drum kits,
randomises what a live room changes, labels instrument, emotion (a cue-model proxy, see
``emotion_cues``) and timbre, and writes WAV clips plus ``manifest.jsonl``.

Modules: ``soundfonts`` (where the sample sets are, which are reserved), ``music`` (material),
``emotion_cues`` (the cue model), ``render`` (FluidSynth and the kit sampler), ``augment``
(room, microphone, noise, gain) and ``build`` (plan, workers, manifest, CLI entry ``main``).
"""

from streamtag.train.corpus.build import (
    FAMILIES,
    MANIFEST_KEYS,
    SAMPLE_RATE_HZ,
    SIZE_PRESETS,
    CorpusSize,
    build_corpus,
    build_preset,
    main,
    read_manifest,
)
from streamtag.train.corpus.soundfonts import (
    CorpusError,
    ReservedSourceError,
    SoundFontError,
    check_allowed,
    find_drumkits,
    find_soundfonts,
)

__all__ = [
    "FAMILIES",
    "MANIFEST_KEYS",
    "SAMPLE_RATE_HZ",
    "SIZE_PRESETS",
    "CorpusError",
    "CorpusSize",
    "ReservedSourceError",
    "SoundFontError",
    "build_corpus",
    "build_preset",
    "check_allowed",
    "find_drumkits",
    "find_soundfonts",
    "main",
    "read_manifest",
]
