"""How should LM v3 produce each beat's detail tokens? Measured on the validation records (101, 112, 119).

Launch::

    python scripts/detail_study.py --store runs/store/beats_v3b --out docs/results/lm_v3_detail.json \\
        --save runs/detail_v3 [--steps 1500]

Trains the non-autoregressive detail head (:mod:`ecg2llm.lm.beat_detail`: an MLP over the coarse tokens of beats
i-2..i+2 and the RR tokens around them) on the DS1 training records of the beat store (MIT-BIH, every
training lead), then compares, on the validation records' MLII beats (their real RR and coarse tokens):

- ``head_mean``: per slot the code nearest the head's expected codeword (least squared error in expectation);
- ``head_argmax``: each detail slot's most likely value under the head;
- ``head_sample``: a draw from the head's distribution;
- ``prior_mode``: each slot's most frequent training value (what a detail-free LM would use);
- ``coarse_only``: no detail at all (the tokenizer's ``coarse_only`` decode).

Per option: detail-token accuracy, the head's bits per beat, and the RMSE (uV) of the decoded band against
the same beats decoded with their real detail tokens (the tokenizer round trip is not included: both
sides share coarse tokens and timeline).
"""
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError


@dataclass
class DetailStudyConfig:
    """Fields of ``scripts/detail_study.py``."""

    store: str = "runs/store/beats_v3b"
    tokenizer: str = "v3"
    out: str | None = None  # the results JSON (required)
    save: str | None = None  # folder whose detail/ receives the trained head
    load: str | None = None  # use the head in <folder>/detail instead of training one
    steps: int = 600
    batch: int = 16  # runs of --run beats per step
    run: int = 32
    seed: int = 0


@run_main
def main(argv=None):
    from ecg2llm.core.io import git_sha, write_json
    from ecg2llm.lm.beat_detail import SUBDIR, evaluate, load_detail, save_detail, train_detail
    from ecg2llm.lm.beat_layout import BeatLayout
    from ecg2llm.lm.beat_tokens import make_beat_tokens
    from ecg2llm.lm.beat_train import load_beat_tokenizer
    from ecg2llm.lm.beatstream import load_records

    a = parse_config(DetailStudyConfig, argv, description=__doc__)
    if not a.out:
        raise ConfigError("--out is required: the results JSON to write, e.g. docs/results/lm_v3_detail.json")
    if not Path(a.store).is_dir():
        raise ConfigError(f"--store {a.store}: no beat store there; build one with "
                          "`python lm/train.py --config configs/lm/v3.yaml` (it writes runs/store/beats_v3b)")
    torch.set_num_threads(1)
    tok = load_beat_tokenizer(a.tokenizer)
    records, meta = load_records(a.store)
    layout = BeatLayout.from_dict(meta["layout"])
    train = [r for r in records if r.split == "train" and r.db == "mitdb"]
    valid = [r for r in records if r.split == "valid"]
    t0 = time.perf_counter()
    head = load_detail(a.load) if a.load else train_detail(train, layout, steps=a.steps, batch=a.batch, n=a.run,
                                                                   seed=a.seed,
                                                                   codebooks=tok.codes()["detail"].codebooks)
    fit_s = time.perf_counter() - t0
    if a.save:
        save_detail(head, Path(a.save) / SUBDIR, {"valid": evaluate(head, valid, layout), "steps": a.steps})
    all_train = np.concatenate([r.detail for r in train])
    prior = np.array([np.bincount(all_train[:, j], minlength=layout.n_detail_levels).argmax()
                      for j in range(layout.n_detail)])
    res = {"command": "python scripts/detail_study.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "git_sha": git_sha(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "train_records": sorted({r.record for r in train}), "train_beats": int(len(all_train)),
           "valid_records": sorted({r.record for r in valid}), "fit_seconds": fit_s,
           "head": evaluate(head, valid, layout), "options": {}}
    for name in ("head_mean", "head_argmax", "head_sample", "prior_mode", "coarse_only"):
        sq, n, correct, count = 0.0, 0, 0, 0
        for r in valid:
            _, rr, co = layout.split_units(r.units)
            if name in ("head_argmax", "head_mean"):
                det = head.predict(rr[None], co[None], name[5:])[0]
            elif name == "head_sample":
                det = head.predict(rr[None], co[None], "sample", seed=a.seed)[0]
            else:
                det = np.broadcast_to(prior, r.detail.shape).copy()
            n_out = int(tok.timeline(np.zeros(len(rr), np.int8), rr)[2][-1])
            ref_bt, _ = make_beat_tokens(tok, rr, co, r.detail, n_out)
            got_bt, _ = make_beat_tokens(tok, rr, co, det, n_out)
            ref = tok.decode_beats(ref_bt)
            got = tok.decode_beats(got_bt, coarse_only=name == "coarse_only")
            m = min(len(ref), len(got))
            sq += float(((ref[:m] - got[:m]) ** 2).sum())
            n += m
            if name != "coarse_only":
                correct += int((det == r.detail).sum())
                count += det.size
        res["options"][name] = {"rmse_uv": 1000 * (sq / n) ** 0.5,
                                "detail_accuracy": correct / count if count else None}
    write_json(a.out, res)
    print({k: v for k, v in res["options"].items()}, res["head"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
