"""The engine: audio → frontend → window → model step → post-processing → estimate records.

One engine serves the daemon (``process``: hop by hop, any block sizes) and ``analyze``
(``analyze``: all CNN windows of a file in one batch, then the LSTM over the sequence); their
records are equal (the cornerstone test). Several streams (channel groups of one input) each get
their own frontend and LSTM state and go through the model in one batched forward.

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
restart applied to the whole file's rows, ``restart_pitch_rows``; pinned equal by the tests).
Music after a pause of a hop or more therefore starts as a fresh start on it would, whatever
the model heard before the pause and however long the pause was.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from streamtag.checkpoint import Checkpoint
from streamtag.config import NoveltyConfig, ReferenceConfig, TempoConfig
from streamtag.embedding import HopHistory, NoveltyMeter, hops_for, match_vectors
from streamtag.errors import LibraryError
from streamtag.frontend import FAST_NAMES, Frames, MelFrontend, downmix, restart_pitch_rows
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
                             tempo.memory_s)
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
                out.beats += self._beats(b, tracker.process(fast[:, ONSET], fast[:, LOUDNESS]),
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

        Equal to ``process`` fed the same audio in any blocks (the CNN windows are batched and
        the LSTM runs over the whole sequence). A trailing partial hop is not reported. Leaves
        the engine reset. progress(done_hops, total_hops) is called as the model runs.
        """
        self.reset()
        start = time.perf_counter()
        hop = self.arch.hop_frames
        mels, level_rows, tempi = [], [], []
        for b, f in enumerate(self._frontend.process_offline_channels(self._stream_block(signal))):
            n = f.mel.shape[0] // hop
            level_rows.append([self._level_db(e) for e in f.energy[: n * hop].reshape(n, hop)])
            # A silent hop is framed as a fresh start too: its pitch-class memory restarts.
            restarts = np.zeros(n * hop, bool)
            restarts[::hop] = np.asarray(level_rows[-1]) < self.silence_db
            mel, _ = restart_pitch_rows(f.mel[: n * hop], restarts, self.fe_config)
            mels.append(hop_windows(mel, self.arch, self._silence))  # [S, M, W]
            if self._trackers:
                tempi.append(self._tempo_sections(
                    self._trackers[b].process_offline(f.fast[:, ONSET], f.fast[:, LOUDNESS]),
                    mels[-1].shape[0]))
        n_hops = mels[0].shape[0]
        if n_hops == 0:
            return []
        levels = np.array(level_rows)  # [B, S]
        silent = levels < self.silence_db
        windows = torch.from_numpy(np.stack(mels).astype(np.float32))  # [B, S, M, W]
        values: dict[str, np.ndarray] = {}
        encodings: list[np.ndarray] = []  # [B, chunk, F] each, for novelty and references
        state = None
        # Chunks of hops bound memory (the first conv layer's activations dominate: ~64 MB per
        # chunk); the LSTM state carries across chunks.
        a = self.arch
        chunk = max(1, min(256, 2**24 // (len(self.streams) * a.window_frames * a.n_features
                                          * a.channels[0])))
        with torch.inference_mode():
            for i in range(0, n_hops, chunk):
                feats = self.model.encode_sequence(windows[:, i:i + chunk])
                out, state = run_hops(self.model, feats, state, silent[:, i:i + chunk])
                if self._emb_head is not None:
                    encodings.append(feats.numpy())
                for k, v in out.items():
                    values.setdefault(k, []).append(v.numpy())  # type: ignore[arg-type]
                if progress is not None:
                    progress(min(i + chunk, n_hops), n_hops)
        values = {k: np.concatenate(v, axis=1) for k, v in values.items()}
        encoded = np.concatenate(encodings, axis=1) if encodings else None
        latency_ms = (time.perf_counter() - start) * 1e3 / n_hops
        records = []
        for k in range(n_hops):
            t = self._hop_end_time(k)
            for b in range(len(self.streams)):
                records.append(self._record(k, t, b, {h: v[b, k] for h, v in values.items()},
                                            float(levels[b, k]), latency_ms,
                                            None if encoded is None else encoded[b, k],
                                            tempi[b][k] if tempi else None))
        self.reset()
        return records

    def _tempo_sections(self, tf: TempoFrames, n_hops: int) -> list[dict]:
        """Each hop's tempo section from a whole signal's tracker output: the state after the
        hop's last frame, as ``process`` reports it."""
        hop = self.arch.hop_frames
        ends = np.arange(1, n_hops + 1) * hop - 1  # [n_hops] each hop's last frame
        # Beats reported by each hop's end: how many, so the last is at index count - 1.
        reported = np.searchsorted(tf.frames, ends, side="right")
        return [self._tempo_section(float(tf.bpm[e]), float(tf.confidence[e]),
                                    float(tf.beats[r - 1]) if r else None)
                for e, r in zip(ends.tolist(), reported.tolist(), strict=True)]

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
