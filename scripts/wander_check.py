"""Wander (log10 RMS below 0.5 Hz of 10-s windows) of real ECGs vs decodes with a sampled baseline.

Launch::

    python scripts/wander_check.py --tokenizer default --out runs/wander/check_ds2.json

On MIT-BIH MLII of ``records`` (default DS2, which the wander model never saw) it cuts 10-s windows and
reports the quantiles (10/25/50/75/90 %) of :func:`ecg2llm.tokenizer.wander.wander_log_rms` for:

* ``real``: the recordings;
* ``real_baseline``: their estimated baselines alone (interpolated knots);
* ``band_decode``: ``decode(ids, None)`` of their ids - what an LM's generations are without a baseline;
* ``band_decode_plus_sampled``: the same windows plus the baseline of ``sample_state(3600, seed=i)``, one
  draw per window (what ``decode(ids, tok.sample_state(n, seed))`` adds to generated ids);
* ``sampled_baseline``: the sampled baselines alone.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import TokenizerError
from ecg2llm.core.io import write_json
from ecg2llm.tokenizer.base import ECGTokenizer


@dataclass
class WanderCheckConfig:
    """Fields of ``scripts/wander_check.py``."""

    tokenizer: str = "v2"               # fsq2 tokenizer with a wander model
    out: str | None = None              # JSON with the quantiles
    data_dir: str | None = None         # data root holding mitdb/
    records: list[str] = field(default_factory=list)  # MIT-BIH records (empty: DS2)
    seconds: float = 10.0               # window length


@run_main
def main(argv=None):
    """Parse flags, measure, print and optionally write the quantiles; returns 0."""
    import numpy as np

    from ecg2llm.tokenizer.data import read_record
    from ecg2llm.tokenizer.splits import DS2
    from ecg2llm.tokenizer.wander import wander_log_rms

    a = parse_config(WanderCheckConfig, argv, description=__doc__)
    tok = ECGTokenizer.from_pretrained(a.tokenizer)
    if not getattr(tok, "has_wander_model", False):
        raise TokenizerError(f"{a.tokenizer} has no wander model (scripts/fit_wander.py fits one)")
    win = int(round(a.seconds * tok.fs))
    rows: dict[str, list] = {k: [] for k in ("real", "real_baseline", "band_decode", "band_decode_plus_sampled",
                                             "sampled_baseline")}
    i = 0
    for r in a.records or DS2:
        x = read_record(r, a.data_dir, lead="MLII", fs=tok.fs, annotations=False).signal.astype(np.float32)
        ids, state = tok.encode(x, tok.fs)
        band = tok.decode(ids)[: len(x)]
        base = tok.interpolate_baseline(state["baseline"], len(x))
        m = len(x) // win
        samp = np.stack([tok.interpolate_baseline(tok.sample_state(win, seed=i + j)["baseline"], win)
                         for j in range(m)])  # (m, win)
        i += m
        cut = {"real": x, "real_baseline": base, "band_decode": band}
        for k, v in cut.items():
            rows[k].append(wander_log_rms(v[: m * win].reshape(m, win), tok.fs))
        rows["band_decode_plus_sampled"].append(wander_log_rms(band[: m * win].reshape(m, win) + samp, tok.fs))
        rows["sampled_baseline"].append(wander_log_rms(samp, tok.fs))
    q = (10, 25, 50, 75, 90)
    res = {k: dict(zip([f"p{p}" for p in q], np.percentile(np.concatenate(v), q).round(3).tolist()))
           for k, v in rows.items()}
    res["windows"] = int(i)
    for k, v in res.items():
        print(f"{k:>26}: {v}")
    if a.out:
        write_json(a.out, {**res, "tokenizer": a.tokenizer, "records": list(a.records or DS2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
