"""Sampling ECG token sequences from a trained LM, and turning them into millivolts.

Batched autoregressive sampling with a pre-allocated KV cache (transformers ``StaticCache``), written as a
short loop rather than ``model.generate``: on 2 CPU cores, profiling the tiny LM at batch 128 showed
``generate`` spending most of its time growing the dynamic cache (``torch.cat``) and in
``torch.multinomial`` (an exponential draw over all 4096 codes per token); the static cache and
inverse-CDF sampling (one uniform per sequence, ``searchsorted`` on the cumulative probabilities) make
generation about 2-4x faster (``scripts/bench_lm.py`` measures it). Only ECG codes can be sampled: the
logits are cut to the codebook, so PAD/BOS/EOS and the vocabulary padding never appear.

Every sequence starts with BOS (then an optional prompt: the tokens of a real ECG prefix). Sequences
longer than the model's context are produced with a sliding window: once the context is full, sampling
restarts from BOS plus the last half-context of tokens, which is exactly what the model saw in training
(BOS followed by a crop from the middle of a record). Reproducibility: batch ``i`` draws from its own
``torch.Generator`` seeded with ``seed + i``; the global RNG is untouched, so sampling inside a training
run does not change the run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tokenizer.errors import ConfigError, TokenizerError


@dataclass
class SamplingParams:
    """Sampling settings (HF names): temperature 1 and no top-k/top-p = sample the model as trained."""

    temperature: float = 1.0
    top_k: int = 0          # 0 = off
    top_p: float = 1.0      # 1 = off

    def __post_init__(self):
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


def draw(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> torch.Tensor:
    """One id per row from ``logits`` ``(B, V)`` with temperature, top-k and top-p; returns ``(B,)``."""
    logits = logits.float()
    if params.temperature != 1.0:
        logits = logits / params.temperature
    if 0 < params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -float("inf"))
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    if params.top_p < 1.0:
        sp, si = probs.sort(dim=-1, descending=True)
        sp = sp.masked_fill(sp.cumsum(-1) - sp > params.top_p, 0.0)  # smallest set reaching top_p
        probs = torch.zeros_like(probs).scatter_(-1, si, sp)
    cdf = probs.cumsum(-1)  # (B, V)
    u = torch.rand((probs.shape[0], 1), generator=generator, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1).squeeze(1)  # (B,)


def _sample_chunk(model, context: torch.Tensor, n_new: int, params: SamplingParams, v: int,
                  generator: torch.Generator) -> torch.Tensor:
    """``context`` ``(B, C)`` (BOS first) -> ``(B, n_new)`` new ECG ids, with a static KV cache."""
    from transformers import StaticCache

    b, c = context.shape
    device = context.device
    cache = StaticCache(config=model.config, max_cache_len=c + n_new)
    logits = model(input_ids=context, cache=cache, use_cache=True, logits_to_keep=1,
                   cache_position=torch.arange(c, device=device)).logits[:, -1, :v]  # (B, V)
    out = torch.empty((b, n_new), dtype=torch.long, device=device)
    for t in range(n_new):
        out[:, t] = draw(logits, params, generator)
        if t + 1 < n_new:
            logits = model(input_ids=out[:, t:t + 1], cache=cache, use_cache=True,
                           cache_position=torch.tensor([c + t], device=device)).logits[:, -1, :v]
    return out


@torch.inference_mode()
def sample_tokens(model, n_samples: int, n_tokens: int, prompt: np.ndarray | None = None,
                  params: SamplingParams | None = None, batch_size: int = 64, seed: int = 0,
                  progress: bool = False) -> np.ndarray:
    """Sample ``n_samples`` sequences of ``n_tokens`` new ECG ids (after BOS and an optional prompt).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        An LM saved by ``lm/train.py`` (its config has ``ecg_codebook_size`` and ``bos_token_id``).
    n_samples, n_tokens : int
        How many sequences, and new ids per sequence (the prompt is not counted or returned).
    prompt : np.ndarray of int, shape (P,), optional
        Tokens of a real ECG prefix, shared by every sample.
    params : SamplingParams, optional
    batch_size : int
        Sequences generated together.
    seed : int
        Batch ``i`` draws from a ``torch.Generator`` seeded with ``seed + i``.

    Returns
    -------
    np.ndarray of int64, shape (n_samples, n_tokens), values in ``[0, codebook_size)``.
    """
    params = params or SamplingParams()
    v = int(model.config.ecg_codebook_size)
    bos = int(model.config.bos_token_id)
    window = int(model.config.max_position_embeddings)
    keep = window // 2  # tokens carried over when the window slides
    if n_tokens < 1 or n_samples < 1:
        raise ConfigError(f"need n_samples >= 1 and n_tokens >= 1, got {n_samples}, {n_tokens}")
    prompt = np.zeros(0, np.int64) if prompt is None else np.asarray(prompt, dtype=np.int64).reshape(-1)
    if prompt.size and (prompt.min() < 0 or prompt.max() >= v):
        raise TokenizerError(f"prompt ids must lie in [0, {v}) (the LM's ECG codebook)")
    device = next(model.parameters()).device
    out = np.empty((n_samples, n_tokens), dtype=np.int64)
    batches = list(range(0, n_samples, max(1, int(batch_size))))
    from tqdm.auto import tqdm

    for bi, start in enumerate(tqdm(batches, desc="sampling", unit="batch", disable=not progress)):
        b = min(batch_size, n_samples - start)
        gen = torch.Generator(device=device).manual_seed(int(seed) + bi)
        hist = torch.from_numpy(np.tile(prompt, (b, 1))).to(device)  # (b, P) ECG ids so far
        made = 0
        while made < n_tokens:
            carried = hist[:, -(window - 1):] if made == 0 else hist[:, -keep:]  # (b, C - 1)
            ctx = torch.cat([torch.full((b, 1), bos, dtype=torch.long, device=device), carried], 1)  # (b, C)
            room = window - ctx.shape[1]
            if room < 1:  # a prompt as long as the window: keep only its last half-window
                ctx = torch.cat([ctx[:, :1], ctx[:, -keep:]], 1)
                room = window - ctx.shape[1]
            new = _sample_chunk(model, ctx, min(room, n_tokens - made), params, v, gen)  # (b, g)
            hist = torch.cat([hist, new], 1)
            made += new.shape[1]
        out[start:start + b] = hist[:, prompt.size:].cpu().numpy()
    return out


def tokens_to_mv(tok, ids: np.ndarray, n_samples: int | None = None) -> np.ndarray:
    """Decode one sequence of ids with a stateless tokenizer to a float32 signal in mV at ``tok.fs``.

    Raises
    ------
    TokenizerError
        If the tokenizer needs side information (``needs_state``) to return millivolts.
    """
    check_stateless(tok)
    x = tok.decode(np.asarray(ids, dtype=np.int64), None)
    return x if n_samples is None else x[:n_samples]


def check_stateless(tok) -> None:
    """Refuse tokenizers whose ``decode(ids, None)`` does not give millivolts (e.g. the seed tokenizer)."""
    if getattr(tok, "needs_state", False):
        raise TokenizerError(
            f"the {tok.tokenizer_type!r} tokenizer needs per-window side information (state) to decode to mV, "
            f"which an LM does not generate; train the LM on a stateless tokenizer (the default FSQ one)"
        )
