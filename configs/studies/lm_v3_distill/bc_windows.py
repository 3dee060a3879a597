"""Which windows lose beat consistency: the share below the real threshold by the window's ectopic-beat share.

The distilled students are "worse than real" in the scorecard's ``beat_consistency`` (the share of 30-s windows
whose beat consistency is below the real band pool's 1st percentile, 0.714). This splits each set's windows by the
share of their beats labelled S, V or F (generated: the labels the LM wrote, from each sample's manifest entry;
real: the reference annotations' AAMI classes, DS2 MLII cut into 30-s windows) and gives, per bin, how many windows
there are and the share below the threshold. Consistency is the scorecard's own
(``ecg2llm.eval.scorecard.clinical.clinical_features``)::

    python configs/studies/lm_v3_distill/bc_windows.py --data_dir ../shared/data \
        --sets default=runs/gen/v3r_t1_s,distill=runs/gen/dst_t1_s \
        --out docs/results/lm_v3_distill_bc_windows.json
"""
from __future__ import annotations

import argparse
import glob
import json
import shlex
import sys

import numpy as np

BINS = ((0.0, 0.0), (0.0, 0.1), (0.1, 0.3), (0.3, 1.0))  # first: no ectopic beat; then (lo, hi]


def by_bin(ectopic: np.ndarray, bc: np.ndarray, threshold: float) -> dict:
    low = ~(bc >= threshold)  # NaN counts as low, as in the scorecard
    rows = {}
    for lo, hi in BINS:
        m = ectopic == 0 if hi == 0 else (ectopic > lo) & (ectopic <= hi)
        rows["none" if hi == 0 else f"({lo:g}, {hi:g}]"] = {
            "windows": int(m.sum()), "share_below": float(low[m].mean()) if m.any() else None}
    return {"windows": len(bc), "share_below": float(low.mean()), "mean_ectopic_share": float(ectopic.mean()),
            "by_ectopic_share": rows}


def generated(prefix: str) -> tuple[np.ndarray, np.ndarray]:
    from ecg2llm.eval.scorecard.clinical import clinical_features

    folders = sorted((d for d in glob.glob(prefix + "*") if not d.endswith(".log")),
                     key=lambda d: int(d[len(prefix):]) if d[len(prefix):].isdigit() else 0)[:20]
    if not folders:
        raise SystemExit(f"no generated folder matches {prefix}*")
    ect, bc = [], []
    for d in folders:
        man = json.loads(open(f"{d}/manifest.json").read())
        x = np.stack([np.load(f"{d}/{s['npy']}") for s in man["samples"]]).astype(np.float64)
        bc.append(clinical_features(x, float(man["fs"]))["beat_consistency"])
        for s in man["samples"]:
            c = s["beats_per_class"]
            ect.append(sum(c.get(k, 0) for k in "SVF") / max(1, sum(c.values())))
    return np.asarray(ect), np.concatenate(bc)


def real_ds2(data_dir: str, seconds: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    from ecg2llm.eval.scorecard.clinical import clinical_features
    from ecg2llm.tokenizer import DS2, read_record
    from ecg2llm.tokenizer.ecg import AAMI_CLASSES

    ect, wins = [], []
    for r in DS2:
        rec = read_record(r, data_dir, lead="MLII")
        n = int(round(seconds * rec.fs))
        at, sym = rec.annotations.beats()
        cls = np.array([AAMI_CLASSES.get(s, "Q") for s in sym])
        for k in range(len(rec.signal) // n):
            m = (at >= k * n) & (at < (k + 1) * n)
            ect.append(float(np.isin(cls[m], ("S", "V", "F")).mean()) if m.any() else 0.0)
            wins.append(rec.signal[k * n:(k + 1) * n])
        fs = rec.fs
    return np.asarray(ect), clinical_features(np.stack(wins).astype(np.float64), fs)["beat_consistency"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--sets", required=True, help="name=folder prefix (its first 20 folders), comma-separated")
    ap.add_argument("--threshold", type=float, default=0.7139707371652162,
                    help="the real band pool's 1st percentile of beat consistency (docs/results/planted.json)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from ecg2llm.core.io import git_sha, write_json

    out = {"command": "python " + " ".join(shlex.quote(x) for x in sys.argv), "git_sha": git_sha(),
           "threshold": a.threshold, "sets": {}}
    out["sets"]["real DS2 (MLII, 30-s windows)"] = by_bin(*real_ds2(a.data_dir), a.threshold)
    for item in a.sets.split(","):
        name, prefix = item.split("=", 1)
        out["sets"][name] = by_bin(*generated(prefix), a.threshold)
        print(name, json.dumps(out["sets"][name]), flush=True)
    write_json(a.out, out)


if __name__ == "__main__":
    main()
