"""Windows to score: real MIT-BIH MLII windows (DS1 / DS2) and folders of synthetic ECGs.

Everything stage 3 compares is a :class:`WindowSet`: ``x`` of shape ``(N, T)`` float32 in mV at ``fs``
(360 Hz, ``T = 3600`` for the default 10-s windows), one name per window, and for real windows the record
and start sample each came from.

Synthetic folder formats accepted by :func:`load_synthetic` (checked in this order):

1. ``manifest.json`` as written by ``lm/generate.py`` (and :func:`write_synthetic_folder`)::

       {"fs": 360.0, "units": "mV",
        "samples": [{"name": "sample_0000", "npy": "sample_0000.npy", "wfdb": "sample_0000",
                     "png": "sample_0000.png", "seconds": 10.0,
                     "prompt": null | {"record": "100", "start_sample": 0, "prompt_seconds": 5.0}}]}

   Each sample is read from its ``.npy`` (1-D float32, mV) when present, else from its WFDB record.
2. A folder of ``*.npy`` files only (1-D, mV); ``fs`` comes from the caller (``--fs``, default 360 Hz).
3. A folder of WFDB records only (``*.hea`` + signal files); ``fs`` and units come from each header; a
   multi-lead record must have an ``MLII`` lead (or one lead only).

Window policy: samples at another rate are resampled to 360 Hz; a sample longer than one window is cut
into consecutive non-overlapping windows and a tail shorter than a window is dropped; a sample shorter
than one window is an error (``short="error"``, the default) or skipped (``short="skip"``) -- never
padded, because padding would invent signal that every metric would then score.

Prompted samples (``prompt`` not null) start with real ECG copied from a DS2 record. By default they are
excluded from the unconditional metrics (``prompted="exclude"``: a copied prompt would flatter fidelity);
``"continuation"`` keeps only what follows the prompt, ``"include"`` keeps the whole sample.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from tokenizer.data import read_record, resample, resolve_data_dir
from tokenizer.errors import ECG2LLMError
from tokenizer.utils.io import atomic_path, write_json

FS = 360.0  #: Sampling rate (Hz) every metric works at: MIT-BIH's own.
WINDOW_S = 10.0  #: Window length in seconds (issue 5: "DS2 MLII 10-second windows").
LEAD = "MLII"

_UNIT_SCALE = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}


class SyntheticDataError(ECG2LLMError, ValueError):
    """A folder of synthetic ECGs is missing, empty, or holds samples that cannot be scored."""


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
def _read_npy(path: Path) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises several types for a bad file
        raise SyntheticDataError(f"{path} cannot be read as a .npy array ({type(e).__name__}: {e})") from None
    x = np.squeeze(np.asarray(x))
    if x.ndim != 1:
        raise SyntheticDataError(
            f"{path}: expected a 1-D signal in mV, got shape {x.shape}. Save one lead per file "
            f"(np.save(path, signal.astype(np.float32)))."
        )
    return x.astype(np.float64)


def _read_wfdb(base: Path) -> tuple[np.ndarray, float]:
    import wfdb

    try:
        rec = wfdb.rdrecord(str(base), physical=True)
    except Exception as e:  # noqa: BLE001
        raise SyntheticDataError(f"WFDB record {base} cannot be read ({type(e).__name__}: {e})") from None
    names = list(rec.sig_name or [])
    if rec.p_signal.shape[1] == 1:
        ch = 0
    elif LEAD in names:
        ch = names.index(LEAD)
    else:
        raise SyntheticDataError(
            f"WFDB record {base} has leads {names} but no {LEAD}; write one lead per record"
        )
    unit = ((rec.units or ["mV"])[ch] or "mV").strip().lower()
    if unit not in _UNIT_SCALE:
        raise SyntheticDataError(f"WFDB record {base}: unknown unit {unit!r} (expected mV, uV or V)")
    return rec.p_signal[:, ch].astype(np.float64) * _UNIT_SCALE[unit], float(rec.fs)


def _samples_from_folder(folder: Path, fs: float | None, prompted: str):
    """Yield (name, signal in mV, fs, prompt-seconds-to-drop) for each sample of a folder."""
    manifest = folder / "manifest.json"
    if manifest.is_file():
        try:
            man = json.loads(manifest.read_text())
        except json.JSONDecodeError as e:
            raise SyntheticDataError(f"{manifest} is not valid JSON: {e}") from None
        if "samples" not in man or "fs" not in man:
            raise SyntheticDataError(f"{manifest} must have keys 'fs' and 'samples' (see eval/data.py)")
        m_fs = float(man["fs"])
        if fs is not None and float(fs) != m_fs:
            raise SyntheticDataError(
                f"--fs {fs} contradicts {manifest} (fs={m_fs}); drop --fs for a manifest folder"
            )
        scale = _UNIT_SCALE.get(str(man.get("units", "mV")).strip().lower())
        if scale is None:
            raise SyntheticDataError(f"{manifest}: unknown units {man.get('units')!r} (expected mV, uV or V)")
        for s in man["samples"]:
            name = str(s.get("name") or s.get("npy") or s.get("wfdb"))
            prompt = s.get("prompt")
            if prompt and prompted == "exclude":
                continue
            drop = (
                float(prompt.get("prompt_seconds", 0.0)) if (prompt and prompted == "continuation") else 0.0
            )
            if s.get("npy") and (folder / s["npy"]).is_file():
                yield name, _read_npy(folder / s["npy"]) * scale, m_fs, drop
            elif s.get("wfdb") and (folder / f"{s['wfdb']}.hea").is_file():
                x, f = _read_wfdb(folder / s["wfdb"])
                yield name, x, f, drop
            else:
                raise SyntheticDataError(
                    f"{manifest}: sample {name!r} names npy={s.get('npy')!r} / wfdb={s.get('wfdb')!r} but "
                    f"neither file exists in {folder}"
                )
        return
    npys = sorted(folder.glob("*.npy"))
    if npys:
        for p in npys:
            yield p.stem, _read_npy(p), float(fs or FS), 0.0
        return
    heas = sorted(folder.glob("*.hea"))
    if heas:
        for p in heas:
            x, f = _read_wfdb(p.with_suffix(""))
            yield p.stem, x, f, 0.0
        return
    raise SyntheticDataError(
        f"{folder} holds no manifest.json, *.npy or *.hea files: nothing to score. Point --synthetic at the "
        f"folder lm/generate.py wrote."
    )


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
    if prompted not in {"exclude", "continuation", "include"}:
        raise SyntheticDataError(f"prompted must be 'exclude', 'continuation' or 'include', got {prompted!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise SyntheticDataError(f"synthetic folder {folder} does not exist")
    win = int(round(window_s * target_fs))
    windows, names, too_short, n_samples = [], [], [], 0
    for name, x, f, drop_s in _samples_from_folder(folder, fs, prompted):
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


def write_synthetic_folder(
    folder: str | os.PathLike,
    signals: Sequence[np.ndarray] | np.ndarray,
    fs: float = FS,
    names: Sequence[str] | None = None,
    prompts: Sequence[dict | None] | None = None,
    wfdb_records: bool = True,
    extra: dict | None = None,
) -> Path:
    """Write signals in the synthetic-folder format (``manifest.json`` + ``.npy`` + WFDB), atomically.

    This is the format ``lm/generate.py`` writes; the reference generators (ECGSYN, held-out real
    windows) use it too so that they go through exactly the same loader.

    Parameters
    ----------
    folder : path
        Output folder (replaced as a whole if it exists).
    signals : sequence of 1-D arrays or (N, T) array
        Signals in mV at ``fs``.
    names : sequence of str, optional
        Sample names (default ``sample_0000`` ...).
    prompts : sequence of dict or None, optional
        Per-sample prompt description (``{"record", "start_sample", "prompt_seconds"}``) or None.
    wfdb_records : bool
        Also write ``<name>.hea/.dat`` with ``wfdb.wrsamp`` (16-bit, 1 µV resolution, so clipped to
        ±32 mV; the ``.npy`` keeps the exact float32 values and is what the loader reads first).
    extra : dict, optional
        Additional top-level manifest keys (generator description, seed...).
    """
    import wfdb

    sigs = [np.asarray(s, dtype=np.float32).reshape(-1) for s in signals]
    names = list(names) if names is not None else [f"sample_{i:04d}" for i in range(len(sigs))]
    prompts = list(prompts) if prompts is not None else [None] * len(sigs)
    if not (len(names) == len(sigs) == len(prompts)):
        raise SyntheticDataError("signals, names and prompts must have the same length")
    samples = []
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for name, x, prompt in zip(names, sigs, prompts, strict=True):
            np.save(tmp / f"{name}.npy", x)
            if wfdb_records:
                wfdb.wrsamp(
                    name,
                    fs=float(fs),
                    units=["mV"],
                    sig_name=[LEAD],
                    p_signal=np.clip(x, -32.0, 32.0)[:, None].astype(np.float64),
                    fmt=["16"],
                    adc_gain=[1000.0],
                    baseline=[0],
                    write_dir=str(tmp),
                )
            samples.append(
                {
                    "name": name,
                    "npy": f"{name}.npy",
                    "wfdb": name if wfdb_records else None,
                    "png": None,
                    "seconds": len(x) / float(fs),
                    "prompt": prompt,
                }
            )
        write_json(
            tmp / "manifest.json", {"fs": float(fs), "units": "mV", "samples": samples, **(extra or {})}
        )
    return Path(folder)
