"""Record splits for MIT-BIH.

The project's evaluation is **inter-patient** (de Chazal et al., IEEE TBME 51(7), 2004), the field
standard: train on DS1, test on DS2, the four paced records excluded. Validation is whole DS1 records held
out of training, never windows of a training record (MIT-BIH has one record per patient except 201/202,
which are the same subject: 201 is in DS1 and 202 in DS2 in de Chazal's split, kept as published).

:func:`intra_record_split` exists only to mirror the seed report, which splits windows of the same records
(its split is unspecified; SEED-NOTES measured with the first 80 % / last 20 % of one record). Numbers
from it are optimistic and are labelled ``intra-record`` wherever they appear.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

DS1: tuple[str, ...] = tuple(str(r) for r in (
    101, 106, 108, 109, 112, 114, 115, 116, 118, 119, 122, 124, 201, 203, 205, 207, 208, 209, 215, 220,
    223, 230,
))
DS2: tuple[str, ...] = tuple(str(r) for r in (
    100, 103, 105, 111, 113, 117, 121, 123, 200, 202, 210, 212, 213, 214, 219, 221, 222, 228, 231, 232,
    233, 234,
))
PACED: tuple[str, ...] = ("102", "104", "107", "217")

#: Default validation records: four DS1 records held out whole, chosen to span normal (101, 112),
#: ventricular (119, 208 has many PVC and fusion beats) and supraventricular (232 is DS2, so none here) content.
DEFAULT_VALID: tuple[str, ...] = ("101", "112", "119", "208")


@dataclass(frozen=True)
class Split:
    """Record lists of one inter-patient split."""

    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]

    def of(self, record: str) -> str:
        """Name of the split that holds ``record`` (``train`` / ``valid`` / ``test``), or ``excluded``."""
        r = str(record)
        for name in ("train", "valid", "test"):
            if r in getattr(self, name):
                return name
        return "excluded"

    def as_dict(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "valid": list(self.valid), "test": list(self.test)}


def inter_patient_split(valid: Sequence[str] | None = None) -> Split:
    """DS1 minus ``valid`` for training, ``valid`` (whole DS1 records) for validation, DS2 for test.

    Parameters
    ----------
    valid : sequence of str, optional
        DS1 records to hold out for validation (default :data:`DEFAULT_VALID`). Must be DS1 records.
    """
    from ecg2llm.core.errors import ConfigError

    valid = tuple(str(r) for r in (DEFAULT_VALID if valid is None else valid))
    bad = [r for r in valid if r not in DS1]
    if bad:
        raise ConfigError(f"validation records must come from DS1 (training patients); not in DS1: {bad}")
    train = tuple(r for r in DS1 if r not in valid)
    return Split(train=train, valid=valid, test=DS2)


def intra_record_split(n_windows: int, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """**Seed-mirroring only**: the first ``train_fraction`` of a record's windows train, the rest test.

    Returns index arrays (train, test). Adjacent windows of the same patient are nearly identical, so
    this split overstates generalization; use :func:`inter_patient_split` for any reported result.
    """
    cut = int(round(n_windows * train_fraction))
    return np.arange(cut), np.arange(cut, n_windows)
