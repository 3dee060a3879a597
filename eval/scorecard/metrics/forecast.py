"""Probabilistic forecasting of real ECG: CRPS and median-path MAE of sampled continuations, naive baselines.

Task: 5 s of a real DS2 MLII window (the prefix) is given; the model samples K continuations of the next
5 s; they are scored against what really followed (the truth).

The tasks and the forecast file (``forecast.npz``) are defined once, in :mod:`ecg2llm.tokenizer.forecasts`:
``lm/forecast.py`` writes it, this module scores it.

Scores (lower is better, all in mV, averaged over tasks and horizon samples):

* ``forecast_crps``: continuous ranked probability score of the K-sample ensemble,
  ``CRPS = E|X - y| - 1/2 E|X - X'|`` (Gneiting & Raftery 2007, eq. 21; the same estimator as
  ``properscoring.crps_ensemble``), 0 for a perfect point forecast;
* ``forecast_mae_median``: MAE of the per-sample-time median of the K paths;
* naive baselines from the prefix alone: ``naive_last_beat`` repeats the last RR cycle of the prefix
  (R-peaks from ``neurokit2``) with its phase preserved; ``naive_mean`` predicts the prefix mean (both
  deterministic, so their CRPS equals their MAE); ``naive_beat_ensemble`` samples K continuations that
  repeat the last beat with RR intervals resampled from the prefix (a probabilistic yardstick for CRPS).
"""

from __future__ import annotations

import numpy as np

from ecg2llm.tokenizer.forecasts import ForecastError


def crps_ensemble(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Sample-based CRPS for every forecast point, vectorized.

    Parameters
    ----------
    samples : np.ndarray
        ``(..., K, H)`` ensemble members.
    truth : np.ndarray
        ``(..., H)`` observations.

    Returns
    -------
    np.ndarray
        ``(..., H)`` CRPS values, ``mean|x_k - y| - 1/(2 K^2) sum_{k,l} |x_k - x_l|``. The pairwise term is
        computed in O(K log K) from the sorted members:
        ``sum_{k,l} |x_k - x_l| = 2 sum_i (2i - K - 1) x_(i)``.
    """
    s = np.asarray(samples, np.float64)
    y = np.asarray(truth, np.float64)
    if s.shape[:-2] + s.shape[-1:] != y.shape:
        raise ForecastError(f"samples {s.shape} and truth {y.shape} do not match as (..., K, H) and (..., H)")
    k = s.shape[-2]
    term1 = np.abs(s - y[..., None, :]).mean(-2)
    srt = np.sort(s, axis=-2)
    w = (2.0 * np.arange(1, k + 1) - k - 1).reshape((1,) * (s.ndim - 2) + (k, 1))
    term2 = 2.0 * (w * srt).sum(-2) / (k * k)
    return term1 - 0.5 * term2


def naive_last_beat(prefix: np.ndarray, horizon: int, fs: float) -> np.ndarray:
    """Repeat the last RR cycle of each prefix, continuing its phase. ``(N, P)`` -> ``(N, H)``.

    With R-peaks ``r[-2] < r[-1]`` in the prefix, the period is ``T = r[-1] - r[-2]`` and the forecast is
    the periodic extension ``y[t] = prefix[P - T + (t mod T)]``. Fewer than two peaks: the last second is
    repeated.
    """
    from .physiology import detect_rpeaks

    prefix = np.asarray(prefix, np.float64)
    out = np.empty((len(prefix), horizon))
    for i, x in enumerate(prefix):
        peaks, _ = detect_rpeaks(x, fs)
        period = int(peaks[-1] - peaks[-2]) if len(peaks) >= 2 else int(round(fs))
        period = max(1, min(period, len(x)))
        out[i] = x[len(x) - period + (np.arange(horizon) % period)]
    return out


def naive_beat_ensemble(
    prefix: np.ndarray, horizon: int, fs: float, k: int = 16, seed: int = 0
) -> np.ndarray:
    """A probabilistic naive forecast: the last beat, repeated with RR intervals resampled from the prefix.

    For each of ``k`` members the last RR cycle of the prefix (``prefix[r[-2]:r[-1]]``) is tiled from the
    last R-peak onwards, each copy linearly time-stretched to an RR interval drawn with replacement from
    the prefix's own RR intervals; the part after the prefix end is the forecast. Fewer than two R-peaks:
    every member repeats the last second. ``(N, P)`` -> ``(N, k, H)``. It is the yardstick for a sampled
    forecast's CRPS, as :func:`naive_last_beat` is for its median.
    """
    from .physiology import detect_rpeaks

    prefix = np.asarray(prefix, np.float64)
    rng = np.random.default_rng(seed)
    out = np.empty((len(prefix), k, horizon))
    for i, x in enumerate(prefix):
        peaks, _ = detect_rpeaks(x, fs)
        if len(peaks) < 2:
            out[i] = naive_last_beat(x[None], horizon, fs)[0]
            continue
        beat = x[peaks[-2] : peaks[-1]]
        rr = np.diff(peaks)
        done = len(x) - peaks[-1]  # samples of the current cycle already in the prefix
        for j in range(k):
            parts, n = [], 0
            while n < done + horizon:
                length = int(rng.choice(rr))
                parts.append(np.interp(np.linspace(0, len(beat) - 1, length), np.arange(len(beat)), beat))
                n += length
            out[i, j] = np.concatenate(parts)[done : done + horizon]
    return out


def naive_mean(prefix: np.ndarray, horizon: int) -> np.ndarray:
    """The prefix mean, held constant. ``(N, P)`` -> ``(N, H)``."""
    prefix = np.asarray(prefix, np.float64)
    return np.repeat(prefix.mean(1, keepdims=True), horizon, axis=1)


def baseline_metrics(prefix: np.ndarray, truth: np.ndarray, fs: float, k: int = 16) -> dict[str, float]:
    """Scores of the naive baselines on the given tasks: MAE (= CRPS) of the two deterministic ones, CRPS
    and median MAE of the ``k``-member :func:`naive_beat_ensemble`."""
    h = truth.shape[1]
    ens = naive_beat_ensemble(prefix, h, fs, k=k)
    return {
        "naive_last_beat_mae": float(np.abs(naive_last_beat(prefix, h, fs) - truth).mean()),
        "naive_mean_mae": float(np.abs(naive_mean(prefix, h) - truth).mean()),
        "naive_ensemble_crps": float(crps_ensemble(ens, truth).mean()),
        "naive_ensemble_mae_median": float(np.abs(np.median(ens, axis=1) - truth).mean()),
    }


def forecast_metrics(
    prefix: np.ndarray, truth: np.ndarray, samples: np.ndarray, fs: float
) -> dict[str, float]:
    """``forecast_crps``, ``forecast_mae_median`` and the naive baselines on the same tasks."""
    med = np.median(samples, axis=1)
    return {
        "forecast_crps": float(crps_ensemble(samples, truth).mean()),
        "forecast_mae_median": float(np.abs(med - truth).mean()),
        "forecast_n_tasks": int(len(truth)),
        "forecast_k": int(samples.shape[1]),
        **baseline_metrics(prefix, truth, fs),
    }
