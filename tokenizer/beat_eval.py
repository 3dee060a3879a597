"""Scores of beat tokenizers: the repeatability figure, coarse-only beat-window error, band error, tokens/s.

**Repeat** (issue 37): pairs of adjacent annotated beats that are both AAMI class N (N, L, R, e, j), each
matched to a coded beat within ``tol_s`` (50 ms); the share of coarse-token positions that are equal,
averaged over the pairs of a record, then over records with at least ``min_pairs`` pairs.
**Coarse-only RMSE**: the R-aligned window (``-pre_s ... +post_s``) of the band around each coded beat
against its coarse-only decode, pooled over all beats (µV); ``coarse_rmse_mean_per_beat_uv`` is the mean of
the per-beat RMSEs (smaller: the note ``BEAT-TOKENS.md`` appears to report this one).

:func:`repeat_of_codes` works for any per-beat code (the naive PCA baseline and v2's tokens around R in
``scripts/beat_repeat.py`` use it too).
"""
from __future__ import annotations

import math

import numpy as np

from .ecg import AAMI_CLASSES


def annotated_pairs(ann_sample: np.ndarray, ann_symbol: list[str], r: np.ndarray, fs: float,
                    tol_s: float = 0.05) -> np.ndarray:
    """``(pairs, 2)`` indices into ``r`` of adjacent annotated N-N beat pairs, each matched within ``tol_s``."""
    ann_sample = np.asarray(ann_sample, np.int64)
    r = np.asarray(r, np.int64)
    if len(r) == 0 or len(ann_sample) < 2:
        return np.zeros((0, 2), np.int64)
    j = np.clip(np.searchsorted(r, ann_sample), 1, len(r) - 1)
    near = np.where(np.abs(r[j - 1] - ann_sample) <= np.abs(r[j] - ann_sample), j - 1, j)
    if len(r) == 1:
        near = np.zeros(len(ann_sample), np.int64)
    ok = np.abs(r[near] - ann_sample) <= tol_s * fs
    is_n = np.array([AAMI_CLASSES.get(s) == "N" for s in ann_symbol])
    good = ok & is_n
    a, b = near[:-1], near[1:]
    keep = good[:-1] & good[1:] & (a != b)
    return np.stack([a[keep], b[keep]], axis=1)


def repeat_of_codes(codes: np.ndarray, pairs: np.ndarray) -> float:
    """Mean share of equal code positions between the rows of each pair (nan without pairs)."""
    if len(pairs) == 0:
        return float("nan")
    codes = np.asarray(codes).reshape(len(codes), -1)
    return float(np.mean(codes[pairs[:, 0]] == codes[pairs[:, 1]]))


def repeat_scores(tok, records, data_dir=None, seconds: float | None = None, min_pairs: int = 50,
                  lead: str = "MLII", tol_s: float = 0.05, progress: bool = False) -> dict:
    """Repeat and coarse-only beat-window RMSE of a :class:`ecg2llm.tokenizer.beat_tokenizer.BeatTokenizer`."""
    from .beat_layout import BEAT
    from .data import read_record

    per, sq, cnt, per_beat = {}, 0.0, 0, []
    for rec in records:
        rd = read_record(rec, data_dir, lead=lead, fs=tok.fs, annotations=True)
        x = rd.signal if not seconds else rd.signal[: int(seconds * tok.fs)]
        bt = tok.encode_beats(x, tok.fs)
        b = bt.kind == BEAT
        r, coarse = bt.r[b], bt.coarse[b]
        s, sym = rd.annotations.beats()
        keep = s < len(x)
        pairs = annotated_pairs(s[keep], [v for v, k in zip(sym, keep) if k], r, tok.fs, tol_s)
        band = x - tok.interpolate_baseline(bt.state["baseline"], len(x))
        w = tok.coarse_windows(band, r)
        g = tok.unit_gains(bt.kind, bt.start, bt.r, bt.state.get("gain"))[b]  # segment gains (state["gain"])
        e = w - tok.decode_coarse(coarse) / g[:, None]
        sq, cnt = sq + float(np.sum(e.astype(np.float64) ** 2)), cnt + e.size
        per_beat.append(np.sqrt(np.mean(e.astype(np.float64) ** 2, axis=1)))
        rmse = 1000 * math.sqrt(float(np.mean(e.astype(np.float64) ** 2))) if e.size else float("nan")
        per[str(rec)] = {"pairs": int(len(pairs)), "repeat": repeat_of_codes(coarse, pairs), "beats": int(b.sum()),
                         "coarse_rmse_uv": rmse}
        if progress:
            print(f"  {rec}: repeat {per[str(rec)]['repeat']:.3f} over {len(pairs)} pairs", flush=True)
    used = [v["repeat"] for v in per.values() if v["pairs"] >= min_pairs]
    return {"repeat": float(np.mean(used)) if used else float("nan"),
            "repeat_min": float(np.min(used)) if used else float("nan"), "records_used": len(used),
            "coarse_rmse_uv": 1000 * math.sqrt(sq / max(cnt, 1)),
            "coarse_rmse_mean_per_beat_uv": (1000 * float(np.mean(np.concatenate(per_beat))) if per_beat
                                             else float("nan")),
            "per_record": per}


def band_scores(tok, signals: dict, coarse_only: bool = True) -> dict:
    """Band RMSE / PRDN exactly as v2 reports them (:func:`ecg2llm.tokenizer.robustness.band_errors`), tokens per
    second per record (mean, min, max), and the coarse-only decode's band error beside them."""
    from .robustness import band_errors

    res = band_errors(tok, signals)
    tps = []
    for name, x in signals.items():
        ids, _ = tok.encode(x, tok.fs)
        tps.append(len(ids) / (len(x) / tok.fs))
        res["per_record"][name]["tokens_per_second"] = tps[-1]
    res.update(tokens_per_second=float(np.mean(tps)), tokens_per_second_min=float(np.min(tps)),
               tokens_per_second_max=float(np.max(tps)))
    if coarse_only:
        c = band_errors(tok, signals, decode_kwargs={"coarse_only": True})
        res["coarse_only"] = {"rmse_uv": c["rmse_uv"], "prdn": c["prdn"]}
    return res
