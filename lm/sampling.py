"""Sampling ECG token sequences from a trained LM, and turning them into millivolts.

Batched autoregressive sampling with a pre-allocated KV cache (transformers ``StaticCache``), written as a
short loop rather than ``model.generate``: on 2 CPU cores, profiling the tiny LM at batch 128 showed
``generate`` spending most of its time growing the dynamic cache (``torch.cat``) and in
``torch.multinomial`` (an exponential draw over all 4096 codes per token); the static cache and
inverse-CDF sampling (one uniform per sequence, ``searchsorted`` on the cumulative probabilities) make
generation about 2-4x faster (``scripts/bench.py`` measures it). Only ECG codes can be sampled: the
logits are cut to the codebook, so PAD/BOS/EOS and the vocabulary padding never appear.

Every sequence starts with BOS (then an optional prompt: the tokens of a real ECG prefix). Sequences
longer than the model's context are produced with a sliding window: once the context is full, sampling
restarts from BOS plus the last half-context of tokens, which is exactly what the model saw in training
(BOS followed by a crop from the middle of a record). Reproducibility: batch ``i`` draws from its own
``torch.Generator`` seeded with ``seed + i``; the global RNG is untouched, so sampling inside a training
run does not change the run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ecg2llm.core.errors import ConfigError, TokenizerError


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
                  generator: torch.Generator, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``context`` ``(B, C)`` (BOS first) -> ``(B, n_new)`` new ids below ``v``, with a static KV cache.

    ``bias`` ``(V,)`` or ``(B, V)``, if given, is added to the logits before sampling (``-inf`` masks an id):
    how a conditional LM is steered (:func:`sample_conditioned`).
    """
    from transformers import StaticCache

    b, c = context.shape
    device = context.device
    cache = StaticCache(config=model.config, max_cache_len=c + n_new)
    logits = model(input_ids=context, cache=cache, use_cache=True, logits_to_keep=1,
                   cache_position=torch.arange(c, device=device)).logits[:, -1, :v]  # (B, V)
    out = torch.empty((b, n_new), dtype=torch.long, device=device)
    for t in range(n_new):
        out[:, t] = draw(logits if bias is None else logits.float() + bias, params, generator)
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
    from .conditioning import ConditionSpec

    if ConditionSpec.of_model(model) is not None:  # a conditional LM, sampled without conditions: codes only
        return sample_conditioned(model, n_samples, n_tokens, prompt=prompt, params=params,
                                  batch_size=batch_size, seed=seed, progress=progress).codes
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


# ------------------------------------------------------------------------------------ conditional LMs
@dataclass
class ConditionedSamples:
    """Output of :func:`sample_conditioned`.

    Attributes
    ----------
    codes : np.ndarray of int64, shape (N, n_codes)
        ECG codes only (control tokens removed), ready for ``tokenizer.decode``.
    events : list of list of (int, str)
        Per sample, every control token as ``(code index it precedes, name)``, e.g. ``(118, "beat:V")``.
    rhythm : list of str
        Per sample, the rhythm prefix (requested, or drawn by the model).
    streams : list of np.ndarray
        Per sample, the raw generated ids (codes and control tokens, prompt excluded).
    """

    codes: np.ndarray
    events: list
    rhythm: list
    streams: list
    prompt_events: list = field(default_factory=list)  # labels of a real prompt (set by ecg2llm.lm.synthesize)
    kv_cache: str | None = None  # LM v2: the KV cache sampled with (ecg2llm.lm.kvdecode), else None


def control_bias(spec, vocab: int, rhythm: str | None, beats, strength: float) -> torch.Tensor:
    """Additive logits ``(vocab,)``: PAD/BOS/EOS masked, other rhythms masked when one is requested,
    ``+strength`` on each requested beat class."""
    bias = torch.zeros(vocab)
    bias[spec.first_id - 3:spec.first_id] = -float("inf")  # PAD, BOS, EOS
    if rhythm is not None:
        keep = spec.id_of(f"rhythm:{rhythm}")
        for i in spec.rhythm_ids().tolist():
            if i != keep:
                bias[i] = -float("inf")
    for c in beats:
        bias[spec.id_of(f"beat:{c}")] += float(strength)
    return bias


@torch.inference_mode()
def sample_conditioned(model, n_samples: int, n_codes: int, conditions=(), strength: float = 3.0,
                       prompt: np.ndarray | None = None, prompt_rhythm: str | None = None,
                       params: SamplingParams | None = None, batch_size: int = 64, seed: int = 0,
                       progress: bool = False) -> ConditionedSamples:
    """Sample a conditional LM (see :mod:`ecg2llm.lm.conditioning`) until every sequence has ``n_codes`` ECG codes.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        An LM trained with ``conditioning: true`` (its config has ``ecg_conditioning``).
    n_samples, n_codes : int
    conditions : sequence of str
        ``"rhythm:AFIB"`` (the prefix; other rhythm tokens masked) and/or ``"beat:V"`` (``+strength`` log-odds
        on that beat token at every step). Empty: the model draws the rhythm prefix and every label itself.
    strength : float
        Log-odds added to each requested beat class.
    prompt : np.ndarray of int, optional
        A real prefix as a stream (codes and control tokens, :func:`ecg2llm.lm.conditioning.interleave`).
    prompt_rhythm : str, optional
        Rhythm in force at the prompt's start (the prefix token); required with ``prompt``.
    params : SamplingParams, optional
    batch_size, seed, progress
        As in :func:`sample_tokens`.
    """
    from .conditioning import ConditionSpec, split_stream

    spec = ConditionSpec.of_model(model)
    if spec is None:
        raise ConfigError("this LM was trained without control tokens (no config.ecg_conditioning); "
                          "conditions need an LM trained with `conditioning: true`")
    rhythm, beats = spec.parse_conditions(list(conditions))
    params = params or SamplingParams()
    v = int(model.config.ecg_codebook_size)
    vcut = spec.first_id + spec.n_tokens
    bos = int(model.config.bos_token_id)
    window = int(model.config.max_position_embeddings)
    keep = window // 2
    if n_codes < 1 or n_samples < 1:
        raise ConfigError(f"need n_samples >= 1 and n_codes >= 1, got {n_samples}, {n_codes}")
    prompt = np.zeros(0, np.int64) if prompt is None else np.asarray(prompt, dtype=np.int64).reshape(-1)
    if prompt.size:
        if rhythm is not None:
            raise ConfigError("a prompt sets the rhythm from its own annotations; drop the rhythm condition")
        if prompt_rhythm is None:
            raise ConfigError("a prompt for a conditional LM needs prompt_rhythm (the rhythm at its start)")
        rhythm_prefix = spec.id_of(f"rhythm:{prompt_rhythm}")
    device = next(model.parameters()).device
    bias = control_bias(spec, vcut, rhythm, beats, strength).to(device)  # (vcut,)
    rid = torch.from_numpy(spec.rhythm_ids()).to(device)
    first_bias = torch.full((vcut,), -float("inf"), device=device)  # the prefix: rhythm tokens only
    first_bias[rid] = bias[rid]
    codes = np.empty((n_samples, n_codes), dtype=np.int64)
    events, rhythms, streams = [], [], []
    from tqdm.auto import tqdm

    starts = list(range(0, n_samples, max(1, int(batch_size))))
    for bi, start in enumerate(tqdm(starts, desc="sampling", unit="batch", disable=not progress)):
        b = min(batch_size, n_samples - start)
        gen = torch.Generator(device=device).manual_seed(int(seed) + bi)
        bos_col = torch.full((b, 1), bos, dtype=torch.long, device=device)
        if prompt.size:
            prefix = torch.full((b, 1), rhythm_prefix, dtype=torch.long, device=device)
        else:
            prefix = _sample_chunk(model, bos_col, 1, params, vcut, gen, first_bias)  # (b, 1)
        hist = torch.from_numpy(np.tile(prompt, (b, 1))).to(device)  # (b, P)
        made = torch.zeros(b, dtype=torch.long, device=device)  # codes generated per row
        first = True
        while int(made.min()) < n_codes:
            # rhythm in force: the last rhythm token generated so far, else the prefix
            r_now = prefix[:, 0]
            if hist.shape[1]:
                is_r = torch.isin(hist, rid)
                last = torch.where(is_r, torch.arange(hist.shape[1], device=device), -1).max(1).values  # (b,)
                r_now = torch.where(last >= 0, hist.gather(1, last.clamp(min=0)[:, None]).squeeze(1), r_now)
            carried = hist[:, -(window - 2):] if first else hist[:, -keep:]
            ctx = torch.cat([bos_col, r_now[:, None], carried], 1)  # (b, C)
            room = window - ctx.shape[1]
            if room < 1:
                ctx = torch.cat([ctx[:, :2], ctx[:, -keep:]], 1)
                room = window - ctx.shape[1]
            need = n_codes - int(made.min())
            new = _sample_chunk(model, ctx, min(room, need + need // 6 + 4), params, vcut, gen, bias)
            hist = torch.cat([hist, new], 1)
            made += (new < v).sum(1)
            first = False
        gen_part = hist[:, prompt.size:].cpu().numpy()
        for i in range(b):
            c, ev = split_stream(gen_part[i], spec)
            if len(c) < n_codes:  # cannot happen: the loop runs until every row has n_codes codes
                raise RuntimeError("internal error: a sequence ended short of codes")
            codes[start + i] = c[:n_codes]
            events.append([(k, name) for k, name in ev if k < n_codes])
            rhythms.append(spec.name_of(int(prefix[i, 0]))[len("rhythm:"):])
            streams.append(gen_part[i])
    return ConditionedSamples(codes=codes, events=events, rhythm=rhythms, streams=streams)
