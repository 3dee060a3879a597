"""Benchmark the ECG LM: training tokens/s (and MFU on a GPU) and generation speed in ECG-seconds per second.

Launch::

    python scripts/bench_lm.py --out runs/bench                    # CPU: tiny training + default generation
    python scripts/bench_lm.py --out runs/bench --train_config configs/lm/small.yaml --device cuda

Training: the model of ``--train_config`` (built exactly as ``lm/train.py`` builds it, for the default
tokenizer's vocabulary) runs ``--train_steps`` AdamW steps on random token batches of the config's
``batch_size`` x ``context_length`` after ``--warmup`` untimed steps; bf16 autocast on CUDA (and
``torch.compile`` with ``--compile``). MFU = achieved FLOP/s / peak, with FLOPs per token
``6 N + 12 L d T`` (N non-embedding parameters plus the LM head, L layers, d width, T context: the
PaLM appendix B estimate) and the peak of ``--peak_tflops`` (default: 989 for an H100 SXM's dense bf16).

Generation: ``--model`` (default: the shipped LM) samples ``--gen_batch`` sequences of ``--gen_seconds``
seconds with :func:`lm.sampling.sample_tokens` (static KV cache) and decodes them to mV; ECG-s/s =
batch x seconds / wall time, sampling plus decoding. Output: ``<out>/bench_lm.json``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tokenizer.utils.cli import run_main  # noqa: E402
from tokenizer.utils.io import ensure_writable_dir, git_sha, versions, write_json  # noqa: E402


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_train(config: str, device: str, steps: int, warmup: int, compile_: bool, peak_tflops: float,
                batch_size: int | None) -> dict:
    """Tokens/s of optimizer steps of the config's model on random tokens (and MFU on CUDA)."""
    from lm.config import LMTrainConfig
    from lm.model import build_model, num_parameters, tokenizer_record
    from tokenizer.base import ECGTokenizer
    from tokenizer.utils.config import config_from_dict, load_yaml

    cfg = config_from_dict(LMTrainConfig, load_yaml(config))
    tok = ECGTokenizer.from_pretrained(cfg.tokenizer)
    model = build_model(cfg, {**tokenizer_record(tok), "source": cfg.tokenizer}).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    step_model = torch.compile(model) if compile_ else model
    b, t = int(batch_size or cfg.batch_size), cfg.context_length
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, tok.vocab_size, (b, t), generator=gen).to(device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)

    def one_step():
        with amp:
            loss = step_model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        one_step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    _sync(device)
    wall = time.perf_counter() - t0
    tok_s = steps * b * t / wall
    n_non_emb = num_parameters(model, exclude_embeddings=True)
    head = model.config.vocab_size * cfg.d_model  # the tied LM head still costs its matmul
    flops_per_token = 6 * (n_non_emb + head) + 12 * cfg.n_layer * cfg.d_model * t
    res = {"config": config, "device": device, "batch_size": b, "context_length": t, "steps": steps,
           "n_params": num_parameters(model), "n_params_non_embedding": n_non_emb,
           "precision": "bf16 autocast" if device == "cuda" else "fp32", "compile": compile_,
           "tokens_per_second": tok_s, "seconds_per_step": wall / steps,
           "flops_per_token": flops_per_token, "achieved_tflops": tok_s * flops_per_token / 1e12}
    if device == "cuda":
        res["gpu"] = torch.cuda.get_device_name()
        res["peak_tflops"] = peak_tflops
        res["mfu"] = res["achieved_tflops"] / peak_tflops
        res["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return res


def bench_generate(model_dir: str, device: str, batch: int, seconds: float, repeats: int) -> dict:
    """ECG-seconds generated (sampled and decoded to mV) per wall-clock second."""
    from lm.model import load_lm, load_tokenizer_for
    from lm.sampling import sample_tokens

    model, folder = load_lm(model_dir, device)
    tok = load_tokenizer_for(model.config, folder)
    n_tok = int(np.ceil(seconds * tok.tokens_per_second))
    sample_tokens(model, batch, 16, batch_size=batch, seed=0)  # warm-up (allocations, kernels)
    times = []
    for r in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        ids = sample_tokens(model, batch, n_tok, batch_size=batch, seed=r)
        _ = [tok.decode(row, None) for row in ids]
        _sync(device)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"model": str(folder), "device": device, "batch": batch, "seconds_per_sample": seconds,
            "tokens_per_sample": n_tok, "context_length": int(model.config.max_position_embeddings),
            "wall_seconds": times, "ecg_seconds_per_second": batch * seconds / best,
            "ecg_seconds_per_second_median": batch * seconds / float(np.median(times)),
            "tokens_per_second": batch * n_tok / best}


@run_main
def main(argv=None):
    """Run the training and generation benchmarks and write ``bench_lm.json``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--train_config", default="configs/lm/tiny.yaml")
    p.add_argument("--train_steps", type=int, default=10)
    p.add_argument("--train_batch_size", type=int, default=None, help="override the config's batch_size")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile the model for the training benchmark")
    p.add_argument("--peak_tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H100 SXM: 989)")
    p.add_argument("--model", default="default", help="LM for the generation benchmark")
    p.add_argument("--gen_batch", type=int, default=64)
    p.add_argument("--gen_seconds", type=float, default=30.0)
    p.add_argument("--gen_repeats", type=int, default=3)
    p.add_argument("--skip", default="", help="comma list of train,generate to skip")
    p.add_argument("--debug", action="store_true")
    a = p.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    skip = set(filter(None, a.skip.split(",")))
    res = {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "git_sha": git_sha(), "versions": versions()}
    if "train" not in skip:
        res["train"] = bench_train(a.train_config, device, a.train_steps, a.warmup, a.compile, a.peak_tflops,
                                   a.train_batch_size)
        print(f"train: {res['train']['tokens_per_second']:.0f} tokens/s on {device}"
              + (f", MFU {res['train']['mfu']:.1%}" if "mfu" in res["train"] else ""))
    if "generate" not in skip:
        res["generate"] = bench_generate(a.model, device, a.gen_batch, a.gen_seconds, a.gen_repeats)
        print(f"generate: {res['generate']['ecg_seconds_per_second']:.0f} ECG-s/s "
              f"(batch {a.gen_batch}, {a.gen_seconds:g} s each) on {device}")
    out = ensure_writable_dir(a.out)
    write_json(out / "bench_lm.json", res)
    print(f"wrote {out / 'bench_lm.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
