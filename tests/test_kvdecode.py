"""lm/kvdecode.py: the filled-prefix KV cache gives transformers' logits, and the sampler the same draws."""
import numpy as np
import pytest
import torch
from lm_support import random_v2_lm


@pytest.fixture(scope="module")
def lm():
    return random_v2_lm({"beat:N": 90, "beat:V": 10, "rhythm:N": 5, "rhythm:B": 2})


def test_logits_match_transformers_for_prefill_steps_and_a_multi_token_step(lm):
    from transformers import StaticCache

    from ecg2llm.lm.kvdecode import KVDecoder, supports

    assert supports(lm)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 64, (3, 30), generator=g)
    dec = KVDecoder(lm, 3, 30)
    cache = StaticCache(config=lm.config, max_cache_len=30)
    pieces = [(0, 12), (12, 13), (13, 14), (14, 20), (20, 30)]  # prefill, two 1-token steps, two 6/10-token steps
    with torch.inference_mode():
        for a, b in pieces:
            ref = lm(input_ids=ids[:, a:b], cache=cache, use_cache=True, logits_to_keep=1,
                     cache_position=torch.arange(a, b)).logits[:, -1].float()
            got = dec.step(ids[:, a:b])
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="holds 30 positions"):
        dec.step(ids[:, :1])


def test_sampler_draws_the_same_with_either_cache(lm, monkeypatch):
    import ecg2llm.lm.guidance as guidance

    kw = dict(n_samples=3, n_codes=70, conditions=["rhythm:N"], batch_size=3, seed=4,
              kv_cache="float32")  # crosses the window; the float32 cache: the same logits, so the same draws
    fast = guidance.sample_guided(lm, **kw)
    fast_g = guidance.sample_guided(lm, guidance=2.0, **kw)
    monkeypatch.setattr(guidance, "supports", lambda model: False)
    slow = guidance.sample_guided(lm, **kw)
    slow_g = guidance.sample_guided(lm, guidance=2.0, **kw)
    assert np.array_equal(fast.codes, slow.codes) and fast.events == slow.events
    assert np.array_equal(fast_g.codes, slow_g.codes)


def test_training_mode_and_other_architectures_keep_the_transformers_path(lm):
    from ecg2llm.lm.kvdecode import supports

    lm.train()
    try:
        assert not supports(lm)
    finally:
        lm.eval()
    assert not supports(torch.nn.Linear(2, 2))


def _gqa_lm():
    """A random Llama with 4 query heads sharing 2 key/value heads (grouped-query attention)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    cfg = LlamaConfig(vocab_size=80, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("which", ["v2", "gqa"])
def test_float16_cache_stays_within_float16_rounding_of_the_model(lm, which):
    """The compact cache (float16 keys/values, compiled one-query kernel) moves logits by rounding only."""
    from transformers import StaticCache

    from ecg2llm.lm.kvdecode import KVDecoder, attend_one

    if attend_one() is None:
        pytest.skip("torch.compile does not work on this machine (no C++ compiler)")
    model = lm if which == "v2" else _gqa_lm()
    ids = torch.randint(0, 64, (3, 30), generator=torch.Generator().manual_seed(2))
    dec = KVDecoder(model, 3, 30, kv_cache="float16")
    assert dec.kv_cache == "float16" and dec.k.dtype == torch.float16
    cache = StaticCache(config=model.config, max_cache_len=30)
    worst = 0.0
    with torch.inference_mode():
        for a, b in [(0, 12)] + [(t, t + 1) for t in range(12, 24)] + [(24, 30)]:
            ref = model(input_ids=ids[:, a:b], cache=cache, use_cache=True, logits_to_keep=1,
                        cache_position=torch.arange(a, b)).logits[:, -1].float()
            got = dec.step(ids[:, a:b])
            worst = max(worst, float((got - ref).abs().max()))
            assert torch.isfinite(got).all()
    assert 0 < worst < 5e-3  # float16 rounding of keys and values, not a different model (0 = not float16)


def test_auto_cache_picks_float16_on_cpu_and_falls_back_with_one_warning(lm, monkeypatch):
    import warnings

    import ecg2llm.lm.kvdecode as kvd
    from ecg2llm.core.errors import ConfigError

    with pytest.raises(ConfigError, match="kv_cache must be one of auto, float32, float16"):
        kvd.resolve_kv_cache("fp16", "cpu")
    assert kvd.resolve_kv_cache("float32", "cpu") == "float32"
    assert kvd.resolve_kv_cache("auto", "cuda") == "float32"
    with pytest.raises(ConfigError, match="CPU path"):
        kvd.resolve_kv_cache("float16", "cuda")
    monkeypatch.setattr(kvd, "_COMPILED", {"error": "CalledProcessError: g++ not found"})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert kvd.resolve_kv_cache("auto", "cpu") == "float32"
        assert kvd.resolve_kv_cache("auto", "cpu") == "float32"
    assert len(seen) == 1 and "g++ not found" in str(seen[0].message)
    with pytest.raises(ConfigError, match="needs torch.compile.*g\\+\\+ not found"):
        kvd.resolve_kv_cache("float16", "cpu")


def test_float16_sampling_is_deterministic_and_records_its_cache(lm):
    import ecg2llm.lm.guidance as guidance
    from ecg2llm.lm.kvdecode import attend_one

    kw = dict(n_samples=3, n_codes=70, conditions=["rhythm:N"], batch_size=3, seed=4)
    a = guidance.sample_guided(lm, **kw)
    b = guidance.sample_guided(lm, **kw)
    assert a.kv_cache == ("float16" if attend_one() is not None else "float32")
    assert np.array_equal(a.codes, b.codes) and a.events == b.events
    assert a.codes.shape == (3, 70) and a.codes.min() >= 0 and a.codes.max() < 64
    assert guidance.sample_guided(lm, kv_cache="float32", **kw).kv_cache == "float32"
