"""Write a reference "generator" folder in the synthetic-folder format, to check eval/score.py end to end.

Launch::

    python eval/make_folder.py --source ecgsyn --n 200 --out runs/eval_inputs/ecgsyn
    python eval/make_folder.py --source ds2_heldout --n 200 --out runs/eval_inputs/ds2_heldout

``ecgsyn``: ECGSYN windows (``neurokit2.ecg_simulate``) with heart rates drawn from the detected heart
rates of DS1 windows. ``ds2_heldout``: real DS2 windows disjoint from the scoring reference of the same
``--n_real`` / ``--seed`` -- a "perfect generator" whose scores show what the metrics give two samples of
the same distribution. Both go through the same loader as ``lm/generate.py`` output
(``manifest.json`` + ``.npy`` + WFDB).
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError
from ecg2llm.tokenizer.splits import DS1, DS2


@dataclass
class MakeFolderConfig:
    source: str = "ecgsyn"  # ecgsyn | ds2_heldout
    out: str = "runs/eval_inputs/ecgsyn"
    n: int = 200
    seed: int = 1  # differs from the scoring seed, so ECGSYN draws differ from its reference row
    data_dir: str | None = None
    n_real: int = 500  # reference size to stay disjoint from (ds2_heldout)
    reference_seed: int = 0  # reference seed to stay disjoint from (ds2_heldout)
    wfdb: bool = True


def run(cfg: MakeFolderConfig):
    from ecg2llm.eval.data import real_windows
    from ecg2llm.eval.scorecard.metrics.physiology import beat_features
    from ecg2llm.eval.scorecard.references import ecgsyn_windows
    from ecg2llm.tokenizer.folder import write_folder

    if cfg.source == "ecgsyn":
        ds1 = real_windows(DS1, cfg.data_dir, n=max(cfg.n, 200), seed=cfg.seed + 2)
        ph = beat_features(ds1.x, ds1.fs)
        ws = ecgsyn_windows(cfg.n, ph["hr_bpm"][ph["valid"]], seed=cfg.seed)
        extra = {
            "generator": "ECGSYN via neurokit2.ecg_simulate(method='ecgsyn'), DS1-matched heart rates",
            "seed": cfg.seed,
            "heart_rates": ws.meta["heart_rates"],
        }
        names = None
    elif cfg.source == "ds2_heldout":
        ref = real_windows(DS2, cfg.data_dir, n=cfg.n_real, seed=cfg.reference_seed)
        ws = real_windows(DS2, cfg.data_dir, n=cfg.n, seed=cfg.seed, exclude=ref)
        extra = {
            "generator": f"held-out real DS2 windows, disjoint from the n_real={cfg.n_real}, "
            f"seed={cfg.reference_seed} reference",
            "seed": cfg.seed,
            "windows": [f"{r}@{s}" for r, s in zip(ws.records.tolist(), ws.starts.tolist(), strict=True)],
        }
        names = None
    else:
        raise ConfigError(f"--source must be ecgsyn or ds2_heldout, got {cfg.source!r}")
    write_folder(cfg.out, ws.x, ws.fs, names=names, wfdb=cfg.wfdb, extra=extra)
    return Path(cfg.out)


@run_main
def main(argv=None):
    cfg = parse_config(MakeFolderConfig, argv, description=__doc__)
    out = run(cfg)
    print(f"wrote {cfg.n} windows to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
