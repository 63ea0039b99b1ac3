"""The built-in training corpus: musical material rendered offline through General MIDI sets.

``build_corpus`` (or ``build_preset`` with a size from ``SIZE_PRESETS``) composes scales,
arpeggios, grammar melodies and drum grooves, renders them with FluidSynth through every
training SoundFont found (validation through TimGM6mb only) and through Hydrogen drum kits,
randomises what a live room changes, labels instrument, emotion (a cue-model proxy, see
``emotion_cues``) and timbre, and writes WAV clips plus ``manifest.jsonl``.

Modules: ``soundfonts`` (where the sample sets are, which are reserved), ``music`` (material),
``emotion_cues`` (the cue model), ``render`` (FluidSynth and the kit sampler), ``augment``
(room, microphone, noise, gain), ``plan`` (which clips), ``worker`` (render, augment, label and
write one task's clips), ``build`` (the driver), ``manifest`` (the layout on disk), ``sizes``
(size presets) and ``cli`` (``streamtag corpus build``).

The names below are imported on first use: the command line's parser reads the flags'
choices without loading the renderers (which need the training extra).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "FAMILIES": "manifest",
    "MANIFEST_KEYS": "manifest",
    "SAMPLE_RATE_HZ": "manifest",
    "read_manifest": "manifest",
    "SIZE_PRESETS": "sizes",
    "CorpusSize": "sizes",
    "build_corpus": "build",
    "build_preset": "build",
    "main": "cli",
    "CorpusError": "soundfonts",
    "ReservedSourceError": "soundfonts",
    "SoundFontError": "soundfonts",
    "check_allowed": "soundfonts",
    "find_drumkits": "soundfonts",
    "find_soundfonts": "soundfonts",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = sorted(_HOMES)
