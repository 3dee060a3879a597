"""Tests of ``lm/generate.py``: WFDB output that reads back, reproducibility, prompts, tokenizer checks.

The LM here is untrained (random weights) and its tokenizer is the stateless toy of ``lm_support``: what
is tested is the plumbing from ids to millivolt records, not sample quality.
"""
from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_ecg, write_wfdb
from lm_support import UniformBlockConfig, UniformBlockTokenizer, seed_tokenizer_dir

from ecg2llm.lm.generate import main
from ecg2llm.lm.model import PRETRAINED_DIR, TOKENIZER_SUBDIR, build_model, tokenizer_record


def _save_lm(folder: Path, tok, context_length: int = 48) -> Path:
    """What lm/train.py writes into <output_dir>/final, for an untrained 2-layer model."""
    cfg = types.SimpleNamespace(n_layer=2, n_head=2, n_kv_head=None, d_model=32, d_ff=None,
                                context_length=context_length, rope_theta=1e4, attention_dropout=0.0,
                                tie_embeddings=True, vocab_multiple=64, init_std=0.02, leads=["MLII"])
    torch.manual_seed(0)
    model = build_model(cfg, {**tokenizer_record(tok), "source": "test"})
    model.save_pretrained(folder)
    tok.save_pretrained(folder / TOKENIZER_SUBDIR)
    return folder


@pytest.fixture(scope="module")
def uniform_lm(tmp_path_factory) -> Path:
    return _save_lm(tmp_path_factory.mktemp("lm") / "final", UniformBlockTokenizer(UniformBlockConfig()))


def test_generated_records_read_back_at_the_requested_length(tmp_path, uniform_lm):
    import wfdb

    out = tmp_path / "gen"
    # 4 s = 144 tokens > the 48-token context: the sliding window is exercised
    assert main(["--model", str(uniform_lm), "--num-samples", "3", "--seconds", "4", "--out", str(out),
                 "--seed", "1", "--batch_size", "2"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["samples"]) == 3 and m["fs"] == 360.0 and m["units"] == "mV"
    for s in m["samples"]:
        rec = wfdb.rdrecord(str(out / s["name"]))
        assert rec.sig_len == 4 * 360 and rec.fs == 360 and rec.units == ["mV"] and rec.sig_name == ["MLII"]
        x = np.load(out / s["npy"])
        assert x.dtype == np.float32 and x.shape == (4 * 360,)
        assert np.abs(rec.p_signal[:, 0] - x).max() <= 0.5e-3 + 1e-6  # format 16 at 1 µV per unit
        assert (out / s["png"]).is_file()
        assert np.all(np.abs(x) <= 2.0)  # the toy tokenizer's levels lie in [-2, 2] mV
    assert np.load(out / "tokens.npy").shape == (3, 144)


def test_same_seed_same_output_other_seed_other_output(tmp_path, uniform_lm):
    args = ["--model", str(uniform_lm), "--num-samples", "2", "--seconds", "2", "--top-k", "20", "--top-p", "0.9",
            "--temperature", "0.9"]
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert main([*args, "--out", str(tmp_path / name), "--seed", seed]) == 0
    a, b, c = (np.load(tmp_path / n / "tokens.npy") for n in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert (tmp_path / "a" / "sample_001.dat").read_bytes() == (tmp_path / "b" / "sample_001.dat").read_bytes()


def test_prompted_generation_keeps_the_real_prefix(tmp_path, uniform_lm):
    root = tmp_path / "data"
    x = synthetic_ecg(10, seed=4)
    write_wfdb(root / "mitdb", "100", np.stack([x, -x], 1))
    out = tmp_path / "gen"
    assert main(["--model", str(uniform_lm), "--num-samples", "2", "--seconds", "1.5", "--out", str(out),
                 "--prompt-record", "100", "--prompt-seconds", "2", "--prompt-start", "1",
                 "--data_dir", str(root)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    p = m["samples"][0]["prompt"]
    assert p["tokens"] == 72 and p["seconds"] == pytest.approx(2.0) and p["record"] == "100"
    assert m["format"] == "ecg2llm.ecg-folder" and m["version"] == 1
    tok = UniformBlockTokenizer(UniformBlockConfig())
    from ecg2llm.tokenizer.data import read_record

    real = read_record("100", root, lead="MLII", annotations=False).signal[360:360 + 720]
    expect = tok.decode(tok.encode(real, 360)[0], None)
    for s in m["samples"]:
        y = np.load(out / s["npy"])
        assert len(y) == int(3.5 * 360)
        assert np.allclose(y[:720], expect)


def test_mismatched_or_stateful_tokenizers_are_refused(tmp_path, uniform_lm, capsys):
    # another config
    other = tmp_path / "other"
    UniformBlockTokenizer(UniformBlockConfig(levels=32)).save_pretrained(other)
    assert main(["--model", str(uniform_lm), "--tokenizer", str(other), "--out", str(tmp_path / "g1")]) == 2
    assert "trained with" in capsys.readouterr().err
    # same config, other weights
    tok = UniformBlockTokenizer(UniformBlockConfig())
    tok.model.centres.mul_(1.1)
    tok.save_pretrained(other)
    assert main(["--model", str(uniform_lm), "--tokenizer", str(other), "--out", str(tmp_path / "g2")]) == 2
    assert "weights hash" in capsys.readouterr().err
    # a tokenizer whose decode needs side information cannot turn generated ids into mV
    from ecg2llm.tokenizer.base import ECGTokenizer

    seed_lm = _save_lm(tmp_path / "seed_lm", ECGTokenizer.from_pretrained(seed_tokenizer_dir(tmp_path / "seed")))
    assert main(["--model", str(seed_lm), "--out", str(tmp_path / "g3")]) == 2
    assert "needs per-window side information" in capsys.readouterr().err
    assert not (tmp_path / "g1").exists() and not (tmp_path / "g3").exists()


def test_output_folder_of_something_else_is_not_overwritten(tmp_path, uniform_lm, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("precious")
    assert main(["--model", str(uniform_lm), "--out", str(busy)]) == 2
    assert (busy / "thesis.tex").read_text() == "precious"
    assert "not an earlier output" in capsys.readouterr().err


@pytest.mark.skipif(not (PRETRAINED_DIR / "v2" / "config.json").is_file(), reason="no shipped default LM yet")
def test_default_model_generates_after_install(tmp_path):
    import wfdb

    assert main(["--model", "v2", "--num-samples", "2", "--seconds", "10", "--out", str(tmp_path / "g")]) == 0
    rec = wfdb.rdrecord(str(tmp_path / "g" / "sample_000"))
    assert rec.units == ["mV"] and rec.sig_len == int(10 * rec.fs)
    assert np.isfinite(rec.p_signal).all() and 0.05 < np.std(rec.p_signal) < 5.0


def test_generate_or_reuse_reuses_only_the_same_generation(tmp_path, uniform_lm):
    from ecg2llm.lm.synthesize import GenerateConfig, generate_or_reuse

    cfg = GenerateConfig(model=str(uniform_lm), num_samples=2, seconds=1, out=str(tmp_path / "g"), png=False)
    logs = []
    generate_or_reuse(cfg, log=logs.append)
    first = (tmp_path / "g" / "sample_000.npy").read_bytes()
    generate_or_reuse(cfg, log=logs.append)
    assert len(logs) == 1 and "reusing" in logs[0]
    # a folder written before a setting existed still matches while that setting is at its default
    man_path = tmp_path / "g" / "manifest.json"
    man = json.loads(man_path.read_text())
    del man["config"]["top_p"]
    man_path.write_text(json.dumps(man))
    generate_or_reuse(cfg, log=logs.append)
    assert len(logs) == 2
    # another seed is another generation: written again, different samples
    other = GenerateConfig(**{**cfg.__dict__, "seed": 5})
    generate_or_reuse(other, log=logs.append)
    assert len(logs) == 2 and (tmp_path / "g" / "sample_000.npy").read_bytes() != first
