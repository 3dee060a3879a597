"""ECG vocabulary and signal helpers every stage shares: MIT-BIH beat symbols, AAMI EC57 classes, rhythm
names, R-peak refinement, and WFDB annotation files for generated records.

Stage 1 owns them because they describe the data (the ``.atr`` annotations of MIT-BIH); the LM's control
tokens (:mod:`ecg2llm.lm.conditioning`) and stage 3's beat cutting (:mod:`ecg2llm.eval.beats`) both build on them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: MIT-BIH beat symbols (annotations that label a QRS complex).
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")

#: AAMI EC57 classes from MIT-BIH beat symbols (SEED-NOTES).
AAMI_CLASSES: dict[str, str] = {
    **{s: "N" for s in "NLRej"}, **{s: "S" for s in "AaJS"}, **{s: "V" for s in "VE"},
    "F": "F", **{s: "Q" for s in "/fQ"},
}

#: AAMI EC57 beat classes, in the order of their tokens.
BEAT_CLASSES: tuple[str, ...] = ("N", "S", "V", "F", "Q")
#: Every rhythm note of the MIT-BIH Arrhythmia Database (without the opening parenthesis), plus "other".
RHYTHMS: tuple[str, ...] = ("N", "AB", "AFIB", "AFL", "B", "BII", "IVR", "NOD", "P", "PREX", "SBR", "SVTA",
                            "T", "VFL", "VT", "other")
#: Shortest gap between two labelled R peaks of a generated record (s); closer labels are one beat.
REFRACTORY_S = 0.15
#: MIT-BIH symbol written to generated ``.atr`` files for each AAMI class.
CLASS_SYMBOL: dict[str, str] = {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "Q"}


def rhythm_name(aux_note: str) -> str:
    """``"(AFIB"`` -> ``"AFIB"``; notes outside :data:`RHYTHMS` -> ``"other"``."""
    name = str(aux_note).strip().rstrip("\x00").lstrip("(")
    return name if name in RHYTHMS else "other"


def refine_peaks(x: np.ndarray, approx: np.ndarray, fs: float, radius_s: float = 0.08) -> np.ndarray:
    """Move each approximate R-peak index to the largest deviation from the local median within ``radius_s``.

    Used alike on generated beats (approximate position = beat token + ``lead_s``) and on real annotated
    beats, so real and synthetic beats are cut around the same fiducial point.
    """
    x = np.asarray(x, dtype=np.float32)
    r = int(round(radius_s * fs))
    out = np.empty(len(approx), np.int64)
    for i, a in enumerate(np.asarray(approx, np.int64)):
        lo, hi = max(0, a - r), min(len(x), a + r + 1)
        if hi <= lo:
            out[i] = min(max(a, 0), len(x) - 1)
            continue
        seg = x[lo:hi]
        out[i] = lo + int(np.argmax(np.abs(seg - np.median(seg))))
    return out


@dataclass
class BeatLabels:
    """Annotations of one generated record: beat classes at R peaks and rhythm notes (samples at ``fs``)."""

    beat_sample: np.ndarray
    beat_class: list
    rhythm_sample: np.ndarray
    rhythm: list
    dropped: int = 0  # beat labels dropped as duplicates of the same peak

    def summary(self) -> dict:
        return {"beats": len(self.beat_class), "duplicate_labels_dropped": int(self.dropped),
                "beats_per_class": {c: self.beat_class.count(c) for c in BEAT_CLASSES if c in self.beat_class},
                "rhythms": sorted(set(self.rhythm))}


def write_annotations(folder, name: str, labels: BeatLabels, fs: float, extension: str = "atr") -> None:
    """Write ``labels`` as a WFDB annotation file ``<folder>/<name>.<extension>`` (MIT-BIH symbols)."""
    import wfdb

    samples = list(labels.beat_sample.tolist()) + list(labels.rhythm_sample.tolist())
    symbols = [CLASS_SYMBOL[c] for c in labels.beat_class] + ["+"] * len(labels.rhythm)
    aux = [""] * len(labels.beat_class) + [f"({r}" for r in labels.rhythm]
    if not samples:
        return
    order = np.argsort(np.asarray(samples), kind="stable")
    wfdb.wrann(name, extension, np.asarray(samples, np.int64)[order], symbol=[symbols[i] for i in order],
               aux_note=[aux[i] for i in order], fs=float(fs), write_dir=str(folder))
