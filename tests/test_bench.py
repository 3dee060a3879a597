"""``scripts/bench.py --quick`` (what CI runs): every stage runs in its own process and reports finite figures,
peak memory, the machine, the command and the date, as JSON and as the markdown table. Nothing about time is
asserted: benchmarks measure, tests check that the measuring works."""
import json
import math
import subprocess
import sys

from conftest import REPO

STAGES = ["tokenizer", "tokenize_all", "store", "train", "generate", "score"]


def test_quick_bench_reports_every_stage(data_dir, tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, "scripts/bench.py", "--quick", "--out", str(out), "--device", "cpu",
           "--data_dir", str(data_dir), "--threads", "1", "--processes", "2"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled",
                            "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    assert [s["stage"] for s in report["stages"]] == STAGES and report["quick"] is True
    for s in report["stages"]:
        assert not s.get("error"), s
        assert s["peak_rss_mb"] > 50 and s["rows"], s["stage"]  # a torch process holds > 50 MB
        for row in s["rows"]:
            assert math.isfinite(row["value"]) and row["value"] > 0, row
            assert row["met"] in (None, True, False) and (row["met"] is None) == (row["target"] is None), row
    m = report["machine"]
    assert m["cpu"] and m["cores_available"] >= 1 and m["date_utc"] and "torch" in m["versions"]
    assert report["command"].startswith("python scripts/bench.py --quick")
    tok_all = next(s for s in report["stages"] if s["stage"] == "tokenize_all")["details"]["runs"][0]
    assert tok_all["processes"] == 2 and tok_all["entries"] == 8  # 4 records x 2 leads, sharded over 2 processes
    assert {x["stage"].split(" ")[0] for x in report["scaling"]} == {"tokenizer", "tokenize", "train", "generate",
                                                                     "score"}
    md = (out / "bench.md").read_text()
    assert md.startswith("Machine: ") and "Command: `python scripts/bench.py --quick" in md
    assert md.count("\n| tokenizer | cpu |") == 3 and "ECG-hours per hour" in md  # encode, decode, both
    assert md in r.stdout  # the table is printed too (CI logs show it)


def test_train_stage_runs_a_bf16_config_in_cpu_autocast(tmp_path):
    """A config with ``mixed_precision: bf16`` is timed as lm/train.py runs it on CPU: bf16 autocast."""
    sys.path.insert(0, str(REPO / "scripts"))
    from benchlib.stages import bench_train

    cfg = tmp_path / "bf16.yaml"
    cfg.write_text("n_layer: 1\nn_head: 2\nd_model: 32\ncontext_length: 16\nmixed_precision: bf16\n")
    r = bench_train(str(cfg), "cpu", steps=1, warmup=0, compile_=False, batch_size=2)
    assert r["precision"] == "bf16 autocast" and r["tokens_per_second"] > 0
    cfg.write_text("n_layer: 1\nn_head: 2\nd_model: 32\ncontext_length: 16\n")
    assert bench_train(str(cfg), "cpu", steps=1, warmup=0, compile_=False, batch_size=2)["precision"] == "fp32"
