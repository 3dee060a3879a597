"""The contextual FSQ tokenizer: one token per ``n`` samples, millivolts back from the tokens alone.

.. code-block:: python

    from ecg2llm.tokenizer import ECGTokenizer
    tok = ECGTokenizer.from_pretrained("default")      # this type, trained on DS1
    ids, state = tok.encode(signal_mv, fs=360)         # ceil(len / n) ids in [0, tok.vocab_size)
    x_mv = tok.decode(ids)                             # len(ids) * n samples, mV, no side information
    x_mv = tok.decode(ids, state)                      # the same, cut to the encoded length

Normalization is absolute: the network sees ``x_mv / scale_mv`` with a fixed ``scale_mv`` (1 mV by
default) and nothing estimated from the signal - no per-window min-max, no mean removal - so ids map to
millivolts by themselves and a language model that generates ids alone gets physical units back. Baseline
wander is part of the signal the model codes: it is slow (< 1 Hz, below the token rate's 18 Hz Nyquist),
so the contextual encoder spends few bits on it; training adds random DC offsets and slow ramps
(``aug_offset_mv``) so that levels outside the training records' range still decode (see the model card).

The ``state`` returned by :meth:`encode` is only ``{"n_samples": len(x)}``, to cut the last token's
padding; it carries no information about the signal.

Edges: the signal is padded at both ends by edge replication (``reach`` tokens, the receptive field);
long signals are processed in overlapping windows whose overlap equals the receptive field, so chunked
and one-shot processing agree (see :mod:`ecg2llm.tokenizer.models.contextual`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from einops import rearrange
from torch import nn

from ecg2llm.core.errors import TokenizerError

from .base import ECGTokenizer, register_tokenizer
from .fsq import FSQ
from .models.contextual import ContextualDecoder, ContextualEncoder, chunked_apply


@dataclass
class FSQTokenizerConfig:
    """Config of :class:`FSQTokenizer` (architecture and fixed normalization; inference chunking)."""

    fs: float = 360.0
    samples_per_token: int = 10
    levels: list[int] = field(default_factory=lambda: [8, 8, 8, 8])
    channels: int = 48
    enc_dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    dec_dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    kernel: int = 3
    activation: str = "gelu"
    scale_mv: float = 1.0  # fixed divisor: the network sees x_mv / scale_mv (absolute, never per-signal)
    chunk_tokens: int = 512  # inference: output tokens per window (does not change results)
    batch_chunks: int = 8  # inference: windows per forward call (memory / cache, not results)

    def __post_init__(self):
        if int(self.samples_per_token) < 1:
            raise TokenizerError(f"samples_per_token must be >= 1, got {self.samples_per_token}")
        if not self.levels or min(int(v) for v in self.levels) < 2:
            raise TokenizerError(f"levels must be integers >= 2 (FSQ levels per latent channel), got {self.levels}")
        if not self.scale_mv > 0:
            raise TokenizerError(f"scale_mv must be positive, got {self.scale_mv}")
        if self.chunk_tokens < 1 or self.batch_chunks < 1:
            raise TokenizerError("chunk_tokens and batch_chunks must be >= 1")


class FSQAutoencoder(nn.Module):
    """Encoder -> FSQ -> decoder on channels-last patches (see :mod:`ecg2llm.tokenizer.models.contextual`)."""

    def __init__(self, cfg: FSQTokenizerConfig):
        super().__init__()
        n = int(cfg.samples_per_token)
        self.n = n
        self.fsq = FSQ(cfg.levels)
        self.encoder = ContextualEncoder(n, cfg.channels, self.fsq.dim, cfg.enc_dilations, cfg.kernel, cfg.activation)
        self.decoder = ContextualDecoder(n, cfg.channels, self.fsq.dim, cfg.dec_dilations, cfg.kernel, cfg.activation)

    @property
    def reach(self) -> int:
        """Input tokens needed on each side of an output token, encoder and decoder together."""
        return self.encoder.reach + self.decoder.reach

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: ``(B, L + 2 * reach, n)`` scaled samples -> ``(B, L, n)`` reconstruction and ids
        ``(B, L + 2 r_dec)``.

        The reconstruction covers the central ``L`` tokens; compare it with
        ``patches[:, reach : reach + L]``. The FSQ runs in fp32 (autocast off) with a straight-through gradient.
        """
        z = self.encoder(patches)  # (B, L + 2 r_dec, d)
        codes, ids = self.fsq(z)  # (B, L + 2 r_dec, d), (B, L + 2 r_dec)
        return self.decoder(codes), ids  # (B, L, n)


class FSQModelTokenizer(ECGTokenizer):
    """What every FSQ tokenizer shares: a torch ``model`` built from the config, ``prod(levels)`` codes,
    ``samples_per_token`` samples per code, and moving between devices (numpy in and out either way)."""

    model_class: type[nn.Module]

    def __init__(self, config):
        super().__init__(config)
        self.model = self.model_class(config).eval()

    @property
    def vocab_size(self) -> int:
        return int(math.prod(int(v) for v in self.config.levels))

    @property
    def samples_per_token(self) -> float:
        return float(self.config.samples_per_token)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device):
        """Move the model (e.g. ``"cuda"``); encode/decode keep numpy in and out."""
        self.model.to(device)
        return self


@register_tokenizer("fsq")
class FSQTokenizer(FSQModelTokenizer):
    """Contextual convolutional autoencoder with a finite scalar quantizer (see module docstring)."""

    config_class = FSQTokenizerConfig
    model_class = FSQAutoencoder

    def decode(self, ids: np.ndarray, state: dict | None = None) -> np.ndarray:
        """Ids -> signal in mV. ``state=None`` gives ``len(ids) * n`` samples; with the ``state`` of
        :meth:`encode` the padding of the last token is cut off (``n_samples`` samples)."""
        return super().decode(ids, state)

    # ----------------------------------------------------------------- hooks
    @torch.inference_mode()
    def _encode(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        n, m = self.model.n, self.model.encoder.reach
        n_tok = -(-len(x) // n)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device) / self.config.scale_mv
        # Pad the end to whole tokens, then m tokens of edge replication on each side (the receptive field).
        xt = torch.cat([xt[:1].expand(m * n), xt, xt[-1:].expand((n_tok + m) * n - len(x))])  # ((L + 2m) n,)
        patches = rearrange(xt, "(l n) -> l n", n=n)  # (L + 2m, n)
        fsq, enc = self.model.fsq, self.model.encoder

        def fn(w: torch.Tensor) -> torch.Tensor:
            return fsq.codes_to_indices(fsq.quantize(enc(w)))  # (B, W)

        ids = chunked_apply(fn, patches, m, self.config.chunk_tokens, self.config.batch_chunks)  # (L,)
        return ids.cpu().numpy(), {"n_samples": int(len(x))}

    @torch.inference_mode()
    def _decode(self, ids: np.ndarray, state: dict | None) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros(0, dtype=np.float32)
        m = self.model.decoder.reach
        idx = torch.from_numpy(ids).to(self.device)
        codes = self.model.fsq.indices_to_codes(idx)  # (L, d)
        codes = torch.cat([codes[:1].expand(m, -1), codes, codes[-1:].expand(m, -1)])  # (L + 2m, d)
        y = chunked_apply(self.model.decoder, codes, m, self.config.chunk_tokens, self.config.batch_chunks)  # (L, n)
        x = (y.reshape(-1) * self.config.scale_mv).float().cpu().numpy()
        if state is not None and "n_samples" in state:
            n_samples = int(state["n_samples"])
            if not 0 < n_samples <= len(x):
                raise TokenizerError(
                    f"state says {n_samples} samples but {len(ids)} ids decode to {len(x)}; is the state "
                    f"from another signal?"
                )
            x = x[:n_samples]
        return x
