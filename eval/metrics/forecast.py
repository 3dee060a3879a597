"""Probabilistic forecasting of real ECG: CRPS and median-path MAE of sampled continuations, naive baselines.

Task: 5 s of a real DS2 MLII window (the prefix) is given; the model samples K continuations of the next
5 s; they are scored against what really followed (the truth).

Forecast file format (``forecast.npz``, written by :func:`save_forecasts`, read by :func:`load_forecasts`;
numpy arrays only, no pickle)::

    prefix   (N, P)     float32  mV   the real context given to the model
    truth    (N, H)     float32  mV   the real continuation (never shown to the model)
    samples  (N, K, H)  float32  mV   K sampled continuations per task
    fs       ()         float         Hz (360)
    records  (N,)       str           optional: source record of each task
    starts   (N,)       int64         optional: prefix start sample in that record

:func:`make_forecast_tasks` builds ``prefix``/``truth`` from DS2 so the LM side only has to fill ``samples``.

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

import os
from pathlib import Path

import numpy as np

from tokenizer.errors import ECG2LLMError
from tokenizer.utils.io import atomic_path


class ForecastError(ECG2LLMError, ValueError):
    """A forecast file is missing, malformed, or its arrays disagree in shape."""


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


def make_forecast_tasks(
    data_dir: str | os.PathLike | None = None,
    records=None,
    n: int = 64,
    seed: int = 0,
    prefix_s: float = 5.0,
    horizon_s: float = 5.0,
    fs: float = 360.0,
) -> dict[str, np.ndarray]:
    """Forecast tasks from real MLII windows (DS2 by default): ``prefix``, ``truth``, ``records``, ``starts``.

    The LM side samples ``samples (N, K, H)`` for each ``prefix`` and saves everything with
    :func:`save_forecasts`.
    """
    from tokenizer.splits import DS2

    from ..data import real_windows

    ws = real_windows(records or DS2, data_dir, n=n, seed=seed, window_s=prefix_s + horizon_s, fs=fs)
    p = int(round(prefix_s * fs))
    return {
        "prefix": ws.x[:, :p],
        "truth": ws.x[:, p:],
        "records": ws.records,
        "starts": ws.starts,
        "fs": np.float64(fs),
    }


def save_forecasts(
    path: str | Path,
    prefix: np.ndarray,
    truth: np.ndarray,
    samples: np.ndarray,
    fs: float,
    records: np.ndarray | None = None,
    starts: np.ndarray | None = None,
) -> Path:
    """Write ``forecast.npz`` (format in the module docstring), atomically; ``path`` may be a folder."""
    p = Path(path)
    if p.suffix != ".npz":
        p = p / "forecast.npz"
    arrays = {
        "prefix": np.asarray(prefix, np.float32),
        "truth": np.asarray(truth, np.float32),
        "samples": np.asarray(samples, np.float32),
        "fs": np.float64(fs),
    }
    if records is not None:
        arrays["records"] = np.asarray(records).astype(str)
    if starts is not None:
        arrays["starts"] = np.asarray(starts, np.int64)
    _check(arrays, str(p))
    with atomic_path(p) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return p


def load_forecasts(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate a ``forecast.npz`` (a file or a folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "forecast.npz"
    if not p.is_file():
        raise ForecastError(f"no forecast file at {p}; write one with eval.metrics.forecast.save_forecasts")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001
        raise ForecastError(
            f"{p} cannot be read as a numpy .npz without pickle ({type(e).__name__}: {e})"
        ) from None
    _check(arrays, str(p))
    return arrays


def _check(a: dict[str, np.ndarray], where: str) -> None:
    missing = [k for k in ("prefix", "truth", "samples", "fs") if k not in a]
    if missing:
        raise ForecastError(
            f"{where}: missing array(s) {missing}; need prefix (N,P), truth (N,H), samples (N,K,H), fs"
        )
    pre, tru, smp = a["prefix"], a["truth"], a["samples"]
    if pre.ndim != 2 or tru.ndim != 2 or smp.ndim != 3:
        raise ForecastError(
            f"{where}: shapes prefix {pre.shape}, truth {tru.shape}, samples {smp.shape}; "
            f"expected (N,P), (N,H), (N,K,H)"
        )
    if not (len(pre) == len(tru) == len(smp)) or smp.shape[2] != tru.shape[1]:
        raise ForecastError(
            f"{where}: prefix {pre.shape}, truth {tru.shape} and samples {smp.shape} disagree on N or H"
        )
    for k in ("prefix", "truth", "samples"):
        if not np.isfinite(a[k]).all():
            raise ForecastError(f"{where}: {k} holds NaN/inf values")
