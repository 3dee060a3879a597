"""The seed report's uniform scalar quantizer (after Chronos, Ansari et al. 2024, Sec. 3.1).

Exactly the report's formulas, fixed (non-trainable) and applied in fp32::

    bin_width = (max_val - min_val) / num_bins
    q = floor((x - min_val) / bin_width).clamp(0, num_bins - 1)       # int64 token
    x_hat = min_val + bin_width * (q + 0.5)                            # bin centre

with ``num_bins = 256`` on ``[-5, 5]`` by default (the report's arbitrary choice). Training passes the
gradient straight through (``x + (x_hat - x).detach()``).
"""
from __future__ import annotations

import torch
from torch import nn


class UniformQuantizer(nn.Module):
    """Quantize to ``num_bins`` uniform bins on ``[min_val, max_val]`` and back to bin centres.

    Parameters
    ----------
    num_bins : int
        Number of bins (= vocabulary size of the tokens it emits).
    min_val, max_val : float
        Range covered by the bins; values outside are clamped into the first/last bin.

    Examples
    --------
    >>> q = UniformQuantizer(256, -5.0, 5.0)
    >>> q.quantize(torch.tensor([-5.0, 0.0, 4.99, 9.0])).tolist()
    [0, 128, 255, 255]
    """

    def __init__(self, num_bins: int = 256, min_val: float = -5.0, max_val: float = 5.0):
        super().__init__()
        if num_bins < 2 or not max_val > min_val:
            raise ValueError(f"need num_bins >= 2 and max_val > min_val, got {num_bins}, [{min_val}, {max_val}]")
        self.num_bins = int(num_bins)
        self.min_val = float(min_val)
        self.max_val = float(max_val)

    @property
    def bin_width(self) -> float:
        return (self.max_val - self.min_val) / self.num_bins

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Float values -> int64 bin indices in ``[0, num_bins)``."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            q = torch.floor((x.float() - self.min_val) / self.bin_width)
            return q.clamp(0, self.num_bins - 1).to(torch.int64)

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        """Bin indices -> bin centres (fp32)."""
        return self.min_val + self.bin_width * (q.float() + 0.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(x_hat, indices)``; ``x_hat`` carries a straight-through gradient to ``x``."""
        q = self.quantize(x)
        x_hat = self.dequantize(q).to(x.dtype)
        return x + (x_hat - x).detach(), q

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, range=[{self.min_val}, {self.max_val}]"
