"""Repeatability of beat codes (issue 37): tokenizer v3 against the naive PCA beat code and v2's tokens.

Launch::

    python scripts/beat_repeat.py --tokenizer v3 --data_dir ../shared/data --out docs/results/beat_repeat.json

**Goal protocol** (DS2 MLII, whole records unless ``--seconds``): pairs of adjacent annotated beats that
are both AAMI N, each matched to a detected beat within 50 ms; the share of equal coarse-token positions,
averaged per record, then over records with >= ``min_pairs`` (50) pairs; beside it the coarse-only RMSE of
the R-aligned window (-0.25 ... +0.45 s) pooled over all detected beats (:mod:`ecg2llm.tokenizer.beat_eval`).
Rows:

* ``v3``: the tokenizer's own beats and coarse tokens;
* ``naive_k{k}_L{L}``: the naive code of ``../shared/BEAT-TOKENS.md`` - PCA fitted on all annotated DS1
  beats of the 0.5-Hz high-passed MLII, the first ``k`` components each quantized to ``L`` uniform levels
  over +-3 sd - evaluated at the *same* detected beats and pairs as v3 (windows of the high-passed signal);
* ``naive_annotated_300s_k{k}_L{L}``: the note's own protocol (annotated R, consecutive annotated N beats,
  first 300 s of each DS2 record), to check that the baseline is reproduced (0.72 at 114 µV for k = L = 8);
* ``v2`` (``--v2_tokenizer``, default ``default`` when it is an fsq2 tokenizer): the 21 tokens from 7 before
  to 14 after the token holding the annotated R (``R // 10``), consecutive annotated N beats, first
  ``v2_seconds`` (300 s) of each record - the issue's measurement.

``--detectors`` adds R-peak detection speed and sensitivity / positive predictivity (±50 ms against the
annotations, DS1 MLII) of several neurokit2 methods.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.io import git_sha, write_json


@dataclass
class BeatRepeatConfig:
    """Fields of ``scripts/beat_repeat.py``."""

    tokenizer: str = "v3"
    out: str | None = None
    data_dir: str | None = None
    records: list[str] = field(default_factory=list)  # empty: DS2
    seconds: float | None = None  # first seconds of each record (None: whole records)
    min_pairs: int = 50
    naive: list[str] = field(default_factory=lambda: ["4x4", "6x6", "8x8", "12x6", "12x12"])  # k x L
    v2_tokenizer: str | None = "v2"
    v2_seconds: float = 300.0
    detectors: list[str] = field(default_factory=list)  # e.g. kalidas2017 neurokit pantompkins1985


def _windows(x: np.ndarray, r: np.ndarray, pre: int, post: int) -> np.ndarray:
    idx = np.asarray(r, np.int64)[:, None] + np.arange(-pre, post)
    ok = (idx >= 0) & (idx < len(x))
    return np.where(ok, x[np.clip(idx, 0, len(x) - 1)], 0.0)


class NaiveCode:
    """PCA on R-aligned windows, first ``k`` components each quantized to ``L`` uniform levels over +-3 sd."""

    def __init__(self, windows: np.ndarray, k: int, levels: int):
        self.mean = windows.mean(0)
        _, s, vt = np.linalg.svd(windows - self.mean, full_matrices=False)
        self.basis = vt[:k]
        self.sd = s[:k] / np.sqrt(len(windows))
        self.levels = levels
        self.step = 6.0 * self.sd / levels

    def encode(self, w: np.ndarray) -> np.ndarray:
        z = (w - self.mean) @ self.basis.T
        return np.clip(np.floor((z + 3 * self.sd) / self.step), 0, self.levels - 1).astype(np.int64)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        z = (codes + 0.5) * self.step - 3 * self.sd
        return z @ self.basis + self.mean


def _consecutive_n_pairs(symbols: list[str]) -> np.ndarray:
    from ecg2llm.tokenizer.ecg import AAMI_CLASSES

    n = np.array([AAMI_CLASSES.get(s) == "N" for s in symbols])
    i = np.flatnonzero(n[:-1] & n[1:])
    return np.stack([i, i + 1], axis=1)


def _rmse_uv(e: np.ndarray) -> dict:
    """Pooled RMSE and mean per-beat RMSE (µV) of ``(beats, window)`` errors in mV."""
    e = np.asarray(e, np.float64)
    return {"coarse_rmse_uv": float(1000 * np.sqrt(np.mean(e ** 2))),
            "coarse_rmse_mean_per_beat_uv": float(1000 * np.mean(np.sqrt(np.mean(e ** 2, axis=1))))}


def _detectors(methods, data_dir, fs) -> dict:
    from ecg2llm.tokenizer.baseline import band_filter
    from ecg2llm.tokenizer.beat_codec import detect_r_peaks
    from ecg2llm.tokenizer.data import read_record
    from ecg2llm.tokenizer.splits import DS1

    sigs = []
    for rec in DS1:
        rd = read_record(rec, data_dir, fs=fs)
        sigs.append((band_filter(rd.signal, fs).astype(np.float32), rd.annotations.beats()[0]))
    detect_r_peaks(sigs[0][0][: int(20 * fs)], fs, methods[0])  # imports and first-call set-up
    out = {}
    for m in methods:
        tp = fn = fp = 0
        t_tot, n_tot = 0.0, 0
        for x, ann in sigs:
            t0 = time.perf_counter()
            r = detect_r_peaks(x, fs, m)
            t_tot, n_tot = t_tot + time.perf_counter() - t0, n_tot + len(x)
            if len(r) == 0:
                fn += len(ann)
                continue
            j = np.clip(np.searchsorted(r, ann), 1, len(r) - 1)
            hit = np.minimum(np.abs(r[j - 1] - ann), np.abs(r[j] - ann)) <= 0.05 * fs
            tp, fn, fp = tp + int(hit.sum()), fn + int((~hit).sum()), fp + max(len(r) - int(hit.sum()), 0)
        out[m] = {"sensitivity": tp / max(tp + fn, 1), "ppv": tp / max(tp + fp, 1),
                  "samples_per_s": n_tot / max(t_tot, 1e-9)}
        print(f"  detector {m}: Se {out[m]['sensitivity']:.4f} PPV {out[m]['ppv']:.4f} "
              f"{out[m]['samples_per_s'] / 1e6:.2f} M samples/s", flush=True)
    return out


@run_main
def main(argv=None):
    """Measure every row, print it, and write ``--out`` (JSON with command, git sha and date); returns 0."""
    import sys

    from ecg2llm.tokenizer.base import ECGTokenizer
    from ecg2llm.tokenizer.baseline import band_filter
    from ecg2llm.tokenizer.beat_eval import annotated_pairs, repeat_of_codes, repeat_scores
    from ecg2llm.tokenizer.beat_layout import BEAT
    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer
    from ecg2llm.tokenizer.data import read_record
    from ecg2llm.tokenizer.splits import DS1, DS2

    a = parse_config(BeatRepeatConfig, argv, description=__doc__)
    t_start = time.perf_counter()
    tok = BeatTokenizer.from_pretrained(a.tokenizer)
    fs, pre, post = tok.fs, tok.pre_n, tok.post_n
    records = list(a.records or DS2)
    rows: dict[str, dict] = {}

    print("v3 ...", flush=True)
    rows["v3"] = repeat_scores(tok, records, a.data_dir, seconds=a.seconds, min_pairs=a.min_pairs)
    rows["v3"]["tokenizer"] = a.tokenizer
    print(f"  v3: repeat {rows['v3']['repeat']:.3f}, coarse-only RMSE {rows['v3']['coarse_rmse_uv']:.1f} uV",
          flush=True)

    # naive code: fitted on annotated DS1 beats of the 0.5-Hz high-passed MLII
    train = []
    for rec in DS1:
        rd = read_record(rec, a.data_dir, fs=fs)
        train.append(_windows(band_filter(rd.signal, fs), rd.annotations.beats()[0], pre, post))
    train = np.concatenate(train)
    specs = [tuple(int(v) for v in s.lower().split("x")) for s in a.naive]
    codes = {f"{k}x{L}": NaiveCode(train, k, L) for k, L in specs}
    acc = {name: {"det": [], "ann": [], "det_err": [], "ann_err": []} for name in codes}
    v2 = None
    if a.v2_tokenizer:
        t2 = ECGTokenizer.from_pretrained(a.v2_tokenizer)
        v2 = t2 if t2.tokenizer_type == "fsq2" else None
    v2_rep = []
    for rec in records:
        rd = read_record(rec, a.data_dir, fs=fs)
        x = rd.signal if not a.seconds else rd.signal[: int(a.seconds * fs)]
        hp = band_filter(x, fs)
        s, sym = rd.annotations.beats()
        keep = s < len(x)
        s, sym = s[keep], [v for v, k in zip(sym, keep) if k]
        bt = tok.encode_beats(x, fs)
        r = bt.r[bt.kind == BEAT]
        pairs = annotated_pairs(s, sym, r, fs)
        w_det = _windows(hp, r, pre, post)
        n300 = int(300 * fs)
        ann300 = s < n300
        s3, sym3 = s[ann300], [v for v, k in zip(sym, ann300) if k]
        w_ann = _windows(band_filter(rd.signal[:n300], fs), s3, pre, post)
        p_ann = _consecutive_n_pairs(sym3)
        for name, code in codes.items():
            c = code.encode(w_det)
            if len(pairs) >= a.min_pairs:
                acc[name]["det"].append(repeat_of_codes(c, pairs))
            acc[name]["det_err"].append(w_det - code.decode(c))
            c3 = code.encode(w_ann)
            acc[name]["ann"].append(repeat_of_codes(c3, p_ann))
            acc[name]["ann_err"].append(w_ann - code.decode(c3))
        if v2 is not None:
            ids, _ = v2.encode(rd.signal[: int(a.v2_seconds * fs)], fs)
            sv = s[s < int(a.v2_seconds * fs)]
            symv = sym[: len(sv)]
            tpos = sv // int(v2.samples_per_token)
            ok = (tpos >= 7) & (tpos + 14 < len(ids))
            win = np.stack([ids[t - 7 : t + 14] for t in tpos[ok]]) if ok.any() else np.zeros((0, 21))
            pv = _consecutive_n_pairs([v for v, k in zip(symv, ok) if k])
            v2_rep.append(repeat_of_codes(win, pv))
        print(f"  {rec}: {len(pairs)} pairs", flush=True)
    for name, d in acc.items():
        rows[f"naive_{name}"] = {"repeat": float(np.mean(d["det"])), "records_used": len(d["det"]),
                                 **_rmse_uv(np.concatenate(d["det_err"]))}
        rows[f"naive_annotated_300s_{name}"] = {"repeat": float(np.nanmean(d["ann"])),
                                                **_rmse_uv(np.concatenate(d["ann_err"]))}
        print(f"  naive {name}: repeat {rows[f'naive_{name}']['repeat']:.3f} at "
              f"{rows[f'naive_{name}']['coarse_rmse_uv']:.1f} uV (annotated, 300 s: "
              f"{rows[f'naive_annotated_300s_{name}']['repeat']:.3f} at "
              f"{rows[f'naive_annotated_300s_{name}']['coarse_rmse_uv']:.1f} uV)", flush=True)
    if v2 is not None:
        rows["v2"] = {"repeat": float(np.nanmean(v2_rep)), "repeat_min": float(np.nanmin(v2_rep)),
                      "repeat_max": float(np.nanmax(v2_rep)), "tokenizer": a.v2_tokenizer, "seconds": a.v2_seconds}
        print(f"  v2 tokens around R: {rows['v2']['repeat']:.3f} ({rows['v2']['repeat_min']:.2f}-"
              f"{rows['v2']['repeat_max']:.2f})", flush=True)
    res = {"command": "python scripts/beat_repeat.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "git_sha": git_sha(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "records": records, "seconds": a.seconds, "min_pairs": a.min_pairs, "tokenizer": tok.describe(),
           "rows": rows}
    if a.detectors:
        res["detectors"] = _detectors(a.detectors, a.data_dir, fs)
    res["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    res["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]  # timings ran under this load
    if a.out:
        write_json(a.out, res)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
