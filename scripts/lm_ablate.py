"""Short LM v2 recipe ablations: train each variant briefly, then score DS2 bits/token and rhythm regularity.

Every variant starts from ``configs/studies/lm_ablate/ablate_base.yaml`` (tiny LM, 30-s context, MLII, v2
layout) with the overrides of :data:`ABLATIONS`, trains the same number of tokens (``--tokens``), and is
scored by

- ``metrics.json``: DS2 (test) bits/token and the DS1-MLII bigram's on the same tiles (ratio = LM / bigram);
- :mod:`ecg2llm.lm.rhythm_check`: the share of generated 10-s windows with RR CV < 0.1 (wfdb XQRS), beside the
  same share on real DS2 windows (the reference of issue 17).

Results go to ``<out>/<name>/`` (a normal run dir) and one line per variant in ``<out>/results.jsonl``.

    python scripts/lm_ablate.py --runs ctx256,ctx1080 --out runs/ablate            # ~8 min per run, 1 thread
    python scripts/lm_ablate.py --out runs/ablate --table                           # the table of finished runs
    python scripts/lm_ablate.py --config my_ablate.yaml                             # the same fields as YAML
    python scripts/lm_ablate.py --reference runs/lm/v2_conditional/final            # regular share, median HR
    python scripts/lm_ablate.py --figure curves.png --chained runs/lm/v2_conditional_pre,runs/lm/v2_conditional

Each variant's LM config is ``configs/studies/lm_ablate/ablate_base.yaml`` composed with its overrides through
the same :func:`ecg2llm.core.config.parse_config` path as ``lm/train.py`` (no field is copied here).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError

BASE = "configs/studies/lm_ablate/ablate_base.yaml"
BOTH_LEADS = "[MLII,V1,V2,V4,V5]"
#: name -> (list of stages: each a list of CLI overrides; a later stage starts from the previous one's final/)
ABLATIONS: dict[str, list[list[str]]] = {
    "ctx256": [["--context_length", "256", "--batch_size", "34"]],
    "ctx1080": [[]],
    "dropout": [["--attention_dropout", "0.1"]],
    "leads": [["--leads", BOTH_LEADS]],
    "aug": [["--store", "runs/store/v2_mitdb_aug2", "--augment_views", "2"]],
    # pretrain on CinC 2017 + MIT-BIH for 60 % of the tokens, fine-tune on MIT-BIH DS1 for the rest
    "cinc": [["--sources", "[mitdb,cinc2017]", "--frac", "0.6"], ["--frac", "0.4", "--warmup_steps", "5"]],
    "cond": [["--conditioning", "true", "--condition_dropout", "0.1", "--store", "runs/store/v2_mitdb"]],
    # the three data ingredients together, staged as the shipped recipe: CinC + MIT-BIH (both leads, 2 views)
    # for 60 % of the tokens, then MIT-BIH alone (both leads, 2 views) for the rest
    "recipe": [["--sources", "[mitdb,cinc2017]", "--leads", BOTH_LEADS, "--store", "runs/store/v2_mitdb_aug2",
                "--augment_views", "2", "--frac", "0.6"],
               ["--leads", BOTH_LEADS, "--store", "runs/store/v2_mitdb_aug2", "--augment_views", "2",
                "--frac", "0.4", "--warmup_steps", "5"]],
}


def _split_frac(args: list[str]) -> tuple[list[str], float]:
    if "--frac" in args:
        i = args.index("--frac")
        return args[:i] + args[i + 2:], float(args[i + 1])
    return args, 1.0


def run_variant(name: str, out: Path, tokens: int, n_windows: int, threads: int) -> dict:
    import torch

    from ecg2llm.lm.config import LMTrainConfig
    from ecg2llm.lm.guidance import generated_windows
    from ecg2llm.lm.model import load_lm, load_tokenizer_for
    from ecg2llm.lm.request import GenerateConfig
    from ecg2llm.lm.rhythm_check import rhythm_stats
    from ecg2llm.lm.trainer import Trainer
    torch.set_num_threads(threads)
    t0 = time.time()
    prev = None
    for k, stage in enumerate(ABLATIONS[name]):
        over, frac = _split_frac(list(stage))
        run_dir = out / (name if k == len(ABLATIONS[name]) - 1 else f"{name}_stage{k}")
        argv = ["--config", BASE, *over, "--output_dir", str(run_dir), "--overwrite_output_dir", "true",
                "--num_threads", str(threads)]
        if prev is not None:
            argv += ["--init_from", str(prev)]
        cfg = parse_config(LMTrainConfig, argv)
        per_step = cfg.batch_size * cfg.context_length
        cfg.max_steps = max(1, int(round(tokens * frac / per_step)))
        cfg.eval_every = max(1, cfg.max_steps // 3)
        prev = Trainer(cfg).run()
    metrics = json.loads((out / name / "metrics.json").read_text())
    lm, folder = load_lm(out / name)
    tok = load_tokenizer_for(lm.config, folder)
    res = {"name": name, "stages": ABLATIONS[name], "tokens": tokens,
           "test_bits_per_token": metrics["test"]["bits_per_token"],
           "test_bits_per_second": metrics["test"].get("bits_per_second"),
           "test_bigram_bits_per_token": metrics["test"]["bigram_bits_per_token"],
           "val_bits_per_token": metrics["val"]["bits_per_token"],
           "ratio_vs_bigram": metrics["test"]["bits_per_token"] / metrics["test"]["bigram_bits_per_token"]}
    gen = rhythm_stats(generated_windows(lm, tok, n=n_windows, seed=0), tok.fs)
    res["regular_share"], res["median_hr_bpm"] = gen["regular_share"], gen["median_hr_bpm"]
    if name == "cond":  # what guidance buys on rhythm:N
        for g in (None, 0.0, 2.0):
            req = GenerateConfig(condition=["rhythm:N"], guidance=g, condition_strength=0.0, grammar=False)
            try:
                s = rhythm_stats(generated_windows(lm, tok, n=n_windows, seed=0, request=req), tok.fs)
                res[f"rhythmN_regular_share_g{g}"] = s["regular_share"]
            except ConfigError as e:  # an undertrained LM may draw labels only under strong guidance
                res[f"rhythmN_regular_share_g{g}"] = f"failed: {e}"
    res["minutes"] = (time.time() - t0) / 60
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")
    print(json.dumps(res), flush=True)
    return res


def _chained_rows(runs: list[Path]) -> list[tuple[int, dict]]:
    """``(tokens seen, log record)`` of runs trained one after the other (pretrain -> fine-tune)."""
    rows, offset = [], 0
    for r in runs:
        cfg = json.loads((r / "run_info.json").read_text())["config"]
        per_step = cfg["batch_size"] * cfg["context_length"]
        recs = [json.loads(line) for line in (r / "train_log.jsonl").read_text().splitlines()]
        rows += [(offset + x["step"] * per_step, x) for x in recs]
        offset += max(x["step"] for x in recs) * per_step
    return rows


def figure(out: Path, png: Path, chained: list[Path] | None = None) -> Path:
    """Training and validation bits/token against tokens seen, one line per variant (from train_log.jsonl);
    with ``chained`` (run dirs trained one after the other), one line through those runs instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    series = {}
    if chained:
        series[" -> ".join(Path(r).name for r in chained)] = [Path(r) for r in chained]
    else:
        for name, stages in ABLATIONS.items():
            runs = [out / (name if k == len(stages) - 1 else f"{name}_stage{k}") for k in range(len(stages))]
            if (runs[-1] / "train_log.jsonl").is_file():
                series[name] = runs
    for name, runs in series.items():
        rows = _chained_rows(runs)
        for ax, key in zip(axes, ("train/bits_per_token", "val/bits_per_token")):
            pts = [(t / 1e3, x[key]) for t, x in rows if key in x]
            if pts:
                ax.plot(*zip(*pts), label=name, marker="o" if key.startswith("val") else None, ms=3)
        if chained:  # where each later stage starts (fine-tuning), and the bigram of the validation tokens
            for k in range(1, len(runs)):
                edge = _chained_rows(runs[:k])[-1][0] / 1e3
                for ax in axes:
                    ax.axvline(edge, color="gray", ls=":", lw=1)
            big = [x["val/bigram_bits_per_token"] for _, x in rows if "val/bigram_bits_per_token" in x]
            if big:
                axes[1].axhline(big[-1], color="gray", ls="--", lw=1, label="bigram (validation)")
    for ax, title in zip(axes, ("train", "validation (DS1 records 101, 112, 119; MLII)")):
        ax.set_xlabel("training tokens (thousands)")
        ax.set_title(f"{title} bits/token")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("bits/token (36 tokens/s: x 36 = bits/s)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    return png


DESCRIBE = {
    "ctx256": "v1 context: 256 tokens (7 s), batch 34 (same tokens per step)",
    "ctx1080": "30-s context (1080 tokens), batch 8: the base",
    "dropout": "base + attention dropout 0.1",
    "leads": "base + both MIT-BIH leads (lead token)",
    "aug": "base + 2 augmented views per DS1 record",
    "cinc": "base, 60 % of tokens pretrained on CinC 2017 + MIT-BIH, 40 % fine-tuned on MIT-BIH",
    "cond": "base + rhythm/beat tokens, condition dropout 0.1",
    "recipe": "leads + aug + cinc together: 60 % CinC 2017 + MIT-BIH, 40 % MIT-BIH (both leads, 2 views)",
}


def table(out: Path) -> str:
    """The markdown table of ``<out>/results.jsonl`` (last line per variant)."""
    rows = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows[r["name"]] = r
    head = ("| variant | what | DS2 bits/token | DS2 bits/s | DS2 bigram | ratio | val bits/token | regular share "
            "(10-s, XQRS) | median HR | minutes |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name in ABLATIONS:
        if name not in rows:
            continue
        r = rows[name]
        bps = r.get("test_bits_per_second")
        if bps is None and (out / name / "metrics.json").is_file():  # rows written before the column existed
            bps = json.loads((out / name / "metrics.json").read_text())["test"].get("bits_per_second")
        lines.append(f"| {name} | {DESCRIBE[name]} | {r['test_bits_per_token']:.3f} | "
                     f"{'-' if bps is None else f'{bps:.0f}'} | "
                     f"{r['test_bigram_bits_per_token']:.3f} | {r['ratio_vs_bigram']:.3f} | "
                     f"{r['val_bits_per_token']:.3f} | {r['regular_share']:.3f} | {r['median_hr_bpm']:.0f} | "
                     f"{r['minutes']:.1f} |")
    return "\n".join(lines)


def reference(model: str = "v2") -> dict:
    """Regular-rhythm share of real DS2 MLII windows (6 per record) and of 128 windows of a saved LM."""
    from ecg2llm.lm.guidance import generated_windows
    from ecg2llm.lm.model import load_lm, load_tokenizer_for
    from ecg2llm.lm.rhythm_check import real_windows, rhythm_stats
    from ecg2llm.tokenizer.splits import DS2

    real = rhythm_stats(real_windows(DS2, n=132), 360.0)
    lm, folder = load_lm(model)
    tok = load_tokenizer_for(lm.config, folder)
    gen = rhythm_stats(generated_windows(lm, tok, n=128, seed=0), tok.fs)
    return {"real_ds2": {k: v for k, v in real.items() if k != "cv"},
            model: {k: v for k, v in gen.items() if k != "cv"}}


@dataclass
class AblateConfig:
    """Fields of ``scripts/lm_ablate.py`` (every field is a flag and a ``--config`` YAML key)."""

    runs: list[str] = field(default_factory=lambda: list(ABLATIONS))  # names from ABLATIONS, comma-separated
    out: str = "runs/ablate"        # one run dir per variant and results.jsonl
    tokens: int = 860_000           # training tokens per variant
    windows: int = 64               # generated 10-s windows for the rhythm check
    num_threads: int = 1            # torch CPU threads
    figure: str | None = None       # only draw the loss curves of --out (or of --chained) into this PNG
    chained: list[str] = field(default_factory=list)  # run dirs trained in turn (pretrain,fine-tune) for --figure
    table: bool = False             # only print the markdown table of --out
    reference: str | None = None    # only measure real DS2 and this LM (e.g. default)


@run_main
def main(argv=None):
    """Parse flags (:class:`AblateConfig`), run the named ablations one after the other (module docstring)."""
    a = parse_config(AblateConfig, argv, description=__doc__)
    if a.reference:
        print(json.dumps(reference(a.reference)))
        return 0
    if a.table:
        print(table(Path(a.out)))
        return 0
    if a.figure:
        print(figure(Path(a.out), Path(a.figure), [Path(r) for r in a.chained] or None))
        return 0
    os.environ.setdefault("WANDB_MODE", "disabled")
    out = Path(a.out)
    names = list(a.runs)
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise ConfigError(f"unknown ablation(s) {unknown}; known: {list(ABLATIONS)}")
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        run_variant(name, out, a.tokens, a.windows, a.num_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
