"""Safe loading (issue 6): only safetensors/JSON are read as ours; any ``torch.load`` is ``weights_only=True``;
a checkpoint folder holding an unexpected or unsafe pickle is refused before anything is unpickled."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, synthetic_ecg, write_wfdb
from lm_support import build_test_store, seed_tokenizer_dir

SOURCES = [p for d in ("tokenizer", "lm", "eval", "scripts") for p in (REPO / d).rglob("*.py")]


def test_no_unsafe_deserialization_in_the_code():
    offenders = []
    for p in SOURCES:
        text = p.read_text()
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                offenders.append(f"{p.relative_to(REPO)}: {m.group(0)}")
        for pat in (r"^\s*import pickle", r"^\s*from pickle", r"pickle\.loads?\(", r"allow_pickle\s*=\s*True",
                    r"register_for_checkpointing\("):  # Accelerate reloads registered objects unsafely
            offenders += [f"{p.relative_to(REPO)}: {pat}" for _ in re.finditer(pat, text, re.M)]
    assert len(SOURCES) > 30 and not offenders, offenders


class _Payload:
    """Unpickling this creates ``path``: proof that code ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, list[str]]:
    """A 2-step tiny training run with a checkpoint at every step."""
    from ecg2llm.lm.train import main

    tmp = tmp_path_factory.mktemp("safe")
    x = synthetic_ecg(40)
    for rec in ("100", "101", "106"):
        write_wfdb(tmp / "data" / "mitdb", rec, np.stack([x, x], 1))
    tok = seed_tokenizer_dir(tmp / "tok")
    store = build_test_store(tmp / "store", tok, tmp / "data", ["100", "101", "106"])
    args = ["--tokenizer", str(tok), "--store", str(store), "--output_dir", str(tmp / "run"), "--n_layer", "1",
            "--d_model", "32", "--n_head", "2", "--context_length", "32", "--batch_size", "2", "--eval_crops", "2",
            "--final_eval_crops", "2", "--progress", "false", "--num_threads", "1", "--figure_samples", "0",
            "--save_every", "1", "--eval_every", "0", "--save_total_limit", "3"]
    assert main([*args, "--max_steps", "2"]) == 0
    return tmp / "run", args


def test_checkpoint_holds_only_the_expected_files(run):
    ck = run[0] / "checkpoints" / "checkpoint_2"
    assert sorted(p.name for p in ck.iterdir()) == ["model.safetensors", "optimizer.bin", "random_states_0.pkl",
                                                     "trainer_state.json"]
    from accelerate.utils import load  # the loader Accelerate's load_state uses: torch.load(weights_only=True)

    for name in ("optimizer.bin", "random_states_0.pkl"):  # loads as tensors/arrays only, no code
        assert isinstance(load(ck / name, map_location="cpu"), dict)


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "extra.pt"])
def test_resume_refuses_an_unexpected_or_unsafe_pickle(run, name, tmp_path, capsys):
    from ecg2llm.lm.train import main

    out, args = run
    ck = out / "checkpoints" / "checkpoint_1"
    target, proof = ck / name, tmp_path / "code_ran"
    backup = target.read_bytes() if target.exists() else None
    target.write_bytes(pickle.dumps(_Payload(proof)))
    try:
        rc = main([*args, "--max_steps", "3", "--resume_from_checkpoint", str(ck)])
    finally:
        target.write_bytes(backup) if backup is not None else target.unlink()
    err = capsys.readouterr().err
    assert rc == 2 and not proof.exists(), err
    assert str(ck) in err and ("never writes" in err or "cannot be loaded safely" in err), err
    assert "Traceback" not in err
