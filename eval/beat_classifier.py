"""The AAMI beat classifier of the TSTR study: a small 1-D CNN on the beat plus its RR features.

Architecture: three strided convolutions (16-32-64 channels, GELU, batch norm) over the 256-sample beat,
global average pooling, concatenated with the four standardized RR features, then a 64-unit MLP -> N/S/V/F.
Trained with AdamW for a fixed number of epochs (no early stopping on anything from DS2) and a class-weighted
cross-entropy, weights proportional to ``1 / sqrt(class frequency)`` of the training set -- fixed before any
test number was seen. The same recipe trains every arm of :mod:`scripts.tstr` (real, synthetic, mixed), so
the arms differ only in their training beats.

Metrics (:func:`beat_metrics`): macro-F1 over N, S, V, F and per-class sensitivity (recall) and positive
predictive value (precision), the AAMI EC57 / de Chazal reporting convention.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .beats import AFTER, BEFORE, CLASSES, BeatSet


@dataclass
class ClassifierConfig:
    epochs: int = 6
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-2
    class_weight_power: float = 0.5  # weight ~ frequency ** -power
    seed: int = 0


class BeatCNN(nn.Module):
    def __init__(self, n_rr: int = 4, n_classes: int = len(CLASSES)):
        super().__init__()

        def block(cin, cout, k):
            return nn.Sequential(nn.Conv1d(cin, cout, k, stride=2, padding=k // 2), nn.BatchNorm1d(cout), nn.GELU())

        self.conv = nn.Sequential(block(1, 16, 7), block(16, 32, 5), block(32, 64, 5), block(64, 64, 3))
        self.head = nn.Sequential(nn.Linear(64 + n_rr, 64), nn.GELU(), nn.Linear(64, n_classes))

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        h = self.conv(x[:, None, :]).mean(-1)  # (B, 64)
        return self.head(torch.cat([h, rr], 1))  # (B, n_classes)


class BeatClassifier:
    """A trained :class:`BeatCNN` with its RR standardization."""

    def __init__(self, net: BeatCNN, rr_mean: np.ndarray, rr_std: np.ndarray, config: ClassifierConfig,
                 train_counts: dict):
        self.net, self.rr_mean, self.rr_std = net.eval(), rr_mean, rr_std
        self.config, self.train_counts = config, train_counts

    def _rr(self, rr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((rr - self.rr_mean) / self.rr_std).astype(np.float32))

    @torch.no_grad()
    def predict_proba(self, beats: BeatSet, batch_size: int = 4096) -> np.ndarray:
        out = []
        for a in range(0, len(beats), batch_size):
            x = torch.from_numpy(beats.x[a:a + batch_size])
            out.append(torch.softmax(self.net(x, self._rr(beats.rr[a:a + batch_size])), -1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)

    def predict(self, beats: BeatSet) -> np.ndarray:
        return self.predict_proba(beats).argmax(1)

    def describe(self) -> dict:
        return {"config": asdict(self.config), "train_counts": self.train_counts,
                "n_params": sum(p.numel() for p in self.net.parameters())}


def train_classifier(train: BeatSet, config: ClassifierConfig | None = None, progress: bool = False) -> BeatClassifier:
    """Train a :class:`BeatCNN` on ``train`` (every class with no beat gets no weight and is never predicted
    more often than the network's prior allows)."""
    from tqdm.auto import tqdm

    cfg = config or ClassifierConfig()
    if len(train) == 0:
        raise ValueError("no training beats")
    assert train.x.shape[1] == BEFORE + AFTER
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = BeatCNN()
    counts = np.bincount(train.y, minlength=len(CLASSES)).astype(np.float64)
    w = np.where(counts > 0, np.maximum(counts, 1) ** -cfg.class_weight_power, 0.0)
    w = w / (w * counts).sum() * counts.sum()  # mean weight per training beat = 1
    rr_mean = np.nanmean(train.rr, 0)
    rr_std = np.nanstd(train.rr, 0) + 1e-6
    clf = BeatClassifier(net, rr_mean, rr_std, cfg, {c: int(k) for c, k in zip(CLASSES, counts)})
    x_all, rr_all = torch.from_numpy(train.x), clf._rr(train.rr)
    y_all = torch.from_numpy(train.y)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(w, dtype=torch.float32))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * int(np.ceil(len(train) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.learning_rate, total_steps=steps)
    net.train()
    bar = tqdm(total=steps, desc="beat classifier", unit="step", disable=not progress, leave=False)
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(train), generator=gen)
        for a in range(0, len(train), cfg.batch_size):
            i = perm[a:a + cfg.batch_size]
            loss = loss_fn(net(x_all[i], rr_all[i]), y_all[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    net.eval()
    return clf


def beat_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Macro-F1 over N/S/V/F, per-class sensitivity, PPV, F1, support, and the confusion matrix."""
    k = len(CLASSES)
    cm = np.bincount(np.asarray(y_true) * k + np.asarray(y_pred), minlength=k * k).reshape(k, k)
    per = {}
    for i, c in enumerate(CLASSES):
        tp, fn, fp = cm[i, i], cm[i].sum() - cm[i, i], cm[:, i].sum() - cm[i, i]
        se = tp / (tp + fn) if tp + fn else float("nan")
        ppv = tp / (tp + fp) if tp + fp else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")
        per[c] = {"se": float(se), "ppv": float(ppv), "f1": float(f1), "support": int(cm[i].sum())}
    f1s = [per[c]["f1"] for c in CLASSES if per[c]["support"] > 0]
    return {"macro_f1": float(np.mean(f1s)), "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
            "per_class": per, "confusion": cm.tolist(), "classes": list(CLASSES)}
