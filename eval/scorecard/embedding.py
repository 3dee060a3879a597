"""The project's frozen ECG embedding: a small 1-D CNN trained on DS1 windows, saved as safetensors.

Fréchet ECG distance, MMD, precision/recall/density/coverage, the discriminative score and the
memorization distances are all computed on its output, so the network is versioned: ``weights_hash``
(SHA-256 over the tensors, :func:`ecg2llm.core.hub.state_dict_hash`) is written into every ``metrics.json``
and two numbers are only comparable when their hashes agree.

Input: 10-s MLII windows in mV at 360 Hz, shape ``(N, 3600)``. Each window's median is subtracted
(MIT-BIH baselines sit anywhere in ±1 mV and carry no information) but the amplitude is **not**
normalized: the signal is divided by a fixed ``input_scale_mv`` and clipped at ``±clip_mv``, so a
synthetic ECG with R waves of the wrong height lands elsewhere in the embedding.

Architecture (``EmbeddingConfig`` defaults, ~66 k parameters): the input is average-pooled to 180 Hz, then
five Conv1d-BN-GELU blocks with stride 2 (receptive field ~1.2 s, one P-QRS-T complex and its
neighbours), global average and max pooling over time, a
linear projection to ``embed_dim`` = 64 (the embedding), and three linear heads used only in training:
AAMI beat-class composition of the window (5), rhythm group (5), and log heart rate (1) -- see
``eval/train_embedding.py``. The committed weights live in ``eval/pretrained/embedding/``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecg2llm.core.errors import ECG2LLMError
from ecg2llm.core.hub import load_weights, read_config, resolve_folder, save_folder, state_dict_hash

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained" / "embedding"  # eval/pretrained/embedding


class EmbeddingError(ECG2LLMError, ValueError):
    """The embedding folder is missing, corrupt or inconsistent with its config."""


@dataclass
class EmbeddingConfig:
    """Shape of the embedding network (saved as ``config.json``)."""

    fs: float = 360.0
    window_s: float = 10.0
    channels: tuple[int, ...] = (16, 32, 64, 64, 96)
    kernel_sizes: tuple[int, ...] = (9, 7, 5, 5, 3)
    embed_dim: int = 64
    n_beat_classes: int = 5
    n_rhythm_classes: int = 5
    input_scale_mv: float = 1.0
    clip_mv: float = 8.0
    input_pool: int = 2  # average-pool the input by 2 (360 -> 180 Hz): halves the cost; QRS energy is < 40 Hz

    @property
    def window(self) -> int:
        return int(round(self.fs * self.window_s))


class ECGEmbeddingNet(nn.Module):
    """1-D CNN: ``(B, T)`` mV windows -> ``(B, embed_dim)`` embeddings (+ training heads)."""

    def __init__(self, cfg: EmbeddingConfig):
        super().__init__()
        self.cfg = cfg
        layers, c_in = [nn.AvgPool1d(cfg.input_pool)] if cfg.input_pool > 1 else [], 1
        for c_out, k in zip(cfg.channels, cfg.kernel_sizes, strict=True):
            layers += [
                nn.Conv1d(c_in, c_out, k, stride=2, padding=k // 2, bias=False),
                nn.BatchNorm1d(c_out),
                nn.GELU(),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * c_in, cfg.embed_dim)
        self.beat_head = nn.Linear(cfg.embed_dim, cfg.n_beat_classes)
        self.rhythm_head = nn.Linear(cfg.embed_dim, cfg.n_rhythm_classes)
        self.hr_head = nn.Linear(cfg.embed_dim, 1)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Median-centre each window, divide by the fixed scale, clip. ``(B, T)`` -> ``(B, 1, T)``."""
        x = x - x.median(dim=1, keepdim=True).values  # (B, T)
        x = (x / self.cfg.input_scale_mv).clamp(-self.cfg.clip_mv, self.cfg.clip_mv)
        return x.unsqueeze(1)  # (B, 1, T)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` mV -> ``(B, embed_dim)``."""
        h = self.features(self.preprocess(x))  # (B, C, T / (input_pool * 32))
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)  # (B, 2C)
        return self.proj(pooled)  # (B, D)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.embed(x)  # (B, D)
        return {
            "embedding": e,
            "beat_logits": self.beat_head(e),
            "rhythm_logits": self.rhythm_head(e),
            "log_hr": self.hr_head(e).squeeze(1),
        }


class Embedder:
    """A frozen :class:`ECGEmbeddingNet` with numpy in, numpy out.

    Examples
    --------
    >>> emb = Embedder.from_pretrained()                    # doctest: +SKIP
    >>> z = emb.embed(windows_mv, fs=360.0)                 # (N, 64) float32
    >>> emb.weights_hash                                    # doctest: +SKIP
    """

    def __init__(self, model: ECGEmbeddingNet, path: Path | None = None):
        self.model = model.eval()
        self.cfg = model.cfg
        self.path = path
        self.weights_hash = state_dict_hash(model.state_dict())

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None) -> "Embedder":
        """Load ``config.json`` + ``model.safetensors`` (default: committed ``eval/pretrained/embedding``)."""
        p = Path(path) if path else PRETRAINED_DIR
        return cls(load_model(p), p)

    @torch.no_grad()
    def embed(self, windows: np.ndarray, fs: float = 360.0, batch_size: int = 256,
              any_length: bool = False) -> np.ndarray:
        """Embed ``(N, T)`` windows in mV at ``fs`` (resampled to the network's rate if needed).

        ``any_length``: accept segments of another length than ``window_s`` (the network is convolutional with
        global pooling; the memorization index embeds 5-s beat-aligned segments this way). Embeddings of
        different lengths are comparable only with each other, never with 10-s windows'.

        Returns
        -------
        np.ndarray
            ``(N, embed_dim)`` float32.
        """
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim != 2:
            raise EmbeddingError(f"embed expects (N, T) windows, got shape {x.shape}")
        if float(fs) != self.cfg.fs:
            from ecg2llm.tokenizer.data import resample

            x = np.stack([resample(w, float(fs), self.cfg.fs) for w in x]).astype(np.float32)
        if x.shape[1] != self.cfg.window and not (any_length and x.shape[1] >= 64 * self.cfg.input_pool):
            raise EmbeddingError(
                f"embedding expects {self.cfg.window_s:g}-s windows ({self.cfg.window} samples at "
                f"{self.cfg.fs:g} Hz), got {x.shape[1]} samples"
            )
        out = [
            self.model.embed(torch.from_numpy(x[i : i + batch_size])).numpy()
            for i in range(0, len(x), batch_size)
        ]
        return (
            np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.cfg.embed_dim), np.float32)
        )

    def describe(self) -> dict:
        return {
            "path": str(self.path) if self.path else None,
            "weights_hash": self.weights_hash,
            "config": dataclasses.asdict(self.cfg),
        }


def save_model(model: ECGEmbeddingNet, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``config.json`` (config + weights hash + ``extra``) and ``model.safetensors``, atomically."""
    return save_folder(path, model.state_dict(), {**dataclasses.asdict(model.cfg), **(extra or {})})


def load_model(path: str | Path | None = None) -> ECGEmbeddingNet:
    """Rebuild the network from a folder (default: the shipped one) or a Hub id; refuse weights whose hash
    differs from ``config.json``."""
    p = resolve_folder(path or PRETRAINED_DIR, what="embedding", error=EmbeddingError,
                       required=("config.json", "model.safetensors"),
                       hint=f"Train one with `python eval/train_embedding.py --output_dir {path}`")
    raw = read_config(p, EmbeddingError)
    names = {f.name for f in dataclasses.fields(EmbeddingConfig)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in names}
    return load_weights(p, ECGEmbeddingNet(EmbeddingConfig(**kw)), raw.get("weights_hash"), EmbeddingError)
