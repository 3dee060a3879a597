"""Reproduce the seed report's Table 2 and Figures 1-5, with honest splits and token rates.

Launch::

    python scripts/reproduce_seed.py --out runs/seed_repro --quick      # <= 10 min on 2 CPU cores
    python scripts/reproduce_seed.py --out runs/seed_repro              # the full run (all windows)
    python scripts/reproduce_seed.py --config my_repro.yaml             # the same fields as YAML keys

One row per (block size n, latent reading, quantized or not, split kind): the seed's MSE/MAE on
[0, 1]-normalized windows, PRDN and RMSE in uV (mV reconstructions using the per-window min/max as side
information), tokens/s and bits/s. ``inter_patient`` = trained on DS1 (early-stopped on held-out DS1
records), tested on DS2 - the numbers that count; ``intra_record`` = first 80 % / last 20 % of record 100,
only to mirror the seed. Unquantized rows count each latent value as a float32 (32 bits).
Writes ``table2.json``, ``table2.md`` and ``figure{1..5}_*.png`` into ``--out``.
"""
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import config_to_dict, parse_config
from ecg2llm.core.io import ensure_writable_dir, write_json, write_run_info, write_text
from ecg2llm.tokenizer.seed_tokenizer import SeedTokenizer, SeedTokenizerConfig
from ecg2llm.tokenizer.training.seed import TrainConfig, evaluate, fit, split_windows

BLOCK_SIZES = (250, 125, 50, 25, 10, 5, 2)
READINGS = ("scalar", "table1")
SEED_TABLE2 = {250: 0.550570, 125: 0.254592, 50: 0.082695, 25: 0.011730, 10: 0.000356, 5: 0.000086, 2: 0.000009}


@dataclass
class ReproduceSeedConfig:
    """Fields of ``scripts/reproduce_seed.py`` (every field is a flag and a ``--config`` YAML key)."""

    out: str                        # output folder
    quick: bool = False             # subsampled windows, few epochs (<= 10 min on 2 cores)
    data_dir: str | None = None     # data root containing mitdb/ ($ECG2LLM_DATA otherwise)
    splits: list[str] = field(default_factory=lambda: ["inter_patient", "intra_record"])  # split kinds
    block_sizes: list[int] = field(default_factory=lambda: list(BLOCK_SIZES))  # samples per token n
    seed: int = 0


def train_config(args: ReproduceSeedConfig, split: str, n: int, latent: str) -> TrainConfig:
    """The seed trainer's config of one model: the study's data_dir and seed, its split, n and reading."""
    quick = dict(max_windows_per_record=150, eval_max_windows_per_record=100, epochs=8, patience=3) \
        if args.quick else dict(epochs=12, patience=3, eval_max_windows_per_record=0)
    # about the same number of optimizer steps per epoch for every block size (small n = many blocks)
    batch = 256 if n >= 10 else (1024 if n == 5 else 2048)
    return TrainConfig(block_size=n, latent=latent, split=split, data_dir=args.data_dir, seed=args.seed,
                       batch_size=batch, **quick)


@run_main
def main(argv=None):
    """Parse flags (:class:`ReproduceSeedConfig`), train and score every row, write the table and figures."""
    args = parse_config(ReproduceSeedConfig, argv, description=__doc__)  # bad values fail before any write
    splits, sizes = list(args.splits), list(args.block_sizes)
    out = ensure_writable_dir(args.out)
    write_run_info(out, config_to_dict(args))
    rows, examples, t_start = [], {}, time.perf_counter()
    for split in splits:
        base = train_config(args, split, 10, "scalar")
        data = split_windows(base)  # windows shared by every model of this split kind
        print(f"[{split}] windows: " + ", ".join(f"{k} {len(v)}" for k, v in data.items()))
        for latent in READINGS:
            for n in sizes:
                cfg = train_config(args, split, n, latent)
                tok = SeedTokenizer(SeedTokenizerConfig(block_size=n, latent=latent))
                t0 = time.perf_counter()
                _, best_epoch = fit(tok, data["train"], data["valid"], cfg, progress=False)
                secs = time.perf_counter() - t0
                for q in (False, True):
                    m = evaluate(tok, data["test"], quantize=q)
                    rows.append({"split": split, "block_size": n, "latent": latent, "quantized": q,
                                 "mse": m["mse"], "mae": m["mae"], "prdn": m["prdn"], "rmse_uv": m["rmse_uv"],
                                 "snr_db": m["snr_db"], "tokens_per_second": m["tokens_per_second"],
                                 "bits_per_second": m["bits_per_second"],
                                 "side_info_bits_per_second": m["side_info_bits_per_second"],
                                 "seed_table2_mse": SEED_TABLE2.get(n), "best_epoch": best_epoch,
                                 "train_seconds": round(secs, 1)})
                r = rows[-1]
                print(f"[{split}] n={n:3d} {latent:6s}: quantized MSE {r['mse']:.6f}  PRDN {r['prdn']:.1f} %  "
                      f"{r['tokens_per_second']:g} tok/s  ({secs:.0f} s)")
                if split == splits[0] and latent == "table1":
                    examples[n] = tok
                if split == splits[0] and latent == "scalar" and n == 10:
                    examples["scalar10"] = tok
        if split == splits[0]:
            test_windows = data["test"]
    elapsed = time.perf_counter() - t_start
    write_json(out / "table2.json", {"quick": args.quick, "seconds": round(elapsed, 1), "rows": rows})
    write_text(out / "table2.md", to_markdown(rows, args, elapsed))
    make_figures(out, test_windows, examples)
    print(f"wrote {out / 'table2.md'} and figures in {elapsed / 60:.1f} min")
    return 0


def to_markdown(rows, args, elapsed) -> str:
    cmd = "python scripts/reproduce_seed.py --out " + str(args.out) + (" --quick" if args.quick else "")
    lines = [f"Command: `{cmd}` ({elapsed / 60:.1f} min). MSE/MAE on the seed's [0, 1] windows; PRDN and RMSE "
             "on the mV reconstruction (per-window min/max as side information, "
             f"{2 * 32 * 360 / 250:.2f} bit/s, not counted in bits/s). Unquantized = float32 latents.", ""]
    for split in dict.fromkeys(r["split"] for r in rows):
        label = "DS2, inter-patient (trained on DS1)" if split == "inter_patient" else \
            "intra-record (record 100, first 80 % / last 20 %; seed-mirroring only)"
        lines += [f"### {label}", "",
                  "| n | latent | quantized | MSE | seed Table 2 | MAE | PRDN % | RMSE µV | tokens/s | bits/s |",
                  "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if r["split"] != split:
                continue
            lines.append(f"| {r['block_size']} | {r['latent']} | {'yes' if r['quantized'] else 'no'} | "
                         f"{r['mse']:.6f} | {r['seed_table2_mse'] if not r['quantized'] else ''} | {r['mae']:.4f} | "
                         f"{r['prdn']:.1f} | {r['rmse_uv']:.1f} | {r['tokens_per_second']:g} | "
                         f"{r['bits_per_second']:g} |")
        lines.append("")
    return "\n".join(lines)


def make_figures(out, windows, examples) -> None:
    """Figures like the seed's: 1 a window, 2 reconstructions per n, 3/4 latent quantization, 5 tokenizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from ecg2llm.tokenizer.quantize import UniformQuantizer
    from ecg2llm.tokenizer.training.seed import reconstruct_mv
    from ecg2llm.tokenizer.windows import minmax_normalize, to_blocks

    w = windows[len(windows) // 2: len(windows) // 2 + 1]  # (1, 250) mV
    norm = minmax_normalize(w)[0][0]
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(norm, lw=1.2)
    ax.set(title="Figure 1 - a min-max normalized 250-sample window (DS2)", xlabel="sample", ylabel="[0, 1]")
    fig.tight_layout(), fig.savefig(out / "figure1_window.png", dpi=120), plt.close(fig)

    sizes = [n for n in BLOCK_SIZES if n in examples]
    fig, axes = plt.subplots(len(sizes), 1, figsize=(8, 1.6 * len(sizes)), sharex=True)
    for ax, n in zip(np.atleast_1d(axes), sizes):
        rec = (reconstruct_mv(examples[n].model, w, n, False)[0] - w.min()) / np.ptp(w)
        ax.plot(norm, lw=1, label="original"), ax.plot(rec, lw=1, label=f"n={n}")
        ax.legend(loc="upper right", fontsize=7)
    np.atleast_1d(axes)[0].set_title("Figure 2 - reconstructions by block size (Table 1 reading, unquantized)")
    fig.tight_layout(), fig.savefig(out / "figure2_block_sizes.png", dpi=120), plt.close(fig)

    tok = examples.get("scalar10")
    if tok is not None:
        blocks = torch.from_numpy(to_blocks(minmax_normalize(windows[:200])[0], 10))
        with torch.inference_mode():
            z = tok.model.net.encode(blocks).reshape(-1).numpy()[:300]
        for idx, (lo, hi, name) in enumerate([(float(z.min()), float(z.max()), "its true bounds"),
                                              (-5.0, 5.0, "[-5, 5] (the report's choice)")]):
            q = UniformQuantizer(256, lo, hi if hi > lo else lo + 1e-6)
            zq = q.dequantize(q.quantize(torch.from_numpy(z))).numpy()
            fig, ax = plt.subplots(figsize=(8, 3))
            ax.plot(z, lw=1, label="latent"), ax.plot(zq, lw=1, ls="--", label="quantized, dequantized")
            ax.set(title=f"Figure {3 + idx} - scalar latents (n=10) quantized with 256 bins on {name}",
                   xlabel="block", ylabel="latent")
            ax.legend(fontsize=7)
            fig.tight_layout(), fig.savefig(out / f"figure{3 + idx}_quantize_{'true' if idx == 0 else 'pm5'}.png",
                                            dpi=120), plt.close(fig)
        x = windows[len(windows) // 2: len(windows) // 2 + 4].reshape(-1)
        ids, state = tok.encode(x, 360.0)
        fig, ax = plt.subplots(figsize=(9, 3))
        ax.plot(x, lw=1, label="original (mV)"), ax.plot(tok.decode(ids, state), lw=1, label="tokenizer round trip")
        ax.set(title="Figure 5 - seed tokenizer (n=10, scalar, 36 tokens/s) on DS2", xlabel="sample", ylabel="mV")
        ax.legend(fontsize=7)
        fig.tight_layout(), fig.savefig(out / "figure5_tokenizer.png", dpi=120), plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
