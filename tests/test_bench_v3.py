"""``scripts/bench.py``'s generate stage on an LM v3 (beat stream + detail head + tokenizer v3 decode), as users
run it, on a tiny untrained LM v3 with the shipped tokenizer v3 (a few seconds)."""
import math
import shutil
import sys

import numpy as np
import pytest
import torch
from conftest import REPO


@pytest.fixture(scope="module")
def tiny_v3(tmp_path_factory):
    """An untrained 1-layer LM v3 with the shipped v3's control spec and layout, tokenizer copy and a detail head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ecg2llm.lm.beat_detail import SUBDIR, DetailConfig, DetailHead, load_detail, save_detail
    from ecg2llm.lm.model import TOKENIZER_SUBDIR, resolve_model_dir

    src = resolve_model_dir("default")
    folder = tmp_path_factory.mktemp("bench_v3") / "lm"
    cfg = LlamaConfig.from_pretrained(str(src))
    cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers = 32, 64, 1
    cfg.num_attention_heads = cfg.num_key_value_heads = 2
    cfg.head_dim = 16
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).eval().save_pretrained(str(folder))
    shutil.copytree(src / TOKENIZER_SUBDIR, folder / TOKENIZER_SUBDIR)
    shipped = load_detail(src)
    head = DetailHead(DetailConfig(**{**shipped.cfg.__dict__, "d_embed": 4, "d_hidden": 16}))
    head.codebooks.copy_(shipped.codebooks)
    save_detail(head.eval(), folder / SUBDIR)
    return folder


def test_generate_stage_times_an_lm_v3(tiny_v3):
    sys.path.insert(0, str(REPO / "scripts"))
    from benchlib.stages import stage_generate

    opts = {"device": "cpu", "gen_batches": [3], "quick": True, "model": str(tiny_v3), "lead_guidance": None,
            "beat_cache": 0.0, "kv_cache": "auto"}
    res = stage_generate(opts)
    (run,) = res["details"]["runs"]
    assert run["lm_version"] == 3 and run["batch"] == 3 and run["seconds_per_sample"] == 2.0
    assert run["beats_drawn_per_sample"][0] >= 4  # the sampler's smallest chunk of beats
    assert run["tokens_per_sample"] == run["beats_drawn_per_sample"][0] * run["tokens_per_beat"]
    parts = run["parts_s"][0]
    assert set(parts) == {"beat_stream_s", "detail_s", "decode_s"} and all(v > 0 for v in parts.values())
    assert sum(parts.values()) <= run["wall_seconds"][0] + 1e-6
    assert len(res["rows"]) == 2 and "LM v3" in res["rows"][0]["metric"]
    for row in res["rows"]:
        assert math.isfinite(row["value"]) and row["value"] > 0 and row["target"] is None  # quick: not judged


def test_synthesize_is_deterministic_and_decodes_to_mv(tiny_v3):
    """What the stage times: the same request gives the same signals; signals are finite mV of the asked length."""
    from ecg2llm.lm.beat_generate import BeatLM
    from ecg2llm.lm.request import GenerateConfig

    blm = BeatLM.from_folder(tiny_v3)
    req = GenerateConfig(num_samples=3, seconds=2.0, batch_size=3, seed=1)
    x, ann, s, _ = blm.synthesize(req)
    y, _, s2, _ = blm.synthesize(req)
    assert x.shape == (3, 720) and np.isfinite(x).all() and np.array_equal(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(s.rr, s2.rr)) and len(ann) == 3


def test_float16_cache_is_opt_in(tiny_v3):
    """LM v3 keeps its float32 cache for kv_cache "auto" (the draws of before); "float16" is asked for by name."""
    from ecg2llm.lm.beat_generate import BeatLM, kv_cache_of
    from ecg2llm.lm.kvdecode import attend_one
    from ecg2llm.lm.request import GenerateConfig

    blm = BeatLM.from_folder(tiny_v3)
    req = GenerateConfig(num_samples=8, seconds=2.0, batch_size=8, seed=2)
    assert kv_cache_of(req) == "float32" and kv_cache_of(GenerateConfig(kv_cache="float32")) == "float32"
    x = blm.synthesize(req)[0]
    assert np.array_equal(x, blm.synthesize(GenerateConfig(**{**req.__dict__, "kv_cache": "float32"}))[0])
    if attend_one() is None:
        pytest.skip("torch.compile does not work here: no float16 cache")
    half = GenerateConfig(**{**req.__dict__, "kv_cache": "float16", "guidance": 2.0, "condition": ["rhythm:N"]})
    assert kv_cache_of(half) == "float16"
    y = blm.synthesize(half)[0]
    assert y.shape == x.shape and np.isfinite(y).all()
