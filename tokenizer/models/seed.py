"""``DimReduction``: the seed report's convolutional autoencoder (Table 1), for any block size n.

Encoder (input ``(B, 1, n)``, one block of a [0, 1]-normalized 250-sample window)::

    Conv1d(1->8, k3, p1) + BN + ReLU -> Conv1d(8->16) + BN + ReLU -> Conv1d(16->32) + BN + ReLU
    -> AdaptiveAvgPool1d(1)                                                       # (B, 32, 1)

Decoder::

    ConvTranspose1d(32->16, k3, p1) + BN + ReLU -> Upsample(x3)                   # (B, 16, 3)
    -> ConvTranspose1d(16->8) + BN + ReLU -> Upsample(size=n)                     # (B, 8, n)
    -> ConvTranspose1d(8->1) + Sigmoid                                            # (B, 1, n)

Table 1 lists ``Upsample(3)`` then ``Upsample(n)`` for n = 5; applied literally as scale factors that
would give 3n samples, so the second one is ``Upsample(size=n)`` (nearest), which yields n samples for
every block size and equals the report's shapes where those are consistent.

Two readings of the latent (SEED-NOTES):

* ``table1`` - the pooled ``(B, 32, 1)`` tensor is the latent: 32 values (tokens) per block.
* ``scalar`` - the text's "one float per block": a 1x1 convolution maps the pooled 32 channels to one
  value, and a 1x1 transposed convolution maps it back to 32 channels before the Table 1 decoder. These
  two 1x1 layers are the smallest addition that makes the text's reading runnable; the report names none.
"""
from __future__ import annotations

import torch
from torch import nn

LATENT_READINGS = ("scalar", "table1")


def _block(conv: nn.Module, ch: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm1d(ch), nn.ReLU(inplace=True)]


class DimReduction(nn.Module):
    """The seed autoencoder for blocks of ``block_size`` samples.

    Parameters
    ----------
    block_size : int
        Samples per block ``n`` (the report: 250, 125, 50, 25, 10, 5, 2).
    latent : {"scalar", "table1"}
        Reading of the latent: 1 value per block, or the 32 pooled channels.
    """

    def __init__(self, block_size: int = 10, latent: str = "scalar"):
        super().__init__()
        if latent not in LATENT_READINGS:
            raise ValueError(f"latent must be one of {LATENT_READINGS}, got {latent!r}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.block_size = int(block_size)
        self.latent = latent
        self.encoder = nn.Sequential(
            *_block(nn.Conv1d(1, 8, 3, padding=1), 8),
            *_block(nn.Conv1d(8, 16, 3, padding=1), 16),
            *_block(nn.Conv1d(16, 32, 3, padding=1), 32),
            nn.AdaptiveAvgPool1d(1),
        )
        self.to_scalar = nn.Conv1d(32, 1, 1) if latent == "scalar" else nn.Identity()
        self.from_scalar = nn.ConvTranspose1d(1, 32, 1) if latent == "scalar" else nn.Identity()
        self.decoder = nn.Sequential(
            *_block(nn.ConvTranspose1d(32, 16, 3, padding=1), 16),
            nn.Upsample(scale_factor=3, mode="nearest"),
            *_block(nn.ConvTranspose1d(16, 8, 3, padding=1), 8),
            nn.Upsample(size=self.block_size, mode="nearest"),
            nn.ConvTranspose1d(8, 1, 3, padding=1),
            nn.Sigmoid(),
        )

    @property
    def latent_dim(self) -> int:
        """Values (tokens) per block: 1 for ``scalar``, 32 for ``table1``."""
        return 1 if self.latent == "scalar" else 32

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, n)`` -> latent ``(B, latent_dim)``."""
        h = self.encoder(x)  # (B, 32, 1)
        return self.to_scalar(h).flatten(1)  # (B, D)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """latent ``(B, latent_dim)`` -> ``(B, 1, n)`` in [0, 1]."""
        h = self.from_scalar(z.unsqueeze(-1))  # (B, 32, 1)
        return self.decoder(h)  # (B, 1, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
