"""One-token attention over a KV cache allocated at its full length vs grown in steps: the layout behind
``ecg2llm.lm.kvdecode.GROW``.

Launch (from the repo root)::

    python scripts/kv_layout_micro.py --out runs/kv_layout_micro.json

LM v3's shapes (4 layers, 4 heads of 32, one row group of 64 rows, one thread): for filled lengths ``L`` of a
30-s sample (5 .. 509), SDPA with one query reads ``K[i, :, :, :L]`` and ``V[i, :, :, :L]`` of a cache of
capacity 981 (``max_len`` of a 30-s request: every row and head's stretch of ``L`` positions lies 981 apart)
or of capacity ``L`` rounded up to 64 (the stretches follow each other). Both arms alternate ``rounds`` times;
the result is the thread's CPU seconds per 504 steps (one batch of 30 s), min and median over rounds, and
whether SDPA gives the same bits on both layouts.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config


@dataclass
class KVLayoutConfig:
    """Fields of ``scripts/kv_layout_micro.py`` (every field is a flag)."""

    out: str  # result file (JSON)
    rows: int = 64  # rows of one row group
    rounds: int = 5  # alternations of the two layouts
    grow: int = 64  # the grown cache's step


@run_main
def main(argv=None) -> int:
    """Time both layouts and write the result file."""
    a = parse_config(KVLayoutConfig, argv, description=__doc__)
    from ecg2llm.core.errors import ConfigError

    bad = [f"--{k} {getattr(a, k)}" for k in ("rows", "rounds", "grow") if int(getattr(a, k)) < 1]
    if bad:
        raise ConfigError(f"{', '.join(bad)}: must be at least 1")
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ecg2llm.core.io import git_sha, write_json

    torch.set_num_threads(1)
    layers, heads, d, max_len = 4, 4, 32, 981
    scale = d ** -0.5
    lengths = list(range(5, 510, 24))
    g = torch.Generator().manual_seed(0)
    full = (torch.randn(layers, a.rows, heads, max_len, d, generator=g),
            torch.randn(layers, a.rows, heads, max_len, d, generator=g))
    grown = {}
    for n in lengths:
        cap = -(-n // a.grow) * a.grow
        grown[n] = (torch.randn(layers, a.rows, heads, cap, d, generator=g),
                    torch.randn(layers, a.rows, heads, cap, d, generator=g))

    def run(cache) -> float:
        t0 = time.thread_time()
        for n in lengths:
            k, v = cache(n)
            for i in range(layers):
                F.scaled_dot_product_attention(torch.randn(a.rows, heads, 1, d), k[i, :, :, :n], v[i, :, :, :n],
                                               scale=scale)
        return (time.thread_time() - t0) / len(lengths) * 504

    load = os.getloadavg()
    res = {"full_length": [], "grown": []}
    for _ in range(int(a.rounds)):
        res["full_length"].append(run(lambda n: full))
        res["grown"].append(run(lambda n: grown[n]))
    q = torch.randn(a.rows, heads, 1, d, generator=g)
    n = 300
    k2, v2 = full[0][0, :, :, :n].contiguous(), full[1][0, :, :, :n].contiguous()
    same = torch.equal(F.scaled_dot_product_attention(q, full[0][0, :, :, :n], full[1][0, :, :, :n], scale=scale),
                       F.scaled_dot_product_attention(q, k2, v2, scale=scale))
    summary = {k: {"min_cpu_s_per_batch": min(v), "median_cpu_s_per_batch": float(np.median(v))}
               for k, v in res.items()}
    summary["same_bits"] = bool(same)
    print(summary)
    write_json(a.out, {"command": " ".join(["python", "scripts/kv_layout_micro.py", *(argv or sys.argv[1:])]),
                       "git_sha": git_sha(), "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                       "torch": torch.__version__, "cpu_count": os.cpu_count(), "load_average_before": load,
                       "load_average_after": os.getloadavg(), "config": asdict(a), "summary": summary,
                       "cpu_s_per_batch": res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
