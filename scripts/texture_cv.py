"""Texture model selection on DS1 only: record-grouped cross-validation of the texture discriminator.

Launch::

    python scripts/texture_cv.py --tokenizer default --out runs/texture_cv/bank.json
    python scripts/texture_cv.py --tokenizer default --method gaussian --out runs/texture_cv/gaussian.json
    python scripts/texture_cv.py --tokenizer v3 --out runs/texture_cv/v3_bank.json

The 22 DS1 records (training and validation) are split into ``folds`` groups; for each group the texture
model is fitted on the other records' MLII and the held-out records are encoded and decoded with
``texture=True``. The discriminator of :mod:`ecg2llm.tokenizer.texture_check` (log spectrum + slope statistics of
10-s windows, logistic regression, 5 folds grouped by record) then scores all held-out windows against
their originals: the same test as the DS2 number, on records no fit saw, and DS2 untouched. Also reports
the score of feature subsets (spectrum bands, slope statistics), which tells what still gives it away.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError, TokenizerError
from ecg2llm.core.io import write_json
from ecg2llm.tokenizer.base import ECGTokenizer

BANDS_HZ = ((0, 20), (20, 45), (45, 75), (75, 100), (100, 140), (140, 181))


@dataclass
class TextureCVConfig:
    """Fields of ``scripts/texture_cv.py``."""

    tokenizer: str = "v2"           # fsq2 (v2) or beat (v3) tokenizer (its texture is refitted per fold)
    out: str | None = None          # JSON with the scores
    method: str = "bank"            # bank | gaussian
    folds: int = 5                  # record groups of DS1
    data_dir: str | None = None     # data root holding mitdb/
    num_threads: int = 2            # torch CPU threads


@run_main
def main(argv=None):
    """Parse flags (:class:`TextureCVConfig`), run the DS1 cross-validation, print and write JSON; returns 0."""
    import copy

    import numpy as np
    import torch

    from ecg2llm.tokenizer.evaluation import load_signals
    from ecg2llm.tokenizer.splits import inter_patient_split
    from ecg2llm.tokenizer.texture_check import discriminator_score, to_windows, window_features

    a = parse_config(TextureCVConfig, argv, description=__doc__)
    if a.method not in ("bank", "gaussian"):
        raise ConfigError(f"--method must be bank or gaussian, got {a.method!r}")
    torch.set_num_threads(a.num_threads)
    base = ECGTokenizer.from_pretrained(a.tokenizer)
    if base.tokenizer_type not in ("fsq2", "beat"):
        raise TokenizerError(f"{a.tokenizer} is a '{base.tokenizer_type}' tokenizer; texture needs 'fsq2' or 'beat'")
    if a.method == "gaussian" and base.tokenizer_type != "fsq2":
        raise ConfigError(f"--method gaussian is fsq2's; a '{base.tokenizer_type}' tokenizer takes --method bank")
    sp = inter_patient_split()
    records = [*sp.train, *sp.valid]
    sigs = load_signals(records, a.data_dir, fs=base.fs)
    real, fake, groups = [], [], []
    for k in range(a.folds):
        held = records[k::a.folds]
        tok = copy.deepcopy(base)
        train = [sigs[r] for r in records if r not in held]
        if a.method == "bank":
            from ecg2llm.tokenizer.texture_bank import fit_texture_bank

            tok.texture_bank, _ = fit_texture_bank(tok, train, progress=False)
        else:
            from ecg2llm.tokenizer.texture import fit_texture

            tok.texture_bank = None
            fit_texture(tok, train, progress=False)
        for r in held:
            x = sigs[r]
            ids, state = tok.encode(x, tok.fs)
            y = tok.decode(ids, state, texture=True, seed=records.index(r))
            real.append(window_features(to_windows(x, tok.fs), tok.fs))
            fake.append(window_features(to_windows(y, tok.fs), tok.fs))
            groups.append(np.full(len(real[-1]), records.index(r)))
        print(f"fold {k + 1}/{a.folds}: held out {', '.join(held)}", flush=True)
    R, F, G = np.vstack(real), np.vstack(fake), np.concatenate(groups)
    freqs = np.fft.rfftfreq(256, 1 / base.fs)
    out = {"method": a.method, "tokenizer": str(a.tokenizer), "records": records, "folds": a.folds,
           "score": discriminator_score(R, F, G)["score"], "subsets": {}}
    for lo, hi in BANDS_HZ:
        idx = np.where((freqs >= lo) & (freqs < hi))[0]
        out["subsets"][f"spectrum {lo}-{hi} Hz"] = discriminator_score(R[:, idx], F[:, idx], G)["score"]
    out["subsets"]["slope statistics"] = discriminator_score(R[:, 129:], F[:, 129:], G)["score"]
    print(f"DS1 {a.folds}-fold texture discriminator |acc - 0.5| = {out['score']:.3f} ({a.method})")
    for name, v in out["subsets"].items():
        print(f"  {name:22s} {v:.3f}")
    if a.out:
        write_json(a.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
