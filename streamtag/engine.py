"""The engine: audio → frontend → window → model step → post-processing → estimate records.

One engine serves the daemon (``process``: hop by hop, any block sizes) and ``analyze``
(``analyze_blocks``: a file read block by block; the CNN windows of each chunk of hops in one
batch, then the LSTM over the chunk, its state carried on; memory bounded whatever the file's
length); their records are equal (the cornerstone test). Several streams (channel groups of
one input) each get their own frontend and LSTM state and go through the model in one batched
forward.

Latency, declared per stage: the frontend completes a frame when its last sample arrives; the
resampler (if the input rate differs from the model's) delays by ``frontend.latency_samples``;
the model needs nothing from the future. A record's ``t`` is the stream time [s] of the end of
the audio its hop describes, corrected for the resampler's delay.

With an ``embedding`` head, each stream also keeps histories of its non-silent hops (their sound
vectors for ``novelty``, their match vectors for the ``reference`` query with a reference
library; both derived from the model's window encoding, :mod:`streamtag.embedding`). Both are
computed when records are built, in hop order, by the same code for ``process`` and ``analyze``,
so they are equal too.

Entry after a pause: a silent hop (level below ``silence_db``) is a fresh start. It is stepped
from the fresh LSTM state and leaves the fresh state behind (:func:`run_hops`, the one place
this rule lives; both paths call it), and its frames are framed from a fresh pitch-class memory
(``process``: ``MelFrontend.restart_pitch_memory`` before the hop's rows; ``analyze``: the same
restart applied to each frontend run's complete hops, ``restart_pitch_rows`` carrying the
memory from run to run; pinned equal by the tests).
Music after a pause of a hop or more therefore starts as a fresh start on it would, whatever
the model heard before the pause and however long the pause was.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from streamtag.checkpoint import Checkpoint
from streamtag.config import NoveltyConfig, ReferenceConfig, TempoConfig
from streamtag.embedding import HopHistory, NoveltyMeter, hops_for, match_vectors
from streamtag.errors import LibraryError
from streamtag.frontend import (
    FAST_NAMES,
    Frames,
    MelFrontend,
    PitchCarry,
    downmix,
    restart_pitch_rows,
)
from streamtag.model import ArchConfig, HeadSpec, LstmState, StreamTagModel
from streamtag.publish.wire import (
    EMBEDDING_VECTOR,
    EMBEDDING_XY,
    KEY_NOVELTY,
    KEY_REFERENCE,
    KEY_TEMPO,
    LEVEL_FLOOR_DB,
    QUADRANTS,
    TEMPO_BPM,
    TEMPO_CONFIDENCE,
    TEMPO_LAST_BEAT_T,
)
from streamtag.references import ReferenceLibrary, ReferenceMatcher
from streamtag.tempo import ONSET_DELAY_FRAMES, BeatTracker, TempoFrames, TempoParams

ONSET = FAST_NAMES.index("onset")
LOUDNESS = FAST_NAMES.index("loudness")


def quadrant(valence: float, arousal: float) -> int:
    """Thayer quadrant of a (valence, arousal) point; zero counts as positive."""
    if arousal >= 0:
        return 1 if valence >= 0 else 2
    return 3 if valence < 0 else 4


@dataclass(frozen=True)
class StreamSpec:
    """A named stream: the input channels (0-based) mixed into it; None means all."""

    name: str = "main"
    channels: tuple[int, ...] | None = None


@dataclass
class FastFrames:
    """Fast-lane values of one stream: t [N] stream times [s], values [N, 4] (FAST_NAMES)."""

    stream: str
    t: np.ndarray
    values: np.ndarray

    @property
    def names(self) -> tuple[str, ...]:
        return FAST_NAMES


@dataclass
class Beat:
    """A beat of one stream: its counter (1 for the first after a reset), stream time [s]
    and the tempo [BPM] when it was reported."""

    stream: str
    count: int
    t: float
    bpm: float


@dataclass
class EngineStep:
    """What one ``process`` call produced."""

    records: list[dict] = field(default_factory=list)
    fast: list[FastFrames] = field(default_factory=list)
    beats: list[Beat] = field(default_factory=list)


def _round(x: float) -> float:
    # JSON consumers get 6 significant digits; more would only show float32 noise.
    return float(f"{x:.6g}")


def head_section(spec: HeadSpec, values: np.ndarray) -> dict:
    """One head's part of the estimate record from its activated outputs [K]."""
    if spec.kind == "multiclass":
        top = int(np.argmax(values))
        return {
            "top": spec.labels[top],
            "confidence": _round(values[top]),
            "probs": {label: _round(v) for label, v in zip(spec.labels, values, strict=True)},
        }
    if spec.kind == "embedding":
        # The engine adds "xy" for the head named embedding (it needs the checkpoint's projection).
        return {EMBEDDING_VECTOR: [_round(v) for v in values]}
    if spec.kind == "regression" and spec.range is not None:
        values = np.clip(values, *spec.range)
    section: dict = {label: _round(v) for label, v in zip(spec.labels, values, strict=True)}
    if spec.name == "emotion" and {"valence", "arousal"} <= section.keys():
        q = quadrant(section["valence"], section["arousal"])
        section["quadrant"] = q
        section["label"] = QUADRANTS[q][0]
    return section


def hop_windows(mel: np.ndarray, arch: ArchConfig, silence: np.ndarray) -> np.ndarray:
    """The model's input windows for every complete hop of a mel sequence.

    mel: [N, n_features] frames from the start of a recording. silence: [n_features], the frame
    the context is padded with before the recording starts. Returns a read-only view
    [N // hop_frames, n_features, window_frames]: window k is what the streaming engine holds at
    hop k. The trainer uses this too, so training windows are exactly the served ones.
    """
    hop, w = arch.hop_frames, arch.window_frames
    n_hops = mel.shape[0] // hop
    pad = np.broadcast_to(silence, (w - hop, mel.shape[1]))
    padded = np.concatenate([pad, mel[: n_hops * hop]])
    return np.lib.stride_tricks.sliding_window_view(padded, w, axis=0)[::hop][:n_hops]


def run_hops(
    model: StreamTagModel, feats: torch.Tensor, state: LstmState | None, silent: np.ndarray
) -> tuple[dict[str, torch.Tensor], LstmState | None]:
    """The LSTM and heads over consecutive hops, with the engine's rule for the state.

    feats: ``model.encode`` outputs [B, S, F] of S consecutive hops of B streams. state: the
    state before the first of them (None: fresh). silent: [B, S] bool, the hops' ``silent``
    flags. Returns ({head: [B, S, K]}, the state after the last hop; None when fresh).

    The rule: a silent hop is stepped from the fresh state, and the state after it is the fresh
    state. Without it the state carried what the model made of the silence (seconds of it drove
    the bundled model's state to "trumpet" at 0.8-0.9, which took ~5 s of violin to undo), so
    live estimates after a pause differed from ``analyze`` of the music alone. Runs of hops with
    no silent stream go through the LSTM in one call; single hops take ``step_features``'s
    one-step path (equal outputs, ~1e-6).
    """
    s = silent.shape[1]
    outs: list[dict[str, torch.Tensor]] = []
    i = 0
    while i < s:
        j = i + 1
        if not silent[:, i].any():
            while j < s and not silent[:, j].any():
                j += 1
        quiet = silent[:, i]
        # Silent streams' rows of the state: fresh before the hop and after it.
        keep = None if not quiet.any() or quiet.all() else torch.from_numpy(~quiet)[None, :, None]
        if quiet.all():
            state = None
        elif keep is not None and state is not None:
            state = LstmState(state.h * keep, state.c * keep)
        if j - i == 1:
            out, state = model.step_features(feats[:, i], state)
            out = {k: v[:, None] for k, v in out.items()}
        else:
            out, state = model.sequence_features(feats[:, i:j], state)
        if quiet.all():
            state = None
        elif keep is not None:
            state = LstmState(state.h * keep, state.c * keep)
        outs.append(out)
        i = j
    if len(outs) == 1:
        return outs[0], state
    return {k: torch.cat([o[k] for o in outs], dim=1) for k in outs[0]}, state


class Engine:
    """Turns audio into estimate records, one per hop, for one or more streams.

    checkpoint: the loaded model and its frontend parameters.
    input_rate_hz: the rate of the audio fed in (resampled to the model rate if different).
    streams: channel groups; default one stream named ``stream`` mixing all channels.
    silence_db: hops whose level is below this [dBFS] are marked ``silent``.
    fast_lane: also return the frame-rate fast-lane values (the daemon's OSC fast lane).
    novelty: novelty windows (default: the config defaults); used with an embedding head.
    reference: query window and known_distance override for ``library``.
    library: reference library to match every hop against (needs an embedding head and the
        checkpoint it was made with, else LibraryError; also if no known_distance is set in
        ``reference`` nor calibrated in the checkpoint).
    tempo: tempo and beat tracking (default: the config defaults, on): each record gets a
        ``tempo`` section and ``process`` returns the beats (``EngineStep.beats``).
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        input_rate_hz: int | None = None,
        streams: list[StreamSpec] | None = None,
        silence_db: float = -60.0,
        fast_lane: bool = False,
        novelty: NoveltyConfig | None = None,
        reference: ReferenceConfig | None = None,
        library: ReferenceLibrary | None = None,
        tempo: TempoConfig | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model.eval()
        self.arch = self.model.arch
        self.fe_config = checkpoint.frontend
        self.input_rate_hz = input_rate_hz or self.fe_config.sample_rate_hz
        self.streams = streams or [StreamSpec()]
        self.silence_db = silence_db
        # One frontend frames every stream: one FFT batch per block, whatever the stream count.
        # Feature rows are computed once per hop, for the hop's frames (see defer_rows).
        tempo = tempo or TempoConfig()
        # The tracker reads the fast lane's onset strength: computed whenever tempo is on.
        self._frontend = MelFrontend(self.fe_config, self.input_rate_hz,
                                     fast_lane or tempo.enabled,
                                     channels=len(self.streams), defer_rows=True)
        self.fast_lane = fast_lane
        self.frame_s = self.fe_config.hop_length / self.fe_config.sample_rate_hz
        params = TempoParams(self.fe_config.frame_rate_hz, tempo.min_bpm, tempo.max_bpm,
                             tempo.memory_s, self.fe_config.sample_rate_hz, self.fe_config.n_fft)
        self._trackers = [BeatTracker(params) for _ in self.streams] if tempo.enabled else []
        self._silence = self._frontend.silence_frame()
        fe = self.fe_config
        self.hop_s = self.arch.hop_frames * fe.hop_length / fe.sample_rate_hz
        self.latency_s = self._frontend.latency_samples / self.fe_config.sample_rate_hz
        b, w, m = len(self.streams), self.arch.window_frames, self.arch.n_features
        # Sized up front: each stream's last `window_frames` frames, and the hop's energies
        # and power spectra (its feature rows come from these when the hop completes).
        self._window = np.empty((b, w, m), np.float32)
        self._energy = np.zeros((b, self.arch.hop_frames))
        self._power = np.zeros((b, self.arch.hop_frames, fe.n_freqs), np.float32)
        self._collect: list[np.ndarray] | None = None  # match vectors, for reference_vectors
        self._init_embedding(novelty or NoveltyConfig(), reference or ReferenceConfig(), library)
        self.reset()

    def _init_embedding(self, novelty: NoveltyConfig, reference: ReferenceConfig,
                        library: ReferenceLibrary | None) -> None:
        ck = self.checkpoint
        self._emb_head = ck.embedding_head
        meta = ck.embedding if self._emb_head is not None else None
        self.projection = meta.projection if meta is not None else None
        self._match = meta.match if meta is not None else None
        self._sound = meta.sound if meta is not None else None
        self.matcher: ReferenceMatcher | None = None
        self._queries: list[HopHistory] = []
        self._novelty: list[NoveltyMeter] = []
        if self._emb_head is None:
            if library is not None:
                raise LibraryError(f"checkpoint {ck.id} has no embedding head: a reference "
                                   "library needs a model with one")
            return
        window = hops_for(reference.window_s, self.hop_s)
        self._queries = [HopHistory(self.match_dims, window) for _ in self.streams]
        self._novelty = [
            NoveltyMeter(self.model.sound_features, hops_for(novelty.recent_s, self.hop_s),
                         hops_for(novelty.memory_s, self.hop_s),
                         hops_for(novelty.baseline_s, self.hop_s) if novelty.baseline_s else 0)
            for _ in self.streams
        ]
        if library is None:
            return
        library.check_checkpoint(ck.weights_sha256, self.match_id)
        if library.dims != self.match_dims:
            raise LibraryError(f"reference library holds {library.dims}-dim vectors, checkpoint "
                               f"{ck.id} matches {self.match_dims}-dim ones: add the "
                               "references again with this checkpoint")
        known = reference.known_distance
        if known is None and ck.embedding is not None:
            known = ck.embedding.known_distance
        if known is None:
            raise LibraryError(
                f"checkpoint {ck.id} has no calibrated known_distance: set "
                "reference.known_distance in the config (a match distance, 0..2)")
        self.matcher = ReferenceMatcher(library, window, known)

    @property
    def match_dims(self) -> int:
        """Size of the match vectors reference matching compares (streamtag.embedding)."""
        return self._match.dims if self._match is not None else self.model.encoded_features

    @property
    def match_id(self) -> str:
        """Which map makes this checkpoint's match vectors: ``full`` (the unit window encoding
        as is) or the 12-digit hash of its stored ``MatchProjection``. A reference library
        records it, so references and queries are always made alike."""
        return "full" if self._match is None else self._match.id

    def new_library(self) -> ReferenceLibrary:
        """An empty reference library for this checkpoint's match vectors."""
        return ReferenceLibrary(self.checkpoint.weights_sha256, self.match_dims, self.hop_s,
                                match=self.match_id)

    def reference_vectors(self, signal: np.ndarray) -> np.ndarray:
        """The match vectors [k, match_dims] (float32) of ``signal``'s non-silent hops, in
        playing order, as the running engine computes them (first stream): what ``streamtag
        reference add`` stores. Needs an embedding head. Leaves the engine reset."""
        return self.analyze_with_matches(signal)[1]

    def analyze_with_matches(self, signal: np.ndarray) -> tuple[list[dict], np.ndarray]:
        """``analyze``'s records, and the match vectors [k, match_dims] (float32) of the first
        stream's k non-silent hops in order (see ``reference_vectors``)."""
        if self._emb_head is None:
            raise LibraryError(f"checkpoint {self.checkpoint.id} has no embedding head")
        self._collect = []
        try:
            records = self.analyze(signal)
            rows = self._collect
        finally:
            self._collect = None
        return records, np.asarray(rows, np.float32).reshape(-1, self.match_dims)

    # -- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all audio and the LSTM state: the next sample is stream time 0."""
        self._frontend.reset()
        self._window[:] = self._silence
        self._filled = 0  # frames of the current hop received so far
        self._energy[:] = 0.0
        self.state: LstmState | None = None
        self.seq = 0
        for h in [*self._queries, *self._novelty, *self._trackers]:
            h.reset()

    @property
    def tempo(self) -> bool:
        """Tempo and beat tracking is on."""
        return bool(self._trackers)

    # -- streaming ---------------------------------------------------------------------------
    def input_needed(self, frames: int = 1) -> int:
        """Input samples [at input_rate_hz] still to come before the next ``frames`` frames
        complete: a live caller has no work before, and feeding exactly this many ends on the
        last of them."""
        return max(1, self._frontend.input_needed(frames))

    @property
    def stream_time_s(self) -> float:
        """Stream time [s] of the newest frame processed (its end, less the resampler's delay)."""
        return self._frontend.frames_out * self.frame_s - self.latency_s

    @property
    def frames_to_hop(self) -> int:
        """Frames still to come before the next hop completes (1..hop_frames)."""
        return self.arch.hop_frames - self._filled

    def process(self, block: np.ndarray, arrival: float | None = None) -> EngineStep:
        """Feed a block [n] or [n, channels] at ``input_rate_hz``; return completed hops.

        arrival: ``time.perf_counter()`` when the block's last sample arrived (for
        ``latency_ms``); default now.
        """
        arrival = time.perf_counter() if arrival is None else arrival
        frames = self._frontend.process_channels(self._stream_block(block))
        out = EngineStep(fast=self._fast(frames, self._frontend.frames_out - len(frames[0])))
        n = len(frames[0])
        i = 0
        hop = self.arch.hop_frames
        while i < n:
            take = min(hop - self._filled, n - i)
            for b, f in enumerate(frames):
                self._energy[b, self._filled:self._filled + take] = f.energy[i:i + take]
                self._power[b, self._filled:self._filled + take] = f.power[i:i + take]
            for b, tracker in enumerate(self._trackers):
                fast = frames[b].fast[i:i + take]
                power = frames[b].power[i:i + take]
                out.beats += self._beats(
                    b, tracker.process(fast[:, ONSET], fast[:, LOUDNESS], power),
                    tracker.frames_seen - take)
            self._filled += take
            i += take
            if self._filled == hop:
                levels = [self._level_db(e) for e in self._energy]
                silent = np.array([level < self.silence_db for level in levels])  # [B]
                # A silent hop is framed as a fresh start too (see run_hops).
                self._frontend.restart_pitch_memory(silent)
                self._slide(self._frontend.rows(self._power))
                out.records += self._emit(arrival, levels, silent)
                self._filled = 0
        return out

    def _slide(self, rows: np.ndarray) -> None:
        """Append a hop's feature rows [B, hop, M] to the windows, dropping the oldest."""
        w, hop = self.arch.window_frames, rows.shape[1]
        if hop >= w:
            self._window[:] = rows[:, hop - w:]
            return
        self._window[:, : w - hop] = self._window[:, hop:]
        self._window[:, w - hop:] = rows

    def _stream_block(self, block: np.ndarray) -> np.ndarray:
        """Input block [n] or [n, channels] → [n, streams], each column one stream's mono mix."""
        block = np.asarray(block, dtype=np.float32)
        if len(self.streams) == 1 and self.streams[0].channels is None:
            return downmix(block)[:, None]
        return np.stack([self._select(block, s) for s in self.streams], axis=1)

    def _select(self, block: np.ndarray, stream: StreamSpec) -> np.ndarray:
        ch = list(stream.channels) if stream.channels is not None else None
        if block.ndim == 1 and ch not in (None, [0]):
            raise ValueError(f"stream {stream.name!r} wants channels {ch} of a mono input")
        return downmix(block, ch if block.ndim == 2 else None)

    def _emit(self, arrival: float, levels: list[float], silent: np.ndarray) -> list[dict]:
        """Records of the hop just completed; levels [B] its level_db, silent [B] its flags."""
        windows = torch.from_numpy(self._window.transpose(0, 2, 1).copy())  # [B, M, W]
        with torch.inference_mode():
            feats = self.model.encode(windows)
            outputs, self.state = run_hops(self.model, feats[:, None], self.state,
                                           silent[:, None])
        values = {k: v[:, 0].numpy() for k, v in outputs.items()}
        encoded = feats.numpy()
        t = self._hop_end_time(self.seq)
        records = [
            self._record(self.seq, t, b, {k: v[b] for k, v in values.items()}, levels[b], 0.0,
                         encoded[b], self._live_tempo(b))
            for b in range(len(self.streams))
        ]
        latency_ms = round((time.perf_counter() - arrival) * 1e3, 3)
        for r in records:
            r["latency_ms"] = latency_ms
        self.seq += 1
        return records

    def _beats(self, b: int, tf: TempoFrames, first_frame: int) -> list[Beat]:
        """Stream ``b``'s beats in a tracker output whose first frame is ``first_frame``."""
        bpm = tf.bpm[tf.frames - first_frame]  # the tempo at each beat's frame
        return [Beat(self.streams[b].name, c, self._beat_time(p), _round(x))
                for p, c, x in zip(tf.beats.tolist(), tf.counts.tolist(), bpm.tolist(),
                                   strict=True)]

    def _live_tempo(self, b: int) -> dict | None:
        if not self._trackers:
            return None
        tr = self._trackers[b]
        return self._tempo_section(tr.bpm, tr.confidence, tr.last_beat)

    def _beat_time(self, position: float) -> float:
        """A beat's position [fractional frame index] → its stream time [s]: the end of that
        frame less the onset's mean delay in it and the resampler's delay."""
        return round((position + 1.0 - ONSET_DELAY_FRAMES) * self.frame_s - self.latency_s, 6)

    def _tempo_section(self, bpm: float, confidence: float, last_beat: float | None) -> dict:
        return {TEMPO_BPM: _round(bpm), TEMPO_CONFIDENCE: _round(confidence),
                TEMPO_LAST_BEAT_T: None if last_beat is None else self._beat_time(last_beat)}

    def _fast(self, frames: list[Frames], first_index: int) -> list[FastFrames]:
        if not self.fast_lane or not len(frames[0]):
            return []
        frame_s = self.fe_config.hop_length / self.fe_config.sample_rate_hz
        t = np.arange(first_index + 1, first_index + 1 + len(frames[0]), dtype=np.float64)
        t *= frame_s
        t -= self.latency_s
        return [FastFrames(s.name, t, f.fast) for s, f in zip(self.streams, frames, strict=True)]

    # -- offline -----------------------------------------------------------------------------
    def analyze(
        self, signal: np.ndarray, progress: Callable[[int, int], None] | None = None
    ) -> list[dict]:
        """Records of a whole signal [n] or [n, channels], from a fresh state.

        ``analyze_blocks`` with the signal as one block. progress(done_hops, total_hops) is
        called as the model runs. Leaves the engine reset.
        """
        total = self._frontend_hops(np.shape(signal)[0])
        records: list[dict] = []
        for chunk in self.analyze_blocks([signal]):
            records += chunk
            if progress is not None:
                progress(len(records) // len(self.streams), total)
        return records

    def analyze_blocks(self, blocks: Iterable[np.ndarray]) -> Iterator[list[dict]]:
        """Records of a signal that arrives as consecutive blocks [n] or [n, channels] (any
        sizes: a file read block by block, standard input), from a fresh state; yields them a
        chunk of hops at a time, in order.

        The offline fast path: the CNN windows of a chunk of hops go through the model in one
        batch and the LSTM runs over the chunk (``run_hops``: silent hops from the fresh
        state), its state carried to the next. Each frontend run's complete hops get their
        levels, their pitch-class restarts (``restart_pitch_rows``, its carry passed on to the
        next run) and, with tempo on, their tempo sections (the tracker's streaming
        ``process``, equal to its offline twin). The records are equal to ``process`` fed the
        same audio in any blocks, and the same whatever the block sizes here (the frontend's
        runs and the model's chunks start at the same frames and hops). Memory is bounded by
        the block size, the frontend's run and the model's chunk, not by the signal's length.
        A trailing partial hop is not reported. ``latency_ms`` is the compute time per hop of
        the record's chunk. Leaves the engine reset.
        """
        self.reset()
        a = self.arch
        hop, w, n_streams = a.hop_frames, a.window_frames, len(self.streams)
        # Chunks of hops bound memory (the first conv layer's activations dominate: ~64 MB per
        # chunk); the LSTM state carries across chunks.
        chunk = max(1, min(256, 2**24 // (n_streams * a.window_frames * a.n_features
                                          * a.channels[0])))
        context = w - hop  # frames of the previous hops each window also holds
        # Per stream: the last `context` frames before the hops not yet run (silence before the
        # start), then the frames of the complete hops not yet run (pitch-class rows restarted),
        # their levels [dB] and tempo sections.
        rows = np.broadcast_to(self._silence, (n_streams, context, a.n_features)).copy()
        levels = np.zeros((n_streams, 0))
        tempi: list[list[dict]] = [[] for _ in range(n_streams)]
        # Per stream: the frames of the hop not yet complete (rows as framed) and their energy.
        partial = np.zeros((n_streams, 0, a.n_features), np.float32)
        energy = np.zeros((n_streams, 0))
        carries: list[PitchCarry | None] = [None] * n_streams
        last_beats: list[float | None] = [None] * n_streams
        frames_seen = 0
        state: LstmState | None = None
        spent = 0.0  # compute time [s] since the last yield
        hop_index = 0
        runs = self._runs_ahead(self._stream_block(x) for x in blocks)
        try:
            started = time.perf_counter()
            for run in runs:
                partial = np.concatenate([partial, np.stack([f.mel for f in run])], axis=1)
                energy = np.concatenate([energy, np.stack([f.energy for f in run])], axis=1)
                for b, tracker in enumerate(self._trackers):
                    fast = run[b].fast
                    sections, last_beats[b] = self._tempo_sections(
                        tracker.process(fast[:, ONSET], fast[:, LOUDNESS], run[b].power),
                        frames_seen,
                        frames_seen // hop, last_beats[b])
                    tempi[b] += sections
                frames_seen += len(run[0])
                n = partial.shape[1] // hop  # hops this run completed
                if n:
                    rows, levels = self._complete_hops(rows, levels, partial, energy, n, carries)
                    partial, energy = partial[:, n * hop:], energy[:, n * hop:]
                while rows.shape[1] - context >= chunk * hop:
                    records, state = self._analyze_chunk(rows, levels, tempi, chunk, hop_index,
                                                         state, started, spent)
                    rows, levels = rows[:, chunk * hop:], levels[:, chunk:]
                    tempi = [t[chunk:] for t in tempi]
                    hop_index += chunk
                    yield records
                    started, spent = time.perf_counter(), 0.0
                spent += time.perf_counter() - started
                started = time.perf_counter()
            n = levels.shape[1]
            if n:
                yield self._analyze_chunk(rows, levels, tempi, n, hop_index, state, started,
                                          spent)[0]
        finally:
            runs.close()  # stops the frontend's thread before the frontend is reset
            self.reset()

    def _complete_hops(self, rows: np.ndarray, levels: np.ndarray, partial: np.ndarray,
                       energy: np.ndarray, n: int, carries: list[PitchCarry | None]
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Rows [B, ·, M] and levels [B, ·] with the n complete hops at the start of partial
        [B, ≥ n·hop, M] (energy [B, ≥ n·hop]) appended: each hop's level, and its frames'
        pitch-class rows restarted where the hop is silent (a silent hop is framed as a fresh
        start too, see ``run_hops``). carries: each stream's ``restart_pitch_rows`` carry,
        updated."""
        hop = self.arch.hop_frames
        new = np.array([[self._level_db(e) for e in energy[b, : n * hop].reshape(n, hop)]
                        for b in range(len(self.streams))])  # [B, n]
        restarted = []
        for b in range(len(self.streams)):
            restarts = np.zeros(n * hop, bool)
            restarts[::hop] = new[b] < self.silence_db
            mel, carries[b] = restart_pitch_rows(partial[b, : n * hop], restarts,
                                                 self.fe_config, carries[b])
            restarted.append(mel)
        return (np.concatenate([rows, np.stack(restarted)], axis=1),
                np.concatenate([levels, new], axis=1))

    def _runs_ahead(self, blocks: Iterator[np.ndarray]) -> Iterator[list[Frames]]:
        """The frontend's offline runs of ``blocks``, made in a thread of their own up to two
        runs ahead of the caller: decoding, resampling and framing (numpy and torch, which
        release the GIL) overlap the model's work on the other core. The same runs, in the same
        order, as calling the frontend directly; an exception in the thread is raised here."""
        ahead: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()
        done = object()

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    ahead.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            runs = self._frontend.process_offline_blocks(blocks)
            try:
                for run in runs:
                    if not put(run):
                        return
                put(done)
            except BaseException as e:  # handed to the caller, raised there
                put(e)
            finally:
                runs.close()

        thread = threading.Thread(target=produce, name="streamtag-frontend", daemon=True)
        thread.start()
        try:
            while True:
                item = ahead.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            stop.set()
            thread.join()

    def _analyze_chunk(self, rows: np.ndarray, levels: np.ndarray, tempi: list[list[dict]],
                       n: int, first: int, state: LstmState | None, started: float,
                       spent: float) -> tuple[list[dict], LstmState | None]:
        """Records of the n hops from hop ``first``: rows [B, context + ≥ n·hop, M] (the
        context frames before the hops, then theirs), levels [B, ≥ n] their level_db, tempi
        per stream their tempo sections (empty lists with tempo off)."""
        a = self.arch
        hop, w = a.hop_frames, a.window_frames
        # Window k: the w frames ending with hop k's last, as the streaming engine holds them.
        view = np.lib.stride_tricks.sliding_window_view(rows[:, : w - hop + n * hop], w,
                                                        axis=1)[:, ::hop]  # [B, n, M, W]
        # Laid out frame by frame ([B, n, W, M] in memory, M fastest), as the windows have
        # always reached the model offline: the CNN's float32 sums depend on the layout.
        frames = np.ascontiguousarray(view.transpose(0, 1, 3, 2), dtype=np.float32)
        windows = torch.from_numpy(frames).permute(0, 1, 3, 2)  # [B, n, M, W]
        silent = levels[:, :n] < self.silence_db  # [B, n]
        with torch.inference_mode():
            feats = self.model.encode_sequence(windows)
            out, state = run_hops(self.model, feats, state, silent)
        values = {k: v.numpy() for k, v in out.items()}
        encoded = feats.numpy() if self._emb_head is not None else None
        latency_ms = (spent + time.perf_counter() - started) * 1e3 / n
        records = []
        for k in range(n):
            t = self._hop_end_time(first + k)
            for b in range(len(self.streams)):
                records.append(self._record(
                    first + k, t, b, {h: v[b, k] for h, v in values.items()},
                    float(levels[b, k]), latency_ms,
                    None if encoded is None else encoded[b, k],
                    tempi[b][k] if self._trackers else None))
        return records, state

    def _frontend_hops(self, n_input: int) -> int:
        """Complete hops in n_input samples at the input rate (what ``analyze`` reports)."""
        fe = self.fe_config
        n = n_input
        if self.input_rate_hz != fe.sample_rate_hz:
            n = -(-n_input * fe.sample_rate_hz // self.input_rate_hz)  # resampler outputs
        return (n // fe.hop_length) // self.arch.hop_frames

    def _tempo_sections(self, tf: TempoFrames, first_frame: int, first_hop: int,
                        last_beat: float | None) -> tuple[list[dict], float | None]:
        """The tempo sections of the hops that end in a tracker output (``process`` of the
        frames from ``first_frame``), from hop ``first_hop`` on (the first not yet given one):
        each the state after the hop's last frame, as ``process`` reports it. last_beat: the
        last beat reported before first_frame (None: none yet). Returns the sections and the
        last beat reported by the output's end."""
        hop = self.arch.hop_frames
        # [n] each hop's last frame (frame index from the start)
        ends = np.arange(first_hop + 1, (first_frame + len(tf)) // hop + 1) * hop - 1
        # Beats reported by each hop's end: how many, so the last is at index count - 1.
        reported = np.searchsorted(tf.frames, ends, side="right")
        sections = [self._tempo_section(float(tf.bpm[e - first_frame]),
                                        float(tf.confidence[e - first_frame]),
                                        float(tf.beats[r - 1]) if r else last_beat)
                    for e, r in zip(ends.tolist(), reported.tolist(), strict=True)]
        return sections, float(tf.beats[-1]) if len(tf.beats) else last_beat

    # -- records -----------------------------------------------------------------------------
    def _hop_end_time(self, k: int) -> float:
        return (k + 1) * self.hop_s - self.latency_s

    def _level_db(self, energy: np.ndarray) -> float:
        ms = float(np.mean(energy))
        # −160…0 dBFS as documented: a float file above full scale (±1) would read above 0.
        return min(0.0, max(LEVEL_FLOOR_DB, 10 * math.log10(ms))) if ms > 0 else LEVEL_FLOOR_DB

    def _record(self, seq: int, t: float, b: int, values: dict[str, np.ndarray],
                level_db: float, latency_ms: float, encoded: np.ndarray | None,
                tempo: dict | None = None) -> dict:
        """One stream's record of hop ``seq``; encoded: the hop's window encoding [F]
        (``model.encode``; needed with an embedding head, for novelty and references); tempo:
        its tempo section (with tempo tracking)."""
        rec: dict = {
            "seq": seq,
            "t": round(t, 6),
            "stream": self.streams[b].name,
            "wall": time.time(),
            "latency_ms": round(latency_ms, 3),
            "level_db": round(level_db, 2),
            "silent": level_db < self.silence_db,
        }
        for spec in self.model.heads:
            rec[spec.name] = head_section(spec, values[spec.name])
        if self._emb_head is not None:
            assert encoded is not None
            self._embedding_fields(rec, b, values[self._emb_head.name], encoded)
        if tempo is not None:
            rec[KEY_TEMPO] = tempo
        return rec

    def _embedding_fields(self, rec: dict, b: int, emb: np.ndarray, encoded: np.ndarray) -> None:
        """Add embedding.xy, novelty and reference to a record; feed the stream's histories."""
        name = self._emb_head.name  # type: ignore[union-attr]
        if self.projection is not None:
            x, y = self.projection.project(emb)
            rec[name] = {EMBEDDING_XY: [_round(x), _round(y)], **rec[name]}
        queries = self._queries[b]
        if rec["silent"]:
            rec[KEY_NOVELTY] = 0.0
        else:
            sound_dims = self.model.sound_features
            # Match vectors only when something reads them: the matcher, or reference_vectors.
            collect = self._collect if b == 0 else None
            if self.matcher is not None or collect is not None:
                match = match_vectors(encoded, sound_dims, self.arch.n_chroma, self._match)
                queries.push(match)
                if collect is not None:
                    collect.append(match)
            sound = encoded[:sound_dims]
            if self._sound is not None:
                sound = self._sound.apply(sound)
            rec[KEY_NOVELTY] = _round(self._novelty[b].push(sound))
        if self.matcher is not None:
            rec[KEY_REFERENCE] = self.matcher.match(
                queries.last(self.matcher.window_hops) if len(queries) else None)
