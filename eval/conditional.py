"""Conditional fidelity: real windows that match a condition, and agreement of generated beat labels.

``condition_windows(DS2, "beat:V")`` cuts the 10-s MLII windows of DS2 that hold at least one ventricular
beat; ``"rhythm:AFIB"`` the windows lying wholly inside atrial fibrillation. A set generated under that
condition is scored by :class:`ecg2llm.eval.scorecard.scorer.Scorer` against those windows (not against all of DS2), so
"fidelity per condition" compares like with like.

``label_agreement`` asks a beat classifier trained on real DS1 what it calls the generated beats: the rate
at which it assigns each generated (requested or model-chosen) label. For scale, the same classifier's
agreement with the cardiologists' labels on real DS2 beats -- its sensitivity -- is reported beside it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ecg2llm.tokenizer.data import read_record
from ecg2llm.tokenizer.ecg import AAMI_CLASSES, rhythm_name

from .beats import CLASSES, BeatSet
from .data import FS, WINDOW_S, WindowSet


def _record_windows(record: str, data_dir, condition: str, window_s: float, fs: float) -> list[int]:
    rec = read_record(str(record), data_dir, lead="MLII", fs=fs, annotations=True)
    win = int(round(window_s * fs))
    starts = np.arange(0, len(rec.signal) - win + 1, win)
    kind, _, value = condition.partition(":")
    if kind == "beat":
        samples, symbols = rec.annotations.beats()
        hit = samples[[AAMI_CLASSES.get(s) == value for s in symbols]]
        counts = np.searchsorted(hit, starts + win) - np.searchsorted(hit, starts)
        return starts[counts > 0].tolist()
    if kind == "rhythm":
        rs, rn = rec.annotations.rhythms()
        names = [rhythm_name(n) for n in rn]
        if not len(rs):
            return []
        # rhythm in force at the start of each window, and whether it changes inside the window
        idx = np.searchsorted(rs, starts, side="right") - 1
        inside = np.searchsorted(rs, starts + win) - np.searchsorted(rs, starts, side="right")
        ok = [(i >= 0 and names[i] == value and k == 0) for i, k in zip(idx, inside)]
        return starts[np.asarray(ok, bool)].tolist() if len(ok) else []
    raise ValueError(f"condition must be beat:<class> or rhythm:<name>, got {condition!r}")


def condition_windows(records: Sequence[str], condition: str, data_dir=None, n: int | None = None,
                      seed: int = 0, window_s: float = WINDOW_S, fs: float = FS) -> WindowSet:
    """Non-overlapping MLII windows of ``records`` that match ``condition``; a seeded subset of ``n``.

    Returns an empty-``x`` WindowSet (0 windows) when no window matches.
    """
    from ecg2llm.tokenizer.data import resolve_data_dir

    from .data import _mlii  # the cached reader the scorer uses

    root = str(resolve_data_dir(data_dir))
    index = [(str(r), s) for r in records for s in _record_windows(str(r), root, condition, window_s, fs)]
    if n is not None and n < len(index):
        keep = np.sort(np.random.default_rng(seed).choice(len(index), size=n, replace=False))
        index = [index[i] for i in keep]
    win = int(round(window_s * fs))
    x = (np.stack([_mlii(r, root, float(fs))[s:s + win] for r, s in index]).astype(np.float32)
         if index else np.zeros((0, win), np.float32))
    return WindowSet(x=x, fs=float(fs), names=[f"{r}@{s}" for r, s in index],
                     records=np.array([r for r, _ in index]), starts=np.array([s for _, s in index]),
                     source=f"real windows with {condition}")


def label_agreement(clf, beats: BeatSet) -> dict:
    """Per label of ``beats``: how many, and the fraction the classifier assigns that same label."""
    if not len(beats):
        return {}
    pred = clf.predict(beats)
    out = {}
    for i, c in enumerate(CLASSES):
        m = beats.y == i
        if m.any():
            out[c] = {"n": int(m.sum()), "agreement": float((pred[m] == i).mean()),
                      "predicted": {k: int((pred[m] == j).sum()) for j, k in enumerate(CLASSES)}}
    return out
