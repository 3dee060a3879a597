"""Windows to score: real MIT-BIH MLII windows (DS1 / DS2) and folders of synthetic ECGs.

Everything stage 3 compares is a :class:`WindowSet`: ``x`` of shape ``(N, T)`` float32 in mV at ``fs``
(360 Hz, ``T = 3600`` for the default 10-s windows), one name per window, and for real windows the record
and start sample each came from.

Synthetic folders are read through :func:`tokenizer.folder.iter_samples` -- the one reader of the one
folder format (``manifest.json`` written by :func:`tokenizer.folder.write_folder`, or bare ``*.npy`` files
in mV at ``--fs`` (default 360 Hz), or bare WFDB records with their own rate and units).

Window policy: samples at another rate are resampled to 360 Hz; a sample longer than one window is cut
into consecutive non-overlapping windows and a tail shorter than a window is dropped; a sample shorter
than one window is an error (``short="error"``, the default) or skipped (``short="skip"``) -- never
padded, because padding would invent signal that every metric would then score.

Prompted samples (``prompt`` not null) start with real ECG copied from a recording. By default they are
excluded from the unconditional metrics (``prompted="exclude"``: a copied prompt would flatter fidelity);
``"continuation"`` keeps only what follows the prompt, ``"include"`` keeps the whole sample.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tokenizer.data import read_record, resample, resolve_data_dir
from tokenizer.folder import SyntheticDataError, iter_samples

FS = 360.0  #: Sampling rate (Hz) every metric works at: MIT-BIH's own.
WINDOW_S = 10.0  #: Window length in seconds (issue 5: "DS2 MLII 10-second windows").
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
        Records to cut (``tokenizer.splits.DS2`` for the default reference).
    data_dir : path, optional
        Data root holding ``mitdb/`` (see :func:`tokenizer.data.resolve_data_dir`).
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


# --------------------------------------------------------------------------------------------- synthetic
def load_synthetic(
    folder: str | os.PathLike,
    fs: float | None = None,
    window_s: float = WINDOW_S,
    target_fs: float = FS,
    short: str = "error",
    prompted: str = "exclude",
) -> WindowSet:
    """Read a folder of synthetic ECGs into 10-s windows at 360 Hz (formats: see the module docstring).

    Parameters
    ----------
    folder : path
        The folder ``lm/generate.py`` wrote (or one of ``.npy`` / WFDB files only).
    fs : float, optional
        Sampling rate of bare ``.npy`` files (default 360 Hz); must not contradict a manifest.
    window_s : float
        Window length in seconds.
    target_fs : float
        Rate every window is resampled to.
    short : {"error", "skip"}
        What to do with a sample shorter than one window.
    prompted : {"exclude", "continuation", "include"}
        What to do with prompted samples (see the module docstring).

    Raises
    ------
    SyntheticDataError
        Missing folder, unreadable or non-finite samples, short samples (``short="error"``), or no window.
    """
    if short not in {"error", "skip"}:
        raise SyntheticDataError(f"short must be 'error' or 'skip', got {short!r}")
    folder = Path(folder)
    win = int(round(window_s * target_fs))
    windows, names, too_short, n_samples = [], [], [], 0
    for smp in iter_samples(folder, fs, prompted, lead=LEAD, default_fs=FS):
        name, x, f, drop_s = smp.name, smp.x, smp.fs, smp.prompt_s
        n_samples += 1
        if not np.isfinite(x).all():
            i = int(np.flatnonzero(~np.isfinite(x))[0])
            raise SyntheticDataError(f"{folder}: sample {name!r} has NaN/inf values (first at index {i})")
        x = x[int(round(drop_s * f)) :]
        if f != target_fs:
            x = resample(x, f, target_fs)
        k = len(x) // win
        if k == 0:
            too_short.append(f"{name} ({len(x) / target_fs:.2f} s)")
            continue
        for j in range(k):
            windows.append(x[j * win : (j + 1) * win])
            names.append(name if k == 1 else f"{name}#{j}")
    if too_short and short == "error":
        shown = ", ".join(too_short[:5]) + (f" ... ({len(too_short)} in all)" if len(too_short) > 5 else "")
        raise SyntheticDataError(
            f"{folder}: {len(too_short)} sample(s) shorter than one {window_s:g}-s window: {shown}. Generate "
            f"at least {window_s:g} s per sample, or pass --short skip to score the others."
        )
    if not windows:
        hint = (
            " (all samples are prompted; pass --prompted continuation or include)" if n_samples == 0 else ""
        )
        raise SyntheticDataError(f"{folder}: no {window_s:g}-s window to score{hint}")
    return WindowSet(
        x=np.stack(windows).astype(np.float32),
        fs=float(target_fs),
        names=names,
        source=str(folder),
        meta={"n_samples": n_samples, "n_short_skipped": len(too_short)},
    )
