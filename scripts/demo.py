"""The whole pipeline on a small CPU configuration: MIT-BIH -> tokens -> GPT -> synthetic ECG -> report.

Launch (``make demo`` runs exactly this after installing)::

    python scripts/demo.py --out runs/demo [--data_dir ../shared/data]
    python scripts/demo.py --config my_demo.yaml        # the same fields (DemoConfig) as YAML keys

Stages, each run as the command a user would type (printed before it runs, logged to ``<out>/logs``):

1. **tokenize** every MIT-BIH record with the shipped tokenizer v3 (``v3`` = ``default``: beats as words, each
   heartbeat its RR token, 6 coarse and 20 detail tokens) into the beat store ``<out>/store``
   (``python -m ecg2llm.lm.beatstream``, the store the LM config names);
2. **train** the ``tiny_v3`` GPT over heartbeats (2 layers, width 64, 40-beat context: far smaller and shorter
   trained than the shipped ``default`` LM v3 of ``configs/lm/v3.yaml``) on the DS1 training records with
   Accelerate (``lm/train.py``, ``configs/lm/tiny_v3.yaml``) into ``<out>/lm``, tracked with W&B (offline into
   ``<out>/lm/wandb`` unless you are logged in; ``wandb sync`` it later), then its detail head
   (``python -m ecg2llm.lm.beat_detail``);
3. **generate** unconditional 10-s ECGs (``lm/generate.py``) into ``<out>/generated`` and **forecast** 5 s
   continuations of real DS2 prefixes (``lm/forecast.py``) into ``<out>/forecast``;
4. **score** everything against held-out DS2 windows, with the real-DS1, ECGSYN and tokenizer-round-trip
   reference rows (``eval/score.py``) into ``<out>/eval/report.md``.

``--lm v2`` runs the 0.2 demo instead: tokenizer v2's flat token stream (``tokenizer/tokenize_db.py``), the
``tiny`` GPT (``configs/lm/tiny.yaml``) and the bigram token sampler (the floor) as an extra scored row.

Data: ``--data_dir``, else ``$ECG2LLM_DATA``, else ``~/.cache/ecg2llm`` (downloaded from PhysioNet when
missing). ``<out>/summary.json`` records each stage's command, wall time and headline numbers. Budget:
<= 10 minutes on 2 CPU cores after install. Existing stage outputs are replaced (``--fresh false`` keeps
the store and the trained LM of an earlier run and starts from stage 3).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import config_to_dict, parse_config
from ecg2llm.core.errors import ECG2LLMError
from ecg2llm.core.io import write_json

REPO = Path(__file__).resolve().parents[1]

ACCELERATE = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--num_processes",
    "1",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


@dataclass
class DemoConfig:
    """Fields of ``scripts/demo.py`` (every field is a flag and a ``--config`` YAML key). The stages get
    their own settings from their configs (``lm_config``) plus the overrides the stage commands show."""

    out: str = "runs/demo"  # output folder
    data_dir: str | None = None  # data root holding mitdb/ ($ECG2LLM_DATA otherwise)
    lm: Literal["v3", "v2"] = "v3"  # v3: beats as words (the stack of `default`); v2: the flat token stream
    lm_config: str | None = None  # LM config of the train stage (None: configs/lm/tiny_v3.yaml, or tiny.yaml for v2)
    max_steps: int | None = None  # override the LM config's max_steps
    num_samples: int = 200  # unconditional 10-s samples to generate
    forecast_tasks: int = 48  # DS2 prefixes to forecast
    detail_steps: int = 100  # v3: detail head steps (its "mean" mode decodes; more steps barely change it)
    report_to: Literal["wandb", "tensorboard", "none"] = "wandb"  # LM tracker (W&B offline unless logged in)
    fresh: bool = True  # false: reuse <out>/store and <out>/lm/final from an earlier run


class StageError(ECG2LLMError):
    """A pipeline stage exited with an error."""


def run_stage(name: str, cmd: list[str], log_dir: Path, summary: dict) -> None:
    """Run one stage, streaming its output to the terminal and to ``log_dir/<name>.log``."""
    shown = " ".join(shlex.quote(c if c != sys.executable else "python") for c in cmd)
    shown = shown.replace("python -m accelerate.commands.launch", "accelerate launch")
    print(f"\n=== {name}: {shown}", flush=True)
    t0 = time.time()
    log = log_dir / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with open(log, "w") as f:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        for line in proc.stdout:
            sys.stdout.write(line)
            f.write(line)
        rc = proc.wait()
    summary["stages"][name] = {"command": shown, "seconds": round(time.time() - t0, 1), "returncode": rc}
    if rc != 0:
        raise StageError(f"stage '{name}' failed with exit code {rc}; its full output is in {log}")


@run_main
def main(argv=None):
    """Parse flags (:class:`DemoConfig`), run stages 1-4 into ``--out``, print where the report is."""
    a = parse_config(DemoConfig, argv, description=__doc__)

    from ecg2llm.tokenizer.data import ensure_database, resolve_data_dir

    out = (REPO / a.out) if not Path(a.out).is_absolute() else Path(a.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    root = resolve_data_dir(a.data_dir)
    ensure_database(root)  # downloads MIT-BIH when missing, or says exactly what is wrong
    data = ["--data_dir", str(root)]
    py = sys.executable
    summary: dict = {"out": str(out), "data_dir": str(root), "config": config_to_dict(a), "stages": {}}
    t0 = time.time()

    store, lm_dir = out / "store", out / "lm"
    v3 = a.lm == "v3"
    lm_config = a.lm_config or ("configs/lm/tiny_v3.yaml" if v3 else "configs/lm/tiny.yaml")
    done = (store / "meta.json").is_file() and (lm_dir / "final" / "config.json").is_file()
    reuse = not a.fresh and done and (not v3 or (lm_dir / "final" / "detail").is_dir())
    if not reuse:
        if v3:  # the beat store the LM config describes (tokenizer v3: RR, coarse and detail tokens per beat)
            tokenize = [py, "-m", "ecg2llm.lm.beatstream", "--config", lm_config, "--store", str(store), *data]
        else:
            tokenize = [py, "tokenizer/tokenize_db.py", "--tokenizer", "v2", "--out", str(store), *data]
        run_stage("1_tokenize", tokenize, logs, summary)
        steps = ["--max_steps", str(a.max_steps)] if a.max_steps else []
        run_stage(
            "2_train_lm",
            [
                *ACCELERATE,
                "lm/train.py",
                "--config",
                lm_config,
                "--store",
                str(store),
                "--output_dir",
                str(lm_dir),
                "--overwrite_output_dir",
                "true",
                "--report_to",
                a.report_to,
                *steps,
                *data,
            ],
            logs,
            summary,
        )
        if v3:  # LM v3's second level: each beat's detail tokens from its coarse tokens (lm/beat_detail.py)
            run_stage(
                "2b_train_detail",
                [py, "-m", "ecg2llm.lm.beat_detail", "--lm", str(lm_dir / "final"), "--store", str(store),
                 "--steps", str(a.detail_steps)],
                logs,
                summary,
            )
    final = lm_dir / "final"
    run_stage(
        "3a_generate",
        [
            py,
            "lm/generate.py",
            "--model",
            str(final),
            "--num_samples",
            str(a.num_samples),
            "--seconds",
            "10",
            "--out",
            str(out / "generated"),
            "--seed",
            "0",
            "--png",
            "false",
        ],
        logs,
        summary,
    )
    run_stage(
        "3b_forecast",
        [
            py,
            "lm/forecast.py",
            "--model",
            str(final),
            "--out",
            str(out / "forecast"),
            "--n_tasks",
            str(a.forecast_tasks),
            "--k",
            "16",
            *data,
        ],
        logs,
        summary,
    )
    extra = []
    if not v3:  # the bigram token sampler (the floor) reads a flat token store
        run_stage(
            "3c_bigram",
            [
                py,
                "scripts/bigram_samples.py",
                "--store",
                str(store),
                "--out",
                str(out / "bigram"),
                "--num_samples",
                str(a.num_samples),
            ],
            logs,
            summary,
        )
        extra = ["--extra_rows", f"bigram sampler={out / 'bigram'}"]
    run_stage(
        "4_score",
        [
            py,
            "eval/score.py",
            "--synthetic",
            str(out / "generated"),
            "--forecast",
            str(out / "forecast"),
            "--tokenizer",
            a.lm,
            *extra,
            "--out",
            str(out / "eval"),
            "--n_real",
            "300",
            "--n_ref_rows",
            "200",
            *data,
        ],
        logs,
        summary,
    )

    summary["seconds"] = round(time.time() - t0, 1)
    lm_metrics = json.loads((lm_dir / "metrics.json").read_text())
    ev = json.loads((out / "eval" / "metrics.json").read_text())
    summary["lm"] = {s: lm_metrics.get(s) for s in ("val", "test")}
    summary["eval"] = {
        "verdict": ev.get("verdict"),
        "headline": ev.get("headline"),
        **{
            k: ev.get(k)
            for k in ("rfed", "mmd", "valid_rhythm_rate", "hr_w1_bpm", "memorization_ratio", "forecast_crps")
        },
    }
    write_json(out / "summary.json", summary)

    val, test = lm_metrics.get("val", {}), lm_metrics.get("test", {})
    print(f"\n=== done in {summary['seconds'] / 60:.1f} min")
    for name, m in (("val", val), ("test (DS2)", test)):
        if m:
            big, uni = m.get("bigram_bits_per_token", float("nan")), m.get("unigram_bits_per_token", float("nan"))
            print(
                f"LM {name}: {m['bits_per_token']:.3f} bits/token (bigram {big:.3f}, unigram {uni:.3f}), "
                f"{m['bits_per_second']:.0f} bits per ECG second"
            )
    e = summary["eval"]
    if e.get("verdict"):  # the headline metrics, each judged against the spread of real unseen patients
        print(f"synthetic vs real DS2: verdict {str(e['verdict']).upper()}")
        for k, h in (e.get("headline") or {}).items():
            lo, hi = h["real_band"]
            print(f"  {k:<16} {h['value']:<8.3g} {h['verdict']:<8} (real patients {lo:.3g}-{hi:.3g})")
    print("detail: " + ", ".join(f"{k} {v:.3g}" for k, v in e.items() if isinstance(v, (int, float))))
    print(f"report: {out / 'eval' / 'report.md'}  (HTML: {out / 'eval' / 'report.html'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
