"""Numerical parts of tokenizer v3 (``beat``): R-peak detection, the RR scale, the cycle warp, product codes.

Everything here is numpy on 1-D signals at the tokenizer's rate; :mod:`ecg2llm.tokenizer.beat_tokenizer` puts
them together and :mod:`ecg2llm.tokenizer.training.beat` fits the codes.

* :func:`detect_r_peaks` (in :mod:`ecg2llm.tokenizer.beat_detect`, re-exported here): a neurokit2 detector
  (``neurokit`` by default, the most accurate and fastest of those measured by ``scripts/beat_repeat.py
  --detectors``; computed by a vectorized transcription with the same peaks) on the band, each peak then
  moved to the largest deviation from the local median within ``refine_s``, peaks closer than
  ``refractory_s`` merged (the larger ``|x|`` kept).
* :class:`RRScale`: RR token <-> interval in samples. Exact samples up to ``exact_max`` (1 sample =
  2.8 ms at 360 Hz: finer than beat-to-beat variability), then a geometric scale of ratio ``ratio``
  (0.4 %: 4 ms at 1 s) up to ``max_s``. :meth:`RRScale.encode_positions` quantizes with error feedback on
  the cumulative position, so decoded R positions never drift (each is within half a step of the true
  one, whatever the record's length).
* :func:`warp_cycles` / :func:`unwarp_cycles`: a cycle ``[start, end)`` with its R at ``r`` mapped to a
  fixed ``n_pre + n_post`` samples, piecewise linearly (R always at index ``n_pre``; a cycle of the
  nominal shape, ``r - start == n_pre`` and ``end - r == n_post``, is copied unchanged).
* :class:`ProductCode`: a PCA (KLT) basis, its coefficients split into groups, each group vector
  quantized by its own k-means codebook ("codes where the data is dense"); groups of one coefficient
  are scalar Lloyd-Max quantizers. ``encode`` -> ``(n, groups)`` int codes, ``decode`` -> ``(n, dim)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ecg2llm.core.errors import TokenizerError

from .beat_detect import detect_r_peaks, merge_close, refine_to_extremum  # noqa: F401 (re-exported)

# ----------------------------------------------------------------------------------------- BLAS threads
_BLAS_CONTROLLER = None
CHUNKED_GROUP_MAX = 4  # ProductCode.encode: groups of up to this many coefficients are searched in chunks


def one_blas_thread():
    """Context: numpy's BLAS on one thread. The codes' matrix products are small and many: a second BLAS
    thread spinning at each barrier cost 4x the CPU time of the whole encode on a busy 2-core machine.
    Used where the bits do not depend on it (decode, and the products of small groups in
    :meth:`ProductCode.encode`, whose rounding is the same on any number of threads).
    """
    global _BLAS_CONTROLLER
    from threadpoolctl import ThreadpoolController

    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


# ----------------------------------------------------------------------------------------- RR scale
@dataclass(frozen=True)
class RRScale:
    """RR token id <-> interval in samples (module docstring). ``centers[k]`` is token ``k``'s interval."""

    fs: float
    exact_max: int = 250  # samples coded exactly (0 ... exact_max)
    ratio: float = 1.004  # geometric step beyond
    max_s: float = 6.0

    @property
    def centers(self) -> np.ndarray:
        c = getattr(self, "_centers", None)
        if c is None:
            top = self.max_s * self.fs
            k = int(math.floor(math.log(top / self.exact_max) / math.log(self.ratio)))
            geo = np.round(self.exact_max * self.ratio ** np.arange(1, k + 1)).astype(np.int64)
            c = np.unique(np.concatenate([np.arange(self.exact_max + 1), geo]))
            object.__setattr__(self, "_centers", c)
        return c

    @property
    def size(self) -> int:
        return len(self.centers)

    def quantize(self, samples: np.ndarray) -> np.ndarray:
        """Nearest token of each interval (samples); intervals beyond the range clip to the last token."""
        c = self.centers
        s = np.asarray(samples, np.float64)
        j = np.clip(np.searchsorted(c, s), 1, len(c) - 1)
        lo, hi = c[j - 1], c[j]
        return np.where(s - lo <= hi - s, j - 1, j).astype(np.int64)

    def samples(self, tokens: np.ndarray) -> np.ndarray:
        t = np.asarray(tokens, np.int64)
        if t.size and (t.min() < 0 or t.max() >= self.size):
            raise TokenizerError(f"RR token outside [0, {self.size})")
        return self.centers[t]

    def encode_positions(self, r: np.ndarray, anchors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of consecutive R positions with error feedback -> (tokens, decoded positions).

        ``anchors[i]`` (optional) restarts the chain at beat ``i``: its interval is measured from
        ``anchors[i]`` (a known cursor such as the segment start) instead of the previous decoded R; -1
        means "from the previous decoded R".
        """
        r = np.asarray(r, np.int64)
        toks = np.empty(len(r), np.int64)
        dec = np.empty(len(r), np.int64)
        c = self.centers
        prev = 0
        for i, ri in enumerate(r):
            a = prev if anchors is None or anchors[i] < 0 else int(anchors[i])
            t = int(self.quantize(np.array([ri - a]))[0])
            toks[i], dec[i] = t, a + int(c[t])
            prev = dec[i]
        return toks, dec


# ----------------------------------------------------------------------------------------- cycle warp
def _warp_positions(start, r, end, n_pre: int, n_post: int) -> np.ndarray:
    """Signal positions (float, ``(n, n_pre + n_post)``) sampled by the warp of each cycle:
    ``start + k (r - start) / n_pre`` before R, ``r + k (end - r) / n_post`` from R on."""
    start, r, end = (np.asarray(v, np.float64)[:, None] for v in (start, r, end))
    pos = np.empty((len(start), n_pre + n_post), np.float64)
    pre, post = pos[:, :n_pre], pos[:, n_pre:]
    np.multiply(np.arange(n_pre, dtype=np.float64)[None], r - start, out=pre)
    pre /= n_pre
    pre += start
    np.multiply(np.arange(n_post, dtype=np.float64)[None], end - r, out=post)
    post /= n_post
    post += r
    return pos


def _interp_rows(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Linear interpolation of 1-D ``x`` at float positions ``pos`` (any shape; clipped to the signal).
    ``pos`` is overwritten."""
    np.clip(pos, 0, len(x) - 1, out=pos)
    i0 = pos.astype(np.int64)  # floor: pos >= 0
    pos -= i0
    w = pos.astype(np.float32)
    a = x[i0]
    np.minimum(i0 + 1, len(x) - 1, out=i0)
    b = x[i0]
    a *= 1 - w
    b *= w
    a += b
    return a


def warp_cycles(x: np.ndarray, start: np.ndarray, r: np.ndarray, end: np.ndarray, n_pre: int,
                n_post: int) -> np.ndarray:
    """``(n, n_pre + n_post)`` float32: each cycle ``[start, end)`` of ``x`` resampled around its R."""
    if len(start) == 0:
        return np.zeros((0, n_pre + n_post), np.float32)
    return _interp_rows(np.asarray(x, np.float32), _warp_positions(start, r, end, n_pre, n_post))


def unwarp_cycles(w: np.ndarray, start: np.ndarray, r: np.ndarray, end: np.ndarray, n_pre: int, n_post: int,
                  n_samples: int) -> np.ndarray:
    """Inverse of :func:`warp_cycles`: the cycles' samples placed back on ``[0, n_samples)`` (zero elsewhere).

    Each cycle is two linear ramps of warped position (``[start, r)`` onto ``[0, n_pre)``, ``[r, end)``
    onto ``[n_pre, n_pre + n_post)``), built for all cycles at once and read by linear interpolation.
    """
    out = np.zeros(n_samples, np.float32)
    start, r, end = (np.asarray(v, np.int64) for v in (start, r, end))
    ok = np.minimum(end, n_samples) > start
    if not ok.any():
        return out
    w, start, r, end = np.asarray(w, np.float32)[ok], start[ok], r[ok], end[ok]
    stop = np.minimum(end, n_samples)  # a cycle cut by the signal's end keeps its warp
    m = n_pre + n_post
    # two ramps per cycle: pre [start, min(r, stop)), post [max(r, start), stop)
    t0 = np.stack([start, np.maximum(r, start)], 1).ravel()
    t1 = np.stack([np.minimum(r, stop), stop], 1).ravel()
    lens = np.maximum(t1 - t0, 0)
    slope = np.stack([n_pre / np.maximum(r - start, 1e-9), n_post / np.maximum(end - r, 1e-9)], 1).ravel()
    origin = np.stack([-start * slope[0::2], n_pre - r * slope[1::2]], 1).ravel()  # position at t = 0
    t = np.repeat(t0 - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))  # sample index
    pos = np.repeat(origin, lens) + np.repeat(slope, lens) * t
    np.clip(pos, 0, m - 1, out=pos)
    i0 = pos.astype(np.int64)  # floor: pos >= 0
    f = (pos - i0).astype(np.float32)
    i0 += np.repeat(np.arange(len(start)) * m, lens[0::2] + lens[1::2])  # flat index into w
    i1 = np.minimum(i0 + 1, np.repeat(np.arange(len(start)) * m + m - 1, lens[0::2] + lens[1::2]))
    wf = w.ravel()
    out[t] = wf[i0] * (1 - f) + wf[i1] * f
    return out


# ----------------------------------------------------------------------------------------- product code
def viterbi_sticky(cost: np.ndarray, switch_cost: float, breaks: np.ndarray | None = None) -> np.ndarray:
    """``(n, G, L)`` per-step code costs -> ``(n, G)`` codes minimizing cost + ``switch_cost`` per change.

    Each of the ``G`` groups is an independent chain; ``breaks[t]`` (bool) makes step ``t`` free of the
    switch cost (a new chain: after a fallback stretch or at the segment start).

    The forward pass keeps every step's accumulated costs (``dp[t] = cost[t] + min(dp[t-1], min dp[t-1] +
    switch)``: four array operations a step); the choices (stay or switch to the best code) are then read
    off all steps at once, and the backward pass follows them. Ties go as a step-by-step Viterbi that stays
    on ``dp <= min + switch`` and switches to the first best code.
    """
    n, g, L = cost.shape
    hist = np.empty((n, g, L), np.float64)  # accumulated cost of each code at each step
    hist[0] = cost[0]
    sw = np.empty((n, g), np.float64)  # the cost of switching into step t (min of step t - 1 + switch)
    sw[0] = 0.0
    add = np.full(n, float(switch_cost))
    if breaks is not None:
        add[np.asarray(breaks, bool)] = 0.0
    tmp = np.empty((g, L), np.float64)
    for t in range(1, n):
        prev = hist[t - 1]
        s = prev.min(1)
        s += add[t]
        sw[t] = s
        np.minimum(prev, s[:, None], out=tmp)
        np.add(cost[t], tmp, out=hist[t])
    out = np.empty((n, g), np.int64)
    if n == 1:
        out[0] = hist[0].argmin(1)
        return out
    best = hist[:-1].argmin(2)  # (n - 1, G): the code to switch from into step t + 1
    stay = hist[:-1] <= sw[1:, :, None]  # (n - 1, G, L)
    c = hist[-1].argmin(1)
    rows = np.arange(g)
    out[n - 1] = c
    for t in range(n - 2, -1, -1):
        c = np.where(stay[t, rows, c], c, best[t])
        out[t] = c
    return out


class ProductCode:
    """PCA basis + per-group k-means codebooks (module docstring). Arrays only; fitted by ``fit``.

    Attributes: ``mean`` (D,), ``basis`` (P, D) orthonormal rows, ``groups`` list of group sizes summing to
    P, ``codebooks`` (G, L, gmax) float32 (rows of a group of size g use the first g columns).
    """

    def __init__(self, mean: np.ndarray, basis: np.ndarray, groups: list[int], codebooks: np.ndarray):
        self.mean = np.asarray(mean, np.float32)
        self.basis = np.asarray(basis, np.float32)
        self.groups = [int(g) for g in groups]
        self.codebooks = np.asarray(codebooks, np.float32)
        self.bounds = np.concatenate([[0], np.cumsum(self.groups)]).astype(int)
        self._norms = (self.codebooks ** 2).sum(-1)  # (G, L)

    @property
    def n_codes(self) -> int:
        return self.codebooks.shape[1]

    def project(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float32) - self.mean) @ self.basis.T  # (n, P)

    def encode(self, x: np.ndarray, chunk: int = 256) -> np.ndarray:
        """``(n, D)`` -> ``(n, G)`` int64 codes (nearest codeword of each group).

        Groups of up to :data:`CHUNKED_GROUP_MAX` coefficients compute their distances (``||c||^2 - 2 z.c``,
        ``||z||^2`` dropped) ``chunk`` rows at a time into one buffer that stays in cache, on one BLAS thread
        (a whole record's ``(n, 1024)`` distances per group did not fit, and cost more to write and read than
        to compute). Their products give the same bits as the one-shot product on any number of threads, as
        long as no chunk is a single row (numpy then calls a matrix-vector routine, whose rounding differs):
        a last chunk of one row joins the one before. Larger groups and the projection keep the one-shot
        product: OpenBLAS rounds those differently on one thread than on several, and the shipped ids are
        those of the one-shot products on the default threads (``tests/test_beat_pin.py``).
        """
        z = self.project(x)
        n = len(z)
        out = np.empty((n, len(self.groups)), np.int64)
        fast = [j for j, g in enumerate(self.groups) if g <= CHUNKED_GROUP_MAX] if n >= 2 * chunk else []
        for j, (a, b) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
            if j not in fast:  # main's product (2 z) @ c.T, the norms minus it in place (the same values)
                d = np.matmul(2.0 * z[:, a:b], self.codebooks[j, :, : b - a].T)  # (n, L), ||z||^2 dropped
                np.subtract(self._norms[j][None], d, out=d)
                out[:, j] = np.argmin(d, axis=1)
        if fast:
            edges = list(range(0, n, chunk)) + [n]
            if edges[-1] - edges[-2] == 1:  # never a one-row product
                del edges[-2]
            buf = np.empty((chunk + 1, self.n_codes), np.float32)
            with one_blas_thread():
                for j in fast:
                    a, b = self.bounds[j], self.bounds[j + 1]
                    cbt = self.codebooks[j, :, : b - a].T  # (g, L), the same view as the one-shot product
                    for s, e in zip(edges[:-1], edges[1:]):
                        d = np.matmul(2.0 * z[s:e, a:b], cbt, out=buf[: e - s])
                        np.subtract(self._norms[j], d, out=d)
                        out[s:e, j] = d.argmin(1)
        return out

    def costs(self, x: np.ndarray) -> np.ndarray:
        """``(n, D)`` -> ``(n, G, L)`` squared error of each codeword of each group (float32)."""
        z = self.project(x)
        out = np.empty((len(z), len(self.groups), self.n_codes), np.float32)
        for j, (a, b) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
            cb = self.codebooks[j, :, : b - a]  # (L, g)
            out[:, j] = (z[:, a:b] ** 2).sum(1, keepdims=True) - 2.0 * z[:, a:b] @ cb.T + self._norms[j][None]
        return np.maximum(out, 0)

    def encode_sticky(self, x: np.ndarray, switch_cost: float, breaks: np.ndarray | None = None) -> np.ndarray:
        """Codes of a *sequence* of vectors that change only where it pays: per group, the codes minimizing
        ``sum_t ||z_t - c_t||^2 + switch_cost * #{t: c_t != c_(t-1)}`` (Viterbi over the sequence; a
        ``breaks[t]`` row starts a new chain). ``switch_cost = 0`` is :meth:`encode`."""
        if switch_cost <= 0 or len(x) < 2:
            return self.encode(x)
        return viterbi_sticky(self.costs(x), float(switch_cost), breaks)

    def coefficients(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, np.int64)
        z = np.empty((len(codes), int(self.bounds[-1])), np.float32)
        for j, (a, b) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
            z[:, a:b] = self.codebooks[j, codes[:, j], : b - a]
        return z

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """``(n, G)`` codes -> ``(n, D)`` float32."""
        return self.coefficients(codes) @ self.basis + self.mean

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.mean": self.mean, f"{prefix}.basis": self.basis, f"{prefix}.codebooks": self.codebooks}

    @staticmethod
    def shapes(dim: int, groups: list[int], n_codes: int) -> dict[str, tuple[int, ...]]:
        return {"mean": (dim,), "basis": (sum(groups), dim), "codebooks": (len(groups), n_codes, max(groups))}
