"""Does the texture prior make generated ECGs harder to tell from real ones, or only from the patients it was fitted on?

Launch::

    python scripts/texture_prior_check.py --sets "runs/gen/v3p_t1_s*" --max_sets 6 \\
        --out docs/results/texture_prior_check.json

Each set is a folder ``lm/generate.py`` wrote with an LM v3 (its ``beat_units.npy``: label, RR and coarse tokens of
every beat). The same beats are decoded again four ways, with the detail head's "mean" codes and each sample's
texture seed as ``lm/generate.py`` uses them: the texture bank alone (the decode before the prior), and a texture
state drawn from a prior fitted on (i) all LM training records, (ii) half A of them, (iii) half B (records in
alternating order). Each decode is judged by the scorecard's discriminator (``eval/score.py``'s scorer and
folds, 5 draws) twice: against real windows of half A's patients and against all training patients (the
headline's real side). A prior fitted on B and judged against A never saw those patients: if it reads as low as
the prior fitted on A, the gain is a better model of ECG texture, not a copy of the judged patients' noise.

Writes ``--out`` (per set and mean over sets) with the command, git SHA, date and machine load.
"""
from __future__ import annotations

import glob
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError


@dataclass
class PriorCheckConfig:
    """Fields of ``scripts/texture_prior_check.py``."""

    sets: str = "runs/gen/v3p_t1_s*"   # glob of lm/generate.py folders of one LM v3
    out: str = "docs/results/texture_prior_check.json"
    model: str = "default"             # the LM v3 that generated them (its tokenizer copy and detail head)
    max_sets: int = 6                  # the first this many folders (sorted)
    data_dir: str | None = None
    seconds: float = 30.0


def _shown(folder) -> str:
    """A model folder as the result file records it: relative to the repository when inside it."""
    p, repo = Path(folder).resolve(), Path(__file__).resolve().parents[1]
    return str(p.relative_to(repo)) if p.is_relative_to(repo) else str(folder)


def _units(folder: str) -> tuple[list, list]:
    u = np.load(os.path.join(folder, "beat_units.npy"))
    keep = [u[i, :, 1] >= 0 for i in range(len(u))]
    return ([u[i, m, 1].astype(np.int64) for i, m in enumerate(keep)],
            [u[i, m, 2:].astype(np.int64) for i, m in enumerate(keep)])


def decode_set(blm, folder: str, seed: int, seconds: float, prior) -> np.ndarray:
    """The folder's beats decoded by :meth:`BeatLM.decode` with ``lm/generate.py``'s texture seeds and the detail
    head's "mean" codes, with ``prior`` as the tokenizer's texture prior (None: the bank alone)."""
    from ecg2llm.lm.beat_generate import BeatSamples
    from ecg2llm.lm.decode_options import texture_seed

    tok = blm.tok
    saved, tok.texture_prior = tok.texture_prior, prior
    try:
        rr, co = _units(folder)
        det = [blm.detail.predict(r[None], c[None], mode="mean", seed=None)[0] for r, c in zip(rr, co, strict=True)]
        s = BeatSamples([np.full(len(r), "") for r in rr], rr, co, det, [None] * len(rr))
        x, _ = blm.decode(s, seconds, texture=True, seeds=[texture_seed(seed, i) for i in range(len(rr))])
        return x
    finally:
        tok.texture_prior = saved


@run_main
def main(argv=None):
    """Parse flags (:class:`PriorCheckConfig`), decode and judge each set; writes ``--out``; returns 0."""
    import json

    from ecg2llm.core.io import git_sha, write_json
    from ecg2llm.eval.score import ScoreConfig, scorer_settings
    from ecg2llm.eval.scorecard.scorer import Scorer
    from ecg2llm.lm.beat_generate import BeatLM
    from ecg2llm.lm.model import load_lm
    from ecg2llm.tokenizer.texture_prior import fit_texture_prior, measured_states, prior_records
    from ecg2llm.tokenizer.windowset import WindowSet

    a = parse_config(PriorCheckConfig, argv, description=__doc__)
    folders = sorted(glob.glob(a.sets))[: a.max_sets]
    if not folders:
        raise ConfigError(f"--sets {a.sets!r} matches no folder")
    missing = [f for f in folders if not os.path.isfile(os.path.join(f, "beat_units.npy"))]
    if missing:
        raise ConfigError(f"{missing[0]} has no beat_units.npy: is it an LM v3 folder of lm/generate.py?")
    model, folder = load_lm(a.model)
    blm = BeatLM.of_loaded(model, folder)
    if blm.detail is None or not blm.tok.has_texture:
        raise ConfigError(f"{a.model} needs a detail head and a tokenizer with texture.safetensors")
    t0 = time.time()
    recs = prior_records("train")
    half = {"A": recs[0::2], "B": recs[1::2]}
    blm.tok.texture_state = True
    states = {k: measured_states(blm.tok, v, a.data_dir, 30.0) for k, v in half.items()}
    fs = blm.tok.fs
    priors = {"bank alone": None, "prior (all training records)": fit_texture_prior(states["A"] + states["B"], fs),
              "prior (half A)": fit_texture_prior(states["A"], blm.tok.fs),
              "prior (half B)": fit_texture_prior(states["B"], blm.tok.fs)}
    cfg = parse_config(ScoreConfig, ["--out", "unused", *(["--data_dir", a.data_dir] if a.data_dir else [])])
    settings = scorer_settings(cfg)  # eval/score.py's defaults
    settings.training_data = str(folder)
    sc = Scorer(settings, verbose=False)
    cal = sc.calibration()
    xr, gr = cal.disc_real
    in_a = np.isin(np.asarray(gr).astype(str), half["A"])

    def disc(f, mask):
        return float(np.mean([cal.discriminate(f, seed=k, real=(xr[mask], gr[mask])) for k in range(5)]))

    rows = {}
    for fo in folders:
        man = json.loads(open(os.path.join(fo, "manifest.json")).read())
        seed = int(man["config"]["seed"])
        rows[fo] = {}
        for name, prior in priors.items():
            x = decode_set(blm, fo, seed, a.seconds, prior)
            w = x[:, : x.shape[1] // 3600 * 3600].reshape(-1, 3600)
            f = sc.features(WindowSet(x=w, fs=360.0, names=[f"w{i}" for i in range(len(w))], source=name))
            rows[fo][name] = {"vs_half_A": disc(f, in_a), "vs_all_training": disc(f, np.ones(len(gr), bool))}
            print(fo, name, rows[fo][name], flush=True)
    mean = {n: {k: float(np.mean([rows[fo][n][k] for fo in folders])) for k in ("vs_half_A", "vs_all_training")}
            for n in priors}
    write_json(a.out, {
        "command": "python scripts/texture_prior_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_sha": git_sha(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": list(os.getloadavg()), "model": _shown(folder), "halves": half,
        "real_windows": {"half_A": int(in_a.sum()), "all_training": int(len(gr))},
        "note": "discriminator accuracy (scorecard folds, mean of 5 draws); 0.5 = cannot tell. The prior fitted on "
                "half B never saw half A's patients.",
        "mean": mean, "sets": rows, "wall_seconds": time.time() - t0})
    print(json.dumps(mean, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
