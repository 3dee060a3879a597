"""Numerical parts of tokenizer v3 (``beat``): R-peak detection, the RR scale, the cycle warp, product codes.

Everything here is numpy on 1-D signals at the tokenizer's rate; :mod:`tokenizer.beat_tokenizer` puts
them together and :mod:`tokenizer.training.beat` fits the codes.

* :func:`detect_r_peaks`: a neurokit2 detector (``kalidas2017`` by default, the fastest accurate one
  measured: ``scripts/beat_repeat.py --detectors``) on the band, each peak then moved to the largest
  deviation from the local median within ``refine_s`` (as :func:`tokenizer.ecg.refine_peaks` does for
  annotated beats), peaks closer than ``refractory_s`` merged (the larger deviation kept).
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
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import TokenizerError


# ----------------------------------------------------------------------------------------- R peaks
def refine_to_extremum(x: np.ndarray, approx: np.ndarray, radius: int) -> np.ndarray:
    """Move each index in ``approx`` to the largest ``|x - median|`` within ``radius`` samples (vectorized)."""
    approx = np.asarray(approx, np.int64)
    if len(approx) == 0 or radius < 1:
        return approx.copy()
    n = len(x)
    xp = np.pad(np.asarray(x, np.float32), radius, mode="edge")
    idx = np.clip(approx, 0, n - 1)[:, None] + np.arange(2 * radius + 1)  # (B, W) indices into xp
    win = xp[idx]  # (B, W)
    dev = np.abs(win - np.median(win, axis=1, keepdims=True))
    out = idx[np.arange(len(idx)), np.argmax(dev, axis=1)] - radius
    return np.clip(out, 0, n - 1)


def merge_close(x: np.ndarray, peaks: np.ndarray, min_gap: int) -> np.ndarray:
    """Sorted unique peaks, of any two closer than ``min_gap`` samples the one of larger ``|x|`` kept."""
    peaks = np.unique(np.asarray(peaks, np.int64))
    if len(peaks) < 2 or min_gap < 1:
        return peaks
    keep = [int(peaks[0])]
    for p in peaks[1:]:
        if p - keep[-1] < min_gap:
            if abs(x[p]) > abs(x[keep[-1]]):
                keep[-1] = int(p)
        else:
            keep.append(int(p))
    return np.asarray(keep, np.int64)


def detect_r_peaks(band: np.ndarray, fs: float, method: str = "kalidas2017", refine_s: float = 0.05,
                   refractory_s: float = 0.2) -> np.ndarray:
    """R peaks of a 1-D band signal (mV at ``fs``) -> sorted int64 sample indices (may be empty).

    A detector that fails on a signal without beats (a flat line, pure noise) gives no peaks rather than
    an exception; the tokenizer then codes the stretch with fallback units.
    """
    import neurokit2 as nk

    x = np.asarray(band, np.float64)
    if len(x) < int(fs) or float(np.ptp(x)) < 1e-6:
        return np.zeros(0, np.int64)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            info = nk.ecg_findpeaks(x, sampling_rate=int(round(fs)), method=method)
        peaks = np.asarray(info.get("ECG_R_Peaks", []), np.int64)
    except (ValueError, IndexError, ZeroDivisionError, FloatingPointError):
        peaks = np.zeros(0, np.int64)
    peaks = peaks[(peaks >= 0) & (peaks < len(x))]
    peaks = refine_to_extremum(x, peaks, int(round(refine_s * fs)))
    return merge_close(x, peaks, int(round(refractory_s * fs)))


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
    """Signal positions (float, ``(n, n_pre + n_post)``) sampled by the warp of each cycle."""
    start, r, end = (np.asarray(v, np.float64)[:, None] for v in (start, r, end))
    k_pre = np.arange(n_pre, dtype=np.float64)[None]
    k_post = np.arange(n_post, dtype=np.float64)[None]
    pre = start + k_pre * (r - start) / n_pre  # (n, n_pre)
    post = r + k_post * (end - r) / n_post  # (n, n_post)
    return np.concatenate([pre, post], axis=1)


def _interp_rows(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Linear interpolation of 1-D ``x`` at float positions ``pos`` (any shape; clipped to the signal)."""
    pos = np.clip(pos, 0, len(x) - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, len(x) - 1)
    w = (pos - i0).astype(np.float32)
    return x[i0] * (1 - w) + x[i1] * w


def warp_cycles(x: np.ndarray, start: np.ndarray, r: np.ndarray, end: np.ndarray, n_pre: int,
                n_post: int) -> np.ndarray:
    """``(n, n_pre + n_post)`` float32: each cycle ``[start, end)`` of ``x`` resampled around its R."""
    if len(start) == 0:
        return np.zeros((0, n_pre + n_post), np.float32)
    return _interp_rows(np.asarray(x, np.float32), _warp_positions(start, r, end, n_pre, n_post))


def unwarp_cycles(w: np.ndarray, start: np.ndarray, r: np.ndarray, end: np.ndarray, n_pre: int, n_post: int,
                  n_samples: int) -> np.ndarray:
    """Inverse of :func:`warp_cycles`: the cycles' samples placed back on ``[0, n_samples)`` (zero elsewhere)."""
    out = np.zeros(n_samples, np.float32)
    start, r, end = (np.asarray(v, np.int64) for v in (start, r, end))
    lens = np.clip(end, 0, n_samples) - start
    ok = lens > 0
    if not ok.any():
        return out
    w, start, r, end, lens = w[ok], start[ok], r[ok], end[ok], lens[ok]
    cyc = np.repeat(np.arange(len(start)), lens)  # cycle of each covered sample
    t = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(start, lens)  # sample index
    s_, r_, e_ = start[cyc].astype(np.float64), r[cyc].astype(np.float64), end[cyc].astype(np.float64)
    pre_pos = (t - s_) * n_pre / np.maximum(r_ - s_, 1e-9)
    post_pos = n_pre + (t - r_) * n_post / np.maximum(e_ - r_, 1e-9)
    pos = np.where(t < r_, pre_pos, post_pos)
    m = n_pre + n_post
    pos = np.clip(pos, 0, m - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, m - 1)
    f = (pos - i0).astype(np.float32)
    out[t] = w[cyc, i0] * (1 - f) + w[cyc, i1] * f
    return out


# ----------------------------------------------------------------------------------------- product code
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

    def encode(self, x: np.ndarray) -> np.ndarray:
        """``(n, D)`` -> ``(n, G)`` int64 codes (nearest codeword of each group)."""
        z = self.project(x)
        out = np.empty((len(z), len(self.groups)), np.int64)
        for j, (a, b) in enumerate(zip(self.bounds[:-1], self.bounds[1:])):
            cb = self.codebooks[j, :, : b - a]  # (L, g)
            d = self._norms[j][None] - 2.0 * z[:, a:b] @ cb.T  # (n, L), ||z||^2 dropped
            out[:, j] = np.argmin(d, axis=1)
        return out

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
