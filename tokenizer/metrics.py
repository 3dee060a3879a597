"""Reconstruction metrics with the SEED-NOTES definitions (x original, y reconstruction, in mV).

* ``mse``/``mae`` on whatever units they are given (the seed reports MSE on [0, 1]-normalized windows:
  use :func:`seed_normalized_mse`).
* ``rmse_uv``: root mean squared error in microvolts (inputs in mV).
* ``prd = 100 * sqrt(sum((x-y)^2) / sum(x^2))`` - inflated by any offset in x; prefer PRDN.
* ``prdn = 100 * sqrt(sum((x-y)^2) / sum((x-mean(x))^2))``.
* ``snr_db = 10 * log10(sum((x-mean(x))^2) / sum((x-y)^2))``.
* ``compression_ratio = original bits per second / token bits per second`` (MIT-BIH: 11-bit ADC at
  360 Hz = 3960 bit/s per lead).
* ``quality_score = CR / PRD``.
"""
from __future__ import annotations

import math

import numpy as np

from .windows import WINDOW, minmax_normalize, to_windows

MITDB_ADC_BITS = 11


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"original and reconstruction differ in length: {x.shape} vs {y.shape}")
    return x, y


def mse(x, y) -> float:
    x, y = _pair(x, y)
    return float(np.mean((x - y) ** 2))


def mae(x, y) -> float:
    x, y = _pair(x, y)
    return float(np.mean(np.abs(x - y)))


def rmse_uv(x_mv, y_mv) -> float:
    """RMSE in µV of two signals in mV."""
    return 1000.0 * math.sqrt(mse(x_mv, y_mv))


def prd(x, y) -> float:
    x, y = _pair(x, y)
    return float(100.0 * math.sqrt(np.sum((x - y) ** 2) / max(np.sum(x**2), 1e-30)))


def prdn(x, y) -> float:
    x, y = _pair(x, y)
    return float(100.0 * math.sqrt(np.sum((x - y) ** 2) / max(np.sum((x - x.mean()) ** 2), 1e-30)))


def snr_db(x, y) -> float:
    x, y = _pair(x, y)
    err = np.sum((x - y) ** 2)
    if err == 0:
        return float("inf")
    return float(10.0 * math.log10(np.sum((x - x.mean()) ** 2) / err))


def compression_ratio(bits_per_second: float, fs: float = 360.0, adc_bits: int = MITDB_ADC_BITS) -> float:
    """Original bits per second (``fs * adc_bits``) over token bits per second."""
    return float(fs * adc_bits / bits_per_second)


def seed_normalized_mse(x_mv, y_mv, window: int = WINDOW) -> float:
    """MSE on the seed's normalization: both signals scaled by the *original's* per-window min-max.

    This makes an mV reconstruction comparable with the report's Table 2 (MSE on [0, 1] windows).
    An incomplete last window is ignored.
    """
    x, y = _pair(x_mv, y_mv)
    xw, yw = to_windows(x, window), to_windows(y, window)
    xn, lo, hi = minmax_normalize(xw)
    span = np.where(hi > lo, hi - lo, 1.0)
    yn = (yw - lo[:, None]) / span[:, None]
    return float(np.mean((xn - yn) ** 2))


def reconstruction_report(x_mv, y_mv, tokens_per_second: float, bits_per_token: float,
                          fs: float = 360.0) -> dict[str, float]:
    """Every error figure next to its token rate and bits per second (inputs in mV)."""
    bps = tokens_per_second * bits_per_token
    p = prd(x_mv, y_mv)
    cr = compression_ratio(bps, fs)
    return {
        "rmse_uv": rmse_uv(x_mv, y_mv), "prd": p, "prdn": prdn(x_mv, y_mv), "snr_db": snr_db(x_mv, y_mv),
        "mse_mv2": mse(x_mv, y_mv), "mae_mv": mae(x_mv, y_mv), "mse_seed_norm": seed_normalized_mse(x_mv, y_mv),
        "tokens_per_second": float(tokens_per_second), "bits_per_token": float(bits_per_token),
        "bits_per_second": float(bps), "compression_ratio": cr, "quality_score": cr / p if p > 0 else float("inf"),
    }


def codebook_usage(ids: np.ndarray, vocab_size: int) -> dict[str, float]:
    """Fraction of codes used and code perplexity ``2**H`` (H = entropy of the id histogram, bits)."""
    ids = np.asarray(ids).reshape(-1)
    counts = np.bincount(ids, minlength=vocab_size).astype(np.float64)
    p = counts / max(counts.sum(), 1)
    nz = p[p > 0]
    h = float(-(nz * np.log2(nz)).sum())
    return {"codes_used_fraction": float((counts > 0).mean()), "code_perplexity": float(2**h),
            "code_entropy_bits": h}
