"""No patient data (issue 6): WFDB header comments (age, sex, medications) never reach any output.

Records whose headers carry distinctive comment lines go through the whole pipeline (tokenize, a tiny LM
training with the W&B offline tracker, generation, forecasting, scoring); every byte of every file the runs
wrote is then searched for the markers.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from lm_support import UniformBlockConfig, UniformBlockTokenizer, build_test_store

from ecg2llm.eval.testing import write_tiny_mitdb

AGE, MEDS = "QZ97AGEMARK", "QZXMEDSMARK"  # in MIT-BIH headers: "# 69 M 1085 1629 x1" and "# Aldomet, Inderal"


def _add_patient_comments(db: Path) -> None:
    for hea in db.glob("*.hea"):
        hea.write_text(hea.read_text().rstrip("\n") + f"\n# 69 M 1085 1629 x1 {AGE}\n# Aldomet, Inderal {MEDS}\n")


def test_header_comments_reach_no_output(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from ecg2llm.eval.score import main as score_main
    from ecg2llm.lm.forecast import main as forecast_main
    from ecg2llm.lm.generate import main as generate_main
    from ecg2llm.lm.train import main as train_main
    from ecg2llm.tokenizer.data import read_header

    root = write_tiny_mitdb(tmp_path / "data", ["100", "103", "101", "106"], seconds=150.0)
    _add_patient_comments(root / "mitdb")
    assert AGE in (root / "mitdb" / "100.hea").read_text()
    assert read_header("100", root / "mitdb").comments == []  # dropped at the only place headers are read

    runs = tmp_path / "runs"
    tok = UniformBlockTokenizer(UniformBlockConfig()).save_pretrained(runs / "tok")
    store = build_test_store(runs / "store", tok, root, ["100", "103", "101", "106"])
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(runs / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (runs / "wandb_dir").mkdir()
    assert train_main(["--tokenizer", str(tok), "--store", str(store), "--output_dir", str(runs / "lm"),
                       "--max_steps", "2", "--n_layer", "1", "--d_model", "32", "--n_head", "2",
                       "--context_length", "32", "--batch_size", "2", "--eval_crops", "2", "--final_eval_crops", "2",
                       "--eval_every", "1", "--save_every", "1", "--figure_samples", "1", "--figure_seconds", "2",
                       "--progress", "false", "--num_threads", "1", "--report_to", "wandb"]) == 0
    assert generate_main(["--model", str(runs / "lm" / "final"), "--num_samples", "6", "--seconds", "10",
                          "--out", str(runs / "gen"), "--prompt_record", "100", "--prompt_seconds", "1",
                          "--data_dir", str(root), "--num_threads", "1"]) == 0
    assert forecast_main(["--model", str(runs / "lm" / "final"), "--out", str(runs / "fc"), "--data_dir", str(root),
                          "--records", "100", "--n_tasks", "2", "--k", "2", "--prefix_s", "1", "--horizon_s", "1",
                          "--num_threads", "1"]) == 0
    assert score_main(["--synthetic", str(runs / "gen"), "--forecast", str(runs / "fc"), "--out", str(runs / "eval"),
                       "--data_dir", str(root), "--reference_records", "100,103", "--train_records", "101,106",
                       "--n_real", "8", "--n_ref_rows", "6", "--memo_stride_s", "10",
                       "--cache_dir", str(runs / "cache"), "--prompted", "include"]) == 0

    files = [p for p in runs.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"run_info.json", "metrics.json", "meta.json", "report.md", "forecast.json"} <= names, names
    assert any(p.suffix == ".wandb" for p in files) and any(p.suffix == ".hea" for p in files)
    leaks = [str(p.relative_to(runs)) for p in files
             if any(m.encode() in p.read_bytes() for m in (AGE, MEDS, "Aldomet"))]
    assert not leaks, leaks
