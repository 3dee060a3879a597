"""The one generation request, :class:`GenerateConfig`, and the keyword arguments it replaces.

Every generation call takes one :class:`GenerateConfig` instead of 17-22 keyword arguments
(:meth:`ecg2llm.ECGPipeline.generate`, :func:`ecg2llm.lm.synthesize.synthesize`,
:func:`ecg2llm.lm.guidance.sample_guided`, ``lm/generate.py``). The keyword arguments of before keep working
for one release (until :data:`REMOVED_IN`): :func:`deprecated` builds the same request from them and warns
with a ``FutureWarning`` that spells out the call to write instead (:func:`request_repr`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields

from ecg2llm.core.errors import ConfigError

from .beatcache import BeatCacheParams
from .sampling import SamplingParams

#: the release that drops the keyword arguments :class:`GenerateConfig` replaced
REMOVED_IN = "0.4.0"


@dataclass
class GenerateConfig:
    """The one generation request; its fields are the flags of ``lm/generate.py`` (``--help`` lists them).

    ``lm/generate.py``, :meth:`ecg2llm.ECGPipeline.generate` / :meth:`~ecg2llm.ECGPipeline.forecast`,
    :func:`ecg2llm.lm.synthesize.synthesize`, the LM v2 loop :func:`ecg2llm.lm.guidance.sample_guided` and LM v3's
    sampler (:class:`ecg2llm.lm.beat_generate.BeatLM`, :mod:`ecg2llm.lm.sampler`) all take it. The library calls
    read the sampling fields (``num_samples`` to ``kv_cache``, ``detail``) and ignore the file-and-device ones
    (``model``, ``tokenizer``, ``out``, ``prompt_*``, ``data_dir``, ``png``, ``device``, ``num_threads``),
    which only ``lm/generate.py`` reads. An LM v3 reads the general fields plus ``detail``; the LM v2 sampler
    rules (``grammar``, ``beat_cache``, ``label_gap``, ``lead_guidance``) do not exist on the v3 path
    (``grammar`` is ignored there, the others are refused if set).

    What the sampling fields do (the inline comments below give the defaults):

    - ``seed``: same seed and ``batch_size`` => identical arrays (batch ``i`` draws from ``seed + i``).
    - ``temperature``, ``top_k``, ``top_p``: 1, 0, 1 sample the model as trained.
    - ``condition``: conditional LMs only, ``["rhythm:AFIB"]``, ``["rhythm:N", "beat:V"]``; at most one rhythm.
      ``condition_strength``: log-odds added to each requested beat class at every step (composes with
      guidance).
    - ``guidance``: an LM trained with condition dropout: the classifier-free guidance scale (None: the
      conditional branch alone; 1: the same samples; > 1: stronger adherence; 0: unconditional).
    - ``texture``: decode with the tokenizer's texture model (noise, mains, fine detail) and a sampled
      baseline where it has one; None: on when the tokenizer has one, seeded per sample from ``seed``;
      ``False``: the clean ECG band; ``True`` without a texture model is refused.
    - ``source``, ``lead``: LM v2/v3 prefix tokens, the database and lead to imitate (None: mitdb, MLII).
    - LM v2 only (:mod:`ecg2llm.lm.guidance`): ``grammar`` draws the beat labels a requested ``rhythm:N``,
      ``B``, ``T`` or ``VT`` is made of (:mod:`ecg2llm.lm.grammar`); ``beat_cache`` tethers each code to
      the same phase of the sample's previous beats (:mod:`ecg2llm.lm.beatcache`, 0 = off, 0.25 the shipped
      LM's likelihood-optimal strength); ``label_gap`` forces a beat label after that many seconds
      without one when no rhythm is requested; ``lead_guidance``/``contrast_lead`` push each token away from
      what the LM would draw under another lead (1 = off; None = the LM's default for the requested
      condition, ``config.ecg_condition_defaults``); ``kv_cache`` picks the decoder's cache (LM v2 ``auto``:
      float16 with a compiled kernel on CPU where it works; LM v3 ``auto`` = float32, ``float16`` opt-in, about
      1.5x faster, other draws of the same distribution; identical arrays need the same cache).

    Examples
    --------
    >>> from ecg2llm.lm.request import GenerateConfig
    >>> req = GenerateConfig(num_samples=8, seconds=30, condition=["rhythm:AFIB"], guidance=2.0, seed=1)
    >>> req.sampling
    SamplingParams(temperature=1.0, top_k=0, top_p=1.0)
    """

    model: str = "default"              # LM folder (<run>/final) or a shipped name ("default" = LM v3, "v2")
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
    kv_cache: str = "auto"              # auto | float32 | float16 (lm/kvdecode.py; auto: v2 float16 on CPU, v3 float32)
    detail: str = "mean"                # LM v3: detail tokens from the detail head: mean | argmax | sample | persist
    label_guidance: float | None = None  # LM v3 opt-in: label-contrast guidance, S/V/F beats vs N (e.g. 1); none = off
    device: str = "auto"                # auto | cpu | cuda
    num_threads: int = 0                # torch CPU threads; 0 = library default

    @property
    def sampling(self) -> SamplingParams:
        """Temperature, top-k and top-p as :class:`ecg2llm.lm.sampling.SamplingParams`."""
        return SamplingParams(float(self.temperature), int(self.top_k), float(self.top_p))

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
        check_lead_guidance(self.lead_guidance)
        check_scale(self.label_guidance, "label_guidance", example=" (e.g. 1.0) or None", meaning="0 = off")
        if self.contrast_lead is not None and self.lead_guidance is None:
            raise ConfigError(f"--contrast_lead {self.contrast_lead} needs --lead_guidance (e.g. 1.25)")
        from .kvdecode import check_kv_cache

        check_kv_cache(self.kv_cache, "--kv_cache")
        if self.detail not in ("mean", "argmax", "sample", "persist"):
            raise ConfigError(f"detail must be mean, argmax, sample or persist (LM v3's detail head, "
                              f"lm/beat_detail.py), got {self.detail!r}")



def check_guidance(guidance) -> float | None:
    """``guidance`` as a float (or None), refusing non-numbers, NaN/inf and negative scales."""
    return check_scale(guidance, "guidance", example=" (e.g. 2.0) or None",
                       meaning="1 = conditional sampling, > 1 = stronger adherence")


def check_scale(value, name: str, *, meaning: str, example: str = "") -> float | None:
    """``value`` as a float (or None), refusing non-numbers, NaN/inf and negative scales; ``name``,
    ``meaning`` and ``example`` word the errors (shared by ``guidance`` and ``lead_guidance``)."""
    if value is None:
        return None
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number{example}, got {value!r}") from None
    if not (math.isfinite(scale) and scale >= 0):
        raise ConfigError(f"{name} must be a finite number >= 0 ({meaning}), got {value!r}")
    return scale


def check_lead_guidance(scale) -> float | None:
    """``scale`` as a float (or None), refusing non-numbers, NaN/inf and negative scales (1 = off)."""
    return check_scale(scale, "lead_guidance", meaning="1 = off")


def request_repr(req: GenerateConfig, base: GenerateConfig | None = None) -> str:
    """``GenerateConfig(a=1, b=2)`` naming the fields of ``req`` that differ from ``base`` (default: the
    defaults), so that ``eval`` of the text in a namespace holding ``GenerateConfig`` equals ``req``'s fields."""
    base = base if base is not None else GenerateConfig()
    diff = [f"{f.name}={getattr(req, f.name)!r}" for f in fields(req) if getattr(req, f.name) != getattr(base, f.name)]
    return f"GenerateConfig({', '.join(diff)})"


def deprecated(call: str, names, replacement: str, stacklevel: int = 3) -> None:
    """Warn (``FutureWarning``, shown by default) that ``call`` got the keyword arguments ``names`` that
    :class:`GenerateConfig` replaced, and what to write instead (``replacement``, an exact call)."""
    warnings.warn(f"{call}: the keyword argument{'s' if len(names) > 1 else ''} {', '.join(names)} "
                  f"{'are' if len(names) > 1 else 'is'} deprecated and will be removed in ecg2llm {REMOVED_IN}; "
                  f"pass one request instead: {replacement}", FutureWarning, stacklevel=stacklevel)


def legacy_fields(given: dict, rename: dict | None = None) -> dict:
    """Old keyword arguments -> :class:`GenerateConfig` fields: ``params`` (``SamplingParams``) becomes
    ``temperature``/``top_k``/``top_p``, ``rename`` maps old names to fields, None strengths become 0, and
    sequences of conditions become lists."""
    out = {}
    for k, v in given.items():
        k = (rename or {}).get(k, k)
        if k == "params":
            if v is not None:
                out.update(temperature=float(v.temperature), top_k=int(v.top_k), top_p=float(v.top_p))
            continue
        if k in ("beat_cache", "label_gap") and v is None:
            v = 0.0
        if k == "beat_cache" and isinstance(v, BeatCacheParams):
            v = float(v.strength)
        if k == "condition":
            v = [str(c) for c in (v or [])]
        out[k] = v
    return out


def check_legacy(call: str, given: dict, allowed) -> None:
    """Refuse keyword arguments that neither the new nor the old signature of ``call`` had (a ``TypeError``,
    as Python's own)."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise TypeError(f"{call}() got unexpected keyword argument(s) {', '.join(unknown)}; the sampling settings "
                        f"are the fields of GenerateConfig ({', '.join(f.name for f in fields(GenerateConfig))})")
