"""MIT-BIH (or any WFDB database) on disk: find it, download it, read one lead in millivolts.

Data root: ``--data-dir`` flag, else the ``ECG2LLM_DATA`` environment variable, else
``~/.cache/ecg2llm``. A database lives in ``<root>/<db>`` (``<root>/mitdb`` for MIT-BIH), one
``NNN.hea`` / ``NNN.dat`` / ``NNN.atr`` triple per record, as PhysioNet publishes it.

Signals follow WFDB vocabulary: ``fs`` in Hz, ``sig_name`` for leads, physical units in mV. Header
comment lines (patient age, sex, medications) are never read into any object here, so they cannot
reach a config, a log or a report.

NaN policy (WFDB marks missing samples as NaN in physical units): gaps up to ``max_nan_gap_s`` seconds
are filled by linear interpolation; a longer gap raises :class:`RecordError` naming the record and the
gap. Records sampled at another rate are resampled (polyphase, ``scipy.signal.resample_poly``) to the
requested ``fs``, and annotation sample indices are rescaled with them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ecg2llm.core.errors import DataNotFoundError, RecordError

from .ecg import BEAT_SYMBOLS

ENV_VAR = "ECG2LLM_DATA"
DEFAULT_ROOT = Path("~/.cache/ecg2llm")

#: All 48 MIT-BIH Arrhythmia Database records (PhysioNet ``mitdb/RECORDS``).
MITDB_RECORDS: tuple[str, ...] = tuple(str(r) for r in (
    100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 111, 112, 113, 114, 115, 116, 117, 118, 119, 121,
    122, 123, 124, 200, 201, 202, 203, 205, 207, 208, 209, 210, 212, 213, 214, 215, 217, 219, 220, 221,
    222, 223, 228, 230, 231, 232, 233, 234,
))


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root: ``data_dir`` if given, else ``$ECG2LLM_DATA``, else ``~/.cache/ecg2llm``.

    Parameters
    ----------
    data_dir : path, optional
        Folder that contains the database folder (``mitdb/``), not the database folder itself. A path
        that ends in ``mitdb`` holding ``.hea`` files is accepted too and mapped to its parent.
    """
    raw = data_dir if data_dir not in (None, "") else os.environ.get(ENV_VAR) or DEFAULT_ROOT
    root = Path(raw).expanduser()
    if root.name == "mitdb" and any(root.glob("*.hea")):
        root = root.parent
    return root


def _missing_records(db_dir: Path, records: Iterable[str], annotator: str | None) -> list[str]:
    missing = []
    for r in records:
        need = [f"{r}.hea", f"{r}.dat"] + ([f"{r}.{annotator}"] if annotator else [])
        if not all((db_dir / n).is_file() for n in need):
            missing.append(r)
    return missing


def ensure_database(data_dir: str | os.PathLike | None = None, db: str = "mitdb",
                    records: Sequence[str] | None = None, download: bool = True,
                    annotator: str | None = "atr") -> Path:
    """Return ``<root>/<db>``, downloading missing records from PhysioNet if allowed.

    Parameters
    ----------
    data_dir : path, optional
        Data root (see :func:`resolve_data_dir`).
    db : str
        PhysioNet database slug, ``"mitdb"`` by default.
    records : sequence of str, optional
        Records that must be present; all 48 MIT-BIH records by default.
    download : bool
        Download missing records with ``wfdb.dl_database`` (one record at a time, with a progress bar).
    annotator : str or None
        Annotation file extension each record must have (``"atr"``), or None to need signals only.

    Raises
    ------
    DataNotFoundError
        When records are missing and cannot be downloaded; the message names ``ECG2LLM_DATA``, the
        expected layout and the missing records.
    """
    root = resolve_data_dir(data_dir)
    db_dir = root / db
    if records is None:
        records = MITDB_RECORDS if db == "mitdb" else _records_on_disk(db_dir)
    records = [str(r) for r in records]
    missing = _missing_records(db_dir, records, annotator)
    if missing and download:
        _download(db, db_dir, missing, annotator)
        missing = _missing_records(db_dir, records, annotator)
    if missing:
        shown = ", ".join(missing[:12]) + (f" ... ({len(missing)} in all)" if len(missing) > 12 else "")
        raise DataNotFoundError(
            f"database '{db}' is incomplete at {db_dir}: missing record(s) {shown}. Expected layout: "
            f"<root>/{db}/<record>.hea, .dat" + (f", .{annotator}" if annotator else "") +
            f". Set {ENV_VAR} (or --data-dir) to the folder that contains '{db}/', or allow the download "
            f"(internet needed): wfdb.dl_database('{db}', '<root>/{db}')."
        )
    return db_dir


def _records_on_disk(db_dir: Path) -> list[str]:
    rec_file = db_dir / "RECORDS"
    if rec_file.is_file():
        return [ln.strip() for ln in rec_file.read_text().splitlines() if ln.strip()]
    return sorted(p.stem for p in db_dir.glob("*.hea"))


def _download(db: str, db_dir: Path, records: list[str], annotator: str | None) -> None:
    import wfdb
    from tqdm.auto import tqdm

    db_dir.mkdir(parents=True, exist_ok=True)
    try:
        for r in tqdm(records, desc=f"downloading {db} from PhysioNet", unit="record"):
            wfdb.dl_database(db, str(db_dir), records=[r], annotators=[annotator] if annotator else None)
    except Exception as e:  # noqa: BLE001 - any network failure becomes one clear message below
        print(f"download of '{db}' failed ({type(e).__name__}: {e})")


@dataclass
class Annotations:
    """Reference annotations of one record.

    ``sample`` are indices at the record's (possibly resampled) ``fs``; ``symbol`` are beat/non-beat
    codes (``N``, ``V``, ``+``...); ``aux_note`` carry rhythm changes such as ``(AFIB`` on ``+`` marks.
    """

    sample: np.ndarray
    symbol: list[str]
    aux_note: list[str]

    def beats(self) -> tuple[np.ndarray, list[str]]:
        """Beat annotations only (symbols that label a QRS complex)."""
        keep = [i for i, s in enumerate(self.symbol) if s in BEAT_SYMBOLS]
        return self.sample[keep], [self.symbol[i] for i in keep]

    def rhythms(self) -> tuple[np.ndarray, list[str]]:
        """Rhythm-change annotations: (sample, rhythm label such as ``(N`` or ``(AFIB``)."""
        keep = [i for i, (s, a) in enumerate(zip(self.symbol, self.aux_note)) if s == "+" and a]
        return self.sample[keep], [self.aux_note[i] for i in keep]


@dataclass
class ECGRecord:
    """One lead of one record, in millivolts.

    Attributes
    ----------
    record : str
        Record name (``"100"``).
    lead : str
        Lead name as in the header's ``sig_name`` (``"MLII"``).
    fs : float
        Sampling frequency of ``signal`` in Hz (after any resampling).
    signal : np.ndarray
        Shape ``(samples,)``, float32, millivolts.
    annotations : Annotations or None
        Reference annotations, when read.
    fs_original : float
        The record's own sampling frequency.
    """

    record: str
    lead: str
    fs: float
    signal: np.ndarray
    annotations: Annotations | None = None
    fs_original: float = field(default=0.0)

    @property
    def duration_s(self) -> float:
        return len(self.signal) / self.fs


_UNIT_SCALE = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nu": 1.0, "": 1.0}


def read_header(record: str, db_dir: str | os.PathLike):
    """Read a WFDB header with a clear error for a missing or corrupt file (comments are discarded)."""
    import wfdb

    base = Path(db_dir) / str(record)
    if not base.with_suffix(".hea").is_file():
        raise DataNotFoundError(
            f"record '{record}' not found: no {base}.hea. Check the record name and the data folder "
            f"({ENV_VAR} or --data-dir)."
        )
    try:
        header = wfdb.rdheader(str(base))
    except Exception as e:  # noqa: BLE001 - wfdb raises many types for a bad header
        raise RecordError(
            f"record '{record}': header {base}.hea is corrupt and cannot be parsed ({type(e).__name__}: "
            f"{e}). Re-download the record (wfdb.dl_database) or restore the file."
        ) from None
    header.comments = []  # patient data (age, sex, medications) never leave this function
    return header


def read_record(record: str | int, data_dir: str | os.PathLike | None = None, lead: str = "MLII",
                fs: float | None = None, annotations: bool = True, db: str = "mitdb",
                max_nan_gap_s: float = 0.5, download: bool = False) -> ECGRecord:
    """Read one lead of one WFDB record in mV, optionally resampled, with its annotations.

    Parameters
    ----------
    record : str or int
        Record name, e.g. ``"100"``.
    data_dir : path, optional
        Data root (see :func:`resolve_data_dir`).
    lead : str
        Lead to read, selected by name (``sig_name``), never by position: record 114 stores MLII second.
    fs : float, optional
        Target sampling rate in Hz; the record is resampled if it differs. None keeps the record's own.
    annotations : bool
        Also read ``<record>.atr``. A missing annotation file raises :class:`DataNotFoundError`.
    db : str
        Database folder name under the data root.
    max_nan_gap_s : float
        NaN runs up to this long (seconds) are linearly interpolated; longer ones raise.
    download : bool
        Download the record from PhysioNet if it is missing.

    Returns
    -------
    ECGRecord

    Examples
    --------
    >>> rec = read_record("100", "../shared/data")        # doctest: +SKIP
    >>> rec.fs, rec.signal.shape, rec.lead
    (360.0, (650000,), 'MLII')
    """
    import wfdb

    record = str(record)
    root = resolve_data_dir(data_dir)
    db_dir = root / db
    if not db_dir.is_dir():
        if download:
            db_dir = ensure_database(root, db, [record], download=True,
                                     annotator="atr" if annotations else None)
        else:
            raise DataNotFoundError(
                f"data folder {db_dir} does not exist. Set {ENV_VAR} (or --data-dir) to the folder that "
                f"contains '{db}/' (expected layout: <root>/{db}/<record>.hea, .dat, .atr), or download "
                f"it with wfdb.dl_database('{db}', '<root>/{db}')."
            )
    elif download:
        ensure_database(root, db, [record], download=True, annotator="atr" if annotations else None)
    header = read_header(record, db_dir)
    names = list(header.sig_name or [])
    if lead not in names:
        raise RecordError(
            f"record '{record}' has no lead '{lead}' (it has {names}). Pick one of those with --lead, "
            f"or skip this record."
        )
    ch = names.index(lead)
    dat = db_dir / (header.file_name[ch] if header.file_name else f"{record}.dat")
    if not dat.is_file():
        raise DataNotFoundError(f"record '{record}': signal file {dat} is missing. Re-download the record.")
    try:
        rec = wfdb.rdrecord(str(db_dir / record), channels=[ch], physical=True)
    except Exception as e:  # noqa: BLE001 - e.g. a truncated .dat gives a numpy broadcast error
        raise RecordError(
            f"record '{record}': signal file {dat} cannot be read ({type(e).__name__}: {e}); it is probably "
            f"truncated or corrupt (header says {header.sig_len} samples). Re-download the record."
        ) from None
    x = np.asarray(rec.p_signal[:, 0], dtype=np.float64)
    if header.sig_len and len(x) != header.sig_len:
        raise RecordError(
            f"record '{record}': read {len(x)} samples but the header says {header.sig_len}; the signal "
            f"file is truncated. Re-download the record."
        )
    unit = (rec.units[0] if rec.units else "mV") or "mV"
    scale = _UNIT_SCALE.get(unit.strip().lower())
    if scale is None:
        raise RecordError(f"record '{record}' lead '{lead}': unknown physical unit {unit!r} (expected mV/uV/V).")
    x = x * scale
    x = fill_nan_gaps(x, float(rec.fs), max_nan_gap_s, where=f"record '{record}' lead '{lead}'")

    ann = _read_atr(record, db_dir, "or read it with annotations=False") if annotations else None

    fs_orig = float(rec.fs)
    fs_out = fs_orig if fs is None else float(fs)
    if fs_out != fs_orig:
        x = resample(x, fs_orig, fs_out)
        if ann is not None:
            ann.sample = np.clip(np.round(ann.sample * fs_out / fs_orig).astype(np.int64), 0, len(x) - 1)
    return ECGRecord(record=record, lead=lead, fs=fs_out, signal=x.astype(np.float32), annotations=ann,
                     fs_original=fs_orig)


def _read_atr(record: str, db_dir: Path, alternative: str) -> Annotations:
    """``<db_dir>/<record>.atr`` at the record's own sampling rate; clear errors for a missing or corrupt file."""
    import wfdb

    atr = db_dir / f"{record}.atr"
    if not atr.is_file():
        raise DataNotFoundError(
            f"record '{record}': annotation file {atr} is missing. Re-download the record, {alternative}."
        )
    try:
        a = wfdb.rdann(str(db_dir / record), "atr")
    except Exception as e:  # noqa: BLE001
        raise RecordError(f"record '{record}': annotation file {atr} is corrupt ({type(e).__name__}: {e}).") from None
    return Annotations(
        sample=np.asarray(a.sample, dtype=np.int64),
        symbol=list(a.symbol),
        aux_note=[(s or "").rstrip("\x00").strip() for s in (a.aux_note or [""] * len(a.sample))],
    )


def read_annotations(record: str, data_dir: str | os.PathLike | None = None, fs: float | None = None,
                     db: str = "mitdb") -> Annotations:
    """The reference annotations (``.atr``) of one record without its signal, sample indices at ``fs``.

    Parameters
    ----------
    record : str
    data_dir : path, optional
        Data root (see :func:`resolve_data_dir`).
    fs : float, optional
        Rate the sample indices are rescaled to (e.g. a tokenizer's); None keeps the record's own.
    db : str
        Database folder name under the data root.
    """
    record = str(record)
    db_dir = resolve_data_dir(data_dir) / db
    ann = _read_atr(record, db_dir, "or point --data_dir at a database that has its annotations")
    if fs is not None:
        fs_rec = float(read_header(record, db_dir).fs)
        if float(fs) != fs_rec:
            ann.sample = np.round(ann.sample * float(fs) / fs_rec).astype(np.int64)
    return ann


def fill_nan_gaps(x: np.ndarray, fs: float, max_gap_s: float, where: str = "signal") -> np.ndarray:
    """Linearly interpolate NaN runs up to ``max_gap_s`` seconds; raise :class:`RecordError` on longer ones."""
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    if bad.all():
        raise RecordError(f"{where}: every sample is NaN/inf; there is no signal to use.")
    idx = np.flatnonzero(bad)
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]]
    longest = int((ends - starts).max()) + 1
    if longest > max_gap_s * fs:
        i = int(np.argmax(ends - starts))
        raise RecordError(
            f"{where}: a gap of {longest} missing samples ({longest / fs:.2f} s) starts at sample "
            f"{int(starts[i])} ({starts[i] / fs:.1f} s); gaps up to {max_gap_s} s are interpolated. Cut the "
            f"record around the gap or raise max_nan_gap_s."
        )
    good = np.flatnonzero(~bad)
    out = x.copy()
    out[bad] = np.interp(idx, good, x[good])
    return out


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling from ``fs_in`` to ``fs_out`` Hz (``scipy.signal.resample_poly``)."""
    from scipy.signal import resample_poly

    if fs_in <= 0 or fs_out <= 0:
        raise RecordError(f"sampling rates must be positive (got fs={fs_in} -> {fs_out})")
    if fs_in == fs_out:
        return np.asarray(x)
    frac = Fraction(fs_out / fs_in).limit_denominator(1000)
    y = resample_poly(np.asarray(x, dtype=np.float64), frac.numerator, frac.denominator)
    n_out = int(round(len(x) * fs_out / fs_in))
    return y[:n_out]
