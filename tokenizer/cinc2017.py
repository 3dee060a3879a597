"""The PhysioNet/CinC Challenge 2017 training set: 8,528 single-lead handheld ECGs (AliveCor, 300 Hz).

Layout: ``<root>/cinc2017/A00001.hea`` + ``A00001.mat`` ... ``A08528``, ``REFERENCE.csv``
(``record,label``: N normal, A atrial fibrillation, O other rhythm, ``~`` noisy) and ``RECORDS``. Another
device, lead (lead I equivalent) and population than MIT-BIH: the tokenizer trains on part of it for
robustness; MIT-BIH DS2 stays the test.

Download (users; tests and CI read the shared copy)::

    import wfdb
    wfdb.dl_database("challenge-2017", "<root>/cinc2017", records=..., ...)  # or
    # wget -r -np -nH --cut-dirs=4 https://physionet.org/files/challenge-2017/1.0.0/training/

then move the ``A*.hea`` / ``A*.mat`` files, ``RECORDS`` and ``REFERENCE.csv`` into ``<root>/cinc2017/``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ecg2llm.core.errors import DataNotFoundError, RecordError

from .data import _UNIT_SCALE, ENV_VAR, fill_nan_gaps, read_header, resample, resolve_data_dir

DB = "cinc2017"
FS = 300.0
LABELS = {"N": "normal", "A": "atrial fibrillation", "O": "other rhythm", "~": "noisy"}


def cinc2017_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``<root>/cinc2017``, with a clear error (and the download path) when it is missing."""
    d = resolve_data_dir(data_dir) / DB
    if not (d / "RECORDS").is_file() and not any(d.glob("A*.hea")):
        raise DataNotFoundError(
            f"CinC 2017 not found at {d} (expected A00001.hea/.mat ... and RECORDS). Set {ENV_VAR} (or "
            f"--data_dir) to the folder that contains '{DB}/', or download the challenge's training set: "
            f"wfdb.dl_database('challenge-2017', '{d}') (PhysioNet 'challenge-2017/1.0.0/training/') "
            f"and move "
            f"its A*.hea / A*.mat files, RECORDS and REFERENCE.csv into {d}."
        )
    return d


def cinc2017_records(data_dir: str | os.PathLike | None = None) -> list[str]:
    """Record names (``RECORDS`` order, else sorted ``A*.hea``)."""
    d = cinc2017_dir(data_dir)
    rec_file = d / "RECORDS"
    if rec_file.is_file():
        return [ln.strip() for ln in rec_file.read_text().splitlines() if ln.strip()]
    return sorted(p.stem for p in d.glob("A*.hea"))


def cinc2017_labels(data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """``{record: label}`` from ``REFERENCE.csv`` (N, A, O or ``~``)."""
    f = cinc2017_dir(data_dir) / "REFERENCE.csv"
    if not f.is_file():
        raise DataNotFoundError(f"{f} is missing; it ships with the challenge's training set "
                                f"(see tokenizer/cinc2017.py)")
    out = {}
    for ln in f.read_text().splitlines():
        parts = ln.strip().split(",")
        if len(parts) == 2 and parts[1] in LABELS:
            out[parts[0]] = parts[1]
    return out


def read_cinc2017(record: str, data_dir: str | os.PathLike | None = None, fs: float | None = None
                  ) -> np.ndarray:
    """One CinC 2017 recording in mV (float32), resampled to ``fs`` if given (its own rate is 300 Hz)."""
    import wfdb

    d = cinc2017_dir(data_dir)
    header = read_header(record, d)
    try:
        rec = wfdb.rdrecord(str(d / record), physical=True)
    except Exception as e:  # noqa: BLE001 - wfdb raises many types for a bad file
        raise RecordError(f"CinC 2017 record '{record}' cannot be read ({type(e).__name__}: {e}); "
                          f"re-download it (see tokenizer/cinc2017.py)") from None
    unit = ((rec.units or ["mV"])[0] or "mV").strip().lower()
    if unit not in _UNIT_SCALE:
        raise RecordError(f"CinC 2017 record '{record}': unknown physical unit {unit!r}")
    x = np.asarray(rec.p_signal[:, 0], np.float64) * _UNIT_SCALE[unit]
    x = fill_nan_gaps(x, float(rec.fs), 0.5, where=f"CinC 2017 record '{record}'")
    if header.sig_len and len(x) != header.sig_len:
        raise RecordError(f"CinC 2017 record '{record}': {len(x)} samples read, header says {header.sig_len}")
    if fs is not None and float(fs) != float(rec.fs):
        x = resample(x, float(rec.fs), float(fs))
    return x.astype(np.float32)


def load_cinc2017(records: Sequence[str], data_dir: str | os.PathLike | None = None, fs: float = 360.0,
                  progress: bool = False) -> dict[str, np.ndarray]:
    """Read several recordings (``{record: mV array at fs}``)."""
    from tqdm.auto import tqdm

    return {r: read_cinc2017(r, data_dir, fs) for r in tqdm(records, desc="CinC 2017", disable=not progress)}
