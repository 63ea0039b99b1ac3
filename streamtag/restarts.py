"""Fresh starts: the hops where a stream's estimates begin again, as on a new recording.

Music on stage starts after silence, room noise or another piece, and the estimates one second
into it must be what a fresh start on the same audio gives (``analyze`` of the music alone). So
a hop is a *fresh start* when

- it is silent (level below ``silence_db``), or
- the sound changed: its novelty (the CNN's summary of its window against the seconds before,
  :class:`streamtag.embedding.NoveltyMeter`) is above ``novelty.restart`` (with an embedding
  head, whose checkpoint holds the sound scale novelty needs).

At a fresh start every memory that carries the sound before it starts again:

- the LSTM state: the hop is stepped from the fresh state (``engine.run_hops``; a silent hop
  also leaves the fresh state behind it);
- the pitch-class memory: the rows from the start of the new sound on are framed as if the
  memory had been restarted there (``frontend.restart_pitch_rows``, exact to float32 rounding;
  the hop stage frames one continuous memory and this module moves it);
- the rule's own novelty memory (``meters``; the engine's published novelty has meters of its
  own and runs on): it starts with the hop after (a silent hop leaves it empty);
- at a change, the window: the frames before the new sound (``change_frame`` finds where in the
  hop it begins) are made the silence a stream starts from, in the two windows that hold them.
  Caught a hop late (the hop before already had novelty above ``LATE_NOVELTY`` of the
  threshold), the change is looked for in the hop before too: then the frames before it there
  become silence, and that hop's pitch-class rows are framed again for the windows from the
  late hop on (``restart_rows`` keeps the hop before for this; the windows before saw it
  unchanged, live and offline).

Why each: on 16 cases (8 pairs of validation renders, the other piece 4 or 30 s long) with
the restart placed by hand at the true start, the median per case of median |Δvalence| was
0.18 with no restart, 0.17 restarting only the LSTM, 0.08 only the pitch-class memory (4 s
long, it still held the other piece's notes) and 0.05 both. With the frames before the change
kept in the first window, |Δvalence| on the test render (tests/test_engine_entry.py) was
0.08-0.09 after room noise and 0.10-0.18 after another piece; made silence, 0.05 and
0.05-0.08, as after a pause (0.05).
On 36 validation renders (each class and quadrant, TimGM6mb) played 0.37 hop off the grid
after a pre-roll, against ``analyze`` of the render alone, from 1 s in: after room noise
(-45 dBFS, 1-30 s) the top instrument agrees on 0.96-0.97 of hops, median |Δvalence| 0.05 (the
rule off: 0.04-0.11); after applause 0.96, 0.05-0.06 (off: 0.95-0.96, 0.07-0.11); after another
piece 0.93 / 0.96 / 0.96 after 1 / 4 / 30 s, |Δvalence| 0.06-0.08 (off: 0.92 / 0.86 / 0.81,
0.15-0.40); after silence unchanged, 0.97 and 0.04.

Caught late: on the test render after 4 and 30 s of applause and after 30 s of another piece,
the first hop of music (63 % of it) had novelty 0.15-0.18, under 0.2, and the rule fired a hop
later. Searched within that hop alone, the change was put at its frame 22, so 0.76 s of music
became silence (|Δvalence| 0.076 for model 2f40dc62554c, 0.105 for a fine-tuned one). Searched
in the hop before too, it is found at -16 / -14 (the true start: -15.75). Searched there at
every change, the other piece was split at its own notes (after 1 s of it: -9 instead of 9,
|Δvalence| 0.050 → 0.096), so the hop before is searched only where its own novelty was above
``LATE_NOVELTY`` of the threshold (0.02): the new sound already filled part of its window.
Before the catches on time it was 0.000-0.005 (novelty is floored at 0: no newer than lately);
a gate at half the threshold missed late catches after 30 s of another piece whose hop before
had 0.03-0.05.

The price is a fresh start where the music itself changes enough: with ``restart`` 0.2 (chosen
on training renders: 0.25 missed more changes of piece, 0.15 restarted twice as often), 2.1
per minute on 39 validation renders of 30 s, which took per-hop instrument accuracy there from
0.920 to 0.889 (most of it one clarinet render that a fresh start from its fourth hop calls a
flute) and quadrant accuracy per hop from 0.815 to 0.784. ``restart: null`` turns it off.

After only 1 s of another piece, 11 of the 36 changes were never caught: the change raised the
distance of its first hop (0.12-0.18) and of the next (0.26-0.37), and the first, as the only
distance in the baseline, was taken off the second. The rule's baseline now leaves out the hop
before (``BASELINE_LAG``): 35 of 36 are caught. With both, on the 36 validation renders
(2f40dc62554c) after 1 / 4 / 30 s of room noise: agreement 0.958 / 0.972 / 0.972 → 0.967 each;
of applause: 0.953 → 0.967; of another piece: 0.922 / 0.953 / 0.942 → 0.964 / 0.964 / 0.950;
median |Δvalence| 0.048-0.080 → 0.041-0.048 (after silence: 0.967 and 0.038, the floor that the
hop grid's phase leaves). The lag's
price, on 260 validation renders of 30 s (TimGM6mb): 1.84 restarts per minute instead of 1.35,
per-hop instrument accuracy after 1 s 0.938 instead of 0.940 (0.949 with the rule off), quadrant
accuracy after 3 s 0.781 either way (0.798 off). ``restart`` 0.25 with the lag restarted 0.82
times a minute but missed changes after 4 s of another piece (agreement 0.939, worst clip 0).

``decide`` and ``restart_rows`` take any number of consecutive hops: one at a time live, a chunk
at a time offline, with the same results (the meter's ``push_many`` equals its ``push`` calls;
``restart_pitch_rows`` carries the memory from call to call).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streamtag.embedding import NoveltyMeter, SoundScale
from streamtag.frontend import FrontendConfig, PitchCarry, restart_pitch_rows


class FreshStarts:
    """Where the streams start afresh, and their pitch-class rows restarted there.

    n_streams: streams (each its own memories). frontend: the checkpoint's frontend (the
    pitch-class memory's parameters). hop_frames: frames per hop. meters: one novelty meter
    per stream (None: no novelty, so only silent hops restart). sound: the sound vectors'
    standardisation (None: raw). threshold: novelty above it restarts (None: novelty is measured
    but never restarts).
    """

    def __init__(self, n_streams: int, frontend: FrontendConfig, hop_frames: int,
                 meters: list[NoveltyMeter] | None, sound: SoundScale | None,
                 threshold: float | None) -> None:
        self.frontend = frontend
        self.hop_frames = hop_frames
        self.meters = meters
        self.sound = sound
        self.threshold = threshold
        # Per stream, the pitch-class memory (what ``restart_pitch_rows`` carries) before and
        # after its last hop, and that hop's rows as framed (one continuous memory) with its
        # restart flags: a change found in that hop (a negative offset) frames it again.
        self._carries: list[tuple[PitchCarry | None, PitchCarry | None]] = \
            [(None, None)] * n_streams
        self._last: list[tuple[np.ndarray, np.ndarray] | None] = [None] * n_streams
        self._first = [True] * n_streams  # the next sounding hop follows a fresh start
        self._last_novelty = [0.0] * n_streams  # the novelty of each stream's last hop
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next hop is the first of each stream."""
        self._carries = [(None, None)] * len(self._carries)
        self._last = [None] * len(self._last)
        self._first = [True] * len(self._first)
        self._last_novelty = [0.0] * len(self._last_novelty)
        for m in self.meters or []:
            m.reset()

    def decide(self, b: int, sound: np.ndarray, silent: np.ndarray,
               changed: Callable[[int, bool], None] | None = None
               ) -> tuple[np.ndarray, list[float] | None]:
        """Stream ``b``'s next n hops: sound [n, D] their sound vectors (``encode_sound``),
        silent [n] their flags → (restart [n] bool: the fresh starts, novelty [n]: each hop's
        novelty, 0 for a silent one; None without meters). changed(k, late): called at a change
        at hop k, before the hops after it are decided; it may rewrite rows k and k + 1 of
        ``sound`` in place (the frames before the change made silence; ``change_frame``). late:
        the hop before had novelty above ``LATE_NOVELTY`` times the threshold, so the change
        may have begun there (caught a hop late). Call once per hop, in order.

        A hop's window also holds the hop before it, so the first hop after a fresh start (a
        stream's first, one after silence, a change) is framed with what came before the music
        or with silence: it is not pushed into the meter's memory (its novelty is 0), which starts
        with the next hop. Pushed, it made the next hop look new and restart again (15 of 62
        restarts on 39 validation renders of 30 s came one hop after another)."""
        restart = np.asarray(silent, bool).copy()
        if self.meters is None:
            return restart, None
        meter = self.meters[b]
        vs = self.sound.apply(sound) if self.sound is not None else np.asarray(sound, np.float64)
        n = len(restart)
        novelty = [0.0] * n
        i = 0
        while i < n:
            if restart[i] or self._first[b]:
                if restart[i]:
                    meter.reset()  # silence: the sound after it starts a new memory
                self._first[b] = bool(restart[i])
                i += 1
                continue
            j = i
            while j < n and not restart[j]:
                j += 1
            values = meter.push_many(vs[i:j])
            hit = next((k for k, x in enumerate(values) if self.threshold is not None
                        and x > self.threshold), None)
            if hit is None:
                novelty[i:j] = values
                i = j
                continue
            # A change: the memory starts again after this hop (the later values, pushed
            # against the old memory, are dropped and pushed again).
            novelty[i:i + hit + 1] = values[:hit + 1]
            restart[i + hit] = True
            meter.reset()
            i += hit + 1
            if changed is not None:
                before = novelty[i - 2] if i > 1 else self._last_novelty[b]
                changed(i - 1, self.threshold is not None
                        and before > LATE_NOVELTY * self.threshold)
                if i < n:  # the next hop's window may have been reframed: its vector again
                    vs[i] = (self.sound.apply(sound[i]) if self.sound is not None
                             else np.asarray(sound[i], np.float64))
        if n:
            self._last_novelty[b] = novelty[-1]
        return restart, novelty

    def restart_rows(self, b: int, rows: np.ndarray, restart: np.ndarray,
                     offsets: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray]:
        """Stream ``b``'s rows [n·hop_frames, n_features] of its next n hops, framed with a
        continuous pitch-class memory → (the hop before them framed again, [hop_frames,
        n_features], or None; the n hops' rows), with the memory restarted where ``restart``
        [n] is true (and still moved by restarts of earlier calls): before the hop's frame
        ``offsets`` [n] (default 0, its first). A negative offset of the first hop, down to
        -hop_frames, is a change that began in the hop before (``change_frame`` found it there:
        the rule caught it a hop late); that hop's rows come back framed again, for the windows
        from this hop on (the windows before saw it as it was); otherwise None. Call once per
        hop, in order, after ``decide``; split a run before each hop with a negative offset."""
        hop, n = self.hop_frames, len(restart)
        restart = np.asarray(restart, bool)
        at = np.arange(n) * hop + (np.zeros(n, np.int64) if offsets is None else offsets)
        last = self._last[b]
        late = bool(restart[0] and at[0] < 0)
        if np.any(at[1:][restart[1:]] < 0) or (late and (last is None or at[0] < -hop)):
            raise ValueError("a restart before the hop before the call's first")
        # Run by run equals whole (``restart_pitch_rows``). The memory before and after the
        # last hop is kept: a late change frames that hop again from the memory before it.
        if late and last is not None:
            whole = np.concatenate([last[0], rows])
            flags = np.concatenate([last[1], np.zeros(len(rows), bool)])
            flags[hop + at[restart]] = True
            carry, lead = self._carries[b][0], hop
        else:
            whole, flags = rows, np.zeros(len(rows), bool)
            flags[at[restart]] = True
            carry, lead = self._carries[b][1], 0
        front, carry = (restart_pitch_rows(whole[:-hop], flags[:-hop], self.frontend, carry)
                        if len(whole) > hop else (whole[:0], carry))
        back, end = restart_pitch_rows(whole[-hop:], flags[-hop:], self.frontend, carry)
        self._carries[b] = (carry, end)
        self._last[b] = (whole[-hop:].copy(), flags[-hop:].copy())
        out = np.concatenate([front, back])
        return (out[:hop] if lead else None), out[lead:]


#: Hops just before a hop that the rule's novelty baseline leaves out (``NoveltyMeter``'s
#: ``baseline_lag``): a change raises the distance of the hop where it begins and of the next
#: (whose window still holds it); with the first in the baseline of the second, 11 of 36
#: changes after 1 s of another piece were never caught (distance 0.26-0.37, less 0.12-0.18).
BASELINE_LAG = 1
#: Frames of the old sound ``change_frame`` compares with: the last 160 ms before where it
#: searches.
BEFORE_FRAMES = 8
#: How far back from the hop the rule caught a change at ``change_frame`` searches [hops; at
#: most the window's context]: the hop before too, as novelty may cross the threshold a hop
#: late (a long pre-roll raises its baseline).
LOOKBACK_HOPS = 1
#: A change is looked for in the hop before only where that hop's novelty was above this
#: fraction of the threshold: the new sound already filled part of its window. Elsewhere
#: (novelty 0: no newer than lately) the hop before is the old sound, and a search there split
#: it at its own notes.
LATE_NOVELTY = 0.1


def change_frame(before: np.ndarray, frames: np.ndarray) -> int:
    """Where the sound changed: before [F, P] the frames before the search (mel bands; the last
    ``BEFORE_FRAMES`` are read), frames [H, P] the frames searched (a hop's, or the hop
    before's and its own: a change caught late) → s in 0..H-1, the first frame of the new
    sound.

    The split of those frames into two sounds, each near its own mean, that fits best (least
    squares), among the splits inside the frames searched: one pass of cumulative sums. A
    fresh start at s treats the frames before it as the silence before a stream (``engine``),
    so the music keeps all of its frames and its window none of what came before. Only the last
    frames of the old sound count: with the whole hop before, a note of the old piece that
    began late in it and went on into the hop was split from its own start, and went with the
    new sound.
    """
    before = before[-BEFORE_FRAMES:]
    f = len(before)
    if not f:  # nothing before to tell from
        return 0
    x = np.concatenate([before, frames]).astype(np.float64)  # [F + H, P]
    n = len(x)
    sq = (x**2).sum(axis=1)
    head_sum, head_sq = np.cumsum(x, axis=0), np.cumsum(sq)  # frames 0..t inclusive
    total_sum, total_sq = head_sum[-1], head_sq[-1]
    t = np.arange(f, n)  # the new sound's first frame
    count = t.astype(np.float64)
    a_sum, a_sq = head_sum[t - 1], head_sq[t - 1]
    b_sum, b_sq = total_sum - a_sum, total_sq - a_sq
    cost = (a_sq - (a_sum**2).sum(axis=1) / count
            + b_sq - (b_sum**2).sum(axis=1) / (n - count))
    return int(np.argmin(cost))
