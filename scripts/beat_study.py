"""Coarse-code study of tokenizer v3 (issue 37): repeatability and coarse-only error against Kc, codebook size
and the switch cost of the sticky (Viterbi) coarse encoder.

Launch::

    python scripts/beat_study.py --tokenizer v3 --data_dir ../shared/data --out docs/results/beat_study_coarse.json

Beats are those the tokenizer detects (its detector, refinement and unit plan); the R-aligned band windows
of the DS1 training records fit each coarse code (PCA + k-means groups, :func:`ecg2llm.tokenizer.training.beat.
fit_product_code`), which is scored on the DS1 validation records and on DS2 with the goal protocol of
:mod:`ecg2llm.tokenizer.beat_eval` (adjacent annotated N-N pairs matched within 50 ms, records with >= 50 pairs;
coarse-only window RMSE pooled over all beats, and its mean per beat). A spec ``GxL`` is ``Kc`` groups of
``G`` PCA coefficients with ``L`` codes each (``1x8`` x 6 = six scalar 8-level codes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.io import git_sha, write_json


@dataclass
class BeatStudyConfig:
    """Fields of ``scripts/beat_study.py``."""

    tokenizer: str = "v3"
    out: str | None = None
    data_dir: str | None = None
    specs: list[str] = field(default_factory=lambda: ["6:1x8", "8:1x8", "10:1x8", "12:1x8", "4:2x64", "5:2x64",
                                                      "6:2x64", "6:2x32", "4:3x256"])  # Kc:GxL
    switch_uv: list[float] = field(default_factory=lambda: [0.0, 40.0, 60.0, 80.0])
    min_pairs: int = 50
    seed: int = 0


def beat_windows(tok, records, data_dir) -> dict:
    """Windows, N-N pairs, chain breaks and record ids of the tokenizer's beats in ``records`` (MLII)."""
    from ecg2llm.tokenizer.beat_eval import annotated_pairs
    from ecg2llm.tokenizer.beat_layout import BEAT
    from ecg2llm.tokenizer.data import read_record

    W, P, B, R = [], [], [], []
    off = 0
    for i, rec in enumerate(records):
        rd = read_record(rec, data_dir, fs=tok.fs)
        x = rd.signal
        band, _ = tok.split(x)
        kind, rr = tok.plan_units(tok.detect(band), len(band))
        _, r, _ = tok.timeline(kind, rr)
        r = r[kind == BEAT]
        W.append(tok.coarse_windows(band, r))
        s, sym = rd.annotations.beats()
        P.append(annotated_pairs(s, sym, r, tok.fs) + off)
        B.append(tok.chain_breaks(kind))
        R.append(np.full(len(r), i))
        off += len(r)
    return {"W": np.concatenate(W), "P": np.concatenate(P), "B": np.concatenate(B), "R": np.concatenate(R)}


def score(codes: np.ndarray, dec: np.ndarray, d: dict, min_pairs: int) -> dict:
    rep = []
    for i in np.unique(d["R"]):
        p = d["P"][d["R"][d["P"][:, 0]] == i]
        if len(p) >= min_pairs:
            rep.append(float(np.mean(codes[p[:, 0]] == codes[p[:, 1]])))
    e = d["W"].astype(np.float64) - dec
    return {"repeat": float(np.mean(rep)) if rep else float("nan"), "records": len(rep),
            "coarse_rmse_uv": float(1000 * np.sqrt(np.mean(e ** 2))),
            "coarse_rmse_mean_per_beat_uv": float(1000 * np.mean(np.sqrt(np.mean(e ** 2, axis=1))))}


@run_main
def main(argv=None):
    """Fit and score every spec x switch cost; print and write ``--out``; returns 0."""
    import sys

    from ecg2llm.tokenizer.beat_codec import viterbi_sticky
    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer
    from ecg2llm.tokenizer.splits import DS2, inter_patient_split
    from ecg2llm.tokenizer.training.beat import fit_product_code

    a = parse_config(BeatStudyConfig, argv, description=__doc__)
    t0 = time.perf_counter()
    tok = BeatTokenizer.from_pretrained(a.tokenizer)
    split = inter_patient_split()
    data = {k: beat_windows(tok, recs, a.data_dir) for k, recs in
            (("train", split.train), ("valid", split.valid), ("ds2", DS2))}
    rng = np.random.default_rng(a.seed)
    rows = []
    for spec in a.specs:
        kc, gl = spec.split(":")
        g, L = (int(v) for v in gl.lower().split("x"))
        pc = fit_product_code(data["train"]["W"], [g] * int(kc), L, 20, 60000, rng)
        for sw in a.switch_uv:
            row = {"spec": spec, "kc": int(kc), "group": g, "codes": L, "bits_per_beat": int(kc) * float(np.log2(L)),
                   "switch_uv": sw}
            for name in ("valid", "ds2"):
                d = data[name]
                cost = d["W"].shape[1] * (sw / 1000.0) ** 2
                codes = viterbi_sticky(pc.costs(d["W"]), cost, d["B"]) if sw > 0 else pc.encode(d["W"])
                row[name] = score(codes, pc.decode(codes), d, a.min_pairs)
            rows.append(row)
            print(f"{spec} switch {sw:g} uV: DS2 repeat {row['ds2']['repeat']:.3f} at "
                  f"{row['ds2']['coarse_rmse_uv']:.1f} uV | valid {row['valid']['repeat']:.3f} at "
                  f"{row['valid']['coarse_rmse_uv']:.1f} uV", flush=True)
    res = {"command": "python scripts/beat_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "git_sha": git_sha(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "tokenizer": a.tokenizer, "train_records": list(split.train), "valid_records": list(split.valid),
           "rows": rows, "elapsed_s": round(time.perf_counter() - t0, 1)}
    if a.out:
        write_json(a.out, res)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
