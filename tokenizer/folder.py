"""The ECG folder format: one writer, one reader, one versioned manifest, for every synthetic or exported set.

``lm/generate.py``, ``lm/forecast.py``, ``scripts/tstr.py``, the reference sets of stage 3 and the bigram
sampler write folders through :func:`write_folder`; ``eval/score.py`` and everything else read them
through :func:`iter_samples`. A folder::

    manifest.json       {"format": "ecg2llm.ecg-folder", "version": 1, "fs": 360.0, "units": "mV",
                         "lead": "MLII", "samples": [SAMPLE, ...], ...generator keys (model, seed, timing)}
    sample_000.npy      float32 mV, 1-D: what readers use first (exact)
    sample_000.hea/.dat WFDB record of the same samples (format 16, 1 µV per ADC unit, clipped to ±32.767 mV)
    sample_000.atr      optional WFDB annotations (generated beat labels and rhythm notes)
    sample_000.png      optional plot

    SAMPLE = {"name": "sample_000", "npy": "sample_000.npy", "wfdb": "sample_000", "atr": null, "png": null,
              "n_samples": 3600, "seconds": 10.0,
              "prompt": null | {"record": "100", "lead": "MLII", "start_s": 0.0, "seconds": 5.0}}

``prompt`` is always per sample: a prompted sample starts with ``prompt.seconds`` of a real recording,
which readers drop or skip (``prompted=``) so that real ECG is never scored as synthetic.

Folders without a manifest stay readable, because users bring ECGs from other generators: a folder of
``*.npy`` files (1-D, mV, rate given by the caller) or of WFDB records (rate and units from each header).
Manifests written before the format had a version (``lm/generate.py`` kept the prompt at the top level,
the stage-3 writer per sample as ``prompt_seconds``) are read and upgraded in memory.

A manifest is untrusted input: every file it names must be a plain file name inside the folder; an absolute
path or one that climbs out (``../x.npy``) is refused.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ecg2llm.core.errors import ECG2LLMError
from ecg2llm.core.io import atomic_path, write_json

FORMAT = "ecg2llm.ecg-folder"
VERSION = 1
MANIFEST = "manifest.json"
WFDB_GAIN = 1000.0  #: ADC units per mV: 1 µV steps, ±32.767 mV range in WFDB format 16
UNIT_SCALE = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}
PROMPTED = ("exclude", "continuation", "include")


class SyntheticDataError(ECG2LLMError, ValueError):
    """A folder of ECGs is missing, empty, malformed, or holds samples that cannot be read."""


@dataclass
class Sample:
    """One signal read from a folder: 1-D mV at ``fs``; the first ``prompt_s`` seconds are a real prompt."""

    name: str
    x: np.ndarray
    fs: float
    prompt_s: float = 0.0


# ----------------------------------------------------------------------------------------------- writing
def check_replaceable(out: str | os.PathLike, writer: str = "ecg2llm") -> None:
    """Refuse to replace ``out`` unless it is absent, empty, or an earlier folder of this format.

    Raises
    ------
    SyntheticDataError
        ``out`` is a file, or a non-empty folder without our ``manifest.json`` (someone else's data).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise SyntheticDataError(f"{out} exists and is not an earlier output of {writer} (no {MANIFEST}): "
                                 f"choose another --out")


def write_wfdb(folder: Path, name: str, x_mv: np.ndarray, fs: float, lead: str = "MLII",
               comments: Sequence[str] = ()) -> None:
    """One lead in mV as a WFDB record ``<folder>/<name>.hea/.dat`` (format 16, 1 µV per ADC unit)."""
    import wfdb

    lim = 32767 / WFDB_GAIN
    sig = np.clip(np.asarray(x_mv, dtype=np.float64), -lim, lim)[:, None]  # (samples, 1)
    wfdb.wrsamp(name, fs=float(fs), units=["mV"], sig_name=[lead], p_signal=sig, fmt=["16"],
                adc_gain=[WFDB_GAIN], baseline=[0], comments=list(comments), write_dir=str(folder))


def write_folder(folder: str | os.PathLike, signals: Sequence[np.ndarray] | np.ndarray, fs: float, *,
                 names: Sequence[str] | None = None, lead: str = "MLII",
                 prompts: Sequence[dict | None] | None = None, wfdb: bool = True, comments: Sequence[str] = (),
                 per_sample: Callable[[Path, str, int, np.ndarray], dict | None] | None = None,
                 extra: dict | None = None, arrays: dict[str, np.ndarray] | None = None) -> dict:
    """Write signals as an ECG folder (``manifest.json`` + ``.npy`` + WFDB), replacing ``folder`` atomically.

    Parameters
    ----------
    folder : path
        Output folder; an existing one must be an earlier folder of this format (:func:`check_replaceable`).
    signals : sequence of 1-D arrays or (N, T) array
        Signals in mV at ``fs``.
    names : sequence of str, optional
        Sample names (default ``sample_000`` ...); each must be a plain file-name stem.
    prompts : sequence of dict or None, optional
        Per sample ``{"record", "lead", "start_s", "seconds"}`` when it begins with a real prompt, else None.
    wfdb : bool
        Also write each sample as a WFDB record (``.npy`` keeps the exact float32 values).
    comments : sequence of str
        WFDB header comment lines (say that the record is synthetic; never patient data).
    per_sample : callable, optional
        ``per_sample(tmp_folder, name, index, x)`` writes extra files of one sample (a ``.atr``, a PNG) into
        the temporary folder and returns extra manifest keys for it (``{"atr": "sample_000.atr"}``...).
    extra : dict, optional
        Top-level manifest keys (generator, model, seed, timing...).
    arrays : dict of name -> array, optional
        Extra ``<name>.npy`` files (e.g. ``tokens``) written beside the samples.

    Returns
    -------
    dict
        The manifest written.
    """
    sigs = [np.asarray(s, dtype=np.float32).reshape(-1) for s in signals]
    names = list(names) if names is not None else [f"sample_{i:03d}" for i in range(len(sigs))]
    prompts = list(prompts) if prompts is not None else [None] * len(sigs)
    if not (len(names) == len(sigs) == len(prompts)):
        raise SyntheticDataError(f"{len(sigs)} signals, {len(names)} names and {len(prompts)} prompts: "
                                 f"they must have the same length")
    for n in names:
        _check_name(n, "write_folder", "sample name")
    check_replaceable(folder)
    samples = []
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for i, (name, x, prompt) in enumerate(zip(names, sigs, prompts)):
            np.save(tmp / f"{name}.npy", x)
            if wfdb:
                write_wfdb(tmp, name, x, fs, lead, comments)
            s = {"name": name, "npy": f"{name}.npy", "wfdb": name if wfdb else None, "atr": None, "png": None,
                 "n_samples": int(len(x)), "seconds": len(x) / float(fs), "prompt": _check_prompt(prompt)}
            if per_sample is not None:
                s.update(per_sample(tmp, name, i, x) or {})
            samples.append(s)
        for key, arr in (arrays or {}).items():
            _check_name(key, "write_folder", "array name")
            np.save(tmp / f"{key}.npy", arr)
        manifest = {"format": FORMAT, "version": VERSION, "fs": float(fs), "units": "mV", "lead": lead,
                    "samples": samples, **(extra or {})}
        write_json(tmp / MANIFEST, manifest)
    return manifest


def _check_prompt(p: dict | None) -> dict | None:
    if p is None:
        return None
    if not isinstance(p, dict) or not float(p.get("seconds", 0)) > 0:
        raise SyntheticDataError(f"a prompt must be a dict with 'seconds' > 0 (and record, lead, start_s), got {p!r}")
    return {"record": p.get("record"), "lead": p.get("lead"), "start_s": float(p.get("start_s", 0.0)),
            "seconds": float(p["seconds"]), **{k: v for k, v in p.items()
                                                if k not in {"record", "lead", "start_s", "seconds"}}}


def _check_name(name: Any, where: str, what: str) -> str:
    """A plain file name: no directory part, not absolute, not ``..`` (manifests are untrusted input)."""
    s = str(name)
    if not s or s in {".", ".."} or "/" in s or "\\" in s or os.path.isabs(s) or "\x00" in s:
        raise SyntheticDataError(f"{where}: {what} {s!r} is not a plain file name inside the folder (absolute "
                                 f"paths and '..' are refused)")
    return s


# ----------------------------------------------------------------------------------------------- reading
def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The folder's manifest, validated and upgraded to the current version; None when it has none.

    Raises
    ------
    SyntheticDataError
        Invalid JSON, a newer or foreign format, missing keys, unknown units, or a file name that leaves
        the folder.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        man = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SyntheticDataError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(man, dict) or not isinstance(man.get("samples"), list) or "fs" not in man:
        raise SyntheticDataError(f"{path} must be an object with 'fs' and a 'samples' list ({FORMAT} v{VERSION}, "
                                 f"see tokenizer/folder.py)")
    if man.get("format", FORMAT) != FORMAT:
        raise SyntheticDataError(f"{path} has format {man.get('format')!r}, not {FORMAT!r}")
    version = int(man.get("version", 0))
    if version > VERSION:
        raise SyntheticDataError(f"{path} is format version {version}; this ecg2llm reads up to {VERSION}: upgrade")
    if version == 0:
        man = _upgrade_v0(man)
    try:
        man["fs"] = float(man["fs"])
    except (TypeError, ValueError):
        raise SyntheticDataError(f"{path}: fs must be a number, got {man['fs']!r}") from None
    if str(man.get("units", "mV")).strip().lower() not in UNIT_SCALE:
        raise SyntheticDataError(f"{path}: unknown units {man.get('units')!r} (expected mV, uV or V)")
    for i, s in enumerate(man["samples"]):
        if not isinstance(s, dict):
            raise SyntheticDataError(f"{path}: samples[{i}] must be an object")
        for key in ("npy", "wfdb", "atr", "png"):
            if s.get(key):
                _check_name(s[key], str(path), f"samples[{i}].{key}")
    return man


def _upgrade_v0(man: dict) -> dict:
    """Pre-versioned manifests: a top-level ``prompt`` (lm/generate.py) or per-sample ``prompt_seconds``."""
    man = dict(man)
    top = man.pop("prompt", None)
    samples = []
    for s in man["samples"]:
        s = dict(s)
        p = s.get("prompt", top)
        if p:
            secs = p.get("seconds", p.get("prompt_seconds", 0.0))
            s["prompt"] = {"record": p.get("record"), "lead": p.get("lead"),
                           "start_s": p.get("start_s", 0.0), "seconds": float(secs)}
        else:
            s["prompt"] = None
        samples.append(s)
    man["samples"], man["version"], man["format"] = samples, VERSION, FORMAT
    return man


def read_npy(path: Path) -> np.ndarray:
    """A 1-D signal from a ``.npy`` file (no pickles), float64."""
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises several types for a bad file
        raise SyntheticDataError(f"{path} cannot be read as a .npy array ({type(e).__name__}: {e})") from None
    x = np.squeeze(np.asarray(x))
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.number):
        raise SyntheticDataError(f"{path}: expected a 1-D numeric signal in mV, got shape {x.shape} dtype "
                                 f"{x.dtype}. Save one lead per file (np.save(path, signal.astype(np.float32))).")
    return x.astype(np.float64)


def read_wfdb(base: Path, lead: str = "MLII") -> tuple[np.ndarray, float]:
    """One lead of a WFDB record in mV (the only lead, else ``lead``) and its rate."""
    import wfdb

    try:
        rec = wfdb.rdrecord(str(base), physical=True)
    except Exception as e:  # noqa: BLE001
        raise SyntheticDataError(f"WFDB record {base} cannot be read ({type(e).__name__}: {e})") from None
    names = list(rec.sig_name or [])
    if rec.p_signal.shape[1] == 1:
        ch = 0
    elif lead in names:
        ch = names.index(lead)
    else:
        raise SyntheticDataError(f"WFDB record {base} has leads {names} but no {lead}; write one lead per record")
    unit = ((rec.units or ["mV"])[ch] or "mV").strip().lower()
    if unit not in UNIT_SCALE:
        raise SyntheticDataError(f"WFDB record {base}: unknown unit {unit!r} (expected mV, uV or V)")
    return rec.p_signal[:, ch].astype(np.float64) * UNIT_SCALE[unit], float(rec.fs)


def iter_samples(folder: str | os.PathLike, fs: float | None = None, prompted: str = "exclude",
                 lead: str = "MLII", default_fs: float | None = None) -> Iterator[Sample]:
    """Every sample of a folder (manifest, bare ``.npy`` or bare WFDB), in mV.

    Parameters
    ----------
    folder : path
        An ECG folder (see the module docstring).
    fs : float, optional
        Rate of bare ``.npy`` files (required for them); must agree with a manifest's ``fs`` when given.
    prompted : {"exclude", "continuation", "include"}
        Prompted samples are skipped (default), yielded with ``prompt_s`` set so the caller can drop the
        prompt, or yielded whole with ``prompt_s = 0``.
    lead : str
        Lead to read from multi-lead WFDB records.
    default_fs : float, optional
        Rate assumed for bare ``.npy`` files when ``fs`` is not given.

    Raises
    ------
    SyntheticDataError
        A missing or empty folder, a bad manifest, or an unreadable sample.
    """
    if prompted not in PROMPTED:
        raise SyntheticDataError(f"prompted must be one of {', '.join(PROMPTED)}, got {prompted!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise SyntheticDataError(f"ECG folder {folder} does not exist")
    man = read_manifest(folder)
    if man is not None:
        if fs is not None and float(fs) != man["fs"]:
            raise SyntheticDataError(f"--fs {fs} contradicts {folder / MANIFEST} (fs={man['fs']:g}); drop --fs for "
                                     f"a folder with a manifest")
        scale = UNIT_SCALE[str(man.get("units", "mV")).strip().lower()]
        for s in man["samples"]:
            name = str(s.get("name") or s.get("npy") or s.get("wfdb"))
            p = s.get("prompt")
            if p and prompted == "exclude":
                continue
            drop = float(p["seconds"]) if (p and prompted == "continuation") else 0.0
            if s.get("npy") and (folder / s["npy"]).is_file():
                yield Sample(name, read_npy(folder / s["npy"]) * scale, man["fs"], drop)
            elif s.get("wfdb") and (folder / f"{s['wfdb']}.hea").is_file():
                x, f = read_wfdb(folder / s["wfdb"], lead)
                yield Sample(name, x, f, drop)
            else:
                raise SyntheticDataError(f"{folder / MANIFEST}: sample {name!r} names npy={s.get('npy')!r} / "
                                         f"wfdb={s.get('wfdb')!r} but neither file exists in {folder}")
        return
    npys = sorted(folder.glob("*.npy"))
    if npys:
        rate = fs if fs is not None else default_fs
        if rate is None:
            raise SyntheticDataError(f"{folder} holds bare .npy files without a manifest: give their sampling "
                                     f"rate (--fs)")
        for p in npys:
            yield Sample(p.stem, read_npy(p), float(rate))
        return
    heas = sorted(folder.glob("*.hea"))
    if heas:
        for p in heas:
            x, f = read_wfdb(p.with_suffix(""), lead)
            yield Sample(p.stem, x, f)
        return
    raise SyntheticDataError(f"{folder} holds no {MANIFEST}, *.npy or *.hea files: nothing to read. Point at the "
                             f"folder lm/generate.py wrote, or at a folder of .npy (mV) or WFDB records.")
