"""Unit tests of the LM's pieces: n-gram baselines, data crops, LR schedule, sampling, model vocabulary."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from ecg2llm.core.errors import ConfigError
from ecg2llm.lm.baselines import NGramModel, fit_baselines
from ecg2llm.lm.checkpoints import lr_at
from ecg2llm.lm.model import build_model, padded_vocab_size, special_ids
from ecg2llm.lm.sampling import SamplingParams, draw, sample_tokens


def _cfg(**kw):
    base = dict(n_layer=2, n_head=2, n_kv_head=None, d_model=32, d_ff=None, context_length=32, rope_theta=1e4,
                attention_dropout=0.0, tie_embeddings=True, vocab_multiple=64, init_std=0.02, leads=["MLII"])
    base.update(kw)
    return types.SimpleNamespace(**base)


# ------------------------------------------------------------------ baselines
def test_unigram_bits_equal_entropy_of_uniform_data():
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 8, 200_000)]
    m = NGramModel(1, 8, k=1.0).fit(train)
    bits = m.bits_per_token(rng.integers(0, 8, (50, 100)))
    assert bits == pytest.approx(3.0, abs=0.01)  # log2(8)


def test_bigram_learns_a_deterministic_cycle_and_beats_unigram():
    train = [np.tile(np.arange(16), 1000)]
    crops = np.tile(np.arange(16), 4)[None, :32].repeat(3, 0)
    models = fit_baselines(train, 16, crops)
    uni = models["unigram"].bits_per_token(crops)
    bi = models["bigram"].bits_per_token(crops)
    assert uni == pytest.approx(4.0, abs=0.01)
    # first token of each row costs the unigram's 4 bits, the 31 others almost nothing
    assert bi == pytest.approx(4.0 / 32, abs=0.02)
    assert models["bigram"].k in (1e-3, 1e-2, 0.1, 0.5, 1.0)


def test_bigram_probabilities_sum_to_one():
    rng = np.random.default_rng(1)
    m = NGramModel(2, 5, k=0.3).fit([rng.integers(0, 5, 500)])
    for a in range(5):
        p = np.exp2(m._log2_bigram(np.full(5, a), np.arange(5), 0.3))
        assert p.sum() == pytest.approx(1.0, abs=1e-9)


# ------------------------------------------------------------------ vocabulary and model
def test_special_ids_follow_the_codebook_and_vocab_is_padded():
    ids = special_ids(4096)
    assert ids == {"pad_token_id": 4096, "bos_token_id": 4097, "eos_token_id": 4098}
    assert padded_vocab_size(4096) == 4160 and padded_vocab_size(4096) % 64 == 0
    assert padded_vocab_size(61) == 64


def test_build_model_sets_special_ids_in_config_and_generation_config():
    m = build_model(_cfg(), {"codebook_size": 100, "weights_hash": "x", "config": {}})
    for c in (m.config, m.generation_config):
        assert (c.pad_token_id, c.bos_token_id, c.eos_token_id) == (100, 101, 102)
    assert m.config.vocab_size == 128
    assert m.config.ecg_codebook_size == 100 and m.config.ecg_tokenizer["weights_hash"] == "x"
    m.config.to_json_string()  # JSON-serializable with the tokenizer record


def test_build_model_rejects_bad_heads():
    with pytest.raises(ConfigError, match="multiple of n_head"):
        build_model(_cfg(d_model=30, n_head=4), {"codebook_size": 10})


# ------------------------------------------------------------------ schedule
def test_lr_schedule_warmup_cosine_floor_and_independent_of_max_steps():
    cfg = types.SimpleNamespace(learning_rate=1.0, min_learning_rate=0.1, warmup_steps=10, max_steps=110,
                                lr_decay_steps=None)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)
    assert lr_at(110, cfg) == pytest.approx(0.1) and lr_at(500, cfg) == pytest.approx(0.1)
    short = types.SimpleNamespace(**{**vars(cfg), "max_steps": 50, "lr_decay_steps": 110})
    assert [lr_at(s, short) for s in range(50)] == [lr_at(s, cfg) for s in range(50)]


# ------------------------------------------------------------------ sampling
def test_draw_respects_top_k_and_top_p():
    g = torch.Generator().manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    k2 = draw(logits, SamplingParams(top_k=2), g)
    assert set(k2.tolist()) == {0, 1}
    p = draw(logits, SamplingParams(top_p=0.7), g)  # smallest set reaching 0.7: {0, 1}
    assert set(p.tolist()) == {0, 1}
    full = draw(logits, SamplingParams(), g)
    freq = np.bincount(full.numpy(), minlength=4) / len(full)
    assert np.allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.03)


def test_sampling_params_validate():
    with pytest.raises(ConfigError):
        SamplingParams(temperature=0)
    with pytest.raises(ConfigError):
        SamplingParams(top_p=0)


def test_sample_tokens_ids_in_codebook_deterministic_and_longer_than_context():
    torch.manual_seed(0)
    m = build_model(_cfg(context_length=16), {"codebook_size": 50}).eval()
    a = sample_tokens(m, 3, 40, batch_size=2, seed=7)  # 40 > context: sliding window
    b = sample_tokens(m, 3, 40, batch_size=2, seed=7)
    c = sample_tokens(m, 3, 40, batch_size=2, seed=8)
    assert a.shape == (3, 40) and a.min() >= 0 and a.max() < 50
    assert (a == b).all() and not (a == c).all()
    with_prompt = sample_tokens(m, 2, 5, prompt=np.arange(30) % 50, seed=0)  # prompt longer than context
    assert with_prompt.shape == (2, 5)


def test_sampling_does_not_touch_global_rng():
    m = build_model(_cfg(), {"codebook_size": 20}).eval()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    sample_tokens(m, 2, 5, seed=0)
    assert torch.equal(before, torch.get_rng_state())


def test_static_cache_decoding_matches_full_forward():
    """The fast sampling path (static KV cache, one token at a time) sees the same logits as a full pass."""
    from transformers import StaticCache

    torch.manual_seed(0)
    m = build_model(_cfg(), {"codebook_size": 50}).eval()
    x = torch.randint(0, 50, (2, 12))
    x[:, 0] = m.config.bos_token_id
    with torch.no_grad():
        full = m(input_ids=x).logits
        cache = StaticCache(config=m.config, max_cache_len=12)
        m(input_ids=x[:, :6], cache=cache, use_cache=True, cache_position=torch.arange(6))
        steps = [m(input_ids=x[:, t:t + 1], cache=cache, use_cache=True,
                   cache_position=torch.tensor([t])).logits[:, -1] for t in range(6, 12)]
    assert torch.allclose(torch.stack(steps, 1), full[:, 6:], atol=1e-5)

