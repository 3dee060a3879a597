"""Encode / decode throughput of a tokenizer over all DS2 MLII signals (samples per second), as JSON.

Launch::

    python scripts/bench_tokenizer.py --tokenizer default --out runs/bench/tokenizer_default.json
    python scripts/bench_tokenizer.py --tokenizer runs/tok/fsq/tokenizer --threads 1 --repeats 5

Each DS2 record (22 x 650,000 samples at 360 Hz) is encoded and decoded whole, through the public
``encode`` / ``decode`` (which batch a record's overlapping windows, ``torch.inference_mode``). Figures:

* ``*_samples_per_s``: samples / wall-clock seconds, best of ``--repeats`` passes (median also kept);
* ``*_samples_per_cpu_s``: samples / CPU seconds of this process. On a machine shared with other jobs
  the wall clock includes time spent waiting for a core; CPU time does not, so
  ``cpu_samples_per_s * threads`` is what the same code would do on ``threads`` dedicated cores (it
  assumes perfect scaling across threads, so it is an upper bound; compare with a ``--threads 1`` run).
* ``load_average``: ``os.getloadavg()`` before and after: read the wall-clock figures against it.

On CUDA (``--device cuda``, or ``auto`` when a GPU is visible) the same passes run with the model on
the GPU (numpy in and out, as a caller would use it), synchronized before each clock read.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tokenizer.base import ECGTokenizer  # noqa: E402
from tokenizer.evaluation import load_signals  # noqa: E402
from tokenizer.splits import DS2  # noqa: E402
from tokenizer.utils.cli import run_main  # noqa: E402
from tokenizer.utils.io import git_sha, versions, write_json  # noqa: E402


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_device(tok: ECGTokenizer, signals: list[np.ndarray], device: str, repeats: int) -> dict:
    """Time encode and decode of every signal, ``repeats`` passes after one warm-up pass."""
    if hasattr(tok, "to"):
        tok.to(device)
    total = sum(len(x) for x in signals)
    ids = [tok.encode(x, tok.fs) for x in signals]  # warm-up (allocator, kernels), and ids for decode
    for i, s in ids:
        tok.decode(i, s)
    enc_wall, dec_wall, enc_cpu, dec_cpu = [], [], [], []
    for _ in range(repeats):
        _sync(device)
        w0, c0 = time.perf_counter(), time.process_time()
        ids = [tok.encode(x, tok.fs) for x in signals]
        _sync(device)
        w1, c1 = time.perf_counter(), time.process_time()
        for i, s in ids:
            tok.decode(i, s)
        _sync(device)
        w2, c2 = time.perf_counter(), time.process_time()
        enc_wall.append(w1 - w0)
        dec_wall.append(w2 - w1)
        enc_cpu.append(c1 - c0)
        dec_cpu.append(c2 - c1)
    out = {
        "device": device, "samples": total, "repeats": repeats,
        "encode_samples_per_s": total / min(enc_wall), "decode_samples_per_s": total / min(dec_wall),
        "encode_samples_per_s_median": total / statistics.median(enc_wall),
        "decode_samples_per_s_median": total / statistics.median(dec_wall),
        "encode_wall_s": enc_wall, "decode_wall_s": dec_wall,
    }
    if device == "cpu":
        out["encode_samples_per_cpu_s"] = total / min(enc_cpu)
        out["decode_samples_per_cpu_s"] = total / min(dec_cpu)
    else:
        out["gpu"] = torch.cuda.get_device_name()
    return out


@run_main
def main(argv=None):
    """Benchmark and write the JSON report; returns 0."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", default="default", help="tokenizer folder, or 'default' (the shipped one)")
    p.add_argument("--out", default="runs/bench/tokenizer.json", help="JSON file to write")
    p.add_argument("--data_dir", "--data-dir", default=None, help="data root holding mitdb/ ($ECG2LLM_DATA)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "both"],
                   help="auto: CPU, plus CUDA when a GPU is visible")
    p.add_argument("--seconds", type=float, default=0.0, help="use only the first seconds of each record (0: all)")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tok = ECGTokenizer.from_pretrained(args.tokenizer)
    signals = list(load_signals(DS2, args.data_dir, fs=tok.fs, seconds=args.seconds or None).values())
    devices = ["cpu"]
    if args.device in ("cuda",) or (args.device in ("auto", "both") and torch.cuda.is_available()):
        devices.append("cuda")
    if args.device == "cuda":
        devices = ["cuda"]
    load_before = os.getloadavg()
    results = [bench_device(tok, signals, d, args.repeats) for d in devices]
    report = {
        "tokenizer": args.tokenizer, **tok.describe(), "records": list(DS2), "lead": "MLII",
        "threads": args.threads, "results": results,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor()},
        "git_sha": git_sha(), "versions": versions(),
        "command": " ".join(["python", "scripts/bench_tokenizer.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    write_json(args.out, report)
    for r in results:
        extra = (f" | per CPU-second: encode {r['encode_samples_per_cpu_s'] / 1e6:.2f} M, decode "
                 f"{r['decode_samples_per_cpu_s'] / 1e6:.2f} M" if r["device"] == "cpu" else "")
        print(f"{r['device']}: encode {r['encode_samples_per_s'] / 1e6:.2f} M samples/s, decode "
              f"{r['decode_samples_per_s'] / 1e6:.2f} M samples/s{extra}")
    print(f"load average {load_before} -> {report['load_average_after']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
