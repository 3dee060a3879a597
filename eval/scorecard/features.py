"""Per-window features every metric reads, computed once per window set and cacheable as ``.npz``.

:func:`compute_features` runs the frozen embedding, the R-peak physiology and the spectral / amplitude
summaries that feed the discriminator, on a :class:`ecg2llm.eval.data.WindowSet`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg2llm.core.io import atomic_path

from .embedding import Embedder
from .metrics.physiology import beat_features

#: Band edges (Hz) of the log power spectrum fed to the discriminator: log-spaced over the ECG band and
#: above it, so quantization hiss or missing high frequencies are visible.
# 2: clinical measurements (eval/scorecard/clinical.py) in Features.phys; 3: + WINDOW_EXTRA RR stats
FEATURE_VERSION = 3


def cache_key(*parts) -> str:
    """A 24-hex-digit SHA-256 of ``parts`` (bytes as they are, anything else as sorted JSON): cache file names."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


PSD_BANDS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 17.0, 25.0, 35.0, 50.0, 70.0, 100.0, 140.0, 180.0)
QUANTILES = (0.5, 2.0, 10.0, 25.0, 75.0, 90.0, 98.0, 99.5)
PHYS_KEYS = ("n_beats", "hr_bpm", "sdnn_ms", "rmssd_ms", "r_amp_mv", "valid")


@dataclass
class Features:
    """Features of ``n`` windows: embedding ``(n, D)``, physiology dict, discriminator extras ``(n, F)``."""

    emb: np.ndarray
    phys: dict[str, np.ndarray]
    spectral: np.ndarray

    def __len__(self) -> int:
        return len(self.emb)

    def clinical(self) -> np.ndarray:
        """``(n, len(ecg2llm.eval.scorecard.clinical.FEATURES))`` clinical measurements (NaN where undefined)."""
        from .clinical import FEATURES

        return np.stack([self.phys[f"c_{k}"].astype(np.float64) for k in FEATURES], axis=1)

    def discriminator_features(self) -> np.ndarray:
        """``(n, D + F + 5)``: embedding, log band powers + amplitude quantiles, R-peak statistics."""
        p = np.stack([self.phys[k].astype(np.float64) for k in PHYS_KEYS[:-1]], axis=1)
        return np.concatenate([self.emb.astype(np.float64), self.spectral, p], axis=1)

    def subset(self, idx: np.ndarray) -> "Features":
        return Features(
            emb=self.emb[idx], phys={k: v[idx] for k, v in self.phys.items()}, spectral=self.spectral[idx]
        )

    def save(self, path: str | Path) -> Path:
        arrays = {
            "emb": self.emb,
            "spectral": self.spectral,
            **{f"phys_{k}": v for k, v in self.phys.items()},
        }
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Features":
        with np.load(path, allow_pickle=False) as z:
            return cls(
                emb=z["emb"],
                spectral=z["spectral"],
                phys={k[5:]: z[k] for k in z.files if k.startswith("phys_")},
            )


def spectral_features(windows: np.ndarray, fs: float) -> np.ndarray:
    """Log10 mean power per :data:`PSD_BANDS` band (Welch, 512-sample segments) and amplitude percentiles
    of the median-centred window, ``(N, len(PSD_BANDS) - 1 + len(QUANTILES))``."""
    from scipy.signal import welch

    x = np.asarray(windows, np.float64)
    x = x - np.median(x, axis=1, keepdims=True)
    f, pxx = welch(x, fs=fs, nperseg=min(512, x.shape[1]), axis=1)  # (N, F)
    bands = []
    for lo, hi in zip(PSD_BANDS[:-1], PSD_BANDS[1:], strict=True):
        m = (f >= lo) & (f < hi)
        bands.append(np.log10(pxx[:, m].mean(1) + 1e-12) if m.any() else np.full(len(x), np.nan))
    q = np.percentile(x, QUANTILES, axis=1).T  # (N, Q)
    return np.concatenate([np.stack(bands, axis=1), q], axis=1)


def compute_features(windows: np.ndarray, fs: float, embedder: Embedder) -> Features:
    """All features of ``(N, T)`` windows in mV (embedding, physiology, clinical measurements, spectrum).

    The clinical measurements of :mod:`ecg2llm.eval.scorecard.clinical` are stored in ``phys`` as ``c_<name>``.
    """
    from .clinical import clinical_features
    from .metrics.physiology import detect_rpeaks_batch

    rpeaks = detect_rpeaks_batch(windows, fs)  # once, for both (each used to detect them again)
    phys = beat_features(windows, fs, rpeaks=rpeaks)
    phys.update({f"c_{k}": v for k, v in clinical_features(windows, fs, rpeaks=rpeaks).items()})
    return Features(emb=embedder.embed(windows, fs), phys=phys, spectral=spectral_features(windows, fs))
