"""Synthetic ECG records from a trained LM: tokens -> millivolts -> WFDB + .npy + PNG + manifest.json.

Library side of ``lm/generate.py``. Output folder (replaced atomically; a folder that exists without a
``manifest.json`` of ours is refused rather than overwritten)::

    sample_000.hea / .dat   WFDB record, one lead in mV (format 16, 1 µV resolution), fs of the tokenizer
    sample_000.npy          float32 mV, the same samples
    sample_000.png          plot (a dashed line marks where a real prompt ends)
    tokens.npy              int32 (num_samples, tokens): the sampled ids (prompt not included)
    manifest.json           model, tokenizer, sampling settings, seed, per-sample files, throughput
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tokenizer.errors import ConfigError
from tokenizer.utils.io import atomic_path, git_sha, sha256_file, versions, write_json

from .model import load_lm, load_tokenizer_for
from .sampling import SamplingParams, check_stateless, sample_tokens

WFDB_GAIN = 1000.0  # ADC units per mV: 1 µV steps, +-32.767 mV range in format 16


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


def _prompt_ids(cfg: GenerateConfig, tok) -> tuple[np.ndarray, float]:
    """Tokens of the real prefix and its exact length in seconds."""
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
    return ids, len(ids) / tok.tokens_per_second


def _prepare_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").is_file())):
        raise ConfigError(
            f"{out} exists and is not an earlier output of lm/generate.py (no manifest.json): "
            f"choose another --out"
        )


def write_record(folder: Path, name: str, x_mv: np.ndarray, fs: float, lead: str, comments: list[str]) -> None:
    """One lead in mV as a WFDB record (format 16, 1 µV per ADC unit)."""
    import wfdb

    sig = np.clip(np.asarray(x_mv, dtype=np.float64), -32.767, 32.767)[:, None]  # (samples, 1)
    wfdb.wrsamp(name, fs=float(fs), units=["mV"], sig_name=[lead], p_signal=sig, fmt=["16"],
                adc_gain=[WFDB_GAIN], baseline=[0], comments=comments, write_dir=str(folder))


def generate(cfg: GenerateConfig) -> dict:
    """Sample, decode and write ``cfg.num_samples`` synthetic ECGs into ``cfg.out``; returns the manifest."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    out = Path(cfg.out)
    _prepare_out(out)
    model, folder = load_lm(cfg.model, device)
    tok = load_tokenizer_for(model.config, folder, cfg.tokenizer)
    check_stateless(tok)
    rec = model.config.ecg_tokenizer
    leads = list(getattr(model.config, "ecg_leads", None) or ["MLII"])
    lead = leads[0] if len(leads) == 1 else "ECG"

    prompt, prompt_s = (np.zeros(0, np.int64), 0.0)
    if cfg.prompt_record is not None:
        prompt, prompt_s = _prompt_ids(cfg, tok)
    n_tok = int(np.ceil(cfg.seconds * tok.tokens_per_second))
    params = SamplingParams(cfg.temperature, cfg.top_k, cfg.top_p)
    t0 = time.perf_counter()
    ids = sample_tokens(model, cfg.num_samples, n_tok, prompt=prompt, params=params,
                        batch_size=cfg.batch_size, seed=cfg.seed, progress=True)  # (K, n_tok)
    t_sample = time.perf_counter() - t0
    n_out = int(round((prompt_s + cfg.seconds) * tok.fs))
    signals = [tok.decode(np.concatenate([prompt, row]), None)[:n_out] for row in ids]
    t_total = time.perf_counter() - t0

    comment = (f"synthetic ECG generated by ecg2llm ({Path(folder).name} LM), seed {cfg.seed}; "
               f"not a recording of any person")
    samples = []
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        for i, x in enumerate(signals):
            name = f"sample_{i:03d}"
            write_record(tmp, name, x, tok.fs, lead, [comment])
            np.save(tmp / f"{name}.npy", x.astype(np.float32))
            if cfg.png:
                from .plots import save_record_png

                save_record_png(tmp / f"{name}.png", x, tok.fs, title=f"{name} (synthetic)",
                                prompt_seconds=prompt_s if prompt.size else None)
            samples.append({"name": name, "wfdb": f"{name}.hea", "npy": f"{name}.npy",
                            "png": f"{name}.png" if cfg.png else None, "n_samples": int(len(x)),
                            "seconds": len(x) / tok.fs})
        np.save(tmp / "tokens.npy", ids.astype(np.int32))
        manifest = {
            "config": asdict(cfg), "model_dir": str(folder),
            "model_sha256": sha256_file(Path(folder) / "model.safetensors"),
            "tokenizer": {k: rec.get(k) for k in ("codebook_size", "fs", "samples_per_token",
                                                  "tokens_per_second", "weights_hash")},
            "tokenizer_config": rec.get("config"), "lead": lead, "fs": tok.fs, "units": "mV",
            "prompt": None if not prompt.size else {
                "record": str(cfg.prompt_record), "lead": cfg.prompt_lead, "start_s": cfg.prompt_start,
                "seconds": prompt_s, "tokens": int(prompt.size)},
            "tokens_per_sample": n_tok, "samples": samples,
            "timing": {"sampling_s": t_sample, "sampling_and_decoding_s": t_total, "device": device,
                       "ecg_seconds_per_second": cfg.num_samples * cfg.seconds / t_total},
            "git_sha": git_sha(), "versions": versions(),
        }
        write_json(tmp / "manifest.json", manifest)
    return manifest
