"""Crash safety with real kills (issue 6): SIGKILL a tokenize run and a training run midway.

* ``tokenizer/tokenize_db.py`` killed after it has written part of a new store leaves the previous store
  byte for byte (or no store when there was none), never a half one; the next run cleans the dead
  run's temporary folder.
* ``lm/train.py`` killed midway and run again with ``--resume_from_checkpoint latest`` continues with the
  same data and the same losses as an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, synthetic_ecg, write_wfdb
from lm_support import build_test_store, seed_tokenizer_dir

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
       "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}

# Runs tokenizer/tokenize_db.py's main() with StoreWriter.add slowed after the first record, so that the
# test can kill it while the new store is half written.
_SLOW_TOKENIZE = """
import sys, time
from ecg2llm.tokenizer import store
real = store.StoreWriter.add
def add(self, *a, **k):
    e = real(self, *a, **k)
    self._tokens.flush()
    print("WROTE", e.record, flush=True)
    time.sleep(60)
    return e
store.StoreWriter.add = add
from ecg2llm.tokenizer.tokenize_db import main
sys.exit(main(sys.argv[1:]))
"""


def _kill_after(proc: subprocess.Popen, ready, timeout: float = 300.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` is true (and in any case, so no process outlives the test)."""
    t0 = time.monotonic()
    try:
        while not ready():
            assert proc.poll() is None, f"finished before the kill: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() - t0 < timeout, "never reached the kill point"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def seed_tok(tmp_path_factory) -> Path:
    return seed_tokenizer_dir(tmp_path_factory.mktemp("tok") / "seed")


@pytest.mark.parametrize("previous", [True, False], ids=["over_previous_store", "no_previous_store"])
def test_killed_tokenize_leaves_previous_store_or_none(previous, tiny_db, seed_tok, tmp_path):
    from ecg2llm.tokenizer.build_store import TokenizeConfig, build_store
    from ecg2llm.tokenizer.store import TokenStore

    out = tmp_path / "store"
    cfg = TokenizeConfig(out=str(out), tokenizer=str(seed_tok), data_dir=str(tiny_db), records=["100"],
                         download=False)
    before = None
    if previous:
        build_store(cfg, progress=False)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_TOKENIZE, "--out", str(out), "--tokenizer", str(seed_tok),
                             "--data_dir", str(tiny_db), "--records", "100,101,114", "--download", "false"],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("WROTE 100")  # part of the new store is on disk now
    half = list(tmp_path.glob(".store.tmp-*"))
    assert len(half) == 1 and (half[0] / "tokens.bin").stat().st_size > 0
    _kill_after(proc, lambda: True)

    if previous:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert [e.record for e in TokenStore.open(out).entries()] == ["100"]
    else:
        assert not out.exists()
    # the next run succeeds and removes the dead run's temporary folder
    build_store(cfg, progress=False)
    assert not list(tmp_path.glob(".store.tmp-*")) and TokenStore.open(out).n_tokens() > 0


TINY = ["--n_layer", "2", "--d_model", "32", "--n_head", "2", "--context_length", "64", "--batch_size", "4",
        "--eval_crops", "8", "--final_eval_crops", "16", "--eval_batch_size", "8", "--log_every", "1",
        "--progress", "false", "--num_threads", "1", "--figure_samples", "0", "--learning_rate", "5e-3",
        "--warmup_steps", "2", "--lr_decay_steps", "20", "--eval_every", "0", "--save_every", "1",
        "--save_total_limit", "2"]


def _log(run: Path) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())
            if "train/loss" in r}


def test_killed_training_resumes_with_the_same_data_and_losses(tmp_path):
    from ecg2llm.lm.train import main

    root = tmp_path / "data"
    for i, rec in enumerate(("100", "101", "106", "108")):
        x = synthetic_ecg(40, hr_bpm=60 + 8 * i, seed=i)
        write_wfdb(root / "mitdb", rec, np.stack([x, -0.5 * x], 1))
    tok = seed_tokenizer_dir(tmp_path / "tok")
    store = build_test_store(tmp_path / "store", tok, root, ["100", "101", "106", "108"])
    common = ["--tokenizer", str(tok), "--store", str(store), *TINY]

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "lm/train.py", *common, "--output_dir", str(killed),
                             "--max_steps", "100000"], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    from ecg2llm.lm.checkpoints import complete_checkpoints

    # Checkpoints rotate (save_total_limit 2): checkpoint_3 lives only ~2 steps, so wait for any complete
    # checkpoint at step >= 3 rather than for that one folder (polling could miss it on a fast machine).
    def past_step_3() -> bool:
        return any(int(c.name.split("_")[1]) >= 3 for c in complete_checkpoints(killed))

    _kill_after(proc, past_step_3)

    k = int(complete_checkpoints(killed)[-1].name.split("_")[1])
    assert k >= 3 and not (killed / "final").exists()
    n = k + 3

    assert main([*common, "--output_dir", str(killed), "--max_steps", str(n),
                 "--resume_from_checkpoint", "latest"]) == 0
    straight = tmp_path / "straight"
    assert main([*common, "--output_dir", str(straight), "--max_steps", str(n)]) == 0

    a, b = _log(straight), _log(killed)
    assert sorted(b) == list(range(1, n + 1))  # steps logged after the last checkpoint by the killed run are dropped
    for step in range(1, n + 1):  # before the kill: same data order; after the resume: same next losses
        assert b[step] == pytest.approx(a[step], abs=1e-5), step
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (straight, killed))
    assert mb["val"]["loss"] == pytest.approx(ma["val"]["loss"], abs=1e-5)
