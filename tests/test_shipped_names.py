"""Shipped names: ``default`` is LM v3 on tokenizer v3, ``conditional`` LM v2 (``pretrained/aliases.json``); the
v2 models stay loadable as ``v2`` / ``v2-conditional``; LM v3 forecasts a real prefix from its beats."""
import json

import numpy as np
import pytest

from ecg2llm.core.errors import ConfigError, ECG2LLMError
from ecg2llm.core.hub import resolve_folder, shipped_aliases, shipped_name
from ecg2llm.lm.model import PRETRAINED_DIR as LM_DIR
from ecg2llm.lm.model import resolve_model_dir
from ecg2llm.tokenizer.base import PRETRAINED_DIR as TOK_DIR
from ecg2llm.tokenizer.base import ECGTokenizer

needs_v3 = pytest.mark.skipif(not (LM_DIR / "v3" / "config.json").is_file(), reason="no shipped LM v3")


def test_aliases_name_shipped_folders():
    for root in (TOK_DIR, LM_DIR):
        table = shipped_aliases(root)
        assert table["default"] == "v3"
        for name, folder in table.items():
            assert (root / folder / "config.json").is_file(), (root, name, folder)
            assert not (root / name).exists(), f"{root / name} would shadow the alias {name!r}"
    assert shipped_name("conditional", LM_DIR) == "v2-conditional" and shipped_name("v2", LM_DIR) == "v2"


def test_default_tokenizer_is_v3_and_v2_stays_loadable():
    d, v3, v2 = (ECGTokenizer.from_pretrained(n) for n in ("default", "v3", "v2"))
    assert type(d).__name__ == "BeatTokenizer" and d.weights_hash == v3.weights_hash
    assert type(v2).__name__ != "BeatTokenizer" and v2.weights_hash != v3.weights_hash


def test_default_lm_is_v3_and_conditional_lm_v2():
    assert resolve_model_dir("default") == resolve_model_dir("v3")
    assert resolve_model_dir("conditional") == resolve_model_dir("v2-conditional")
    assert resolve_model_dir("v2").name == "v2" and resolve_model_dir("v2-conditional").name == "v2-conditional"


def test_bad_alias_files_give_one_clear_line(tmp_path):
    (tmp_path / "aliases.json").write_text("{not json")
    with pytest.raises(ECG2LLMError, match="aliases.json is not valid JSON"):
        shipped_aliases(tmp_path)
    (tmp_path / "aliases.json").write_text(json.dumps({"default": 3}))
    with pytest.raises(ECG2LLMError, match="must map names to folder names"):
        shipped_aliases(tmp_path)
    (tmp_path / "aliases.json").write_text(json.dumps({"default": "gone"}))
    with pytest.raises(ECG2LLMError, match="shipped models: default \\(= gone\\)"):
        resolve_folder("default", tmp_path)


@pytest.fixture(scope="module")
def pipe():
    from ecg2llm import ECGPipeline

    return ECGPipeline.from_pretrained("default", device="cpu")


@needs_v3
def test_v3_forecast_continues_the_prefix(pipe, data_dir):
    from ecg2llm.tokenizer import read_record

    x = read_record("100", data_dir=data_dir).signal[360 * 60: 360 * 68]
    f = pipe.forecast(x, fs=360, seconds=3, num_samples=4, seed=0, batch_size=2)
    assert f.shape == (4, 1080) and f.dtype == np.float32 and np.isfinite(f).all()
    assert np.array_equal(f, pipe.forecast(x, fs=360, seconds=3, num_samples=4, seed=0, batch_size=2))
    assert not np.array_equal(f[0], f[1])  # sampled continuations differ
    # the continuation keeps beating near the prefix's rate (record 100: ~0.8 s RR): 2-6 beats in 3 s
    for y in f:
        b = pipe.tokenizer.encode_beats(y, 360)
        assert 2 <= int((b.kind == 0).sum()) <= 6
    # a resampled prefix works the same way (250 Hz in)
    from ecg2llm.tokenizer.data import resample

    assert pipe.forecast(resample(x, 360, 250), fs=250, seconds=1, num_samples=2).shape == (2, 360)


@needs_v3
def test_v3_forecast_refuses_a_prefix_without_beats(pipe):
    with pytest.raises(ConfigError, match="no heartbeat found in the prefix"):
        pipe.forecast(np.zeros(360 * 4, np.float32), fs=360, seconds=1, num_samples=2)
    with pytest.raises(ConfigError, match="prefix is empty"):
        pipe.forecast(np.zeros(0, np.float32), fs=360, seconds=1, num_samples=2)
