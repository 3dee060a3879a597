"""Finite scalar quantization (FSQ; Mentzer et al., "Finite Scalar Quantization: VQ-VAE Made Simple",
ICLR 2024, arXiv:2309.15505).

Each of the ``d = len(levels)`` latent channels is squashed into a bounded range and rounded to one of
``levels[i]`` values; the vocabulary is the product of the levels (every combination is a code, there is
no codebook to learn and none can collapse). Rounding passes its gradient straight through (Sec. 2).

Layout of an index: channel 0 is the least significant digit of a mixed-radix number,
``index = sum_i digit_i * prod(levels[:i])`` with ``digit_i in [0, levels[i])``, so
:meth:`FSQ.indices_to_codes` and :meth:`FSQ.codes_to_indices` are exact inverses on the grid.

Tensors are channels-last: latents ``(..., d)`` with the ``d = len(levels)`` channels in the last
dimension, indices ``(...)``.

Quantization always runs in fp32 with autocast off: ``round`` on bf16 values would move codes across
grid points (bf16 has 8 mantissa bits), silently changing token ids under mixed precision.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class FSQ(nn.Module):
    """Finite scalar quantizer over the channel dimension.

    Parameters
    ----------
    levels : sequence of int
        Number of values of each latent channel (each >= 2). Vocabulary = product of levels;
        the paper's recommendations (Table 1) are [8, 6, 5] (240), [8, 5, 5, 5] (1000),
        [7, 5, 5, 5, 5] (4375); [8, 8, 8, 8] gives exactly 4096.
    eps : float
        Margin that keeps ``tanh`` away from its asymptotes so the extreme levels are reachable (the
        paper's reference implementation uses 1e-3).

    Shapes
    ------
    forward: ``(..., d)`` float -> codes ``(..., d)`` in [-1, 1] and indices ``(...)`` int64.

    Examples
    --------
    >>> q = FSQ([8, 5, 5, 5])
    >>> q.vocab_size
    1000
    >>> idx = torch.arange(1000)
    >>> bool((q.codes_to_indices(q.indices_to_codes(idx)) == idx).all())
    True
    """

    def __init__(self, levels: Sequence[int], eps: float = 1e-3):
        super().__init__()
        levels = [int(v) for v in levels]
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must be a non-empty list of integers >= 2, got {levels}")
        self.levels = levels
        self.eps = float(eps)
        basis = [1]
        for v in levels[:-1]:
            basis.append(basis[-1] * v)
        # Derived tables, not weights: never saved (persistent=False) so checkpoints hold only what trains.
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.int64), persistent=False)
        self.register_buffer("_basis", torch.tensor(basis, dtype=torch.int64), persistent=False)
        lv = torch.tensor(levels, dtype=torch.float32)
        half_l = (lv - 1) * (1 + self.eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        self.register_buffer("_half_l", half_l, persistent=False)
        self.register_buffer("_offset", offset, persistent=False)
        self.register_buffer("_shift", torch.atanh(offset / half_l), persistent=False)
        self.register_buffer("_half_width", (lv // 2), persistent=False)

    @property
    def dim(self) -> int:
        """Latent channels quantized per token (``len(levels)``)."""
        return len(self.levels)

    @property
    def vocab_size(self) -> int:
        return int(math.prod(self.levels))

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash ``(..., d)`` into ``(-L/2, L/2)`` per channel so rounding reaches exactly L values.

        Odd L: ``tanh(z) * (L-1)/2`` rounds to ``-(L-1)/2 .. (L-1)/2``. Even L: shifted by one half so
        it rounds to ``-L/2 .. L/2 - 1`` (the reference implementation's offset/shift).
        """
        return torch.tanh(z + self._shift) * self._half_l - self._offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Round to the grid with a straight-through gradient; codes normalized to [-1, 1]. ``(..., d)``."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            b = self.bound(z.float())
            q = b + (torch.round(b) - b).detach()  # straight-through estimator
            return q / self._half_width

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """``(..., d)`` codes in [-1, 1] on the grid -> ``(...)`` int64 indices in ``[0, vocab_size)``."""
        if codes.shape[-1] != self.dim:
            raise ValueError(f"codes must end in {self.dim} channels, got shape {tuple(codes.shape)}")
        hw = self._half_width
        digits = torch.round(codes.float() * hw + hw).to(torch.int64)  # (..., d)
        return (digits * self._basis).sum(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(...)`` int64 indices in ``[0, vocab_size)`` -> codes ``(..., d)`` fp32 in [-1, 1]."""
        digits = (indices.to(torch.int64).unsqueeze(-1) // self._basis) % self._levels  # (..., d)
        return (digits.float() - self._half_width) / self._half_width  # (..., d)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(..., d)`` -> (codes ``(..., d)`` fp32 with straight-through gradient, indices ``(...)``)."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"FSQ expects latents ending in {self.dim} channels, got {tuple(z.shape)}")
        codes = self.quantize(z)
        with torch.no_grad():
            idx = self.codes_to_indices(codes)
        return codes, idx

    def extra_repr(self) -> str:
        return f"levels={self.levels}, vocab_size={self.vocab_size}"
