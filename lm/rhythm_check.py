"""How regular is the rhythm of ECG windows? wfdb's XQRS detector, independent of the project's own code.

Issue 17 measures rhythm realism as the share of 10-s windows whose RR intervals have a coefficient of
variation (std / mean) below 0.1 -- "regular" -- for generated and for real DS2 windows (56 % of real DS2
MLII windows, 19 % of the v1 LM's). :func:`rhythm_stats` computes it for any list of signals;
:func:`real_windows` cuts the matching real reference out of MIT-BIH. A window with fewer than 3 detected
beats has no CV and counts as *not* regular (a flat or noisy output is not a regular rhythm). Windows generated
by an LM come from :func:`ecg2llm.lm.guidance.generated_windows` (the sampler imports this detector, not the
reverse).

Example::

    from ecg2llm.lm.rhythm_check import real_windows, rhythm_stats
    rhythm_stats(real_windows(DS2, "../shared/data", n=64), 360.0)   # {'regular_share': ..., ...}
"""
from __future__ import annotations

import numpy as np

REGULAR_CV = 0.1


def detect_beats(x: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices of one signal (mV) by ``wfdb.processing.xqrs_detect``; empty if none."""
    import logging

    from wfdb import processing

    x = np.asarray(x, dtype=np.float64)
    if len(x) < fs or not np.isfinite(x).all() or np.ptp(x) == 0:
        return np.zeros(0, np.int64)
    logging.getLogger("wfdb").setLevel(logging.ERROR)
    try:
        return np.asarray(processing.xqrs_detect(sig=x, fs=float(fs), verbose=False), dtype=np.int64)
    except Exception:  # noqa: BLE001 - XQRS fails on pathological inputs (e.g. no peaks to learn from)
        return np.zeros(0, np.int64)


def rr_cv(peaks: np.ndarray, fs: float) -> tuple[float, float]:
    """(coefficient of variation of the RR intervals, mean heart rate in bpm); NaNs with < 3 beats."""
    rr = np.diff(np.asarray(peaks, np.float64)) / float(fs)
    if len(rr) < 2:
        return float("nan"), float("nan")
    return float(rr.std() / rr.mean()), float(60.0 / rr.mean())


def rhythm_stats(signals, fs: float, threshold: float = REGULAR_CV) -> dict:
    """Regular-rhythm share and heart rate of a set of windows.

    Parameters
    ----------
    signals : sequence of np.ndarray
        Windows in mV at ``fs`` (10 s each in the issue's protocol).
    fs : float
    threshold : float
        RR coefficient of variation below which a window is regular.

    Returns
    -------
    dict
        ``regular_share`` (over all windows), ``n_windows``, ``n_detected`` (>= 3 beats),
        ``median_cv``, ``median_hr_bpm`` (over detected windows), and ``cv``, ``hr_bpm`` (per window, NaN if
        undetected).
    """
    cvs, hrs = [], []
    for x in signals:
        cv, hr = rr_cv(detect_beats(x, fs), fs)
        cvs.append(cv), hrs.append(hr)
    cvs, hrs = np.asarray(cvs), np.asarray(hrs)
    ok = np.isfinite(cvs)
    share = float(np.mean(np.where(ok, cvs, np.inf) < threshold)) if len(cvs) else float("nan")
    return {"regular_share": share,
            "n_windows": int(len(cvs)), "n_detected": int(ok.sum()),
            "median_cv": float(np.median(cvs[ok])) if ok.any() else float("nan"),
            "median_hr_bpm": float(np.median(hrs[ok])) if ok.any() else float("nan"), "cv": cvs.tolist(),
            "hr_bpm": hrs.tolist()}


def real_windows(records, data_dir=None, n: int = 64, seconds: float = 10.0, lead: str = "MLII",
                 fs: float = 360.0) -> list[np.ndarray]:
    """``n`` real windows of ``seconds``, evenly spaced over ``records`` (each record gets its share).

    Deterministic (no random numbers): window ``k`` of a record starts at ``(k + 1/2) / m`` of its usable
    length, for ``m`` windows per record.
    """
    from ecg2llm.tokenizer.data import read_record

    records = [str(r) for r in records]
    per = [n // len(records) + (1 if i < n % len(records) else 0) for i in range(len(records))]
    w = int(round(seconds * fs))
    out = []
    for rec, m in zip(records, per):
        if m == 0:
            continue
        x = read_record(rec, data_dir, lead=lead, fs=fs, annotations=False).signal
        for k in range(m):
            s = int((k + 0.5) / m * (len(x) - w))
            out.append(np.asarray(x[s:s + w], np.float32))
    return out
