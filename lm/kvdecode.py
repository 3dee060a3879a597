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

Used by :func:`ecg2llm.lm.guidance.sample_guided` (LM v2). :func:`supports` says whether a model is the plain
Llama layout this covers; anything else keeps the ``transformers`` path.
"""
from __future__ import annotations

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
        shape = (len(self.base.layers), batch, cfg.num_key_value_heads, int(max_len), self.d)
        self.k = torch.empty(shape, dtype=dtype, device=p.device)  # (layers, B, H_kv, max_len, d)
        self.v = torch.empty(shape, dtype=dtype, device=p.device)
        self.pos = 0

    def _attention(self, i: int, q, k, v, p0: int, p1: int, mask, scale: float) -> torch.Tensor:
        """Layer ``i``'s attention output ``(B, H, T, d)`` for queries ``q`` over the filled cache."""
        b, h, t, d = q.shape
        if self._attend is not None and t == 1:  # float16 cache, one query: the compiled kernel
            hk = self.k.shape[2]
            qg = (q.float() * scale).view(b, hk, self.groups, 1, d)
            o = self._attend(qg, self.k[i, :, :, None, :p1], self.v[i, :, :, None, :p1])  # (B, H_kv, G, d)
            return o.reshape(b, h, 1, d).to(q.dtype)
        if p0 == 0:  # a prefill: this step's own keys and values, at full precision
            kk, vv = k, v
        else:
            kk, vv = self.k[i, :, :, :p1], self.v[i, :, :, :p1]  # (B, H_kv, p1, d): the filled part only
            kk, vv = kk.to(q.dtype), vv.to(q.dtype)
        if self.groups > 1:
            kk, vv = kk.repeat_interleave(self.groups, 1), vv.repeat_interleave(self.groups, 1)
        return F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask, is_causal=t > 1 and p0 == 0,
                                              scale=scale)  # (B, H, T, d)

    @torch.inference_mode()
    def step(self, ids: torch.Tensor, logits_cut: int | None = None) -> torch.Tensor:
        """Append ``ids`` ``(B, T)`` at the next positions; returns ``(B, V)`` logits of the last one (float).

        ``logits_cut``: keep only the first ``logits_cut`` vocabulary rows of the head (the ids a sampler can
        draw; the padding rows are never sampled).
        """
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        b, t = ids.shape
        p0, p1 = self.pos, self.pos + t
        if p1 > self.k.shape[3]:
            raise ValueError(f"KVDecoder holds {self.k.shape[3]} positions, asked for {p1}")
        x = self.base.embed_tokens(ids)  # (B, T, D)
        positions = torch.arange(p0, p1, device=ids.device)[None]  # (1, T)
        cos, sin = self.base.rotary_emb(x, positions)
        mask = None
        if t > 1 and p0 > 0:  # a multi-token step after earlier ones: causal with an offset
            mask = torch.ones(t, p1, dtype=torch.bool, device=ids.device).tril(p0)
        for i, layer in enumerate(self.base.layers):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = a.q_proj(h).view(b, t, -1, self.d).transpose(1, 2)  # (B, H, T, d)
            k = a.k_proj(h).view(b, t, -1, self.d).transpose(1, 2)  # (B, H_kv, T, d)
            v = a.v_proj(h).view(b, t, -1, self.d).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            self.k[i, :, :, p0:p1] = k
            self.v[i, :, :, p0:p1] = v
            o = self._attention(i, q, k, v, p0, p1, mask, a.scaling)  # (B, H, T, d)
            x = x + a.o_proj(o.transpose(1, 2).reshape(b, t, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        self.pos = p1
        h = self.base.norm(x[:, -1])  # (B, D)
        w = self.head.weight if logits_cut is None else self.head.weight[:logits_cut]
        bias = None if self.head.bias is None else self.head.bias[: w.shape[0]]
        return F.linear(h, w, bias).float()
