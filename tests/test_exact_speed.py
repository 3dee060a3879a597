"""The sampler's speed-ups change no draw: each is checked against the code path it replaces, bit for bit.

- :class:`ecg2llm.lm.draws.ExactMultinomial` makes ``torch.multinomial``'s draws and leaves the generator
  where ``torch.multinomial`` leaves it;
- :class:`ecg2llm.lm.kvdecode.KVDecoder` with its plain arithmetic and rotary table, with a batch's rows
  split over threads, gives the logits of the module calls on the whole batch;
- :func:`ecg2llm.lm.sampler.generate_tokens` draws what the loop of before (``LogitsProcessorList`` +
  ``torch.multinomial``) drew.
"""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

import ecg2llm.lm.kvdecode as kvd
from ecg2llm.lm.draws import Draws, ExactMultinomial, exact_multinomial_ok


def _lm(vocab=97, layers=2, d=32, heads=4, kv_heads=2):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=2 * d, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


def test_exact_multinomial_is_torch_multinomial():
    assert exact_multinomial_ok()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    em = ExactMultinomial(g2)
    for t in range(40):
        s = torch.randn(24, 301, generator=torch.Generator().manual_seed(t)) * (1 + t % 5)
        if t % 2:  # a type mask: a few ids allowed, as in most LM v3 slots
            s[:, torch.arange(301) % 37 != t % 37] = float("-inf")
        p = torch.softmax(s, -1)
        assert torch.equal(torch.multinomial(p, 1, generator=g1)[:, 0], em.draw(p))
    em.close()
    assert torch.equal(torch.rand(2000, generator=g1), torch.rand(2000, generator=g2))  # the same stream after
    with pytest.raises(RuntimeError, match="probability tensor"):
        ExactMultinomial(torch.Generator().manual_seed(0)).draw(torch.full((2, 5), float("nan")))


def test_draws_fall_back_to_torch_for_a_zero_uniform():
    """An entry whose uniform would be 0 (torch would divide 0 by 0 there): that step is torch.multinomial's."""
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    em = ExactMultinomial(g2)

    class ZeroFirst:  # the stream, with the first entry's two words zeroed (u == 0)
        def __init__(self, bg):
            self.bg = bg

        def random_raw(self, n):
            out = self.bg.random_raw(n)
            out[:2] = 0
            return out

        @property
        def state(self):
            return self.bg.state

        @state.setter
        def state(self, v):
            self.bg.state = v

    em.bg = ZeroFirst(em.bg)
    p = torch.softmax(torch.randn(4, 50, generator=torch.Generator().manual_seed(1)), -1)
    assert torch.equal(em.draw(p), torch.multinomial(p, 1, generator=g1)[:, 0])  # torch's own (unzeroed) draw
    em.close()
    assert torch.equal(torch.rand(10, generator=g1), torch.rand(10, generator=g2))


@pytest.mark.parametrize("batch", [5, 8, 17, 64])
def test_kv_decoder_rows_split_and_plain_match_module_calls(batch, monkeypatch):
    model = _lm()
    ids = torch.randint(0, 97, (batch, 40), generator=torch.Generator().manual_seed(batch))
    monkeypatch.setattr(kvd, "MIN_SPLIT_BATCH", 0)  # exactness down to the smallest groups (speed: >= 32 rows)

    def run(plain: bool, threads: int):
        monkeypatch.setattr(kvd, "ROW_THREADS", threads)
        dec = kvd.KVDecoder(model, batch, 48)
        dec.plain = plain
        out = [dec.step(ids[:, :7])]
        out += [dec.step(ids[:, j:j + 1]) for j in range(7, 40)]
        return torch.stack(out)

    threads = torch.get_num_threads()
    ref_many = run(False, 1)  # the module calls, the whole batch at once (the code of before), torch's threads
    torch.set_num_threads(1)
    try:
        ref = run(False, 1)  # ... and on one thread
        assert kvd._plain_llama(model)
        assert torch.equal(run(True, 1), ref)  # plain arithmetic, rotary table
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(run(True, 1), ref_many)
    split = run(True, 2)  # rows over two threads where the BLAS gives the groups the whole batch's bits
    groups = kvd.row_groups(batch, "cpu", kvd.KVDecoder(model, batch, 8).widths())
    assert groups == 1 if batch < 2 * kvd.MIN_ROWS else groups == 2  # (this MKL: groups of >= 4 rows are exact)
    assert torch.equal(split, ref if groups > 1 else ref_many)


def test_generate_tokens_draws_what_the_loop_of_before_drew():
    from ecg2llm.lm.sampler import Branch, TypeMask, generate_tokens, warpers

    model = _lm(vocab=61)
    table = torch.zeros(3, 61, dtype=torch.bool)
    table[0, :20], table[1, 20:23], table[2, 23:] = True, True, True
    procs = [TypeMask(table, lambda pos: pos % 3)] + warpers(0.9, 0, 0.95)
    prompt = torch.randint(0, 61, (12, 4), generator=torch.Generator().manual_seed(0))
    got = generate_tokens(model, prompt, 30, procs, torch.Generator().manual_seed(5), max_len=24, unit=3, head=4)

    gen, branch = torch.Generator().manual_seed(5), Branch(model, 24, 4, 3)  # the loop of before, by hand
    out, pl = prompt.clone(), LogitsProcessorList(procs)
    with torch.inference_mode():
        for _ in range(30):
            probs = torch.softmax(pl(out, branch.logits(out)).float(), -1)
            out = torch.cat([out, torch.multinomial(probs, 1, generator=gen)], 1)
    assert torch.equal(got, out)
    with Draws(torch.Generator().manual_seed(0), "cpu") as d:
        assert d.em is not None  # the exact draws are in use on CPU
