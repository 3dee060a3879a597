"""Entry points run as documented, fail with one line and a non-zero exit on bad input."""
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def run(*args, env=None):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def test_tokenize_script_builds_store_and_does_not_shadow_stdlib(tiny_db, tmp_path):
    from ecg2llm.tokenizer import SeedTokenizer, SeedTokenizerConfig

    torch.manual_seed(0)
    tok = SeedTokenizer(SeedTokenizerConfig()).save_pretrained(tmp_path / "tok")
    r = run("tokenizer/tokenize_db.py", "--out", str(tmp_path / "store"), "--tokenizer", str(tok),
            "--data_dir", str(tiny_db), "--records", "100,101", "--download", "false")
    assert r.returncode == 0, r.stderr
    assert "token store" in r.stdout and (tmp_path / "store" / "meta.json").is_file()


def test_missing_data_is_one_line_error(tmp_path):
    r = run("-m", "ecg2llm.tokenizer.tokenize_db", "--out", str(tmp_path / "s"), "--tokenizer", "v2",
            "--data_dir", str(tmp_path / "none"), "--download", "false")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.startswith("error: ")
    assert not (tmp_path / "s").exists()


def test_train_rejects_unknown_config_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tokenizer_type: seed\nblock_sizes: 10\n")
    r = run("tokenizer/train.py", "--config", str(cfg))
    assert r.returncode == 2 and "unknown key" in r.stderr and "Traceback" not in r.stderr


def test_seed_train_entry_point_writes_self_describing_run(tiny_db, tmp_path):
    out = tmp_path / "run"
    r = run("tokenizer/train.py", "--config", "configs/tokenizer/seed_n10_scalar.yaml", "--data_dir", str(tiny_db),
            "--split", "intra_record", "--epochs", "1", "--output_dir", str(out))
    assert r.returncode == 0, r.stderr
    import json

    info = json.loads((out / "run_info.json").read_text())
    assert info["config"]["block_size"] == 10 and "torch" in info["versions"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_quantized"]["tokens_per_second"] == 36.0 and m["test_quantized"]["bits_per_second"] == 288.0
    assert (out / "tokenizer" / "model.safetensors").is_file()
