"""Streaming polyphase resampling whose output equals the offline resampler's.

The filter is the one ``scipy.signal.resample_poly`` designs (Kaiser-windowed sinc, half length
``10 * max(up, down)`` taps in the upsampled domain), applied causally: output sample ``m`` is
``sum_j h[p mod up + j*up] * x[p // up - j]`` with ``p = m * down``, exactly what
``scipy.signal.upfirdn(h, x, up, down)`` computes. Fed any block sizes, the streaming output
equals ``upfirdn`` over the whole signal (the same products, summed in one fixed order whatever
the block sizes; to ~1e-15 of upfirdn's own order), and its delay is declared:
``delay_out_samples``.

Memory is bounded whatever the block size: a long block is resampled in runs of at most
``MAX_RUN_IN`` input samples (``run_in``); the per-output tap and window arrays are built per
run (~2.6 MB at 48 → 22.05 kHz) instead of for the whole block (~350 bytes per output sample).
The output is the same, bit for bit, since each output's products are summed in the same order.

Downsampling by a whole factor (``up == 1``: 44.1, 88.2 kHz → 22.05 kHz) runs as one matrix
product per ``GEMM_ROWS`` blocks of ``GEMM_BLOCK`` outputs: each row holds the inputs the block
meets, the matrix the filter shifted by ``down`` per column (zeros elsewhere). ~2× faster than
the per-output dot products (BLAS instead of one short inner loop per output). Every product has
the same shape, so each output is the same chain of multiply-adds over its taps, oldest first,
wherever it falls in a row (the zero coefficients add exact zeros): bit for bit the same whatever
the block sizes (a test feeds many), and equal to upfirdn to rounding (fused multiply-adds).
"""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import firwin

#: The longest run of input samples [per channel] resampled at once (see the module docstring).
MAX_RUN_IN = 2**14
#: Outputs per row of the matrix product (``up == 1``, see the module docstring), and the rows
#: per product: fixed, so every product has one shape (and BLAS runs it on one thread: rows ×
#: block × (taps + down·(block − 1)) stays under OpenBLAS's threading threshold, 65536 · 4).
GEMM_BLOCK = 16
GEMM_MACS = 200_000
#: Tap patterns cached at most (live blocks repeat their size; so do the offline runs, see
#: ``run_in``): [bytes], the cache is emptied beyond.
_CACHE_MAX_BYTES = 32 * 2**20


def design_filter(up: int, down: int) -> np.ndarray:
    """Anti-aliasing low-pass [L] for rational resampling by up/down, gain ``up``."""
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0))
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
        # phases[p, j] = h[p + j*up]: the taps that meet x[n - j] for an output at phase p.
        self._phases = padded.reshape(taps, self.up).T.copy()
        # The same, oldest input first, to meet a window of consecutive inputs x[n-taps+1..n].
        self._phases_rev = self._phases[:, ::-1].copy()
        self._taps = taps
        if self.up == 1:
            # _toeplitz[k, i] = h[taps - 1 - (k - down·i)]: output i of a row meets its inputs
            # k = down·i .. down·i + taps - 1, oldest first.
            b = GEMM_BLOCK
            self._row_in = self.down * (b - 1) + taps  # inputs one row meets
            self._toeplitz = np.zeros((self._row_in, b))
            for i in range(b):
                self._toeplitz[self.down * i:self.down * i + taps, i] = self._phases_rev[0]
            self._gemm_rows = max(4, GEMM_MACS // (b * self._row_in) // 4 * 4)
        self._patterns: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, int]] = {}
        self._pattern_bytes = 0
        # Runs of whole periods of `down` inputs: fed in multiples of run_in, every run starts
        # at the same output phase, so all share one tap pattern.
        self.run_in = self.down * max(1, MAX_RUN_IN // self.down)
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

    def _pattern(self, r: int, count: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Outputs r .. r + count - 1 → their taps [M, taps], the offsets [M] of the first
        inputs they meet relative to the first output's, and that input's offset (plus
        taps - 1) from input 0. The phase pattern repeats every ``up`` outputs. Cached:
        a live input feeds the same block size again and again (48 kHz → 22.05 kHz: each
        frame is 3 whole periods)."""
        key = (r, count)
        hit = self._patterns.get(key)
        if hit is None:
            p = np.arange(r, r + count, dtype=np.int64) * self.down
            nmax = p // self.up
            hit = (self._phases_rev[p - nmax * self.up], nmax - nmax[0], int(nmax[0]))
            size = hit[0].nbytes + hit[1].nbytes
            if len(self._patterns) >= 16 or self._pattern_bytes + size > _CACHE_MAX_BYTES:
                self._patterns.clear()  # block sizes that keep changing: a small cache
                self._pattern_bytes = 0
            self._patterns[key] = hit
            self._pattern_bytes += size
        return hit

    def reset(self) -> None:
        self._hist: np.ndarray | None = None  # [C, taps-1] last inputs, zeros before the start
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
        if self._hist is None or self._hist.shape[0] != x2.shape[0]:
            self._hist = np.zeros((x2.shape[0], self._taps - 1))
        buf = np.concatenate([self._hist, x2], axis=1)
        base = self._n_in - (self._taps - 1)  # stream index of buf[:, 0]
        self._n_in += x2.shape[1]
        # Output m needs inputs up to floor(m*down/up) < n_in.
        m_end = -(-self._n_in * self.up // self.down)  # first m with m*down >= n_in*up
        self._hist = buf[:, buf.shape[1] - (self._taps - 1):]
        count = int(m_end) - self._m_out
        if count <= 0:
            return np.zeros((x2.shape[0], 0))
        q, r = divmod(self._m_out, self.up)
        self._m_out = int(m_end)
        coefs, starts, offset = self._pattern(r, count)
        # Output q*up + r + i meets inputs n - taps + 1 .. n with n = (m * down) // up
        # = q*down + ((r + i) * down) // up: the first of them is buf[first + starts[i]].
        first = q * self.down + offset - base - (self._taps - 1)
        if self.up == 1:
            return self._run_gemm(buf, first, count)
        c, length = buf.shape
        s0, s1 = buf.strides  # buf is a fresh C-contiguous array: a sliding-window view of it
        windows = np.ndarray((c, length - first - self._taps + 1, self._taps), buf.dtype, buf,
                             first * s1, (s0, s1, s1))
        if count < 4 * self.up:
            # [C, M, taps]: copied row by row, much cheaper than gathering M × taps elements.
            return np.einsum("mt,cmt->cm", coefs, windows[:, starts])
        # Outputs i, i + up, i + 2·up … start `down` inputs apart: each such class is a strided
        # view of the windows, with no copy (8× faster at 44.1 → 22.05 kHz, where up = 1). The
        # products and the order of their sums are the same as above, bit for bit.
        out = np.empty((c, count))
        for k in range(self.up):
            n_k = len(range(k, count, self.up))
            out[:, k::self.up] = np.einsum("mt,cmt->cm", coefs[k::self.up],
                                           windows[:, starts[k]::self.down][:, :n_k])
        return out

    def _run_gemm(self, buf: np.ndarray, first: int, count: int) -> np.ndarray:
        """``up == 1``: outputs [C, count] whose first meets inputs buf[:, first:first + taps],
        the next ``down`` inputs later, and so on; by matrix products of one fixed shape."""
        c = buf.shape[0]
        b, rows_per = GEMM_BLOCK, self._gemm_rows
        rows = -(-count // b)
        step = self.down * b  # inputs between the first inputs of consecutive rows
        need = first + step * (rows - 1) + self._row_in
        if buf.shape[1] < need:  # the last row's tail, beyond the inputs: zeros, not used
            buf = np.concatenate([buf, np.zeros((c, need - buf.shape[1]))], axis=1)
        s0, s1 = buf.strides
        # rows of inputs [C, rows, row_in]: overlapping, so copied chunk by chunk below.
        z = np.ndarray((c, rows, self._row_in), buf.dtype, buf, first * s1, (s0, step * s1, s1))
        chunk = np.empty((rows_per, self._row_in))
        prod = np.empty((rows_per, b))
        out = np.empty((c, rows * b))
        for ch in range(c):
            for r0 in range(0, rows, rows_per):
                n = min(rows_per, rows - r0)
                chunk[:n] = z[ch, r0:r0 + n]
                if n < rows_per:
                    chunk[n:] = 0.0
                np.matmul(chunk, self._toeplitz, out=prod)
                out[ch, r0 * b:(r0 + n) * b] = prod[:n].ravel()
        return out[:, :count]
