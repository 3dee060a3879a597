"""Determinism on CPU (issue 6): same inputs and seed => byte-identical token store, model and samples.

Already covered elsewhere and not repeated: ``tokens.bin``/``index.json`` of two builds
(``test_store.py::test_same_input_same_bytes``), generation with one seed (``test_lm_generate.py::
test_same_seed_same_output_other_seed_other_output``), forecasts (``test_lm_forecast.py::
test_forecast_is_reproducible``), training data order (``test_lm_train.py``). Here: every file of the store
with the shipped FSQ tokenizer, and two whole training runs -> identical weights -> identical samples.
"""
from __future__ import annotations

import json

import numpy as np
from conftest import synthetic_ecg, write_wfdb
from lm_support import UniformBlockConfig, UniformBlockTokenizer, build_test_store


def test_store_is_byte_identical_except_build_time(tiny_db, tmp_path, capsys):
    from ecg2llm.tokenizer.tokenize_db import main

    for name in ("a", "b"):
        assert main(["--out", str(tmp_path / name), "--tokenizer", "v2", "--data_dir", str(tiny_db),
                     "--records", "100,101,114", "--leads", "all", "--download", "false"]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir()) and "tokens.bin" in files
    for f in files:
        if f != "meta.json":
            assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    ma, mb = (json.loads((tmp_path / n / "meta.json").read_text()) for n in "ab")
    for m in (ma, mb):  # documented: the build time and peak memory differ, and here the --out we gave
        m["build"].pop("seconds"), m["build"]["config"].pop("out")
        for proc in m["build"]["per_process"]:
            proc.pop("seconds"), proc.pop("peak_rss_mb")
    assert ma == mb


def test_two_training_runs_give_identical_weights_and_samples(tmp_path):
    from ecg2llm.lm.generate import main as generate
    from ecg2llm.lm.train import main as train

    root = tmp_path / "data"
    for i, rec in enumerate(("100", "101", "106")):
        x = synthetic_ecg(30, hr_bpm=60 + 10 * i, seed=i)
        write_wfdb(root / "mitdb", rec, np.stack([x, x], 1))
    tok = UniformBlockTokenizer(UniformBlockConfig()).save_pretrained(tmp_path / "tok")
    store = build_test_store(tmp_path / "store", tok, root, ["100", "101", "106"])
    for name in ("a", "b"):
        assert train(["--tokenizer", str(tok), "--store", str(store), "--output_dir", str(tmp_path / name),
                      "--max_steps", "4", "--n_layer", "1", "--d_model", "32", "--n_head", "2",
                      "--context_length", "32", "--batch_size", "4", "--eval_crops", "2", "--final_eval_crops", "2",
                      "--eval_every", "0", "--save_every", "0", "--figure_samples", "0", "--progress", "false",
                      "--num_threads", "1", "--seed", "3"]) == 0
        assert generate(["--model", str(tmp_path / name / "final"), "--num_samples", "2", "--seconds", "2",
                         "--seed", "7", "--out", str(tmp_path / f"gen_{name}"), "--num_threads", "1",
                         "--png", "false"]) == 0
    weights = [(tmp_path / n / "final" / "model.safetensors").read_bytes() for n in "ab"]
    assert weights[0] == weights[1]
    gens = [np.load(tmp_path / f"gen_{n}" / "tokens.npy") for n in "ab"]
    assert np.array_equal(gens[0], gens[1])
    for f in sorted(p.name for p in (tmp_path / "gen_a").iterdir() if p.suffix in (".dat", ".hea", ".npy")):
        assert (tmp_path / "gen_a" / f).read_bytes() == (tmp_path / "gen_b" / f).read_bytes(), f
