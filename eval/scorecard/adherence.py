"""Rhythm adherence read from the waveform: ventricular rhythms by the beats a real-data classifier sees.

Heart rate alone does not make VT (a sinus tachycardia is fast too), and the rhythm classifier of
:mod:`ecg2llm.eval.scorecard.rhythm` recognises almost none of the real trigeminy windows. Here each 10-s window's R
peaks are
detected (:func:`ecg2llm.eval.scorecard.metrics.physiology.detect_rpeaks`, never the sampler's own labels), every beat
is cut as
the TSTR beats are (:func:`ecg2llm.eval.beats.cut_beats`) and classified by the AAMI beat classifier trained on **real
DS1 beats only** (:func:`ecg2llm.eval.beat_classifier.train_classifier`); each rule then reads the beat-class sequence:

* ``VT``: heart rate above 100 bpm **and** a run of at least 3 consecutive beats called V;
* ``B`` (ventricular bigeminy): at least 4 consecutive beats alternating N and V (V every second beat);
* ``T`` (ventricular trigeminy): at least 6 consecutive beats in an N N V pattern (V every third beat).

A rule is only a measurement where it recognises the real thing: its share on real windows lying wholly inside
that rhythm (DS2 where DS2 has at least :data:`MIN_REAL_WINDOWS`, else DS1, the classifier's own training
patients, labelled so) is its ceiling, and a rule whose ceiling is below :data:`MEASURABLE` reports the condition
as **not measurable**, never as met.
"""

from __future__ import annotations

import numpy as np

RULES: dict[str, str] = {
    "VT": "heart rate > 100 bpm and >= 3 consecutive beats the real-data beat classifier calls V",
    "B": ">= 4 consecutive beats alternating N/V (ventricular bigeminy), by the real-data beat classifier",
    "T": ">= 6 consecutive beats in an N N V pattern (ventricular trigeminy), by the real-data beat classifier",
}
MEASURABLE = 0.5  # a rule recognising fewer real windows of its rhythm than this measures nothing
MIN_REAL_WINDOWS = 5


def window_beat_classes(clf, windows: np.ndarray, fs: float = 360.0) -> list[tuple[str, float]]:
    """Per window: the beat-class string (``"NNVNNV..."``, beats with both RR neighbours, in order) and the
    heart rate (bpm, NaN with fewer than 2 peaks)."""
    from ..beats import CLASSES, cut_beats
    from .metrics.physiology import detect_rpeaks

    if fs != 360.0:
        raise ValueError(f"adherence reads 360 Hz windows, got {fs:g} Hz; resample first")
    out = []
    for i, w in enumerate(np.asarray(windows, np.float64)):
        peaks, _ = detect_rpeaks(w, fs)
        hr = 60.0 * fs / float(np.mean(np.diff(peaks))) if len(peaks) >= 2 else float("nan")
        beats = cut_beats(w.astype(np.float32), peaks, ["N"] * len(peaks), fs, f"w{i}")
        labels = "".join(CLASSES[c] for c in clf.predict(beats)) if len(beats) else ""
        out.append((labels, hr))
    return out


def meets(rule: str, labels: str, hr: float) -> bool:
    """Whether one window's beat-class string (and heart rate) satisfies ``rule`` (a key of :data:`RULES`)."""
    import re

    if rule == "VT":
        return bool(np.isfinite(hr) and hr > 100 and "VVV" in labels)
    if rule == "B":
        return re.search(r"(?:NV){2,}|(?:VN){2,}", labels) is not None
    if rule == "T":
        return re.search(r"(?:NNV){2,}|(?:NVN){2,}|(?:VNN){2,}", labels) is not None
    raise ValueError(f"no waveform rule for rhythm {rule!r}; rules exist for {sorted(RULES)}")


def share_meeting(clf, rule: str, windows: np.ndarray, fs: float = 360.0) -> float:
    """Share of ``windows`` whose waveform meets ``rule``."""
    rows = window_beat_classes(clf, windows, fs)
    return float(np.mean([meets(rule, lab, hr) for lab, hr in rows])) if rows else float("nan")


def real_ceiling(clf, rules, data_dir=None, per_rhythm: int = 60, seed: int = 0) -> dict[str, dict]:
    """Each rule's share on real windows wholly inside its rhythm (DS2 first, else DS1), and ``measurable``."""
    from ecg2llm.tokenizer.splits import DS1, DS2

    from .rhythm import labelled_windows

    rng = np.random.default_rng(seed)
    out: dict[str, dict] = {}
    for name, recs in (("DS2", DS2), ("DS1 (the classifier's training patients)", DS1)):
        x, y, g = labelled_windows(recs, data_dir, hop_s=5.0)
        for r in rules:
            idx = np.flatnonzero(y == r)
            if r in out or len(idx) < MIN_REAL_WINDOWS:
                continue
            idx = np.sort(rng.choice(idx, min(per_rhythm, len(idx)), replace=False))
            s = share_meeting(clf, r, x[idx])
            out[r] = {"source": name, "n": int(len(idx)), "patients": sorted(set(g[idx].tolist())), "share": s,
                      "measurable": bool(s >= MEASURABLE)}
    for r in rules:
        out.setdefault(r, {"source": None, "n": 0, "patients": [], "share": None, "measurable": False})
    return out


def adherence_rows(clf, sets: dict, ceiling: dict) -> list[dict]:
    """``[{condition, rule, n, share, real, verdict}]`` for each ``rhythm:X`` set with a rule; ``verdict`` is
    ``met`` (share >= 0.8 x the real share), ``not met``, or ``not measurable`` (the rule misses real X)."""
    rows = []
    for cond, ws in sets.items():
        kind, _, r = cond.partition(":")
        if kind != "rhythm" or r not in RULES:
            continue
        c = ceiling.get(r) or {}
        s = share_meeting(clf, r, ws.x, ws.fs)
        if not c.get("measurable"):
            verdict = "not measurable"
        else:
            verdict = "met" if s >= 0.8 * c["share"] else "not met"
        rows.append({"condition": cond, "rule": RULES[r], "n": len(ws.x), "share": s, "real": c, "verdict": verdict})
    return rows
