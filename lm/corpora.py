"""Token stores for LM v2: MIT-BIH (every lead, optional augmented views) and the CinC 2017 handheld set.

**CinC 2017** (PhysioNet/Computing in Cardiology Challenge 2017, Clifford et al., CinC 44, 2017): 8,528
single-lead AliveCor handheld recordings (lead I equivalent), 300 Hz, 9-61 s, 77 h in all, with one label
per recording in ``REFERENCE.csv``: ``N`` normal sinus rhythm, ``A`` atrial fibrillation, ``O`` other
rhythm, ``~`` too noisy. On disk it is one flat folder ``<data root>/cinc2017/`` of ``A00001.hea`` +
``A00001.mat`` (WFDB, MATLAB v4 signal files) pairs plus ``REFERENCE.csv``, exactly the content of
PhysioNet's ``training2017.zip`` (https://physionet.org/content/challenge-2017/1.0.0/, ODC-By 1.0): users
download and unzip that archive into ``<data root>/cinc2017``. There are no beat annotations. Its rhythm
label feeds the LM's rhythm vocabulary through :data:`CINC_RHYTHM`: ``N`` -> ``rhythm:N`` (the
challenge's "normal" *is* normal sinus rhythm), ``A`` -> ``rhythm:AFIB``; ``O`` (a mixture of rhythms)
and ``~`` (noise) get the null ``rhythm:?``. Every CinC record is training data: validation and test
stay MIT-BIH (DS1 validation records, DS2).

**Augmentation** (:func:`augment`) is done on the signal, *before* tokenization, when the store is built:
each training record gets ``views`` extra copies, each with one draw of a gain (log-uniform, 0.8-1.25),
a baseline offset (uniform +-0.1 mV) and a tempo change (+-5 %, polyphase resampling, which scales every
interval -- RR, QRS, QT -- alike, as a heart-rate change within a patient roughly does). Why before
tokenization and not on tokens: the LM must only ever read sequences the tokenizer can emit (editing
codes would invent some), a tempo change has no token-level equivalent, and offline views keep every
training batch a pure function of the step (exact resume) at the cost of a finite number of views. The
tokenizer encodes ~10,000x faster than real time on one core, so a view of DS1 costs seconds.

**Lead rotation** (``mix_deg``, off by default) makes a view a new *patient* rather than the same patient
louder or faster: each view also draws an angle ``theta`` (uniform in +-``mix_deg``) and replaces the
record's two leads by a rotation in their plane, ``(a, b) -> (a cos theta + b sin theta, -a sin theta +
b cos theta)``, so every beat keeps its timing (and its annotation) while its shape moves the way a
different electrical axis or electrode position moves it. This is the two-lead analogue of 3KG's
vectorcardiogram rotation (Gopal et al., "3KG: contrastive learning of 12-lead ECGs using physiologically-
inspired augmentations", ML4H 2021); MLII and V1 are not orthogonal, so it approximates an axis change
rather than being one.

Stores written here are ordinary :class:`ecg2llm.tokenizer.store.TokenStore` folders (one writer, one reader);
an augmented view's entry is named ``<record>@a<k>`` and its draw is kept in ``meta.json`` (``views``),
so the conditional corpus can rescale the record's annotations by the same tempo factor.
"""
from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ecg2llm.core.errors import DataNotFoundError, RecordError, StoreError
from ecg2llm.core.io import atomic_path, git_sha, versions
from ecg2llm.tokenizer.data import ECGRecord, fill_nan_gaps, read_header, read_record, resample, resolve_data_dir
from ecg2llm.tokenizer.store import StoreWriter, TokenStore

CINC_DB = "cinc2017"
CINC_LEAD = "I"
#: CinC 2017 label -> rhythm name of :data:`ecg2llm.lm.conditioning.RHYTHMS` (None: the null ``rhythm:?``).
CINC_RHYTHM: dict[str, str | None] = {"N": "N", "A": "AFIB", "O": None, "~": None}
CINC_DOWNLOAD = ("download training2017.zip from https://physionet.org/content/challenge-2017/1.0.0/ "
                 "and unzip its A*.hea, A*.mat and REFERENCE.csv into <data root>/cinc2017")
VIEW_SEP = "@a"  # "101@a2": the second augmented view of record 101


# ------------------------------------------------------------------------------------------ CinC 2017
def cinc2017_dir(data_dir=None) -> Path:
    """``<data root>/cinc2017``, checked to hold ``REFERENCE.csv``."""
    d = resolve_data_dir(data_dir) / CINC_DB
    if not (d / "REFERENCE.csv").is_file():
        raise DataNotFoundError(f"CinC 2017 not found: no {d / 'REFERENCE.csv'}; {CINC_DOWNLOAD}")
    return d


def read_cinc2017_labels(data_dir=None) -> dict[str, str]:
    """``{"A00001": "N", ...}`` from ``REFERENCE.csv`` (labels ``N``, ``A``, ``O``, ``~``).

    Raises
    ------
    DataNotFoundError
        If the folder or file is missing.
    RecordError
        If a line is not ``record,label`` with a known label.
    """
    path = cinc2017_dir(data_dir) / "REFERENCE.csv"
    out = {}
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f), 1):
            if len(row) != 2 or row[1].strip() not in CINC_RHYTHM:
                raise RecordError(f"{path} line {i}: expected 'record,label' with a label in "
                                  f"{sorted(CINC_RHYTHM)}, got {row!r}; restore the challenge's "
                                  f"REFERENCE.csv")
            out[row[0].strip()] = row[1].strip()
    return out


def read_cinc2017(record: str, data_dir=None, fs: float | None = None) -> ECGRecord:
    """One CinC 2017 recording in mV (lead ``"I"``), resampled to ``fs`` if given.

    Parameters
    ----------
    record : str
        ``"A00001"`` ... ``"A08528"``.
    data_dir : path, optional
        Data root holding ``cinc2017/``.
    fs : float, optional
        Target rate (the tokenizer's, 360 Hz); None keeps the recording's 300 Hz.

    Returns
    -------
    ECGRecord
        ``lead="I"``, ``annotations=None`` (the challenge has no beat annotations).
    """
    import wfdb

    db_dir = cinc2017_dir(data_dir)
    header = read_header(record, db_dir)  # clear errors for a missing/corrupt header; comments dropped
    try:
        rec = wfdb.rdrecord(str(db_dir / record), physical=True)
    except Exception as e:  # noqa: BLE001 - wfdb raises many types for a corrupt .mat
        raise RecordError(f"CinC 2017 record {record}: signal file cannot be read ({type(e).__name__}: {e}); "
                          f"{CINC_DOWNLOAD}") from None
    x = np.asarray(rec.p_signal[:, 0], dtype=np.float64)
    if header.sig_len and len(x) != header.sig_len:
        raise RecordError(f"CinC 2017 record {record}: read {len(x)} samples, header says {header.sig_len}")
    unit = (rec.units[0] if rec.units else "mV").strip().lower()
    if unit not in ("mv", ""):
        raise RecordError(f"CinC 2017 record {record}: unit {rec.units[0]!r}, expected mV")
    x = fill_nan_gaps(x, float(rec.fs), 0.5, where=f"CinC 2017 record {record}")
    fs_orig = float(rec.fs)
    if fs is not None and float(fs) != fs_orig:
        x = resample(x, fs_orig, float(fs))
    return ECGRecord(record=str(record), lead=CINC_LEAD, fs=float(fs or fs_orig), signal=x.astype(np.float32),
                     annotations=None, fs_original=fs_orig)


def r_amplitude_mv(x: np.ndarray, fs: float, window_s: float = 10.0) -> float:
    """A robust R-amplitude proxy (mV) of one recording, polarity-free.

    The 99.5th percentile of ``|x|`` after a 0.5-40 Hz band-pass (baseline and high-frequency noise off), per
    ``window_s`` window (the top 0.5 % of a 10-s window is the tips of its QRS complexes at any heart rate
    above 18 bpm), median over the windows; a recording shorter than one window is one window.
    """
    from scipy.signal import butter, sosfiltfilt

    sos = butter(2, [0.5, 40.0], btype="band", fs=fs, output="sos")
    y = np.abs(sosfiltfilt(sos, np.asarray(x, dtype=np.float64)))
    n = max(1, int(round(window_s * fs)))
    tops = [np.percentile(y[s:s + n], 99.5) for s in range(0, max(1, len(y) - n + 1), n)]
    return float(np.median(tops))


def cinc2017_r_amplitudes(names, data_dir=None, progress: bool = True) -> dict[str, float]:
    """``{record: r_amplitude_mv}`` of CinC 2017 recordings (about 20 s for all 8,528 on 2 cores)."""
    from tqdm.auto import tqdm

    out = {}
    for rec in tqdm(list(names), desc="cinc2017 R amplitude", unit="record", disable=not progress):
        r = read_cinc2017(rec, data_dir)
        out[rec] = r_amplitude_mv(r.signal, r.fs)
    return out


def cinc2017_excluded(labels: dict[str, str], keep_labels=(), min_r_mv: float = 0.0, data_dir=None,
                      progress: bool = True) -> set[str]:
    """CinC 2017 recordings a run leaves out of training: label not in ``keep_labels`` (empty: any label),
    or R amplitude (:func:`r_amplitude_mv`) under ``min_r_mv`` (0: no amplitude filter).

    Handheld lead-I recordings are about half MIT-BIH MLII's amplitude (medians 0.73 vs 1.45-1.62 mV by
    this proxy; 23 % of CinC under 0.5 mV, where DS1's 1st percentile of 10-s windows is 0.58 mV): this is
    the curation knob of ``configs/studies/lm_v2d_variants/v2e_default_ft.yaml``.
    """
    keep = set(keep_labels)
    bad = {n for n, lab in labels.items() if keep and lab not in keep}
    if min_r_mv > 0:
        amps = cinc2017_r_amplitudes(sorted(set(labels) - bad), data_dir, progress)
        bad |= {n for n, a in amps.items() if a < min_r_mv}
    return bad


# ------------------------------------------------------------------------------------------ augmentation
@dataclass
class AugmentDraw:
    """One augmented view: ``y(t) = gain * x'(t * tempo) + offset`` (tempo > 1: a faster heart), where
    ``x'`` is the lead itself, or its rotation by ``mix_deg`` degrees with the record's other lead
    (:func:`rotate_leads`)."""

    gain: float = 1.0
    offset_mv: float = 0.0
    tempo: float = 1.0
    mix_deg: float = 0.0


def draw_augmentation(rng: np.random.Generator, max_gain: float = 1.25, max_offset_mv: float = 0.1,
                      max_tempo: float = 0.05, max_mix_deg: float = 0.0) -> AugmentDraw:
    """Gain log-uniform in ``[1/max_gain, max_gain]``, offset ``+-max_offset_mv``, tempo ``1+-max_tempo``,
    and (``max_mix_deg > 0``) a lead-rotation angle uniform in ``+-max_mix_deg`` degrees. The angle is drawn
    last, so a draw's gain, offset and tempo do not depend on ``max_mix_deg``."""
    g = float(np.exp(rng.uniform(-np.log(max_gain), np.log(max_gain))))
    d = AugmentDraw(gain=g, offset_mv=float(rng.uniform(-max_offset_mv, max_offset_mv)),
                    tempo=float(rng.uniform(1 - max_tempo, 1 + max_tempo)))
    if max_mix_deg > 0:
        d.mix_deg = float(rng.uniform(-max_mix_deg, max_mix_deg))
    return d


def rotate_leads(a: np.ndarray, b: np.ndarray, deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate two simultaneous leads by ``deg`` degrees in their plane: ``(a cos t + b sin t, -a sin t + b cos t)``.

    Amplitudes in mV, equal lengths; NaN gaps stay NaN. A rotation keeps the pair's total power and every
    beat's timing.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise RecordError(f"lead rotation needs two leads of one record with the same length, got "
                          f"{a.shape} and {b.shape}")
    t = np.deg2rad(float(deg))
    c, s = np.cos(t), np.sin(t)
    return c * a + s * b, -s * a + c * b


def augment(x: np.ndarray, fs: float, d: AugmentDraw, other: np.ndarray | None = None,
            first: bool = True) -> np.ndarray:
    """Apply one :class:`AugmentDraw` to a signal in mV at ``fs``: float32, ``~len(x) / tempo`` samples.

    With ``d.mix_deg != 0``, ``other`` must be the record's other lead (same samples): ``x`` becomes the
    first (``first=True``) or second component of :func:`rotate_leads` ``(x, other)`` (``(other, x)`` when
    ``first`` is false, so a record's two views are one rotation of its pair).
    """
    y = np.asarray(x, dtype=np.float64)
    if d.mix_deg:
        if other is None:
            raise RecordError(f"augmentation rotates leads by {d.mix_deg:.1f} deg but no second lead was given "
                              "(single-lead record?); draw it with max_mix_deg=0")
        y = rotate_leads(y, other, d.mix_deg)[0] if first else rotate_leads(other, y, d.mix_deg)[1]
    if d.tempo != 1.0:  # play the record tempo x faster: resample fs -> fs / tempo, read back at fs
        y = resample(y, float(fs), float(fs) / d.tempo)
    return (d.gain * y + d.offset_mv).astype(np.float32)


# ------------------------------------------------------------------------------------------ store builders
def _writer_meta(tok) -> dict:
    return {"config": tok.config_dict(), **tok.describe()}


def _lead_at(cache: dict, rec: str, lead: str, root, fs: float) -> np.ndarray:
    """One MIT-BIH lead in mV at the tokenizer's rate, read once per record (``cache``: lead -> signal)."""
    if lead not in cache:
        r = read_record(rec, root, lead=lead, annotations=False)
        cache[lead] = r.signal if r.fs == fs else resample(r.signal, r.fs, fs).astype(np.float32)
    return cache[lead]


def build_mitdb_store(out, tok, data_dir=None, records=(), leads=("all",),
                      valid_records=("101", "112", "119"),
                      views: int = 0, seed: int = 0, mix_deg: float = 0.0, progress: bool = True) -> TokenStore:
    """Tokenize MIT-BIH (every lead by default) plus ``views`` augmented copies of each *training* record.

    Splits follow :func:`ecg2llm.tokenizer.build_store.split_of` (inter-patient; paced records excluded). Entries
    of augmented views are named ``<record>@a<k>`` (split ``train``) and their draws kept in
    ``meta.json["views"]``; validation and test records are never augmented.

    Parameters
    ----------
    out : path
        Store folder, written atomically.
    tok : ecg2llm.tokenizer.base.ECGTokenizer
    data_dir : path, optional
    records : sequence of str
        Records to tokenize; empty = all 48.
    leads : sequence of str
        Lead names, or ``("all",)`` for every lead of each record.
    valid_records : sequence of str
    views : int
        Augmented copies per training (record, lead).
    seed : int
        Seed of the augmentation draws (``default_rng([seed, view, record])``).
    mix_deg : float
        Largest lead-rotation angle of a view (degrees; 0 = none): each view of a two-lead record rotates
        the pair by one angle drawn in ``+-mix_deg`` (:func:`rotate_leads`), the same for both leads. Kept
        in ``meta.json`` (``augment_mix_deg``, each view's ``mix_deg``).

    Returns
    -------
    TokenStore
    """
    if not 0.0 <= float(mix_deg) <= 90.0:
        raise StoreError(f"mix_deg must be in [0, 90] degrees, got {mix_deg}")
    from tqdm.auto import tqdm

    from ecg2llm.tokenizer.build_store import split_of
    from ecg2llm.tokenizer.data import MITDB_RECORDS, ensure_database

    root = resolve_data_dir(data_dir)
    records = [str(r) for r in records] or list(MITDB_RECORDS)
    db_dir = ensure_database(root, "mitdb", records, download=False, annotator=None)
    t0, view_meta = time.perf_counter(), {}
    with atomic_path(out) as tmp:
        w = StoreWriter(tmp, _writer_meta(tok), tok.vocab_size)
        for rec in tqdm(records, desc="tokenizing mitdb", unit="record", disable=not progress):
            names = list(read_header(rec, db_dir).sig_name or [])
            split = split_of(rec, list(valid_records))
            if split == "excluded":
                continue
            sig: dict[str, np.ndarray] = {}
            for lead in (names if list(leads) == ["all"] else [ld for ld in leads if ld in names]):
                x = _lead_at(sig, rec, lead, root, tok.fs)
                ids, state = tok.encode(x, tok.fs)
                w.add(rec, lead, split, ids, state, len(x))
                n_views = views if split == "train" else 0
                pair = names[:2] if mix_deg > 0 and len(names) >= 2 and lead in names[:2] else None
                other = _lead_at(sig, rec, pair[1 - pair.index(lead)], root, tok.fs) if pair and n_views else None
                for k in range(1, n_views + 1):
                    d = draw_augmentation(np.random.default_rng([seed, k, int(rec)]),
                                          max_mix_deg=mix_deg if pair else 0.0)
                    y = augment(x, tok.fs, d, other=other, first=pair is None or lead == pair[0])
                    ids, state = tok.encode(y, tok.fs)
                    w.add(f"{rec}{VIEW_SEP}{k}", lead, "train", ids, state, len(y))
                    view_meta[f"{rec}{VIEW_SEP}{k}"] = asdict(d)
        if not w.entries:
            raise RecordError(f"nothing to tokenize: no record of {records} has the lead(s) {list(leads)}")
        w.close({"db": "mitdb", "leads": list(leads), "views": view_meta, "augment_seed": seed,
                 "augment_mix_deg": float(mix_deg),
                 "build": {"seconds": round(time.perf_counter() - t0, 2), "git_sha": git_sha(),
                           "versions": versions(), "valid_records": list(valid_records)}})
    return TokenStore.open(out)


def build_cinc2017_store(out, tok, data_dir=None, max_records: int = 0, progress: bool = True) -> TokenStore:
    """Tokenize CinC 2017 (every recording, or the first ``max_records``) into a store; all split ``train``.

    ``meta.json["labels"]`` keeps each record's challenge label (``N``/``A``/``O``/``~``), which the corpus
    turns into its rhythm token.
    """
    from tqdm.auto import tqdm

    labels = read_cinc2017_labels(data_dir)
    names = sorted(labels)[: max_records or None]
    t0 = time.perf_counter()
    with atomic_path(out) as tmp:
        w = StoreWriter(tmp, _writer_meta(tok), tok.vocab_size)
        for rec in tqdm(names, desc="tokenizing cinc2017", unit="record", disable=not progress):
            r = read_cinc2017(rec, data_dir, fs=tok.fs)
            ids, state = tok.encode(r.signal, r.fs)
            w.add(rec, CINC_LEAD, "train", ids, state, len(r.signal))
        w.close({"db": CINC_DB, "leads": [CINC_LEAD], "labels": {n: labels[n] for n in names},
                 "build": {"seconds": round(time.perf_counter() - t0, 2), "git_sha": git_sha(),
                           "versions": versions()}})
    return TokenStore.open(out)


def open_or_build(path, builder, tok, **kwargs) -> TokenStore:
    """Open the store at ``path``, building it with ``builder(path, tok, **kwargs)`` first if missing.

    Raises
    ------
    StoreError
        If the store exists but another tokenizer made it.
    """
    p = Path(path)
    if not (p / "meta.json").is_file():
        print(f"token store {p} not found: building it ({builder.__name__})", flush=True)
        builder(p, tok, **kwargs)
    store = TokenStore.open(p)
    if store.tokenizer_hash != tok.weights_hash:
        raise StoreError(f"token store {p} was built by another tokenizer (weights hash "
                         f"{str(store.tokenizer_hash)[:12]}…, not {tok.weights_hash[:12]}…); delete it or "
                         f"point the config elsewhere")
    return store


def base_record(name: str) -> str:
    """``"101@a2"`` -> ``"101"`` (the record an augmented view was made from)."""
    return str(name).split(VIEW_SEP)[0]
