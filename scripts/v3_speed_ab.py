"""LM v3 generation, the sampler's speed-ups off and on, alternating in one process: an A/B that a shared machine
cannot bias (both arms see the same load, turn by turn).

Launch (from the repo root)::

    python scripts/v3_speed_ab.py --out runs/v3_speed_ab.json                       # batch 128 x 30 s, 3 rounds
    python scripts/v3_speed_ab.py --out runs/v3_speed_ab_small.json --batch 16 --seconds 6 --rounds 2

Arm ``before``: every id's logits, mask, softmax and draw (``ecg2llm.lm.sampler.WINDOWS = False``) and the KV
cache allocated at its full length (``ecg2llm.lm.kvdecode.GROW`` off), every row group on a worker thread
(``CALLER_GROUP`` off). Arm ``after``: the defaults (the window of ids of the due type; the cache grown in steps;
the sampling thread runs a row group itself). Each round runs ``before`` then ``after`` on the same seed
through :meth:`ecg2llm.lm.beat_generate.BeatLM.synthesize` (beat stream + detail + decode, as the bench) and
records the seconds of each part (wall), the process's CPU seconds and a SHA-256 of the signals: the two arms
must draw the same ECGs.
The load average before and after is in the file.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import asdict, dataclass, replace

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config


@dataclass
class SpeedABConfig:
    """Fields of ``scripts/v3_speed_ab.py`` (every field is a flag)."""

    out: str  # result file (JSON)
    model: str = "default"  # LM v3: shipped name or folder
    batch: int = 128  # samples per batch (one batch per run)
    seconds: float = 30.0  # seconds per sample
    rounds: int = 3  # before/after pairs
    threads: int = 0  # torch threads (0: torch's default)


def _arm(after: bool) -> None:
    import ecg2llm.lm.kvdecode as kvd
    import ecg2llm.lm.sampler as smp

    smp.WINDOWS = after
    kvd.GROW = _GROW if after else 1 << 30
    kvd.CALLER_GROUP = after


_GROW = None


@run_main
def main(argv=None) -> int:
    """Run the rounds and write the result file."""
    global _GROW
    a = parse_config(SpeedABConfig, argv, description=__doc__)
    import numpy as np
    import torch

    import ecg2llm.lm.kvdecode as kvd
    from ecg2llm.core.io import git_sha, versions, write_json
    from ecg2llm.lm.beat_generate import BeatLM
    from ecg2llm.lm.model import resolve_model_dir
    from ecg2llm.lm.request import GenerateConfig

    if a.threads:
        torch.set_num_threads(int(a.threads))
    _GROW = kvd.GROW
    load_before = os.getloadavg()
    blm = BeatLM.from_folder(resolve_model_dir(a.model))
    req = GenerateConfig(num_samples=a.batch, seconds=a.seconds, batch_size=a.batch)
    for after in (False, True):  # warm-up of both arms (allocations, the once-per-process checks)
        _arm(after)
        blm.synthesize(replace(req, seconds=0.5))
    runs = []
    for r in range(int(a.rounds)):
        for name in ("before", "after"):
            _arm(name == "after")
            blm.timing = dict.fromkeys(blm.timing, 0.0)
            t0, c0 = time.perf_counter(), time.process_time()
            x, _, _, _ = blm.synthesize(replace(req, seed=r))
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            runs.append({"round": r, "arm": name, "seconds": dt, "cpu_seconds": cpu,
                         "ecg_s_per_s": a.batch * a.seconds / dt,
                         "parts_s": dict(blm.timing), "signals_sha256": hashlib.sha256(x.tobytes()).hexdigest(),
                         "load_average": os.getloadavg()})
            print(name, r, f"{dt:.2f} s, {cpu:.2f} CPU-s", {k: round(v, 2) for k, v in blm.timing.items()}, flush=True)
    same = all(runs[2 * r]["signals_sha256"] == runs[2 * r + 1]["signals_sha256"] for r in range(int(a.rounds)))
    summary = {}
    for name in ("before", "after"):
        rs = [x for x in runs if x["arm"] == name]
        summary[name] = {"best_s": min(x["seconds"] for x in rs),
                         "median_s": float(np.median([x["seconds"] for x in rs])),
                         "best_ecg_s_per_s": max(x["ecg_s_per_s"] for x in rs),
                         "best_beat_stream_s": min(x["parts_s"]["beat_stream_s"] for x in rs),
                         "median_beat_stream_s": float(np.median([x["parts_s"]["beat_stream_s"] for x in rs])),
                         "median_cpu_s": float(np.median([x["cpu_seconds"] for x in rs]))}
    summary["speedup_beat_stream_median"] = summary["before"]["median_beat_stream_s"] / \
        summary["after"]["median_beat_stream_s"]
    summary["speedup_cpu_median"] = summary["before"]["median_cpu_s"] / summary["after"]["median_cpu_s"]
    summary["speedup_per_round"] = [runs[2 * r]["seconds"] / runs[2 * r + 1]["seconds"] for r in range(int(a.rounds))]
    summary["same_signals"] = same
    print(summary, flush=True)
    write_json(a.out, {"command": " ".join(["python", "scripts/v3_speed_ab.py", *(argv or sys.argv[1:])]),
                       "git_sha": git_sha(), "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                       "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                   "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP default)")},
                       "load_average_before": load_before, "load_average_after": os.getloadavg(),
                       "versions": versions(), "config": asdict(a), "summary": summary, "runs": runs})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
