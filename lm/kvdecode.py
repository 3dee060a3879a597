"""Incremental decoding of the Llama LM with a preallocated KV cache that attention reads only as far as filled.

Why not ``transformers``' ``StaticCache``: on CPU, generation is bound by reading the KV cache (the LM v2 at
batch 128 and a 1080-token context reads ~180 MB per layer per step), and a static cache makes every step
attend over its whole length through a mask -- positions not yet written included, and the masked SDPA
path is the slowest one. :class:`KVDecoder` keeps the same preallocated buffers (no reallocation, no
``torch.cat`` per step) but hands SDPA only the filled prefix, with no mask for one-token steps (causality
is implied) and ``is_causal`` for the prefill. It runs the model's own modules (embedding, RMSNorms,
projections, rotary embedding, MLP, head), so the weights and the arithmetic are those of
``LlamaForCausalLM``; the logits agree with ``model(...)`` to float rounding (``tests/test_kvdecode.py``).

Used by :func:`lm.guidance.sample_guided` (LM v2). :func:`supports` says whether a model is the plain
Llama layout this covers; anything else keeps the ``transformers`` path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def supports(model) -> bool:
    """Whether ``model`` is a ``LlamaForCausalLM`` with default RoPE and no sliding window (what we train)."""
    cfg = getattr(model, "config", None)
    if type(model).__name__ != "LlamaForCausalLM" or cfg is None:
        return False
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_type", "default")
    return rope == "default" and not getattr(cfg, "sliding_window", None) and not model.training


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
    """

    def __init__(self, model, batch: int, max_len: int):
        cfg = model.config
        self.model, self.base, self.head = model, model.model, model.lm_head
        self.d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.groups = cfg.num_attention_heads // cfg.num_key_value_heads
        p = self.head.weight
        shape = (len(self.base.layers), batch, cfg.num_key_value_heads, int(max_len), self.d)
        self.k = torch.empty(shape, dtype=p.dtype, device=p.device)  # (layers, B, H_kv, max_len, d)
        self.v = torch.empty(shape, dtype=p.dtype, device=p.device)
        self.pos = 0

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
            kk, vv = self.k[i, :, :, :p1], self.v[i, :, :, :p1]  # (B, H_kv, p1, d): the filled part only
            if self.groups > 1:
                kk, vv = kk.repeat_interleave(self.groups, 1), vv.repeat_interleave(self.groups, 1)
            o = F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask, is_causal=t > 1 and p0 == 0,
                                               scale=a.scaling)  # (B, H, T, d)
            x = x + a.o_proj(o.transpose(1, 2).reshape(b, t, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        self.pos = p1
        h = self.base.norm(x[:, -1])  # (B, D)
        w = self.head.weight if logits_cut is None else self.head.weight[:logits_cut]
        bias = None if self.head.bias is None else self.head.bias[: w.shape[0]]
        return F.linear(h, w, bias).float()
