"""Train on synthetic, test on real: a beat classifier trained on real DS1, on synthetic beats, and on both.

Launch (from the repo root)::

    python scripts/tstr.py --out runs/tstr --data_dir ../shared/data                      # shipped conditional LM
    python scripts/tstr.py --out runs/tstr --model runs/lm/tiny_cond/final --seeds 0,1,2,3,4
    # the committed result (docs/results/tstr.json, docs/tstr.md; classifier chosen by scripts/beat_cv.py):
    python scripts/tstr.py --out runs/tstr_v2 --data_dir ../shared/data --beat_sequences 96 --seeds 0,1,2,3,4 \
        --num_threads 1 --synthetic_dir runs/tstr_syn --cv_json runs/beat_cv/cv.json \
        --results_json docs/results/tstr.json --docs_md docs/tstr.md
    # arm (a) only (real DS1 -> real DS2; no LM, no generation): a new real-data classifier's DS2 score
    python scripts/tstr.py --out runs/tstr_real --data_dir ../shared/data --seeds 0,1,2,3,4 --num_threads 1 \
        --real_only true --results_json docs/results/tstr_real_only.json

What it does (details in :mod:`ecg2llm.eval.tstr.study`): generates beat- and rhythm-conditioned synthetic records
with a
conditional LM (WFDB + ``.atr`` labels), cuts labelled beats from real DS1, real DS2 and the synthetic
records, trains an AAMI N/S/V/F beat classifier (default: gradient-boosted trees on inter-patient
features, :mod:`ecg2llm.eval.tstr.strong_classifier`; ``--classifier cnn``: the former 1-D CNN) on (a) real DS1,
(b) synthetic only, (c) DS1 plus the
synthetic minority beats, (d) DS1 plus those synthetic minority beats a DS1-trained classifier agrees with
-- several seeds each -- and tests all on real DS2 (macro-F1, per-class Se/PPV);
measures how often a DS1-trained classifier agrees with the generated labels; scores each conditional set
against the real DS2 windows of its condition. Writes ``tstr.json``, ``tstr.md``, ``figures/`` and
``run_info.json`` into ``--out``. ~25 min on 2 CPU cores with the defaults.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import config_to_dict, parse_config
from ecg2llm.eval.tstr.study import TSTRConfig


@run_main
def main(argv=None):
    """Parse flags into :class:`ecg2llm.eval.tstr.study.TSTRConfig`, run the study, write the outputs, print the
    verdict."""
    from ecg2llm.core.errors import ConfigError
    from ecg2llm.core.io import ensure_writable_dir, write_run_info
    from ecg2llm.eval.tstr.report import write_outputs
    from ecg2llm.eval.tstr.study import run_study
    from ecg2llm.lm.model import resolve_model_dir

    cfg = parse_config(TSTRConfig, argv, description=__doc__)
    import json
    import os

    from ecg2llm.core.io import git_sha

    # the code that runs (a commit made while a long run goes on must not be recorded as its code), and the
    # machine's load: timings on shared cores mean little without it
    sha, load_start = git_sha(), os.getloadavg()

    if cfg.real_only:
        return _real_only(cfg, argv)

    folder = resolve_model_dir(cfg.model)
    conf = json.loads((folder / "config.json").read_text())
    if not conf.get("ecg_conditioning"):
        raise ConfigError(f"{folder} is not a conditional LM (no ecg_conditioning in its config.json); train "
                          f"one with `accelerate launch lm/train.py --config configs/lm/tiny_cond.yaml`")
    # LM v3 (beats): no sampler rule, labels are the model's draws; only the beats labelled c under beat:c count
    is_v3 = (conf.get("ecg_stream") or {}).get("kind") == "beats"
    if cfg.synthetic_minority == "auto":
        cfg = replace(cfg, synthetic_minority="requested" if is_v3 else "all")
    # the database before anything else: generation takes minutes, and beats are cut after it
    from ecg2llm.tokenizer.data import ensure_database
    from ecg2llm.tokenizer.splits import DS1, DS2

    ensure_database(cfg.data_dir, records=list(cfg.train_records or DS1) + list(cfg.test_records or DS2),
                    download=cfg.download)
    out = ensure_writable_dir(cfg.out)
    write_run_info(out, config_to_dict(cfg), model_dir=str(folder))
    from ecg2llm.lm.synthesize import GenerateConfig, generate_or_reuse

    def generate(folder, conditions, num_samples, seconds, seed, strength, guidance=None):
        """One synthetic set from the study's conditional LM (reused when an earlier run wrote the same).
        LM v3 reads no logit-bias strength (it has no sampler rule): its requests keep the default."""
        extra = {} if is_v3 else {"condition_strength": strength}
        gcfg = GenerateConfig(model=cfg.model, num_samples=num_samples, seconds=seconds, out=str(folder),
                              seed=seed, batch_size=cfg.batch_size, png=False, condition=list(conditions),
                              guidance=guidance if conditions else None, temperature=cfg.temperature,
                              label_guidance=cfg.label_guidance if conditions else None,
                              num_threads=cfg.num_threads, **extra)
        return generate_or_reuse(gcfg, reuse=cfg.reuse_synthetic, log=lambda m: print(f"[tstr] {m}"))

    if cfg.guidance_check:
        return _guidance_check(cfg, argv, generate, out, sha, load_start)
    result = run_study(cfg, generate)
    import shlex
    from datetime import datetime, timezone

    args = list(sys.argv[1:] if argv is None else argv)
    result.update({"command": "python scripts/tstr.py " + shlex.join(args), "git_sha": sha,
                   "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "load": _load(load_start)})
    write_outputs(result, out)
    g, arms = result["goal"], result["arms"]
    a, b, c = (arms[k]["macro_f1_mean"] for k in "abc")
    print(f"DS2 macro-F1: (a) real {a:.3f} ± {arms['a']['macro_f1_sd']:.3f} (S F1 {g['a_sveb_f1']:.3f}, "
          f"V F1 {g['a_veb_f1']:.3f}), (b) synthetic {b:.3f} ({g['b_over_a']:.2f} x a), (c) real + synthetic "
          f"{c:.3f} (c - a = {g['c_minus_a']:+.3f}, 2 sd(a) {g['two_sd_a']:.3f})"
          + (f", (d) real + agreed synthetic {arms['d']['macro_f1_mean']:.3f} (d - a = {g['d_minus_a']:+.3f})"
             if "d_minus_a" in g else "") + f"; report {out / 'tstr.md'}")
    return 0


def _load(start) -> dict:
    """The 1/5/15-minute load averages at the start and the end of the run, and the machine's CPU count."""
    import os

    return {"loadavg_start": [round(x, 2) for x in start], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count()}


def _guidance_check(cfg, argv, generate, out, sha, load_start) -> int:
    """``--guidance_check 1,2,3``: the guidance check alone (:func:`ecg2llm.eval.tstr.study.run_guidance_check`);
    writes ``<out>/tstr_guidance.json`` (and ``--results_json``)."""
    import shlex
    from datetime import datetime, timezone

    from ecg2llm.core.io import write_json
    from ecg2llm.eval.tstr.study import run_guidance_check

    result = run_guidance_check(cfg, generate)
    args = list(sys.argv[1:] if argv is None else argv)
    result.update({"command": "python scripts/tstr.py " + shlex.join(args), "git_sha": sha,
                   "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load": _load(load_start)})
    write_json(out / "tstr_guidance.json", result)
    if cfg.results_json:
        Path(cfg.results_json).parent.mkdir(parents=True, exist_ok=True)
        write_json(cfg.results_json, result)
    for g, r in result["guidance"].items():
        cells = ", ".join(f"{k} {v['share_of_beats']:.2f} labelled / "
                          f"{'n/a' if v['agreement'] is None else format(v['agreement'], '.2f')} agreed"
                          for k, v in r["sets"].items())
        print(f"guidance {g}: {cells}; mean agreement {r['mean_agreement']:.3f} ({r['seconds']:.0f} s)")
    print(f"chosen guidance {result['chosen']:g} ({result['rule']}); {out / 'tstr_guidance.json'}")
    return 0


def _real_only(cfg, argv) -> int:
    """``--real_only``: arm (a) alone; writes ``<out>/tstr_real_only.json`` (and ``--results_json``)."""
    import shlex
    from datetime import datetime, timezone

    from ecg2llm.core.io import ensure_writable_dir, git_sha, write_json, write_run_info
    from ecg2llm.eval.tstr.study import run_real_arm
    from ecg2llm.tokenizer.data import ensure_database
    from ecg2llm.tokenizer.splits import DS1, DS2

    ensure_database(cfg.data_dir, records=list(cfg.train_records or DS1) + list(cfg.test_records or DS2),
                    download=cfg.download)
    out = ensure_writable_dir(cfg.out)
    write_run_info(out, config_to_dict(cfg))
    result = run_real_arm(cfg)
    args = list(sys.argv[1:] if argv is None else argv)
    result.update({"command": "python scripts/tstr.py " + shlex.join(args), "git_sha": git_sha(),
                   "date": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    write_json(out / "tstr_real_only.json", result)
    if cfg.results_json:
        Path(cfg.results_json).parent.mkdir(parents=True, exist_ok=True)
        write_json(cfg.results_json, result)
    a, g = result["arms"]["a"], result["goal"]
    pc = a["per_class"]
    print(f"DS2 arm (a) real DS1: macro-F1 {a['macro_f1_mean']:.3f} ± {a['macro_f1_sd']:.3f}; SVEB F1 "
          f"{g['a_sveb_f1']:.3f} (Se {pc['S']['se']:.2f}, PPV {pc['S']['ppv']:.2f}), VEB F1 {g['a_veb_f1']:.3f}; "
          f"{result['seconds']['total']:.0f} s; {out / 'tstr_real_only.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
