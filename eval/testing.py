"""Small helpers shared by stage-3 tests and demos: find the real database, make ECG-like test data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def real_data_root() -> Path | None:
    """``$ECG2LLM_DATA`` or ``../shared/data`` when it holds ``mitdb/100.hea``, else None."""
    for cand in (os.environ.get("ECG2LLM_DATA"), REPO.parent / "shared" / "data"):
        if cand and (Path(cand) / "mitdb" / "100.hea").is_file():
            return Path(cand)
    return None


def gaussian_wave_ecg(
    hr: float,
    seconds: float = 10.0,
    fs: float = 360.0,
    seed: int = 0,
    wander: float = 0.05,
    r_amp: float = 1.2,
    rr_jitter: float = 0.0,
) -> np.ndarray:
    """An ECG-like signal in mV: P, Q-R, S, T as Gaussian bumps at ``hr`` bpm, baseline wander, 10 µV noise.

    ``rr_jitter`` is the standard deviation (s) of each RR interval around ``60 / hr``. The R-peaks are
    exactly where the beats are placed, so the true heart rate is known.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * fs))) / fs
    x = wander * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    beat = 0.3
    while beat < seconds:
        for off, width, amp in (
            (-0.16, 0.025, 0.1 * r_amp),
            (0.0, 0.010, r_amp),
            (0.02, 0.012, -0.2 * r_amp),
            (0.25, 0.04, 0.25 * r_amp),
        ):
            x += amp * np.exp(-0.5 * ((t - beat - off) / width) ** 2)
        beat += 60.0 / hr + (rng.normal(0, rr_jitter) if rr_jitter else 0.0)
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_tiny_mitdb(
    root: str | Path, records: Sequence[str], seconds: float = 150.0, fs: float = 360.0, seed: int = 0
) -> Path:
    """A data root with ``mitdb/`` holding one-lead (MLII) annotated WFDB records of ECG-like signals.

    Each record gets its own heart rate (55-110 bpm), R amplitude and RR jitter, so records differ the way
    patients do. Returns the data root (the folder that contains ``mitdb/``).
    """
    import wfdb

    db = Path(root) / "mitdb"
    db.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, rec in enumerate(records):
        hr = float(rng.uniform(55, 110))
        x = gaussian_wave_ecg(
            hr,
            seconds,
            fs,
            seed=seed + i,
            r_amp=float(rng.uniform(0.8, 1.8)),
            rr_jitter=float(rng.uniform(0.0, 0.04)),
        )
        wfdb.wrsamp(
            str(rec),
            fs=fs,
            units=["mV"],
            sig_name=["MLII"],
            p_signal=x[:, None].astype(np.float64),
            fmt=["212"],
            adc_gain=[200.0],
            baseline=[1024],
            write_dir=str(db),
        )
        beats = np.arange(int(0.3 * fs), len(x), int(round(60.0 / hr * fs)))
        wfdb.wrann(str(rec), "atr", beats, symbol=["N"] * len(beats), write_dir=str(db))
    return Path(root)
