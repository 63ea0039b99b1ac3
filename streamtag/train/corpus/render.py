"""Turning ``Piece`` objects into audio: FluidSynth for SoundFonts, a sampler for Hydrogen kits.

FluidSynth runs as the ``fluidsynth`` command-line program (Debian ``fluidsynth``), with no
Python binding. Loading a SoundFont costs up to seconds (MuseScore's ``.sf3`` decodes Vorbis
samples), so pieces are rendered in batches: one MIDI file holds many pieces one after the
other, separated by ``GAP_S`` of silence, FluidSynth renders it once, and the audio is cut back
into pieces at their known start times. FluidSynth's own reverb and chorus are off; the room is
the augmentation's job. FluidSynth renders events on 64-sample blocks, so an onset lands within
~3 ms of its MIDI time, and a piece's audio starts at its first note.

Hydrogen kits are played by a small sampler: each drum hit picks the kit instrument mapped to
its role (kick, snare, hi-hat, …) and the layer matching its velocity, and mixes the sample in
at its onset.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from streamtag.train.corpus.music import GM_DRUMS, Piece
from streamtag.train.corpus.soundfonts import CorpusError, check_allowed

GAP_S = 1.0
"""Silence between pieces in a batch [s]: with ``TAIL_S``, long enough for releases to die
away before the next piece (whose first ``build`` pre-roll is discarded anyway)."""
TAIL_S = 0.5
"""Audio kept after a piece's last beat [s] (release and ring-out)."""
FLUIDSYNTH_GAIN = 0.3
"""FluidSynth master gain: keeps dense piano chords below full scale."""

_TICKS_PER_BEAT = 960
_MIDI_TEMPO_US = 500_000  # 120 BPM, so 1920 ticks per second
_TICKS_PER_S = _TICKS_PER_BEAT * 1_000_000 / _MIDI_TEMPO_US
_PRE_ROLL_S = 0.5  # controller resets and program changes go this long before a piece
_MELODIC_CHANNELS = tuple(c for c in range(16) if c != 9)


@dataclass
class RenderStats:
    """What rendering cost.

    Attributes:
        audio_s: audio produced [s].
        cpu_s: CPU time of the renderer [s] (FluidSynth child processes, or the sampler).
        wall_s: wall-clock time [s].
        calls: renderer invocations.
    """

    audio_s: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    calls: int = 0

    def add(self, other: RenderStats) -> None:
        """Accumulate ``other`` into this one."""
        self.audio_s += other.audio_s
        self.cpu_s += other.cpu_s
        self.wall_s += other.wall_s
        self.calls += other.calls


def fluidsynth_path() -> str:
    """The ``fluidsynth`` executable.

    Raises:
        CorpusError: it is not installed (names the Debian package).
    """
    path = shutil.which("fluidsynth")
    if path is None:
        raise CorpusError(
            "the fluidsynth program is not installed: run `apt-get install fluidsynth`"
        )
    return path


def _seconds_to_ticks(t: float) -> int:
    return round(t * _TICKS_PER_S)


def write_midi(pieces: Sequence[Piece], path: Path) -> list[float]:
    """Write pieces one after another into one type-0 MIDI file.

    Each piece gets fresh channels (drums on channel 10), a controller reset and its program
    changes ``_PRE_ROLL_S`` before it starts. Overlapping notes of the same pitch on one
    channel are shortened so that a note-off never cuts the next note.

    Returns:
        The start time of every piece in the file [s].
    """
    events: list[tuple[int, int, mido.Message]] = []  # (tick, order, message)
    starts: list[float] = []
    t0 = 1.0
    for piece in pieces:
        starts.append(t0)
        pre = _seconds_to_ticks(t0 - _PRE_ROLL_S)
        melodic = iter(_MELODIC_CHANNELS)
        for part in piece.parts:
            channel = 9 if part.is_drum else next(melodic)
            for control, value in ((121, 0), (7, 100), (11, 127), (10, 64), (64, 0)):
                events.append(
                    (
                        pre,
                        0,
                        mido.Message(
                            "control_change", channel=channel, control=control, value=value
                        ),
                    )
                )
            if not part.is_drum:
                events.append(
                    (pre, 1, mido.Message("program_change", channel=channel, program=part.program))
                )
            by_pitch: dict[int, list] = {}
            for note in sorted(part.notes, key=lambda n: n.start_s):
                by_pitch.setdefault(note.pitch, []).append(note)
            for pitch, notes in by_pitch.items():
                for i, note in enumerate(notes):
                    on = _seconds_to_ticks(t0 + note.start_s)
                    off = _seconds_to_ticks(t0 + note.start_s + note.dur_s)
                    if i + 1 < len(notes):
                        off = min(off, _seconds_to_ticks(t0 + notes[i + 1].start_s))
                    off = max(off, on + 1)
                    velocity = int(np.clip(note.velocity, 1, 127))
                    events.append(
                        (
                            on,
                            3,
                            mido.Message("note_on", channel=channel, note=pitch, velocity=velocity),
                        )
                    )
                    events.append(
                        (off, 2, mido.Message("note_off", channel=channel, note=pitch, velocity=0))
                    )
        t0 += piece.duration_s + TAIL_S + GAP_S
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=_MIDI_TEMPO_US, time=0))
    last = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - last))
        last = tick
    end = _seconds_to_ticks(t0)
    track.append(mido.MetaMessage("end_of_track", time=max(0, end - last)))
    midi = mido.MidiFile(type=0, ticks_per_beat=_TICKS_PER_BEAT)
    midi.tracks.append(track)
    midi.save(str(path))
    return starts


def render_soundfont_batch(
    pieces: Sequence[Piece],
    soundfont: Path,
    *,
    sample_rate_hz: int,
    workdir: Path | None = None,
    gain: float = FLUIDSYNTH_GAIN,
) -> tuple[list[np.ndarray], RenderStats]:
    """Render pieces through a SoundFont with the ``fluidsynth`` program.

    Args:
        pieces: the pieces, rendered in one FluidSynth run.
        soundfont: ``.sf2`` / ``.sf3`` file (checked against the reserved list).
        sample_rate_hz: output rate [Hz].
        workdir: folder for the temporary MIDI and WAV files (a fresh temp folder if None).
        gain: FluidSynth master gain.

    Returns:
        One mono float32 signal per piece, shape ``[round((duration_s + TAIL_S) * rate)]``,
        starting at the piece's time zero; and the cost.

    Raises:
        CorpusError: FluidSynth is missing or failed (its message is quoted).
        ReservedSourceError: the SoundFont is reserved.
    """
    check_allowed(soundfont)
    exe = fluidsynth_path()
    # Dynamic loading unloads a preset's samples when no channel uses it; for .sf3 that means
    # decoding the same Vorbis samples again at every program change, ten times slower than
    # decoding the whole file once. Plain .sf2 samples load fast either way.
    dynamic = 0 if soundfont.suffix.lower() == ".sf3" else 1
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        midi_path = Path(tmp) / "batch.mid"
        wav_path = Path(tmp) / "batch.wav"
        starts = write_midi(pieces, midi_path)
        cmd = [
            exe, "-ni", "-q", "-R", "0", "-C", "0",
            "-r", str(sample_rate_hz), "-g", f"{gain:.3f}",
            "-o", f"synth.dynamic-sample-loading={dynamic}",
            "-o", "synth.polyphony=256",
            "-o", "audio.file.format=float",
            "-o", "audio.file.type=wav",
            "-F", str(wav_path), str(soundfont), str(midi_path),
        ]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CorpusError(f"fluidsynth took over 600 s on {soundfont}") from exc
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0 or not wav_path.is_file():
            raise CorpusError(
                f"fluidsynth failed on {soundfont} (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[:500]}"
            )
        audio, rate = sf.read(str(wav_path), dtype="float32", always_2d=True)
    out, audio_s = cut_pieces(audio, rate, sample_rate_hz, starts, pieces, "fluidsynth")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stats = RenderStats(audio_s=audio_s, cpu_s=cpu, wall_s=wall, calls=1)
    return out, stats


def cut_pieces(audio: np.ndarray, rate: int, sample_rate_hz: int, starts: Sequence[float],
               pieces: Sequence[Piece], tool: str) -> tuple[list[np.ndarray], float]:
    """One render of pieces laid end to end [n, channels] → each piece's mono float32 audio
    (its notes plus ``TAIL_S`` of release, zero-padded at the end), and the render's length
    [s]. CorpusError if ``tool`` wrote another rate than asked."""
    if rate != sample_rate_hz:
        raise CorpusError(f"{tool} wrote {rate} Hz, asked for {sample_rate_hz} Hz")
    mono = audio.mean(axis=1)
    out = []
    for start, piece in zip(starts, pieces, strict=True):
        i0 = round(start * sample_rate_hz)
        n = round((piece.duration_s + TAIL_S) * sample_rate_hz)
        segment = mono[i0 : i0 + n]
        if segment.shape[0] < n:
            segment = np.pad(segment, (0, n - segment.shape[0]))
        out.append(np.ascontiguousarray(segment, dtype=np.float32))
    return out, mono.shape[0] / sample_rate_hz


# ---------------------------------------------------------------------------------------------
# Hydrogen kits


_ROLE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("hh_pedal", r"(hi.?hat|\bhh\b|\bhat\b).*(ped|\bpd\b|foot)|(ped|foot).*(hi.?hat|\bhh\b)"),
    ("hh_open", r"(hi.?hat|\bhh\b|\bhat\b|ohh).*(open|\bop\b|semi)|open.*(hi.?hat|\bhh\b|hat)"),
    ("hh_closed", r"hi.?hat|\bhh\b|\bhat\b|hihat|closehihat"),
    ("kick", r"kick|bass ?drum|\bbd\b|bassdrum|cajon thump"),
    ("clap", r"clap|snap"),
    ("stick", r"stick|rim"),
    ("snare", r"snare|\bsd\b|cajon slap"),
    ("tom_low", r"tom.*(low|floor|\blo\b)|floor ?tom"),
    ("tom_mid", r"tom.*mid"),
    ("tom_high", r"tom.*(hi|high)"),
    ("tom_mid", r"\btom"),
    ("ride_bell", r"ride.*(bell|cup)"),
    ("ride", r"ride"),
    ("crash", r"crash|cymbal|china|splash"),
    ("conga_high", r"(conga|bongo|djembe).*(hi|high|slap)"),
    ("conga_low", r"conga|bongo|djembe|drum"),
    ("shaker", r"shak|maraca"),
    ("tambourine", r"tamb"),
    ("cowbell", r"cowbell|agogo|block|clave|bell"),
)
_FALLBACK: dict[str, tuple[str, ...]] = {
    "kick": ("kick", "tom_low", "conga_low"),
    "snare": ("snare", "clap", "stick", "conga_high"),
    "clap": ("clap", "snare", "stick"),
    "stick": ("stick", "snare", "cowbell"),
    "hh_closed": ("hh_closed", "hh_pedal", "shaker", "hh_open", "ride", "tambourine"),
    "hh_pedal": ("hh_pedal", "hh_closed", "shaker"),
    "hh_open": ("hh_open", "hh_closed", "tambourine", "crash"),
    "tom_low": ("tom_low", "tom_mid", "conga_low", "kick"),
    "tom_mid": ("tom_mid", "tom_low", "tom_high", "conga_low"),
    "tom_high": ("tom_high", "tom_mid", "conga_high"),
    "crash": ("crash", "ride", "hh_open"),
    "ride": ("ride", "ride_bell", "hh_closed", "crash"),
    "ride_bell": ("ride_bell", "ride", "cowbell"),
    "tambourine": ("tambourine", "shaker", "hh_open"),
    "cowbell": ("cowbell", "ride_bell", "stick"),
    "conga_high": ("conga_high", "conga_low", "tom_high"),
    "conga_low": ("conga_low", "conga_high", "tom_low"),
    "shaker": ("shaker", "hh_closed", "tambourine"),
}
_GM_ROLE = {key: role for role, key in GM_DRUMS.items()}


def drum_role(name: str) -> str:
    """The role (``"kick"``, ``"snare"``, ``"hh_closed"``, …) of a kit instrument by its name."""
    lowered = name.lower()
    for role, pattern in _ROLE_PATTERNS:
        if re.search(pattern, lowered):
            return role
    return "other"


@dataclass(frozen=True)
class KitLayer:
    """One velocity layer: applies to velocities in [low, high] (0..1), ``audio`` is mono
    float32 at the kit's loaded rate, shape ``[samples]``."""

    low: float
    high: float
    gain: float
    audio: np.ndarray


@dataclass(frozen=True)
class KitInstrument:
    """One instrument of a kit with its role and velocity layers."""

    name: str
    role: str
    gain: float
    layers: tuple[KitLayer, ...]


@dataclass(frozen=True)
class LoadedKit:
    """A Hydrogen kit with its samples in memory at ``sample_rate_hz``."""

    name: str
    sample_rate_hz: int
    instruments: tuple[KitInstrument, ...]

    def by_role(self) -> dict[str, list[KitInstrument]]:
        """Role → instruments that play it."""
        table: dict[str, list[KitInstrument]] = {}
        for inst in self.instruments:
            table.setdefault(inst.role, []).append(inst)
        return table


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return child.text
    return None


def _float(text: str | None, default: float) -> float:
    try:
        return float(text) if text is not None else default
    except ValueError:
        return default


def _load_sample(path: Path, sample_rate_hz: int) -> np.ndarray | None:
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError):
        return None
    mono = audio.mean(axis=1)
    if mono.size == 0 or not np.any(mono):
        return None
    if rate != sample_rate_hz:
        g = gcd(int(rate), int(sample_rate_hz))
        mono = resample_poly(mono, sample_rate_hz // g, int(rate) // g).astype(np.float32)
    return mono


def load_drumkit(kit_dir: Path, sample_rate_hz: int) -> LoadedKit:
    """Read a Hydrogen kit (``drumkit.xml`` and its samples) into memory, resampled.

    Samples that are missing, empty or unreadable are skipped; so is an instrument left with
    no layer.

    Raises:
        ReservedSourceError: the kit is reserved.
        CorpusError: no ``drumkit.xml``, or no usable instrument.
    """
    check_allowed(kit_dir)
    try:
        root = ET.parse(kit_dir / "drumkit.xml").getroot()
    except (OSError, ET.ParseError) as exc:
        raise CorpusError(f"cannot read {kit_dir / 'drumkit.xml'}: {exc}") from exc
    instruments = []
    for element in root.iter():
        if _local(element.tag) != "instrument":
            continue
        name = (_child_text(element, "name") or "").strip()
        if not name or (_child_text(element, "isMuted") or "").strip() == "true":
            continue
        gain = _float(_child_text(element, "volume"), 1.0) * _float(
            _child_text(element, "gain"), 1.0
        )
        layers = []
        layer_elements = [e for e in element.iter() if _local(e.tag) == "layer"]
        if not layer_elements and _child_text(element, "filename"):
            layer_elements = [element]
        for layer in layer_elements:
            filename = _child_text(layer, "filename")
            if not filename:
                continue
            audio = _load_sample(kit_dir / filename.strip(), sample_rate_hz)
            if audio is None:
                continue
            layers.append(
                KitLayer(
                    low=_float(_child_text(layer, "min"), 0.0),
                    high=_float(_child_text(layer, "max"), 1.0),
                    gain=_float(_child_text(layer, "gain"), 1.0),
                    audio=audio,
                )
            )
        if layers:
            instruments.append(KitInstrument(name, drum_role(name), gain, tuple(layers)))
    if not instruments:
        raise CorpusError(f"Hydrogen kit {kit_dir} has no usable instrument")
    return LoadedKit(kit_dir.name, sample_rate_hz, tuple(instruments))


def render_drumkit(
    piece: Piece, kit: LoadedKit, rng: np.random.Generator
) -> tuple[np.ndarray, RenderStats]:
    """Play a groove (GM drum keys on its drum parts) on a Hydrogen kit.

    Each role is bound to one kit instrument for the whole piece (drawn with ``rng`` among
    those that play it, else the first available fallback role).

    Returns:
        Mono float32 audio, shape ``[round((duration_s + TAIL_S) * rate)]``, and the cost.
    """
    t_cpu = time.process_time()
    t0 = time.perf_counter()
    rate = kit.sample_rate_hz
    n = round((piece.duration_s + TAIL_S) * rate)
    out = np.zeros(n, dtype=np.float32)
    table = kit.by_role()
    chosen: dict[str, KitInstrument] = {}

    def instrument_for(role: str) -> KitInstrument:
        if role not in chosen:
            for candidate in (*_FALLBACK.get(role, (role,)), "other"):
                options = table.get(candidate)
                if options:
                    chosen[role] = options[rng.integers(len(options))]
                    break
            else:
                chosen[role] = kit.instruments[rng.integers(len(kit.instruments))]
        return chosen[role]

    for part in piece.parts:
        if not part.is_drum:
            continue
        for note in part.notes:
            inst = instrument_for(_GM_ROLE.get(note.pitch, "conga_high"))
            v = note.velocity / 127.0
            layers = [la for la in inst.layers if la.low <= v <= la.high] or [
                min(inst.layers, key=lambda la: min(abs(la.low - v), abs(la.high - v)))
            ]
            layer = layers[rng.integers(len(layers))]
            i0 = round(note.start_s * rate)
            if i0 >= n:
                continue
            chunk = layer.audio[: n - i0]
            out[i0 : i0 + chunk.shape[0]] += (inst.gain * layer.gain * v) * chunk
    stats = RenderStats(
        audio_s=n / rate,
        cpu_s=time.process_time() - t_cpu,
        wall_s=time.perf_counter() - t0,
        calls=1,
    )
    return out, stats
