"""R-peak detection of tokenizer v3 (``beat``): neurokit2's ``neurokit`` method, without its per-beat overhead.

:func:`detect_r_peaks` runs a neurokit2 detector on the band, moves each peak to the largest deviation from
the local median within ``refine_s`` (as :func:`ecg2llm.tokenizer.ecg.refine_peaks` does for annotated
beats) and merges peaks closer than ``refractory_s`` (the larger ``|x|`` kept).

The ``neurokit`` method (the tokenizer's default) is computed by :func:`neurokit_peaks`, a transcription of
``neurokit2.ecg.ecg_findpeaks._ecg_findpeaks_neurokit`` (neurokit2 0.2.7 - 0.3.x) that gives the **same
peaks, bit for bit** (``tests/test_beat_detect.py`` compares them on MIT-BIH records), at about 3x the
speed: neurokit2 calls ``scipy.signal.find_peaks`` once per QRS complex, whose argument checks cost more
than the search; here the loop calls the two compiled routines ``find_peaks`` itself calls
(``_local_maxima_1d``, ``_peak_prominences``). Where those private scipy names are missing the loop uses
``find_peaks``. Other methods go through ``neurokit2.ecg_findpeaks``.
"""
from __future__ import annotations

import warnings

import numpy as np

try:  # the compiled routines behind scipy.signal.find_peaks(x, prominence=(None, None))
    from scipy.signal._peak_finding_utils import _local_maxima_1d, _peak_prominences
except ImportError:  # pragma: no cover - a scipy that moved them: the public (slower) call
    _local_maxima_1d = _peak_prominences = None


def _most_prominent(data: np.ndarray) -> int:
    """Index of the most prominent local maximum of ``data`` (float64, contiguous), -1 if none: what
    ``argmax(find_peaks(data, prominence=(None, None))[1]["prominences"])`` selects."""
    if _local_maxima_1d is None:  # pragma: no cover
        from scipy.signal import find_peaks

        locmax, props = find_peaks(data, prominence=(None, None))
        return int(locmax[np.argmax(props["prominences"])]) if locmax.size else -1
    locmax = _local_maxima_1d(data)[0]
    if locmax.size == 0:
        return -1
    prom = _peak_prominences(data, locmax, -1)[0]
    return int(locmax[np.argmax(prom)])


def most_prominent_peaks(x: np.ndarray, beg: np.ndarray, end: np.ndarray, width: int = 128) -> np.ndarray:
    """Per segment ``x[beg[i]:end[i]]`` (sorted, disjoint): the position in ``x`` of its most prominent local
    maximum, -1 where it has none; what :func:`_most_prominent` gives segment by segment, for all at once.

    As ``scipy.signal.find_peaks``: a local maximum is a run of equal values (its middle sample, rounded
    down) with a lower sample on both sides, all inside the segment; its prominence (no ``wlen``) is its
    height minus the larger of the minima on either side, each taken up to the nearest strictly higher
    sample or the segment's end; the first of equal prominences wins. Segments longer than ``width`` go
    through :func:`_most_prominent` one at a time.
    """
    x = np.ascontiguousarray(x, np.float64)
    beg, end = np.asarray(beg, np.int64), np.asarray(end, np.int64)
    out = np.full(len(beg), -1, np.int64)
    lens = end - beg
    long_seg = lens > width
    short = np.flatnonzero(~long_seg & (lens >= 3))
    if len(short):
        # the short segments' samples end to end; runs of equal values, cut at segment starts
        ln = lens[short]
        first = np.cumsum(ln) - ln
        total = int(ln.sum())
        y = x[np.repeat(beg[short] - first, ln) + np.arange(total)]
        starts = np.zeros(total + 1, bool)
        starts[first] = True
        starts[total] = True
        new_run = starts[:-1].copy()
        new_run[1:] |= y[1:] != y[:-1]
        run_l = np.flatnonzero(new_run)
        run_r = np.append(run_l[1:] - 1, total - 1)
        # a local maximum: neither at the segment's start nor touching its end, lower on both sides
        pk = ~starts[run_l] & ~starts[run_r + 1]
        run_l, run_r = run_l[pk], run_r[pk]
        pk = (y[run_l - 1] < y[run_l]) & (y[run_r + 1] < y[run_r])
        run_l, run_r = run_l[pk], run_r[pk]
        seg = np.searchsorted(first, run_l, side="right") - 1  # index into short
        mid = (run_l + run_r) // 2  # (K,) index into y
        if len(mid):
            w = int(ln.max())
            j = np.arange(w)
            f, n = first[seg][:, None], ln[seg][:, None]
            d = y[np.minimum(f + j, total - 1)]  # (K, w): each peak's segment, from its start
            m = mid[:, None] - f  # (K, 1): the peak's index in it
            yp = y[mid][:, None]
            inseg = j < n
            higher = (d > yp) & inseg
            hl = np.where(higher & (j < m), j, -1).max(1, keepdims=True)
            hr = np.where(higher & (j > m), j, w).min(1, keepdims=True)
            left_min = np.where((j > hl) & (j <= m), d, np.inf).min(1)
            right_min = np.where((j >= m) & (j < hr) & inseg, d, np.inf).min(1)
            prom = yp[:, 0] - np.maximum(left_min, right_min)
            order = np.lexsort((np.arange(len(mid)), -prom, seg))  # per segment: largest prominence, first of ties
            head = np.ones(len(order), bool)
            head[1:] = seg[order][1:] != seg[order][:-1]
            sel = order[head]
            out[short[seg[sel]]] = beg[short[seg[sel]]] + (mid[sel] - first[seg[sel]])
    for i in np.flatnonzero(long_seg).tolist():
        k = _most_prominent(x[beg[i]:end[i]])
        out[i] = beg[i] + k if k >= 0 else -1
    return out


def neurokit_peaks(signal: np.ndarray, sampling_rate: int, smoothwindow: float = 0.1, avgwindow: float = 0.75,
                   gradthreshweight: float = 1.5, minlenweight: float = 0.4, mindelay: float = 0.3) -> np.ndarray:
    """neurokit2's ``neurokit`` R-peak method (same arguments and result; module docstring).

    QRS complexes are where the boxcar-smoothed absolute gradient exceeds ``gradthreshweight`` times its
    ``avgwindow`` average; complexes shorter than ``minlenweight`` times the mean length are skipped; the
    R peak of a complex is its most prominent local maximum, kept when more than ``mindelay`` after the
    previous one.
    """
    from scipy.ndimage import uniform_filter1d

    x = np.array(signal, dtype=np.float64)  # neurokit2 works on the float64 copy signal_sanitize makes
    absgrad = np.abs(np.gradient(x))
    smoothgrad = uniform_filter1d(absgrad, int(np.rint(smoothwindow * sampling_rate)), mode="nearest")
    avggrad = uniform_filter1d(smoothgrad, int(np.rint(avgwindow * sampling_rate)), mode="nearest")
    qrs = smoothgrad > gradthreshweight * avggrad
    min_delay = int(np.rint(sampling_rate * mindelay))
    beg_qrs = np.flatnonzero(~qrs[:-1] & qrs[1:])
    end_qrs = np.flatnonzero(qrs[:-1] & ~qrs[1:])
    if len(beg_qrs) == 0:
        return np.zeros(0, np.int64)
    end_qrs = end_qrs[end_qrs > beg_qrs[0]]
    num_qrs = min(beg_qrs.size, end_qrs.size)
    if num_qrs == 0:
        return np.zeros(0, np.int64)
    beg_qrs, end_qrs = beg_qrs[:num_qrs], end_qrs[:num_qrs]
    min_len = np.mean(end_qrs - beg_qrs) * minlenweight
    keep = (end_qrs - beg_qrs) >= min_len  # neurokit2 skips len_qrs < min_len
    peaks = [0]
    for p in most_prominent_peaks(x, beg_qrs[keep], end_qrs[keep]).tolist():
        if p >= 0 and p - peaks[-1] > min_delay:
            peaks.append(p)
    return np.asarray(peaks[1:], np.int64)


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
    if np.diff(peaks).min() >= min_gap:  # the common case: nothing to merge
        return peaks
    ax = np.abs(np.asarray(x))
    keep = [int(peaks[0])]
    for p in peaks[1:].tolist():
        if p - keep[-1] < min_gap:
            if ax[p] > ax[keep[-1]]:
                keep[-1] = p
        else:
            keep.append(p)
    return np.asarray(keep, np.int64)


def detect_r_peaks(band: np.ndarray, fs: float, method: str = "neurokit", refine_s: float = 0.05,
                   refractory_s: float = 0.2) -> np.ndarray:
    """R peaks of a 1-D band signal (mV at ``fs``) -> sorted int64 sample indices (may be empty).

    A detector that fails on a signal without beats (a flat line, pure noise) gives no peaks rather than
    an exception; the tokenizer then codes the stretch with fallback units.
    """
    x = np.asarray(band, np.float64)
    if len(x) < int(fs) or float(np.ptp(x)) < 1e-6:
        return np.zeros(0, np.int64)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if method == "neurokit":
                peaks = neurokit_peaks(x, int(round(fs)))
            else:
                import neurokit2 as nk

                info = nk.ecg_findpeaks(x, sampling_rate=int(round(fs)), method=method)
                peaks = np.asarray(info.get("ECG_R_Peaks", []), np.int64)
    except (ValueError, IndexError, ZeroDivisionError, FloatingPointError):
        peaks = np.zeros(0, np.int64)
    peaks = peaks[(peaks >= 0) & (peaks < len(x))]
    peaks = refine_to_extremum(x, peaks, int(round(refine_s * fs)))
    return merge_close(x, peaks, int(round(refractory_s * fs)))
