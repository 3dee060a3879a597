"""Windows to score: real MIT-BIH MLII windows (DS1 / DS2) and folders of synthetic ECGs.

Everything stage 3 compares is a :class:`WindowSet`: ``x`` of shape ``(N, T)`` float32 in mV at ``fs``
(360 Hz, ``T = 3600`` for the default 10-s windows), one name per window, and for real windows the record
and start sample each came from.

Synthetic folders are read through :func:`ecg2llm.tokenizer.folder.iter_samples` -- the one reader of the one
folder format (``manifest.json`` written by :func:`ecg2llm.tokenizer.folder.write_folder`, or bare ``*.npy`` files
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

import os
from pathlib import Path

import numpy as np

from ecg2llm.tokenizer.data import resample
from ecg2llm.tokenizer.folder import SyntheticDataError, iter_samples
from ecg2llm.tokenizer.windowset import FS, LEAD, WINDOW_S, WindowSet, _mlii, real_windows  # noqa: F401 - stage 3's names


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
