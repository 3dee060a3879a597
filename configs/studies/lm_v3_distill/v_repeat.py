"""How much a window's V beats repeat each other: real DS2 against generated sets (issue 39, guidance distillation).

For each V beat and the next V beat at most 10 beats later in the same window (real: 40-beat pieces of each DS2
record's MLII, about 30 s; generated: each 30-s sample), the share of their 6 coarse tokens that are equal;
the mean over pairs. Reads the beat store (real) and the generated folders' ``beat_units.npy`` (label ids, RR,
coarse indices)::

    python configs/studies/lm_v3_distill/v_repeat.py --store runs/store/beats_v3_all \
        --sets default=runs/gen/v3r_t1_s,distill=runs/gen/dst_t1_s,distill_cond=runs/gen/dstc_t1_s \
        --out docs/results/lm_v3_distill_v_repeat.json
"""
from __future__ import annotations

import argparse
import glob
import shlex
import sys

import numpy as np


def pair_share(seqs, max_gap: int = 10) -> dict:
    eq = []
    for is_v, coarse in seqs:
        iv = np.flatnonzero(is_v)
        for a, b in zip(iv[:-1], iv[1:]):
            if b - a <= max_gap:
                eq.append(float((coarse[a] == coarse[b]).mean()))
    return {"mean_shared_coarse": float(np.mean(eq)) if eq else None, "pairs": len(eq)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--sets", required=True, help="name=folder prefix (its first 20 folders), comma-separated")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    from ecg2llm.core.io import git_sha, write_json
    from ecg2llm.lm.beat_layout import BeatLayout
    from ecg2llm.lm.beatstream import load_records
    from ecg2llm.lm.control import ControlSpec

    recs, meta = load_records(a.store)
    real = [(np.asarray(r.classes[s:s + 40]) == "V", r.units[s:s + 40, 2:])
            for r in recs if r.split == "test" and r.lead == "MLII" for s in range(0, len(r.r), 40)]
    lay = BeatLayout.from_dict(meta["layout"])
    v_id = ControlSpec(first_id=lay.codebook_size + 3, conditional=True).id_of("beat:V")
    out = {"real DS2 (MLII, 40-beat pieces)": pair_share(real)}
    for item in a.sets.split(","):
        name, prefix = item.split("=", 1)
        seqs, folders = [], sorted(glob.glob(prefix + "*"))
        folders = [f for f in folders if glob.glob(f + "/beat_units.npy")][:20]
        for f in folders:
            for u in np.load(f + "/beat_units.npy"):
                u = u[(u >= 0).all(1)]
                seqs.append((u[:, 0] == v_id, u[:, 2:]))
        out[name] = {**pair_share(seqs), "folders": folders}
    write_json(a.out, {"what": "share of coarse tokens a V beat shares with the next V beat <= 10 beats later in "
                               "its window", "results": out,
                       "command": "python configs/studies/lm_v3_distill/v_repeat.py " + shlex.join(
                           sys.argv[1:] if argv is None else argv), "git_sha": git_sha()})
    for k, v in out.items():
        print(f"{k}: {v['mean_shared_coarse']:.3f} over {v['pairs']} pairs")


if __name__ == "__main__":
    main()
