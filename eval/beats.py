"""Heartbeats with labels, real or synthetic, cut alike: the input of the AAMI beat classifier (TSTR).

A beat is ``BEFORE`` + ``AFTER`` samples around its R peak at 360 Hz (0.25 s before, 0.46 s after), baseline
removed (minus the segment median), in mV, plus four RR features (de Chazal et al. 2004; the inter-patient
classics that separate S from N): previous RR, next RR (s), and each divided by the local mean RR of the
10 surrounding intervals.

Real beats come from the MIT-BIH reference annotations; synthetic ones from the ``.atr`` files a conditional
LM writes beside its WFDB records (:mod:`ecg2llm.lm.conditioning`). Both are cut at the peak found by the same rule
(:func:`ecg2llm.tokenizer.ecg.refine_peaks`: the largest deviation within 80 ms of the annotation), so the two
differ only in their signals. Classes: AAMI N, S, V, F; **Q is excluded** (8 beats in DS1, 7 in DS2 once the
paced records are out: too few to train or score). RR intervals use every annotated beat, Q included.

Rhythm context (:func:`rhythm_features`, ``BeatSet.rhythm``): from the same peak sequence, without labels, how
premature a beat is against the robust rhythm of its neighbours (the intervals of the ``RHYTHM_BEATS`` beats on
each side, its own two intervals left out) and how irregular that rhythm is. A premature atrial beat is early in
a regular rhythm; a normally conducted beat in atrial fibrillation is early in an irregular one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ecg2llm.tokenizer.data import read_record
from ecg2llm.tokenizer.ecg import AAMI_CLASSES, CLASS_SYMBOL, refine_peaks

#: Classes scored (AAMI EC57 without Q), in label order.
CLASSES: tuple[str, ...] = ("N", "S", "V", "F")
FS = 360.0
BEFORE, AFTER = 90, 166  # samples around the R peak: 0.25 s + 0.46 s = 256 samples
LOCAL_RR_BEATS = 10
#: intervals on each side of a beat that make its rhythm context (its own previous and next RR excluded)
RHYTHM_BEATS = 8
#: a neighbouring interval further than this from the context median (relative) counts as irregular
IRREGULAR_SHARE_TOL = 0.15
#: columns of :func:`rhythm_features` (every one a ratio: no seconds, no patient constant)
RHYTHM_NAMES = ("ctx_pre/median", "ctx_post/median", "ctx_(pre+post)/2median", "ctx_irregularity",
                "ctx_mad", "ctx_irregular_share", "ctx_prematurity_z", "ctx_prematurity*regular",
                "ctx_prematurity*irregularity")
#: half-width (s) of the window of :func:`reference_features`' average RR (de Chazal et al. 2004's "average
#: RR-interval": the mean RR over about 5 minutes around the beat)
AVERAGE_RR_HALF_S = 150.0
#: a context interval counts as clearly slower than a beat's previous RR when longer by this share
SLOWER_TOL = 0.15
#: fewest clearly slower context intervals that make a reference (one compensatory pause next door does not)
SLOWER_MIN = 3
#: columns of :func:`reference_features` (ratios only, label-free, from the peak sequence)
REFERENCE_NAMES = ("ref_pre/avg5min", "ref_post/avg5min", "ref_local/avg5min", "ref_pre/slower_median",
                   "ref_slower_share")
#: MIT-BIH symbols a generated .atr uses, back to AAMI classes.
SYMBOL_CLASS = {sym: cls for cls, sym in CLASS_SYMBOL.items()}


@dataclass
class BeatSet:
    """Labelled beats: ``x`` ``(N, 256)`` mV, ``rr`` ``(N, 4)``, ``y`` ``(N,)`` index into :data:`CLASSES`."""

    x: np.ndarray
    rr: np.ndarray
    y: np.ndarray
    group: np.ndarray  # (N,) record (real) or sample name (synthetic) of each beat
    source: str = ""
    meta: dict = field(default_factory=dict)
    #: optional ``(N, F)`` per-beat features computed on the whole set
    #: (:func:`ecg2llm.eval.tstr.beat_features.with_features`),
    #: carried through :meth:`subset` and :meth:`concat` so class subsets keep their patient statistics
    features: np.ndarray | None = None
    #: optional ``(N, len(RHYTHM_NAMES))`` rhythm context of each beat (:func:`rhythm_features`, set by
    #: :func:`cut_beats`); None for hand-built sets (the rhythm feature columns are then NaN)
    rhythm: np.ndarray | None = None
    #: optional ``(N, len(REFERENCE_NAMES))`` reference-rhythm ratios (:func:`reference_features`, set by
    #: :func:`cut_beats`); None for hand-built sets (those columns are then NaN)
    reference: np.ndarray | None = None

    def __len__(self) -> int:
        return int(len(self.y))

    def counts(self) -> dict[str, int]:
        c = np.bincount(self.y, minlength=len(CLASSES))
        return {k: int(v) for k, v in zip(CLASSES, c)}

    def subset(self, idx) -> "BeatSet":
        idx = np.asarray(idx)
        if idx.dtype != bool:
            idx = idx.astype(np.int64)  # an empty list is float64 to numpy
        f = None if self.features is None else self.features[idx]
        h = None if self.rhythm is None else self.rhythm[idx]
        r = None if self.reference is None else self.reference[idx]
        return BeatSet(self.x[idx], self.rr[idx], self.y[idx], self.group[idx], self.source, dict(self.meta), f,
                       h, r)

    def of_classes(self, classes: Sequence[str]) -> "BeatSet":
        """Only the beats of ``classes``."""
        keep = np.isin(self.y, [CLASSES.index(c) for c in classes])
        return self.subset(np.flatnonzero(keep))

    @staticmethod
    def concat(sets: Sequence["BeatSet"], source: str = "") -> "BeatSet":
        sets = [s for s in sets if len(s)]
        if not sets:
            return empty_beats(source)
        names = {tuple(s.meta.get("feature_names", ())) for s in sets}
        same = all(s.features is not None for s in sets) and len(names) == 1
        feats = np.concatenate([s.features for s in sets]) if same else None
        meta = {k: sets[0].meta[k] for k in ("feature_names", "feature_set") if same and k in sets[0].meta}
        rhythm = (np.concatenate([s.rhythm for s in sets]) if all(s.rhythm is not None for s in sets) else None)
        ref = (np.concatenate([s.reference for s in sets]) if all(s.reference is not None for s in sets) else None)
        return BeatSet(np.concatenate([s.x for s in sets]), np.concatenate([s.rr for s in sets]),
                       np.concatenate([s.y for s in sets]), np.concatenate([s.group for s in sets]),
                       source or " + ".join(s.source for s in sets), meta, feats, rhythm, ref)


def empty_beats(source: str = "") -> BeatSet:
    return BeatSet(np.zeros((0, BEFORE + AFTER), np.float32), np.zeros((0, 4), np.float32),
                   np.zeros(0, np.int64), np.zeros(0, dtype=object), source,
                   rhythm=np.zeros((0, len(RHYTHM_NAMES)), np.float32),
                   reference=np.zeros((0, len(REFERENCE_NAMES)), np.float32))


def rr_features(peaks: np.ndarray, fs: float) -> np.ndarray:
    """``(N, 4)``: previous RR, next RR (s), and both over the local mean RR; NaN where undefined."""
    p = np.asarray(peaks, dtype=np.float64) / fs
    rr = np.diff(p)  # (N - 1,)
    n = len(p)
    pre = np.full(n, np.nan)
    post = np.full(n, np.nan)
    pre[1:], post[:-1] = rr, rr
    local = np.full(n, np.nan)
    if len(rr):
        c = np.concatenate([[0.0], np.cumsum(rr)])
        h = LOCAL_RR_BEATS // 2
        for i in range(n):  # intervals i-h .. i+h-1 (clipped): centred on the beat
            a, b = max(0, i - h), min(len(rr), i + h)
            if b > a:
                local[i] = (c[b] - c[a]) / (b - a)
    return np.stack([pre, post, pre / local, post / local], 1).astype(np.float32)


def rhythm_features(peaks: np.ndarray, fs: float, beats: int = RHYTHM_BEATS) -> np.ndarray:
    """``(N, len(RHYTHM_NAMES))``: each beat's prematurity against its neighbours' rhythm, and that rhythm's
    irregularity; label-free, from the peak sequence alone. NaN where a beat lacks an interval or context.

    The context of beat ``i`` is the ``beats`` intervals before its previous RR and the ``beats`` after its
    next RR (clipped at the record's ends; at least 3 needed): the beat's own intervals are left out, so a
    premature beat does not move its own reference. With ``m`` their median:

    * ``ctx_pre/median``, ``ctx_post/median``: previous and next RR over ``m`` (prematurity, pause);
      ``ctx_(pre+post)/2median``: 1 for a fully compensatory pause, below 1 for a reset sinus node;
    * ``ctx_irregularity``: median absolute successive difference of the context intervals (taken on each side
      separately, never across the beat) over ``m`` -- near 0 in sinus rhythm even with isolated ectopic
      beats nearby (a median), 0.1-0.3 in atrial fibrillation; ``ctx_mad``: median absolute deviation of the
      context intervals from ``m``, over ``m``; ``ctx_irregular_share``: share of context intervals more
      than :data:`IRREGULAR_SHARE_TOL` from ``m``;
    * ``ctx_prematurity_z``: ``(1 - pre/m) / (ctx_mad + 0.02)``, clipped to +-20 -- prematurity in units of
      the context's own spread: large only for a beat early in a **regular** rhythm;
    * ``ctx_prematurity*regular``: ``(1 - pre/m) * exp(-ctx_irregularity / 0.05)``;
      ``ctx_prematurity*irregularity``: ``(1 - pre/m) * ctx_irregularity`` -- the products that let a linear
      model weigh prematurity by the regularity of the rhythm around it.
    """
    p = np.asarray(peaks, dtype=np.float64) / fs
    rr = np.diff(p)  # (N - 1,): rr[j] is the interval from peak j to peak j + 1
    n = len(p)
    out = np.full((n, len(RHYTHM_NAMES)), np.nan)
    for i in range(1, n - 1):  # beats with both intervals: pre = rr[i - 1], post = rr[i]
        left = rr[max(0, i - 1 - beats):i - 1]   # intervals before the previous RR
        right = rr[i + 1:i + 1 + beats]          # intervals after the next RR
        ctx = np.concatenate([left, right])
        if len(ctx) < 3:
            continue
        m = float(np.median(ctx))
        if m <= 0:
            continue
        diffs = np.concatenate([np.abs(np.diff(left)), np.abs(np.diff(right))])
        irr = float(np.median(diffs)) / m if len(diffs) else np.nan
        mad = float(np.median(np.abs(ctx - m))) / m
        share = float(np.mean(np.abs(ctx / m - 1.0) > IRREGULAR_SHARE_TOL))
        pre, post = rr[i - 1] / m, rr[i] / m
        prem = 1.0 - pre
        out[i] = [pre, post, (pre + post) / 2, irr, mad, share, np.clip(prem / (mad + 0.02), -20, 20),
                  prem * np.exp(-irr / 0.05), prem * irr]
    return out.astype(np.float32)


def reference_features(peaks: np.ndarray, fs: float, beats: int = RHYTHM_BEATS,
                       half_s: float = AVERAGE_RR_HALF_S) -> np.ndarray:
    """``(N, len(REFERENCE_NAMES))``: each beat's intervals against two reference rhythms that the beat's own
    kind moves little; label-free, from the peak sequence alone. NaN where undefined.

    * ``ref_pre/avg5min``, ``ref_post/avg5min``, ``ref_local/avg5min``: previous, next and local RR (mean of
      the ``LOCAL_RR_BEATS`` intervals around the beat, as :func:`rr_features`) over the **mean** RR of the
      intervals within ``half_s`` seconds of the beat (de Chazal et al. 2004's average RR; Mondéjar-Guerra et
      al. 2019's ``global_R``). A mean, not a median: long pauses raise it, so beats that make up the
      ongoing rhythm between pauses still read as early.
    * ``ref_pre/slower_median``: previous RR over the median of those context intervals (the ``beats``
      intervals on each side, the beat's own two left out, as :func:`rhythm_features`) that are longer than
      it by more than :data:`SLOWER_TOL` -- a reference that excludes every beat as early as this one, so a
      run of premature beats does not become its own reference; 1 when fewer than :data:`SLOWER_MIN` are
      (a normal beat next to one compensatory pause keeps 1).
      ``ref_slower_share``: the share of context intervals that are (0 for a beat of the ongoing rhythm in
      sinus rhythm, 1 for an isolated premature beat, in between in atrial fibrillation).
    """
    p = np.asarray(peaks, dtype=np.float64) / fs
    rr = np.diff(p)
    n = len(p)
    out = np.full((n, len(REFERENCE_NAMES)), np.nan)
    if len(rr) < 2:
        return out.astype(np.float32)
    mid = (p[:-1] + p[1:]) / 2  # (N - 1,) time of each interval
    c = np.concatenate([[0.0], np.cumsum(rr)])
    lo = np.searchsorted(mid, p - half_s, side="left")
    hi = np.searchsorted(mid, p + half_s, side="right")
    avg = np.where(hi > lo, (c[hi] - c[lo]) / np.maximum(hi - lo, 1), np.nan)  # (N,)
    local = rr_features(peaks, fs)  # pre, post, pre/local, post/local
    loc = local[:, 0] / np.where(local[:, 2] > 0, local[:, 2], np.nan)
    out[:, 0], out[:, 1], out[:, 2] = local[:, 0] / avg, local[:, 1] / avg, loc / avg
    for i in range(1, n - 1):
        ctx = np.concatenate([rr[max(0, i - 1 - beats):i - 1], rr[i + 1:i + 1 + beats]])
        if len(ctx) < 3:
            continue
        pre = rr[i - 1]
        slower = ctx[ctx > pre * (1.0 + SLOWER_TOL)]
        out[i, 3] = pre / float(np.median(slower)) if len(slower) >= SLOWER_MIN else 1.0
        out[i, 4] = len(slower) / len(ctx)
    return out.astype(np.float32)


def cut_beats(x: np.ndarray, peaks: np.ndarray, classes: Sequence[str], fs: float, group: str,
              source: str = "") -> BeatSet:
    """Cut every beat of ``classes`` (AAMI letters, one per peak) that has both RR neighbours and a full window.

    Parameters
    ----------
    x : np.ndarray
        Signal in mV at ``fs`` (360 Hz).
    peaks : np.ndarray
        R-peak samples of **every** beat, sorted (RR features need them all).
    classes : sequence of str
        AAMI class of each peak (``"Q"`` or ``""`` beats give RR context but are not kept).
    """
    if fs != FS:
        raise ValueError(f"beats are cut at {FS:g} Hz, got {fs:g} Hz; resample first")
    peaks = np.asarray(peaks, np.int64)
    rr = rr_features(peaks, fs)
    rhythm = rhythm_features(peaks, fs)
    reference = reference_features(peaks, fs)
    keep = [i for i, c in enumerate(classes)
            if c in CLASSES and np.isfinite(rr[i]).all() and peaks[i] - BEFORE >= 0 and peaks[i] + AFTER <= len(x)]
    if not keep:
        return empty_beats(source)
    idx = peaks[keep][:, None] + np.arange(-BEFORE, AFTER)[None, :]  # (K, 256)
    seg = np.asarray(x, np.float32)[idx]
    seg = seg - np.median(seg, axis=1, keepdims=True)
    y = np.array([CLASSES.index(classes[i]) for i in keep], np.int64)
    return BeatSet(seg.astype(np.float32), rr[keep], y, np.array([group] * len(keep), dtype=object), source,
                   rhythm=rhythm[keep], reference=reference[keep])


def real_beats(records: Sequence[str], data_dir=None, source: str = "") -> BeatSet:
    """Labelled MLII beats of MIT-BIH ``records`` (reference annotations, peaks refined)."""
    from tqdm.auto import tqdm

    out = []
    for r in tqdm(list(records), desc="cutting real beats", unit="record", leave=False):
        rec = read_record(str(r), data_dir, lead="MLII", fs=FS, annotations=True)
        samples, symbols = rec.annotations.beats()
        peaks = refine_peaks(rec.signal, samples, FS)
        order = np.argsort(peaks, kind="stable")
        cls = [AAMI_CLASSES.get(symbols[i], "") for i in order]
        out.append(cut_beats(rec.signal, peaks[order], cls, FS, str(r)))
    return BeatSet.concat(out, source or f"MIT-BIH {','.join(map(str, records))}")


def synthetic_beats(folder: str | Path, source: str = "") -> BeatSet:
    """Labelled beats of the generated WFDB records in ``folder`` (their ``.atr`` files from lm/generate.py)."""
    import wfdb

    folder = Path(folder)
    out = []
    for hea in sorted(folder.glob("*.hea")):
        name = hea.stem
        if not (folder / f"{name}.atr").is_file():
            continue
        rec = wfdb.rdrecord(str(folder / name))
        if float(rec.fs) != FS:
            raise ValueError(f"{hea}: {rec.fs} Hz, beats are cut at {FS:g} Hz")
        ann = wfdb.rdann(str(folder / name), "atr")
        beats = [(s, SYMBOL_CLASS[sym]) for s, sym in zip(ann.sample, ann.symbol) if sym in SYMBOL_CLASS]
        if len(beats) < 3:
            continue
        peaks = np.array([s for s, _ in beats], np.int64)
        out.append(cut_beats(rec.p_signal[:, 0], peaks, [c for _, c in beats], FS, f"{folder.name}/{name}"))
    return BeatSet.concat(out, source or str(folder))

