"""Issue-16 numbers of a tokenizer on DS2: band errors, robustness ratios, texture discriminator.

Launch::

    python scripts/tokenizer_report.py --tokenizer default --out runs/tokreport/default
    python scripts/tokenizer_report.py --tokenizer v1 --out runs/tokreport/v1 --no_texture_check
    python scripts/tokenizer_report.py --config my_report.yaml   # the same fields as YAML keys

Writes ``report.json`` (every row, :func:`ecg2llm.tokenizer.robustness.robustness_report` and
:func:`ecg2llm.tokenizer.texture_check.texture_report`) and prints the summary. DS2 is only scored here, never
used to choose anything.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import config_to_dict, parse_config
from ecg2llm.core.io import ensure_writable_dir, write_json, write_run_info
from ecg2llm.tokenizer.base import ECGTokenizer


@dataclass
class TokenizerReportConfig:
    """Fields of ``scripts/tokenizer_report.py`` (every field is a flag and a ``--config`` YAML key)."""

    out: str                        # folder for report.json
    tokenizer: str = "v2"           # tokenizer folder or shipped name (v2, v3, v1)
    data_dir: str | None = None     # data root holding mitdb/ ($ECG2LLM_DATA otherwise)
    seconds: float = 0.0            # score only the first seconds of each record (0: whole records)
    no_robustness: bool = False     # skip the band errors / robustness ratios
    no_texture_check: bool = False  # skip the texture discriminator
    seed: int = 0
    num_threads: int = 1            # torch CPU threads


@run_main
def main(argv=None):
    """Parse flags (:class:`TokenizerReportConfig`), score, write ``report.json``; returns 0."""
    import torch

    from ecg2llm.tokenizer.robustness import robustness_report
    from ecg2llm.tokenizer.texture_check import format_report, texture_report

    a = parse_config(TokenizerReportConfig, argv, description=__doc__)
    torch.set_num_threads(a.num_threads)
    out = ensure_writable_dir(a.out)
    write_run_info(out, config_to_dict(a))  # the resolved config (defaults < YAML < flags)
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
