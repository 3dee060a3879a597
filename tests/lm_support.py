"""Test-only helpers for the LM tests: a stateless toy tokenizer and small token stores.

``UniformBlockTokenizer`` ("test_uniform") quantizes the mean of each block of 10 samples uniformly over
[-2, 2] mV into 64 levels; ``decode(ids, None)`` returns millivolts (each block's level repeated), so the
generation path can be tested without the trained FSQ tokenizer. It is registered only in the test
process, never in the package.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ecg2llm.tokenizer.base import ECGTokenizer, register_tokenizer


@dataclass
class UniformBlockConfig:
    block: int = 10
    levels: int = 64
    lo: float = -2.0
    hi: float = 2.0
    fs: float = 360.0


class _Levels(torch.nn.Module):
    def __init__(self, cfg: UniformBlockConfig):
        super().__init__()
        step = (cfg.hi - cfg.lo) / cfg.levels
        self.register_buffer("centres", torch.linspace(cfg.lo + step / 2, cfg.hi - step / 2, cfg.levels))


@register_tokenizer("test_uniform")
class UniformBlockTokenizer(ECGTokenizer):
    config_class = UniformBlockConfig

    def __init__(self, config: UniformBlockConfig):
        super().__init__(config)
        self.model = _Levels(config)

    @property
    def vocab_size(self) -> int:
        return self.config.levels

    @property
    def samples_per_token(self) -> float:
        return float(self.config.block)

    def _encode(self, x):
        c = self.config
        n = len(x) // c.block * c.block
        means = x[:n].reshape(-1, c.block).mean(1)
        q = np.floor((means - c.lo) / (c.hi - c.lo) * c.levels)
        return np.clip(q, 0, c.levels - 1).astype(np.int64), None

    def _decode(self, ids, state):
        centres = self.model.centres.numpy()
        return np.repeat(centres[ids], self.config.block)


def seed_tokenizer_dir(path: Path) -> Path:
    """A seed tokenizer with random weights but informative tokens (narrow latent range), saved to ``path``."""
    from ecg2llm.tokenizer import SeedTokenizer, SeedTokenizerConfig

    torch.manual_seed(0)
    SeedTokenizer(SeedTokenizerConfig(min_val=-0.05, max_val=0.05)).save_pretrained(path)
    return path


def build_test_store(out: Path, tok_dir: Path, data_root: Path, records) -> Path:
    """Tokenize ``records`` of ``data_root/mitdb`` with the tokenizer at ``tok_dir`` into ``out``."""
    from ecg2llm.tokenizer.build_store import TokenizeConfig, build_store

    build_store(TokenizeConfig(out=str(out), tokenizer=str(tok_dir), data_dir=str(data_root),
                               records=[str(r) for r in records], download=False), progress=False)
    return out


def random_v2_lm(counts: dict, context: int = 48, codebook: int = 64, seed: int = 0):
    """A randomly initialized conditional LM v2 (2 layers, d 32) over ``codebook`` codes, in eval mode.

    Sampling invariants (guidance, grammars, the KV decoder) need no training; ``counts`` are the
    control-token counts its spec records (untrained tokens are never sampled).
    """
    from ecg2llm.lm.control import ControlSpec

    spec = ControlSpec(first_id=codebook + 3, conditional=True, condition_dropout=0.1, counts=dict(counts))
    return random_lm(context, codebook, seed, spec)


def random_lm(context: int = 48, codebook: int = 64, seed: int = 0, spec=None):
    """A randomly initialized LM (2 layers, d 32) over ``codebook`` codes, in eval mode; without control tokens
    unless ``spec`` (``configs/lm/tiny.yaml``'s kind). Its tokenizer record matches :class:`UniformBlockTokenizer`."""
    from ecg2llm.lm.config import LMTrainConfig
    from ecg2llm.lm.model import build_model

    cfg = LMTrainConfig(n_layer=2, n_head=2, d_model=32, context_length=context)
    rec = {"codebook_size": codebook, "config": {}, "weights_hash": "x", "fs": 360.0, "samples_per_token": 10.0,
           "tokens_per_second": 36.0, "needs_state": False}
    torch.manual_seed(seed)
    return build_model(cfg, rec, spec).eval()
