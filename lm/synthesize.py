"""Synthetic ECG records from a trained LM: tokens -> millivolts -> an ECG folder.

Library side of ``lm/generate.py``. The output is written by :func:`ecg2llm.tokenizer.folder.write_folder` (the one
writer of the one folder format, replaced atomically; a non-empty folder without a manifest is refused):
``sample_000.npy`` / ``.hea`` / ``.dat`` in mV at the tokenizer's rate, ``sample_000.atr`` for conditional
LMs (beat labels at the R peaks as MIT-BIH symbols, rhythm notes ``+`` with ``(AFIB``..., readable by
``wfdb.rdann``), ``sample_000.png``, ``tokens.npy`` (int32 ``(num_samples, tokens)``, the sampled ids
without the prompt) and ``manifest.json`` (per-sample prompt, model, tokenizer, sampling settings, seed,
guidance, texture, throughput).

Two LM generations share this path. v1 LMs (no :class:`ecg2llm.lm.control.ControlSpec`) sample through
:mod:`ecg2llm.lm.sampling` exactly as before. LM v2 (``source:``/``lead:`` tokens, trained with condition dropout)
samples through :func:`ecg2llm.lm.guidance.sample_guided`: ``source``/``lead`` pick the prefix (default
``mitdb``/``MLII``) and ``guidance`` the classifier-free guidance scale (None: conditional branch only).
Independently, a tokenizer with a texture model (tokenizer v2, ``tok.has_texture``) decodes with
``texture=True`` by default, seeded per sample by :func:`texture_seed` (same seed => same output), and
adds a baseline drawn from the tokenizer's wander model where it has one (``tok.sample_state``);
``texture=False`` gives the clean ECG band.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ecg2llm.core.errors import ConfigError
from ecg2llm.core.io import git_sha, sha256_file, versions
from ecg2llm.tokenizer.ecg import write_annotations
from ecg2llm.tokenizer.folder import check_replaceable, write_folder

from .beatcache import BeatCacheParams
from .beatcache import resolve as resolve_beat_cache
from .conditioning import ConditionSpec, events_to_annotations
from .control import ControlSpec
from .decode_options import has_texture, resolve_texture, texture_seed, wander_seed  # noqa: F401 (public here)
from .model import load_lm, load_tokenizer_for
from .sampling import SamplingParams, check_stateless, sample_tokens


@dataclass
class GenerateConfig:
    """Fields of ``lm/generate.py`` (``python lm/generate.py --help`` lists them as flags).

    The one generation request: ``lm/generate.py``, :meth:`ecg2llm.ECGPipeline.generate` and LM v3's sampling
    loop (:class:`ecg2llm.lm.beat_generate.BeatLM`, :mod:`ecg2llm.lm.sampler`) all take it. An LM v3 reads the general
    fields
    plus ``detail``; the LM v2 sampler rules (``grammar``, ``beat_cache``, ``label_gap``, ``lead_guidance``)
    do not exist on the v3 path (``grammar`` is ignored there, the others are refused if set).
    """

    model: str = "default"              # LM folder (<run>/final) or "default" (the shipped one)
    tokenizer: str | None = None        # override the tokenizer folder (default: the LM's own copy)
    num_samples: int = 4
    seconds: float = 10.0               # generated seconds per sample (after the prompt, if any)
    out: str = "runs/generated"
    seed: int = 0
    temperature: float = 1.0
    top_k: int = 0                      # 0 = off
    top_p: float = 1.0                  # 1 = off
    batch_size: int = 64                # samples generated together
    prompt_record: str | None = None    # continue a real ECG: record name, e.g. 100
    prompt_seconds: float = 0.0         # length of the real prefix
    prompt_start: float = 0.0           # where the prefix starts in the record (s)
    prompt_lead: str = "MLII"
    data_dir: str | None = None         # data root for --prompt_record ($ECG2LLM_DATA otherwise)
    png: bool = True
    condition: list[str] = field(default_factory=list)  # conditional LMs: e.g. rhythm:AFIB,beat:V
    condition_strength: float = 3.0     # log-odds added to each requested beat class at every step
    guidance: float | None = None       # LM v2: classifier-free guidance scale (none = conditional only)
    source: str | None = None           # LM v2: database to imitate, mitdb | cinc2017 (none = mitdb)
    lead: str | None = None             # LM v2: lead to generate, MLII | V1 | ... | I (none = MLII)
    texture: bool | None = None         # tokenizer v2: texture decode (none = on when the tokenizer has one)
    grammar: bool = True                # LM v2: impose the rhythm's beat-class grammar (lm/grammar.py)
    beat_cache: float = 0.0             # LM v2: beat-cache strength (lm/beatcache.py, e.g. 0.25); 0 = off
    label_gap: float = 0.0              # LM v2, no rhythm asked: a beat label at least every N s (e.g. 2); 0 = off
    lead_guidance: float | None = None  # LM v2: lead-contrast guidance (e.g. 2); 1 = off; none = the LM's default
    contrast_lead: str | None = None    # LM v2: the lead lead guidance pushes away from (none = V1, or MLII for V1)
    kv_cache: str = "auto"              # LM v2: auto | float32 | float16 (lm/kvdecode.py; auto = float16 on CPU)
    detail: str = "mean"                # LM v3: detail tokens from the detail head: mean | argmax | sample | persist
    device: str = "auto"                # auto | cpu | cuda
    num_threads: int = 0                # torch CPU threads; 0 = library default

    def __post_init__(self):
        if self.num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {self.num_samples}")
        if not self.seconds > 0:
            raise ConfigError(f"seconds must be > 0, got {self.seconds}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.prompt_record is not None and not self.prompt_seconds > 0:
            raise ConfigError("--prompt_record needs --prompt_seconds > 0")
        SamplingParams(self.temperature, self.top_k, self.top_p)  # validates
        check_guidance(self.guidance)
        BeatCacheParams(strength=float(self.beat_cache))  # validates: >= 0
        if not self.label_gap >= 0:
            raise ConfigError(f"label_gap must be >= 0 seconds (0 = off, e.g. 2.0), got {self.label_gap}")
        from .guidance import check_lead_guidance

        check_lead_guidance(self.lead_guidance)
        if self.contrast_lead is not None and self.lead_guidance is None:
            raise ConfigError(f"--contrast_lead {self.contrast_lead} needs --lead_guidance (e.g. 1.25)")
        from .kvdecode import check_kv_cache

        check_kv_cache(self.kv_cache, "--kv_cache")
        if self.detail not in ("mean", "argmax", "sample", "persist"):
            raise ConfigError(f"detail must be mean, argmax, sample or persist (LM v3's detail head, "
                              f"lm/beat_detail.py), got {self.detail!r}")


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


def check_guidance(guidance) -> float | None:
    """``guidance`` as a float (or None), refusing non-numbers, NaN/inf and negative scales."""
    from .guidance import check_scale

    return check_scale(guidance, "guidance", example=" (e.g. 2.0) or None",
                       meaning="1 = conditional sampling, > 1 = stronger adherence")


def check_request(model, tok, *, guidance=None, source: str | None = None, lead: str | None = None,
                  texture: bool | None = None, prompt: bool = False) -> tuple[ControlSpec | None, bool]:
    """Check the v2-only arguments against the LM and tokenizer; returns ``(ControlSpec or None, texture)``.

    Raises
    ------
    ConfigError
        ``guidance``, ``source`` or ``lead`` for a v1 LM,
        unknown source/lead names, a bad guidance scale, or ``texture=True`` without a texture model.
    """
    check_guidance(guidance)
    ctl = ControlSpec.of_model(model)
    if ctl is None:
        if guidance is not None:
            raise ConfigError(f"guidance={guidance} needs an LM trained with condition dropout "
                              f"(configs/lm/v2_*.yaml); this is a v1 LM without null conditions: use "
                              f"condition=... with condition_strength (logit bias) instead")
        if source is not None or lead is not None:
            leads = list(getattr(model.config, "ecg_leads", None) or ["MLII"])
            raise ConfigError(f"source/lead tokens need an LM v2 (configs/lm/v2_*.yaml); this v1 LM was "
                              f"trained on {leads} only: leave source and lead unset")
    else:
        if source is not None:
            ctl.source_id(source)  # raises listing the known sources
        if lead is not None:
            ctl.lead_id(lead)
    return ctl, resolve_texture(tok, texture)


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


def synthesize(model, tok, num_samples: int, seconds: float, *, seed: int = 0, params: SamplingParams | None = None,
               batch_size: int = 64, condition: Sequence[str] = (), condition_strength: float = 3.0,
               prompt: np.ndarray | None = None, prompt_labels: tuple | None = None,
               guidance: float | None = None, source: str | None = None, lead: str | None = None,
               texture: bool | None = None, grammar: bool = True, beat_cache: float | None = None,
               lead_guidance: float | None = None, contrast_lead: str | None = None,
               kv_cache: str = "auto", label_gap: float | None = None, progress: bool = True) -> Synthesis:
    """Sample ``num_samples`` ECGs of ``seconds`` after an optional prompt and decode them to millivolts.

    The one sampling path behind ``lm/generate.py`` and :meth:`ecg2llm.ECGPipeline.generate` /
    :meth:`~ecg2llm.ECGPipeline.forecast`: the same seed and batch size give identical arrays.

    Parameters
    ----------
    model, tok
        A loaded LM and the tokenizer it was trained with (stateless decode).
    condition : sequence of str
        Conditional LMs only: ``rhythm:AFIB``, ``beat:V``...; unknown names raise a ``ConfigError``
        (a ``ValueError``) that lists the known ones.
    condition_strength : float
        Log-odds added to each requested beat class (v1 logit bias; composes with guidance on LM v2).
    prompt : np.ndarray, optional
        Codes of a real prefix; the returned signals start with its decoded samples (v1 LMs only).
    prompt_labels : tuple, optional
        Conditional LMs: ``(stream, rhythm, events)`` of the prompt's own labels (:func:`_prompt_labels`).
    guidance : float, optional
        LM v2 trained with condition dropout: classifier-free guidance scale
        (:func:`ecg2llm.lm.guidance.sample_guided`; None = conditional branch only, 1 = the same samples,
        > 1 = stronger adherence, 0 = unconditional).
        A v1 LM refuses it.
    source, lead : str, optional
        LM v2: the prefix tokens (None: ``"mitdb"``, ``"MLII"``). A v1 LM refuses them.
    texture : bool, optional
        Decode with the tokenizer's texture model (None: on when the tokenizer has one, i.e. tokenizer v2);
        sample ``i`` uses seed :func:`texture_seed` ``(seed, i)``. ``True`` without a texture model raises.
        Where the tokenizer also has a baseline (wander) model (``tok.has_wander_model``), texture adds a
        sampled baseline (``tok.sample_state``, seed :func:`wander_seed`): an LM generates only the ECG
        band, and real recordings wander. ``False``: the clean band, no baseline.
    grammar : bool
        LM v2 with a rhythm condition: constrain the drawn beat labels to that rhythm's grammar
        (:mod:`ecg2llm.lm.grammar`; ``rhythm:N``/``B``/``T``/``VT``). No effect on v1 LMs or other rhythms.
    beat_cache : float, optional
        Conditional LM v2: strength of the beat cache, which tethers each code to the same phase of the
        sample's previous beats (:mod:`ecg2llm.lm.beatcache`; the shape fitted for this LM where its config records
        one, ``ecg_beat_cache``; 0.25 is the shipped LM's likelihood-optimal strength). None or 0: the LM
        alone (the default). A v1 LM refuses a non-zero strength.
    lead_guidance, contrast_lead : float, str, optional
        LM v2: lead-contrast guidance (:func:`ecg2llm.lm.guidance.sample_guided`): push each token away from what
        the LM would draw under ``contrast_lead`` (default V1, or MLII for ``lead="V1"``). 1: off. None: the
        LM's default for a requested condition (:func:`condition_default`; ``default`` switches it on at 2
        for ``rhythm:VT``), else off. A v1 LM refuses it.
    kv_cache : str
        LM v2: the decoder's KV cache (:mod:`ecg2llm.lm.kvdecode`): ``"auto"`` (float16 with a compiled attention
        kernel on CPU where ``torch.compile`` works, ~1.3x faster; else float32), ``"float32"``, ``"float16"``.
        The same distribution either way; identical arrays need the same cache. v1 LMs ignore it.
    label_gap : float, optional
        Conditional LM v2 without a requested rhythm: seconds after which a beat label is forced in a
        sequence with a labelled rhythm prefix (:class:`ecg2llm.lm.grammar.LabelGap`, e.g. 2.0). None or 0: off.
        A v1 LM refuses it.
    """
    prompt = np.zeros(0, np.int64) if prompt is None else np.asarray(prompt, np.int64)
    ctl, use_texture = check_request(model, tok, guidance=guidance, source=source, lead=lead, texture=texture,
                                     prompt=bool(prompt.size))
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
    params = params or SamplingParams()
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
                              and guidance is None)
        drawn = sample_guided(model, num_samples, n_tok, conditions=list(condition),
                              guidance=check_guidance(guidance), strength=condition_strength,
                              source=source or "mitdb", lead=lead or "MLII", params=params,
                              batch_size=batch_size, seed=seed, progress=progress, prompt=stream,
                              prompt_rhythm=prompt_rhythm, unconditional=unlabelled, grammar=bool(grammar),
                              tokens_per_second=tok.tokens_per_second, beat_cache=cache_params,
                              lead_guidance=lead_guidance, contrast_lead=contrast_lead, kv_cache=kv_cache,
                              label_gap=label_gap or None)
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
    # refuse v2-only arguments on a v1 LM (and prompts on an LM v2) before any record is read
    ctl, _ = check_request(model, tok, guidance=cfg.guidance, source=cfg.source, lead=cfg.lead,
                           texture=cfg.texture, prompt=cfg.prompt_record is not None)
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
    syn = synthesize(model, tok, cfg.num_samples, cfg.seconds, seed=cfg.seed,
                     params=SamplingParams(cfg.temperature, cfg.top_k, cfg.top_p), batch_size=cfg.batch_size,
                     condition=cfg.condition, condition_strength=cfg.condition_strength, prompt=prompt,
                     prompt_labels=prompt_labels, guidance=cfg.guidance, source=cfg.source, lead=cfg.lead,
                     texture=cfg.texture, grammar=cfg.grammar, beat_cache=cfg.beat_cache,
                     lead_guidance=cfg.lead_guidance, contrast_lead=cfg.contrast_lead, kv_cache=cfg.kv_cache,
                     label_gap=cfg.label_gap)
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
