"""Synthetic ECG records from a trained LM: tokens -> millivolts -> an ECG folder.

Library side of ``lm/generate.py``. The output is written by :func:`tokenizer.folder.write_folder` (the one
writer of the one folder format, replaced atomically; a non-empty folder without a manifest is refused):
``sample_000.npy`` / ``.hea`` / ``.dat`` in mV at the tokenizer's rate, ``sample_000.atr`` for conditional
LMs (beat labels at the R peaks as MIT-BIH symbols, rhythm notes ``+`` with ``(AFIB``..., readable by
``wfdb.rdann``), ``sample_000.png``, ``tokens.npy`` (int32 ``(num_samples, tokens)``, the sampled ids
without the prompt) and ``manifest.json`` (per-sample prompt, model, tokenizer, sampling settings, seed,
throughput).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from tokenizer.errors import ConfigError
from tokenizer.folder import check_replaceable, write_folder
from tokenizer.utils.io import git_sha, sha256_file, versions

from tokenizer.ecg import write_annotations

from .conditioning import ConditionSpec, events_to_annotations
from .model import load_lm, load_tokenizer_for
from .sampling import SamplingParams, check_stateless, sample_tokens


@dataclass
class GenerateConfig:
    """Fields of ``lm/generate.py`` (``python lm/generate.py --help`` lists them as flags)."""

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


def _prompt_ids(cfg: GenerateConfig, tok) -> tuple[np.ndarray, float, int]:
    """Tokens of the real prefix, its exact length in seconds, and its first sample in the record."""
    from tokenizer.data import read_record, resolve_data_dir

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


@dataclass
class Synthesis:
    """What one call of :func:`synthesize` drew: signals in mV (prompt first), codes, beat labels, timing."""

    signals: np.ndarray             # (K, n_out) float32 mV at the tokenizer's fs
    ids: np.ndarray                 # (K, n_tok) sampled codes, prompt excluded
    annotations: list | None        # one BeatLabels per sample (conditional LMs), else None
    sampling_s: float
    total_s: float


def synthesize(model, tok, num_samples: int, seconds: float, *, seed: int = 0, params: SamplingParams | None = None,
               batch_size: int = 64, condition: Sequence[str] = (), condition_strength: float = 3.0,
               prompt: np.ndarray | None = None, prompt_labels: tuple | None = None,
               progress: bool = True) -> Synthesis:
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
    prompt : np.ndarray, optional
        Codes of a real prefix; the returned signals start with its decoded samples.
    prompt_labels : tuple, optional
        Conditional LMs: ``(stream, rhythm, events)`` of the prompt's own labels (:func:`_prompt_labels`).
    """
    spec = ConditionSpec.of_model(model)
    if condition and spec is None:
        raise ConfigError(f"condition {','.join(condition)} needs a conditional LM (trained with "
                          f"`conditioning: true`, e.g. configs/lm/tiny_cond.yaml); this LM has no control tokens")
    prompt = np.zeros(0, np.int64) if prompt is None else np.asarray(prompt, np.int64)
    prompt_s = len(prompt) / tok.tokens_per_second
    n_tok = int(np.ceil(seconds * tok.tokens_per_second))
    params = params or SamplingParams()
    t0 = time.perf_counter()
    labels = None
    if spec is not None:
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
    signals = np.stack([tok.decode(np.concatenate([prompt, row]), None)[:n_out] for row in ids]).astype(np.float32)
    annotations = None
    if labels is not None:
        prompt_events = prompt_labels[2] if prompt_labels else []
        annotations = [events_to_annotations(prompt_events + [(k + len(prompt), n) for k, n in ev], rhythm,
                                             x, tok.fs, tok.samples_per_token, spec.lead_s)
                       for ev, rhythm, x in zip(labels.events, labels.rhythm, signals)]
    return Synthesis(signals, ids, annotations, t_sample, time.perf_counter() - t0)


def generate(cfg: GenerateConfig) -> dict:
    """Sample, decode and write ``cfg.num_samples`` synthetic ECGs into ``cfg.out``; returns the manifest."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    out = Path(cfg.out)
    check_replaceable(out, "lm/generate.py")
    model, folder = load_lm(cfg.model, device)
    tok = load_tokenizer_for(model.config, folder, cfg.tokenizer)
    check_stateless(tok)
    rec = model.config.ecg_tokenizer
    leads = list(getattr(model.config, "ecg_leads", None) or ["MLII"])
    lead = leads[0] if len(leads) == 1 else "ECG"
    spec = ConditionSpec.of_model(model)
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
                     prompt_labels=prompt_labels)
    signals, ids, annotations = syn.signals, syn.ids, syn.annotations
    n_tok, t_sample, t_total = ids.shape[1], syn.sampling_s, syn.total_s
    comment = (f"synthetic ECG generated by ecg2llm ({Path(folder).name} LM), seed {cfg.seed}; "
               f"not a recording of any person")
    prompt_info = None if not prompt.size else {
        "record": str(cfg.prompt_record), "lead": cfg.prompt_lead, "start_s": cfg.prompt_start,
        "seconds": prompt_s, "tokens": int(prompt.size)}

    def per_sample(tmp: Path, name: str, i: int, x: np.ndarray) -> dict:
        info = {}
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
            "beats_per_class": _class_totals(annotations)},
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
    from tokenizer.data import read_annotations

    from .conditioning import interleave, label_events

    ann = read_annotations(str(cfg.prompt_record), cfg.data_dir, tok.fs)
    pos, ids, initial = label_events(ann, len(prompt), tok.samples_per_token, tok.fs, spec, offset=prompt_start)
    events = [(0, spec.name_of(initial))] + [(int(k), spec.name_of(i)) for k, i in zip(pos, ids)]
    return interleave(prompt, pos, ids), spec.name_of(initial)[len("rhythm:"):], events


def _class_totals(annotations) -> dict | None:
    if annotations is None:
        return None
    tot: dict[str, int] = {}
    for a in annotations:
        for c, k in a.summary()["beats_per_class"].items():
            tot[c] = tot.get(c, 0) + k
    return tot
