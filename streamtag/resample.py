"""Streaming polyphase resampling whose output equals the offline resampler's.

The filter is the one ``scipy.signal.resample_poly`` designs (Kaiser-windowed sinc, half length
``10 * max(up, down)`` taps in the upsampled domain; ``design_filter`` computes scipy's numbers,
bit for bit up to scipy 1.16 and to the last bit since, without importing scipy.signal, which
costs ~0.9 s at start-up), applied causally: output sample
``m`` is ``sum_j h[p mod up + j*up] * x[p // up - j]`` with ``p = m * down``, exactly what
``scipy.signal.upfirdn(h, x, up, down)`` computes. Fed any block sizes, the streaming output
equals ``upfirdn`` over the whole signal (the same products, summed in one fixed order whatever
the block sizes; to ~1e-15 of upfirdn's own order), and its delay is declared:
``delay_out_samples``.

How: the outputs are cut into rows of ``period_out`` outputs (whole periods of the phase pattern,
>= ``GEMM_BLOCK``), one row every ``period_in`` inputs, counted from the stream's start. A row's
columns fall into G groups of ~``GEMM_BLOCK`` outputs; a group's outputs meet a short span of the
row's inputs, so each group is a matrix product: [rows, span] inputs @ [span, columns] taps (each
column its output's taps at its offset, zeros elsewhere; all groups padded to one span and
width). BLAS runs these 1.9× (44.1 kHz mono) to 5× (48 kHz stereo) faster than one short dot
product per output. Every product has one of two shapes (``rows_per_product`` rows for long runs,
``SMALL_ROWS`` for short live blocks; zero rows pad the last), and each output sits in a fixed
column of its group whatever the blocks: its value is the same chain of multiply-adds over its
taps, oldest first (the zero coefficients add exact zeros), bit for bit whatever the block sizes
(tests feed many), equal to upfirdn to rounding (BLAS fuses multiply and add).

Memory is bounded whatever the block size: a long block is resampled in runs of ``run_in`` input
samples (whole long products, ~``MAX_RUN_IN``: 1 s at 48 kHz); a run's row copies take
~2 MB at most (48 kHz stereo).
"""

from __future__ import annotations

from itertools import pairwise
from math import gcd

import numpy as np

#: The longest run of input samples [per channel] resampled at once, roughly (``run_in``).
MAX_RUN_IN = 2**14
#: Outputs per column group of a row (see the module docstring).
GEMM_BLOCK = 16
#: Multiply-adds per matrix product, at most: rows × columns × span below OpenBLAS's threshold for
#: running one product on several threads (65536 · 4), which here only costs (the cores are busy).
GEMM_MACS = 200_000
#: Rows of the products that short blocks take (a live block: a row or two).
SMALL_ROWS = 4


def kaiser_beta_firwin(n_taps: int, cutoff: float, beta: float) -> np.ndarray:
    """``scipy.signal.firwin(n_taps, cutoff, window=("kaiser", beta))`` [n_taps], the same
    floating-point operations (a test checks it; scipy ≥ 1.17's window takes its Bessel
    function from scipy.special, which differs from numpy's in the last bit): a windowed sinc
    low-pass, cutoff as a fraction of Nyquist, scaled to unity gain at DC."""
    alpha = 0.5 * (n_taps - 1)
    m = np.arange(0, n_taps) - alpha
    # firwin sums right · sinc(right · m) − left · sinc(left · m) over its bands: here one band,
    # left = 0, which adds exact zeros.
    h = cutoff * np.sinc(cutoff * m)
    h *= _kaiser(n_taps, beta)
    # Scale so the response at DC (the centre of the single pass band) is 1; firwin multiplies
    # by cos(0) = 1 first, exactly.
    return h / np.sum(h)


def _kaiser(m: int, beta: float) -> np.ndarray:
    """``scipy.signal.windows.kaiser(m, beta, sym=True)``: the same operations."""
    n = np.arange(0, m)
    alpha = (m - 1) / 2.0
    return np.i0(beta * np.sqrt(1 - ((n - alpha) / alpha) ** 2.0)) / np.i0(float(beta))


def design_filter(up: int, down: int) -> np.ndarray:
    """Anti-aliasing low-pass [L] for rational resampling by up/down, gain ``up``."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = kaiser_beta_firwin(2 * half_len + 1, 1.0 / max_rate, 5.0)
    return h * up


class Resampler:
    """Causal rational resampler from ``rate_in_hz`` to ``rate_out_hz`` with explicit state."""

    def __init__(self, rate_in_hz: int, rate_out_hz: int) -> None:
        if rate_in_hz <= 0 or rate_out_hz <= 0:
            raise ValueError(f"sample rates must be > 0, got {rate_in_hz} → {rate_out_hz}")
        g = gcd(int(rate_in_hz), int(rate_out_hz))
        self.up, self.down = int(rate_out_hz) // g, int(rate_in_hz) // g
        self.h = design_filter(self.up, self.down)
        taps = -(-self.h.size // self.up)  # taps per phase
        padded = np.zeros(taps * self.up)
        padded[: self.h.size] = self.h
        # phases_rev[p, t] = h[p + (taps - 1 - t)·up]: the taps that meet a window of consecutive
        # inputs x[n - taps + 1 .. n] (oldest first) for an output at phase p.
        self._phases_rev = padded.reshape(taps, self.up).T[:, ::-1].copy()
        self._taps = taps
        # Rows: whole periods of the phase pattern, >= GEMM_BLOCK outputs.
        self.period_out = self.up * -(-GEMM_BLOCK // self.up)
        self.period_in = self.period_out * self.down // self.up
        n_groups = max(1, round(self.period_out / GEMM_BLOCK))
        bounds = [round(i * self.period_out / n_groups) for i in range(n_groups + 1)]
        # Group g: columns bounds[g] .. bounds[g+1] - 1 of a row; their outputs meet the row's
        # inputs lo[g] .. lo[g] + span - 1 (from the row's first input, j · period_in), with the
        # taps _taps3[g] [span, columns]. Groups share one shape (the widest; zeros beyond), so
        # one batched product serves them all.
        last_in = np.arange(self.period_out) * self.down // self.up  # each output's newest input
        lo = np.array([last_in[c0] - taps + 1 for c0 in bounds[:-1]])
        span = max(int(last_in[c1 - 1] - lo[g] + 1) for g, (c0, c1) in enumerate(pairwise(bounds)))
        width = max(c1 - c0 for c0, c1 in pairwise(bounds))
        self._taps3 = np.zeros((n_groups, span, width))
        self._cols = np.empty(self.period_out, np.int64)  # output column → its [group · width + i]
        for g, (c0, c1) in enumerate(pairwise(bounds)):
            for i, col in enumerate(range(c0, c1)):
                k = int(last_in[col] - lo[g]) - taps + 1
                self._taps3[g, k:k + taps, i] = self._phases_rev[col * self.down % self.up]
                self._cols[col] = g * width + i
        self._offsets = lo[:, None] + np.arange(span)  # [G, span] inputs of a group's row
        self._row_end = int(self._offsets[:, -1].max()) + 1  # inputs a row meets, from its first
        self._rows_per_product = max(SMALL_ROWS, GEMM_MACS // (span * width) // 4 * 4)
        # The history kept: enough for the first row a run touches (see _run).
        self._hist_len = taps - 1 + self.period_in
        # Runs of whole long products (per channel), so offline runs pad none.
        per_product = self.period_in * self._rows_per_product
        self.run_in = per_product * max(1, MAX_RUN_IN // per_product)
        self.reset()

    @property
    def delay_out_samples(self) -> float:
        """Group delay of the filter [output samples]."""
        return (self.h.size - 1) / (2 * self.down)

    @property
    def inputs_consumed(self) -> int:
        """Input samples fed so far (per channel)."""
        return self._n_in

    @property
    def outputs_produced(self) -> int:
        """Output samples returned so far (per channel)."""
        return self._m_out

    def reset(self) -> None:
        self._hist: np.ndarray | None = None  # [C, hist_len] last inputs, zeros before the start
        self._n_in = 0  # inputs consumed so far (per channel)
        self._m_out = 0  # outputs produced so far

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed input samples [n] (or [C, n]: independent channels); return every output sample
        they complete, [m] (or [C, m]). Any length: long blocks go in runs of ``run_in``."""
        x = np.asarray(x)  # float32 stays so until each run joins the float64 history
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        mono = x.ndim == 1
        x2 = x[None, :] if mono else x
        if x2.shape[1] <= self.run_in:
            out = self._run(x2)
        else:
            out = np.concatenate([self._run(x2[:, i:i + self.run_in])
                                  for i in range(0, x2.shape[1], self.run_in)], axis=1)
        return out[0] if mono else out

    def _run(self, x2: np.ndarray) -> np.ndarray:
        """One run of inputs [C, n] (n <= run_in) → the outputs [C, m] they complete."""
        c = x2.shape[0]
        if self._hist is None or self._hist.shape[0] != c:
            self._hist = np.zeros((c, self._hist_len))
        buf = np.concatenate([self._hist, x2], axis=1)
        base = self._n_in - self._hist_len  # stream index of buf[:, 0]
        self._n_in += x2.shape[1]
        self._hist = buf[:, buf.shape[1] - self._hist_len:]
        # Output m needs inputs up to floor(m*down/up) < n_in.
        m_end = -(-self._n_in * self.up // self.down)  # first m with m*down >= n_in*up
        m0, self._m_out = self._m_out, int(m_end)
        if m_end <= m0:
            return np.zeros((c, 0))
        # The rows j0 .. j1 - 1 that hold outputs m0 .. m_end - 1. Row j0 starts less than
        # period_in inputs before the first input of this run (m0 < (j0 + 1) · period_out, and
        # m0 · down / up >= the inputs before the run), and its first output meets taps - 1
        # inputs before its start: the history (taps - 1 + period_in inputs) holds them all.
        j0, j1 = m0 // self.period_out, -(-m_end // self.period_out)
        rows = j1 - j0
        row0 = j0 * self.period_in - base  # buf index of row j0's first input
        g, span, width = self._taps3.shape
        need = row0 + (rows - 1) * self.period_in + self._row_end
        if buf.shape[1] < need:  # the last row's inputs still to come: zeros, outputs not kept
            buf = np.concatenate([buf, np.zeros((c, need - buf.shape[1]))], axis=1)
        # Rows (channel by channel) in products of rows_per_product rows, the rest in products of
        # SMALL_ROWS (short blocks: live input), zeros below the last: two shapes, the same bits.
        n, r = c * rows, self._rows_per_product
        full = n // r * r
        if n - full > 4 * SMALL_ROWS:  # more than a few rows left: one more long product
            full += r
        n_pad = max(full, n) + -(-max(0, n - full) // SMALL_ROWS) * SMALL_ROWS
        z = np.empty((g, n_pad, span))  # [G, rows, span]: each group's inputs, row by row
        if n > 4 * SMALL_ROWS:  # long runs: each group's rows, a strided view, copied
            s0, s1 = buf.strides
            for k in range(g):
                z[k, :n].reshape(c, rows, span)[...] = np.ndarray(
                    (c, rows, span), buf.dtype, buf, (row0 + int(self._offsets[k, 0])) * s1,
                    (s0, self.period_in * s1, s1))
        else:  # a few rows: gathered at once (many groups at 8, 16, 32 kHz)
            starts = (np.arange(c)[:, None] * buf.shape[1] + row0
                      + np.arange(rows) * self.period_in).reshape(n)
            z[:, :n] = np.ascontiguousarray(buf).reshape(-1)[starts[None, :, None]
                                                             + self._offsets[:, None, :]]
        z[:, n:] = 0.0
        res = np.empty((g, n_pad, width))
        taps3 = self._taps3
        for i in range(0, full, r):  # numpy's batched product costs more than G plain ones here
            for k in range(g):
                np.matmul(z[k, i:i + r], taps3[k], out=res[k, i:i + r])
        for i in range(full, n_pad, SMALL_ROWS):  # the same products of each group, batched
            np.matmul(z[:, i:i + SMALL_ROWS], taps3, out=res[:, i:i + SMALL_ROWS])
        if g == 1:  # whole-factor downsampling: one group, its columns in order
            out = res[0, :n]
        else:  # [G, rows, width] → [rows, G · width] → the row's columns in order
            out = res[:, :n].transpose(1, 0, 2).reshape(n, g * width)[:, self._cols]
        first = m0 - j0 * self.period_out
        return out.reshape(c, rows * self.period_out)[:, first:first + m_end - m0]
