"""Tokenizer v3 study grid (issue 37, Deliver 3): repeatability, fidelity and token rate against Kc (coarse tokens
per beat), the coarse codebook size, Kd (detail tokens per beat) and the detail codebook size.

Launch (the committed ``docs/results/beat_study_grid.json``; 1 thread, nice; see ``docs/tokenizer-v3.md``)::

    OMP_NUM_THREADS=1 nice -n 10 python scripts/beat_study_grid.py --tokenizer v3 --data_dir ../shared/data \\
        --out docs/results/beat_study_grid.json

A point is ``Kc:GxL/Kd:L`` (``6:2x64/20:1024`` is the shipped code): ``Kc`` coarse groups of ``G`` PCA
coefficients with ``L`` codes each, sticky with the shipped switch cost, then the first ``Kd`` detail groups of
the shipped layout (``[2] * 10 + [4] * 6 + [8] * 4``; beyond 20, groups of 8 are appended) with ``L`` codes
each; ``Kd = 0`` decodes beats from their coarse tokens alone. Codes are reused where they are the shipped
ones (a coarse spec equal to the shipped one; a detail of the shipped codebook size on the shipped coarse code
is the shipped detail code cut to its first ``Kd`` groups, which is what a refit gives: the groups of a product
code are fitted independently); every other code is **refitted** on the DS1 training records (MLII and
second lead, beats as at inference, as ``tokenizer/training/beat.py``) with a short budget (``--max_fit``
vectors per k-means, ``--kmeans_iters``); a trailing ``!`` refits a shipped point too (the control for the
short budget). The fallback code is always the shipped one (it does not depend on the beat codes).

Scores on DS2 (22 records, MLII, whole), exactly the protocols of the goal numbers, from one parse of each
record (baseline, beats and units do not depend on the codes):

* ``rmse_uv`` / ``prdn``: band round trip as :func:`ecg2llm.tokenizer.robustness.band_errors` (0.5-Hz high-passed
  input and decode, pooled RMSE, PRDN averaged over records); ``full_rmse_uv``: the whole signal (baseline
  from the state), as the rate-distortion tables of tokenizer v2;
* ``coarse_only``: the band error of the beats' coarse decode alone (as ``decode(..., coarse_only=True)``);
* ``repeat`` / ``coarse_rmse_uv``: :mod:`ecg2llm.tokenizer.beat_eval`'s repeatability figure and coarse-only
  beat-window RMSE;
* ``tokens_per_second`` (mean, min, max over records) and ``bits_per_second`` (each token at ``log2`` of its
  range; the RR position counts the fallback marker; baseline side information not included).

Results are written after every point; ``--resume`` skips points already in ``--out``.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.io import git_sha, write_json

SHIPPED_DETAIL_GROUPS = [2] * 10 + [4] * 6 + [8] * 4


@dataclass
class BeatStudyGridConfig:
    """Fields of ``scripts/beat_study_grid.py``."""

    tokenizer: str = "v3"
    out: str | None = None
    data_dir: str | None = None
    points: list[str] = field(default_factory=lambda: [
        "6:2x64/20:1024", "6:2x64/0:1024", "6:2x64/4:1024", "6:2x64/10:1024", "6:2x64/16:1024",
        "2:2x64/20:1024", "4:2x64/20:1024", "8:2x64/20:1024", "6:2x64/20:1024!",
        "6:2x16/20:1024", "6:2x256/20:1024", "6:2x64/20:256", "6:2x64/24:1024"])
    max_fit: int = 30000  # vectors per k-means fit (the shipped fit: 60000)
    kmeans_iters: int = 12  # (the shipped fit: 25)
    train_second_lead: bool = True
    records: list[str] = field(default_factory=list)  # empty: DS2
    seconds: float | None = None  # keep only the start of each record (quick checks)
    min_pairs: int = 50
    resume: bool = False
    seed: int = 0
    figure: str | None = None  # PNG: repeat vs coarse-only error, and round-trip RMSE vs tokens/s
    plot_only: bool = False  # only draw --figure from --out (and the coarse study / v2 rate-distortion files)
    coarse_study: str = "docs/results/beat_study_coarse.json"
    rate_distortion_v2: str = "docs/results/rate_distortion_v2.json"


def parse_point(spec: str) -> dict:
    """``Kc:GxL/Kd:L[!]`` -> dict(kc, group, coarse_codes, kd, detail_codes, detail_groups, refit)."""
    s = spec.strip()
    refit = s.endswith("!")
    try:
        c, d = s.rstrip("!").split("/")
        kc, gl = c.split(":")
        g, lc = (int(v) for v in gl.lower().split("x"))
        kd, ld = (int(v) for v in d.split(":"))
    except ValueError as e:
        raise SystemExit(f"bad point {spec!r}: expected Kc:GxL/Kd:L, e.g. 6:2x64/20:1024 ({e})") from None
    groups = (SHIPPED_DETAIL_GROUPS + [8] * max(kd - 20, 0))[:kd]
    return {"spec": s, "kc": int(kc), "group": g, "coarse_codes": lc, "kd": kd, "detail_codes": ld,
            "detail_groups": groups, "refit": refit}


def truncate(pc, k: int):
    """The first ``k`` groups of a product code (the groups are fitted independently)."""
    from ecg2llm.tokenizer.beat_codec import ProductCode

    p = int(sum(pc.groups[:k]))
    return ProductCode(pc.mean, pc.basis[:p], pc.groups[:k], pc.codebooks[:k])


def parse_signal(tok, x: np.ndarray) -> dict:
    """Everything of one signal that does not depend on the codes (baseline, units, windows)."""
    from ecg2llm.tokenizer.training.beat import beat_timeline

    t = beat_timeline(tok, x)
    band, knots, bandp, kind, start, r, end, b = (t[k] for k in ("band", "knots", "bandp", "kind", "start", "r",
                                                                   "end", "is_beat"))
    return {"x": np.asarray(x, np.float32), "knots": knots, "band": band, "bandp": bandp, "kind": kind,
            "start": start[b], "r": r[b], "end": end[b], "fb_start": start[~b], "breaks": tok.chain_breaks(kind),
            "W": tok.coarse_windows(band, r[b]), "n_beats": int(b.sum()), "n_fb": int((~b).sum())}


def coarse_signal(tok, coarse, p: dict, sticky: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, decoded windows, placed coarse signal) of one parsed signal."""
    codes = coarse.encode_sticky(p["W"], sticky, p["breaks"]) if len(p["W"]) else np.zeros((0, len(coarse.groups)),
                                                                                           np.int64)
    cw = coarse.decode(codes)
    return codes, cw, tok.place_coarse(cw, p["start"], p["r"], p["end"], len(p["bandp"]))


def fit_point(tok, pt: dict, train: list[dict], shipped: dict, a, rng) -> tuple:
    """(coarse, detail or None, what was fitted) for a point."""
    from ecg2llm.tokenizer.beat_codec import warp_cycles
    from ecg2llm.tokenizer.training.beat import fit_product_code

    c = tok.config
    same_coarse = (pt["kc"] == len(c.coarse_groups) and [pt["group"]] * pt["kc"] == list(c.coarse_groups)
                   and pt["coarse_codes"] == int(c.coarse_codes))
    fitted = []
    if same_coarse and not pt["refit"]:
        coarse = shipped["coarse"]
    else:
        W = np.concatenate([p["W"] for p in train])
        coarse = fit_product_code(W, [pt["group"]] * pt["kc"], pt["coarse_codes"], a.kmeans_iters, a.max_fit, rng)
        fitted.append("coarse")
    if pt["kd"] == 0:
        return coarse, None, fitted
    if (same_coarse and not pt["refit"] and pt["detail_codes"] == int(c.detail_codes)
            and pt["kd"] <= len(c.detail_groups)):
        return coarse, truncate(shipped["detail"], pt["kd"]), fitted
    sticky = tok.window * (float(c.coarse_switch_uv) / 1000.0) ** 2
    n_all = sum(p["n_beats"] for p in train)
    keep = np.zeros(n_all, bool)  # the rows fit_product_code would draw, chosen before warping (saves memory)
    keep[rng.choice(n_all, min(a.max_fit, n_all), replace=False)] = True
    res, off = [], 0
    for p in train:
        sel = keep[off : off + p["n_beats"]]
        off += p["n_beats"]
        if not sel.any():
            continue
        _, _, csig = coarse_signal(tok, coarse, p, sticky)
        res.append(warp_cycles(p["bandp"] - csig, p["start"][sel], p["r"][sel], p["end"][sel], c.detail_pre,
                               c.detail_post))
    detail = fit_product_code(np.concatenate(res), pt["detail_groups"], pt["detail_codes"], a.kmeans_iters,
                              a.max_fit, rng)
    fitted.append("detail")
    return coarse, detail, fitted


def score_point(tok, coarse, detail, test: dict, fb: dict, annots: dict, min_pairs: int) -> dict:
    """DS2 scores of one point (module docstring)."""
    from ecg2llm.tokenizer.baseline import band_filter
    from ecg2llm.tokenizer.beat_codec import unwarp_cycles, warp_cycles
    from ecg2llm.tokenizer.beat_eval import repeat_of_codes

    c = tok.config
    sticky = tok.window * (float(c.coarse_switch_uv) / 1000.0) ** 2
    kc, kd = len(coarse.groups), (len(detail.groups) if detail is not None else 0)
    lc, ld = coarse.n_codes, (detail.n_codes if detail is not None else 1)
    L = tok.layout
    rr_bits = math.log2(L.rr_size + 1)
    beat_tok, beat_bits = 1 + kc + kd, rr_bits + kc * math.log2(lc) + kd * math.log2(ld)
    fb_tok, fb_bits = L.tokens_per_fallback, rr_bits + L.n_fallback * math.log2(L.fallback_size)
    sq = sq_full = sq_co = 0.0
    n_tot = 0
    prdn, prdn_co, tps, bps, rep, per = [], [], [], [], [], {}
    wsq, wcnt, per_beat = 0.0, 0, []
    for name, p in test.items():
        codes, cw, csig = coarse_signal(tok, coarse, p, sticky)
        y = csig.copy()
        if detail is not None and p["n_beats"]:
            w = warp_cycles(p["bandp"] - csig, p["start"], p["r"], p["end"], c.detail_pre, c.detail_post)
            y += unwarp_cycles(detail.decode(detail.encode(w)), p["start"], p["r"], p["end"], c.detail_pre,
                               c.detail_post, len(y))
        idx, seg = fb[name]
        if len(idx):
            y[idx] = seg
        n = len(p["x"])
        base = tok.interpolate_baseline(p["knots"], n)
        out = {}
        for key, yy in (("all", y), ("coarse_only", csig)):
            full = np.concatenate([yy, np.zeros(max(n - len(yy), 0), np.float32)])[:n] + base
            bx, by = band_filter(p["x"], tok.fs), band_filter(full, tok.fs)
            e2 = float(np.sum((bx - by) ** 2))
            out[key] = (e2, 100 * math.sqrt(e2 / max(float(np.sum((bx - bx.mean()) ** 2)), 1e-30)),
                        float(np.sum((p["x"].astype(np.float64) - full) ** 2)))
        sq, sq_full, n_tot = sq + out["all"][0], sq_full + out["all"][2], n_tot + n
        sq_co += out["coarse_only"][0]
        prdn.append(out["all"][1])
        prdn_co.append(out["coarse_only"][1])
        secs = n / tok.fs
        tps.append((p["n_beats"] * beat_tok + p["n_fb"] * fb_tok) / secs)
        bps.append((p["n_beats"] * beat_bits + p["n_fb"] * fb_bits) / secs)
        e = (p["W"] - cw).astype(np.float64)
        wsq, wcnt = wsq + float(np.sum(e ** 2)), wcnt + e.size
        per_beat.append(np.sqrt(np.mean(e ** 2, axis=1)))
        pairs = annots[name]
        rp = repeat_of_codes(codes, pairs)
        if len(pairs) >= min_pairs:
            rep.append(rp)
        per[name] = {"rmse_uv": 1000 * math.sqrt(out["all"][0] / n), "prdn": out["all"][1], "repeat": rp,
                     "pairs": int(len(pairs)), "tokens_per_second": tps[-1]}
    return {"kc": kc, "coarse_codes": int(lc), "kd": kd, "detail_codes": int(ld) if detail is not None else 0,
            "tokens_per_beat": beat_tok, "bits_per_beat": beat_bits,
            "rmse_uv": 1000 * math.sqrt(sq / n_tot), "prdn": float(np.mean(prdn)),
            "full_rmse_uv": 1000 * math.sqrt(sq_full / n_tot),
            "coarse_only": {"rmse_uv": 1000 * math.sqrt(sq_co / n_tot), "prdn": float(np.mean(prdn_co))},
            "repeat": float(np.mean(rep)) if rep else float("nan"), "repeat_min": float(np.min(rep)) if rep else
            float("nan"), "repeat_records": len(rep),
            "coarse_rmse_uv": 1000 * math.sqrt(wsq / max(wcnt, 1)),
            "coarse_rmse_mean_per_beat_uv": 1000 * float(np.mean(np.concatenate(per_beat))),
            "tokens_per_second": float(np.mean(tps)), "tokens_per_second_min": float(np.min(tps)),
            "tokens_per_second_max": float(np.max(tps)), "bits_per_second": float(np.mean(bps)),
            "per_record": per}


def save_figure(path: str, rows: list[dict], coarse_study: str | None, rd_v2: str | None) -> None:
    """(a) DS2 repeat against the coarse-only beat-window RMSE; (b) full-signal round-trip RMSE against tokens/s,
    beside tokenizer v2's rate-distortion rows (same RMSE definition)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecg2llm.core.io import atomic_path

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.4))
    if coarse_study and Path(coarse_study).is_file():
        cs = json.loads(Path(coarse_study).read_text())["rows"]
        for sw, mk in ((0.0, "x"), (60.0, "+")):
            pts = [(r["ds2"]["coarse_rmse_uv"], r["ds2"]["repeat"]) for r in cs if r["switch_uv"] == sw]
            a.scatter(*zip(*pts), marker=mk, color="0.6", s=25,
                      label=f"coarse study ({'nearest code' if sw == 0 else 'sticky 60 µV'})")
    groups = {}
    for r in rows:
        key = "Kc axis (2x64 codes)" if r["coarse_codes"] == 64 and r["kc"] != 6 else \
            "coarse codebook (Kc 6)" if r["coarse_codes"] != 64 else "shipped coarse (6 x 64)"
        groups.setdefault(key, []).append(r)
    for (key, rs), c in zip(sorted(groups.items()), ("tab:blue", "tab:orange", "tab:red")):
        a.scatter([r["coarse_rmse_uv"] for r in rs], [r["repeat"] for r in rs], color=c, s=30, label=key, zorder=3)
        for r in rs:
            a.annotate(f"{r['kc']}x{r['coarse_codes']}", (r["coarse_rmse_uv"], r["repeat"]), fontsize=7,
                       xytext=(3, 3), textcoords="offset points")
    a.axhline(0.8, color="k", lw=0.6, ls="--")
    a.axvline(114, color="k", lw=0.6, ls="--")
    a.set_xlabel("coarse-only beat-window RMSE, DS2 (µV)")
    a.set_ylabel("repeat: equal coarse tokens, adjacent N-N beats")
    a.set_title("Repeatability against coarse-only error (goal: upper left of the dashes)", fontsize=9)
    a.legend(fontsize=7, loc="lower right")
    kd = sorted([r for r in rows if r["kc"] == 6 and r["coarse_codes"] == 64 and r["detail_codes"] in (0, 1024)
                 and "!" not in r["spec"]], key=lambda r: r["tokens_per_second"])
    b.plot([r["tokens_per_second"] for r in kd], [r["full_rmse_uv"] for r in kd], "o-", color="tab:red",
           label="v3, Kd = 0 ... 24 (shipped coarse)")
    for r in kd:
        b.annotate(f"Kd {r['kd']}", (r["tokens_per_second"], r["full_rmse_uv"]), fontsize=7, xytext=(3, 3),
                   textcoords="offset points")
    other = [r for r in rows if r not in kd]
    b.scatter([r["tokens_per_second"] for r in other], [r["full_rmse_uv"] for r in other], color="tab:blue", s=25,
              label="v3, other Kc / codebooks", zorder=3)
    if rd_v2 and Path(rd_v2).is_file():
        rd = json.loads(Path(rd_v2).read_text())["rows"]
        for m, st in (("fsq2", "s--"), ("decimate_uniform", "^:")):
            pts = sorted((r["tokens_per_second"], r["rmse_uv"]) for r in rd if r["method"] == m)
            if pts:
                b.plot(*zip(*pts), st, color="0.4" if m == "fsq2" else "0.7",
                       label="v2 (fsq2, 8-min fits, 4096 codes)" if m == "fsq2" else "decimation")
    b.axvline(36, color="k", lw=0.6, ls="--")
    b.set_xlabel("tokens per second (DS2 mean)")
    b.set_ylabel("round-trip RMSE, whole signal (µV)")
    b.set_yscale("log")
    b.set_title("Round trip against token rate (DS2 MLII)", fontsize=9)
    b.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _load() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


@run_main
def main(argv=None):
    """Parse DS1 training and DS2 signals once, fit and score every point; writes ``--out``; returns 0."""
    import json
    import sys

    import torch
    from tqdm.auto import tqdm

    from ecg2llm.tokenizer.beat_eval import annotated_pairs
    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer
    from ecg2llm.tokenizer.data import read_record
    from ecg2llm.tokenizer.splits import DS2, inter_patient_split
    from ecg2llm.tokenizer.training.beat import TrainConfig, _signals

    a = parse_config(BeatStudyGridConfig, argv, description=__doc__)
    if a.plot_only:
        if not (a.out and a.figure):
            raise SystemExit("--plot_only needs --out (the grid JSON) and --figure")
        save_figure(a.figure, json.loads(Path(a.out).read_text())["rows"], a.coarse_study, a.rate_distortion_v2)
        print(f"wrote {a.figure}")
        return 0
    torch.set_num_threads(1)
    points = [parse_point(s) for s in a.points]
    t0 = time.perf_counter()
    tok = BeatTokenizer.from_pretrained(a.tokenizer)
    codes = tok.codes()
    shipped = {"coarse": codes["coarse"], "detail": codes["detail"]}
    res = {"command": "python scripts/beat_study_grid.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "git_sha": git_sha(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "machine": f"{os.cpu_count()} CPU cores shared with other sessions; OMP_NUM_THREADS="
                      f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, torch threads 1; at start: {_load()}",
           "tokenizer": a.tokenizer, "max_fit": a.max_fit, "kmeans_iters": a.kmeans_iters,
           "switch_uv": float(tok.config.coarse_switch_uv), "rows": []}
    if a.resume and a.out and Path(a.out).is_file():
        res["rows"] = json.loads(Path(a.out).read_text())["rows"]
    done = {r["spec"] for r in res["rows"]}
    records = [str(r) for r in (a.records or DS2)]
    test, fb, annots = {}, {}, {}
    fbc = codes["fallback"]
    for rec in tqdm(records, desc="DS2 parse"):
        rd = read_record(rec, a.data_dir, fs=tok.fs, annotations=True)
        x = rd.signal[: int(a.seconds * tok.fs)] if a.seconds else rd.signal
        p = parse_signal(tok, x)
        test[rec] = p
        idx = p["fb_start"][:, None] + np.arange(tok.fallback_n)
        segs = p["bandp"][np.minimum(idx, len(p["bandp"]) - 1)]
        fb[rec] = (idx.reshape(-1), fbc.decode(fbc.encode(segs)).reshape(-1) if len(segs) else np.zeros(0))
        s, sym = rd.annotations.beats()
        keep = s < len(x)
        annots[rec] = annotated_pairs(s[keep], [v for v, k in zip(sym, keep) if k], p["r"], tok.fs)
    train = None
    rng = np.random.default_rng(a.seed)
    res["parse_s"] = round(time.perf_counter() - t0, 1)
    for pt in points:
        if pt["spec"] in done:
            continue
        t1 = time.perf_counter()
        needs_fit = pt["refit"] or not (pt["kc"] == len(tok.config.coarse_groups) and [pt["group"]] * pt["kc"] ==
                                        list(tok.config.coarse_groups) and pt["coarse_codes"] ==
                                        int(tok.config.coarse_codes) and pt["detail_codes"] ==
                                        int(tok.config.detail_codes) and pt["kd"] <= len(tok.config.detail_groups))
        if needs_fit and train is None:
            cfg = TrainConfig(data_dir=a.data_dir, second_lead=a.train_second_lead, fs=tok.fs)
            split = inter_patient_split()
            train = [parse_signal(tok, x) for _, x in tqdm(_signals(cfg, split.train), desc="DS1 train parse")]
            for p in train:  # keep what the fits need
                for k in ("x", "band", "knots"):
                    p.pop(k)
            res["train_records"] = list(split.train)
            res["train_signals"] = len(train)
            res["train_beats"] = int(sum(p["n_beats"] for p in train))
        coarse, detail, fitted = fit_point(tok, pt, train, shipped, a, rng)
        t2 = time.perf_counter()
        row = {"spec": pt["spec"], "fitted": fitted, "fit_s": round(t2 - t1, 1),
               **score_point(tok, coarse, detail, test, fb, annots, a.min_pairs)}
        row["score_s"] = round(time.perf_counter() - t2, 1)
        row["load"] = _load()
        res["rows"].append(row)
        print(f"{pt['spec']} ({'+'.join(fitted) or 'shipped codes'}): band {row['rmse_uv']:.1f} uV / PRDN "
              f"{row['prdn']:.2f} % at {row['tokens_per_second']:.1f} tok/s ({row['tokens_per_second_min']:.1f}-"
              f"{row['tokens_per_second_max']:.1f}); coarse only {row['coarse_only']['rmse_uv']:.1f} uV; repeat "
              f"{row['repeat']:.3f} at {row['coarse_rmse_uv']:.1f} uV window RMSE [{row['fit_s']:.0f}+"
              f"{row['score_s']:.0f} s]", flush=True)
        res["elapsed_s"] = round(time.perf_counter() - t0, 1)
        if a.out:
            write_json(a.out, res)
    if a.out:
        print(f"wrote {a.out}")
    if a.figure:
        save_figure(a.figure, res["rows"], a.coarse_study, a.rate_distortion_v2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
