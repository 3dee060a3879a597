"""Physiology of 10-s windows from detected R-peaks (``neurokit2``): rate, variability, beat shape.

R-peaks come from ``neurokit2.ecg_clean`` (0.5 Hz high-pass + 50 Hz notch, method ``"neurokit"``)
followed by ``neurokit2.ecg_peaks`` (method ``"neurokit"``, no artifact correction), never from a
hand-written detector. Per window (:func:`beat_features`):

* ``n_beats``: detected R-peaks; ``hr_bpm = 60 / mean(RR)``;
* ``sdnn_ms = std(RR)`` (ddof 1) and ``rmssd_ms = sqrt(mean(diff(RR)^2))``, RR in ms (>= 3 beats);
* ``r_amp_mv``: median amplitude of the cleaned signal at the R-peaks;
* ``valid``: a *valid rhythm* -- at least 3 beats and 30 <= ``hr_bpm`` <= 220;
* ``template``: the median beat, ``[-0.25 s, +0.45 s]`` around each R-peak of the cleaned signal.

Peaks within 0.1 s of a window end that are smaller than half the window's median R amplitude are
dropped (neurokit marks the P wave of a beat cut by the window end as an R-peak).

Known limit: the ``"neurokit"`` detector keeps R-peaks at least 0.3 s apart, so rates above ~190 bpm
(flutter, fast VT) are undercounted (a 200-bpm train reads as 100 bpm); below that, rates of periodic
test signals are exact to < 1 bpm (``tests/test_eval_metrics.py``).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import wasserstein_distance

PRE_S, POST_S = 0.25, 0.45
EDGE_S = 0.1  # peaks this close to a window end are checked for being P waves (see _drop_edge_artifacts)
HR_RANGE = (30.0, 220.0)
MIN_BEATS = 3


def detect_rpeaks(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """R-peak sample indices of one window and its cleaned signal (``neurokit2``).

    Returns ``(peaks, cleaned)``; ``peaks`` is empty when the detector finds nothing or fails (a flat or
    non-ECG signal), which the metrics count as an invalid rhythm rather than an error.
    """
    import neurokit2 as nk

    x = np.asarray(x, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cleaned = np.asarray(nk.ecg_clean(x, sampling_rate=fs, method="neurokit"), dtype=np.float64)
            _, info = nk.ecg_peaks(cleaned, sampling_rate=fs, method="neurokit", correct_artifacts=False)
            peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
        except Exception:  # noqa: BLE001 - neurokit raises on flat / degenerate input; "no beats" is the answer
            return np.zeros(0, np.int64), x - np.median(x)
    peaks = peaks[(peaks >= 0) & (peaks < len(x))]
    return _drop_edge_artifacts(peaks, cleaned, int(round(EDGE_S * fs))), cleaned


def detect_rpeaks_batch(windows: np.ndarray, fs: float) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`detect_rpeaks` of every row of ``(N, T)`` windows, the same peaks at a fraction of the cost.

    The cleaning of ``neurokit2.ecg_clean(method="neurokit")`` (a 5th-order Butterworth 0.5 Hz high-pass by
    ``sosfiltfilt``, then a 50 Hz moving-average ``filtfilt``) is the same arithmetic on each row, so it runs on
    all rows in one vectorized call with the filter designed once (neurokit designs it per call: ~60 % of a
    window's detection time); the peaks are then found per row by the public ``neurokit2.ecg_findpeaks``
    (method ``"neurokit"``, what ``ecg_peaks`` calls without artifact correction), without building the
    DataFrame ``ecg_peaks`` returns. ``tests/test_eval_metrics.py`` checks equality with :func:`detect_rpeaks`.

    Returns ``(peaks per window, cleaned (N, T))``.
    """
    import neurokit2 as nk
    from scipy.signal import butter, filtfilt, sosfiltfilt

    x = np.asarray(windows, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"detect_rpeaks_batch expects (N, T) windows, got shape {x.shape}")
    if not len(x):
        return [], x.copy()
    if not np.isfinite(x).all():  # neurokit fills missing samples first: keep its path for such windows
        bad = ~np.isfinite(x).all(axis=1)
        good_peaks, good_clean = detect_rpeaks_batch(x[~bad], fs) if (~bad).any() else ([], x[:0])
        res = {int(i): detect_rpeaks(x[i], fs) for i in np.flatnonzero(bad)}
        it = iter(zip(good_peaks, good_clean))
        rows = [res[i] if i in res else next(it) for i in range(len(x))]
        return [r[0] for r in rows], np.stack([np.asarray(r[1], np.float64) for r in rows])
    sos = butter(5, 0.5, btype="highpass", output="sos", fs=fs)
    b = np.ones(int(fs / 50)) if fs >= 100 else np.ones(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cleaned = filtfilt(b, [len(b)], sosfiltfilt(sos, x, axis=1), axis=1, method="pad")
        except Exception:  # noqa: BLE001 - too short for the filters' padding: per-window fallback
            res = [detect_rpeaks(w, fs) for w in x]
            return [r[0] for r in res], np.stack([r[1] for r in res])
    edge = int(round(EDGE_S * fs))
    peaks, out = [], cleaned.copy()
    for i, c in enumerate(cleaned):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                p = np.asarray(nk.ecg_findpeaks(c, sampling_rate=fs, method="neurokit")["ECG_R_Peaks"], np.int64)
            except Exception:  # noqa: BLE001 - as detect_rpeaks: "no beats", the median-centred window
                peaks.append(np.zeros(0, np.int64))
                out[i] = x[i] - np.median(x[i])
                continue
        p = p[(p >= 0) & (p < len(c))]
        peaks.append(_drop_edge_artifacts(p, c, edge))
    return peaks, out


def _drop_edge_artifacts(peaks: np.ndarray, cleaned: np.ndarray, edge: int) -> np.ndarray:
    """Drop peaks in the first/last ``edge`` samples smaller than half the median interior R amplitude.

    neurokit's detector, run on a cut window, sometimes marks the P wave of a beat whose QRS lies just
    past the window end (seen on ECGSYN and on periodic test signals): a spurious short RR that inflates
    SDNN/RMSSD and breaks the last-beat forecast. Only edge peaks are checked, so beats of any polarity
    inside the window are never touched.
    """
    inner = (peaks >= edge) & (peaks < len(cleaned) - edge)
    if inner.sum() < 2 or inner.all():
        return peaks
    ref = np.median(cleaned[peaks[inner]])
    if ref <= 0:
        return peaks
    return peaks[inner | (cleaned[peaks] >= 0.5 * ref)]


def beat_features(windows: np.ndarray, fs: float, rpeaks=None) -> dict[str, np.ndarray]:
    """Per-window rate, variability, amplitude, validity and median beat (see the module docstring).

    Parameters
    ----------
    windows : np.ndarray
        ``(N, T)`` mV.
    fs : float
        Sampling rate in Hz.
    rpeaks : tuple, optional
        :func:`detect_rpeaks_batch` of ``windows`` when the caller has it (computed here otherwise).

    Returns
    -------
    dict of np.ndarray
        ``n_beats (N,)``, ``hr_bpm``, ``sdnn_ms``, ``rmssd_ms``, ``r_amp_mv`` (NaN where undefined),
        ``valid (N,)`` bool, ``template (N, L)`` (NaN rows where no complete beat).
    """
    pre, post = int(round(PRE_S * fs)), int(round(POST_S * fs))
    n = len(windows)
    out = {k: np.full(n, np.nan) for k in ("hr_bpm", "sdnn_ms", "rmssd_ms", "r_amp_mv")}
    out["n_beats"] = np.zeros(n, np.int64)
    out["template"] = np.full((n, pre + post), np.nan, np.float32)
    all_peaks, all_cleaned = rpeaks if rpeaks is not None else detect_rpeaks_batch(windows, fs)
    for i, x in enumerate(windows):
        peaks, cleaned = all_peaks[i], all_cleaned[i]
        out["n_beats"][i] = len(peaks)
        if len(peaks):
            out["r_amp_mv"][i] = float(np.median(cleaned[peaks]))
        if len(peaks) >= 2:
            rr = np.diff(peaks) / fs * 1000.0  # ms
            out["hr_bpm"][i] = 60000.0 / rr.mean()
            if len(rr) >= 2:
                out["sdnn_ms"][i] = rr.std(ddof=1)
                out["rmssd_ms"][i] = np.sqrt(np.mean(np.diff(rr) ** 2))
        full = peaks[(peaks >= pre) & (peaks + post <= len(x))]
        if len(full):
            out["template"][i] = np.median(np.stack([cleaned[p - pre : p + post] for p in full]), axis=0)
    hr = out["hr_bpm"]
    out["valid"] = (out["n_beats"] >= MIN_BEATS) & (hr >= HR_RANGE[0]) & (hr <= HR_RANGE[1])
    return out


def _w1(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    return float(wasserstein_distance(a, b)) if len(a) and len(b) else None


def _zrows(t: np.ndarray) -> np.ndarray:
    t = t - t.mean(1, keepdims=True)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)


def template_correlation(fake_templates: np.ndarray, real_templates: np.ndarray) -> np.ndarray:
    """For each fake median beat, the highest Pearson r with any real median beat (NaN rows skipped)."""
    f = fake_templates[np.isfinite(fake_templates).all(1)]
    r = real_templates[np.isfinite(real_templates).all(1)]
    if not len(f) or not len(r):
        return np.zeros(0)
    return (_zrows(f.astype(np.float64)) @ _zrows(r.astype(np.float64)).T).max(axis=1)


def physiology_metrics(real: dict[str, np.ndarray], fake: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Compare :func:`beat_features` of a fake set to those of the real reference.

    Rate, variability and amplitude distributions are compared over *valid* windows only (an invalid
    window's "heart rate" is noise); ``valid_rhythm_rate`` says how many that is.

    Returns
    -------
    dict
        ``valid_rhythm_rate`` (higher better), ``hr_w1_bpm``, ``sdnn_w1_ms``, ``rmssd_w1_ms``,
        ``r_amp_w1_mv`` (Wasserstein-1 distances to the real distributions, lower better),
        ``beat_corr`` (mean best Pearson r of a fake median beat with the real median beats, higher
        better), ``hr_mean_bpm`` (of the fake set, for reading).
    """
    rv, fv = real["valid"], fake["valid"]
    out: dict[str, float | None] = {"valid_rhythm_rate": float(fv.mean()) if len(fv) else None}
    for key, name in (
        ("hr_bpm", "hr_w1_bpm"),
        ("sdnn_ms", "sdnn_w1_ms"),
        ("rmssd_ms", "rmssd_w1_ms"),
        ("r_amp_mv", "r_amp_w1_mv"),
    ):
        out[name] = _w1(real[key][rv], fake[key][fv])
    corr = template_correlation(fake["template"][fv], real["template"][rv])
    out["beat_corr"] = float(corr.mean()) if len(corr) else None
    hr = fake["hr_bpm"][fv]
    out["hr_mean_bpm"] = float(hr.mean()) if len(hr) else None
    return out
