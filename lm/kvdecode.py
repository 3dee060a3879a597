"""Incremental decoding of the Llama LM with a preallocated KV cache that attention reads only as far as filled.

Why not ``transformers``' ``StaticCache``: on CPU, generation is bound by reading the KV cache (the LM v2 at
batch 128 and a 1080-token context reads ~180 MB per layer per step), and a static cache makes every step
attend over its whole length through a mask -- positions not yet written included, and the masked SDPA
path is the slowest one. :class:`KVDecoder` keeps the same preallocated buffers (no reallocation, no
``torch.cat`` per step) but hands attention only the filled prefix, with no mask for one-token steps
(causality is implied) and ``is_causal`` for the prefill. It runs the model's own modules (embedding,
RMSNorms, projections, rotary embedding, MLP, head), so the weights and the arithmetic are those of
``LlamaForCausalLM``.

Two caches (``kv_cache=``, see :func:`resolve_kv_cache`):

* ``"float32"``: keys and values in the model's dtype, attention by SDPA; the logits agree with
  ``model(...)`` to float rounding (``tests/test_kvdecode.py``).
* ``"float16"`` (CPU): keys and values stored in float16, half the bytes, and one-token steps attend through a
  small ``torch.compile``'d kernel that reads float16 and accumulates in float32 (:func:`attend_one`). On
  CPU, SDPA with one query row runs its matrix kernels at a fraction of their speed and a float16 SDPA is
  slower still; the compiled kernel is a fused multiply-reduce that streams the cache once: attention
  2-2.5x faster, generation 1.3x (78.6 -> 103 ECG-s/s, ``docs/speed.md``). Logits move by float16
  rounding of the keys and values (< 5e-3; the test bounds them), so the same seed can draw a different
  token where two are nearly tied: the same distribution, not the same draws as ``"float32"``.

``"auto"`` (the default of every sampling entry point) is ``"float16"`` on CPU when ``torch.compile`` works
on this machine (it needs a C++ compiler; probed once per process on a tiny input) and ``"float32"``
otherwise, with one warning saying why.

Used by :func:`ecg2llm.lm.guidance.sample_guided` (LM v2) and :class:`ecg2llm.lm.sampler.Branch` (LM v3, float32).
:func:`supports` says whether a model is the plain Llama layout this covers; anything else keeps the
``transformers`` path.

Speed without other bits (2026-12-07; ``docs/speed.md``, "LM v3 generation"): a step runs the layers'
operations without their module calls, with the rotary table computed once (each checked equal, bit for
bit, to the module calls once per model / position sample), and on CPU a one-token step of >= 32 rows runs
its rows in two (or more) groups on one-thread workers (:func:`row_groups`; every operation of the LM is
per row, and the BLAS's products of >= 4 rows are checked equal to the whole batch's once per batch size):
both cores work on every operation, not only on the few that torch splits itself.
"""
from __future__ import annotations

import contextlib
import os
import warnings

import torch
import torch.nn.functional as F

from ecg2llm.core.errors import ConfigError

KV_CACHES = ("auto", "float32", "float16")


def supports(model) -> bool:
    """Whether ``model`` is a ``LlamaForCausalLM`` with default RoPE and no sliding window (what we train)."""
    cfg = getattr(model, "config", None)
    if type(model).__name__ != "LlamaForCausalLM" or cfg is None:
        return False
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_type", "default")
    return rope == "default" and not getattr(cfg, "sliding_window", None) and not model.training


def _attend_one_eager(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of one query per row: ``q`` ``(B, H_kv, G, 1, d)`` float32, already scaled; ``k``, ``v``
    ``(B, H_kv, 1, L, d)`` in any float dtype. Returns ``(B, H_kv, G, d)`` float32 (softmax in float32)."""
    s = (k.float() * q).sum(-1, keepdim=True)  # (B, H_kv, G, L, 1)
    p = torch.softmax(s, -2)
    return (p * v.float()).sum(-2)  # (B, H_kv, G, d)


_COMPILED: dict = {}  # "fn": the compiled kernel, or "error": why torch.compile failed (probed once)


def attend_one():
    """The compiled one-query attention kernel (:func:`_attend_one_eager` through ``torch.compile``,
    dynamic shapes), or None when ``torch.compile`` does not work here; ``_COMPILED["error"]`` says why."""
    if "fn" not in _COMPILED and "error" not in _COMPILED:
        try:
            fn = torch.compile(_attend_one_eager, dynamic=True)
            q = torch.randn(2, 2, 1, 1, 8)
            k, v = torch.randn(2, 2, 1, 7, 8).half(), torch.randn(2, 2, 1, 7, 8).half()
            got = fn(q, k, v)
            if not torch.allclose(got, _attend_one_eager(q, k, v), rtol=1e-4, atol=1e-5):
                raise RuntimeError("the compiled kernel disagrees with the eager one")
            _COMPILED["fn"] = fn
        except Exception as e:  # noqa: BLE001 - no C++ compiler, an unsupported platform, an inductor bug
            _COMPILED["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    return _COMPILED.get("fn")


def check_kv_cache(choice, flag: str = "kv_cache") -> str:
    """``choice`` (None = ``"auto"``) if it names a cache, else a ConfigError listing them (``flag`` names it)."""
    choice = "auto" if choice is None else str(choice)
    if choice not in KV_CACHES:
        raise ConfigError(f"{flag} must be one of {', '.join(KV_CACHES)}, got {choice!r}")
    return choice


def resolve_kv_cache(choice: str | None, device) -> str:
    """``"auto"`` / ``"float32"`` / ``"float16"`` -> the cache to use on ``device`` (see the module docstring).

    ``"auto"``: float16 on CPU when :func:`attend_one` compiles, else float32 (warning once why). An explicit
    ``"float16"`` refuses a non-CPU device (there SDPA is the fast path) and a machine where
    ``torch.compile`` fails.
    """
    choice = check_kv_cache(choice)
    cpu = torch.device(device).type == "cpu"
    if choice == "float32" or (choice == "auto" and not cpu):
        return "float32"
    if not cpu:
        raise ConfigError(f"kv_cache='float16' is the CPU path (a compiled float16 kernel); on {device} use "
                          f"'float32' or 'auto' (SDPA in the model's dtype)")
    if attend_one() is not None:
        return "float16"
    why = _COMPILED.get("error", "unknown")
    if choice == "float16":
        raise ConfigError(f"kv_cache='float16' needs torch.compile, which failed here ({why}); install a C++ "
                          f"compiler (e.g. g++) or use kv_cache='float32'")
    if not _COMPILED.get("warned"):
        _COMPILED["warned"] = True
        warnings.warn(f"ecg2llm: torch.compile failed ({why}); sampling with the float32 KV cache (correct, "
                      f"~1.3x slower on CPU). Install a C++ compiler (g++) for the float16 one.",
                      RuntimeWarning, stacklevel=2)
    return "float32"


class KVDecoder:
    """One batch's KV cache for ``model``: feed tokens with :meth:`step`, get the last position's logits.

    Parameters
    ----------
    model : transformers.LlamaForCausalLM
        In eval mode (:func:`supports`).
    batch : int
        Rows of every :meth:`step`.
    max_len : int
        Most positions the cache will hold (context + new tokens).
    kv_cache : str
        ``"float32"`` (the model's dtype, SDPA) or ``"float16"`` (CPU, compiled kernel); ``"auto"`` is
        resolved by :func:`resolve_kv_cache`.
    """

    def __init__(self, model, batch: int, max_len: int, kv_cache: str = "float32"):
        cfg = model.config
        self.model, self.base, self.head = model, model.model, model.lm_head
        self.d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.groups = cfg.num_attention_heads // cfg.num_key_value_heads
        p = self.head.weight
        self.kv_cache = resolve_kv_cache(kv_cache, p.device)
        self._attend = attend_one() if self.kv_cache == "float16" else None
        dtype = torch.float16 if self.kv_cache == "float16" else p.dtype
        self.max_len = int(max_len)
        self.shape = (len(self.base.layers), batch, cfg.num_key_value_heads, self.max_len, self.d)
        self.k = self.v = torch.empty(self.shape[:3] + (0, self.d), dtype=dtype, device=p.device)
        self._flat = self._spare = None  # the flat buffers of k and v, and the other pair (see _grow)
        self.pos = 0
        self.rope = _rope_table(model, int(max_len), p.device)  # (cos, sin) (1, max_len, d) of one-token steps
        self.plain = _plain_llama(model)  # the layers' arithmetic can be run without their module calls

    def _attention(self, i: int, q, k, v, p0: int, p1: int, mask, scale: float, rows=slice(None)) -> torch.Tensor:
        """Layer ``i``'s attention output ``(B, H, T, d)`` for queries ``q`` over the filled cache (its ``rows``)."""
        b, h, t, d = q.shape
        if self._attend is not None and t == 1:  # float16 cache, one query: the compiled kernel
            hk = self.k.shape[2]
            qg = (q.float() * scale).view(b, hk, self.groups, 1, d)
            o = self._attend(qg, self.k[i, rows, :, None, :p1], self.v[i, rows, :, None, :p1])  # (B, H_kv, G, d)
            return o.reshape(b, h, 1, d).to(q.dtype)
        if p0 == 0:  # a prefill: this step's own keys and values, at full precision
            kk, vv = k, v
        else:
            kk, vv = self.k[i, rows, :, :p1], self.v[i, rows, :, :p1]  # (B, H_kv, p1, d): the filled part only
            kk, vv = kk.to(q.dtype), vv.to(q.dtype)
        if self.groups > 1:
            kk, vv = kk.repeat_interleave(self.groups, 1), vv.repeat_interleave(self.groups, 1)
        return F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask, is_causal=t > 1 and p0 == 0,
                                              scale=scale)  # (B, H, T, d)

    @torch.inference_mode()
    def step(self, ids: torch.Tensor, logits_cut: int | None = None, window: tuple | None = None) -> torch.Tensor:
        """Append ``ids`` ``(B, T)`` at the next positions; returns ``(B, V)`` logits of the last one (float).

        ``logits_cut``: keep only the first ``logits_cut`` vocabulary rows of the head (the ids a sampler can
        draw; the padding rows are never sampled). ``window`` ``(lo, hi)``: return only the logits of ids
        ``lo .. hi - 1``, ``(B, hi - lo)``, equal bit for bit to those columns of the full logits: a one-token step
        computes only those rows of the head where the BLAS gives them the full product's bits
        (:func:`head_window_ok`, checked once per shape), any other step computes all and slices.

        One-token steps of a batch of at least 32 rows (:data:`MIN_SPLIT_BATCH`) on a CPU with several torch
        threads run the rows in :func:`row_groups` groups, one thread each (:data:`ROW_THREADS`): every
        operation of the LM is per row
        (attention per row and head; the linear layers' rows do not depend on the others, checked once per
        process and batch size by :func:`split_rows_ok`), so the logits are those of the whole batch on one
        thread, bit for bit, while every core works on every operation instead of the few that torch splits.
        (Torch's own split of attention over threads rounds differently from one thread, ~1e-7: so do the
        logits of the whole batch on 1 and on 2 threads.)
        """
        b, t = ids.shape
        p0, p1 = self.pos, self.pos + t
        if p1 > self.max_len:
            raise ValueError(f"KVDecoder holds {self.max_len} positions, asked for {p1}")
        if p1 > self.k.shape[3]:
            self._grow(p1)
        groups = row_groups(b, ids.device, self.widths(logits_cut)) if t == 1 and self.plain \
            and self.rope is not None and self._attend is None else 1  # (the compiled float16 kernel: unsplit)
        head = None  # the head rows to compute: None = all (then sliced to the window)
        if window is not None:
            lo, hi = int(window[0]), int(window[1])
            cut = self.head.weight.shape[0] if logits_cut is None else int(logits_cut)
            if not 0 <= lo < hi <= cut:
                raise ValueError(f"window {window} is not inside the {cut} logits")
            if t == 1 and self.head.bias is None and head_window_ok(self.head.weight, b, groups, lo, hi, cut):
                head = (lo, hi)
        if groups > 1:
            pool = _row_pool(groups)
            bounds = group_bounds(b, groups)
            # inside rows_on_workers this thread runs torch on one thread, as the workers do: it takes the first
            # group itself instead of waiting (one hand-off less per step); elsewhere every group goes to a worker
            mine = bounds[0] if _MAIN and CALLER_GROUP else None
            futs = [pool.submit(self._rows, ids[r], r, p0, p1, logits_cut, head) for r in bounds if r is not mine]
            first = [self._rows(ids[mine], mine, p0, p1, logits_cut, head)] if mine is not None else []
            out = torch.cat(first + [f.result() for f in futs])
        elif _MAIN and t > 1:  # a prefill inside rows_on_workers: the caller's threads, as outside it
            torch.set_num_threads(_MAIN[-1])
            try:
                out = self._rows(ids, slice(None), p0, p1, logits_cut)
            finally:
                torch.set_num_threads(1)
        else:
            out = self._rows(ids, slice(None), p0, p1, logits_cut, head)
        self.pos = p1
        if window is not None and head is None:
            out = out[:, window[0]:window[1]]
        return out

    def _grow(self, need: int) -> None:
        """Hold at least ``need`` positions: the cache ``(layers, B, H_kv, capacity, d)`` is reallocated with a
        capacity of ``need`` rounded up to :data:`GROW` (at most ``max_len``) and the filled part copied over.

        Why not ``max_len`` at once: a one-token step reads each row and head's filled keys and values, a
        stretch of ``pos`` positions every ``capacity`` positions; on CPU, stretches that follow each other read
        ~1.25x faster than stretches far apart (SDPA on LM v3's cache, batch 64, one thread: 3.51 vs 4.39
        CPU-s per 30-s batch, docs/results/kv_layout_micro.json). The arithmetic is the same (SDPA does not
        depend on the strides). The two flat buffers of the full length are allocated once and used in turn:
        no allocation (and no page faults on fresh memory) per step of growth; only the pages written are ever
        touched. The float16 cache (a compiled kernel, which would recompile for every new stride) takes the
        full length at once, as before."""
        step = GROW if self._attend is None else self.max_len  # (the compiled float16 kernel: one layout, no
        cap = min(self.max_len, -(-int(need) // step) * step)  # recompiles for new strides)
        shape = self.shape[:3] + (cap, self.d)
        n = self.shape[0] * self.shape[1] * self.shape[2] * cap * self.d
        if self._spare is None:  # two flat buffers of the full length, used in turn (the other one is spare)
            full = self.shape[0] * self.shape[1] * self.shape[2] * self.max_len * self.d
            self._spare = (torch.empty(full, dtype=self.k.dtype, device=self.k.device),
                           torch.empty(full, dtype=self.v.dtype, device=self.v.device))
        fk, fv = self._spare
        k, v = fk[:n].view(shape), fv[:n].view(shape)
        if self.pos:
            k[:, :, :, :self.pos] = self.k[:, :, :, :self.pos]
            v[:, :, :, :self.pos] = self.v[:, :, :, :self.pos]
        self._spare = self._flat
        self._flat, self.k, self.v = (fk, fv), k, v

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only the rows ``rows`` (indices) of the cache: later steps take that many rows. Each row's keys
        and values are copied as they are (same capacity, same layout), so its logits are unchanged."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.k.device)
        self.k, self.v = self.k.index_select(1, rows), self.v.index_select(1, rows)
        self.shape = self.shape[:1] + (len(rows),) + self.shape[2:]
        self._flat = self._spare = None  # the flat buffers were sized for the old batch: _grow makes new ones

    def widths(self, logits_cut: int | None = None) -> tuple:
        """``(in, out)`` of the LM's matrix products (q/k/v/o, MLP, head)."""
        return model_widths(self.model, logits_cut)

    def _rows(self, ids: torch.Tensor, rows: slice, p0: int, p1: int, logits_cut: int | None,
              head: tuple | None = None) -> torch.Tensor:
        """The LM on ``ids`` ``(b, T)``, the cache rows ``rows`` at positions ``p0:p1``; ``(b, V)`` logits (``head``
        ``(lo, hi)``: only those rows of the head, ``(b, hi - lo)``)."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        with torch.inference_mode():
            b, t = ids.shape
            x = self.base.embed_tokens(ids)  # (B, T, D)
            if t == 1 and self.rope is not None:  # the table holds what rotary_emb gives one position
                cos, sin = self.rope[0][:, p0:p1], self.rope[1][:, p0:p1]
            else:
                positions = torch.arange(p0, p1, device=ids.device)[None]  # (1, T)
                cos, sin = self.base.rotary_emb(x, positions)
            mask = None
            if t > 1 and p0 > 0:  # a multi-token step after earlier ones: causal with an offset
                mask = torch.ones(t, p1, dtype=torch.bool, device=ids.device).tril(p0)
            if self.plain:  # the operations of the modules below, without their calls (apply_rotary_pos_emb's
                cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # unsqueeze, once for every layer)
            for i, layer in enumerate(self.base.layers):
                a = layer.self_attn
                if self.plain:
                    h = _rms_norm(x, layer.input_layernorm)
                    q = F.linear(h, a.q_proj.weight).view(b, t, -1, self.d).transpose(1, 2)  # (B, H, T, d)
                    k = F.linear(h, a.k_proj.weight).view(b, t, -1, self.d).transpose(1, 2)  # (B, H_kv, T, d)
                    v = F.linear(h, a.v_proj.weight).view(b, t, -1, self.d).transpose(1, 2)
                    q, k = (q * cos) + (_rotate_half(q) * sin), (k * cos) + (_rotate_half(k) * sin)
                else:
                    h = layer.input_layernorm(x)
                    q = a.q_proj(h).view(b, t, -1, self.d).transpose(1, 2)  # (B, H, T, d)
                    k = a.k_proj(h).view(b, t, -1, self.d).transpose(1, 2)  # (B, H_kv, T, d)
                    v = a.v_proj(h).view(b, t, -1, self.d).transpose(1, 2)
                    q, k = apply_rotary_pos_emb(q, k, cos, sin)
                self.k[i, rows, :, p0:p1] = k
                self.v[i, rows, :, p0:p1] = v
                o = self._attention(i, q, k, v, p0, p1, mask, a.scaling, rows)  # (B, H, T, d)
                if self.plain:
                    x = x + F.linear(o.transpose(1, 2).reshape(b, t, -1), a.o_proj.weight)
                    m = layer.mlp
                    h = _rms_norm(x, layer.post_attention_layernorm)
                    x = x + F.linear(F.silu(F.linear(h, m.gate_proj.weight)) * F.linear(h, m.up_proj.weight),
                                     m.down_proj.weight)
                else:
                    x = x + a.o_proj(o.transpose(1, 2).reshape(b, t, -1))
                    x = x + layer.mlp(layer.post_attention_layernorm(x))
            h = _rms_norm(x[:, -1], self.base.norm) if self.plain else self.base.norm(x[:, -1])  # (B, D)
            w = self.head.weight if logits_cut is None else self.head.weight[:logits_cut]
            if head is not None:
                w = self.head.weight[head[0]:head[1]]
            bias = None if self.head.bias is None else self.head.bias[: w.shape[0]]
            return F.linear(h, w, bias).float()


# ---------------------------------------------------------------------------------------------- row groups
#: Threads :meth:`KVDecoder.step` splits a batch's rows over (0: torch's CPU threads; 1: never split); the
#: environment variable ``ECG2LLM_ROW_THREADS`` sets it (e.g. ``=1`` to time the unsplit path).
ROW_THREADS = int(os.environ.get("ECG2LLM_ROW_THREADS", "0") or 0)
_POOL: dict = {}


#: Positions the KV cache grows by (:meth:`KVDecoder._grow`); 0 or ``ECG2LLM_KV_GROW=0``: the whole
#: ``max_len`` at once, as before.
GROW = int(os.environ.get("ECG2LLM_KV_GROW", "64") or 0) or 1 << 30

#: Whether the sampling loop's own thread runs a row group (:meth:`KVDecoder.step`); off: every group on a worker.
CALLER_GROUP = True

MIN_ROWS = 4  # rows of a group at least: products of 1-3 rows take other BLAS kernels (other roundings)
MIN_SPLIT_BATCH = 32  # smaller batches stay whole: each group's Python overhead would outweigh its share of work


_MAIN: list = []  # torch threads of a caller that handed its one-token steps to row groups (rows_on_workers)


def row_groups(batch: int, device, widths=()) -> int:
    """How many row groups (threads) a one-token step of ``batch`` rows on ``device`` runs as (1: no split);
    ``widths``: the ``(in, out)`` sizes of the LM's matrix products (:func:`split_rows_ok`)."""
    if torch.device(device).type != "cpu" or batch < max(2 * MIN_ROWS, MIN_SPLIT_BATCH):
        return 1
    n = min(int(ROW_THREADS or (_MAIN[-1] if _MAIN else torch.get_num_threads())), batch // MIN_ROWS)
    return n if n > 1 and split_rows_ok(batch, n, tuple(widths)) else 1


def model_widths(model, vocab: int | None = None) -> tuple:
    """``(in, out)`` of a Llama LM's matrix products (q/k/v/o, MLP, head; ``vocab``: the head rows used)."""
    cfg = model.config
    d = cfg.hidden_size
    hd = getattr(cfg, "head_dim", None) or d // cfg.num_attention_heads
    return ((d, cfg.num_attention_heads * hd), (d, cfg.num_key_value_heads * hd), (cfg.num_attention_heads * hd, d),
            (d, cfg.intermediate_size), (cfg.intermediate_size, d), (d, vocab or model.lm_head.weight.shape[0]))


@contextlib.contextmanager
def rows_on_workers(model, batch: int, device, vocab: int | None = None):
    """Context for a sampling loop whose one-token steps run on row groups (:meth:`KVDecoder.step`): the
    calling thread's own torch ops (masks, softmax, the draw) run on one thread meanwhile, so that OpenMP's
    idle threads do not spin on the cores the row groups work on. Nothing changes where the batch is not split
    (GPU, < 32 rows, one thread); multi-token steps (prefill, slides) get the caller's threads back."""
    n = torch.get_num_threads()
    if n < 2 or row_groups(batch, device, model_widths(model, vocab)) < 2:
        yield
        return
    _MAIN.append(n)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        _MAIN.pop()
        torch.set_num_threads(n)


def group_bounds(batch: int, groups: int) -> list[slice]:
    """The rows of each group: ``groups`` contiguous slices of nearly equal size."""
    b = [batch * g // groups for g in range(groups + 1)]
    return [slice(lo, hi) for lo, hi in zip(b[:-1], b[1:])]


def _row_pool(n: int):
    """A pool of ``n`` threads, each running torch with one thread of its own."""
    from concurrent.futures import ThreadPoolExecutor

    pool = _POOL.get(n)
    if pool is None:
        pool = _POOL[n] = ThreadPoolExecutor(n, thread_name_prefix="kvdecode-rows",
                                             initializer=torch.set_num_threads, initargs=(1,))
    return pool


_SPLIT: dict = {}


def split_rows_ok(batch: int, groups: int, widths=()) -> bool:
    """Whether the matrix products of ``batch`` rows split in ``groups`` groups equal the whole batch's, bit for
    bit, all on one thread each, for the ``(in, out)`` sizes ``widths`` (a BLAS picks its kernel by shape: on
    one MKL, products of 1-3 rows round otherwise). Checked once per process for each batch size, split and
    sizes, on random numbers."""
    key = (int(batch), int(groups), tuple(widths))
    if key not in _SPLIT:
        _SPLIT[key] = False
        g = torch.Generator().manual_seed(0)
        ok = True
        pool = _row_pool(groups)
        for k, n in widths:
            w = torch.randn(n, k, generator=g)
            x = torch.randn(batch, 1, k, generator=g)
            full = pool.submit(F.linear, x, w).result()
            parts = [pool.submit(F.linear, x[r], w) for r in group_bounds(batch, groups)]
            ok &= torch.equal(torch.cat([f.result() for f in parts]), full)
        _SPLIT[key] = bool(ok)
    return _SPLIT[key]


_HEAD: dict = {}


def head_window_ok(weight: torch.Tensor, batch: int, groups: int, lo: int, hi: int, cut: int) -> bool:
    """Whether the head rows ``lo:hi`` of ``weight`` alone give, bit for bit, those columns of the product with rows
    ``:cut``, for a one-token step of ``batch`` rows in ``groups`` row groups (each group's rows on a one-thread
    worker as :meth:`KVDecoder.step` runs them; one group: this thread). A BLAS picks its kernel by shape: on one
    MKL a product with 8 output columns rounds otherwise, one with 64 does not. Checked once per process for
    each shape, on the weights and random inputs."""
    key = (weight.data_ptr(), tuple(weight.shape), int(batch), int(groups), int(lo), int(hi), int(cut),
           str(weight.device), torch.get_num_threads() if groups == 1 else 1)
    if key not in _HEAD:
        g = torch.Generator().manual_seed(1)
        w = weight[:int(cut)]
        x = torch.randn(int(batch), weight.shape[1], generator=g).to(weight.device, weight.dtype)

        def same(r):
            with torch.inference_mode():  # (per thread: the workers' too)
                return torch.equal(F.linear(x[r], w[lo:hi]), F.linear(x[r], w)[:, lo:hi])

        if groups > 1:
            pool = _row_pool(groups)
            _HEAD[key] = all(f.result() for f in [pool.submit(same, r) for r in group_bounds(int(batch), groups)])
        else:
            _HEAD[key] = bool(same(slice(None)))
    return _HEAD[key]


# ---------------------------------------------------------------------------------------------- plain arithmetic
def _rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    """``LlamaRMSNorm.forward``'s operations, in its order."""
    dtype = x.dtype
    h = x.to(torch.float32)
    var = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(var + norm.variance_epsilon)
    return norm.weight * h.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``transformers``' ``rotate_half``."""
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


_PLAIN: dict = {}  # id(model) -> (model, whether the plain arithmetic gives the modules' logits bit for bit)


def _plain_llama(model) -> bool:
    """Whether :meth:`KVDecoder.step` may run ``model``'s layers as plain operations (no module calls): the
    layers are the stock ``transformers`` Llama ones (RMSNorm, SiLU MLP, no biases, rotary as in
    ``apply_rotary_pos_emb``) and a decode of a few tokens gives the same logits, bit for bit, both ways.
    Checked once per model; anything else (a kernel from the hub, another activation) keeps the module calls."""
    got = _PLAIN.get(id(model))
    if got is not None and got[0] is model:
        return got[1]
    _PLAIN[id(model)] = (model, False)
    cfg = model.config
    ok = (cfg.hidden_act == "silu" and not getattr(cfg, "attention_bias", False) and not getattr(cfg, "mlp_bias", False)
          and all(type(layer.input_layernorm).__name__ == "LlamaRMSNorm" for layer in model.model.layers))
    if ok:
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, cfg.vocab_size, (3, 6), generator=g).to(model.lm_head.weight.device)
        outs = []
        for plain in (False, True):
            _PLAIN[id(model)] = (model, plain)
            dec = KVDecoder(model, 3, 8)
            outs.append([dec.step(ids[:, :4])] + [dec.step(ids[:, j:j + 1]) for j in (4, 5)])
        ok = all(torch.equal(a, b) for a, b in zip(*outs))
    _PLAIN[id(model)] = (model, ok)
    return ok


_ROPE: dict = {}  # (id(model), device) -> (model, cos, sin) for positions 0 .. n-1 (grown as needed)


def _rope_table(model, n: int, device):
    """``model.model.rotary_emb``'s ``(cos, sin)`` ``(1, n, d)`` for positions ``0 .. n - 1``, each row equal bit
    for bit to the call for that one position (checked on a sample of positions), or None."""
    key = (id(model), str(device))
    got = _ROPE.get(key)
    if got is not None and got[0] is model and got[1].shape[1] >= n:
        return got[1], got[2]
    rot = model.model.rotary_emb
    x = torch.zeros(1, 1, 1, device=device, dtype=model.lm_head.weight.dtype)
    parts = [rot(x, torch.arange(a, min(a + 256, n), device=device)[None]) for a in range(0, n, 256)]
    cos, sin = torch.cat([c for c, _ in parts], 1), torch.cat([s for _, s in parts], 1)
    for p in sorted({0, 1, n - 1, *range(0, n, 97)}):
        c1, s1 = rot(x, torch.tensor([[p]], device=device))
        if not (torch.equal(c1[0, 0], cos[0, p]) and torch.equal(s1[0, 0], sin[0, p])):
            return None
    _ROPE[key] = (model, cos, sin)
    return cos, sin
