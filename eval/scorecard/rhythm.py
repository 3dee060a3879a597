"""A rhythm classifier for 10-s windows, trained on real DS1 only, and condition adherence of generated sets.

.. code-block:: python

    from ecg2llm.eval.scorecard.rhythm import train_rhythm_classifier, rhythm_ceiling, adherence
    clf = train_rhythm_classifier(data_dir="../shared/data")          # DS1, MIT-BIH rhythm annotations
    ceiling = rhythm_ceiling(clf, data_dir="../shared/data")          # recall per rhythm on real DS2
    share = adherence(clf, windows_mv, fs=360.0, requested="AFIB")    # share recognised as requested

Labels: a window is labelled with a rhythm of the ``.atr`` reference annotations (``N``, ``AFIB``, ``B``
bigeminy, ``T`` trigeminy, ``VT``, ``SVTA``, ``AFL``...; :data:`ecg2llm.lm.conditioning.RHYTHMS`) when that
rhythm is in force over the whole window. Training windows are cut at a ``hop_s`` hop (overlapping for
the rare rhythms), sinus windows subsampled to ``max_per_class``. Rhythms with fewer than
``min_windows`` windows or only one DS1 patient are not learned (listed in ``describe()``).

Features (:func:`rhythm_features`): the clinical measurements of :mod:`ecg2llm.eval.scorecard.clinical` (rate, RR CV,
RMSSD, alternation, intervals, P-wave presence, beat consistency, amplitudes, texture) plus RR range and
the share of premature beats (RR < 80 % of the median). Classifier: ``HistGradientBoostingClassifier``
with balanced class weights -- a fixed recipe, nothing tuned on DS2.

Ceiling (:func:`rhythm_ceiling`): the classifier's recall on real DS2 windows of each rhythm; a rhythm
without DS2 windows gets its recall under leave-one-patient-out cross-validation on DS1 instead, labelled
``"DS1 patient-grouped CV"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ecg2llm.tokenizer.data import read_record, resolve_data_dir
from ecg2llm.tokenizer.ecg import rhythm_name
from ecg2llm.tokenizer.splits import DS1, DS2

from ..data import FS, WINDOW_S
from .clinical import FEATURES, clinical_features

EXTRA = ("rr_range", "premature_frac")


def rhythm_features(windows: np.ndarray, fs: float = FS) -> np.ndarray:
    """``(N, len(FEATURES) + 2)`` features of ``(N, T)`` windows in mV (NaN where undefined)."""
    from .metrics.physiology import detect_rpeaks

    c = clinical_features(windows, fs)
    extra = np.full((len(windows), len(EXTRA)), np.nan)
    for i, x in enumerate(windows):
        p, _ = detect_rpeaks(x, fs)
        if len(p) >= 3:
            rr = np.diff(p) / fs
            extra[i] = [rr.max() / rr.min(), float((rr < 0.8 * np.median(rr)).mean())]
    return np.concatenate([np.stack([c[k] for k in FEATURES], 1), extra], 1)


def labelled_windows(records: Sequence[str], data_dir=None, hop_s: float = WINDOW_S,
                     window_s: float = WINDOW_S, fs: float = FS):
    """Windows lying wholly inside one annotated rhythm: ``(x (N, T), labels (N,), records (N,))``."""
    root = str(resolve_data_dir(data_dir))
    win, hop = int(round(window_s * fs)), int(round(hop_s * fs))
    xs, ys, gs = [], [], []
    for r in records:
        rec = read_record(str(r), root, lead="MLII", fs=fs, annotations=True)
        rs, rn = rec.annotations.rhythms()
        if not len(rs):
            continue
        names = [rhythm_name(n) for n in rn]
        starts = np.arange(0, len(rec.signal) - win + 1, hop)
        idx = np.searchsorted(rs, starts, side="right") - 1
        inside = np.searchsorted(rs, starts + win) - np.searchsorted(rs, starts, side="right")
        for s, i, k in zip(starts, idx, inside, strict=True):
            if i >= 0 and k == 0 and names[i] != "other":
                xs.append(rec.signal[s : s + win])
                ys.append(names[i])
                gs.append(str(r))
    x = np.stack(xs).astype(np.float32) if xs else np.zeros((0, win), np.float32)
    return x, np.array(ys), np.array(gs)


@dataclass
class RhythmClassifier:
    """A fitted rhythm classifier (sklearn model) and what it was trained on."""

    model: object
    classes: list[str]
    train_counts: dict[str, int]
    skipped: dict[str, int] = field(default_factory=dict)

    def predict_features(self, f: np.ndarray) -> np.ndarray:
        """Rhythm names for ``(N, F)`` features of :func:`rhythm_features`."""
        return np.asarray(self.model.predict(f)) if len(f) else np.zeros(0, dtype="<U8")

    def predict(self, windows: np.ndarray, fs: float = FS) -> np.ndarray:
        """Rhythm name of each ``(N, T)`` window in mV."""
        return self.predict_features(rhythm_features(windows, fs))

    def describe(self) -> dict:
        return {"classes": self.classes, "train_counts": self.train_counts, "not_learned": self.skipped}


def _fit(x: np.ndarray, y: np.ndarray, seed: int = 0):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    leaf = int(min(20, max(2, len(x) // 10)))  # sklearn's default 20 cannot split a small training set
    clf = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, max_leaf_nodes=15,
                                         min_samples_leaf=leaf, class_weight="balanced", early_stopping=False,
                                         random_state=seed)
    with threadpool_limits(limits=1, user_api="openmp"):
        clf.fit(x, y)
    return clf


def _training_set(records, data_dir, hop_s, max_per_class, min_windows, seed):
    x, y, g = labelled_windows(records, data_dir, hop_s=hop_s)
    rng = np.random.default_rng(seed)
    keep, skipped = [], {}
    for c in sorted(set(y.tolist())):
        idx = np.flatnonzero(y == c)
        if len(idx) < min_windows or len(set(g[idx].tolist())) < 2:
            skipped[c] = int(len(idx))
            continue
        keep.append(np.sort(rng.choice(idx, min(len(idx), max_per_class), replace=False)))
    keep = np.concatenate(keep)
    return x[keep], y[keep], g[keep], skipped


def train_rhythm_classifier(records: Sequence[str] = DS1, data_dir=None, hop_s: float = 2.5,
                            max_per_class: int = 400, min_windows: int = 10, seed: int = 0,
                            return_data: bool = False):
    """Fit the rhythm classifier on real windows of ``records`` (default DS1).

    Parameters
    ----------
    records : sequence of str
    data_dir : path, optional
    hop_s : float
        Hop between training windows (overlap multiplies the rare rhythms' windows).
    max_per_class : int
        Cap per rhythm (sinus rhythm is subsampled).
    min_windows : int
        Rhythms with fewer windows, or with windows of one patient only, are not learned.
    return_data : bool
        Also return ``(features, labels, groups)`` of the training windows (for grouped CV).
    """
    x, y, g, skipped = _training_set(records, data_dir, hop_s, max_per_class, min_windows, seed)
    f = rhythm_features(x)
    clf = RhythmClassifier(_fit(f, y, seed), sorted(set(y.tolist())),
                           {c: int((y == c).sum()) for c in sorted(set(y.tolist()))}, skipped)
    return (clf, (f, y, g)) if return_data else clf


def grouped_cv_recall(f: np.ndarray, y: np.ndarray, g: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Leave-one-patient-out recall per rhythm (each patient's windows predicted by a model without them)."""
    pred = np.empty(len(y), dtype=y.dtype)
    for rec in sorted(set(g.tolist())):
        te = g == rec
        pred[te] = _fit(f[~te], y[~te], seed).predict(f[te])
    return {c: float((pred[y == c] == c).mean()) for c in sorted(set(y.tolist()))}


def rhythm_ceiling(clf: RhythmClassifier, data_dir=None, test_records: Sequence[str] = DS2,
                   train_data=None, max_per_class: int = 300, seed: int = 0) -> dict[str, dict]:
    """Recall of ``clf`` per rhythm on real ``test_records`` (DS2) windows; DS1 grouped CV where absent.

    Returns
    -------
    dict
        ``{rhythm: {"recall", "n", "source"}}``; ``source`` is ``"DS2"`` or ``"DS1 patient-grouped CV"``.
    """
    x, y, _ = labelled_windows(test_records, data_dir)
    rng = np.random.default_rng(seed)
    out = {}
    for c in clf.classes:
        idx = np.flatnonzero(y == c)
        if len(idx):
            idx = np.sort(rng.choice(idx, min(len(idx), max_per_class), replace=False))
            p = clf.predict(x[idx])
            out[c] = {"recall": float((p == c).mean()), "n": int(len(idx)), "source": "DS2"}
    missing = [c for c in clf.classes if c not in out]
    if missing and train_data is not None:
        f, yt, g = train_data
        cv = grouped_cv_recall(f, yt, g, seed)
        for c in missing:
            out[c] = {"recall": cv[c], "n": int((yt == c).sum()), "source": "DS1 patient-grouped CV"}
    return out


def adherence(clf: RhythmClassifier, windows: np.ndarray, requested: str, fs: float = FS) -> dict:
    """Share of ``windows`` the classifier recognises as ``requested``, and what it called the rest."""
    p = clf.predict(windows, fs)
    names, counts = np.unique(p, return_counts=True)
    share = float((p == requested).mean()) if len(p) else None
    return {"requested": requested, "n": int(len(p)), "share": share,
            "predicted": {str(k): int(v) for k, v in zip(names, counts, strict=True)}}
