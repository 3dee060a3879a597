"""Sampling LM v2 models, with classifier-free guidance on the rhythm and beat conditions.

A v2 LM (:mod:`ecg2llm.lm.control`) reads ``BOS source:<db> lead:<lead> [rhythm:<R>]`` and then codes with inline
beat labels. Trained with condition dropout, the same network is two models: the *conditional* one (real
rhythm and beat labels in its context) and the *unconditional* one (every label replaced by ``rhythm:?`` /
``beat:?``). Classifier-free guidance (Ho & Salimans 2022) samples each token from::

    logits_g = logits_u + g * (logits_c - logits_u)          (torch.lerp(logits_u, logits_c, g))

so ``g = 1`` is plain conditional sampling, ``g = 0`` unconditional sampling, ``g > 1`` exaggerates what
the condition changes (regularity for ``rhythm:N``, rate for ``rhythm:VT``...). Both branches run in one
forward pass per step: the batch is ``[conditional rows; unconditional rows]`` in one static KV cache
(``2B`` rows), and both read the same sampled tokens -- the unconditional rows with labels nulled.

The unconditional branch never predicts a labelled token (its training sequences had none): it predicts
``beat:?`` where a beat starts. Its logit for ``beat:<c>`` is taken as ``logit(beat:?) + log P(c)`` with
``P(c)`` the class frequency in training (``spec.counts``, add-one smoothed), i.e. "a beat here, of a class
drawn from the training prior"; the same for rhythms. Guidance then scales the ratio
``P_c(beat:V) / (P_u(beat) P(V))``: how much more the condition asks for a V beat than the data at large.

**Lead-contrast guidance** (``lead_guidance=s``): the LM v2 learnt MLII and MIT-BIH's second leads (V1,
V2, V4, V5) with a lead token, and under ``lead:MLII`` it still draws some V1-like complexes (negative-
dominant QRS in 19 % of its 10-s windows against 5.5 % of real DS2 MLII windows). A third branch reads the
same tokens with the lead token swapped to a contrast lead, and each token is drawn from
``logits + (s - 1) * (logits - logits_contrast)`` -- a negative prompt on the lead, the same algebra as
guidance with the contrast branch as the "unconditional" one (no condition dropout needed: both leads are
real conditions). It composes with rhythm guidance (both terms added) and with the beat cache.

Entry point: :func:`sample_guided` (one :class:`ecg2llm.lm.request.GenerateConfig`; ``guidance=None``:
conditional only, one branch; a float: both branches), behind ``lm/generate.py`` and ``ECGPipeline.generate``.

**The v2 path.** This loop is LM v2's own and stays with the v2 models; LM v3 samples through the one loop of
:mod:`ecg2llm.lm.sampler` (``transformers`` logits processors), and both take the same request. It is not
ported onto that loop because its draws for a fixed seed (pinned by ``tests/v2_sampler_pins.json``) depend
on four things that loop does differently: the inverse-CDF draw (:func:`ecg2llm.lm.sampling.draw`, one
uniform per row) instead of ``torch.multinomial``; the guidance and lead-contrast branches as extra rows of
one batched forward in one KV cache instead of a processor with its own cache; its slide (BOS, prefix,
the rhythm in force, then the last half-window of tokens) instead of whole-beat slides; and stopping on a
count of ECG codes rather than of tokens. Its sampler rules (:mod:`ecg2llm.lm.grammar`,
:mod:`ecg2llm.lm.beatcache`, lead contrast, label gap) exist for LM v2 only.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

from ecg2llm.core.errors import ConfigError

from .beatcache import BeatCache, BeatCacheParams
from .beatcache import resolve as resolve_beat_cache
from .control import ControlSpec
from .grammar import BeatGrammar, LabelGap
from .kvdecode import KVDecoder, check_kv_cache, resolve_kv_cache, supports
from .request import (  # noqa: F401 (check_scale, check_lead_guidance: public here too)
    GenerateConfig,
    check_lead_guidance,
    check_legacy,
    check_scale,
    deprecated,
    legacy_fields,
    request_repr,
)
from .rhythm_check import detect_beats
from .sampling import ConditionedSamples, SamplingParams, draw, sample_tokens, tokens_to_mv


class _Vocab:
    """Tensors of a spec's id groups on one device, and the null mapping as a tensor op."""

    def __init__(self, spec: ControlSpec, device):
        self.spec = spec
        self.beat = torch.from_numpy(spec.beat_ids()).to(device)
        self.rhythm = torch.from_numpy(spec.rhythm_ids()).to(device)
        self.null_beat, self.null_rhythm = spec.null_beat_id, spec.null_rhythm_id
        c = spec.counts or {}
        prior_b = np.array([c.get(f"beat:{k}", 0) + 1.0 for k in spec.beat_classes])
        prior_r = np.array([c.get(f"rhythm:{k}", 0) + 1.0 for k in spec.rhythms])
        self.log_prior_beat = torch.from_numpy(np.log(prior_b / prior_b.sum())).float().to(device)  # (5,)
        self.log_prior_rhythm = torch.from_numpy(np.log(prior_r / prior_r.sum())).float().to(device)  # (16,)

    def to_null(self, ids: torch.Tensor) -> torch.Tensor:
        """``beat:<c>`` -> ``beat:?``, ``rhythm:<r>`` -> ``rhythm:?`` (any shape, a copy)."""
        out = ids.clone()
        out[torch.isin(ids, self.beat)] = self.null_beat
        out[torch.isin(ids, self.rhythm)] = self.null_rhythm
        return out

    def spread_null(self, logits: torch.Tensor) -> torch.Tensor:
        """Unconditional logits ``(B, V)``: each labelled token gets its null token's logit + log prior."""
        out = logits.clone()
        out[:, self.beat] = logits[:, self.null_beat, None] + self.log_prior_beat
        out[:, self.rhythm] = logits[:, self.null_rhythm, None] + self.log_prior_rhythm
        return out


def guided_bias(spec: ControlSpec, vocab: int, rhythm: str | None = None, beats=(), strength: float = 0.0,
                mask_rhythm_changes: bool = False) -> torch.Tensor:
    """Additive logits ``(vocab,)`` after mixing: what may be sampled, and the logit-bias steering.

    Masked (``-inf``): PAD/BOS/EOS, the null tokens, ``source:*`` and ``lead:*`` (given, never drawn),
    control tokens never seen in training, every rhythm and beat token of an unconditional LM, and the
    other rhythms when one is requested. ``+strength`` on each requested beat class (v1 steering, which
    composes with guidance).
    """
    bias = torch.zeros(vocab)
    bias[spec.first_id - 3:spec.first_id] = -float("inf")
    for name in spec.names:
        i = spec.id_of(name)
        kind = name.partition(":")[0]
        untrained = bool(spec.counts) and spec.counts.get(name, 0) == 0 and kind in ("beat", "rhythm")
        if name.endswith(":?") or kind in ("source", "lead") or untrained or \
                (kind in ("beat", "rhythm") and not spec.conditional):
            bias[i] = -float("inf")
    if rhythm is not None:
        keep = spec.id_of(f"rhythm:{rhythm}")
        for i in spec.rhythm_ids().tolist():
            if i != keep:
                bias[i] = -float("inf")
    for c in beats:
        bias[spec.id_of(f"beat:{c}")] += float(strength)
    return bias


def lead_contrast(model, spec: ControlSpec, lead: str, scale: float | None,
                  contrast_lead: str | None = None) -> tuple[int, int, float] | None:
    """``(lead id, contrast lead id, scale)`` for :func:`_chunk`, or None when lead guidance is off.

    Refuses a scale that is not a finite number >= 0, a contrast lead equal to ``lead`` and a lead outside
    the LM's vocabulary. The contrast lead should be one the LM learnt at some stage (the shipped LM: MLII,
    V1, V2, V4, V5 and the handheld I); an LM fine-tuned on MLII alone records only that in
    ``config.ecg_leads`` but still knows the leads of its pretraining, so that record is not checked.
    """
    scale = check_lead_guidance(scale)
    if scale is None:
        if contrast_lead is not None:
            raise ConfigError(f"contrast_lead={contrast_lead!r} needs a lead_guidance scale (e.g. 1.25)")
        return None
    other = contrast_lead or ("MLII" if lead == "V1" else "V1")
    if other == lead:
        raise ConfigError(f"contrast_lead is the lead being generated ({lead}); pick another one")
    ids = spec.lead_id(lead), spec.lead_id(other)  # unknown leads: one line listing the known ones
    return None if scale == 1.0 else (*ids, scale)


def _chunk(model, ctx: torch.Tensor, n_new: int, params: SamplingParams, vcut: int, gen: torch.Generator,
           bias: torch.Tensor, voc: _Vocab, mode: str, g: float, grammar: BeatGrammar | None = None,
           gstate: dict | None = None, n_codes: int = 0, cache: BeatCache | None = None,
           cstate: dict | None = None, contrast: tuple[int, int, float] | None = None,
           kv_cache: str = "float32") -> torch.Tensor:
    """``ctx`` ``(b, C)`` conditional context -> ``(b, n_new)`` ids; ``mode`` cond | uncond | both.

    ``grammar`` (with its per-row ``gstate``, advanced in place) constrains the beat labels drawn
    (:mod:`ecg2llm.lm.grammar`); ``cache`` (with ``cstate``) reweights each code towards the previous beats'
    (:mod:`ecg2llm.lm.beatcache`); ``n_codes`` is the codebook size (ids below it are ECG codes). ``contrast``
    ``(lead id, contrast lead id, scale)`` adds the lead-contrast branch: the primary branch's context with
    the lead token swapped, its logits pushed away from by ``(scale - 1) * (primary - contrast)``.
    ``kv_cache``: the resolved :class:`ecg2llm.lm.kvdecode.KVDecoder` cache (``"float32"`` / ``"float16"``).
    """
    b, c = ctx.shape
    device = ctx.device
    nulled = voc.to_null(ctx)
    x = {"cond": ctx, "uncond": nulled, "both": torch.cat([ctx, nulled])}[mode]  # (b or 2b, C)
    if contrast is not None:  # + the primary branch under the contrast lead (lead tokens sit in the head only)
        primary = x[:b]
        x = torch.cat([x, torch.where(primary == contrast[0], contrast[1], primary)])  # (+b, C)
    if supports(model):  # the filled-prefix KV cache (ecg2llm.lm.kvdecode): same logits, less memory traffic
        step = partial(KVDecoder(model, x.shape[0], c + n_new, kv_cache=kv_cache).step, logits_cut=vcut)
    else:  # any other architecture: transformers' static cache
        from transformers import StaticCache

        static = StaticCache(config=model.config, max_cache_len=c + n_new)
        filled = [0]

        def step(ids: torch.Tensor) -> torch.Tensor:
            pos = torch.arange(filled[0], filled[0] + ids.shape[1], device=device)
            filled[0] += ids.shape[1]
            return model(input_ids=ids, cache=static, use_cache=True, logits_to_keep=1,
                         cache_position=pos).logits[:, -1, :vcut].float()

    logits = step(x)  # (b|2b, V)
    out = torch.empty((b, n_new), dtype=torch.long, device=device)
    main = 2 * b if mode == "both" else b  # rows of the guidance branches; the contrast rows follow
    for t in range(n_new):
        if mode == "both":
            mixed = torch.lerp(voc.spread_null(logits[b:main]), logits[:b], float(g))  # (b, V)
        elif mode == "uncond":
            mixed = voc.spread_null(logits[:b])
        else:
            mixed = logits[:b]
        if contrast is not None:  # logits + (s - 1) (primary - contrast): lerp(contrast, primary, s) at g = 1
            pri, con = logits[:b], logits[main:]
            if mode == "uncond":
                pri, con = voc.spread_null(pri), voc.spread_null(con)
            mixed = mixed + (float(contrast[2]) - 1.0) * (pri - con)
        if grammar is not None:
            mixed = grammar.apply(mixed, gstate, n_codes)
        if cache is not None:
            mixed = cache.apply(mixed, cstate, n_codes)
        out[:, t] = draw(mixed + bias, params, gen)
        if grammar is not None:
            grammar.update(gstate, out[:, t], n_codes)
        if cache is not None:
            cache.update(cstate, out[:, t], n_codes)
        if t + 1 < n_new:
            tok = out[:, t:t + 1]  # (b, 1)
            nxt = {"cond": tok, "uncond": voc.to_null(tok), "both": torch.cat([tok, voc.to_null(tok)])}[mode]
            if contrast is not None:
                nxt = torch.cat([nxt, nxt[:b]])
            logits = step(nxt)
    return out


def null_label_stream(codes, signal: np.ndarray, fs: float, samples_per_token: float,
                      spec: ControlSpec) -> np.ndarray:
    """An unlabelled ECG in the layout of a condition-dropped training sequence: codes with ``beat:?``.

    Beats are found by wfdb's XQRS detector (:func:`ecg2llm.lm.rhythm_check.detect_beats`) on ``signal`` (the
    prompt in mV at ``fs``, e.g. its decoded codes) and each ``beat:?`` goes before the code
    ``spec.lead_s`` ahead of its R peak, where :func:`ecg2llm.lm.conditioning.label_events` puts a real label.
    A conditional LM then continues it through its unconditional branch (``unconditional=True``).
    """
    from .conditioning import interleave

    codes = np.asarray(codes, np.int64)
    if not spec.conditional:
        return codes
    peaks = detect_beats(np.asarray(signal, np.float64), fs)
    k = (np.maximum(0, peaks - int(round(spec.lead_s * fs))) // samples_per_token).astype(np.int64)
    k = k[k < len(codes)]
    return interleave(codes, k, np.full(len(k), spec.null_beat_id, np.int64))


#: ``sample_guided``'s arguments before :class:`ecg2llm.lm.request.GenerateConfig`, in their old positional order
_LEGACY = ("n_samples", "n_codes", "conditions", "guidance", "strength", "source", "lead", "params", "batch_size",
           "seed", "unconditional", "progress", "prompt", "prompt_rhythm", "grammar", "tokens_per_second",
           "beat_cache", "lead_guidance", "contrast_lead", "kv_cache", "label_gap")
#: their defaults where they differ from GenerateConfig's
_LEGACY_DEFAULTS = {"condition_strength": 0.0, "grammar": False}


def sample_guided(model, request: GenerateConfig | None = None, n_codes: int | None = None, *legacy_args,
                  tokens_per_second: float = 36.0, prompt=None, prompt_rhythm: str | None = None,
                  unconditional: bool = False, spec: ControlSpec | None = None, progress: bool = False,
                  **legacy) -> ConditionedSamples:
    """Sample an LM v2 until every sequence has ``n_codes`` ECG codes, optionally with guidance.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        An LM trained with ``sources`` set (its config has ``ecg_conditioning["version"] == 2``).
    request : GenerateConfig
        What to draw (:class:`ecg2llm.lm.request.GenerateConfig`): ``num_samples``, ``seed`` (batch ``i`` draws
        from ``torch.Generator(seed + i)``), ``batch_size``, ``temperature``/``top_k``/``top_p``, ``condition``
        (``"rhythm:N"``: the rhythm prefix, other rhythms masked inline; ``"beat:V"``: ``+condition_strength``
        log-odds after mixing; without a rhythm the prefix rhythm is drawn), ``guidance`` (None: the
        conditional branch alone; a float ``g``: both branches in one batch, logits ``lerp(uncond, cond, g)``;
        ``1`` = the conditional samples, ``0`` = the unconditional ones, ``> 1`` stronger adherence; needs
        ``condition_dropout > 0``), ``source``/``lead`` (the prefix; None: ``mitdb``/``MLII``), ``grammar``
        (the requested rhythm's beat-class grammar, :mod:`ecg2llm.lm.grammar`; steps aside when beat classes are
        requested), ``beat_cache`` (a strength in the LM's fitted shape, :mod:`ecg2llm.lm.beatcache`),
        ``lead_guidance``/``contrast_lead`` (a negative prompt on the lead: a third branch under
        ``lead:<contrast_lead>``, logits moved by ``(lead_guidance - 1) * (logits - logits_contrast)``;
        default contrast V1, or MLII for V1), ``kv_cache`` (:mod:`ecg2llm.lm.kvdecode`: the same seed gives the
        same samples only with the same cache) and ``label_gap`` (no rhythm requested: a beat label forced
        after that many seconds without one, :class:`ecg2llm.lm.grammar.LabelGap`). ``seconds`` gives
        ``n_codes`` when that is not given.
    n_codes : int, optional
        ECG codes per sample (default ``ceil(request.seconds * tokens_per_second)``).
    tokens_per_second : float
        The tokenizer's token rate (turns the grammar's RR limits and ``label_gap`` into codes).
    prompt : array-like of int, optional
        A real stream to continue, in the training layout: codes with their inline control tokens
        (``beat:<c>`` from annotations, or ``beat:?`` at detected beats, :func:`null_label_stream`).
        Only the ``n_codes`` codes drawn after it are returned (codes, events, streams).
    prompt_rhythm : str, optional
        The rhythm prefix of a prompted stream (``"N"``, ...; ``"?"`` = unlabelled); ignored when a rhythm
        is requested. Default: ``"?"`` when ``prompt`` is given.
    unconditional : bool
        Sample the unconditional branch alone (labels nulled in the context, drawn from the prior).
    spec : ControlSpec, optional
        The LM's control spec, when the caller has it (default: :meth:`ControlSpec.of_model`).
    progress : bool
        A tqdm bar over batches.

    The arguments of before (``sample_guided(model, n_samples, n_codes, conditions=..., strength=...,
    params=..., beat_cache=BeatCacheParams(...))``) still work until ecg2llm 0.4.0 with a ``FutureWarning``
    naming the request to pass instead; note that their defaults were ``strength=0`` and ``grammar=False``.

    Returns
    -------
    ConditionedSamples
        ``codes`` ``(num_samples, n_codes)`` in ``[0, codebook_size)``, per-sample events, rhythm, streams.

    Examples
    --------
    >>> req = GenerateConfig(num_samples=8, condition=["rhythm:N"], guidance=2.0)    # doctest: +SKIP
    >>> sample_guided(lm, req, n_codes=360).codes.shape                               # doctest: +SKIP
    (8, 360)
    """
    if request is None or not isinstance(request, GenerateConfig):
        return _legacy_call(model, request, n_codes, legacy_args, legacy, tokens_per_second=tokens_per_second,
                            prompt=prompt, prompt_rhythm=prompt_rhythm, unconditional=unconditional, spec=spec,
                            progress=progress)
    if legacy_args or legacy:
        raise TypeError(f"sample_guided(model, request, n_codes) takes the sampling settings in the request only; "
                        f"got the keyword arguments {sorted(legacy)} and {len(legacy_args)} more positional")
    n = int(np.ceil(request.seconds * tokens_per_second)) if n_codes is None else int(n_codes)
    return _sample(model, request, n, resolve_beat_cache(model, request.beat_cache), spec=spec,
                   tokens_per_second=tokens_per_second, prompt=prompt, prompt_rhythm=prompt_rhythm,
                   unconditional=unconditional, progress=progress)


def _legacy_call(model, first, n_codes, args: tuple, given: dict, **loop) -> ConditionedSamples:
    """``sample_guided`` called as before the request: the same draws, with a ``FutureWarning`` naming the
    request to pass instead."""
    named = dict(zip(_LEGACY, (first, n_codes, *args)))
    named = {k: v for k, v in named.items() if v is not None or k not in ("n_samples", "n_codes")}
    if len(args) + 2 > len(_LEGACY) or set(named) & set(given):
        raise TypeError("sample_guided() got too many or repeated arguments; pass one GenerateConfig")
    given = {**named, **given}
    check_legacy("sample_guided", given, _LEGACY)
    if "n_samples" not in given or "n_codes" not in given:
        raise TypeError("sample_guided(model, request, n_codes) needs a GenerateConfig")
    for k in ("unconditional", "progress", "prompt", "prompt_rhythm", "tokens_per_second"):  # still keywords
        if k in given:
            loop[k] = given.pop(k)
    n = int(given.pop("n_codes"))
    cache = given.get("beat_cache")
    fields_ = {**_LEGACY_DEFAULTS, **legacy_fields(given, {"n_samples": "num_samples", "conditions": "condition",
                                                           "strength": "condition_strength"})}
    req = GenerateConfig(seconds=max(n, 1) / float(loop.get("tokens_per_second", 36.0)), **fields_)
    shape = " (the beat cache's shape then comes from the LM's config.ecg_beat_cache)" \
        if isinstance(cache, BeatCacheParams) and cache.strength > 0 else ""
    deprecated("sample_guided", sorted(set(given) | {"n_samples"}),
               f"sample_guided(model, {request_repr(req, GenerateConfig(seconds=req.seconds))}, n_codes={n}, "
               f"tokens_per_second=...){shape}", stacklevel=4)
    if not isinstance(cache, BeatCacheParams):
        cache = resolve_beat_cache(model, cache)
    return _sample(model, req, n, cache, **loop)


@torch.inference_mode()
def _sample(model, req: GenerateConfig, n_codes: int, beat_cache: BeatCacheParams | None, *,
            spec: ControlSpec | None = None, tokens_per_second: float = 36.0, prompt=None,
            prompt_rhythm: str | None = None, unconditional: bool = False,
            progress: bool = False) -> ConditionedSamples:
    """The LM v2 loop (:func:`sample_guided`), with the beat cache resolved."""
    conditions, guidance, strength = list(req.condition), req.guidance, float(req.condition_strength)
    source, lead, params = req.source or "mitdb", req.lead or "MLII", req.sampling
    n_samples, batch_size, seed, grammar = int(req.num_samples), int(req.batch_size), int(req.seed), bool(req.grammar)
    lead_guidance, contrast_lead, kv_cache, label_gap = req.lead_guidance, req.contrast_lead, req.kv_cache, \
        req.label_gap or None
    spec = spec if spec is not None else ControlSpec.of_model(model)
    if spec is None:
        raise ConfigError("sample_guided needs an LM v2 (trained with `sources`); use ecg2llm.lm.sampling for v1 LMs")
    rhythm, beats = spec.parse_conditions(list(conditions)) if spec.conditional else (None, [])
    if not spec.conditional and (list(conditions) or guidance is not None or unconditional):
        raise ConfigError("this LM was trained without rhythm/beat tokens: conditions and guidance need "
                          "an LM "
                          "trained with `conditioning: true`")
    if (guidance is not None or unconditional) and spec.condition_dropout <= 0:
        raise ConfigError("guidance needs an LM trained with condition_dropout > 0 (it has no unconditional "
                          "branch); sample it with guidance=None")
    if guidance is not None and unconditional:
        raise ConfigError("give either guidance or unconditional=True, not both")
    if n_codes < 1 or n_samples < 1:
        raise ConfigError(f"need n_samples >= 1 and n_codes >= 1, got {n_samples}, {n_codes}")
    contrast = lead_contrast(model, spec, lead, lead_guidance, contrast_lead)
    device = next(model.parameters()).device
    check_kv_cache(kv_cache)
    kv = resolve_kv_cache(kv_cache, device) if supports(model) else None  # None: transformers' static cache
    prompt = np.zeros(0, np.int64) if prompt is None else np.asarray(prompt, np.int64).ravel()
    if prompt.size and (prompt.min() < 0 or prompt.max() >= spec.first_id + spec.n_tokens
                        or np.isin(prompt, np.arange(spec.first_id - 3, spec.first_id)).any()):
        raise ConfigError("prompt ids must be ECG codes or control tokens of this LM (no PAD/BOS/EOS)")
    mode = "both" if guidance is not None else ("uncond" if unconditional else "cond")
    g = 1.0 if guidance is None else float(guidance)
    params = params or SamplingParams()
    v = int(model.config.ecg_codebook_size)
    vcut = spec.first_id + spec.n_tokens
    bos = int(model.config.bos_token_id)
    window = int(model.config.max_position_embeddings)
    keep = window // 2
    voc = _Vocab(spec, device)
    bias = guided_bias(spec, vcut, rhythm, beats, strength).to(device)  # (vcut,)
    head = torch.tensor([bos] + spec.prefix(source, lead), device=device)  # (3,)
    first_bias = torch.full((vcut,), -float("inf"), device=device)  # the rhythm prefix: rhythm tokens only
    first_bias[voc.rhythm] = bias[voc.rhythm]
    codes = np.empty((n_samples, n_codes), dtype=np.int64)
    events, rhythms, streams = [], [], []
    from tqdm.auto import tqdm

    from .conditioning import split_stream

    # a grammar fixes every beat's class, so it steps aside when beat classes are requested explicitly
    rules = BeatGrammar.for_rhythm(rhythm, spec, tokens_per_second, device) \
        if grammar and mode != "uncond" and not beats else None
    gap = LabelGap.for_model(spec, tokens_per_second, device, label_gap) \
        if label_gap and rules is None and spec.conditional and mode != "uncond" else None
    beat_rule = rules if rules is not None else gap  # what constrains the beat labels (one at most)
    cache = BeatCache.for_model(model, beat_cache, spec, device) \
        if beat_cache is not None and beat_cache.strength > 0 else None
    starts = list(range(0, n_samples, max(1, int(batch_size))))
    for bi, start in enumerate(tqdm(starts, desc="sampling", unit="batch", disable=not progress)):
        b = min(batch_size, n_samples - start)
        gen = torch.Generator(device=device).manual_seed(int(seed) + bi)
        head_b = head.expand(b, -1)  # (b, 3)
        prefix = torch.zeros((b, 0), dtype=torch.long, device=device)
        if spec.conditional:
            if prompt.size and rhythm is None:  # a prompt's own rhythm (or the null one)
                r_id = spec.id_of(f"rhythm:{prompt_rhythm or '?'}")
                prefix = torch.full((b, 1), r_id, dtype=torch.long, device=device)
            elif rhythm is not None:
                prefix = torch.full((b, 1), spec.id_of(f"rhythm:{rhythm}"), dtype=torch.long, device=device)
            else:
                prefix = _chunk(model, head_b, 1, params, vcut, gen, first_bias, voc, mode, g,
                                contrast=contrast, kv_cache=kv)  # (b, 1)
        hist = torch.as_tensor(prompt, device=device).expand(b, -1).clone()  # (b, P): the prompt first
        gstate = rules.new_state(b, gen, device) if rules is not None else None
        if gap is not None:  # rows with a real rhythm prefix (not the unlabelled rhythm:?) stay labelled
            gstate = gap.new_state(prefix[:, 0] != spec.id_of("rhythm:?") if prefix.shape[1]
                                   else torch.zeros(b, dtype=torch.bool, device=device))
        cstate = cache.new_state(b, device) if cache is not None else None
        if cache is not None:  # the prompt's beats are the first ones the cache holds
            for tok_t in torch.as_tensor(prompt, device=device).unsqueeze(1).expand(-1, b):
                cache.update(cstate, tok_t, v)
        made = torch.zeros(b, dtype=torch.long, device=device)
        first = True
        while int(made.min()) < n_codes:
            if hist.shape[1] - prompt.size > 8 * n_codes + 2 * window:  # a model (or scale) drawing labels only
                raise ConfigError(f"sampling drew {hist.shape[1]} tokens but only {int(made.min())} ECG "
                                  f"codes in "
                                  f"some sequence: the model emits control tokens without codes; lower the "
                                  f"guidance scale ({guidance}) or use a better-trained LM")
            r_now = prefix
            if spec.conditional and hist.shape[1]:  # rhythm in force: the last inline one, else the prefix
                is_r = torch.isin(hist, voc.rhythm)
                last = torch.where(is_r, torch.arange(hist.shape[1], device=device), -1).max(1).values  # (b,)
                r_now = torch.where(last >= 0, hist.gather(1, last.clamp(min=0)[:, None]).squeeze(1),
                                    prefix[:, 0])[:, None]
            n_head = head_b.shape[1] + r_now.shape[1]
            carried = hist[:, -(window - n_head):] if first else hist[:, -keep:]
            ctx = torch.cat([head_b, r_now, carried], 1)  # (b, C)
            room = window - ctx.shape[1]
            if room < 1:
                ctx = torch.cat([ctx[:, :n_head], ctx[:, -keep:]], 1)
                room = window - ctx.shape[1]
            need = n_codes - int(made.min())
            new = _chunk(model, ctx, min(room, need + need // 6 + 4), params, vcut, gen, bias, voc, mode, g,
                         beat_rule, gstate, v, cache, cstate, contrast, kv)
            hist = torch.cat([hist, new], 1)
            made += (new < v).sum(1)
            first = False
        part = hist[:, prompt.size:].cpu().numpy()
        for i in range(b):
            c, ev = split_stream(part[i], spec)
            codes[start + i] = c[:n_codes]
            events.append([(k, name) for k, name in ev if k < n_codes])
            rhythms.append(spec.name_of(int(prefix[i, 0]))[len("rhythm:"):]
                           if prefix.shape[1] and not prompt.size else None)
            streams.append(part[i])
    return ConditionedSamples(codes=codes, events=events, rhythm=rhythms, streams=streams, kv_cache=kv)


def generated_windows(model, tok, n: int = 64, seconds: float = 10.0, seed: int = 0, batch_size: int = 32,
                      request: GenerateConfig | None = None) -> list[np.ndarray]:
    """``n`` generated windows of ``seconds`` in mV from an LM (v2, or one without control tokens) decoded by
    ``tok``: the clean band, ``round(seconds * tokens_per_second)`` codes each.

    ``request`` (optional) gives the other sampling settings (conditions, guidance, temperature...); its
    ``num_samples``, ``seconds``, ``seed`` and ``batch_size`` are replaced by the arguments. Without one, an LM
    v2 is sampled as trained: no beat-class strength, no grammar.
    """
    from dataclasses import replace

    base = request if request is not None else GenerateConfig(condition_strength=0.0, grammar=False)
    req = replace(base, num_samples=int(n), seconds=float(seconds), seed=int(seed), batch_size=int(batch_size))
    n_tok = int(round(seconds * tok.tokens_per_second))
    spec = ControlSpec.of_model(model)
    if spec is not None:
        ids = sample_guided(model, req, n_tok, tokens_per_second=tok.tokens_per_second, spec=spec).codes
    else:
        ids = sample_tokens(model, n, n_tok, params=req.sampling, batch_size=batch_size, seed=seed)
    return [tokens_to_mv(tok, r) for r in ids]
