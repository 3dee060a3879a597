"""The "any ECG" check of tokenizer v3 (issue 37) on a database it was not fitted on: CinC 2017 beside DS2.

Launch::

    python scripts/beat_cinc.py --tokenizer v3 --per_class 75 --out docs/results/beat_cinc2017.json

(data root: ``--data_dir`` or ``$ECG2LLM_DATA``).

The tokenizer v3 codes were fitted on MIT-BIH DS1 only (360 Hz Holter MLII and second leads). This round-trips
a seeded sample of the CinC 2017 training set (AliveCor handheld, lead I, 300 Hz; ``per_class`` recordings of
each label N normal, A atrial fibrillation, O other rhythm, ~ too noisy, drawn with ``seed``) at its native
300 Hz and scores the band exactly as DS2's figures are scored
(:func:`ecg2llm.tokenizer.robustness.band_errors`: input resampled to the tokenizer's rate, both 0.5-Hz
high-passed; RMSE pooled over samples, PRDN per recording averaged). Per class and for the whole sample:
band RMSE and PRDN, their ratio to DS2's (read from ``--ds2``, the fidelity result of the same tokenizer),
the share of the signal in fallback units, the share of 10-s segments coded at a gain below 1
(``state["gain"]``), the band's standard deviation, and the same scores with the segment-gain search off
(``--compare_gain_off``). The stratified draw gives the rare labels (AF, noisy) far more weight than the
database does; ``database_weighted`` weights the classes by their counts in ``REFERENCE.csv``.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError

CLASSES = ("N", "A", "O", "~")
CLASS_NAMES = {"N": "Normal", "A": "AF", "O": "Other", "~": "Noisy"}
FITTED_ON = "MIT-BIH DS1 minus 101, 112, 119, 208, MLII + second leads (tokenizer/pretrained/v3/README.md)"


@dataclass
class BeatCincConfig:
    """Fields of ``scripts/beat_cinc.py`` (every field is a flag and a ``--config`` YAML key)."""

    tokenizer: str = "v3"               # a beat (v3) tokenizer: shipped name or folder
    data_dir: str | None = None         # data root holding cinc2017/ ($ECG2LLM_DATA otherwise)
    per_class: int = 75                 # recordings drawn per label (all of a label if it has fewer)
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    seed: int = 0
    ds2: str = "docs/results/beat_v3_fidelity.json"  # DS2's band RMSE / PRDN (scripts/beat_fidelity.py)
    compare_gain_off: bool = True       # also score the sample with the segment-gain search off
    out: str | None = None              # JSON: summary per class, rows per recording

    def __post_init__(self):
        if self.per_class < 1:
            raise ConfigError(f"per_class must be >= 1, got {self.per_class}")
        bad = [c for c in self.classes if c not in CLASSES]
        if bad or not self.classes:
            raise ConfigError(f"classes must be a non-empty subset of {list(CLASSES)}, got {self.classes}")


def draw(labels: dict[str, str], classes, per_class: int, seed: int) -> dict[str, list[str]]:
    """``{label: sorted records}``: ``per_class`` recordings of each label, drawn without replacement."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for c in classes:
        recs = sorted(r for r, lab in labels.items() if lab == c)
        pick = rng.choice(len(recs), size=min(per_class, len(recs)), replace=False) if recs else []
        out[c] = sorted(recs[int(i)] for i in pick)
    return out


def ds2_reference(path: str | Path) -> dict:
    """DS2's band RMSE / PRDN from a ``scripts/beat_fidelity.py`` result."""
    import json

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--ds2 {p}: no such file; run scripts/beat_fidelity.py first")
    d = json.loads(p.read_text())
    try:
        return {"rmse_uv": float(d["ds2"]["rmse_uv"]), "prdn": float(d["ds2"]["prdn"]), "file": str(path),
                "git_sha": d.get("git_sha"), "weights_hash": (d.get("tokenizer") or {}).get("weights_hash")}
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"--ds2 {p}: expected a scripts/beat_fidelity.py result with ds2.rmse_uv and ds2.prdn") \
            from None


def score(tok, signals: dict, fs: float) -> dict:
    """Band errors (:func:`band_errors`) plus, per recording, fallback share, gain-segment share, band std."""
    import numpy as np

    from ecg2llm.tokenizer.baseline import band_filter
    from ecg2llm.tokenizer.beat_layout import FALLBACK
    from ecg2llm.tokenizer.robustness import band_errors

    res = band_errors(tok, signals, fs=fs)
    for name, x in signals.items():
        bt = tok.encode_beats(x, fs)
        lens = np.minimum(bt.end, bt.state["n_samples"]) - bt.start
        fb = float(np.clip(lens[bt.kind == FALLBACK], 0, None).sum() / max(bt.state["n_samples"], 1))
        lv = np.asarray(bt.state.get("gain", []))
        n_seg = -(-bt.state["n_samples"] // tok.gain_segment_n) if tok.gain_segment_n else 1
        res["per_record"][name].update(fallback_share=fb, gain_segment_share=float(np.count_nonzero(lv) / n_seg),
                                       band_std_uv=1000 * float(np.std(band_filter(x, fs))),
                                       seconds=len(x) / fs)
    return res


def summarize(res: dict, groups: dict[str, list[str]], ds2: dict, prevalence: dict | None = None) -> dict:
    """Per class and overall: pooled RMSE, mean PRDN, ratios to DS2, fallback and gain shares; with
    ``prevalence`` (``{label: count}`` in the database), also the classes weighted by it (RMSE as the root
    of the weighted mean square, PRDN as the weighted mean)."""
    import math

    import numpy as np

    out = {}
    for name, recs in {**{CLASS_NAMES[c]: r for c, r in groups.items()}, "all": sum(groups.values(), [])}.items():
        rows = [res["per_record"][r] for r in recs]
        if not rows:
            continue
        w = np.array([r["seconds"] for r in rows])
        rmse = math.sqrt(float(np.sum(w * np.array([r["rmse_uv"] for r in rows]) ** 2) / w.sum()))
        prdn = float(np.mean([r["prdn"] for r in rows]))
        out[name] = {"recordings": len(rows), "rmse_uv": rmse, "prdn": prdn,
                     "prdn_median": float(np.median([r["prdn"] for r in rows])),
                     "rmse_ratio_to_ds2": rmse / ds2["rmse_uv"], "prdn_ratio_to_ds2": prdn / ds2["prdn"],
                     "fallback_share": float(np.sum(w * np.array([r["fallback_share"] for r in rows])) / w.sum()),
                     "gain_segment_share": float(np.mean([r["gain_segment_share"] for r in rows])),
                     "band_std_uv_median": float(np.median([r["band_std_uv"] for r in rows]))}
    if prevalence:  # the classes weighted as in the whole database (the stratified draw over-weights the rare ones)
        cls = [CLASS_NAMES[c] for c in groups if CLASS_NAMES[c] in out and prevalence.get(c)]
        w = np.array([float(prevalence[c]) for c in groups if CLASS_NAMES[c] in out and prevalence.get(c)])
        if len(cls):
            w = w / w.sum()
            rmse = math.sqrt(float(sum(wi * out[c]["rmse_uv"] ** 2 for wi, c in zip(w, cls))))
            prdn = float(sum(wi * out[c]["prdn"] for wi, c in zip(w, cls)))
            out["database_weighted"] = {"weights": dict(zip(cls, w.tolist())), "rmse_uv": rmse, "prdn": prdn,
                                        "rmse_ratio_to_ds2": rmse / ds2["rmse_uv"],
                                        "prdn_ratio_to_ds2": prdn / ds2["prdn"]}
    return out


@run_main
def main(argv=None):
    """Parse flags (:class:`BeatCincConfig`), draw, round-trip, print, write JSON; returns 0."""
    import os

    from tqdm.auto import tqdm

    from ecg2llm.core.io import git_sha, write_json
    from ecg2llm.lm.corpora import read_cinc2017, read_cinc2017_labels
    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer

    a = parse_config(BeatCincConfig, argv, description=__doc__)
    ds2 = ds2_reference(a.ds2)
    tok = BeatTokenizer.from_pretrained(a.tokenizer)
    labels = read_cinc2017_labels(a.data_dir)
    groups = draw(labels, a.classes, a.per_class, a.seed)
    prevalence = {c: sum(v == c for v in labels.values()) for c in a.classes}
    t0 = time.time()
    signals, fs = {}, None
    for rec in tqdm(sum(groups.values(), []), desc="cinc2017", unit="recording"):
        r = read_cinc2017(rec, a.data_dir)
        if fs is not None and r.fs != fs:
            raise ConfigError(f"CinC 2017 recording {rec} is at {r.fs} Hz, the others at {fs} Hz")
        signals[rec], fs = r.signal, r.fs
    res = score(tok, signals, fs)
    out = {"v3": summarize(res, groups, ds2, prevalence)}
    rows = {"v3": res["per_record"]}
    if a.compare_gain_off:
        tok.config.gain_segment_s, tok.gain_segment_n = 0.0, 0
        off = score(tok, signals, fs)
        out["v3_gain_off"] = summarize(off, groups, ds2, prevalence)
        rows["v3_gain_off"] = off["per_record"]
    print(f"DS2 MLII (from {a.ds2}): band RMSE {ds2['rmse_uv']:.1f} uV, PRDN {ds2['prdn']:.2f} %")
    for variant, summ in out.items():
        for name, s in summ.items():
            if "recordings" not in s:
                print(f"{variant:12s} {name}: RMSE {s['rmse_uv']:.1f} uV ({s['rmse_ratio_to_ds2']:.2f}x)  PRDN "
                      f"{s['prdn']:.2f} % ({s['prdn_ratio_to_ds2']:.2f}x)")
                continue
            print(f"{variant:12s} {name:7s} n={s['recordings']:3d} RMSE {s['rmse_uv']:6.1f} uV "
                  f"({s['rmse_ratio_to_ds2']:.2f}x)  PRDN {s['prdn']:6.2f} % ({s['prdn_ratio_to_ds2']:.2f}x)  "
                  f"fallback {s['fallback_share']:.3f}  gain segments {s['gain_segment_share']:.3f}")
    if a.out:
        cmd = "python scripts/beat_cinc.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_json(a.out, {"command": cmd, "git_sha": git_sha(),
                           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "machine": {"load_average": list(os.getloadavg())},
                           "tokenizer": str(a.tokenizer), "weights_hash": tok.weights_hash,
                           "tokenizer_fitted_on": FITTED_ON,
                           "fs": fs, "per_class": a.per_class, "seed": a.seed, "ds2": ds2, "prevalence": prevalence,
                           "recordings": groups, "summary": out, "rows": rows, "elapsed_s": time.time() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
