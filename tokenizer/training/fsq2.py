"""Train tokenizer v2 (``fsq2``): any single-lead ECG, baseline split off, robustness augmentations.

Launch (the shipped default since v2; see ``tokenizer/pretrained/v2/README.md``)::

    python tokenizer/train.py --config configs/tokenizer/fsq2_default.yaml --data_dir ../shared/data

Data (inter-patient: nothing of DS2 is read before the final score):

* ``mlii``: MLII of the DS1 training records (DS1 minus the validation records);
* ``lead2``: the same records' second leads (V1, V2, V4, V5; V5 for 114, whose MLII is second);
* ``resampled``: both leads after a round trip through 250, 500 or 1000 Hz (other recorders' rates);
* ``cinc``: ``cinc_records`` CinC 2017 handheld recordings (300 Hz -> 360 Hz), from the start of
  ``RECORDS``; the last ``cinc_holdout`` recordings are never trained on (a robustness check set).

Each crop gets a gain ``exp(U(log g_min, log g_max))`` (0.2-3x), and, with probability ``aug_p``, a DC
offset of up to +-``aug_offset_mv``, a ramp and a sinusoidal wander (up to ``aug_wander_mv`` at
0.05-0.5 Hz); then the baseline is split off exactly as at inference (:mod:`ecg2llm.tokenizer.baseline`) and
the model codes the band. Loss: QRS-weighted MSE in units of (50 µV)^2, plus ``stft_weight`` x the
multi-resolution STFT loss, minus ``code_weight`` x the code-usage entropy. Selection on the
validation records' MLII band RMSE (first ``valid_seconds``); the best tokenizer is saved at every
improvement (``<output_dir>/tokenizer``), so a run stopped early leaves a usable checkpoint. Then the
texture model is fitted on the training records (``fit_texture``) and DS2 scored once.
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

from ..baseline import split_baseline
from ..fsq2_tokenizer import FSQ2Tokenizer, FSQ2TokenizerConfig
from ..splits import inter_patient_split
from .fsq import _lr_at
from .losses import code_usage_entropy, qrs_weighted_mse, stft_loss

ERR_UNIT_MV = 0.05  # the MSE term is in units of (50 µV)^2, so the loss weights read as relative


@dataclass
class TrainConfig(FSQ2TokenizerConfig):
    """Training of an ``fsq2`` tokenizer: every field of :class:`FSQ2TokenizerConfig` (inherited, not copied;
    YAML keys stay flat) plus the training fields below."""

    tokenizer_type: str = "fsq2"
    output_dir: str = "runs/tokenizer/fsq2"
    data_dir: str | None = None
    # --- data
    valid_records: list[str] = field(default_factory=list)
    crop_tokens: int = 128
    valid_seconds: float = 300.0
    pool_weights: dict = field(default_factory=lambda: {"mlii": 0.4, "lead2": 0.2, "resampled": 0.15,
                                                        "cinc": 0.25})
    cinc_records: int = 2000
    cinc_holdout: int = 500
    pool_cache: str = ""  # optional .npz of the loaded pools (rebuilt if missing; never in the repo)
    gain_min: float = 0.2
    gain_max: float = 3.0
    aug_p: float = 0.5
    aug_offset_mv: float = 50.0
    aug_wander_mv: float = 2.0
    # --- loss
    qrs_weight: float = 1.0
    stft_weight: float = 0.1
    code_weight: float = 0.05
    # --- optimization
    steps: int = 6000
    batch_size: int = 32
    lr: float = 3e-3
    min_lr_ratio: float = 0.02
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    eval_every: int = 250
    patience: int = 0
    max_minutes: float = 0.0  # stop after this wall time (0: no limit); the best checkpoint is kept
    seed: int = 0
    threads: int = 2
    fit_texture: bool = True
    eval_test: bool = True

    def __post_init__(self):
        super().__post_init__()  # the tokenizer fields
        if self.tokenizer_type != "fsq2":
            raise ConfigError(f"tokenizer/training/fsq2.py trains tokenizer_type 'fsq2', "
                              f"got {self.tokenizer_type!r}")
        for name in ("steps", "batch_size", "crop_tokens", "eval_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.gain_min <= self.gain_max:
            raise ConfigError(f"need 0 < gain_min <= gain_max, got {self.gain_min}, {self.gain_max}")

    def tokenizer_config(self) -> FSQ2TokenizerConfig:
        names = {f.name for f in dataclasses.fields(FSQ2TokenizerConfig)}
        return FSQ2TokenizerConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


class PoolSampler:
    """Random crops from named pools of 1-D signals of any length (records weighted by their length)."""

    def __init__(self, pools: dict[str, list[np.ndarray]], weights: dict[str, float], crop: int, seed: int):
        self.crop = crop
        self.gen = torch.Generator().manual_seed(seed)
        self.pools, names, w = {}, [], []
        for name, sigs in pools.items():
            sigs = [s for s in sigs if len(s) >= crop]
            if not sigs or weights.get(name, 0) <= 0:
                continue
            data = torch.from_numpy(np.concatenate(sigs).astype(np.float32))  # (N,)
            lens = torch.tensor([len(s) for s in sigs])
            starts = torch.cumsum(lens, 0) - lens
            self.pools[name] = (data, starts, (lens - crop + 1).double())
            names.append(name)
            w.append(float(weights[name]))
        if not self.pools:
            raise ConfigError(f"no training signal is longer than one crop of {crop} samples")
        self.names = names
        self.weights = torch.tensor(w, dtype=torch.float64)

    def sample(self, batch: int) -> torch.Tensor:
        which = torch.multinomial(self.weights, batch, replacement=True, generator=self.gen)
        out = torch.empty(batch, self.crop)
        for i, name in enumerate(self.names):
            sel = torch.nonzero(which == i)[:, 0]
            if not len(sel):
                continue
            data, starts, n_pos = self.pools[name]
            r = torch.multinomial(n_pos, len(sel), replacement=True, generator=self.gen)
            o = (torch.rand(len(sel), generator=self.gen, dtype=torch.float64) * n_pos[r]).long()
            idx = (starts[r] + o)[:, None] + torch.arange(self.crop)[None]  # (b, crop)
            out[sel] = data[idx]
        return out  # (B, crop)


def augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Gain (log-uniform), then with probability ``aug_p`` a DC offset, ramp and sinusoidal wander."""
    b, t = x.shape
    lo, hi = math.log(cfg.gain_min), math.log(cfg.gain_max)
    lg = lo + torch.rand(b, 1, generator=gen) * (hi - lo)  # (B, 1) log-uniform gain
    x = x * torch.exp(lg)
    on = (torch.rand(b, 1, generator=gen) < cfg.aug_p).float()
    u = lambda: torch.rand(b, 1, generator=gen)  # noqa: E731
    dc = (u() * 2 - 1) * cfg.aug_offset_mv
    ramp = (u() * 2 - 1) * cfg.aug_wander_mv * torch.linspace(-0.5, 0.5, t)[None]
    tt = torch.arange(t)[None] / cfg.fs
    wav = u() * cfg.aug_wander_mv * torch.sin(2 * math.pi * (0.05 + 0.45 * u()) * tt + 2 * math.pi * u())
    return x + on * (dc + ramp + wav)


def load_pools(cfg: TrainConfig, train_records: list[str]) -> dict[str, list[np.ndarray]]:
    """Training signals by pool (see module docstring), in mV at ``cfg.fs``."""
    from tqdm.auto import tqdm

    from ..cinc2017 import cinc2017_records, load_cinc2017
    from ..data import ensure_database, read_header, read_record, resample

    cache = Path(cfg.pool_cache) if cfg.pool_cache else None
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            out: dict[str, list[np.ndarray]] = {}
            for key in sorted(z.files):
                out.setdefault(key.split("__")[0], []).append(z[key])
            return out
    db = ensure_database(cfg.data_dir, records=train_records, annotator=None, download=False)
    pools: dict[str, list[np.ndarray]] = {"mlii": [], "lead2": [], "resampled": [], "cinc": []}
    rates = (250.0, 500.0, 1000.0)
    for i, r in enumerate(tqdm(train_records, desc="MIT-BIH DS1 train", mininterval=5)):
        for lead in read_header(r, db).sig_name:
            x = read_record(r, cfg.data_dir, lead=lead, fs=cfg.fs, annotations=False).signal
            pools["mlii" if lead == "MLII" else "lead2"].append(x)
            fs_mid = rates[(i + (lead != "MLII")) % len(rates)]
            back = resample(resample(x, cfg.fs, fs_mid), fs_mid, cfg.fs)
            pools["resampled"].append(back.astype(np.float32))
    if cfg.pool_weights.get("cinc", 0) > 0 and cfg.cinc_records > 0:
        recs = cinc2017_records(cfg.data_dir)
        usable = recs[: max(0, len(recs) - int(cfg.cinc_holdout))]
        pools["cinc"] = list(load_cinc2017(usable[: int(cfg.cinc_records)], cfg.data_dir, cfg.fs,
                                           progress=True).values())
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **{f"{k}__{i:05d}": s for k, v in pools.items() for i, s in enumerate(v)})
    return pools


def valid_band_rmse(tok: FSQ2Tokenizer, valid: dict[str, np.ndarray]) -> float:
    """Band RMSE in µV (both signals high-passed at 0.5 Hz) over the validation signals."""
    from ..robustness import band_errors

    return band_errors(tok, valid)["rmse_uv"]


def train_tokenizer(cfg: TrainConfig, pools: dict[str, list[np.ndarray]], valid: dict[str, np.ndarray],
                    out: Path | None = None, progress: bool = True) -> tuple[FSQ2Tokenizer, dict]:
    """Train, select on ``valid`` (band RMSE); returns the best tokenizer and its history."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    tok = FSQ2Tokenizer(cfg.tokenizer_config())
    model = tok.model.train()
    n, reach, p = model.n, model.reach, model.post_pad
    sampler = PoolSampler(pools, cfg.pool_weights, (cfg.crop_tokens + 2 * reach) * n, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    params = [q for q in model.parameters() if q.requires_grad]
    decay = [q for q in params if q.ndim >= 2]
    no_decay = [q for q in params if q.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    history: list[dict] = []
    best = {"rmse_uv": float("inf"), "step": -1, "state": None}
    bad, t0, c0, running = 0, time.perf_counter(), time.process_time(), None
    lo, hi = reach * n + p, (reach + cfg.crop_tokens) * n - p
    bar = tqdm(range(cfg.steps), desc=f"fsq2 n={n} V={tok.vocab_size}", disable=not progress, mininterval=10)
    for step in bar:
        # Cosine over steps or over the wall-time budget, whichever runs out first, so a run stopped by
        # max_minutes still ends at the low learning rate.
        frac = (time.perf_counter() - t0) / (60 * cfg.max_minutes) if cfg.max_minutes > 0 else 0.0
        eff_step = max(step, int(frac * cfg.steps))
        for g in opt.param_groups:
            g["lr"] = _lr_at(eff_step, cfg)
        x = augment(sampler.sample(cfg.batch_size), cfg, gen)  # (B, T) mV
        band, _ = split_baseline(x, tok.hop, cfg.baseline_step_mv, tok.config.baseline_iterations,
                                 tok.config.baseline_interp, tok.config.baseline_min_correction_mv)  # (B, T)
        patches = rearrange(band / cfg.scale_mv, "b (l n) -> b l n", n=n)  # (B, L + 2r, n)
        y, bounded = model(patches)  # (B, L n - 2p), (B, L', d)
        y = y * cfg.scale_mv
        target = band[:, lo:hi]  # (B, L n - 2p)
        mse = qrs_weighted_mse(y, target, cfg.qrs_weight) / ERR_UNIT_MV**2
        loss = mse
        if cfg.stft_weight > 0:
            loss = loss + cfg.stft_weight * stft_loss(y, target)
        if cfg.code_weight > 0:
            loss = loss - cfg.code_weight * code_usage_entropy(bounded, list(cfg.levels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        plain = float((y - target).detach().pow(2).mean())
        running = plain if running is None else 0.98 * running + 0.02 * plain
        elapsed = time.perf_counter() - t0
        stop = cfg.max_minutes > 0 and elapsed > 60 * cfg.max_minutes
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps or stop:
            model.eval()
            v = valid_band_rmse(tok, valid)
            model.train()
            entry = {"step": step + 1, "train_rmse_uv": 1000 * math.sqrt(running), "valid_band_rmse_uv": v,
                     "loss": float(loss.detach()), "lr": _lr_at(eff_step, cfg), "elapsed_s": elapsed}
            history.append(entry)
            print(f"step {step + 1}: train {entry['train_rmse_uv']:.1f} uV, valid band {v:.1f} uV, "
                  f"{elapsed:.0f} s", flush=True)
            if v < best["rmse_uv"]:
                best = {"rmse_uv": v, "step": step + 1, "state": copy.deepcopy(model.state_dict())}
                bad = 0
                if out is not None:
                    model.eval()
                    tok.save_pretrained(out / "tokenizer")
                    write_json(out / "history.json", history)
                    model.train()
            else:
                bad += 1
                if cfg.patience and bad >= cfg.patience:
                    break
        if stop:
            break
    model.load_state_dict(best["state"])
    model.eval()
    return tok, {"history": history, "best_step": best["step"], "best_valid_band_rmse_uv": best["rmse_uv"],
                 "train_seconds": time.perf_counter() - t0, "train_cpu_seconds": time.process_time() - c0,
                 "steps_run": history[-1]["step"] if history else 0}


def run(cfg: TrainConfig) -> Path:
    """Train, fit the texture, write ``run_info.json`` / ``metrics.json`` / ``tokenizer/``."""
    from ..evaluation import load_signals
    from ..robustness import robustness_report

    torch.set_num_threads(max(1, int(cfg.threads)))
    out = ensure_writable_dir(cfg.output_dir)
    split = inter_patient_split(cfg.valid_records or None)
    pools = load_pools(cfg, list(split.train))
    valid = load_signals(split.valid, cfg.data_dir, fs=cfg.fs, seconds=cfg.valid_seconds)
    t0 = time.time()
    tok, hist = train_tokenizer(cfg, pools, valid, out)
    metrics = {"tokenizer": tok.describe(), "split": split.as_dict(),
               "pool_sizes": {k: int(sum(len(s) for s in v)) for k, v in pools.items()}, **hist}
    if cfg.fit_texture:  # the texture bank (texture.safetensors) on DS1-train MLII; scripts/fit_texture.py refits
        from ..texture_bank import fit_texture_bank

        tok.texture_bank, metrics["texture_fit"] = fit_texture_bank(tok, pools["mlii"])
    tok_dir = tok.save_pretrained(out / "tokenizer")
    if cfg.eval_test:
        metrics["test_ds2"] = robustness_report(tok, cfg.data_dir, split.test)
    write_json(out / "metrics.json", metrics)
    write_run_info(out, dataclasses.asdict(cfg), wall_seconds=time.time() - t0,
                   torch_threads=torch.get_num_threads(), tokenizer=tok.describe())
    return tok_dir
