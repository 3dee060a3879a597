"""Sampling ECG token sequences from a trained LM, and turning them into millivolts.

Generation is batched ``model.generate`` with its KV cache. Every sequence starts with BOS (then an
optional prompt: the tokens of a real ECG prefix). Ids outside the ECG codebook (PAD/BOS/EOS and the
padding rows of the vocabulary) are masked at every step, so every sampled id decodes.

Sequences longer than the model's context are produced with a sliding window: once the context is full,
generation restarts from BOS plus the last half-context of tokens, which is exactly what the model saw
in training (BOS followed by a crop from the middle of a record), so every step stays in distribution.
Reproducibility: batch ``i`` is sampled after ``torch.manual_seed(seed + i)``, so the same seed and batch
size give identical tokens.
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


class CodebookOnly:
    """Logits processor: -inf on every id >= ``codebook_size`` (special ids and vocabulary padding)."""

    def __init__(self, codebook_size: int):
        self.v = int(codebook_size)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores[:, self.v:] = -float("inf")  # (B, vocab)
        return scores


def _generate_chunk(model, context: torch.Tensor, n_new: int, params: SamplingParams, v: int) -> torch.Tensor:
    """``context`` ``(B, C)`` (BOS first) -> ``(B, n_new)`` new ids."""
    from transformers import LogitsProcessorList

    out = model.generate(
        input_ids=context, attention_mask=torch.ones_like(context), max_new_tokens=int(n_new), do_sample=True, temperature=float(params.temperature),
        top_k=int(params.top_k) or None, top_p=float(params.top_p), use_cache=True,
        logits_processor=LogitsProcessorList([CodebookOnly(v)]),
        bos_token_id=model.config.bos_token_id, pad_token_id=model.config.pad_token_id,
    )
    new = out[:, context.shape[1]:]  # (B, n_new); EOS is masked, so no sequence stops early
    if new.shape[1] != n_new:
        raise RuntimeError(f"generate returned {new.shape[1]} new tokens, expected {n_new}")
    return new


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
        Batch ``i`` uses ``torch.manual_seed(seed + i)``.

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
        torch.manual_seed(int(seed) + bi)
        hist = torch.from_numpy(np.tile(prompt, (b, 1))).to(device)  # (b, P) ECG ids so far
        made = 0
        while made < n_tokens:
            carried = hist[:, -(window - 1):] if made == 0 else hist[:, -keep:]  # (b, C - 1)
            ctx = torch.cat([torch.full((b, 1), bos, dtype=torch.long, device=device), carried], 1)  # (b, C)
            room = window - ctx.shape[1]
            if room < 1:  # a prompt as long as the window: keep only its last half-window
                ctx = torch.cat([ctx[:, :1], ctx[:, -keep:]], 1)
                room = window - ctx.shape[1]
            new = _generate_chunk(model, ctx, min(room, n_tokens - made), params, v)  # (b, g)
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
