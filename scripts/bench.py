"""The one benchmark of the pipeline: speed and peak memory of every stage, as JSON and a markdown table.

Launch (from the repo root)::

    python scripts/bench.py --out runs/bench                 # full sizes, CPU (+ CUDA when a GPU is visible)
    python scripts/bench.py --out runs/bench_ci --quick      # every stage small (about 2 minutes on 2 cores)
    python scripts/bench.py --out runs/bench --device cuda --stages train,generate
    python scripts/bench.py --out runs/bench --stages tokenizer --tokenizer runs/tok/fsq/tokenizer
    python scripts/bench.py --config my_bench.yaml     # the same fields (BenchConfig) as YAML keys

Stages (``scripts/benchlib/stages.py``), each in its own child process so that its peak memory is its own
(``ru_maxrss``; on CUDA also ``torch.cuda.max_memory_allocated``):

* ``tokenizer``: encode and decode samples/s over the 22 DS2 MLII records, whole records (target >= 5 M
  samples/s on 2 CPU cores), and the round trip encode + decode (target >= 1 M samples/s for tokenizer v3,
  ``--tokenizer v3``, beat detection included);
* ``tokenize_all``: all 48 records x both leads into one store with ``tokenizer/tokenize_db.py``, sharded over
  one process per core (``torchrun``), wall time and summed peak memory (target <= 30 s, <= 1 GB); in full
  mode once more in one process, and the two stores are checked identical;
* ``store``: token-store write and random-crop read, tokens/s, one-file and 2-shard layouts;
* ``train``: LM training tokens/s (``tiny`` on CPU; on CUDA ``configs/lm/base.yaml``, 85 M parameters, bf16,
  ``torch.compile``, SDPA attention) and MFU on CUDA (target >= 40 %);
* ``generate``: ECG-seconds generated per second at several batch sizes (targets: ``tiny`` >= 100 on 2 CPU
  cores, ``small`` >= 10,000 on one H100; the ``small`` weights are untrained, speed does not depend on them);
* ``score``: seconds to score 1,000 synthetic 10-s windows with every stage-3 metric.

Outputs ``<out>/bench.json`` (machine, command, date, git sha, versions, every figure and its details),
``<out>/bench.md`` (the table, then the scaling projection for ``--corpus_patients`` x
``--corpus_hours_per_patient`` x ``--corpus_leads`` of ECG) and ``<out>/logs/``. Nothing here asserts a
time: a missed target reads "no" in the table. A stage that fails is reported and the exit status is 1.
Wall-clock figures on a shared machine include waiting for a core: read them against the load average
the report records.

OpenMP threads: the stages run with the OpenMP default (idle threads spin, which is what users get) unless
``--omp_wait_policy`` says otherwise (or the variable is already set). On an idle 2-core machine the
default is the fastest (tokenizer encode 9.3 M vs 4.7 M samples/s with ``PASSIVE``, generation 183 vs 140
ECG-s/s). On a *shared* machine it is not: when another job holds one of the cores, spinning torch's
2-thread kernels ran 50x slower (encode 0.1 M samples/s), which measures the neighbour rather than the
code; use ``--omp_wait_policy passive`` there (threads sleep at barriers). The policy is recorded in
``bench.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import config_to_dict, parse_config
from ecg2llm.core.errors import ConfigError
from ecg2llm.core.io import ensure_writable_dir, write_json, write_run_info, write_text


def _benchlib() -> None:
    """Make ``benchlib`` (the folder beside this file) importable without touching ``sys.path``.

    ``python scripts/bench.py`` has scripts/ on the path already; ``ecg2llm bench`` loads this file by path,
    so the helper package is registered here by its location.
    """
    if "benchlib" in sys.modules:
        return
    root = Path(__file__).resolve().parent / "benchlib"
    spec = importlib.util.spec_from_file_location("benchlib", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchlib"] = module
    spec.loader.exec_module(module)


STAGE_NAMES = ("tokenizer", "tokenize_all", "store", "train", "generate", "score")


@dataclass
class BenchConfig:
    """Fields of ``scripts/bench.py`` (every field is a flag and a ``--config`` YAML key). The stages read
    them as a dict (:data:`benchlib.stages.STAGES`), plus ``device``."""

    out: str  # folder for bench.json, bench.md and logs/
    quick: bool = False  # small sizes for every stage (CI smoke run)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CPU, plus CUDA when a GPU is visible
    stages: list[str] = field(default_factory=lambda: list(STAGE_NAMES))  # comma list of STAGE_NAMES
    threads: int = 0  # torch CPU threads per stage (0: every available core)
    processes: int = 0  # tokenize_all processes (0: one per available core)
    omp_wait_policy: Literal["passive", "active", "unset"] = "unset"  # passive on a shared machine
    data_dir: str | None = None  # data root holding mitdb/ ($ECG2LLM_DATA otherwise)
    tokenizer: str = "v2"  # tokenizer folder or shipped name
    model: str = "v2"  # LM folder for the generation stage, or a shipped name
    train_config: str | None = None  # LM config of the train stage (default: tiny.yaml on CPU, base on CUDA)
    no_compile: bool = False  # do not torch.compile the CUDA training model
    peak_tflops: float = 0.0  # dense bf16 peak for MFU (0: from the GPU name, e.g. 989 for an H100)
    gen_batches: list[int] = field(default_factory=list)  # generation batch sizes (default per device)
    lead_guidance: float | None = None  # generation: sample with lead-contrast guidance (lm/generate.py's flag)
    beat_cache: float = 0.0  # generation: sample with the beat cache at this strength (0 = off)
    kv_cache: Literal["auto", "float32", "float16"] = "auto"  # generation, LM v2: the sampler's KV cache
    corpus_patients: int = 10_000  # scaling projection: patients
    corpus_hours_per_patient: float = 70.0  # scaling projection: hours each
    corpus_leads: int = 1  # scaling projection: leads per recording
    stage_timeout: float = 3600.0  # seconds before a stage is stopped
    score_cache: str | None = None  # score stage: a persistent eval cache (warm: index, pool features and bands
    #                                 built by an earlier run are reused; the setup row is then not a cold start)
    score_profile: bool = False  # score stage: run the timed scoring under cProfile, top functions in the result

    def __post_init__(self):
        unknown = [s for s in self.stages if s not in STAGE_NAMES]
        if unknown or not self.stages:
            raise ConfigError(f"--stages: unknown stage(s) {unknown}; choose from {', '.join(STAGE_NAMES)}")


def _child_flags() -> argparse.ArgumentParser:
    """Internal flags (not config): run one stage in this process and write its result to a file."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child_device", default="cpu", help=argparse.SUPPRESS)
    p.add_argument("--child_out", default=None, help=argparse.SUPPRESS)
    return p


def parse_args(argv) -> BenchConfig:
    """``argv`` as a :class:`BenchConfig`; ``cfg._extra`` holds ``child``, ``child_device``, ``child_out``
    and ``debug``."""
    return parse_config(BenchConfig, argv, description=__doc__, extra=_child_flags())


def check_inputs(a) -> None:
    """Fail in one line, before any child starts, on an input a stage would only find later."""
    from ecg2llm.tokenizer.base import ECGTokenizer

    if "generate" in a.stages:
        from ecg2llm.lm.model import resolve_model_dir

        resolve_model_dir(a.model)
    if set(a.stages) & {"tokenizer", "tokenize_all", "score"}:
        ECGTokenizer.from_pretrained(a.tokenizer)
        from ecg2llm.tokenizer.data import resolve_data_dir

        if (
            set(a.stages) & {"tokenizer", "tokenize_all", "score"}
            and not (resolve_data_dir(a.data_dir) / "mitdb").is_dir()
        ):
            from ecg2llm.core.errors import DataNotFoundError

            raise DataNotFoundError(
                f"no mitdb/ under {resolve_data_dir(a.data_dir)}: set ECG2LLM_DATA or --data_dir "
                f"(the benchmark never downloads)"
            )
    if a.train_config and not Path(a.train_config).is_file():
        raise ConfigError(f"--train_config {a.train_config} does not exist")


def run_child(a: BenchConfig) -> int:
    """Run stage ``child`` on ``child_device`` (both in ``a._extra``) here; write its result (or its error)
    to ``child_out``."""
    import torch
    _benchlib()
    from benchlib.stages import STAGES

    from ecg2llm.core.distributed import available_cores

    x = a._extra
    torch.set_num_threads(a.threads or available_cores())
    opts = {**config_to_dict(a), "device": x.child_device}
    t0 = time.perf_counter()
    try:
        res = STAGES[x.child](opts)
        rc = 0
    except Exception as e:  # noqa: BLE001 - reported in the table; the other stages still run
        res, rc = {"error": f"{type(e).__name__}: {e}"}, 1
        if x.debug:
            raise
    res["wall_s"] = time.perf_counter() - t0
    # peak resident memory (KiB on Linux) of this process, and of the largest child it waited for (torchrun ranks)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["peak_rss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if x.child_device.startswith("cuda") and torch.cuda.is_available():
        res["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    write_json(x.child_out, res)
    return rc


def run_stage(stage: str, device: str, argv: list[str], out: Path, timeout: float, env: dict) -> dict:
    """One stage in a child process (``--child``); its JSON result, or an ``error`` entry."""
    res_file = out / "logs" / f"{stage}_{device}.json"
    log = out / "logs" / f"{stage}_{device}.log"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        *argv,
        "--child",
        stage,
        "--child_device",
        device,
        "--child_out",
        str(res_file),
    ]
    t0 = time.perf_counter()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, env=env).returncode
        except subprocess.TimeoutExpired:
            rc = None
    res = json.loads(res_file.read_text()) if res_file.is_file() else {}
    if rc is None:
        res["error"] = f"stopped after {timeout:g} s (--stage_timeout)"
    elif rc and "error" not in res:
        tail = [ln for ln in log.read_text().splitlines() if ln.strip()][-1:] or [f"exit status {rc}"]
        res["error"] = tail[0]
    res.setdefault("wall_s", time.perf_counter() - t0)
    return {"stage": stage, "device": device, "log": str(log), **res}


@run_main
def main(argv=None):
    """Run the chosen stages, write ``bench.json`` and ``bench.md``, print the table; 1 if a stage failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    if a._extra.child:
        return run_child(a)
    import torch
    _benchlib()
    from benchlib.report import machine, markdown, scaling
    from benchlib.stages import CUDA_STAGES

    from ecg2llm.core.distributed import available_cores

    check_inputs(a)
    out = ensure_writable_dir(a.out)
    write_run_info(out, config_to_dict(a))  # the resolved config (defaults < YAML < flags)
    (out / "logs").mkdir(exist_ok=True)
    cuda = a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
    if a.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but torch sees no GPU; use --device cpu or auto")
    plan = [(s, "cpu") for s in a.stages if a.device != "cuda" or s not in CUDA_STAGES]
    plan += [(s, "cuda") for s in a.stages if cuda and s in CUDA_STAGES]
    plan.sort(key=lambda sd: STAGE_NAMES.index(sd[0]))
    report = {
        "command": " ".join(["python", "scripts/bench.py", *argv]),
        "quick": a.quick,
        "threads": a.threads or available_cores(),
        "machine": machine(),
        "load_average_before": os.getloadavg(),
        "corpus": {
            "patients": a.corpus_patients,
            "hours_per_patient": a.corpus_hours_per_patient,
            "leads": a.corpus_leads,
            "hours": a.corpus_patients * a.corpus_hours_per_patient * a.corpus_leads,
        },
        "stages": [],
    }
    env = dict(os.environ)
    if a.omp_wait_policy != "unset":
        env.setdefault("OMP_WAIT_POLICY", a.omp_wait_policy.upper())
    report["omp_wait_policy"] = env.get("OMP_WAIT_POLICY", "unset (OpenMP default)")
    for stage, device in plan:
        print(f"[bench] {stage} on {device} ...", flush=True)
        res = run_stage(stage, device, argv, out, a.stage_timeout, env)
        report["stages"].append(res)
        print(
            f"[bench] {stage} on {device}: "
            + (
                f"failed: {res['error']}"
                if res.get("error")
                else "; ".join(f"{r['metric']} {r['value']:.4g} {r['unit']}" for r in res["rows"])
            ),
            flush=True,
        )
    report["load_average_after"] = os.getloadavg()
    report["scaling"] = scaling(report, report["corpus"]["hours"])
    write_json(out / "bench.json", report)
    md = markdown(report)
    write_text(out / "bench.md", md)
    print(md + f"wrote {out / 'bench.json'} and {out / 'bench.md'}")
    failed = [f"{r['stage']} ({r['device']}): {r['error']}" for r in report["stages"] if r.get("error")]
    if failed:
        print("error: stage(s) failed: " + " | ".join(failed) + f" (logs in {out / 'logs'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
