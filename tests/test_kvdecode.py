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

    from lm.kvdecode import KVDecoder, supports

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
    import lm.guidance as guidance

    kw = dict(n_samples=3, n_codes=70, conditions=["rhythm:N"], batch_size=3, seed=4)  # crosses the window
    fast = guidance.sample_guided(lm, **kw)
    fast_g = guidance.sample_guided(lm, guidance=2.0, **kw)
    monkeypatch.setattr(guidance, "supports", lambda model: False)
    slow = guidance.sample_guided(lm, **kw)
    slow_g = guidance.sample_guided(lm, guidance=2.0, **kw)
    assert np.array_equal(fast.codes, slow.codes) and fast.events == slow.events
    assert np.array_equal(fast_g.codes, slow_g.codes)


def test_training_mode_and_other_architectures_keep_the_transformers_path(lm):
    from lm.kvdecode import supports

    lm.train()
    try:
        assert not supports(lm)
    finally:
        lm.eval()
    assert not supports(torch.nn.Linear(2, 2))
