"""Training of the seed report's quantizing autoencoder (``tokenizer_type: seed``).

The report trains ``DimReduction`` on blocks of min-max normalized 250-sample windows with an MSE loss,
then adds the two quantization layers (Table 2 is without them; "with the two layers, test MSE
0.000544"). ``train_quantized: true`` instead trains through the quantizer with a straight-through
gradient. Data: DS1 training records (inter-patient; validation = whole held-out DS1 records, used for
early stopping), or, only to mirror the seed, ``split: intra_record`` (first 80 % of one record's windows
train, the last 20 % test).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecg2llm.core.errors import ConfigError
from ecg2llm.core.io import ensure_writable_dir, write_json, write_run_info

from ..data import read_record
from ..metrics import reconstruction_report
from ..seed_tokenizer import SeedTokenizer, SeedTokenizerConfig
from ..splits import inter_patient_split, intra_record_split
from ..windows import WINDOW, minmax_denormalize, minmax_normalize, to_blocks, to_windows


@dataclass
class TrainConfig:
    """Training config of the seed tokenizer (YAML keys = these fields)."""

    tokenizer_type: str = "seed"
    block_size: int = 10
    latent: str = "scalar"              # "scalar" (text: 1 token/block) or "table1" (32 tokens/block)
    num_bins: int = 256
    min_val: float = -5.0
    max_val: float = 5.0
    train_quantized: bool = False       # train through the quantizer (straight-through) instead of adding it after
    split: str = "inter_patient"        # or "intra_record" (seed-mirroring only)
    intra_record: str = "100"
    intra_train_fraction: float = 0.8
    valid_records: list[str] = field(default_factory=lambda: ["101", "112", "119", "208"])
    max_windows_per_record: int = 0     # 0 = all windows; >0 subsamples (seeded) for quick runs
    epochs: int = 20
    patience: int = 3                   # early stopping on validation MSE
    batch_size: int = 2048              # blocks per step
    lr: float = 1e-3
    seed: int = 0
    threads: int = 0                    # torch threads (0 = torch default)
    data_dir: str | None = None
    output_dir: str = "runs/tokenizer/seed"
    eval_max_windows_per_record: int = 0


def set_seed(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_windows(records, data_dir, max_windows: int = 0, seed: int = 0, lead: str = "MLII"):
    """Concatenated 250-sample windows of ``records`` in mV, shape ``(N, 250)`` (seeded subsample)."""
    rng = np.random.default_rng(seed)
    out = []
    for r in records:
        w = to_windows(read_record(r, data_dir, lead=lead, annotations=False).signal, WINDOW)
        if max_windows and len(w) > max_windows:
            w = w[np.sort(rng.choice(len(w), max_windows, replace=False))]
        out.append(w)
    return np.concatenate(out).astype(np.float32)


def split_windows(cfg: TrainConfig) -> dict[str, np.ndarray]:
    """``{"train", "valid", "test"}`` windows in mV for the configured split kind."""
    if cfg.split == "inter_patient":
        sp = inter_patient_split(cfg.valid_records)
        mw, ew = cfg.max_windows_per_record, cfg.eval_max_windows_per_record or cfg.max_windows_per_record
        return {"train": load_windows(sp.train, cfg.data_dir, mw, cfg.seed),
                "valid": load_windows(sp.valid, cfg.data_dir, ew, cfg.seed + 1),
                "test": load_windows(sp.test, cfg.data_dir, ew, cfg.seed + 2)}
    if cfg.split == "intra_record":
        w = load_windows([cfg.intra_record], cfg.data_dir)
        tr, te = intra_record_split(len(w), cfg.intra_train_fraction)
        # the seed names no validation set: the last 10 % of the training windows serve for early stopping
        cut = int(len(tr) * 0.9)
        return {"train": w[tr[:cut]], "valid": w[tr[cut:]], "test": w[te]}
    raise ConfigError(f"split must be 'inter_patient' or 'intra_record', got {cfg.split!r}")


@torch.inference_mode()
def normalized_mse(model, windows_mv: np.ndarray, block_size: int, quantize: bool, batch: int = 65536) -> float:
    """The seed's metric: MSE between normalized windows and their reconstruction (model in eval mode)."""
    model.eval()
    norm, _, _ = minmax_normalize(windows_mv)
    blocks = torch.from_numpy(to_blocks(norm, block_size))
    se = 0.0
    for chunk in blocks.split(batch):
        se += float(((model(chunk, quantize=quantize) - chunk) ** 2).sum())
    return se / blocks.numel()


@torch.inference_mode()
def reconstruct_mv(model, windows_mv: np.ndarray, block_size: int, quantize: bool, batch: int = 65536) -> np.ndarray:
    """Reconstruct windows in mV (the per-window min/max are side information, as in the seed)."""
    model.eval()
    norm, lo, hi = minmax_normalize(windows_mv)
    blocks = torch.from_numpy(to_blocks(norm, block_size))
    rec = torch.cat([model(c, quantize=quantize) for c in blocks.split(batch)]).reshape(norm.shape).numpy()
    return minmax_denormalize(rec, lo, hi)


def fit(tok: SeedTokenizer, train_mv: np.ndarray, valid_mv: np.ndarray, cfg: TrainConfig, progress: bool = True):
    """Train ``tok.model`` in place; returns the history (per-epoch train/valid MSE) and the best epoch."""
    from tqdm.auto import tqdm

    set_seed(cfg.seed)
    model = tok.model
    blocks = torch.from_numpy(to_blocks(minmax_normalize(train_mv)[0], cfg.block_size))  # (B, 1, n)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, best_epoch, bad, history = float("inf"), None, -1, 0, []
    loss_fn = nn.MSELoss()
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(blocks), generator=gen)
        total = 0.0
        bar = tqdm(perm.split(cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not progress, unit="batch")
        for idx in bar:
            x = blocks[idx]
            loss = loss_fn(model(x, quantize=cfg.train_quantized), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        val = normalized_mse(model, valid_mv, cfg.block_size, quantize=cfg.train_quantized)
        history.append({"epoch": epoch + 1, "train_mse": total / len(blocks), "valid_mse": val})
        if progress:
            print(f"epoch {epoch + 1}: train MSE {total / len(blocks):.6f}  valid MSE {val:.6f}")
        if val < best - 1e-9:
            best, best_state, best_epoch, bad = val, copy.deepcopy(model.state_dict()), epoch + 1, 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history, best_epoch


def evaluate(tok: SeedTokenizer, windows_mv: np.ndarray, quantize: bool) -> dict:
    """Seed-normalized MSE/MAE plus mV metrics next to the token rate (unquantized: 32-bit floats)."""
    cfg = tok.config
    rec = reconstruct_mv(tok.model, windows_mv, cfg.block_size, quantize)
    x, y = windows_mv.reshape(-1), rec.reshape(-1)
    bits = tok.bits_per_token if quantize else 32.0  # an unquantized latent is a float32 per value
    rep = reconstruction_report(x, y, tok.tokens_per_second, bits, tok.fs)
    norm_x = minmax_normalize(windows_mv)[0]
    norm_y = (rec - windows_mv.min(1, keepdims=True)) / np.where(
        np.ptp(windows_mv, 1, keepdims=True) > 0, np.ptp(windows_mv, 1, keepdims=True), 1.0)
    rep["mse"] = float(np.mean((norm_x - norm_y) ** 2))
    rep["mae"] = float(np.mean(np.abs(norm_x - norm_y)))
    # the per-window min and max travel as side information (2 x float32 per 250 samples)
    rep["side_info_bits_per_second"] = 2 * 32 * tok.fs / WINDOW
    return rep


def run(cfg: TrainConfig) -> Path:
    """Train, evaluate on validation and test windows, save the tokenizer; returns its folder."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = ensure_writable_dir(cfg.output_dir)
    write_run_info(out, asdict(cfg))
    t0 = time.perf_counter()
    data = split_windows(cfg)
    tok = SeedTokenizer(SeedTokenizerConfig(cfg.block_size, cfg.latent, cfg.num_bins, cfg.min_val, cfg.max_val))
    history, best_epoch = fit(tok, data["train"], data["valid"], cfg)
    metrics = {
        "split": cfg.split, "best_epoch": best_epoch, "history": history,
        "train_seconds": round(time.perf_counter() - t0, 1), "tokenizer": tok.describe(),
        "n_windows": {k: int(len(v)) for k, v in data.items()},
        **{f"{part}_{'quantized' if q else 'unquantized'}": evaluate(tok, data[part], q)
           for part in ("valid", "test") for q in (False, True)},
    }
    tok_dir = tok.save_pretrained(out / "tokenizer")
    write_json(out / "metrics.json", metrics)
    t = metrics["test_quantized"]
    print(f"test ({cfg.split}) quantized: MSE {t['mse']:.6f} (seed norm), RMSE {t['rmse_uv']:.1f} uV, "
          f"PRDN {t['prdn']:.1f} % at {tok.tokens_per_second:g} tokens/s, {tok.bits_per_second:g} bit/s")
    return tok_dir
