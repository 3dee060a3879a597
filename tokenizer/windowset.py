"""Equal-length windows of real recordings, and the one seeded draw of them every stage uses.

A :class:`WindowSet` is ``x`` of shape ``(N, T)`` float32 in mV at ``fs`` (360 Hz, ``T = 3600`` for the
default 10-s windows), one name per window, and for real windows the record and start sample each came
from. :func:`real_windows` cuts MLII windows of MIT-BIH records (stage 3's references, the forecast tasks
of stage 2, the planted-defect sets); :mod:`ecg2llm.eval.data` adds folders of synthetic ECGs.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .data import read_record, resolve_data_dir
from .folder import SyntheticDataError

FS = 360.0  #: Sampling rate (Hz) every metric works at: MIT-BIH's own.
WINDOW_S = 10.0  #: Window length in seconds (10-s windows, as cardiologists read rhythm strips).
LEAD = "MLII"


@dataclass
class WindowSet:
    """Equal-length single-lead windows in mV.

    Attributes
    ----------
    x : np.ndarray
        ``(N, T)`` float32, millivolts, at ``fs``.
    fs : float
        Sampling rate in Hz.
    names : list of str
        One name per window (``"100@36000"`` for real windows, ``"sample_0003#1"`` for the second window
        of a synthetic sample).
    records : np.ndarray or None
        ``(N,)`` source record of each real window.
    starts : np.ndarray or None
        ``(N,)`` start sample (at ``fs``) of each real window in its record.
    source : str
        Human-readable origin, for reports.
    """

    x: np.ndarray
    fs: float
    names: list[str]
    records: np.ndarray | None = None
    starts: np.ndarray | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, idx: np.ndarray) -> "WindowSet":
        """The windows at positions ``idx`` (same order)."""
        idx = np.asarray(idx, dtype=np.int64)
        return WindowSet(
            x=self.x[idx],
            fs=self.fs,
            names=[self.names[i] for i in idx],
            records=None if self.records is None else self.records[idx],
            starts=None if self.starts is None else self.starts[idx],
            source=self.source,
            meta=dict(self.meta),
        )


# --------------------------------------------------------------------------------------------- real data
@functools.lru_cache(maxsize=64)
def _mlii(record: str, data_dir: str, fs: float) -> np.ndarray:
    """One record's MLII lead in mV at ``fs`` (cached: a scoring run reads each record once)."""
    return read_record(record, data_dir, lead=LEAD, fs=fs, annotations=False).signal


def real_windows(
    records: Sequence[str],
    data_dir: str | os.PathLike | None = None,
    n: int | None = None,
    seed: int = 0,
    window_s: float = WINDOW_S,
    stride_s: float | None = None,
    fs: float = FS,
    exclude: "WindowSet | None" = None,
    source: str = "",
) -> WindowSet:
    """MLII windows of MIT-BIH records, optionally a seeded random subset of ``n`` of them.

    Parameters
    ----------
    records : sequence of str
        Records to cut (``ecg2llm.tokenizer.splits.DS2`` for the default reference).
    data_dir : path, optional
        Data root holding ``mitdb/`` (see :func:`ecg2llm.tokenizer.data.resolve_data_dir`).
    n : int, optional
        Keep ``n`` windows drawn uniformly without replacement (all windows when None or larger).
    seed : int
        Seed of that draw; the same seed and settings give the same windows.
    window_s, stride_s : float
        Window length and hop in seconds (``stride_s`` defaults to ``window_s``: no overlap).
    fs : float
        Sampling rate to read at (records are resampled if needed).
    exclude : WindowSet, optional
        Windows whose ``(record, start)`` pairs must not be drawn (held-out sets disjoint from a reference).

    Returns
    -------
    WindowSet
        Sorted by record then start.
    """
    root = str(resolve_data_dir(data_dir))
    win = int(round(window_s * fs))
    hop = int(round((stride_s or window_s) * fs))
    if win <= 0 or hop <= 0:
        raise SyntheticDataError(f"window_s ({window_s}) and stride_s ({stride_s}) must be positive")
    index: list[tuple[str, int]] = []
    for rec in records:
        length = len(_mlii(str(rec), root, float(fs)))
        index += [(str(rec), s) for s in range(0, length - win + 1, hop)]
    if exclude is not None and exclude.records is not None:
        taken = set(zip(exclude.records.tolist(), exclude.starts.tolist(), strict=True))
        index = [p for p in index if p not in taken]
    if n is not None and n < len(index):
        keep = np.sort(np.random.default_rng(seed).choice(len(index), size=n, replace=False))
        index = [index[i] for i in keep]
    if not index:
        raise SyntheticDataError(f"no {window_s}-s windows could be cut from records {list(records)}")
    x = np.stack([_mlii(r, root, float(fs))[s : s + win] for r, s in index]).astype(np.float32)
    return WindowSet(
        x=x,
        fs=float(fs),
        names=[f"{r}@{s}" for r, s in index],
        records=np.array([r for r, _ in index]),
        starts=np.array([s for _, s in index]),
        source=source or f"MIT-BIH {LEAD} records {','.join(map(str, records))}",
    )
