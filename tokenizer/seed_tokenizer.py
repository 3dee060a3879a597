"""The seed report's tokenizer: per-window min-max, ``DimReduction`` encoder, uniform quantizer.

Token layout: windows of 250 samples, each split into ``250 / n`` blocks; each block gives
``latent_dim`` tokens (1 for the ``scalar`` reading, 32 for ``table1``), block after block.
``state`` holds each window's min and max (mV) and the original length; ``decode(ids, None)`` returns
the **normalized** [0, 1] signal (no way to know the per-window scale without the state).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ecg2llm.core.errors import TokenizerError

from .base import ECGTokenizer, register_tokenizer
from .models.seed import LATENT_READINGS, DimReduction
from .quantize import UniformQuantizer
from .windows import WINDOW, minmax_denormalize, minmax_normalize, pad_to_windows, to_blocks


@dataclass
class SeedTokenizerConfig:
    """Config of :class:`SeedTokenizer` (defaults = the report's chosen n = 10 text reading)."""

    block_size: int = 10
    latent: str = "scalar"  # "scalar" (the text) or "table1" (32 values per block)
    num_bins: int = 256
    min_val: float = -5.0
    max_val: float = 5.0
    window: int = WINDOW
    fs: float = 360.0

    def __post_init__(self):
        if self.latent not in LATENT_READINGS:
            raise TokenizerError(f"latent must be one of {LATENT_READINGS}, got {self.latent!r}")
        if self.window % self.block_size:
            raise TokenizerError(f"block_size {self.block_size} must divide the window ({self.window})")


class SeedAutoencoder(torch.nn.Module):
    """``DimReduction`` plus the fixed quantizer between encoder and decoder."""

    def __init__(self, cfg: SeedTokenizerConfig):
        super().__init__()
        self.net = DimReduction(cfg.block_size, cfg.latent)
        self.quantizer = UniformQuantizer(cfg.num_bins, cfg.min_val, cfg.max_val)

    def forward(self, x: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        """``(B, 1, n)`` normalized blocks -> reconstruction ``(B, 1, n)``."""
        z = self.net.encode(x)  # (B, D)
        if quantize:
            z, _ = self.quantizer(z)
        return self.net.decode(z)


@register_tokenizer("seed")
class SeedTokenizer(ECGTokenizer):
    """The seed report's quantizing autoencoder as a tokenizer (see module docstring)."""

    config_class = SeedTokenizerConfig

    def __init__(self, config: SeedTokenizerConfig):
        super().__init__(config)
        self.model = SeedAutoencoder(config).eval()

    @property
    def vocab_size(self) -> int:
        return self.config.num_bins

    @property
    def needs_state(self) -> bool:
        """Always True: without the per-window min/max, ``decode`` returns the normalized signal, not mV."""
        return True

    @property
    def tokens_per_block(self) -> int:
        return self.model.net.latent_dim

    @property
    def samples_per_token(self) -> float:
        return self.config.block_size / self.tokens_per_block

    def decode(self, ids: np.ndarray, state: dict | None = None) -> np.ndarray:
        """Ids -> signal. With ``state`` (from :meth:`encode`): mV, cut to the encoded length.

        With ``state=None``: the **normalized [0, 1]** signal of whole windows, since the per-window
        min/max needed for millivolts is side information the ids do not carry.
        """
        return super().decode(ids, state)

    @torch.inference_mode()
    def _encode(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        n = len(x)
        windows = pad_to_windows(x, self.config.window).reshape(-1, self.config.window)
        norm, lo, hi = minmax_normalize(windows)
        blocks = torch.from_numpy(to_blocks(norm, self.config.block_size))  # (B, 1, n)
        ids = []
        for chunk in blocks.split(65536):
            z = self.model.net.encode(chunk)  # (b, D)
            ids.append(self.model.quantizer.quantize(z))
        state = {"window_min": lo.astype(np.float32), "window_max": hi.astype(np.float32), "n_samples": n}
        return torch.cat(ids).reshape(-1).numpy(), state

    @torch.inference_mode()
    def _decode(self, ids: np.ndarray, state: dict | None) -> np.ndarray:
        per_window = (self.config.window // self.config.block_size) * self.tokens_per_block
        if len(ids) % per_window:
            raise TokenizerError(
                f"seed tokenizer decodes whole windows: got {len(ids)} ids, not a multiple of {per_window} "
                f"(= {self.config.window} samples / {self.config.block_size} per block x {self.tokens_per_block})"
            )
        q = torch.from_numpy(ids).reshape(-1, self.tokens_per_block)  # (B, D)
        out = []
        for chunk in q.split(65536):
            out.append(self.model.net.decode(self.model.quantizer.dequantize(chunk)))  # (b, 1, n)
        norm = torch.cat(out).reshape(-1, self.config.window).numpy()  # (W, window)
        if state is None:
            return norm.reshape(-1)
        lo, hi = np.asarray(state["window_min"]), np.asarray(state["window_max"])
        if len(lo) != len(norm):
            raise TokenizerError(f"state holds {len(lo)} windows but the ids encode {len(norm)}")
        x = minmax_denormalize(norm, lo, hi).reshape(-1)
        return x[: int(state.get("n_samples", len(x)))]
