"""Train the frozen ECG embedding network of stage 3 on DS1 windows (a few minutes on 2 CPU cores).

Launch (the committed weights were made with exactly this; retraining changes ``weights_hash``, and
metrics computed with different hashes are not comparable)::

    python eval/train_embedding.py --config configs/eval/embedding.yaml --output_dir eval/pretrained/embedding

Targets, all derived from the MIT-BIH reference annotations of each 10-s MLII window (multi-task, so the
embedding has to encode morphology, rhythm and rate):

* beat composition: the fraction of the window's annotated beats in each AAMI class N, S, V, F, Q
  (soft-label cross-entropy; windows without beats are masked);
* rhythm group at the window centre: sinus (N, SBR) / atrial fibrillation or flutter (AFIB, AFL) /
  bigeminy or trigeminy (B, T) / ventricular (VT, VFL, IVR) / other (cross-entropy);
* heart rate from the annotated beats, ``60 (n - 1) / (t_last - t_first)`` bpm, regressed as log-bpm
  (smooth L1; windows with fewer than two beats are masked).

Records: DS1 minus the validation records of :func:`ecg2llm.tokenizer.splits.inter_patient_split` for training
(10-s windows every ``stride_s`` seconds), the validation records for model selection. DS2 is never read.
"""

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.io import git_sha, versions, write_text
from ecg2llm.eval.scorecard.embedding import ECGEmbeddingNet, EmbeddingConfig, save_model
from ecg2llm.tokenizer.data import read_record
from ecg2llm.tokenizer.ecg import AAMI_CLASSES
from ecg2llm.tokenizer.splits import inter_patient_split

AAMI_ORDER = ("N", "S", "V", "F", "Q")
RHYTHM_GROUPS = ("sinus", "af", "bigeminy_trigeminy", "ventricular", "other")
_RHYTHM_OF = {"(N": 0, "(SBR": 0, "(AFIB": 1, "(AFL": 1, "(B": 2, "(T": 2, "(VT": 3, "(VFL": 3, "(IVR": 3}


@dataclass
class TrainEmbeddingConfig:
    """Training settings (``configs/eval/embedding.yaml``)."""

    data_dir: str | None = None
    output_dir: str = "runs/embedding"
    valid_records: list[str] | None = None  # default: ecg2llm.tokenizer.splits.DEFAULT_VALID
    stride_s: float = 5.0
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    seed: int = 0
    threads: int = 2
    max_train_windows: int | None = None  # cap, for smoke tests
    embed_dim: int = 64


def window_labels(rec, win: int, stride: int) -> dict[str, np.ndarray]:
    """Windows of one annotated record and their targets (see the module docstring).

    Returns
    -------
    dict
        ``x (N, win)`` mV, ``beat_frac (N, 5)``, ``has_beats (N,)``, ``rhythm (N,)`` int,
        ``log_hr (N,)``, ``has_hr (N,)``.
    """
    sig = rec.signal
    b_samp, b_sym = rec.annotations.beats()
    b_cls = np.array([AAMI_ORDER.index(AAMI_CLASSES[s]) if s in AAMI_CLASSES else -1 for s in b_sym])
    r_samp, r_lab = rec.annotations.rhythms()
    starts = np.arange(0, len(sig) - win + 1, stride)
    n = len(starts)
    out = {
        "x": np.stack([sig[s : s + win] for s in starts]).astype(np.float32),
        "beat_frac": np.zeros((n, len(AAMI_ORDER)), np.float32),
        "has_beats": np.zeros(n, bool),
        "rhythm": np.zeros(n, np.int64),
        "log_hr": np.zeros(n, np.float32),
        "has_hr": np.zeros(n, bool),
    }
    for i, s in enumerate(starts):
        lo, hi = np.searchsorted(b_samp, [s, s + win])
        cls = b_cls[lo:hi]
        cls = cls[cls >= 0]
        if len(cls):
            out["beat_frac"][i] = np.bincount(cls, minlength=len(AAMI_ORDER)) / len(cls)
            out["has_beats"][i] = True
        if hi - lo >= 2:
            span = (b_samp[hi - 1] - b_samp[lo]) / rec.fs
            out["log_hr"][i] = np.log(60.0 * (hi - lo - 1) / span)
            out["has_hr"][i] = True
        j = np.searchsorted(r_samp, s + win // 2, side="right") - 1
        label = r_lab[max(j, 0)] if len(r_lab) else "(N"
        out["rhythm"][i] = _RHYTHM_OF.get(label, 4)
    return out


def build_set(records, data_dir, win: int, stride: int) -> dict[str, np.ndarray]:
    parts = [window_labels(read_record(r, data_dir, lead="MLII"), win, stride) for r in records]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def losses(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The three masked task losses of one batch."""
    hb, hh = batch["has_beats"], batch["has_hr"]
    logp = F.log_softmax(out["beat_logits"], dim=1)  # (B, 5)
    beat = -(batch["beat_frac"] * logp).sum(1)[hb].mean() if hb.any() else logp.sum() * 0
    rhythm = F.cross_entropy(out["rhythm_logits"], batch["rhythm"])
    hr = F.smooth_l1_loss(out["log_hr"][hh], batch["log_hr"][hh], beta=0.1) if hh.any() else logp.sum() * 0
    return {"beat": beat, "rhythm": rhythm, "hr": hr, "total": beat + rhythm + 4.0 * hr}


@torch.no_grad()
def evaluate(model: ECGEmbeddingNet, data: dict[str, np.ndarray], batch_size: int = 256) -> dict[str, float]:
    """Validation losses, rhythm accuracy, dominant-beat-class accuracy, heart-rate MAE in bpm."""
    model.eval()
    tot, n = {"beat": 0.0, "rhythm": 0.0, "hr": 0.0, "total": 0.0}, 0
    rh_ok, beat_ok, n_beat, hr_err, n_hr = 0, 0, 0, 0.0, 0
    for i in range(0, len(data["x"]), batch_size):
        b = {k: torch.from_numpy(v[i : i + batch_size]) for k, v in data.items()}
        out = model(b["x"])
        ls = losses(out, b)
        m = len(b["x"])
        for k in tot:
            tot[k] += float(ls[k]) * m
        n += m
        rh_ok += int((out["rhythm_logits"].argmax(1) == b["rhythm"]).sum())
        hb = b["has_beats"]
        beat_ok += int((out["beat_logits"].argmax(1)[hb] == b["beat_frac"].argmax(1)[hb]).sum())
        n_beat += int(hb.sum())
        hh = b["has_hr"]
        hr_err += float((out["log_hr"][hh].exp() - b["log_hr"][hh].exp()).abs().sum())
        n_hr += int(hh.sum())
    res = {f"loss_{k}": v / max(n, 1) for k, v in tot.items()}
    res.update(
        rhythm_acc=rh_ok / max(n, 1),
        beat_dominant_acc=beat_ok / max(n_beat, 1),
        hr_mae_bpm=hr_err / max(n_hr, 1),
        n_windows=n,
    )
    return res


def run(cfg: TrainEmbeddingConfig) -> Path:
    """Train, keep the epoch with the lowest validation loss, save it to ``cfg.output_dir``."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    split = inter_patient_split(cfg.valid_records)
    mcfg = EmbeddingConfig(embed_dim=cfg.embed_dim)
    win = mcfg.window
    t0 = time.time()
    train = build_set(split.train, cfg.data_dir, win, int(round(cfg.stride_s * mcfg.fs)))
    valid = build_set(split.valid, cfg.data_dir, win, win)
    if cfg.max_train_windows and len(train["x"]) > cfg.max_train_windows:
        keep = np.random.default_rng(cfg.seed).choice(len(train["x"]), cfg.max_train_windows, replace=False)
        train = {k: v[keep] for k, v in train.items()}
    print(
        f"train windows {len(train['x'])} ({len(split.train)} DS1 records), valid windows {len(valid['x'])} "
        f"({', '.join(split.valid)}), read in {time.time() - t0:.0f} s"
    )

    model = ECGEmbeddingNet(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(train["x"]) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    rng = np.random.default_rng(cfg.seed)
    best, best_state, history = float("inf"), None, []
    for epoch in range(cfg.epochs):
        model.train()
        perm = rng.permutation(len(train["x"]))
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for step in bar:
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            b = {k: torch.from_numpy(v[idx]) for k, v in train.items()}
            ls = losses(model(b["x"]), b)
            opt.zero_grad(set_to_none=True)
            ls["total"].backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{ls['total'].item():.3f}")
        ev = evaluate(model, valid)
        history.append({"epoch": epoch + 1, **ev})
        print(
            f"epoch {epoch + 1}: valid loss {ev['loss_total']:.4f} rhythm acc {ev['rhythm_acc']:.3f} "
            f"dominant beat acc {ev['beat_dominant_acc']:.3f} HR MAE {ev['hr_mae_bpm']:.2f} bpm"
        )
        if ev["loss_total"] < best:
            best = ev["loss_total"]
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    training = {
        "config": dataclasses.asdict(cfg),
        "train_records": list(split.train),
        "valid_records": list(split.valid),
        "n_train_windows": int(len(train["x"])),
        "history": history,
        "best_valid": min(history, key=lambda h: h["loss_total"]),
        "seconds": round(time.time() - t0, 1),
        "git_sha": git_sha(),
        "versions": versions(),
        "aami_order": AAMI_ORDER,
        "rhythm_groups": RHYTHM_GROUPS,
    }
    out = save_model(model, cfg.output_dir, extra={"training": training})
    write_text(out / "README.md", model_card(out, training))
    print(f"embedding saved to {out} in {training['seconds']:.0f} s")
    return out


def model_card(folder: Path, training: dict) -> str:
    """``README.md`` of an embedding folder: what it is, how it was trained, how well, how to retrain."""
    from ecg2llm.core.hub import state_dict_hash
    from ecg2llm.eval.scorecard.embedding import load_model

    model = load_model(folder)
    n_params = sum(p.numel() for p in model.parameters())
    b = training["best_valid"]
    return f"""# ECG embedding network (stage 3 of ecg2llm)

Frozen 1-D CNN whose {model.cfg.embed_dim}-d output is the feature space of FED, MMD, precision/recall/
density/coverage, the discriminative score and the memorization distances (`eval/scorecard/embedding.py`).

- weights hash (SHA-256 over tensors): `{state_dict_hash(model.state_dict())}`
- parameters: {n_params:,}; input: {model.cfg.window_s:g}-s MLII windows in mV at {model.cfg.fs:g} Hz,
  median-centred, divided by {model.cfg.input_scale_mv:g} mV, clipped at ±{model.cfg.clip_mv:g}
- trained on DS1 records {", ".join(training["train_records"])} ({training["n_train_windows"]} windows,
  stride {training["config"]["stride_s"]} s), selected on {", ".join(training["valid_records"])};
  DS2 never seen; {training["seconds"]:.0f} s on CPU (git {training["git_sha"]})
- targets: AAMI beat-class composition (N S V F Q), rhythm group ({", ".join(RHYTHM_GROUPS)}), log heart rate
- validation (epoch {b["epoch"]}, {b["n_windows"]} windows): rhythm accuracy {b["rhythm_acc"]:.3f},
  dominant beat class accuracy {b["beat_dominant_acc"]:.3f}, heart-rate MAE {b["hr_mae_bpm"]:.2f} bpm

Retrain (changes the hash; metrics are only comparable under one hash):

    python eval/train_embedding.py --config configs/eval/embedding.yaml --output_dir eval/pretrained/embedding
"""


@run_main
def main(argv=None):
    """Parse ``--config`` / overrides and train. Returns 0 on success."""
    cfg = parse_config(TrainEmbeddingConfig, argv, description=__doc__)
    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
