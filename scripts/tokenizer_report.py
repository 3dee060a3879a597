"""Issue-16 numbers of a tokenizer on DS2: band errors, robustness ratios, texture discriminator.

Launch::

    python scripts/tokenizer_report.py --tokenizer default --out runs/tokreport/default
    python scripts/tokenizer_report.py --tokenizer v1 --out runs/tokreport/v1 --no_texture_check

Writes ``report.json`` (every row, :func:`tokenizer.robustness.robustness_report` and
:func:`tokenizer.texture_check.texture_report`) and prints the summary. DS2 is only scored here, never
used to choose anything.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenizer.base import ECGTokenizer  # noqa: E402
from tokenizer.utils.cli import run_main  # noqa: E402
from tokenizer.utils.io import ensure_writable_dir, write_json  # noqa: E402


@run_main
def main(argv=None):
    """Score and write ``report.json``; returns 0."""
    import torch

    from tokenizer.robustness import robustness_report
    from tokenizer.texture_check import format_report, texture_report

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", default="default", help="tokenizer folder or shipped name (default, v1)")
    p.add_argument("--out", required=True)
    p.add_argument("--data_dir", "--data-dir", default=None)
    p.add_argument("--seconds", type=float, default=0.0, help="score only the first seconds of each record")
    p.add_argument("--no_robustness", action="store_true")
    p.add_argument("--no_texture_check", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.num_threads)
    out = ensure_writable_dir(a.out)
    tok = ECGTokenizer.from_pretrained(a.tokenizer)
    rep = {"tokenizer": a.tokenizer, "describe": tok.describe(), "command": " ".join(sys.argv)}
    if not a.no_robustness:
        t0 = time.time()
        rep["robustness"] = robustness_report(tok, a.data_dir, seconds=a.seconds or None)
        rep["robustness"]["wall_seconds"] = time.time() - t0
        print(json.dumps(rep["robustness"]["summary"], indent=1))
    if not a.no_texture_check:
        t0 = time.time()
        rep["texture_check"] = texture_report(tok, data_dir=a.data_dir, seed=a.seed,
                                              seconds=a.seconds or None)
        rep["texture_check"]["wall_seconds"] = time.time() - t0
        print(format_report(rep["texture_check"]))
    write_json(out / "report.json", rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
