"""``tokenizer/tokenize_db.py`` under a real 2-process ``accelerate launch`` (CPU, gloo): the sharded store holds
byte for byte the tokens of a one-process build, under the same global index; a failing process leaves the
previous store."""
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, free_port, launch, launch_failure

from ecg2llm.tokenizer.build_store import TokenizeConfig, build_store
from ecg2llm.tokenizer.shards import ShardedArray
from ecg2llm.tokenizer.store import TokenStore

RECORDS = "100,101,114"


def _launch(launcher: list[str], out, tiny_db) -> subprocess.CompletedProcess:
    if "--num_processes" in launcher and "--main_process_port" not in launcher:
        launcher = [*launcher, "--main_process_port", str(free_port())]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "tokenizer/tokenize_db.py", "--out", str(out),
           "--data_dir", str(tiny_db), "--records", RECORDS, "--leads", "all", "--download", "false"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled", "HOME": str(out.parent)}
    return launch(cmd, env, timeout=300)


@pytest.fixture
def one_process_store(tiny_db, tmp_path):
    cfg = TokenizeConfig(out=str(tmp_path / "one"), data_dir=str(tiny_db), records=RECORDS.split(","),
                         leads=["all"], download=False)
    return build_store(cfg, progress=False)


def test_two_process_store_equals_one_process_store(tiny_db, tmp_path, one_process_store):
    out = tmp_path / "two"
    r = _launch(["--config_file", str(REPO / "configs/accelerate/cpu_2proc.yaml")], out, tiny_db)
    assert r.returncode == 0, launch_failure(r)
    assert "on 2 process(es)" in r.stdout, r.stdout
    two, one = TokenStore.open(out), one_process_store
    assert two.meta["format_version"] == 2 and len(two.shard_paths) == 2 and isinstance(two.tokens, ShardedArray)
    per = two.meta["build"]["per_process"]
    assert [p["rank"] for p in per] == [0, 1] and all(p["entries"] > 0 for p in per)
    assert sum((p["records"] for p in per), []) == RECORDS.split(",")  # contiguous runs, in order
    assert json.loads((out / "index.json").read_text()) == json.loads((one.path / "index.json").read_text())
    for e in one.entries():  # byte-identical tokens per (record, lead)
        assert np.asarray(two.tokens_of(two.get(e.record, e.lead))).tobytes() == np.asarray(one.tokens_of(e)).tobytes()
    shards = b"".join((p / "tokens.bin").read_bytes() for p in two.shard_paths)
    assert shards == (one.path / "tokens.bin").read_bytes()


def test_a_failing_process_leaves_the_previous_store(tiny_db, tmp_path, one_process_store):
    out = one_process_store.path  # replace the one-process store...
    before = (out / "tokens.bin").read_bytes()
    dat = tiny_db / "mitdb" / "114.dat"  # ...with a build whose last record (the second process's) is truncated
    dat.write_bytes(dat.read_bytes()[:1000])
    r = _launch(["--cpu", "--num_processes", "2"], out, tiny_db)
    assert r.returncode != 0
    assert "114" in r.stderr and "truncated" in r.stderr, r.stderr[-3000:]
    assert (out / "tokens.bin").read_bytes() == before and TokenStore.open(out).meta["format_version"] == 1
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.parametrize("name,kind,n", [("cpu_2proc", "MULTI_CPU", 2), ("single_gpu_bf16", "NO", 1),
                                         ("multi_gpu_ddp", "MULTI_GPU", 8), ("multi_node_ddp", "MULTI_GPU", 16),
                                         ("fsdp", "FSDP", 8)])
def test_accelerate_configs_load(name, kind, n):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
    assert cfg.distributed_type.value == kind and cfg.num_processes == n
    assert cfg.mixed_precision == ("no" if name == "cpu_2proc" else "bf16")
    if name == "fsdp":
        assert cfg.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    if name == "multi_node_ddp":
        assert cfg.num_machines == 2 and cfg.main_process_ip and cfg.main_process_port
