"""The hop stage: the frontend's frames grouped into the model's hops, each hop finished.

``HopFrontend`` wraps a ``MelFrontend`` of C channels (the engine's streams) and hands the
engine what it needs per hop, computed here and nowhere else:

- the hop's feature rows [C, hop_frames, n_features] (mel bands and pitch-class rows),
- its level [dBFS] per channel (mean square of the hop's samples) and its ``silent`` flag
  (level below ``silence_db``).

The pitch-class rows are framed with one continuous memory per channel: where the engine
starts a stream afresh (a silent hop, a change of sound) it restarts that memory itself
(``streamtag.restarts``), because only the engine knows where the sound changes.

Besides the hops, every call returns the fast-lane values of the frames it completed (the
daemon's OSC fast lane and the tempo tracker read them frame by frame).

Two twins, one result (the madmom protocol): ``process(block)`` for live audio in any block
sizes (frames arrive with their power spectra; the rows of a hop are computed once, when its
last frame arrives, so a live frame costs only its FFT and the fast lane), and
``process_offline_blocks(blocks)`` for a file read block by block (the frontend's offline runs
compute rows for whole runs). Both hand out the same hops.

Declared delay: the stage adds none beyond the frontend's. A hop is complete the moment its
last frame is; ``latency_samples`` is the resampler's delay [model-rate samples] (0 without
resampling), which the engine subtracts from stream times.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from streamtag.frontend import FrontendConfig, MelFrontend
from streamtag.record import LEVEL_FLOOR_DB


def level_db(energy: np.ndarray) -> float:
    """A hop's level [dBFS] from its frames' mean squares ``energy`` [hop_frames] (full
    scale²): 10·log10 of their mean, within −160 … 0 as documented (a float file above full
    scale would read above 0)."""
    ms = float(np.mean(energy))
    return min(0.0, max(LEVEL_FLOOR_DB, 10 * math.log10(ms))) if ms > 0 else LEVEL_FLOOR_DB


@dataclass
class HopFeatures:
    """What one call of the hop stage produced, for C channels.

    fast: [C, N, n_fast] float32, fast-lane values (``FAST_NAMES``) of the N frames the call
        completed; n_fast is 0 with the fast lane off.
    first_frame: index of the first of those frames from the stream's start.
    rows: [C, H, hop_frames, n_features] float32, the feature rows of the H hops completed.
    level_db: [C, H] each hop's level [dBFS]. silent: [C, H] bool, level below ``silence_db``.
    ends: [H] for each completed hop, how many of the call's N frames reach up to its last
        frame (so ``fast[:, :ends[k]]`` is everything up to the end of hop k).
    first_hop: index of the first completed hop from the stream's start.
    power: [C, N, n_freqs] float32, the power spectra of the N frames (the beat tracker's
        onset bands read them).
    """

    fast: np.ndarray
    first_frame: int
    rows: np.ndarray
    level_db: np.ndarray
    silent: np.ndarray
    ends: list[int]
    first_hop: int
    power: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.fast.shape[1])

    @property
    def n_hops(self) -> int:
        return int(self.rows.shape[1])


class HopFrontend:
    """The frontend and hop buffering of C channels, with live and offline twins.

    config: the frontend parameters; input_rate_hz: the rate fed in (resampled if it differs).
    hop_frames: frames per model hop. silence_db [dBFS]: hops below it are ``silent``.
    fast_lane: compute the fast-lane values (else ``HopFeatures.fast`` is [C, N, 0]).
    channels: independent signals framed together (one FFT batch for all).
    """

    def __init__(self, config: FrontendConfig, input_rate_hz: int, hop_frames: int,
                 silence_db: float, fast_lane: bool, channels: int) -> None:
        self.config = config
        self.hop_frames = hop_frames
        self.silence_db = silence_db
        self.channels = channels
        # Rows are deferred: a live hop's rows are computed once, from its frames' spectra.
        self.frontend = MelFrontend(config, input_rate_hz, fast_lane, channels=channels,
                                    defer_rows=True)
        # Sized up front: the current hop's energies and power spectra.
        self._energy = np.zeros((channels, hop_frames))
        self._power = np.zeros((channels, hop_frames, config.n_freqs), np.float32)
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all audio: the next sample is stream time 0."""
        self.frontend.reset()
        self._filled = 0  # frames of the current hop received so far
        self._energy[:] = 0.0
        self.hops_out = 0

    @property
    def latency_samples(self) -> float:
        """Delay [model-rate samples] between a sound entering and its frame, beyond framing
        (the resampler's; this stage adds none)."""
        return self.frontend.latency_samples

    @property
    def frames_out(self) -> int:
        """Frames completed since the last reset."""
        return self.frontend.frames_out

    @property
    def frames_to_hop(self) -> int:
        """Frames still to come before the next hop completes (1..hop_frames)."""
        return self.hop_frames - self._filled

    def input_needed(self, frames: int = 1) -> int:
        """Input samples [at the input rate] still to come before the next ``frames`` frames
        complete."""
        return self.frontend.input_needed(frames)

    def silence_frame(self) -> np.ndarray:
        """The feature row [n_features] of digital silence."""
        return self.frontend.silence_frame()

    # -- live ----------------------------------------------------------------------------
    def process(self, block: np.ndarray) -> HopFeatures:
        """Feed [n, C] samples (each column a channel) at the input rate; return the frames'
        fast-lane values and the hops they complete."""
        first_frame = self.frontend.frames_out
        frames = self.frontend.process_channels(block)
        n, hop = len(frames[0]), self.hop_frames
        rows: list[np.ndarray] = []
        levels: list[list[float]] = []
        ends: list[int] = []
        i = 0
        while i < n:
            take = min(hop - self._filled, n - i)
            for b, f in enumerate(frames):
                self._energy[b, self._filled:self._filled + take] = f.energy[i:i + take]
                self._power[b, self._filled:self._filled + take] = f.power[i:i + take]
            self._filled += take
            i += take
            if self._filled == hop:
                lv = [level_db(e) for e in self._energy]
                rows.append(self.frontend.rows(self._power))  # [C, hop, M]
                levels.append(lv)
                ends.append(i)
                self._filled = 0
        first_hop = self.hops_out
        self.hops_out += len(rows)
        return self._features(np.stack([f.fast for f in frames]), first_frame, rows, levels,
                              ends, first_hop, np.stack([f.power for f in frames]))

    def _features(self, fast: np.ndarray, first_frame: int, rows: list[np.ndarray],
                  levels: list[list[float]], ends: list[int], first_hop: int,
                  power: np.ndarray) -> HopFeatures:
        c, m = self.channels, self.config.n_features
        stacked = (np.stack(rows, axis=1) if rows
                   else np.zeros((c, 0, self.hop_frames, m), np.float32))
        lv = np.array(levels, dtype=np.float64).T.reshape(c, len(levels))
        return HopFeatures(fast, first_frame, stacked, lv, lv < self.silence_db, ends, first_hop,
                           power)

    # -- offline -------------------------------------------------------------------------
    def process_offline_blocks(self, blocks: Iterable[np.ndarray]) -> Iterator[HopFeatures]:
        """The offline twin: a signal arriving as consecutive [n, C] blocks (any sizes), from a
        fresh state; yields one ``HopFeatures`` per frontend run (``OFFLINE_RUN_FRAMES``), the
        same hops as ``process`` fed the same audio. Memory is bounded by the run, not by the
        signal. Leaves this object reset."""
        self.reset()
        hop, c, m = self.hop_frames, self.channels, self.config.n_features
        # Per channel: the frames of the hop not yet complete (rows as framed), their energy.
        partial = np.zeros((c, 0, m), np.float32)
        energy = np.zeros((c, 0))
        frames_seen = hops_seen = 0
        runs = self.frontend.process_offline_blocks(blocks)
        try:
            for run in runs:
                partial = np.concatenate([partial, np.stack([f.features for f in run])], axis=1)
                energy = np.concatenate([energy, np.stack([f.energy for f in run])], axis=1)
                n_run = len(run[0])
                n = partial.shape[1] // hop  # hops this run completed
                # Frames of this run up to each completed hop's end.
                held = partial.shape[1] - n_run  # frames carried in from earlier runs
                ends = [(k + 1) * hop - held for k in range(n)]
                rows, levels = self._complete_hops(partial, energy, n)
                partial, energy = partial[:, n * hop:], energy[:, n * hop:]
                yield HopFeatures(np.stack([f.fast for f in run]), frames_seen, rows, levels,
                                  levels < self.silence_db, ends, hops_seen,
                                  np.stack([f.power for f in run]))
                frames_seen += n_run
                hops_seen += n
        finally:
            runs.close()
            self.reset()

    def _complete_hops(self, partial: np.ndarray, energy: np.ndarray, n: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        """The n complete hops at the start of partial [C, ≥ n·hop, M] (energy [C, ≥ n·hop]):
        their rows [C, n, hop, M] and their levels [C, n]."""
        hop, c, m = self.hop_frames, self.channels, self.config.n_features
        if not n:
            return np.zeros((c, 0, hop, m), np.float32), np.zeros((c, 0))
        levels = np.array([[level_db(e) for e in energy[b, : n * hop].reshape(n, hop)]
                           for b in range(c)]).reshape(c, n)
        return partial[:, : n * hop].reshape(c, n, hop, m).copy(), levels
