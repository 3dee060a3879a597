"""The sampler's speed-ups change no draw: each is checked against the code path it replaces, bit for bit.

- :class:`ecg2llm.lm.draws.ExactMultinomial` makes ``torch.multinomial``'s draws and leaves the generator
  where ``torch.multinomial`` leaves it;
- :class:`ecg2llm.lm.kvdecode.KVDecoder` with its plain arithmetic and rotary table, with a batch's rows
  split over threads, gives the logits of the module calls on the whole batch;
- :func:`ecg2llm.lm.sampler.generate_tokens` draws what the loop of before (``LogitsProcessorList`` +
  ``torch.multinomial``) drew.
"""
import threading

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


def test_windowed_draw_is_the_full_rows_draw():
    """A draw from a window of columns (the rest 0) is the draw from the full rows, and the stream after is too."""
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    e1, e2 = ExactMultinomial(g1), ExactMultinomial(g2)
    for t in range(30):
        lo, w, v = (t * 37) % 200, 5 + t % 70, 301
        s = torch.full((16, v), float("-inf"))
        s[:, lo:lo + w] = torch.randn(16, w, generator=torch.Generator().manual_seed(t)) * (1 + t % 4)
        s[:, lo + t % w] = float("-inf")  # an id of the window that is not allowed
        p = torch.softmax(s, -1)
        full = e1.draw(p)
        assert torch.equal(e2.draw(p[:, lo:lo + w].contiguous(), (lo, v)), full)
        assert bool(((full >= lo) & (full < lo + w)).all())
    e1.close(), e2.close()
    assert torch.equal(torch.rand(100, generator=g1), torch.rand(100, generator=g2))
    with pytest.raises(ValueError, match="window"):
        e1.draw(p[:, :10].contiguous(), (295, v))


@pytest.mark.parametrize("threads", [1, 2])
def test_kv_decoder_window_is_the_full_logits_columns(threads, monkeypatch):
    monkeypatch.setattr(kvd, "ROW_THREADS", threads)  # 2: one-token steps in two row groups
    model = _lm(vocab=300)
    ids = torch.randint(0, 300, (40, 12), generator=torch.Generator().manual_seed(1))
    full, part = kvd.KVDecoder(model, 40, 16), kvd.KVDecoder(model, 40, 16)
    assert torch.equal(full.step(ids[:, :6], 290)[:, 64:192], part.step(ids[:, :6], 290, (64, 192)))  # a prefill
    for j in range(6, 12):
        for lo, hi in ((0, 64), (128, 192), (256, 290), (3, 11)):  # (3, 11): 8 columns, computed whole then cut
            a = full.step(ids[:, j:j + 1], 290)
            full.pos -= 1
            assert torch.equal(a[:, lo:hi], part.step(ids[:, j:j + 1], 290, (lo, hi)))
            part.pos -= 1
        full.pos += 1
        part.pos += 1
    assert any(v for k, v in kvd._HEAD.items() if k[3] == threads)  # the window's rows alone were used
    with pytest.raises(ValueError, match="inside"):
        part.step(ids[:, :1], 290, (280, 300))


@pytest.mark.parametrize("temperature,top_k", [(1.0, 0), (0.8, 3), (1.3, 40)])
def test_generate_tokens_windows_draw_what_every_id_draws(temperature, top_k, monkeypatch):
    """Logits, mask, softmax and draw over the window of the due type only: the same tokens as over every id."""
    import ecg2llm.lm.sampler as smp

    v = 250
    model = _lm(vocab=v)
    table = torch.zeros(4, v, dtype=torch.bool)
    table[0, :200], table[1, 200:205], table[2, 130:138], table[3, [64, 70, 127]] = True, True, True, True
    mask = smp.TypeMask(table, lambda pos: pos % 4)
    assert [mask.window(p, v) for p in range(4)] == [None, (192, 250), (128, 192), (64, 128)]  # None: every id
    procs = [mask] + smp.warpers(temperature, top_k)
    prompt = torch.randint(0, 200, (40, 3), generator=torch.Generator().manual_seed(2))

    def run(windows: bool):
        monkeypatch.setattr(smp, "WINDOWS", windows)
        return smp.generate_tokens(model, prompt, 45, procs, torch.Generator().manual_seed(8), max_len=30, unit=4,
                                   head=3)

    got = run(True)
    assert any(smp._SOFTMAX.values()) and any(kvd._HEAD.values())  # windows were used (this torch, this BLAS)
    assert torch.equal(got, run(False))
    assert bool(table[torch.arange(3, 48) % 4, got[:, 3:]].all())  # every token of its slot's type


def test_generate_tokens_on_row_groups_draws_the_one_thread_tokens(monkeypatch):
    """Inside the sampling loop the calling thread runs the first row group itself and a worker the second (each
    torch on one thread): the tokens of the whole batch on one thread."""
    import ecg2llm.lm.sampler as smp

    model = _lm(vocab=250)
    table = torch.zeros(2, 250, dtype=torch.bool)
    table[0, :200], table[1, 200:] = True, True
    prompt = torch.randint(0, 200, (40, 3), generator=torch.Generator().manual_seed(3))

    def run():
        return smp.generate_tokens(model, prompt, 20, [smp.TypeMask(table, lambda pos: pos % 2)],
                                   torch.Generator().manual_seed(1), max_len=24, unit=2, head=3)

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ref = run()  # one thread, no split
        torch.set_num_threads(2)
        monkeypatch.setattr(kvd, "ROW_THREADS", 2)
        assert kvd.row_groups(40, "cpu", kvd.model_widths(model)) == 2
        calls, rows = [], kvd.KVDecoder._rows

        def spy(self, ids, *a):
            calls.append((ids.shape[0], threading.current_thread().name))
            return rows(self, ids, *a)

        monkeypatch.setattr(kvd.KVDecoder, "_rows", spy)
        got = run()
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(got, ref)
    one_token = [c for c in calls if c[0] == 20]
    assert {name.startswith("kvdecode-rows") for _, name in one_token} == {True, False}  # this thread and a worker


@pytest.mark.parametrize("exact", [True, False])
def test_draws_of_kept_rows_are_the_whole_batch_draws(exact):
    """Row retirement: drawing only rows ``rows`` of a batch gives those rows the whole batch's draws and leaves
    the generator where the whole batch would (exact draws and torch.multinomial, windowed or not)."""
    g1, g2 = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    with Draws(g1, "cpu") as d1, Draws(g2, "cpu") as d2:
        if not exact:
            d1.em = d2.em = None
        for t in range(20):
            v, lo, w = 160, (t * 13) % 64, 40
            s = torch.full((12, v), float("-inf"))
            s[:, lo:lo + w] = torch.randn(12, w, generator=torch.Generator().manual_seed(t))
            p = torch.softmax(s, -1)
            rows = torch.tensor([1, 4, 5, 11]) if t % 3 else torch.arange(12)[::2]
            win = (lo, v) if t % 2 else None
            whole = d1(p[:, lo:lo + w].contiguous(), win) if win else d1(p)
            part = p[rows][:, lo:lo + w].contiguous() if win else p[rows]
            assert torch.equal(d2(part, win, rows, 12), whole[rows])
    assert torch.equal(torch.rand(50, generator=g1), torch.rand(50, generator=g2))


def test_kv_decoder_keep_rows_keeps_their_logits():
    """A decoder whose rows are cut down gives the kept rows the logits they get in the whole batch."""
    model = _lm()
    ids = torch.randint(0, 97, (6, 40), generator=torch.Generator().manual_seed(2))
    whole, part = kvd.KVDecoder(model, 6, 40), kvd.KVDecoder(model, 6, 40)
    whole.step(ids[:, :10]), part.step(ids[:, :10])
    keep = torch.tensor([0, 3, 4])
    part.keep_rows(keep)
    for t in range(10, 40):  # one-token steps past a growth of the cache (GROW positions)
        a, b = whole.step(ids[:, t:t + 1]), part.step(ids[keep, t:t + 1])
        assert torch.allclose(a[keep], b, atol=1e-6)
