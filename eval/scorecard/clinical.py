"""What a cardiologist reads off a 10-s strip, per window: rhythm, intervals, beat shape, recording texture.

Per window (:func:`clinical_features`; R-peaks from :func:`ecg2llm.eval.scorecard.metrics.physiology.detect_rpeaks`,
i.e.
``neurokit2``):

* **rhythm** -- ``hr_bpm`` (60 / mean RR), ``rr_cv`` (std / mean of RR), ``rmssd_ms``, ``rr_alt``
  (successive-RR alternation: the fraction of consecutive RR-difference pairs of opposite sign whose
  differences both exceed 5 % of the mean RR; ~1 in bigeminy, ~0 in sinus rhythm, ~0.5 for random
  jitter) and ``n_beats``;
* **intervals** -- ``neurokit2.ecg_delineate`` (discrete wavelet method) on the window's *median beat*:
  ``pr_ms`` (P onset to QRS onset), ``qrs_ms`` (QRS onset to offset), ``qtc_ms`` (QT, QRS onset to T
  offset, over sqrt(median RR in s), Bazett), ``p_present`` (1 when a P wave of at least
  :data:`P_MIN_MV` is delineated before the QRS, else 0);
* **morphology** -- ``beat_consistency`` (median Pearson r of each beat with the window's median beat),
  ``r_amp_mv`` and ``t_amp_mv`` (median-beat R peak and T-wave extreme above the beat's baseline);
* **texture** -- ``hf_noise`` (log10 RMS of the signal above 40 Hz) and ``wander`` (log10 RMS of the
  signal below 0.5 Hz).

Why the median beat: delineating every beat costs ~4 ms a beat in neurokit2 (its per-beat Python loops),
~50 ms per window; the median beat of all windows of a set is delineated in one call (one beat a window),
which is ~10x faster, and a median beat is what an interval measurement on a strip is meant to describe.
The cycle cut around each R peak is ``[R - a, R + b]`` with ``a = min(0.3 s, 0.4 RR)`` and
``b = min(0.6 s, RR - a)`` (RR = the window's median RR), so at fast rates the cycle never holds a
neighbouring beat. NaN marks what is undefined (fewer than 2 beats, a failed delineation).
"""

from __future__ import annotations

import warnings

import numpy as np

from .metrics.physiology import detect_rpeaks_batch

#: Feature groups; each group is one headline metric (:mod:`ecg2llm.eval.scorecard.headline`).
GROUPS: dict[str, tuple[str, ...]] = {
    "rhythm": ("hr_bpm", "rr_cv", "rmssd_ms", "rr_alt", "n_beats"),
    "intervals": ("pr_ms", "qrs_ms", "qtc_ms", "p_present"),
    "morphology": ("beat_consistency", "r_amp_mv", "t_amp_mv"),
    "texture": ("hf_noise", "wander"),
}
FEATURES: tuple[str, ...] = tuple(f for g in GROUPS.values() for f in g)
#: Per-window RR measurements outside the set-level groups, read by the within-window headlines
#: (:mod:`ecg2llm.eval.scorecard.window_metrics`): ``rr_sd_ratio`` = RMSSD / (sqrt(2) SD of RR), 1 for independent RR
# intervals,
#: well below 1 for a smoothly varying sinus rhythm, up to 2 for strict alternation; ``rr_flip`` = share of
#: successive RR differences that change sign (any size): ~2/3 for independent intervals, low for a drifting
#: rhythm, 1 for bigeminy.
WINDOW_EXTRA: tuple[str, ...] = ("rr_sd_ratio", "rr_flip")
P_MIN_MV = 0.03  # smallest P wave counted as present (peak above the P-onset level, mV)
ALT_FRACTION = 0.05  # RR differences below 5 % of the mean RR do not count as alternation


def rr_features(peaks: np.ndarray, fs: float) -> dict[str, float]:
    """Rhythm features of one window from its R-peak samples (NaN where undefined)."""
    out = {k: np.nan for k in ("hr_bpm", "rr_cv", "rmssd_ms", "rr_alt", *WINDOW_EXTRA)}
    out["n_beats"] = float(len(peaks))
    if len(peaks) < 2:
        return out
    rr = np.diff(np.asarray(peaks, np.float64)) / fs  # (B - 1,) s
    out["hr_bpm"] = 60.0 / rr.mean()
    if len(rr) >= 2:
        d = np.diff(rr)
        out["rr_cv"] = rr.std() / rr.mean()
        out["rmssd_ms"] = 1000.0 * np.sqrt(np.mean(d**2))
        if len(d) >= 2:
            big = np.abs(d) > ALT_FRACTION * rr.mean()
            flip = (d[:-1] * d[1:] < 0) & big[:-1] & big[1:]
            out["rr_alt"] = float(flip.mean())
            out["rr_flip"] = float((d[:-1] * d[1:] < 0).mean())
        if len(rr) >= 4 and rr.std() > 0:
            out["rr_sd_ratio"] = float(np.sqrt(np.mean(d**2)) / (np.sqrt(2.0) * rr.std()))
    return out


def _cycle(rr_med: float, fs: float) -> tuple[int, int]:
    a = min(0.30, 0.4 * rr_med)
    b = min(0.60, rr_med - a)
    return int(round(a * fs)), int(round(b * fs))


def _lowpass(x: np.ndarray, fs: float, hz: float, btype: str = "low") -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    sos = butter(2, hz, btype=btype, fs=fs, output="sos")
    return sosfiltfilt(sos, x, axis=-1)


def texture_features(windows: np.ndarray, fs: float) -> dict[str, np.ndarray]:
    """``hf_noise`` and ``wander`` (log10 RMS above 40 Hz / below 0.5 Hz, mV) of ``(N, T)`` windows."""
    x = np.asarray(windows, np.float64)
    x = x - x.mean(1, keepdims=True)
    hf = _lowpass(x, fs, 40.0, "high")
    lf = _lowpass(x, fs, 0.5, "low")
    return {
        "hf_noise": np.log10(np.sqrt((hf**2).mean(1)) + 1e-6),
        "wander": np.log10(np.sqrt((lf**2).mean(1)) + 1e-6),
    }


def clinical_features(windows: np.ndarray, fs: float, rpeaks=None) -> dict[str, np.ndarray]:
    """Every feature of :data:`FEATURES` for ``(N, T)`` windows in mV (see the module docstring).
    ``rpeaks``: :func:`ecg2llm.eval.scorecard.metrics.physiology.detect_rpeaks_batch` of ``windows`` when the
    caller has it (computed here otherwise).

    Returns
    -------
    dict of np.ndarray
        ``(N,)`` float64 per feature, NaN where undefined.
    """
    x = np.asarray(windows, np.float64)
    n = len(x)
    out = {k: np.full(n, np.nan) for k in (*FEATURES, *WINDOW_EXTRA)}
    out.update(texture_features(x, fs))
    templates: list[np.ndarray | None] = [None] * n
    cycles: list[tuple[int, int, float]] = [(0, 0, np.nan)] * n
    all_peaks, all_cleaned = rpeaks if rpeaks is not None else detect_rpeaks_batch(x, fs)
    for i, w in enumerate(x):
        peaks, cleaned = all_peaks[i], all_cleaned[i]
        for k, v in rr_features(peaks, fs).items():
            out[k][i] = v
        if len(peaks) < 2:
            continue
        rr_med = float(np.median(np.diff(peaks)) / fs)
        a, b = _cycle(rr_med, fs)
        full = peaks[(peaks - a >= 0) & (peaks + b <= len(w))]
        if len(full) < 1 or a < 5 or b < 5:
            continue
        beats = np.stack([cleaned[p - a : p + b] for p in full])  # (K, a + b)
        tmpl = np.median(beats, axis=0)
        # baseline: the level just before the P wave (start of the cycle) and at its end (TP segment)
        # baseline: a straight line from the cycle's start (before the P wave) to its end (TP segment), so
        # the median beats join without steps when they are concatenated for the delineator
        e0, e1 = np.median(tmpl[: max(3, a // 8)]), np.median(tmpl[-max(3, b // 8) :])
        tmpl = tmpl - np.linspace(e0, e1, len(tmpl))
        templates[i], cycles[i] = tmpl, (a, b, rr_med)
        qrs_t = slice(max(0, a - int(0.1 * fs)), a + min(b, int(0.4 * fs)))
        if len(full) >= 2:
            bz = beats[:, qrs_t] - beats[:, qrs_t].mean(1, keepdims=True)
            tz = tmpl[qrs_t] - tmpl[qrs_t].mean()
            den = np.linalg.norm(bz, axis=1) * np.linalg.norm(tz) + 1e-12
            out["beat_consistency"][i] = float(np.median(bz @ tz / den))
        out["r_amp_mv"][i] = float(tmpl[a])
        t_seg = tmpl[a + int(0.12 * fs) : a + b]
        if len(t_seg):
            out["t_amp_mv"][i] = float(t_seg[np.argmax(np.abs(t_seg))])
    _delineate(templates, cycles, fs, out)
    return out


def _slope_onset(t: np.ndarray, a: int, fs: float) -> float:
    """QRS onset of a median beat with R at ``a``: the last sample within 0.12 s before R whose slope is
    below 10 % of the steepest QRS slope (used only where the wavelet delineator gives none)."""
    lo = max(1, a - int(0.12 * fs))
    d = np.abs(np.diff(t[lo - 1 : a + int(0.05 * fs)]))
    if not len(d) or d.max() <= 0:
        return np.nan
    flat = np.flatnonzero(d[: a - lo + 1] < 0.1 * d.max())
    return float(lo + flat[-1]) if len(flat) else float(lo)


def _delineate(templates, cycles, fs: float, out: dict[str, np.ndarray]) -> None:
    """Delineate all median beats in one neurokit2 call and fill the interval features."""
    import neurokit2 as nk

    idx = [i for i, t in enumerate(templates) if t is not None]
    if not idx:
        return
    n_own = len(idx)
    if n_own < 8:  # neurokit's heart-rate estimate fails on a handful of beats: repeat them, keep the first
        idx = idx * int(np.ceil(8 / n_own))
    # a flat lead-in and lead-out (neurokit refuses signals under 4 s); the beats are joined end to end
    total = sum(len(templates[i]) for i in idx)
    pad = int(max(0.5 * fs, (4.5 * fs - total) / 2))
    sig, rpk, offs = [np.zeros(pad)], [], []
    pos = pad
    for i in idx:
        t = templates[i]
        sig.append(t)
        offs.append(pos)
        rpk.append(pos + cycles[i][0])
        pos += len(t)
    sig.append(np.zeros(pad))
    s = np.concatenate(sig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _, d = nk.ecg_delineate(s, np.asarray(rpk), sampling_rate=fs, method="dwt")
        except Exception:  # noqa: BLE001 - neurokit raises on degenerate input: intervals stay undefined
            return

    def get(key):
        v = np.asarray(d.get(key, [np.nan] * len(idx)), np.float64)
        return v if len(v) == len(idx) else np.full(len(idx), np.nan)

    p_on, p_pk, r_on, r_off, t_off, q_pk, s_pk = (
        get(k)
        for k in (
            "ECG_P_Onsets", "ECG_P_Peaks", "ECG_R_Onsets", "ECG_R_Offsets", "ECG_T_Offsets", "ECG_Q_Peaks",
            "ECG_S_Peaks",
        )
    )
    # the wavelet QRS onset is searched from the P peak on, so it is missing without a P wave (atrial
    # fibrillation, ventricular beats): fall back on neurokit's Q peak, else on the slope rule below
    r_on = np.where(np.isfinite(r_on), r_on, q_pk)
    for j, i in enumerate(idx):
        if not np.isfinite(r_on[j]):
            r_on[j] = offs[j] + _slope_onset(templates[i], cycles[i][0], fs)
    ms = 1000.0 / fs
    for j, i in enumerate(idx[:n_own]):
        a, b, rr_med = cycles[i]
        r = rpk[j]
        lo, hi = offs[j], offs[j] + a + b  # keep only fiducials inside this beat's own cycle
        ok = lambda v, lo=lo, hi=hi: np.isfinite(v) and lo <= v < hi  # noqa: E731
        if ok(r_on[j]) and ok(r_off[j]) and r_on[j] <= r <= r_off[j]:
            out["qrs_ms"][i] = (r_off[j] - r_on[j]) * ms
            if ok(t_off[j]) and t_off[j] > r_off[j]:
                qt = (t_off[j] - r_on[j]) * ms
                out["qtc_ms"][i] = qt / np.sqrt(rr_med)
        present = False
        if ok(p_on[j]) and ok(p_pk[j]) and p_on[j] < p_pk[j] < r:
            t = templates[i]
            amp = t[int(p_pk[j]) - lo] - t[int(p_on[j]) - lo]
            present = bool(amp >= P_MIN_MV)
            if present and ok(r_on[j]) and r_on[j] > p_on[j]:
                out["pr_ms"][i] = (r_on[j] - p_on[j]) * ms
        out["p_present"][i] = float(present)
