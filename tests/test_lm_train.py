"""End-to-end tests of ``lm/train.py`` (transformers-examples style: patch argv, run a few steps on a small
token store, assert on the written results, logs and checkpoints), on synthetic WFDB records."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, free_port, launch, launch_failure, synthetic_ecg, write_wfdb
from lm_support import UniformBlockConfig, UniformBlockTokenizer, build_test_store, seed_tokenizer_dir

from ecg2llm.lm.data import TrainBatches, tile_crops
from ecg2llm.lm.train import main
from ecg2llm.tokenizer.store import TokenStore

# 2 layers of width 32, 63-token crops: seconds per run on 2 CPU cores
TINY = ["--n_layer", "2", "--d_model", "32", "--n_head", "2", "--context_length", "64", "--batch_size", "4",
        "--eval_crops", "8", "--final_eval_crops", "16", "--eval_batch_size", "8", "--log_every", "1",
        "--progress", "false", "--num_threads", "1", "--figure_samples", "0"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Synthetic MIT-BIH-named records: 100 (test, DS2), 101 (valid), 106 and 108 (train), 40 s each."""
    root = tmp_path_factory.mktemp("lmdata")
    for i, (rec, hr) in enumerate((("100", 70), ("101", 64), ("106", 80), ("108", 95))):
        x = synthetic_ecg(40, hr_bpm=hr, seed=i)
        write_wfdb(root / "mitdb", rec, np.stack([x, -0.5 * x], 1))
    return root


@pytest.fixture(scope="module")
def seed_tok(tmp_path_factory) -> Path:
    return seed_tokenizer_dir(tmp_path_factory.mktemp("tok") / "seed")


@pytest.fixture(scope="module")
def store(tmp_path_factory, seed_tok, data_root) -> Path:
    return build_test_store(tmp_path_factory.mktemp("store") / "s", seed_tok, data_root, ["100", "101", "106", "108"])


def _log(run: Path) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())
            if "train/loss" in r}


# ------------------------------------------------------------------ data
def test_training_batches_are_a_function_of_step_micro_rank(store):
    s = TokenStore.open(store)
    tb = TrainBatches(s, 64, 4, bos_id=999, seed=3)
    a, b = tb.batch(5, 0, 0), tb.batch(5, 0, 0)
    assert torch.equal(a, b) and a.shape == (4, 64) and (a[:, 0] == 999).all()
    assert not torch.equal(a, tb.batch(5, 0, 1)) and not torch.equal(a, tb.batch(5, 1, 0))
    assert not torch.equal(a, tb.batch(6, 0, 0))
    train = np.concatenate([np.asarray(s.tokens_of(e)) for e in s.entries("train")])
    row = a[0, 1:].numpy()
    hits = np.flatnonzero(np.lib.stride_tricks.sliding_window_view(train, len(row)).__eq__(row).all(1))
    assert hits.size >= 1  # each crop is a contiguous stretch of a training record


def test_tiles_are_disjoint_deterministic_and_capped(store):
    s = TokenStore.open(store)
    full = tile_crops(s, "valid", 63)
    e = s.entries("valid")[0]
    assert full.shape == (e.n_tokens // 63, 63)
    assert np.array_equal(full.reshape(-1), np.asarray(s.tokens_of(e))[: full.size])
    capped = tile_crops(s, "valid", 63, max_crops=5)
    assert capped.shape == (5, 63) and np.array_equal(capped, tile_crops(s, "valid", 63, max_crops=5))


# ------------------------------------------------------------------ end to end
def test_train_builds_missing_store_learns_and_writes_a_complete_run(tmp_path, seed_tok, data_root):
    out, new_store = tmp_path / "run", tmp_path / "store_built_here"
    rc = main(["--tokenizer", str(seed_tok), "--store", str(new_store), "--data_dir", str(data_root),
               "--records", "100,101,106,108", "--download", "false",
               "--output_dir", str(out), "--max_steps", "40", "--learning_rate", "1e-2", "--warmup_steps", "4",
               "--eval_every", "20", "--save_every", "20", "--save_total_limit", "1", *TINY])
    assert rc == 0
    assert (new_store / "meta.json").is_file()  # built from the data because it did not exist

    losses = _log(out)
    assert sorted(losses) == list(range(1, 41))
    first, last = np.mean([losses[s] for s in (1, 2, 3)]), np.mean([losses[s] for s in (38, 39, 40)])
    assert last < first - 0.5, (first, last)

    m = json.loads((out / "metrics.json").read_text())
    for split in ("val", "test"):
        r = m[split]
        assert r["bits_per_token"] == pytest.approx(r["loss"] / math.log(2))
        assert r["ppl"] == pytest.approx(math.exp(r["loss"]))
        assert r["bits_per_second"] == pytest.approx(r["bits_per_token"] * 36.0)
        assert r["bits_per_token"] < r["unigram_bits_per_token"]  # it learned more than token frequencies
        assert r["n_tokens"] == 16 * 63
    assert m["train"]["tokens_per_second"] > 0 and m["step"] == 40

    from ecg2llm.tokenizer.base import ECGTokenizer

    tok = ECGTokenizer.from_pretrained(seed_tok)
    cfg = json.loads((out / "final" / "config.json").read_text())
    assert cfg["ecg_tokenizer"]["weights_hash"] == tok.weights_hash
    assert cfg["ecg_tokenizer"]["config"] == tok.config_dict()
    assert (cfg["pad_token_id"], cfg["bos_token_id"], cfg["eos_token_id"]) == (256, 257, 258)
    assert (out / "final" / "model.safetensors").is_file() and (out / "final" / "tokenizer" / "config.json").is_file()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint_40"]  # rotated: total_limit 1
    info = json.loads((out / "run_info.json").read_text())
    assert info["config"]["max_steps"] == 40 and "git_sha" in info
    assert {"torch", "transformers", "accelerate"} <= set(info["versions"])

    from ecg2llm.lm.model import load_lm, load_tokenizer_for

    model, folder = load_lm(out)  # a run directory resolves to its final/
    assert model.dtype == torch.float32
    assert load_tokenizer_for(model.config, folder).weights_hash == tok.weights_hash


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, seed_tok, store):
    common = ["--tokenizer", str(seed_tok), "--store", str(store), "--learning_rate", "5e-3", "--warmup_steps", "2",
              "--gradient_accumulation_steps", "2", "--save_every", "3", "--eval_every", "2",
              "--lr_decay_steps", "6", *TINY]
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    assert main([*common, "--output_dir", str(straight), "--max_steps", "6"]) == 0
    assert main([*common, "--output_dir", str(halves), "--max_steps", "3"]) == 0
    assert main([*common, "--output_dir", str(halves), "--max_steps", "6", "--resume_from_checkpoint", "latest"]) == 0
    a, b = _log(straight), _log(halves)
    assert sorted(b) == list(range(1, 7))
    for step in (4, 5, 6):
        assert b[step] == pytest.approx(a[step], abs=1e-5), step
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (straight, halves))
    assert mb["val"]["loss"] == pytest.approx(ma["val"]["loss"], abs=1e-5)


def test_checkpoint_guards(tmp_path, seed_tok, store, capsys):
    out = tmp_path / "run"
    base = ["--tokenizer", str(seed_tok), "--store", str(store), "--output_dir", str(out), "--save_every", "1", *TINY]
    # "latest" with nothing saved yet starts from scratch
    assert main([*base, "--max_steps", "1", "--resume_from_checkpoint", "latest"]) == 0
    assert "starting from scratch" in capsys.readouterr().out
    # a second fresh start would mix two runs' checkpoints: refused unless asked
    assert main([*base, "--max_steps", "2"]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    # a half-written checkpoint (no trainer_state.json) is skipped by "latest" and refused by name
    half = out / "checkpoints" / "checkpoint_9"
    half.mkdir()
    assert main([*base, "--max_steps", "2", "--resume_from_checkpoint", str(half)]) == 2
    assert "not a complete checkpoint" in capsys.readouterr().err
    assert main([*base, "--max_steps", "2", "--resume_from_checkpoint", "latest"]) == 0
    assert "resumed from" in capsys.readouterr().out and _log(out)[2] > 0
    assert main([*base, "--max_steps", "1", "--overwrite_output_dir", "true"]) == 0


def test_store_from_another_tokenizer_is_refused(tmp_path, store, capsys):
    other = seed_tokenizer_dir(tmp_path / "other")
    from ecg2llm.tokenizer import SeedTokenizer, SeedTokenizerConfig

    torch.manual_seed(1)  # same config, different weights
    SeedTokenizer(SeedTokenizerConfig(min_val=-0.05, max_val=0.05)).save_pretrained(other)
    rc = main(["--tokenizer", str(other), "--store", str(store), "--output_dir", str(tmp_path / "r"),
               "--max_steps", "1", *TINY])
    assert rc == 2 and "was built by a tokenizer" in capsys.readouterr().err


def test_two_process_cpu_launch(tmp_path, seed_tok, store):
    """``accelerate launch --cpu --num_processes 2 lm/train.py`` really trains on 2 processes (DDP, gloo)."""
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
           "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no",
           "--dynamo_backend", "no", "lm/train.py",
           "--tokenizer", str(seed_tok), "--store", str(store), "--output_dir", str(out), "--max_steps", "4",
           "--save_every", "2", "--eval_every", "2", *TINY]
    proc = launch(cmd, env, timeout=600)
    assert proc.returncode == 0, launch_failure(proc)
    info = json.loads((out / "run_info.json").read_text())
    assert info["config"]["num_processes"] == 2
    ck = out / "checkpoints" / "checkpoint_4"
    assert (ck / "random_states_0.pkl").is_file() and (ck / "random_states_1.pkl").is_file()
    m = json.loads((out / "metrics.json").read_text())
    assert m["tokens_seen"] == 4 * 2 * 4 * 64  # steps x processes x batch x context
    assert m["val"]["n_tokens"] == 16 * 63  # gathered from both processes, duplicates dropped
    assert (out / "final" / "model.safetensors").is_file()


def test_wandb_offline_run_with_figures(tmp_path, data_root, monkeypatch):
    """``--report_to wandb`` with ``WANDB_MODE=offline`` writes an offline run (and the sample figures)."""
    pytest.importorskip("wandb")
    tok_dir = tmp_path / "uniform_tok"
    UniformBlockTokenizer(UniformBlockConfig()).save_pretrained(tok_dir)
    s = build_test_store(tmp_path / "ustore", tok_dir, data_root, ["100", "101", "106"])
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wb").mkdir()
    out = tmp_path / "run"
    rc = main(["--tokenizer", str(tok_dir), "--store", str(s), "--output_dir", str(out), "--max_steps", "2",
               "--eval_every", "1", "--report_to", "wandb", "--run_name", "pytest",
               *TINY, "--figure_samples", "2", "--figure_seconds", "3"])  # the last flag wins
    assert rc == 0
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["samples_step000001.png", "samples_step000002.png"]


def test_fsdp_turns_figures_off_and_refuses_keep_best():
    """Under FSDP the parameters are sharded: main-process sampling and keep_best cannot work."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from ecg2llm.core.errors import ConfigError
    from ecg2llm.lm.config import LMTrainConfig as TrainConfig
    from ecg2llm.lm.trainer import _check_fsdp

    said = []
    acc = SimpleNamespace(distributed_type=DistributedType.FSDP, print=said.append)
    cfg = TrainConfig(figure_samples=4)
    _check_fsdp(cfg, acc)
    assert cfg.figure_samples == 0 and "figure_samples" in said[0]
    with pytest.raises(ConfigError, match="keep_best"):
        _check_fsdp(TrainConfig(keep_best=True), acc)
    ddp = SimpleNamespace(distributed_type=DistributedType.MULTI_GPU, print=said.append)
    cfg = TrainConfig(figure_samples=4, keep_best=True)
    _check_fsdp(cfg, ddp)  # DDP: nothing changes
    assert cfg.figure_samples == 4


# ------------------------------------------------------------------ input noise
def test_lattice_noise_moves_codes_one_lattice_step_and_nothing_else():
    from ecg2llm.lm.data import LatticeNoise

    levels = [8, 5, 3]  # unequal levels: the index basis matters
    noise = LatticeNoise(levels, 0.25, seed=7)
    v = noise.codebook_size
    x = torch.randint(0, v, (8, 400))
    x[:, 0] = v + 1  # BOS
    x[:, 50:60] = v + 5  # condition / label tokens
    y = noise(x, step=3)
    assert torch.equal(y, noise(x, step=3)) and not torch.equal(y, noise(x, step=4))  # f(seed, step, micro, rank)
    assert not torch.equal(y, noise(x, step=3, rank=1))
    changed = y != x
    assert torch.equal(y[x >= v], x[x >= v])  # specials never touched
    share = changed.sum().item() / (x < v).sum().item()
    assert 0.22 < share < 0.28
    basis = np.array([1, 8, 40])
    dx = (x[changed].numpy()[:, None] // basis) % levels
    dy = (y[changed].numpy()[:, None] // basis) % levels
    assert (np.abs(dx - dy).sum(1) == 1).all()  # one channel, one level
    assert (y[changed] >= 0).all() and (y[changed] < v).all()
    assert noise(x, 0) is not x and torch.equal(LatticeNoise(levels, 0.0, 7)(x, 3), x)
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        LatticeNoise(levels, 1.0, 0)


def test_input_noise_trains_on_clean_targets_and_is_refused_without_fsq(tmp_path, seed_tok, store, data_root, capsys):
    rc = main(["--tokenizer", str(seed_tok), "--store", str(store), "--output_dir", str(tmp_path / "seed"),
               "--max_steps", "1", "--input_noise", "0.1", *TINY])
    assert rc == 2 and "not an FSQ tokenizer" in capsys.readouterr().err
    assert main(["--input_noise", "1.5", "--output_dir", str(tmp_path / "bad"), *TINY]) == 2
    assert "input_noise must be in [0, 1)" in capsys.readouterr().err
    # the shipped FSQ tokenizer: same data and initial weights, so the first losses differ only by the noise
    fsq_store = tmp_path / "fsq_store"
    common = ["--tokenizer", "v2", "--store", str(fsq_store), "--data_dir", str(data_root),
              "--records", "100,101,106,108", "--download", "false", "--max_steps", "2", "--eval_every", "0", *TINY]
    assert main([*common, "--output_dir", str(tmp_path / "clean")]) == 0
    assert main([*common, "--output_dir", str(tmp_path / "noisy"), "--input_noise", "0.3"]) == 0
    clean, noisy = _log(tmp_path / "clean"), _log(tmp_path / "noisy")
    assert noisy[1] != pytest.approx(clean[1], abs=1e-6) and np.isfinite(noisy[2])
    info = json.loads((tmp_path / "noisy" / "run_info.json").read_text())
    assert json.dumps(info).count('"input_noise": 0.3') >= 1


def test_keep_best_also_judges_the_last_step(tmp_path, seed_tok, store):
    """keep_best compares every periodic validation, the last step's included: a run whose last step is its best
    keeps the last step's weights (before, the last step was never evaluated, so final/ was an earlier step)."""
    out = tmp_path / "kb"
    assert main(["--tokenizer", str(seed_tok), "--store", str(store), "--output_dir", str(out), "--max_steps", "5",
                 "--eval_every", "2", "--keep_best", "true", "--learning_rate", "5e-3", "--warmup_steps", "1",
                 *TINY]) == 0
    rows = [json.loads(r) for r in (out / "train_log.jsonl").read_text().splitlines()]
    periodic = {r["step"]: r["val/loss"] for r in rows if "val/loss" in r}
    assert sorted(periodic) == [2, 4, 5]  # steps 2 and 4 by eval_every, 5 because it is the last
    best = min(periodic, key=periodic.get)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weights_from_step"] == best
