"""Forecast tasks from real recordings and the forecast file format: written by ``lm/forecast.py``,
scored by ``eval/score.py --forecast`` (:mod:`ecg2llm.eval.scorecard.metrics.forecast`).

Forecast file format (``forecast.npz``, written by :func:`save_forecasts`, read by :func:`load_forecasts`;
numpy arrays only, no pickle)::

    prefix   (N, P)     float32  mV   the real context given to the model
    truth    (N, H)     float32  mV   the real continuation (never shown to the model)
    samples  (N, K, H)  float32  mV   K sampled continuations per task
    fs       ()         float         Hz (360)
    records  (N,)       str           optional: source record of each task
    starts   (N,)       int64         optional: prefix start sample in that record

:func:`make_forecast_tasks` builds ``prefix``/``truth`` from DS2 so the LM side only has to fill ``samples``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ecg2llm.core.errors import ECG2LLMError
from ecg2llm.core.io import atomic_path


class ForecastError(ECG2LLMError, ValueError):
    """A forecast file is missing, malformed, or its arrays disagree in shape."""


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
    from .splits import DS2
    from .windowset import real_windows

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
        raise ForecastError(f"no forecast file at {p}; write one with lm/forecast.py "
                            "(ecg2llm.tokenizer.forecasts.save_forecasts)")
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
