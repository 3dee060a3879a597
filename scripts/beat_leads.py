"""Why tokenizer v3 codes DS2's second leads worse than MLII: per record, where the error is.

Launch::

    python scripts/beat_leads.py --tokenizer v3 --data_dir ../shared/data --out docs/results/beat_second_leads.json

For each DS2 record, MLII and its other lead (V1, V2, V4 or V5), whole records: band RMSE and PRDN as
:func:`ecg2llm.tokenizer.robustness.band_errors` computes them (0.5-Hz high-pass of input and full decode),
the band's standard deviation (PRDN divides by it), the detector's sensitivity against the annotated beats
(a detected R within 50 ms), the share of the signal in fallback units, the error inside and outside them,
the share of the squared error in the worst 10 % of 10-s windows and the largest excursion of the band
in those windows, and the PRDN ratio (second lead / MLII, means over records) with and without them; the
99th percentile of the beat cycles' residual RMS (and how many exceed 0.2 mV), and of the RMS error of
the whole band coded as fallback units (0.5-s segments) instead; the share of 10-s segments the encoder coded
at a gain below 1 (``state["gain"]``, :meth:`ecg2llm.tokenizer.beat_tokenizer.BeatTokenizer.choose_gains`) and the
share of ids (and of units) that differ from the encode without that search.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config


@dataclass
class BeatLeadsConfig:
    """Fields of ``scripts/beat_leads.py`` (every field is a flag and a ``--config`` YAML key)."""

    tokenizer: str = "v3"           # a beat (v3) tokenizer: shipped name or folder
    out: str | None = None          # JSON with the per-record rows and the summary
    data_dir: str | None = None     # data root holding mitdb/ ($ECG2LLM_DATA otherwise)
    records: str = "ds2"            # ds2, or a comma list of MIT-BIH records


def lead_row(tok, x, ann, fs: float) -> dict:
    """Error anatomy of one lead (module docstring)."""
    import numpy as np

    from ecg2llm.tokenizer.baseline import band_filter
    from ecg2llm.tokenizer.beat_layout import FALLBACK

    bt = tok.encode_beats(x, fs)
    y = tok.decode_beats(bt, bt.state)
    xb, yb = band_filter(x, fs).astype(np.float64), band_filter(y, fs).astype(np.float64)
    e = xb - yb
    fb = np.zeros(len(x), bool)
    for s, en in zip(bt.start[bt.kind == FALLBACK], bt.end[bt.kind == FALLBACK]):
        fb[s:min(en, len(x))] = True
    det = np.sort(bt.r[bt.kind != FALLBACK])
    if len(det) and len(ann):
        j = np.clip(np.searchsorted(det, ann), 1, max(len(det) - 1, 1))
        d = np.minimum(np.abs(det[j] - ann), np.abs(det[j - 1] - ann))
        sens = float(np.mean(d <= round(0.05 * fs)))
    else:
        sens = 0.0
    w = int(round(10 * fs))
    k = len(e) // w
    win_sq = (e[: k * w].reshape(k, w) ** 2).sum(1)
    worst = np.argsort(win_sq)[::-1][: max(1, k // 10)]
    keep = np.ones(len(e), bool)
    for i in worst:
        keep[i * w:(i + 1) * w] = False
    xc = xb - xb.mean()
    # each beat cycle's residual (band minus the unit decode, no baseline), and the same band coded as
    # fallback units throughout: does either code reach the worst stretches?
    band = tok.split(np.asarray(x, np.float32))[0]
    yu = tok.decode_band_units(bt)
    n = min(len(band), len(yu))
    res = band[:n] - yu[:n]
    cyc = [(s, min(en, n)) for s, en, kd in zip(bt.start, bt.end, bt.kind) if kd != FALLBACK and min(en, n) > s]
    cyc_rms = np.array([np.sqrt(np.mean(res[s:en] ** 2)) for s, en in cyc]) if cyc else np.zeros(1)
    f = tok.fallback_n
    segs = band[: len(band) // f * f].reshape(-1, f)
    fcode = tok.codes()["fallback"]
    fb_rms = np.sqrt(((segs - fcode.decode(fcode.encode(segs))) ** 2).mean(1)) if len(segs) else np.zeros(1)

    ids_changed = units_changed = 0.0
    if tok.gain_segment_n and "gain" in bt.state:  # what the gain search changed: the ids without it
        keep_n = tok.gain_segment_n
        try:
            tok.gain_segment_n = 0
            b0 = tok.encode_beats(x, fs)
        finally:
            tok.gain_segment_n = keep_n
        if len(b0.ids) == len(bt.ids):
            ids_changed = float(np.mean(b0.ids != bt.ids))
            w0 = np.concatenate([b0.coarse, b0.detail, b0.fallback], 1)
            w1 = np.concatenate([bt.coarse, bt.detail, bt.fallback], 1)
            units_changed = float(np.mean(np.any(w0 != w1, axis=1)))
        else:
            ids_changed = units_changed = 1.0

    def rms(m):
        return 1000 * float(np.sqrt(np.mean(e[m] ** 2))) if m.any() else None

    return {
        "rmse_uv": rms(np.ones(len(e), bool)), "prdn": 100 * float(np.sqrt(np.sum(e ** 2) / np.sum(xc ** 2))),
        "band_std_uv": 1000 * float(xb.std()), "detector_sensitivity": sens, "beats": int(len(det)),
        "annotated": int(len(ann)), "fallback_share": float(fb.mean()), "rmse_fallback_uv": rms(fb),
        "rmse_beats_uv": rms(~fb), "worst10_error_share": float(win_sq[worst].sum() / max(win_sq.sum(), 1e-12)),
        "worst10_max_abs_mv": float(np.abs(xb[~keep]).max()),
        "prdn_without_worst10": 100 * float(np.sqrt(np.sum(e[keep] ** 2) / np.sum(xc[keep] ** 2))),
        "beat_cycle_residual_p99_uv": 1000 * float(np.percentile(cyc_rms, 99)),
        "beat_cycles_over_200uv": int(np.sum(cyc_rms > 0.2)),
        "fallback_coded_p99_uv": 1000 * float(np.percentile(fb_rms, 99)),
        "gain_segments": int(np.count_nonzero(bt.state.get("gain", []))),
        "ids_changed_by_gain_share": ids_changed, "units_changed_by_gain_share": units_changed,
        "gain_segment_share": float(np.count_nonzero(bt.state.get("gain", [])) / max(1, -(-len(x) // max(
            tok.gain_segment_n, 1)))) if tok.gain_segment_n else 0.0,
    }


@run_main
def main(argv=None):
    """Parse flags (:class:`BeatLeadsConfig`), measure, print, write JSON; returns 0."""
    import numpy as np
    from tqdm.auto import tqdm

    from ecg2llm.core.io import git_sha, write_json
    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer
    from ecg2llm.tokenizer.data import read_header, read_record, resolve_data_dir
    from ecg2llm.tokenizer.splits import DS2

    a = parse_config(BeatLeadsConfig, argv, description=__doc__)
    tok = BeatTokenizer.from_pretrained(a.tokenizer)
    records = list(DS2) if a.records == "ds2" else [r.strip() for r in a.records.split(",") if r.strip()]
    t0 = time.time()
    rows = {}
    for rec in tqdm(records, desc="second leads", unit="record"):
        names = read_header(rec, resolve_data_dir(a.data_dir) / "mitdb").sig_name
        for lead in ["MLII"] + [s for s in names if s != "MLII"][:1]:
            rd = read_record(rec, a.data_dir, lead=lead, fs=tok.fs)
            rows[f"{rec}:{lead}"] = {"record": rec, "lead": lead,
                                     **lead_row(tok, rd.signal, rd.annotations.beats()[0], tok.fs)}
    m = [v for v in rows.values() if v["lead"] == "MLII"]
    s = [v for v in rows.values() if v["lead"] != "MLII"]

    def mean(rs, k):
        return float(np.mean([r[k] for r in rs]))

    summary = {
        "prdn_mlii": mean(m, "prdn"), "prdn_second": mean(s, "prdn"),
        "prdn_ratio": mean(s, "prdn") / mean(m, "prdn"),
        "prdn_ratio_without_worst10": mean(s, "prdn_without_worst10") / mean(m, "prdn_without_worst10"),
        "rmse_mlii_uv": mean(m, "rmse_uv"), "rmse_second_uv": mean(s, "rmse_uv"),
        "band_std_mlii_uv": mean(m, "band_std_uv"), "band_std_second_uv": mean(s, "band_std_uv"),
        "detector_sensitivity_mlii": mean(m, "detector_sensitivity"),
        "detector_sensitivity_second": mean(s, "detector_sensitivity"),
        "gain_segment_share_mlii": mean(m, "gain_segment_share"),
        "gain_segment_share_second": mean(s, "gain_segment_share"),
        "ids_changed_by_gain_share_mlii": mean(m, "ids_changed_by_gain_share"),
        "mlii_records_with_gain_segments": int(sum(r["gain_segments"] > 0 for r in m)),
    }
    for k, v in summary.items():
        print(f"{k:32s} {v:.3f}")
    if a.out:
        cmd = "python scripts/beat_leads.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_json(a.out, {"command": cmd,
                           "git_sha": git_sha(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "tokenizer": str(a.tokenizer), "weights_hash": tok.weights_hash, "summary": summary,
                           "rows": rows, "elapsed_s": time.time() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
