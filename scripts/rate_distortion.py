"""Rate-distortion study of ECG tokenizers on DS2 (inter-patient, MLII): JSON, a Markdown table, a plot.

Launch::

    python scripts/rate_distortion.py --out runs/rd                 # the full study (hours on 2 CPU cores)
    python scripts/rate_distortion.py --out runs/rd_quick --quick   # CI-scale smoke run (about a minute)
    python scripts/rate_distortion.py --config my_rd.yaml           # the same fields as YAML keys

Grid: ``n`` (samples per token) in {5, 10, 20} x vocabularies of about 256, 1024 and 4096 (FSQ levels
[8, 6, 5] = 240, [8, 5, 5, 5] = 1000, [8, 8, 8, 8] = 4096; every method in a cell uses the same vocabulary
size, so the same token rate and bits per token). Methods:

* ``fsq``: the contextual FSQ tokenizer, trained by ``tokenizer/train.py`` with the default config and
  ``--fsq_steps`` steps (shorter than the shipped default's training; said in each row's ``train``);
* ``fsq2``: tokenizer v2 (baseline in the state, band in the tokens), trained by ``tokenizer/train.py``
  from ``--fsq2_config`` with ``--fsq2_minutes`` of wall time per cell (the shipped default had 48); its
  baseline knots are side information at their entropy-coded rate on DS2 (about 13 bit/s). Scored, like
  every row, on the full signal ``decode(ids, state)``;
* ``seed``: the seed report's scalar autoencoder (text reading: one scalar per block of ``n``, uniform
  quantizer with ``vocab`` bins on [-5, 5]), trained here by :func:`train_seed` on DS1-train blocks, or
  loaded from ``--seed_dir/seed_n{n}_v{V}`` when given. It needs each 250-sample window's min and max to
  return mV: counted as 2 x 11 bits per window (31.7 bit/s) of side information;
* ``decimate_uniform``, ``decimate_mulaw``, ``chronos_meanscale``: the non-learned baselines of
  :mod:`ecg2llm.tokenizer.baselines` (Chronos' per-context scale counted as 16 bits per 512 tokens).

Every row is scored by :func:`ecg2llm.tokenizer.evaluation.evaluate_tokenizer` on the whole of each DS2 record
and carries the command that produced its model. Trained models and finished rows are cached under
``--out`` (``models/``, ``rows/``), so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import config_to_dict, parse_config
from ecg2llm.core.errors import ConfigError
from ecg2llm.core.io import (
    ensure_writable_dir,
    git_sha,
    versions,
    write_json,
    write_run_info,
    write_text,
)
from ecg2llm.tokenizer.base import ECGTokenizer
from ecg2llm.tokenizer.baselines import (
    ChronosMeanScaleConfig,
    ChronosMeanScaleTokenizer,
    DecimateMuLawConfig,
    DecimateMuLawTokenizer,
    DecimateUniformConfig,
    DecimateUniformTokenizer,
)
from ecg2llm.tokenizer.evaluation import evaluate_tokenizer, load_signals
from ecg2llm.tokenizer.metrics import MITDB_ADC_BITS
from ecg2llm.tokenizer.splits import inter_patient_split

REPO = Path(__file__).resolve().parents[1]
FSQ_LEVELS = {256: [8, 6, 5], 1024: [8, 5, 5, 5], 4096: [8, 8, 8, 8]}  # Mentzer et al. Table 1; 8^4
METHODS = ("fsq", "fsq2", "seed", "decimate_uniform", "decimate_mulaw", "chronos_meanscale")
SEED_WINDOW = 250  # samples per seed window (ecg2llm.tokenizer.windows)
SEED_WINDOW_BITS = 2 * MITDB_ADC_BITS  # min and max of each 250-sample window, at the ADC's resolution


@dataclass
class RateDistortionConfig:
    """Fields of ``scripts/rate_distortion.py`` (every field is a flag and a ``--config`` YAML key).

    The FSQ cells are trained from ``fsq_config`` with per-cell overrides (:func:`fsq_argv`), through the same
    config path as ``tokenizer/train.py``: no tokenizer field is copied here.
    """

    out: str  # output folder (models, rows, JSON, table, plot)
    data_dir: str | None = None  # data root holding mitdb/ ($ECG2LLM_DATA otherwise)
    quick: bool = False  # CI scale: n=10, vocab 256, a few steps, 20 s per record
    ns: list[int] = field(default_factory=lambda: [5, 10, 20])  # samples per token, comma-separated
    vocabs: list[int] = field(default_factory=lambda: [256, 1024, 4096])  # vocabulary sizes (FSQ_LEVELS keys)
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # from METHODS, comma-separated
    fsq_config: str = "configs/tokenizer/fsq_default.yaml"  # tokenizer/train.py config of the fsq cells
    fsq_steps: int = 3000  # training steps of each fsq cell
    fsq_eval_every: int = 0  # 0: the config's value
    fsq2_config: str = "configs/tokenizer/fsq2_default.yaml"  # tokenizer/train.py config of the fsq2 cells
    fsq2_minutes: float = 8.0  # wall-time budget of each fsq2 cell (its cosine schedule follows wall time)
    seed_steps: int = 3000  # training steps of each seed-autoencoder cell
    seed_dir: str | None = None  # folder with trained seed_n{n}_v{V} tokenizers to load
    test_seconds: float = 0.0  # first seconds of each DS2 record (0: all)
    threads: int = 2  # torch CPU threads


def train_seed(
    n: int, num_bins: int, train: list[np.ndarray], steps: int, seed: int = 0, batch_size: int = 1024, lr: float = 1e-3
):
    """Train the seed's scalar autoencoder on DS1-train blocks (its own normalization), straight-through.

    As in the report: 250-sample windows min-max normalized to [0, 1], blocks of ``n`` samples, MSE on
    the block, the fixed uniform quantizer ([-5, 5], ``num_bins``) in the loop with a straight-through
    gradient, Adam. Returns a :class:`~ecg2llm.tokenizer.seed_tokenizer.SeedTokenizer` in eval mode.
    """
    from ecg2llm.tokenizer.seed_tokenizer import SeedTokenizer, SeedTokenizerConfig
    from ecg2llm.tokenizer.windows import minmax_normalize, to_blocks, to_windows

    torch.manual_seed(seed)
    tok = SeedTokenizer(SeedTokenizerConfig(block_size=n, latent="scalar", num_bins=num_bins))
    model = tok.model.train()
    norm = np.concatenate([minmax_normalize(to_windows(x))[0] for x in train])  # (W, 250)
    blocks = torch.from_numpy(to_blocks(norm, n))  # (N, 1, n)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        for g in opt.param_groups:  # cosine decay: the last steps settle the quantized latent
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        xb = blocks[torch.randint(0, len(blocks), (batch_size,), generator=gen)]  # (B, 1, n)
        loss = torch.nn.functional.mse_loss(model(xb, quantize=True), xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return tok


def baseline(method: str, n: int, vocab: int) -> ECGTokenizer:
    """A non-learned baseline tokenizer at ``n`` samples per token with ``vocab`` codes."""
    if method == "decimate_uniform":
        return DecimateUniformTokenizer(DecimateUniformConfig(samples_per_token=n, num_bins=vocab))
    if method == "decimate_mulaw":
        return DecimateMuLawTokenizer(DecimateMuLawConfig(samples_per_token=n, num_bins=vocab))
    if method == "chronos_meanscale":
        return ChronosMeanScaleTokenizer(ChronosMeanScaleConfig(samples_per_token=n, num_bins=vocab))
    raise ValueError(method)


def fsq_argv(args, n: int, vocab: int, out_dir: Path) -> list[str]:
    """The ``tokenizer/train.py`` arguments that train the FSQ model of one cell."""
    levels = ",".join(str(v) for v in FSQ_LEVELS[vocab])
    argv = [
        "--config",
        args.fsq_config,
        "--samples_per_token",
        str(n),
        "--levels",
        f"[{levels}]",
        "--steps",
        str(args.fsq_steps),
        "--eval_test",
        "false",
        "--output_dir",
        str(out_dir),
        "--threads",
        str(args.threads),
    ]
    if args.fsq_eval_every:
        argv += ["--eval_every", str(args.fsq_eval_every)]
    if args.quick:
        argv += ["--valid_seconds", "20"]
    if args.data_dir:
        argv += ["--data_dir", str(args.data_dir)]
    return argv


def fsq2_argv(args, n: int, vocab: int, out_dir: Path) -> list[str]:
    """The ``tokenizer/train.py`` arguments that train the tokenizer-v2 model of one cell."""
    levels = ",".join(str(v) for v in FSQ_LEVELS[vocab])
    argv = ["--config", args.fsq2_config, "--samples_per_token", str(n), "--levels", f"[{levels}]",
            "--max_minutes", str(args.fsq2_minutes), "--fit_texture", "false", "--eval_test", "false",
            "--output_dir", str(out_dir), "--threads", str(args.threads)]
    if args.quick:
        argv += ["--steps", "20", "--eval_every", "10", "--valid_seconds", "20", "--cinc_records", "20",
                 "--cinc_holdout", "5", "--pool_cache", ""]
    if args.data_dir:
        argv += ["--data_dir", str(args.data_dir)]
    return argv


def baseline_side_bits(tok, test: dict) -> float:
    """Entropy-coded bit/s of an ``fsq2`` tokenizer's baseline knots on the test signals."""
    from ecg2llm.tokenizer.baseline import baseline_bits_per_second

    knots = np.concatenate([tok.estimate_baseline(np.asarray(x, np.float32)) for x in test.values()])
    rate = baseline_bits_per_second(knots, tok.fs, tok.hop, tok.config.baseline_step_mv)
    return float(rate.get("baseline_entropy_bits_per_second", rate["baseline_raw_bits_per_second"]))


def get_model(args, method: str, n: int, vocab: int, train: list[np.ndarray], out: Path, study_cmd: str,
              test: dict | None = None):
    """(tokenizer, side-information bit/s, command, training info) for one cell, training or loading it."""
    if method == "fsq2":
        import json

        from ecg2llm.tokenizer.training import fsq2 as fsq2_training

        run_dir = out / "models" / f"fsq2_n{n}_v{vocab}"
        argv = fsq2_argv(args, n, vocab, run_dir)
        command = "python tokenizer/train.py " + " ".join(argv)
        if not (run_dir / "tokenizer" / "model.safetensors").is_file():
            fsq2_training.run(parse_config(fsq2_training.TrainConfig, argv))
        info = json.loads((run_dir / "metrics.json").read_text())
        train_info = {k: info.get(k) for k in ("best_step", "steps_run", "train_seconds", "best_valid_band_rmse_uv")}
        tok = ECGTokenizer.from_pretrained(run_dir / "tokenizer")
        return tok, baseline_side_bits(tok, test or {}), command, train_info
    if method == "fsq":
        from ecg2llm.tokenizer.training import fsq as fsq_training

        run_dir = out / "models" / f"fsq_n{n}_v{vocab}"
        argv = fsq_argv(args, n, vocab, run_dir)
        command = "python tokenizer/train.py " + " ".join(argv)
        if not (run_dir / "tokenizer" / "model.safetensors").is_file():
            fsq_training.run(parse_config(fsq_training.TrainConfig, argv))
        import json

        info = json.loads((run_dir / "metrics.json").read_text())
        train_info = {
            k: info.get(k)
            for k in ("best_step", "steps_run", "train_seconds", "train_cpu_seconds", "best_valid_rmse_uv")
        }
        return ECGTokenizer.from_pretrained(run_dir / "tokenizer"), 0.0, command, train_info
    if method == "seed":
        src = Path(args.seed_dir) / f"seed_n{n}_v{vocab}" if args.seed_dir else out / "models" / f"seed_n{n}_v{vocab}"
        if (src / "model.safetensors").is_file():
            tok = ECGTokenizer.from_pretrained(src)
            command = study_cmd if not args.seed_dir else f"(loaded from {src})"
        elif args.seed_dir:
            raise FileNotFoundError(f"--seed_dir given but {src} holds no tokenizer")
        else:
            t0 = time.perf_counter()
            tok = train_seed(n, vocab, train, args.seed_steps)
            tok.save_pretrained(src)
            write_json(
                src.parent / f"seed_n{n}_v{vocab}.train.json",
                {"steps": args.seed_steps, "train_seconds": time.perf_counter() - t0},
            )
            command = study_cmd
        side = SEED_WINDOW_BITS * tok.fs / tok.config.window
        return tok, side, command, {"steps": args.seed_steps}
    tok = baseline(method, n, vocab)
    return tok, tok.side_info_bits_per_second, study_cmd, None


ROW_KEYS = (
    "rmse_uv",
    "prdn",
    "prd",
    "snr_db",
    "mse_seed_norm",
    "tokens_per_second",
    "vocab_size",
    "bits_per_token",
    "bits_per_second",
    "side_info_bits_per_second",
    "total_bits_per_second",
    "compression_ratio",
    "codes_used_fraction",
    "code_perplexity",
    "code_entropy_bits",
    "encode_s",
    "decode_s",
    "n_samples",
)


def markdown_table(rows: list[dict]) -> str:
    """The study as a Markdown table (commands listed below it, referenced by number)."""
    cmds: list[str] = []
    lines = [
        "| method | n | tok/s | vocab | bit/s | RMSE µV | PRDN % | SNR dB | MSE seed-norm | CR | codes used "
        "| perplexity | cmd |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["n"], r["vocab_size"], METHODS.index(r["method"]))):
        if r["command"] not in cmds:
            cmds.append(r["command"])
        bps = f"{r['bits_per_second']:.0f}" + (
            f" + {r['side_info_bits_per_second']:.1f}" if r["side_info_bits_per_second"] else ""
        )
        lines.append(
            f"| {r['method']} | {r['n']} | {r['tokens_per_second']:.0f} | {r['vocab_size']} | {bps} | "
            f"{r['rmse_uv']:.1f} | {r['prdn']:.2f} | {r['snr_db']:.1f} | {r['mse_seed_norm']:.5f} | "
            f"{r['compression_ratio']:.1f} | {100 * r['codes_used_fraction']:.1f} % | {r['code_perplexity']:.0f} | "
            f"[{cmds.index(r['command']) + 1}] |"
        )
    lines.append("")
    lines.append(
        "bit/s: token bits per second (+ side information the ids do not carry: the seed's per-window "
        "min/max, Chronos' per-context scale). CR = 360 x 11 bit/s over the total."
    )
    lines.append("")
    lines += [f"[{i + 1}] `{c}`" for i, c in enumerate(cmds)]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """RMSE (µV) and PRDN (%) against total bit/s; one line per method and n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    markers = {5: "o", 10: "s", 20: "^"}
    colors = dict(zip(METHODS, ("C3", "C5", "C0", "C2", "C1", "C4")))
    for ax, key, label in ((axes[0], "rmse_uv", "DS2 RMSE (µV)"), (axes[1], "prdn", "DS2 PRDN (%)")):
        for m in METHODS:
            for n in (5, 10, 20):
                sel = sorted(
                    [r for r in rows if r["method"] == m and r["n"] == n], key=lambda r: r["total_bits_per_second"]
                )
                if sel:
                    ax.plot(
                        [r["total_bits_per_second"] for r in sel],
                        [r[key] for r in sel],
                        marker=markers.get(n, "x"),
                        color=colors[m],
                        label=f"{m} n={n}",
                        alpha=0.85,
                    )
        if key == "rmse_uv":
            ax.axhline(25, color="k", ls="--", lw=0.8, label="goal 25 µV")
        else:
            ax.axhline(8, color="k", ls="--", lw=0.8, label="goal 8 %")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("bits per second (tokens x log2 vocab + side information)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2, loc="upper right")
    fig.suptitle("Rate-distortion on MIT-BIH DS2 (inter-patient, MLII)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    plt.close(fig)


@run_main
def main(argv=None):
    """Run (or resume) the study and write ``rate_distortion.{json,md,png}`` under ``--out``."""
    args = parse_config(RateDistortionConfig, argv, description=__doc__)  # bad values fail before any write
    study_cmd = "python scripts/rate_distortion.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.ns, args.vocabs = [10], [256]
        args.fsq_steps, args.seed_steps, args.fsq_eval_every = min(args.fsq_steps, 20), min(args.seed_steps, 20), 10
        args.test_seconds = args.test_seconds or 20.0
    torch.set_num_threads(args.threads)
    ns, vocabs, methods = list(args.ns), list(args.vocabs), list(args.methods)
    bad = [v for v in vocabs if v not in FSQ_LEVELS] + [m for m in methods if m not in METHODS]
    if bad:
        raise ConfigError(f"unknown vocab/method {bad}; vocabs {sorted(FSQ_LEVELS)}, methods {METHODS}")
    out = ensure_writable_dir(args.out)
    write_run_info(out, config_to_dict(args))  # the resolved config (defaults < YAML < flags)
    split = inter_patient_split()
    train = list(load_signals(split.train, args.data_dir).values()) if "seed" in methods else []
    test = load_signals(split.test, args.data_dir, seconds=args.test_seconds or None)
    rows, skipped = [], []
    cells = [(n, v, m) for n in ns for v in vocabs for m in methods]
    for i, (n, vocab, method) in enumerate(cells):
        row_file = out / "rows" / f"{method}_n{n}_v{vocab}.json"
        if row_file.is_file():
            import json

            rows.append(json.loads(row_file.read_text()))
            continue
        if method == "seed" and SEED_WINDOW % n:
            # The seed's DimReduction tiles its 250-sample window with blocks of n: n must divide 250.
            print(
                f"[{i + 1}/{len(cells)}] {method} n={n}: skipped (n does not divide the seed's "
                f"{SEED_WINDOW}-sample window)",
                flush=True,
            )
            skipped.append(
                {
                    "method": method,
                    "n": n,
                    "vocab_target": vocab,
                    "reason": f"n={n} does not divide the seed's {SEED_WINDOW}-sample window",
                }
            )
            continue
        print(f"[{i + 1}/{len(cells)}] {method} n={n} vocab~{vocab}", flush=True)
        tok, side, command, train_info = get_model(args, method, n, vocab, train, out, study_cmd, test)
        res = evaluate_tokenizer(tok, test, side)
        row = {
            "method": method,
            "n": n,
            "vocab_target": vocab,
            **{k: res[k] for k in ROW_KEYS},
            "config": tok.config_dict(),
            "command": command,
            "train": train_info,
            "per_record": res["per_record"],
        }
        write_json(row_file, row)
        rows.append(row)
        print(
            f"    RMSE {row['rmse_uv']:.1f} µV  PRDN {row['prdn']:.2f} %  {row['total_bits_per_second']:.0f} bit/s",
            flush=True,
        )
    study = {
        "rows": rows,
        "skipped": skipped,
        "test_records": list(split.test),
        "test_seconds": args.test_seconds or "all",
        "lead": "MLII",
        "split": split.as_dict(),
        "fsq_levels": FSQ_LEVELS,
        "quick": args.quick,
        "command": study_cmd,
        "git_sha": git_sha(),
        "versions": versions(),
    }
    write_json(out / "rate_distortion.json", study)
    notes = "".join(
        f"\nNo {k['method']} row at n={k['n']}: {k['reason']}."
        for k in {(k["method"], k["n"]): k for k in skipped}.values()
    )
    write_text(out / "rate_distortion.md", markdown_table(rows) + ("\n" + notes if notes else ""))
    plot(rows, out / "rate_distortion.png")
    print(f"wrote {out / 'rate_distortion.json'}, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
