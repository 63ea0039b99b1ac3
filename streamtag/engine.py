"""The engine composes the stages: audio → hop stage → window → model → typed estimates.

    block [n, channels] ─ stream split (downmix per stream) → [n, B]
      → HopFrontend (streamtag.hops: frames, hop buffering, levels, silence) → HopFeatures
      → window slide (the last window_frames rows per stream) → [B, M, W]
      → sound features (CNN) → fresh starts (streamtag.restarts: silence, changes)
      → model (pitch-class encoder, LSTM step with ``run_hops``'s rule) → head values
      → post-processing (novelty, reference, tempo) → HopEstimate per stream
      → ``streamtag.estimate.to_record`` → the documented record (done by the caller)

One engine serves the daemon (``process``: hop by hop, any block sizes) and ``analyze``
(``analyze_estimates``/``analyze_blocks``: a file read block by block; the CNN windows of each
chunk of hops in one batch, then the LSTM over the chunk, its state carried on; memory bounded
whatever the file's length); their estimates are equal (the cornerstone test). Several streams
(channel groups of one input) each get their own frontend channel and LSTM state and go
through the model in one batched forward.

Latency, declared per stage: the frontend completes a frame when its last sample arrives; the
hop stage completes a hop with its last frame; the resampler (if the input rate differs from
the model's) delays by ``HopFrontend.latency_samples``; the model needs nothing from the
future. An estimate's ``t`` is the stream time [s] of the end of the audio its hop describes,
corrected for the resampler's delay.

With an ``embedding`` head, each stream also keeps histories of its non-silent hops (their sound
vectors for ``novelty``; their match vectors for the ``reference`` query with a reference
library; both derived from the model's window encoding, :mod:`streamtag.embedding`). Both are
computed in hop order by the same code for ``process`` and ``analyze``, so they are equal too.

Entry after a pause: a silent hop (level below ``silence_db``), and a hop where the sound
changes (novelty above ``novelty.restart``), is a fresh start (:mod:`streamtag.restarts`): the
LSTM state, the pitch-class memory and the rule's own novelty memory start again there (the
published novelty runs on), and at a change the frames before it (found within the hop, or
the hop before when novelty caught it a hop late: ``change_frame``) are made the silence
before a stream. :func:`run_hops` holds the LSTM's
rule, both paths call it; the pitch-class memory is restarted after the fact
(``FreshStarts.restart_rows``), because where the sound changes is known only from the CNN's
sound features (they read the mel bands alone, so they come first). So music after silence,
room noise or another piece is estimated as a fresh start on it would be, whatever the model
heard before.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from streamtag.checkpoint import Checkpoint
from streamtag.config import NoveltyConfig, ReferenceConfig, TempoConfig
from streamtag.embedding import HopHistory, NoveltyMeter, hops_for, match_vectors
from streamtag.errors import LibraryError
from streamtag.estimate import HopEstimate, TempoEstimate, latency_since, round6, to_record
from streamtag.frontend import downmix
from streamtag.hops import HopFeatures, HopFrontend
from streamtag.model import ArchConfig, HeadSpec, LstmState, StreamTagModel
from streamtag.record import FAST_NAMES
from streamtag.references import ReferenceLibrary, ReferenceMatcher
from streamtag.restarts import (
    BASELINE_LAG,
    BEFORE_FRAMES,
    LOOKBACK_HOPS,
    FreshStarts,
    change_frame,
)
from streamtag.tempo import ONSET_DELAY_FRAMES, BeatTracker, TempoFrames, TempoParams

ONSET = FAST_NAMES.index("onset")
LOUDNESS = FAST_NAMES.index("loudness")


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
    """What one ``process`` call produced: the completed hops' estimates (in hop order, the
    streams of each hop together), the fast-lane frames and the beats.

    ``records``: the estimates as records (``streamtag.estimate.to_record``), made on first
    access; their ``latency_ms`` runs from the block's arrival to that moment.
    """

    estimates: list[HopEstimate] = field(default_factory=list)
    fast: list[FastFrames] = field(default_factory=list)
    beats: list[Beat] = field(default_factory=list)
    heads: Sequence[HeadSpec] = ()
    arrival: float = 0.0
    _records: list[dict] | None = field(default=None, repr=False)

    @property
    def records(self) -> list[dict]:
        if self._records is None:
            latency_ms = latency_since(self.arrival)
            self._records = [to_record(e, self.heads, latency_ms) for e in self.estimates]
        return self._records


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
    model: StreamTagModel, feats: torch.Tensor, state: LstmState | None, silent: np.ndarray,
    restart: np.ndarray | None = None,
) -> tuple[dict[str, torch.Tensor], LstmState | None]:
    """The LSTM and heads over consecutive hops, with the engine's rule for the state.

    feats: ``model.encode`` outputs [B, S, F] of S consecutive hops of B streams. state: the
    state before the first of them (None: fresh). silent: [B, S] bool, the hops' ``silent``
    flags. restart: [B, S] bool, the fresh starts (``streamtag.restarts``; None: the silent
    hops). Returns ({head: [B, S, K]}, the state after the last hop; None when fresh).

    The rule: a fresh start is stepped from the fresh state, and the state after a silent hop
    is the fresh state. Without it the state carried what the model made of the silence
    (seconds of it drove the bundled model's state to "trumpet" at 0.8-0.9, which took ~5 s of
    violin to undo), or of the piece before, so live estimates after a pause differed from
    ``analyze`` of the music alone. Runs of hops with no fresh start in any stream go through
    the LSTM in one call; single hops take ``step_features``'s one-step path (equal outputs,
    ~1e-6).
    """
    restart = silent if restart is None else restart
    s = silent.shape[1]
    outs: list[dict[str, torch.Tensor]] = []
    i = 0
    while i < s:
        j = i + 1
        if not restart[:, i].any():
            while j < s and not restart[:, j].any():
                j += 1
        state = _fresh_rows(state, restart[:, i])
        if j - i == 1:
            out, state = model.step_features(feats[:, i], state)
            out = {k: v[:, None] for k, v in out.items()}
        else:
            out, state = model.sequence_features(feats[:, i:j], state)
        state = _fresh_rows(state, silent[:, i])
        outs.append(out)
        i = j
    if len(outs) == 1:
        return outs[0], state
    return {k: torch.cat([o[k] for o in outs], dim=1) for k in outs[0]}, state


def _fresh_rows(state: LstmState | None, fresh: np.ndarray) -> LstmState | None:
    """The state with the streams where ``fresh`` [B] is true set to the fresh state."""
    if fresh.all():
        return None
    if not fresh.any() or state is None:
        return state
    keep = torch.from_numpy(~fresh)[None, :, None]
    return LstmState(state.h * keep, state.c * keep)


class Engine:
    """Turns audio into estimates (``HopEstimate``; ``streamtag.estimate.to_record`` makes the
    records), one per hop and stream, for one or more streams.

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
        self.model = checkpoint.inference_model()
        self.arch = self.model.arch
        self.fe_config = checkpoint.frontend
        self.input_rate_hz = input_rate_hz or self.fe_config.sample_rate_hz
        self.streams = streams or [StreamSpec()]
        self.silence_db = silence_db
        # One hop stage frames every stream: one FFT batch per block, whatever the stream
        # count; it hands out finished hops (rows, levels, silence).
        tempo = tempo or TempoConfig()
        # The tracker reads the fast lane's onset strength: computed whenever tempo is on.
        self._hops = HopFrontend(self.fe_config, self.input_rate_hz, self.arch.hop_frames,
                                 silence_db, fast_lane or tempo.enabled, len(self.streams))
        self.fast_lane = fast_lane
        self.frame_s = self.fe_config.frame_s
        params = TempoParams(self.fe_config.frame_rate_hz, tempo.min_bpm, tempo.max_bpm,
                             tempo.memory_s, self.fe_config.sample_rate_hz, self.fe_config.n_fft)
        self._trackers = [BeatTracker(params) for _ in self.streams] if tempo.enabled else []
        self._silence = self._hops.silence_frame()
        self.hop_s = self.fe_config.hop_seconds(self.arch.hop_frames)
        # Declared delays: the hop stage's (the resampler's), the model none.
        self.latency_s = self._hops.latency_samples / self.fe_config.sample_rate_hz
        b, w, m = len(self.streams), self.arch.window_frames, self.arch.n_features
        # Sized up front: each stream's last `window_frames` frames, and the mel bands of the
        # BEFORE_FRAMES before them (what ``change_frame`` compares a change with).
        self._window = np.empty((b, w, m), np.float32)
        self._past = np.empty((b, BEFORE_FRAMES, self.arch.n_mels), np.float32)
        # Frames before a hop where a change caught at it may have begun (the hop before).
        self._lookback = min(LOOKBACK_HOPS * self.arch.hop_frames, w - self.arch.hop_frames)
        self._collect: list[np.ndarray] | None = None  # match vectors, for reference_vectors
        novelty = novelty or NoveltyConfig()
        meters = self._init_embedding(novelty, reference or ReferenceConfig(), library)
        self._fresh = FreshStarts(b, self.fe_config, self.arch.hop_frames, meters, self._sound,
                                  novelty.restart)
        self.reset()

    def _init_embedding(self, novelty: NoveltyConfig, reference: ReferenceConfig,
                        library: ReferenceLibrary | None) -> list[NoveltyMeter] | None:
        """Set up the embedding head's projection, sound scale, novelty and reference matching;
        return each stream's novelty meter for the fresh-start rule (None without an embedding
        head; the published novelty has meters of its own, ``_novelty``)."""
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
            return None
        window = hops_for(reference.window_s, self.hop_s)
        self._queries = [HopHistory(self.match_dims, window) for _ in self.streams]

        def meter(lag: int = 0) -> NoveltyMeter:
            return NoveltyMeter(
                self.model.sound_features, hops_for(novelty.recent_s, self.hop_s),
                hops_for(novelty.memory_s, self.hop_s),
                hops_for(novelty.baseline_s, self.hop_s) if novelty.baseline_s else 0, lag)

        # Two meters per stream: the published novelty runs on through fresh starts (a change
        # of piece shows in it, whatever restarted); the rule's starts again at each, and its
        # baseline leaves out the hop before (``restarts.BASELINE_LAG``).
        self._novelty = [meter() for _ in self.streams]
        meters = [meter(BASELINE_LAG) for _ in self.streams]
        if library is None:
            return meters
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
        return meters

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
        self._hops.reset()
        self._window[:] = self._silence
        self._past[:] = self._silence[: self.arch.n_mels]
        self.state: LstmState | None = None
        self.seq = 0
        self._fresh.reset()
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
        return max(1, self._hops.input_needed(frames))

    @property
    def stream_time_s(self) -> float:
        """Stream time [s] of the newest frame processed (its end, less the resampler's delay)."""
        return self._hops.frames_out * self.frame_s - self.latency_s

    @property
    def frames_to_hop(self) -> int:
        """Frames still to come before the next hop completes (1..hop_frames)."""
        return self._hops.frames_to_hop

    def process(self, block: np.ndarray, arrival: float | None = None) -> EngineStep:
        """Feed a block [n] or [n, channels] at ``input_rate_hz``; return completed hops.

        arrival: ``time.perf_counter()`` when the block's last sample arrived (for the
        records' ``latency_ms``, see ``EngineStep``); default now.
        """
        arrival = time.perf_counter() if arrival is None else arrival
        hf = self._hops.process(self._stream_block(block))
        out = EngineStep(fast=self._fast(hf.fast, hf.first_frame), heads=self.model.heads,
                         arrival=arrival)
        start = 0
        # The tracker is fed up to each hop's end, so the hop's tempo is its state there.
        for k, end in enumerate([*hf.ends, hf.n_frames]):
            if end > start:
                for b, tracker in enumerate(self._trackers):
                    fast = hf.fast[b, start:end]
                    tf = tracker.process(fast[:, ONSET], fast[:, LOUDNESS],
                                         hf.power[b, start:end])
                    out.beats += self._beats(b, tf, hf.first_frame + start)
            start = end
            if k < hf.n_hops:
                self._slide(hf.rows[:, k])
                out.estimates += self._run_model(hf.level_db[:, k], hf.silent[:, k])
        return out

    def _slide(self, rows: np.ndarray) -> None:
        """Append a hop's feature rows [B, hop, M] to the windows, dropping the oldest (their
        mel bands go on in ``_past``)."""
        w, hop, m = self.arch.window_frames, rows.shape[1], self.arch.n_mels
        dropped = np.concatenate([self._past, self._window[:, :hop, :m],
                                  rows[:, :max(0, hop - w), :m]], axis=1)
        self._past[:] = dropped[:, -BEFORE_FRAMES:]
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

    def _run_model(self, levels: np.ndarray, silent: np.ndarray) -> list[HopEstimate]:
        """Run the model on the windows of the hop just completed (its rows as the hop stage
        framed them); levels [B] its level_db, silent [B] its flags. Returns its estimates,
        one per stream."""
        hop, w, m = self.arch.hop_frames, self.arch.window_frames, self.arch.n_mels
        with torch.inference_mode():
            # The sound features read only mel bands: where the stream starts afresh is known
            # before the pitch-class rows are restarted there.
            sound = self.model.encode_sound(torch.from_numpy(self._window.transpose(0, 2, 1)
                                                             .copy()))
            offsets = np.zeros((len(self.streams), 1), np.int64)

            def changed(b: int, _: int, late: bool) -> None:
                # A change: the frames before it become the silence before a stream's start.
                # Caught late, it may have begun in the hop before (a negative offset).
                look = self._lookback if late else 0
                start = w - hop - look
                before = np.concatenate([self._past[b], self._window[b, :start, :m]])
                s = change_frame(before, self._window[b, start:, :m]) - look
                offsets[b, 0] = s
                self._window[b, : w - hop + s, :m] = self._silence[:m]
                sound[b] = self.model.encode_sound(
                    torch.from_numpy(self._window[b:b + 1].transpose(0, 2, 1).copy()))[0]

            raw = sound.numpy().copy()  # for the published novelty: before this hop's change
            restart = self._decide(sound.numpy()[:, None], silent[:, None], changed)
            for b in range(len(self.streams)):
                earlier, self._window[b, -hop:] = self._fresh.restart_rows(
                    b, self._window[b, -hop:], restart[b], offsets[b])
                if restart[b, 0] and offsets[b, 0] < 0:  # the hop before, framed again
                    k0 = min(hop, w - hop)
                    self._window[b, w - hop - k0:w - hop, m:] = earlier[hop - k0:, m:]
                if restart[b, 0] and not silent[b]:
                    self._window[b, : w - hop + offsets[b, 0], m:] = self._silence[m:]
            feats = self.model.encode(torch.from_numpy(self._window.transpose(0, 2, 1).copy()),
                                      sound)
            outputs, self.state = run_hops(self.model, feats[:, None], self.state,
                                           silent[:, None], restart)
        values = {k: v.numpy() for k, v in outputs.items()}  # [B, 1, K]
        estimates = self._estimates(self.seq, values, levels[:, None], silent[:, None],
                                    raw[:, None],
                                    feats.numpy()[:, None],
                                    [[self._live_tempo(b)] for b in range(len(self.streams))]
                                    if self._trackers else None)
        self.seq += 1
        return estimates

    def _beats(self, b: int, tf: TempoFrames, first_frame: int) -> list[Beat]:
        """Stream ``b``'s beats in a tracker output whose first frame is ``first_frame``."""
        bpm = tf.bpm[tf.frames - first_frame]  # the tempo at each beat's frame
        return [Beat(self.streams[b].name, c, self._beat_time(p), round6(x))
                for p, c, x in zip(tf.beats.tolist(), tf.counts.tolist(), bpm.tolist(),
                                   strict=True)]

    def _live_tempo(self, b: int) -> TempoEstimate | None:
        if not self._trackers:
            return None
        tr = self._trackers[b]
        return self._tempo(tr.bpm, tr.confidence, tr.last_beat)

    def _beat_time(self, position: float) -> float:
        """A beat's position [fractional frame index] → its stream time [s]: the end of that
        frame less the onset's mean delay in it and the resampler's delay."""
        return round((position + 1.0 - ONSET_DELAY_FRAMES) * self.frame_s - self.latency_s, 6)

    def _tempo(self, bpm: float, confidence: float, last_beat: float | None) -> TempoEstimate:
        return TempoEstimate(bpm, confidence,
                             None if last_beat is None else self._beat_time(last_beat))

    def _fast(self, fast: np.ndarray, first_index: int) -> list[FastFrames]:
        """Fast [B, N, n_fast] of the N frames from frame ``first_index`` → per stream."""
        if not self.fast_lane or not fast.shape[1]:
            return []
        t = np.arange(first_index + 1, first_index + 1 + fast.shape[1], dtype=np.float64)
        t *= self.frame_s
        t -= self.latency_s
        return [FastFrames(s.name, t, f) for s, f in zip(self.streams, fast, strict=True)]

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

    def analyze_blocks(self, blocks: Iterable[np.ndarray], vectors: bool = True,
                       overlap: bool = True) -> Iterator[list[dict]]:
        """Records of a signal that arrives as consecutive blocks [n] or [n, channels] (any
        sizes: a file read block by block, standard input), from a fresh state; yields them a
        chunk of hops at a time, in order.

        ``analyze_estimates`` turned into records; ``latency_ms`` is the compute time per hop
        of the record's chunk. vectors=False: records without ``embedding.vector``, as
        ``compact_record`` leaves them (not made only to be dropped). overlap: see
        ``analyze_estimates``. Leaves the engine reset.
        """
        heads = self.model.heads
        for estimates, latency_ms in self.analyze_estimates(blocks, overlap):
            yield [to_record(e, heads, latency_ms, vectors) for e in estimates]

    def analyze_estimates(self, blocks: Iterable[np.ndarray], overlap: bool = True
                          ) -> Iterator[tuple[list[HopEstimate], float]]:
        """The offline fast path: the estimates of a signal arriving as blocks (see
        ``analyze_blocks``) a chunk of hops at a time, each chunk with its compute time per
        hop [ms].

        The hop stage's offline twin (``HopFrontend.process_offline_blocks``, in a thread of
        its own) hands out each frontend run's complete hops: rows (silent hops' pitch-class
        rows restarted), levels and fast-lane values. With tempo on, the tracker's streaming
        ``process`` (equal to its offline twin) gives each hop its tempo. The CNN windows of a
        chunk of hops go through the model in one batch and the LSTM runs over the chunk
        (``run_hops``: silent hops from the fresh state), its state carried to the next. The
        estimates are equal to ``process`` fed the same audio in any blocks, and the same
        whatever the block sizes here (the frontend's runs and the model's chunks start at the
        same frames and hops). Memory is bounded by the block size, the frontend's run and the
        model's chunk, not by the signal's length. A trailing partial hop is not reported.
        overlap: the hop stage runs in a thread of its own beside the model (two cores'
        work; ``_runs_ahead``), else in this thread (one core: ``analyze --jobs 1``, and each
        worker of ``--jobs N``); the estimates are the same. Leaves the engine reset.
        """
        self.reset()
        a = self.arch
        hop, w, n_streams = a.hop_frames, a.window_frames, len(self.streams)
        # Chunks of hops bound memory (the first conv layer's activations dominate: ~64 MB per
        # chunk); the LSTM state carries across chunks.
        chunk = max(1, min(256, 2**24 // (n_streams * a.window_frames * a.n_features
                                          * a.channels[0])))
        # Per stream: the last `lead` frames before the hops not yet run (silence before the
        # start: the windows' context and the BEFORE_FRAMES before it, which ``change_frame``
        # reads), then the frames of the complete hops not yet run, their levels [dB] and
        # tempo estimates.
        lead = w - hop + BEFORE_FRAMES
        rows = np.broadcast_to(self._silence, (n_streams, lead, a.n_features)).copy()
        levels = np.zeros((n_streams, 0))
        tempi: list[list[TempoEstimate]] = [[] for _ in range(n_streams)]
        state: LstmState | None = None
        spent = 0.0  # compute time [s] since the last yield
        hop_index = 0
        stream_blocks = (self._stream_block(x) for x in blocks)
        runs = (self._runs_ahead(stream_blocks) if overlap
                else self._with_tempo(self._hops.process_offline_blocks(stream_blocks)))
        try:
            started = time.perf_counter()
            for hf, sections in runs:
                for b, s in enumerate(sections):
                    tempi[b] += s
                if hf.n_hops:
                    rows = np.concatenate(
                        [rows, hf.rows.reshape(n_streams, hf.n_hops * hop, a.n_features)], axis=1)
                    levels = np.concatenate([levels, hf.level_db], axis=1)
                while rows.shape[1] - lead >= chunk * hop:
                    estimates, state = self._analyze_chunk(rows, levels, tempi, chunk,
                                                           hop_index, state)
                    rows, levels = rows[:, chunk * hop:], levels[:, chunk:]
                    tempi = [t[chunk:] for t in tempi]
                    hop_index += chunk
                    yield estimates, (spent + time.perf_counter() - started) * 1e3 / chunk
                    started, spent = time.perf_counter(), 0.0
                spent += time.perf_counter() - started
                started = time.perf_counter()
            n = levels.shape[1]
            if n:
                estimates, _ = self._analyze_chunk(rows, levels, tempi, n, hop_index, state)
                yield estimates, (spent + time.perf_counter() - started) * 1e3 / n
        finally:
            runs.close()  # stops the frontend's thread before the frontend is reset
            self.reset()

    def _with_tempo(self, runs: Iterator[HopFeatures]
                    ) -> Iterator[tuple[HopFeatures, list[list[TempoEstimate]]]]:
        """Each of the hop stage's offline runs with, per stream, the tempo estimates of the
        hops whose last frame it holds (none with tempo off): the tracker's streaming
        ``process`` over the run's fast lane (equal to its offline twin)."""
        hop = self.arch.hop_frames
        last_beats: list[float | None] = [None] * len(self.streams)
        for hf in runs:
            sections: list[list[TempoEstimate]] = []
            for b, tracker in enumerate(self._trackers):
                fast = hf.fast[b]
                s, last_beats[b] = self._tempo_sections(
                    tracker.process(fast[:, ONSET], fast[:, LOUDNESS], hf.power[b]),
                    hf.first_frame,
                    hf.first_frame // hop, last_beats[b])
                sections.append(s)
            yield hf, sections

    def _runs_ahead(self, blocks: Iterator[np.ndarray]
                    ) -> Iterator[tuple[HopFeatures, list[list[TempoEstimate]]]]:
        """The hop stage's offline runs of ``blocks`` with their tempo estimates
        (``_with_tempo``), made in a thread of their own up to two runs ahead of the caller:
        decoding, resampling, framing and beat tracking overlap the model's work on the other
        core. The same runs, in the same order, as calling the hop stage directly; an
        exception in the thread is raised here."""
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
            runs = self._with_tempo(self._hops.process_offline_blocks(blocks))
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

    def _analyze_chunk(self, rows: np.ndarray, levels: np.ndarray,
                       tempi: list[list[TempoEstimate]], n: int, first: int,
                       state: LstmState | None) -> tuple[list[HopEstimate], LstmState | None]:
        """Estimates of the n hops from hop ``first``: rows [B, lead + ≥ n·hop, M] (the
        lead = context + BEFORE_FRAMES frames before the hops, then theirs), levels [B, ≥ n]
        their level_db, tempi per stream their tempo estimates (empty lists with tempo off)."""
        a = self.arch
        hop, w = a.hop_frames, a.window_frames
        lead = w - hop + BEFORE_FRAMES
        # Window k: the w frames ending with hop k's last, as the streaming engine holds them.
        view = np.lib.stride_tricks.sliding_window_view(
            rows[:, BEFORE_FRAMES: lead + n * hop], w, axis=1)[:, ::hop]  # [B, n, M, W]
        # Laid out frame by frame ([B, n, W, M] in memory, M fastest), as the windows have
        # always reached the model offline: the CNN's float32 sums depend on the layout. A
        # copy even where the view is already laid out so (the seed preset): torch takes
        # only writable arrays.
        frames = np.array(view.transpose(0, 1, 3, 2), dtype=np.float32, order="C")
        windows = torch.from_numpy(frames).permute(0, 1, 3, 2)  # [B, n, M, W]
        silent = levels[:, :n] < self.silence_db  # [B, n]
        b, m, context = len(self.streams), a.n_mels, w - hop
        offsets = np.zeros((b, n), np.int64)
        with torch.inference_mode():
            sound = self.model.encode_sound(windows.reshape(b * n, *windows.shape[2:]))
            sound = sound.reshape(b, n, -1)
            # The published novelty's sound vectors: each hop's window before its own change
            # reframed it (live, the window is reframed after its sound is taken).
            raw = sound.numpy().copy()

            def changed(i: int, k: int, late: bool) -> None:
                # A change: the frames before it become the silence before a stream's start
                # (in the buffer: windows k and k + 1 hold them), so both windows again. It
                # may have begun in the hop before (a negative offset).
                at = lead + k * hop  # hop k's first frame in `rows`
                look = self._lookback if late else 0
                s = change_frame(rows[i, at - look - BEFORE_FRAMES:at - look, :m],
                                 rows[i, at - look:at + hop, :m]) - look
                offsets[i, k] = s
                rows[i, at - context:at + s, :m] = self._silence[:m]
                last = min(k + 2, n)
                frames[i, k:last, :, :m] = view[i, k:last, :m].transpose(0, 2, 1)
                sound[i, k:last] = self.model.encode_sound(windows[i, k:last])
                if k + 1 < n:  # as live: hop k + 1's window holds what the change reframed
                    raw[i, k + 1] = sound[i, k + 1].numpy()

            restart = self._decide(sound.numpy(), silent, changed)
            # The hops' rows restarted where the streams start afresh (in place: the last
            # frames are the next chunk's lead), then their windows' pitch rows. A change that
            # began in the hop before frames that hop again for the windows from its own on:
            # the run is split there, as live (one hop at a time) the windows before saw it.
            late = restart & ~silent & (offsets < 0)
            for i in range(b):
                cuts = sorted({0, n, *np.nonzero(late[i])[0].tolist()})
                for start, end in itertools.pairwise(cuts):
                    at = lead + start * hop
                    span = rows[i, at:lead + end * hop]
                    earlier, span[:] = self._fresh.restart_rows(i, span, restart[i, start:end],
                                                                offsets[i, start:end])
                    if late[i, start]:
                        k0 = min(hop, context)
                        rows[i, at - k0:at, m:] = earlier[hop - k0:, m:]
                    frames[i, start:end, :, m:] = view[i, start:end, m:].transpose(0, 2, 1)
            for i, k in np.argwhere(restart & ~silent).tolist():
                # The pitch-class rows before the change too: in windows k and k + 1, and in
                # the buffer (the next chunk's lead), not in the windows before.
                at, s = lead + k * hop, offsets[i, k]
                frames[i, k, : context + s, m:] = self._silence[m:]
                if k + 1 < n and s > 0:
                    frames[i, k + 1, :s, m:] = self._silence[m:]
                rows[i, at:at + s, m:] = self._silence[m:]
            sound = sound.reshape(b * n, -1)
            feats = self.model.encode(windows.reshape(b * n, *windows.shape[2:]), sound)
            feats = feats.reshape(b, n, -1)
            out, state = run_hops(self.model, feats, state, silent, restart)
        values = {k: v.numpy() for k, v in out.items()}
        estimates = self._estimates(first, values, levels[:, :n], silent, raw,
                                    feats.numpy(),
                                    [t[:n] for t in tempi] if self._trackers else None)
        return estimates, state

    def _decide(self, sound: np.ndarray, silent: np.ndarray,
                changed: Callable[[int, int, bool], None]) -> np.ndarray:
        """Where the streams start afresh (``FreshStarts.decide``): sound [B, n, D] the n
        hops' sound vectors, silent [B, n], changed(b, k, late) called at a change of stream b
        at hop k (it frames the change and rewrites ``sound`` there; late: it may have begun
        in the hop before) → restart [B, n]."""
        return np.array([self._fresh.decide(b, sound[b], silent[b],
                                            lambda k, late, b=b: changed(b, k, late))[0]  # type: ignore[misc]
                         for b in range(len(silent))]).reshape(silent.shape)

    def _frontend_hops(self, n_input: int) -> int:
        """Complete hops in n_input samples at the input rate (what ``analyze`` reports)."""
        fe = self.fe_config
        n = n_input
        if self.input_rate_hz != fe.sample_rate_hz:
            n = -(-n_input * fe.sample_rate_hz // self.input_rate_hz)  # resampler outputs
        return (n // fe.hop_length) // self.arch.hop_frames

    def _tempo_sections(self, tf: TempoFrames, first_frame: int, first_hop: int,
                        last_beat: float | None) -> tuple[list[TempoEstimate], float | None]:
        """The tempo estimates of the hops that end in a tracker output (``process`` of the
        frames from ``first_frame``), from hop ``first_hop`` on (the first not yet given one):
        each the state after the hop's last frame, as ``process`` reports it. last_beat: the
        last beat reported before first_frame (None: none yet). Returns the estimates and the
        last beat reported by the output's end."""
        hop = self.arch.hop_frames
        # [n] each hop's last frame (frame index from the start)
        ends = np.arange(first_hop + 1, (first_frame + len(tf)) // hop + 1) * hop - 1
        # Beats reported by each hop's end: how many, so the last is at index count - 1.
        reported = np.searchsorted(tf.frames, ends, side="right")
        sections = [self._tempo(float(tf.bpm[e - first_frame]),
                                float(tf.confidence[e - first_frame]),
                                float(tf.beats[r - 1]) if r else last_beat)
                    for e, r in zip(ends.tolist(), reported.tolist(), strict=True)]
        return sections, float(tf.beats[-1]) if len(tf.beats) else last_beat

    # -- estimates ---------------------------------------------------------------------------
    def record(self, estimate: HopEstimate, latency_ms: float) -> dict:
        """The estimate record of one of this engine's estimates (``to_record``)."""
        return to_record(estimate, self.model.heads, latency_ms)

    def _hop_end_time(self, k: int) -> float:
        return (k + 1) * self.hop_s - self.latency_s

    def _estimates(self, first: int, values: dict[str, np.ndarray], levels: np.ndarray,
                   silent: np.ndarray, sound: np.ndarray, encoded: np.ndarray,
                   tempi: list[list[TempoEstimate]] | None) -> list[HopEstimate]:
        """The estimates of n consecutive hops from hop ``first``, in hop order (the streams of
        each hop together): the one way from model outputs to estimates, a hop at a time live
        (n = 1), a chunk of hops at a time offline. values: {head: activated outputs
        [B, n, K]}; levels [B, n] level_db; silent [B, n] their flags (the hop stage's
        rule, as the model was run with them); sound [B, n, D] the hops' sound vectors
        (``model.encode_sound``, before a change at the hop itself reframed its window; with an
        embedding head, for novelty); encoded [B, n, F] the hops' window encodings as the
        model got them (``model.encode``; with an embedding head, for references); tempi: per
        stream the hops' n tempo estimates (None: tempo tracking off). Feeds the streams'
        histories (call once per hop, in hop order)."""
        n_streams, n = levels.shape
        emb = self._emb_head.name if self._emb_head is not None else None
        per_stream = []
        for b in range(n_streams):
            quiet = silent[b].tolist()
            xy: list = [None] * n
            novelty: list = [None] * n
            reference: list = [None] * n
            if emb is not None:
                xy, novelty, reference = self._embedding_values(b, quiet, values[emb][b],
                                                                sound[b], encoded[b])
            per_stream.append((levels[b].tolist(), quiet, xy, novelty, reference))
        estimates = []
        for k in range(n):
            t = self._hop_end_time(first + k)
            for b, (lv, quiet, xy, nov, reference) in enumerate(per_stream):
                estimates.append(HopEstimate(
                    seq=first + k, t=t, stream=self.streams[b].name, wall=time.time(),
                    level_db=lv[k], silent=quiet[k],
                    heads={h: v[b, k] for h, v in values.items()}, xy=xy[k], embedding_head=emb,
                    novelty=nov[k], reference=reference[k],
                    tempo=None if tempi is None else tempi[b][k]))
        return estimates

    def _embedding_values(self, b: int, silent: list[bool], emb: np.ndarray, sound: np.ndarray,
                          encoded: np.ndarray) -> tuple[list, list[float], list]:
        """Stream ``b``'s embedding xy, novelty and reference section of n consecutive hops
        (silent [n] their flags, emb [n, E] their embeddings, sound [n, D] their sound vectors,
        encoded [n, F] their window encodings); feeds the stream's histories. Novelty of the
        chunk's non-silent hops in one ``NoveltyMeter.push_many`` (equal to a push per hop)."""
        n = len(silent)
        xy: list = [None] * n
        if self.projection is not None:
            xy = [(x, y) for x, y in self.projection.project_rows(emb).tolist()]
        sounding = [k for k in range(n) if not silent[k]]
        novelty = [0.0] * n
        if sounding:
            heard = sound[sounding]
            if self._sound is not None:
                heard = self._sound.apply(heard)
            for k, x in zip(sounding, self._novelty[b].push_many(heard), strict=True):
                novelty[k] = x
        reference: list = [None] * n
        # Match vectors only when something reads them: the matcher, or reference_vectors.
        collect = self._collect if b == 0 else None
        if self.matcher is None and collect is None:
            return xy, novelty, reference
        queries = self._queries[b]
        for k in range(n):
            if not silent[k]:
                match = match_vectors(encoded[k], self.model.sound_features, self.arch.n_chroma,
                                      self._match)
                queries.push(match)
                if collect is not None:
                    collect.append(match)
            if self.matcher is not None:
                reference[k] = self.matcher.match(
                    queries.last(self.matcher.window_hops) if len(queries) else None)
        return xy, novelty, reference
