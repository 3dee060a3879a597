"""Synthetic ECG records from a trained LM: tokens -> millivolts -> an ECG folder.

Library side of ``lm/generate.py``. The output is written by :func:`ecg2llm.tokenizer.folder.write_folder` (the one
writer of the one folder format, replaced atomically; a non-empty folder without a manifest is refused):
``sample_000.npy`` / ``.hea`` / ``.dat`` in mV at the tokenizer's rate, ``sample_000.atr`` for conditional
LMs (beat labels at the R peaks as MIT-BIH symbols, rhythm notes ``+`` with ``(AFIB``..., readable by
``wfdb.rdann``), ``sample_000.png``, ``tokens.npy`` (int32 ``(num_samples, tokens)``, the sampled ids
without the prompt) and ``manifest.json`` (per-sample prompt, model, tokenizer, sampling settings, seed,
guidance, texture, throughput).

Two LM generations share this path, both driven by one request (:class:`ecg2llm.lm.request.GenerateConfig`).
LMs without a :class:`ecg2llm.lm.control.ControlSpec` (``configs/lm/tiny.yaml``, ``tiny_cond.yaml``: the
first LM design) sample through :mod:`ecg2llm.lm.sampling`. LM v2 (``source:``/``lead:`` tokens, trained
with condition dropout) samples through :func:`ecg2llm.lm.guidance.sample_guided`: ``source``/``lead`` pick
the prefix (default ``mitdb``/``MLII``) and ``guidance`` the classifier-free guidance scale (None: the
conditional branch only).
Independently, a tokenizer with a texture model (tokenizer v2, ``tok.has_texture``) decodes with
``texture=True`` by default, seeded per sample by :func:`texture_seed` (same seed => same output), and
adds a baseline drawn from the tokenizer's wander model where it has one (``tok.sample_state``);
``texture=False`` gives the clean ECG band.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ecg2llm.core.errors import ConfigError
from ecg2llm.core.io import git_sha, sha256_file, versions
from ecg2llm.tokenizer.ecg import write_annotations
from ecg2llm.tokenizer.folder import check_replaceable, write_folder

from .beatcache import resolve as resolve_beat_cache
from .conditioning import ConditionSpec, events_to_annotations
from .control import ControlSpec
from .decode_options import has_texture, resolve_texture, texture_seed, wander_seed  # noqa: F401 (public here)
from .model import load_lm, load_tokenizer_for
from .request import GenerateConfig, check_guidance, check_legacy, deprecated, legacy_fields, request_repr
from .sampling import SamplingParams, check_stateless, sample_tokens  # noqa: F401 (SamplingParams: public here)


def _prompt_ids(cfg: GenerateConfig, tok) -> tuple[np.ndarray, float, int]:
    """Tokens of the real prefix, its exact length in seconds, and its first sample in the record."""
    from ecg2llm.tokenizer.data import read_record, resolve_data_dir

    rec = read_record(str(cfg.prompt_record), resolve_data_dir(cfg.data_dir), lead=cfg.prompt_lead,
                      annotations=False)
    a = int(round(cfg.prompt_start * rec.fs))
    b = a + int(round(cfg.prompt_seconds * rec.fs))
    if a < 0 or b > len(rec.signal):
        raise ConfigError(
            f"prompt [{cfg.prompt_start}, {cfg.prompt_start + cfg.prompt_seconds}) s is outside record "
            f"{cfg.prompt_record} ({len(rec.signal) / rec.fs:.1f} s)"
        )
    ids, _ = tok.encode(rec.signal[a:b], rec.fs)
    n = int(round(cfg.prompt_seconds * tok.tokens_per_second))
    ids = ids[:n]
    return ids, len(ids) / tok.tokens_per_second, a


def check_request(model, tok, req: GenerateConfig) -> tuple[ControlSpec | None, bool]:
    """Check the request's v2-only fields against the LM and tokenizer; returns ``(ControlSpec or None, texture)``.

    Raises
    ------
    ConfigError
        ``guidance``, ``source`` or ``lead`` for an LM without a :class:`ecg2llm.lm.control.ControlSpec`,
        unknown source/lead names, a bad guidance scale, or ``texture=True`` without a texture model.
    """
    guidance, source, lead = check_guidance(req.guidance), req.source, req.lead
    ctl = ControlSpec.of_model(model)
    if ctl is None:
        if guidance is not None:
            raise ConfigError(f"guidance={guidance} needs an LM trained with condition dropout "
                              f"(configs/lm/v2_*.yaml); this LM has no null conditions: use "
                              f"condition=... with condition_strength (logit bias) instead")
        if source is not None or lead is not None:
            leads = list(getattr(model.config, "ecg_leads", None) or ["MLII"])
            raise ConfigError(f"source/lead tokens need an LM v2 (configs/lm/v2_*.yaml); this LM was "
                              f"trained on {leads} only: leave source and lead unset")
    else:
        if source is not None:
            ctl.source_id(source)  # raises listing the known sources
        if lead is not None:
            ctl.lead_id(lead)
    return ctl, resolve_texture(tok, req.texture)


@dataclass
class Synthesis:
    """What one call of :func:`synthesize` drew: signals in mV (prompt first), codes, beat labels, timing."""

    signals: np.ndarray             # (K, n_out) float32 mV at the tokenizer's fs
    ids: np.ndarray                 # (K, n_tok) sampled codes, prompt excluded
    annotations: list | None        # one BeatLabels per sample (conditional LMs), else None
    sampling_s: float
    total_s: float
    texture: bool = False           # decoded with texture (tokenizer v2)
    texture_seeds: list | None = None  # per sample, the texture seed (texture_seed(seed, i)), else None
    lm_version: int = 1             # 2: sampled by ecg2llm.lm.guidance.sample_guided (source/lead/guidance)
    wander: bool = False            # a sampled baseline added (tokenizer wander model, with texture)
    beat_cache: dict | None = None  # the beat cache sampled with (ecg2llm.lm.beatcache.BeatCacheParams), else None
    lead_guidance: dict | None = None  # {"scale", "lead", "contrast_lead"} when lead guidance was on, else None
    kv_cache: str | None = None     # LM v2: the KV cache sampled with (lm/kvdecode.py: float32 | float16), else None


#: ``synthesize``'s keyword arguments before :class:`GenerateConfig` (deprecated; until ``REMOVED_IN``)
_LEGACY = ("num_samples", "seconds", "seed", "params", "batch_size", "condition", "condition_strength", "guidance",
           "source", "lead", "texture", "grammar", "beat_cache", "lead_guidance", "contrast_lead", "kv_cache",
           "label_gap")


def synthesize(model, tok, request: GenerateConfig | None = None, *legacy_args, prompt: np.ndarray | None = None,
               prompt_labels: tuple | None = None, progress: bool = True, **legacy) -> Synthesis:
    """Sample ``request.num_samples`` ECGs of ``request.seconds`` after an optional prompt, decoded to millivolts.

    The one sampling path behind ``lm/generate.py`` and :meth:`ecg2llm.ECGPipeline.generate` /
    :meth:`~ecg2llm.ECGPipeline.forecast`: the same request (seed and batch size included) gives identical
    arrays. An LM v2 (:class:`ecg2llm.lm.control.ControlSpec`) samples through
    :func:`ecg2llm.lm.guidance.sample_guided`, an LM without one through :mod:`ecg2llm.lm.sampling`.

    Parameters
    ----------
    model, tok
        A loaded LM and the tokenizer it was trained with (stateless decode).
    request : GenerateConfig
        What to draw: sizes, seed, sampling settings, conditions and the LM v2 settings (each field's meaning
        is on :class:`GenerateConfig`); its file-and-device fields are not read here. Unknown conditions raise
        a ``ConfigError`` (a ``ValueError``) that lists the known ones.
    prompt : np.ndarray, optional
        Codes of a real prefix; the returned signals start with its decoded samples.
    prompt_labels : tuple, optional
        Conditional LMs: ``(stream, rhythm, events)`` of the prompt's own labels (:func:`_prompt_labels`).
    progress : bool
        A tqdm bar over batches.

    The keyword arguments of before (``num_samples``, ``seconds``, ``seed``, ``params``, ``condition``...)
    still work until ecg2llm 0.4.0 with a ``FutureWarning`` naming the request to pass instead.
    """
    if request is None or not isinstance(request, GenerateConfig):
        request = _legacy_request(request, legacy_args, legacy)
    elif legacy_args or legacy:
        raise TypeError(f"synthesize(model, tok, request) takes the sampling settings in the request only; got "
                        f"{len(legacy_args)} more positional and the keyword arguments {sorted(legacy)}")
    req = request
    condition, condition_strength, seed = list(req.condition), float(req.condition_strength), int(req.seed)
    num_samples, seconds, batch_size, params = int(req.num_samples), float(req.seconds), int(req.batch_size), \
        req.sampling
    lead_guidance, contrast_lead, lead = req.lead_guidance, req.contrast_lead, req.lead
    beat_cache, label_gap = req.beat_cache, req.label_gap
    prompt = np.zeros(0, np.int64) if prompt is None else np.asarray(prompt, np.int64)
    if req.label_guidance:
        raise ConfigError(f"label_guidance={req.label_guidance} is an LM v3 processor (beats with labels in the "
                          "stream); this LM is a v1/v2 LM: leave --label_guidance unset")
    ctl, use_texture = check_request(model, tok, req)
    spec = ctl if ctl is not None else ConditionSpec.of_model(model)
    if condition and (spec is None or (ctl is not None and not ctl.conditional)):
        raise ConfigError(f"condition {','.join(condition)} needs a conditional LM (trained with "
                          f"`conditioning: true`, e.g. configs/lm/tiny_cond.yaml); this LM has no control tokens")
    if beat_cache and ctl is None:
        raise ConfigError(f"the beat cache (beat_cache={beat_cache}) needs a conditional LM v2; this is a v1 LM "
                          f"(sample it without --beat_cache)")
    if (lead_guidance is not None or contrast_lead is not None) and ctl is None:
        raise ConfigError(f"lead guidance (lead_guidance={lead_guidance}) needs an LM v2 (trained with a lead "
                          f"token); this is a v1 LM (sample it without --lead_guidance)")
    if label_gap and (ctl is None or not ctl.conditional):
        raise ConfigError(f"label_gap={label_gap} needs a conditional LM v2 (beat labels in its stream); "
                          f"sample this LM without --label_gap")
    cache_params = resolve_beat_cache(model, beat_cache) if ctl is not None else None
    default_for = None
    if ctl is not None and lead_guidance is None and contrast_lead is None:
        lead_guidance, default_for = condition_default(model, condition, "lead_guidance")
    prompt_s = len(prompt) / tok.tokens_per_second
    n_tok = int(np.ceil(seconds * tok.tokens_per_second))
    t0 = time.perf_counter()
    labels, kv_used = None, None
    if ctl is not None:
        from .guidance import null_label_stream, sample_guided

        stream, prompt_rhythm, unlabelled = None, None, False
        if prompt.size:  # a labelled prompt (its record's .atr) or beat:? at detected beats
            if prompt_labels is not None:
                stream, prompt_rhythm = prompt_labels[0], prompt_labels[1]
            else:
                stream = null_label_stream(prompt, tok.decode(prompt, None), tok.fs, tok.samples_per_token, ctl)
                unlabelled = (ctl.conditional and ctl.condition_dropout > 0 and not condition
                              and req.guidance is None)
        if lead_guidance != req.lead_guidance:  # the LM's default for the requested condition
            req = replace(req, lead_guidance=lead_guidance)
        drawn = sample_guided(model, req, n_tok, tokens_per_second=tok.tokens_per_second, prompt=stream,
                              prompt_rhythm=prompt_rhythm, unconditional=unlabelled, spec=ctl, progress=progress)
        labels = drawn if ctl.conditional else None
        ids, kv_used = drawn.codes, drawn.kv_cache
    elif spec is not None:
        from .sampling import sample_conditioned

        stream, prompt_rhythm, prompt_events = prompt_labels or (prompt if prompt.size else None, None, [])
        labels = sample_conditioned(model, num_samples, n_tok, conditions=list(condition),
                                    strength=condition_strength, prompt=stream, prompt_rhythm=prompt_rhythm,
                                    params=params, batch_size=batch_size, seed=seed, progress=progress)
        if prompt.size:  # the rhythm note at sample 0 is the prompt's, not a drawn prefix
            labels.rhythm = [None] * len(labels.rhythm)
        ids = labels.codes
    else:
        ids = sample_tokens(model, num_samples, n_tok, prompt=prompt, params=params,
                            batch_size=batch_size, seed=seed, progress=progress)  # (K, n_tok)
    t_sample = time.perf_counter() - t0
    n_out = int(round((prompt_s + seconds) * tok.fs))
    seeds = [texture_seed(seed, i) for i in range(len(ids))] if use_texture else None
    rows = [np.concatenate([prompt, row]) for row in ids]
    wander = use_texture and tok.has_wander_model
    if use_texture:  # + a sampled baseline where the tokenizer has a wander model (an LM generates the band)
        decoded = [tok.decode(r, tok.sample_state(n_out, seed=wander_seed(s)) if wander else None, texture=True,
                              seed=s)[:n_out] for r, s in zip(rows, seeds)]
    else:  # v1 tokenizers: the call of before, unchanged
        decoded = [tok.decode(r, None)[:n_out] for r in rows]
    signals = np.stack(decoded).astype(np.float32)  # (K, n_out)
    annotations = None
    if labels is not None:
        prompt_events = prompt_labels[2] if prompt_labels else []
        annotations = [events_to_annotations(prompt_events + [(k + len(prompt), n) for k, n in ev], rhythm,
                                             x, tok.fs, tok.samples_per_token, spec.lead_s)
                       for ev, rhythm, x in zip(labels.events, labels.rhythm, signals)]
    return Synthesis(signals, ids, annotations, t_sample, time.perf_counter() - t0, texture=use_texture,
                     texture_seeds=seeds, lm_version=1 if ctl is None else 2, wander=wander,
                     beat_cache=None if cache_params is None else cache_params.as_dict(),
                     lead_guidance=_lead_guidance_record(model, ctl, lead, lead_guidance, contrast_lead, default_for),
                     kv_cache=kv_used)


def _legacy_request(first, args: tuple, given: dict) -> GenerateConfig:
    """The request the keyword arguments of before describe (``synthesize(model, tok, 8, 10.0, seed=...)``),
    with a ``FutureWarning`` naming it."""
    named = dict(zip(_LEGACY, (first, *args))) if first is not None else dict(zip(_LEGACY[1:], args))
    if len(args) + (first is not None) > len(_LEGACY) or set(named) & set(given):
        raise TypeError("synthesize() got too many or repeated arguments; pass one GenerateConfig")
    given = {**named, **given}
    check_legacy("synthesize", given, _LEGACY)
    missing = [k for k in ("num_samples", "seconds") if k not in given]
    if missing:
        raise TypeError(f"synthesize(model, tok, request) needs a GenerateConfig (or, deprecated, "
                        f"{' and '.join(missing)})")
    req = GenerateConfig(**legacy_fields(given))
    deprecated("synthesize", sorted(given), f"synthesize(model, tok, {request_repr(req)}, prompt=..., "
                                            f"prompt_labels=..., progress=...)", stacklevel=4)
    return req


def _lead_guidance_record(model, ctl, lead, scale, contrast_lead, default_for=None) -> dict | None:
    """What the manifest records of lead guidance (None when off); ``default_for``: the condition whose
    model default (:func:`condition_default`) switched it on, when the caller left it unset."""
    if ctl is None or scale is None or float(scale) == 1.0:
        return None
    from .guidance import lead_contrast

    _, other, s = lead_contrast(model, ctl, lead or "MLII", scale, contrast_lead)
    rec = {"scale": s, "lead": lead or "MLII", "contrast_lead": ctl.name_of(other)[len("lead:"):]}
    if default_for:
        rec["model_default_for"] = default_for
    return rec


#: sampling settings an LM's ``config.ecg_condition_defaults`` may set per condition
CONDITION_DEFAULT_KEYS = ("lead_guidance",)


def condition_default(model, condition: Sequence[str], key: str):
    """``(value, condition)`` of the sampling setting ``key`` that the LM recommends for a requested condition.

    An LM's ``config.json`` may carry ``ecg_condition_defaults``: per condition, settings measured to make
    that condition come out as requested (``default``: ``{"rhythm:VT": {"lead_guidance": 2.0}}``, see its
    model card). They apply only where the caller left the setting unset (None); an explicit value,
    including ``1`` (off) for ``lead_guidance``, always wins. ``(None, None)`` when no requested condition
    has one. An unknown setting name in the config is refused, naming the file's key.
    """
    table = getattr(model.config, "ecg_condition_defaults", None) or {}
    if not isinstance(table, dict):
        raise ConfigError(f"the LM's config.json ecg_condition_defaults must map conditions to settings "
                          f"({{\"rhythm:VT\": {{\"lead_guidance\": 2.0}}}}), got {type(table).__name__}")
    for c in condition:
        settings = table.get(c) or {}
        unknown = sorted(set(settings) - set(CONDITION_DEFAULT_KEYS))
        if unknown:
            raise ConfigError(f"the LM's config.json ecg_condition_defaults[{c!r}] sets {', '.join(unknown)}; "
                              f"known: {', '.join(CONDITION_DEFAULT_KEYS)}")
        if key in settings:
            return settings[key], c
    return None, None


def generate(cfg: GenerateConfig) -> dict:
    """Sample, decode and write ``cfg.num_samples`` synthetic ECGs into ``cfg.out``; returns the manifest."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    out = Path(cfg.out)
    check_replaceable(out, "lm/generate.py")
    model, folder = load_lm(cfg.model, device)
    from .beat_layout import is_beat_lm

    if is_beat_lm(model):  # LM v3: beats, one sampler loop with logits processors (lm/beat_generate.py)
        from .beat_generate import generate_beats

        return generate_beats(cfg, model, folder, device)
    tok = load_tokenizer_for(model.config, folder, cfg.tokenizer)
    check_stateless(tok)
    rec = model.config.ecg_tokenizer
    # refuse v2-only settings on an LM without a ControlSpec before any record is read
    ctl, _ = check_request(model, tok, cfg)
    if ctl is None:
        leads = list(getattr(model.config, "ecg_leads", None) or ["MLII"])
        lead = leads[0] if len(leads) == 1 else "ECG"
        spec = ConditionSpec.of_model(model)
    else:  # an LM v2 writes the lead its prefix asked for; its labels exist only if it is conditional
        lead = cfg.lead or "MLII"
        spec = ctl if ctl.conditional else None
    if cfg.condition and spec is None:
        raise ConfigError(f"--condition {','.join(cfg.condition)} needs a conditional LM (trained with "
                          f"`conditioning: true`, e.g. configs/lm/tiny_cond.yaml); {folder} has no control tokens")
    prompt, prompt_s, prompt_start, prompt_labels = np.zeros(0, np.int64), 0.0, 0, None
    if cfg.prompt_record is not None:
        prompt, prompt_s, prompt_start = _prompt_ids(cfg, tok)
        if spec is not None:
            prompt_labels = _prompt_labels(cfg, tok, spec, prompt, prompt_start)
    syn = synthesize(model, tok, cfg, prompt=prompt, prompt_labels=prompt_labels)
    signals, ids, annotations = syn.signals, syn.ids, syn.annotations
    n_tok, t_sample, t_total = ids.shape[1], syn.sampling_s, syn.total_s
    comment = (f"synthetic ECG generated by ecg2llm ({Path(folder).name} LM), seed {cfg.seed}; "
               f"not a recording of any person")
    prompt_info = None if not prompt.size else {
        "record": str(cfg.prompt_record), "lead": cfg.prompt_lead, "start_s": cfg.prompt_start,
        "seconds": prompt_s, "tokens": int(prompt.size)}

    def per_sample(tmp: Path, name: str, i: int, x: np.ndarray) -> dict:
        info = {} if syn.texture_seeds is None else {"texture_seed": syn.texture_seeds[i]}
        if annotations is not None:
            write_annotations(tmp, name, annotations[i], tok.fs)
            info.update(atr=f"{name}.atr", **annotations[i].summary())
        if cfg.png:
            from .plots import save_record_png

            save_record_png(tmp / f"{name}.png", x, tok.fs, title=f"{name} (synthetic)",
                            prompt_seconds=prompt_s if prompt.size else None)
            info["png"] = f"{name}.png"
        return info

    extra = {
        "generator": "ecg2llm LM", "config": asdict(cfg), "model_dir": str(folder),
        "model_sha256": sha256_file(Path(folder) / "model.safetensors"),
        "tokenizer": {k: rec.get(k) for k in ("codebook_size", "fs", "samples_per_token",
                                              "tokens_per_second", "weights_hash")},
        "tokenizer_config": rec.get("config"), "tokens_per_sample": n_tok,
        "conditioning": None if spec is None else {
            "conditions": list(cfg.condition), "strength": cfg.condition_strength, "lead_s": spec.lead_s,
            "beats_per_class": _class_totals(annotations),
            "grammar": _grammar_used(cfg, ctl)},
        "lm_version": syn.lm_version,
        "beat_cache": None if syn.beat_cache is None else {**syn.beat_cache, "module": "ecg2llm.lm.beatcache"},
        "lead_guidance": None if syn.lead_guidance is None else {**syn.lead_guidance,
                                                                 "sampler": "ecg2llm.lm.guidance.sample_guided"},
        "guidance": None if ctl is None else {
            "scale": check_guidance(cfg.guidance), "source": cfg.source or "mitdb", "lead": lead,
            "sampler": "ecg2llm.lm.guidance.sample_guided"},
        "texture": {"on": syn.texture, "seed": "texture_seed(seed, i) (ecg2llm.lm.synthesize), per sample"
                    if syn.texture else None,
                    "model": getattr(tok, "texture_kind", None) if syn.texture else None,
                    "wander": {
                        "on": True, "model": "tokenizer wander.json (ecg2llm.tokenizer.wander)",
                        "seed": "wander_seed(texture_seed(seed, i)) (ecg2llm.lm.synthesize)",
                    } if syn.wander else None},
        "kv_cache": syn.kv_cache,
        "timing": {"sampling_s": t_sample, "sampling_and_decoding_s": t_total, "device": device,
                   "ecg_seconds_per_second": cfg.num_samples * cfg.seconds / t_total},
        "git_sha": git_sha(), "versions": versions(),
    }
    return write_folder(out, signals, tok.fs, lead=lead, prompts=[prompt_info] * len(signals),
                        comments=[comment], per_sample=per_sample, extra=extra,
                        arrays={"tokens": ids.astype(np.int32)})


def generate_or_reuse(cfg: GenerateConfig, reuse: bool = True, log=print) -> Path:
    """:func:`generate` into ``cfg.out``, unless that folder already holds the same generation.

    The same generation: a manifest whose settings (all but ``out`` and ``num_threads``), sample count and
    model weights hash equal this request's. Used by studies that regenerate the same sets (TSTR).
    """
    import json

    from .model import resolve_model_dir

    folder = Path(cfg.out)
    if reuse:
        try:
            man = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            man = None
        if isinstance(man, dict):
            ignore = {"out", "num_threads"}
            have = {k: v for k, v in (man.get("config") or {}).items() if k not in ignore}
            # a setting added after that folder was written counts as equal when this request leaves it at its
            # default (the folder was generated with that behaviour)
            defaults = asdict(GenerateConfig())
            want = {k: v for k, v in asdict(cfg).items()
                    if k not in ignore and (k in have or v != defaults.get(k))}
            if (want == have and len(man.get("samples", [])) == cfg.num_samples
                    and man.get("model_sha256") == sha256_file(resolve_model_dir(cfg.model) / "model.safetensors")):
                log(f"reusing {folder} (same model, seed and settings)")
                return folder
    generate(cfg)
    return folder


def _prompt_labels(cfg: GenerateConfig, tok, spec: ConditionSpec, prompt: np.ndarray, prompt_start: int):
    """A real prompt's own labels from the record's ``.atr``: ``(stream with labels, rhythm, events)``."""
    from ecg2llm.tokenizer.data import read_annotations

    from .conditioning import interleave, label_events

    ann = read_annotations(str(cfg.prompt_record), cfg.data_dir, tok.fs)
    pos, ids, initial = label_events(ann, len(prompt), tok.samples_per_token, tok.fs, spec, offset=prompt_start)
    events = [(0, spec.name_of(initial))] + [(int(k), spec.name_of(i)) for k, i in zip(pos, ids)]
    return interleave(prompt, pos, ids), spec.name_of(initial)[len("rhythm:"):], events


def _grammar_used(cfg: GenerateConfig, ctl) -> dict | None:
    """The rhythm grammar the sampler imposed (:mod:`ecg2llm.lm.grammar`), as the manifest records it, or None."""
    from .grammar import GRAMMARS

    rhythms = [c.split(":", 1)[1] for c in cfg.condition if str(c).startswith("rhythm:")]
    beats = [c for c in cfg.condition if str(c).startswith("beat:")]
    if not (cfg.grammar and ctl is not None and ctl.conditional and rhythms and rhythms[0] in GRAMMARS
            and not beats):
        return None
    return {"rhythm": rhythms[0], "pattern": [list(r) for r in GRAMMARS[rhythms[0]]], "module": "ecg2llm.lm.grammar"}


def _class_totals(annotations) -> dict | None:
    if annotations is None:
        return None
    tot: dict[str, int] = {}
    for a in annotations:
        for c, k in a.summary()["beats_per_class"].items():
            tot[c] = tot.get(c, 0) + k
    return tot
