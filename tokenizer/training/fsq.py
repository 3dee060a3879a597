"""Train the contextual FSQ tokenizer on DS1, select on held-out DS1 records, score on DS2.

Launch (the shipped default; see ``tokenizer/pretrained/v2/README.md``)::

    python tokenizer/train.py --config configs/tokenizer/fsq_default.yaml --data_dir ../shared/data

Data: MLII of the DS1 training records (DS1 minus the validation records, :func:`inter_patient_split`),
random crops of ``crop_tokens`` tokens plus the model's receptive field on each side; the loss is the
MSE in mV on the central tokens only (their whole receptive field is real signal, as at inference).
Optimizer AdamW, linear warm-up then cosine decay over ``steps``; fp32 throughout. Every ``eval_every``
steps the tokenizer's own inference path (chunked, padded) is scored on the first ``valid_seconds`` of
each validation record; the best state is kept and training stops after ``patience`` evaluations
without improvement. At the end the best tokenizer is scored on all of DS2.

Run directory: ``run_info.json`` (config, git sha, versions, wall time), ``metrics.json`` (validation
curve, DS2 report with token rate and bits/s), ``tokenizer/`` (``config.json`` + ``model.safetensors``).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from ecg2llm.core.errors import ConfigError
from ecg2llm.core.io import ensure_writable_dir, write_json, write_run_info

from ..evaluation import evaluate_tokenizer, load_signals
from ..fsq_tokenizer import FSQTokenizer, FSQTokenizerConfig
from ..splits import inter_patient_split


@dataclass
class TrainConfig(FSQTokenizerConfig):
    """Training of an ``fsq`` tokenizer: every field of :class:`FSQTokenizerConfig` (inherited, not copied;
    YAML keys stay flat) plus the training fields below."""

    tokenizer_type: str = "fsq"
    output_dir: str = "runs/tokenizer/fsq"
    data_dir: str | None = None
    # --- data
    valid_records: list[str] = field(default_factory=list)  # empty: splits.DEFAULT_VALID
    crop_tokens: int = 128
    valid_seconds: float = 300.0
    aug_offset_mv: float = 0.5  # random DC offset in [-a, a] mV plus a ramp of up to a mV over the crop
    aug_gain: float = 0.1  # random gain exp(U(-g, g))
    # --- optimization
    steps: int = 4000
    batch_size: int = 32
    lr: float = 3e-3
    min_lr_ratio: float = 0.02
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    l1_weight: float = 0.0  # loss = MSE + l1_weight * L1 (both in mV)
    grad_clip: float = 1.0
    eval_every: int = 250
    patience: int = 6  # evaluations without improvement before stopping (0: never stop early)
    seed: int = 0
    threads: int = 2
    eval_test: bool = True  # score the selected tokenizer on all of DS2 into metrics.json

    def __post_init__(self):
        super().__post_init__()  # the tokenizer fields
        if self.tokenizer_type != "fsq":
            raise ConfigError(f"tokenizer/training/fsq.py trains tokenizer_type 'fsq', got {self.tokenizer_type!r}")
        for name in ("steps", "batch_size", "crop_tokens", "eval_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    def tokenizer_config(self) -> FSQTokenizerConfig:
        names = {f.name for f in dataclasses.fields(FSQTokenizerConfig)}
        return FSQTokenizerConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


class CropSampler:
    """Random training crops from a few long records held in memory as one ``(R, T)`` array."""

    def __init__(self, signals: list[np.ndarray], crop: int, seed: int):
        t = min(len(s) for s in signals)
        self.data = torch.from_numpy(np.stack([s[:t] for s in signals]).astype(np.float32))  # (R, T)
        if t < crop:
            raise ConfigError(f"training records have {t} samples, shorter than one crop of {crop}")
        self.crop = crop
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self, batch: int) -> torch.Tensor:
        r = torch.randint(0, self.data.shape[0], (batch,), generator=self.gen)
        o = torch.randint(0, self.data.shape[1] - self.crop + 1, (batch,), generator=self.gen)
        idx = o[:, None] + torch.arange(self.crop)[None]  # (B, crop)
        return self.data[r[:, None], idx]  # (B, crop)


def _augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random gain, DC offset and linear ramp (a stand-in for baseline wander) on ``(B, T)`` mV crops."""
    b, t = x.shape
    if cfg.aug_gain > 0:
        x = x * torch.exp((torch.rand(b, 1, generator=gen) * 2 - 1) * cfg.aug_gain)
    if cfg.aug_offset_mv > 0:
        a = cfg.aug_offset_mv
        dc = (torch.rand(b, 1, generator=gen) * 2 - 1) * a
        ramp = (torch.rand(b, 1, generator=gen) * 2 - 1) * a * torch.linspace(-0.5, 0.5, t)[None]
        x = x + dc + ramp
    return x


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def train_tokenizer(cfg: TrainConfig, train: list[np.ndarray], valid: dict[str, np.ndarray],
                    progress: bool = True) -> tuple[FSQTokenizer, dict]:
    """Train on ``train`` signals (mV), select on ``valid``; returns the best tokenizer and a history dict."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    tok = FSQTokenizer(cfg.tokenizer_config())
    model = tok.model.train()
    n, reach, scale = model.n, model.reach, float(cfg.scale_mv)
    sampler = CropSampler(train, (cfg.crop_tokens + 2 * reach) * n, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    history: list[dict] = []
    best = {"rmse_uv": float("inf"), "step": -1, "state": None}
    bad_evals, t0, c0, running = 0, time.perf_counter(), time.process_time(), None
    bar = tqdm(range(cfg.steps), desc=f"fsq n={n} V={tok.vocab_size}", disable=not progress, mininterval=5)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        x = _augment(sampler.sample(cfg.batch_size), cfg, gen) / scale  # (B, (L + 2r) n)
        patches = rearrange(x, "b (l n) -> b l n", n=n)  # (B, L + 2r, n)
        y, _ = model(patches)  # (B, L, n)
        target = patches[:, reach : reach + cfg.crop_tokens]  # (B, L, n)
        err = (y - target) * scale  # mV
        loss = err.pow(2).mean() + (cfg.l1_weight * err.abs().mean() if cfg.l1_weight else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        last = step + 1 == cfg.steps
        if (step + 1) % cfg.eval_every == 0 or last:
            model.eval()
            rep = evaluate_tokenizer(tok, valid)
            model.train()
            entry = {"step": step + 1, "train_rmse_uv": 1000 * math.sqrt(max(running, 0.0)),
                     "valid_rmse_uv": rep["rmse_uv"], "valid_prdn": rep["prdn"],
                     "valid_code_perplexity": rep["code_perplexity"], "lr": _lr_at(step, cfg),
                     "elapsed_s": time.perf_counter() - t0}
            history.append(entry)
            bar.set_postfix(train_uV=f"{entry['train_rmse_uv']:.1f}", valid_uV=f"{rep['rmse_uv']:.1f}")
            if rep["rmse_uv"] < best["rmse_uv"]:
                best = {"rmse_uv": rep["rmse_uv"], "step": step + 1, "state": copy.deepcopy(model.state_dict())}
                bad_evals = 0
            else:
                bad_evals += 1
                if cfg.patience and bad_evals >= cfg.patience:
                    break
    model.load_state_dict(best["state"])
    model.eval()
    return tok, {"history": history, "best_step": best["step"], "best_valid_rmse_uv": best["rmse_uv"],
                 "train_seconds": time.perf_counter() - t0, "train_cpu_seconds": time.process_time() - c0,
                 "steps_run": history[-1]["step"] if history else 0}


def run(cfg: TrainConfig) -> Path:
    """Train, write ``run_info.json`` / ``metrics.json`` / ``tokenizer/`` under ``cfg.output_dir``."""
    torch.set_num_threads(max(1, int(cfg.threads)))
    out = ensure_writable_dir(cfg.output_dir)
    split = inter_patient_split(cfg.valid_records or None)
    train = list(load_signals(split.train, cfg.data_dir, fs=cfg.fs).values())
    valid = load_signals(split.valid, cfg.data_dir, fs=cfg.fs, seconds=cfg.valid_seconds)
    t0 = time.time()
    tok, hist = train_tokenizer(cfg, train, valid)
    tok_dir = tok.save_pretrained(out / "tokenizer")
    metrics = {"tokenizer": tok.describe(), "split": split.as_dict(), **hist}
    if cfg.eval_test:
        test = load_signals(split.test, cfg.data_dir, fs=cfg.fs)
        metrics["test_ds2"] = evaluate_tokenizer(tok, test)
    write_json(out / "metrics.json", metrics)
    write_run_info(out, dataclasses.asdict(cfg), wall_seconds=time.time() - t0,
                   torch_threads=torch.get_num_threads(), tokenizer=tok.describe())
    return tok_dir
