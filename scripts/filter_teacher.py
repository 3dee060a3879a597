"""Keep only the teacher samples whose beats repeat: the filter of `v3-conditional`'s guidance distillation.

`v3-conditional` (``configs/lm/v3_distill_bc.yaml``, `default` fine-tuned) learns the label-guided sampler's
ectopic beats from that sampler's own samples (``scripts/lm_v3_teacher.sh`` writes them, then runs this).
Students distilled from every sample lost beat consistency in unconditional windows, and the windows that lost
it are the ones with many ectopic beats (`docs/results/lm_v3_distill_bc_windows.json`). The label-guided teacher
itself writes such windows: per 30-s window of its 120-s samples, the scorecard's beat consistency (median
Pearson r of each beat's QRS-T with the window's median beat, ``ecg2llm.eval.scorecard.clinical``) falls below
the real band pool's 1st percentile (0.714, `docs/results/planted.json`, ``window_thresholds``) in up to 74 of
128 samples (`beat:F`).
This script copies each teacher folder's ``manifest.json`` and ``beat_units.npy`` without the samples that have
such a window, so a student is distilled only from samples whose beats repeat as a real patient's do::

    python scripts/filter_teacher.py --src runs/distill/syn --out runs/distill/syn_bc \
        --min_consistency 0.714 --json docs/results/lm_v3_distill_teacher_filter.json

Only what ``LMTrainConfig.distill_dirs`` reads is written (no signals): the kept rows of ``beat_units.npy`` and the
manifest with its ``samples`` cut to them and a ``teacher_filter`` entry saying what was dropped and why.
``--min_v_repeat`` adds a second filter (a sample's V beats must repeat each other; the study
``configs/studies/lm_v3_distill/v3_distill_bcv.yaml``, not shipped).
"""
from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config


def window_consistency(signal: np.ndarray, fs: float, seconds: float = 30.0) -> np.ndarray:
    """Beat consistency of each whole ``seconds`` window of one signal (NaN where undefined)."""
    from ecg2llm.eval.scorecard.clinical import clinical_features

    n = int(round(seconds * fs))
    k = len(signal) // n
    if k == 0:
        raise ValueError(f"a {len(signal) / fs:.1f}-s sample holds no whole {seconds:g}-s window")
    return clinical_features(signal[: k * n].reshape(k, n), fs)["beat_consistency"]


def v_repeat(units: np.ndarray, v_id: int, max_gap: int = 10) -> float:
    """Mean share of equal coarse tokens between each V beat and the next V beat at most ``max_gap`` beats later
    (``v_repeat.py``'s measure; real DS2 0.499); NaN for a sample with no such pair."""
    u = units[(units >= 0).all(1)]
    iv = np.flatnonzero(u[:, 0] == v_id)
    eq = [float((u[a, 2:] == u[b, 2:]).mean()) for a, b in zip(iv[:-1], iv[1:]) if b - a <= max_gap]
    return float(np.mean(eq)) if eq else float("nan")


def filter_folder(src: Path, out: Path, min_consistency: float, min_v_repeat: float | None = None,
                  v_id: int | None = None) -> dict:
    from ecg2llm.core.io import write_json

    man = json.loads((src / "manifest.json").read_text())
    units = np.load(src / "beat_units.npy", allow_pickle=False)
    samples = man["samples"]
    if len(samples) != len(units):
        from ecg2llm.core.errors import ConfigError

        raise ConfigError(f"{src}: manifest.json lists {len(samples)} samples, beat_units.npy holds {len(units)}; "
                          "the folder is not one lm/generate.py wrote")
    fs = float(man["fs"])
    keep, worst = [], []
    for i, s in enumerate(samples):
        bc = window_consistency(np.load(src / s["npy"], allow_pickle=False).astype(np.float64), fs)
        w = float(np.nanmin(bc)) if np.isfinite(bc).any() else float("nan")
        worst.append(w)
        ok = bool(np.isfinite(bc).all() and w >= min_consistency)
        if ok and min_v_repeat is not None:
            vr = v_repeat(units[i], v_id)
            ok = bool(np.isnan(vr) or vr >= min_v_repeat)
        if ok:
            keep.append(i)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "beat_units.npy.tmp.npy"
    np.save(tmp, units[keep])
    tmp.replace(out / "beat_units.npy")
    man = dict(man, samples=[samples[i] for i in keep])
    man["teacher_filter"] = {"source": str(src), "min_window_consistency": min_consistency, "window_s": 30.0,
                             "min_v_repeat": min_v_repeat,
                             "kept": len(keep), "of": len(units), "kept_indices": keep}
    write_json(out / "manifest.json", man)
    w = np.asarray(worst)
    quantiles = {q: float(np.nanquantile(w, float(q))) for q in ("0.05", "0.25", "0.5")}
    return {"folder": str(src), "kept": len(keep), "of": len(units), "worst_window_consistency_quantiles": quantiles}


@dataclass
class FilterTeacherConfig:
    """Fields of ``scripts/filter_teacher.py``."""

    src: str = "runs/distill/syn"       # folder of teacher folders (scripts/lm_v3_teacher.sh writes them)
    out: str = "runs/distill/syn_bc"    # where the filtered folders go, one per teacher folder
    min_consistency: float = 0.714      # drop a sample with a 30-s window below this beat consistency (the real
    #                                     band pool's 1st percentile, docs/results/planted.json window_thresholds)
    min_v_repeat: float = 0.0           # > 0: also drop a sample whose V beats repeat each other less (mean share of
    #                                     equal coarse tokens between consecutive V beats; real DS2 0.499)
    model: str = "lm/pretrained/v3"     # the teacher LM (the id of its beat:V label, read with min_v_repeat)
    json: str = ""                      # write what was kept here


@run_main
def main(argv=None):
    """Filter every teacher folder under ``src`` into ``out``; returns 0."""
    from ecg2llm.core.errors import ConfigError
    from ecg2llm.core.io import git_sha, write_json

    a = parse_config(FilterTeacherConfig, argv, description=__doc__)
    src = Path(a.src)
    folders = sorted(p for p in src.iterdir() if (p / "beat_units.npy").is_file()) if src.is_dir() else []
    if not folders:
        raise ConfigError(f"--src {a.src} holds no teacher folder (manifest.json and beat_units.npy); write them "
                          "first: bash scripts/lm_v3_teacher.sh")
    v_id, min_v = None, (a.min_v_repeat if a.min_v_repeat > 0 else None)
    if min_v is not None:
        from ecg2llm.lm.beat_generate import spec_of_model
        from ecg2llm.lm.model import load_lm

        v_id = spec_of_model(load_lm(a.model)[0])[0].id_of("beat:V")
    rows = {}
    for p in folders:
        rows[p.name] = filter_folder(p, Path(a.out) / p.name, a.min_consistency, min_v, v_id)
        print(f"{p.name}: kept {rows[p.name]['kept']} of {rows[p.name]['of']}", flush=True)
    if a.json:
        write_json(a.json, {"command": "python " + " ".join(shlex.quote(x) for x in sys.argv), "git_sha": git_sha(),
                            "min_consistency": a.min_consistency, "min_v_repeat": min_v, "folders": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
