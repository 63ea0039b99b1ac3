"""Physical-model instruments from the Synthesis ToolKit (STK) as a training sample set.

A SoundFont plays recordings of one instrument; STK's waveguide models (Cook & Scavone; Debian
``stk``) compute a clarinet, a saxophone, a bowed string, a brass instrument and a flute from
a physical model, a timbre no SoundFont shares. Its demo program renders a SKINI score offline
to a WAV file (``stk-demo Clarinet -s 22050 -ow out.wav -if score.ski``, no sound card), so the
corpus can use it like FluidSynth: pieces are written one after another into one score, with
``GAP_S`` of silence between them, rendered in one run and cut back at their known starts.

Classes it plays (``STK_CLASSES``): clarinet (``Clarinet``), tenor saxophone (``Saxofony``),
trumpet (``Brass``) and flute (``Flute``), each tuned to the written pitch within ±20 cents
(``STK_TUNING_CENTS``, ``STK_RANGES``; measured with YIN). Each piece gets its own
player: breath or bow pressure, reed stiffness or lip tension, noise and vibrato are drawn per
piece (``STK_CONTROLS``), as different players of one instrument differ. Only the labelled
melody (``parts[0]``) is played; the set takes no part in the emotion and drum families.

STK ships its own raw waves (``/usr/share/stk/rawwaves``: excitation tables, no recordings of
the reserved sets); ``check_allowed`` is still applied to the program and to that folder.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from streamtag.train.corpus.music import Piece, into_range
from streamtag.train.corpus.render import GAP_S, TAIL_S, RenderStats, cut_pieces
from streamtag.train.corpus.soundfonts import TRAIN, CorpusError, SoundFont, check_allowed

STK_NAME = "stk"
"""The sample set's name in manifests, ``--soundfonts`` and ``--holdout``."""
STK_INSTALL = "apt-get install stk"
STK_RAWWAVES = Path("/usr/share/stk/rawwaves")

STK_CLASSES: dict[str, str] = {
    "clarinet": "Clarinet",
    "tenor saxophone": "Saxofony",
    "trumpet": "Brass",
    "flute": "Flute",
}
"""Instrument class → STK instrument of ``stk-demo``. ``Bowed`` is left out: its pitch wanders
by up to ±120 cents and jumps octaves with the bow settings (measured with YIN), which would
teach the violin class a wrong tuning; the violin scores 0.98+ on unseen sets already."""

STK_RANGES: dict[str, tuple[int, int]] = {
    "Saxofony": (0, 72),
    "Brass": (60, 80),
    "Flute": (0, 86),
}
"""Written range [MIDI] where a model speaks at its pitch (Saxofony overblows above 72, Brass
does not speak below 60 and overblows above 80, Flute drops an octave above 86); notes outside
are moved by octaves into it."""

STK_CONTROLS: dict[str, tuple[tuple[int, int, int], ...]] = {
    # (SKINI control number, low, high) on STK's 0-128 scale, in ranges where each model
    # speaks at the written pitch (checked with YIN).
    # Clarinet: reed stiffness 2, noise 4, vibrato rate 11 and depth 1, breath 128.
    # Saxofony: breath 128, noise 4, vibrato rate 29 and depth 1; reed stiffness, aperture and
    #   blow position stay at their defaults (a softer reed speaks 30-40 dB quieter, a stiffer
    #   one or a wider aperture overblows an octave).
    # Brass: vibrato 11 / 1 and volume 128 (lip tension and slide follow the pitch).
    # Flute: noise 4, vibrato 11 / 1, breath 128 (overblows above 110); the jet delay stays at
    #   its default (it overblows an octave elsewhere).
    "Clarinet": ((2, 40, 90), (4, 5, 40), (11, 30, 70), (1, 0, 40), (128, 80, 120)),
    "Saxofony": ((128, 110, 127), (4, 5, 15), (29, 30, 60), (1, 0, 40)),
    "Brass": ((11, 30, 70), (1, 0, 30), (128, 80, 120)),
    "Flute": ((4, 5, 50), (11, 30, 70), (1, 0, 30), (128, 80, 110)),
}
"""Per STK instrument: the controls drawn per piece (reed stiffness / bow pressure / lip
tension, noise or position, vibrato rate and depth, breath pressure)."""

STK_TUNING_CENTS: dict[str, tuple[float, float]] = {
    "Clarinet": (0.0, 0.0),
    "Saxofony": (-20.0, -1.3),
    "Brass": (25.0, 0.0),
    "Flute": (35.0, 1.3),
}
"""How far each model sounds from the written pitch: ``(cents at MIDI 60, cents per
semitone above it)``, measured with YIN on held notes at the default controls; the score
writes each note that much lower (SKINI takes fractional note numbers)."""


def stk_path() -> str | None:
    """The ``stk-demo`` program, or None when Debian ``stk`` is not installed."""
    return shutil.which("stk-demo")


def find_stk_sets() -> list[SoundFont]:
    """The STK set as a training ``SoundFont`` entry (its path is the program), if installed."""
    path = stk_path()
    if path is None:
        return []
    check_allowed(path)
    return [SoundFont(name=STK_NAME, path=Path(path), split=TRAIN)]


def skini_score(
    pieces: Sequence[Piece], instrument: str, seeds: Sequence[int]
) -> tuple[str, list[float]]:
    """One SKINI score playing each piece's melody after the other, and each piece's start [s].

    Each piece starts with its own control settings (``STK_CONTROLS``, drawn from its seed).
    A note's off is moved before the next note's on, so a monophonic model never loses a note
    to a late release.
    """
    events: list[tuple[float, int, str]] = []  # (time, order, message without time)
    starts = []
    t0 = 1.0
    for piece, seed in zip(pieces, seeds, strict=True):
        starts.append(t0)
        rng = np.random.default_rng(seed)
        for number, low, high in STK_CONTROLS[instrument]:
            value = int(rng.integers(low, high + 1))
            events.append((t0 - 0.5, 0, f"ControlChange 1 {number} {value}"))
        notes = sorted(piece.parts[0].notes, key=lambda n: n.start_s)
        for i, note in enumerate(notes):
            on = t0 + note.start_s
            off = on + note.dur_s
            if i + 1 < len(notes):
                off = min(off, t0 + notes[i + 1].start_s - 0.001)
            velocity = int(np.clip(note.velocity, 1, 127))
            cents, slope = STK_TUNING_CENTS[instrument]
            low, high = STK_RANGES.get(instrument, (0, 127))
            written = into_range(note.pitch, low, high)
            pitch = written - (cents + slope * (written - 60)) / 100.0
            events.append((on, 2, f"NoteOn 1 {pitch:.2f} {velocity}"))
            events.append((max(off, on + 0.01), 1, f"NoteOff 1 {pitch:.2f} 64"))
        t0 += piece.duration_s + TAIL_S + GAP_S
    events.sort(key=lambda e: (e[0], e[1]))
    lines = []
    last = 0.0
    for t, _, message in events:
        kind, rest = message.split(" ", 1)
        lines.append(f"{kind} {max(0.0, t - last):.6f} {rest}")
        last = max(last, t)
    # A silent control at the end keeps the render running through the last piece's tail.
    lines.append(f"ControlChange {max(0.0, t0 - last):.6f} 1 1 0")
    return "\n".join(lines) + "\n", starts


def render_stk_batch(
    pieces: Sequence[Piece],
    instrument: str,
    seeds: Sequence[int],
    *,
    sample_rate_hz: int,
    workdir: Path | None = None,
) -> tuple[list[np.ndarray], RenderStats]:
    """Render pieces' melodies on one STK instrument with ``stk-demo``.

    Returns one mono float32 signal per piece, shape ``[round((duration_s + TAIL_S) * rate)]``,
    starting at the piece's time zero, and the cost.

    Raises:
        CorpusError: stk-demo is missing or failed, or the instrument is unknown.
    """
    exe = stk_path()
    if exe is None:
        raise CorpusError(f"the stk-demo program is not installed: run `{STK_INSTALL}`")
    if instrument not in STK_CONTROLS:
        raise CorpusError(
            f"unknown STK instrument {instrument!r}: expected one of {', '.join(STK_CONTROLS)}"
        )
    check_allowed(exe)
    check_allowed(STK_RAWWAVES)
    score, starts = skini_score(pieces, instrument, seeds)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        ski, wav = Path(tmp) / "score.ski", Path(tmp) / "out.wav"
        ski.write_text(score, encoding="ascii")
        cmd = [exe, instrument, "-s", str(sample_rate_hz), "-ow", str(wav), "-if", str(ski)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=600, check=False, cwd=tmp
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CorpusError(f"stk-demo failed on {instrument}: {exc}") from exc
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0 or not wav.is_file():
            raise CorpusError(
                f"stk-demo failed on {instrument} (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-500:]}"
            )
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    out, audio_s = cut_pieces(audio, rate, sample_rate_hz, starts, pieces, "stk-demo")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, RenderStats(audio_s=audio_s, cpu_s=cpu, wall_s=wall, calls=1)
