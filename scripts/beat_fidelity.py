"""Fidelity, token rate, robustness, no-beat signals and speed of a beat tokenizer (v3, issue 37).

Launch::

    python scripts/beat_fidelity.py --tokenizer v3 --data_dir ../shared/data --out docs/results/beat_v3_fidelity.json

Rows (DS2 MLII, whole records unless ``--seconds``):

* ``ds2``: band RMSE / PRDN of the round trip exactly as tokenizer v2 reports them
  (:func:`ecg2llm.tokenizer.robustness.band_errors`), tokens per second per record (mean, min, max: the rate
  follows the heart rate), the coarse-only decode's band error beside it;
* ``robustness`` (``--robustness``, default on): :func:`ecg2llm.tokenizer.robustness.robustness_report` - gain 0.3,
  second leads, +10 mV offset with 1 mV wander, -50 mV with a ramp and 2 mV wander, 250/500/1000 Hz inputs;
* ``no_beats``: a flat line, white noise (0.3 mV), and the ventricular flutter episodes of record 207
  (``(VFL`` rhythm notes; DS1, a training record of the codes - the point is the fallback path, not a
  held-out score): band RMSE, PRDN, share of fallback units;
* ``speed``: encode + decode samples per second over the DS2 round trip, beat detection included.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.io import git_sha, write_json


@dataclass
class BeatFidelityConfig:
    """Fields of ``scripts/beat_fidelity.py``."""

    tokenizer: str = "v3"
    out: str | None = None
    data_dir: str | None = None
    records: list[str] = field(default_factory=list)  # empty: DS2
    seconds: float | None = None
    robustness: bool = True


def _band_err(tok, x: np.ndarray, y: np.ndarray) -> dict:
    from ecg2llm.tokenizer.baseline import band_filter

    bx, by = band_filter(x, tok.fs), band_filter(y, tok.fs)
    e2 = float(np.sum((bx - by) ** 2))
    return {"rmse_uv": 1000 * math.sqrt(e2 / len(bx)),
            "prdn": 100 * math.sqrt(e2 / max(float(np.sum((bx - bx.mean()) ** 2)), 1e-30))}


def no_beat_rows(tok, data_dir) -> dict:
    """Flat line, white noise and record 207's flutter episodes through the fallback path."""
    from ecg2llm.tokenizer.beat_layout import FALLBACK
    from ecg2llm.tokenizer.data import read_record

    fs = tok.fs
    rng = np.random.default_rng(0)
    cases = {"flat_60s": np.full(int(60 * fs), 0.4, np.float32),
             "white_noise_0.3mV_60s": (0.3 * rng.standard_normal(int(60 * fs))).astype(np.float32)}
    rd = read_record("207", data_dir, fs=fs)
    rs, rn = rd.annotations.rhythms()
    ends = list(rs[1:]) + [len(rd.signal)]
    episodes = [(int(a), int(b)) for a, b, n in zip(rs, ends, rn) if n.startswith("(VFL")]
    out = {}
    for name, x in cases.items():
        bt = tok.encode_beats(x, fs)
        y = tok.decode_beats(bt, bt.state)
        out[name] = {**_band_err(tok, x, y), "rmse_full_uv": 1000 * float(np.sqrt(np.mean((y - x) ** 2))),
                     "fallback_share": float(np.mean(bt.kind == FALLBACK)) if len(bt) else 1.0}
    bt = tok.encode_beats(rd.signal, fs)
    y = tok.decode_beats(bt, bt.state)
    sq = ss = 0.0
    n_fb = n_units = 0
    from ecg2llm.tokenizer.baseline import band_filter

    bx, by = band_filter(rd.signal, fs), band_filter(y, fs)
    for a, b in episodes:
        sq += float(np.sum((bx[a:b] - by[a:b]) ** 2))
        ss += float(np.sum((bx[a:b] - bx[a:b].mean()) ** 2))
        inside = (bt.start >= a) & (bt.start < b)
        n_fb, n_units = n_fb + int(np.sum(bt.kind[inside] == FALLBACK)), n_units + int(inside.sum())
    n = sum(b - a for a, b in episodes)
    out["207_flutter"] = {"episodes": len(episodes), "seconds": n / fs, "rmse_uv": 1000 * math.sqrt(sq / max(n, 1)),
                          "prdn": 100 * math.sqrt(sq / max(ss, 1e-30)), "fallback_share": n_fb / max(n_units, 1),
                          "record_rmse_uv": _band_err(tok, rd.signal, y)["rmse_uv"]}
    return out


@run_main
def main(argv=None):
    """Measure, print and write ``--out`` (JSON with command, git sha, date); returns 0."""
    import sys

    from ecg2llm.tokenizer.beat_eval import band_scores
    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer
    from ecg2llm.tokenizer.evaluation import load_signals
    from ecg2llm.tokenizer.robustness import robustness_report
    from ecg2llm.tokenizer.splits import DS2

    a = parse_config(BeatFidelityConfig, argv, description=__doc__)
    t0 = time.perf_counter()
    tok = BeatTokenizer.from_pretrained(a.tokenizer)
    records = list(a.records or DS2)
    sigs = load_signals(records, a.data_dir, fs=tok.fs, seconds=a.seconds)
    ds2 = band_scores(tok, sigs)
    speed = ds2["n_samples"] / max(ds2["encode_s"] + ds2["decode_s"], 1e-9)
    print(f"DS2: band RMSE {ds2['rmse_uv']:.1f} uV, PRDN {ds2['prdn']:.2f} %, tokens/s {ds2['tokens_per_second']:.1f} "
          f"({ds2['tokens_per_second_min']:.1f}-{ds2['tokens_per_second_max']:.1f}); coarse only "
          f"{ds2['coarse_only']['rmse_uv']:.1f} uV; {speed / 1e6:.2f} M samples/s", flush=True)
    res = {"command": "python scripts/beat_fidelity.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "git_sha": git_sha(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "tokenizer": tok.describe(), "records": records, "seconds": a.seconds, "ds2": ds2,
           "speed": {"encode_decode_samples_per_s": speed, "encode_s": ds2["encode_s"], "decode_s": ds2["decode_s"],
                     "n_samples": ds2["n_samples"]}}
    res["no_beats"] = no_beat_rows(tok, a.data_dir)
    for k, v in res["no_beats"].items():
        print(f"  {k}: band RMSE {v['rmse_uv']:.1f} uV, PRDN {v['prdn']:.1f} %, "
              f"fallback share {v['fallback_share']:.2f}", flush=True)
    if a.robustness:
        res["robustness"] = robustness_report(tok, a.data_dir, records, seconds=a.seconds)
    res["elapsed_s"] = round(time.perf_counter() - t0, 1)
    res["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]  # timings ran under this load
    if a.out:
        write_json(a.out, res)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
