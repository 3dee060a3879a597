"""Contextual convolutional encoder/decoder: one latent vector per ``n`` samples, seamless over any length.

All layers run at the token rate ``fs / n`` on channels-last tensors ``(B, L, C)``; the samples of a
token are its ``n`` input channels (a "patch"). Encoder::

    patches (B, L_in, n)                       # L_in = L + 2 * reach tokens of samples / scale_mv
    stem   TokenConv(n -> C, k=3)               # = Conv1d(1 -> C, kernel 3n, stride n): early downsampling
    blocks h[d:-d] + W1x1(act(TokenConv_k,d(act(h))))   for d in enc_dilations
    out    Linear(C -> len(levels))             # (B, L, d_latent), then FSQ

Decoder (mirror)::

    codes (B, L_in, d_latent)
    inp    TokenConv(d_latent -> C, k=3)
    blocks (dec_dilations)
    head   TokenConv(C -> n, k=3)               # = ConvTranspose1d(C -> 1, kernel 3n, stride n):
                                                #   each token's samples mix 3 neighbouring tokens
    samples (B, L, n)                           # reshape -> (B, L * n)

Every convolution is *valid* (no padding): a layer of kernel k and dilation d shortens the sequence by
``(k - 1) * d``, so the network maps ``L + 2 * reach`` tokens to the ``L`` central ones and never sees a
zero pad. That makes seamlessness structural: the output for a token depends only on the ``reach``
tokens on each side of it, so cutting a long signal into windows that overlap by ``reach`` tokens on
each side (:func:`chunked_apply`) gives the same result as one pass over the whole signal. The only
padding is the tokenizer's explicit edge replication at the two ends of a signal.

Why matmuls instead of ``nn.Conv1d``: at 32-96 channels the oneDNN convolution path spends most of its
time reordering memory; a k-tap dilated convolution written as one ``(B*L, C_in) @ (C_in, k*C_out)``
matmul followed by a shifted sum runs ~3-4x faster on CPU (measured with the tokenizer benchmark, now
``scripts/bench.py --stages tokenizer``) and is the same function.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu, "relu": F.relu, "silu": F.silu,
}


class TokenConv(nn.Module):
    """Valid 1-D convolution over the token axis of a channels-last tensor.

    ``(B, L, c_in) -> (B, L - (k - 1) * d, c_out)`` with
    ``y[t] = b + sum_j x[t + j*d] @ W_j`` (``W_j`` is ``(c_in, c_out)``), computed as one matmul into
    ``k * c_out`` channels and a sum of ``k`` shifted slices.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, dilation: int = 1):
        super().__init__()
        self.c_in, self.c_out, self.kernel, self.dilation = int(c_in), int(c_out), int(kernel), int(dilation)
        self.weight = nn.Parameter(torch.empty(self.c_in, self.kernel * self.c_out))
        self.bias = nn.Parameter(torch.zeros(self.c_out))
        # nn.Conv1d's default init: uniform(+-1/sqrt(fan_in)) with fan_in = c_in * kernel.
        bound = 1.0 / math.sqrt(self.c_in * self.kernel)
        nn.init.uniform_(self.weight, -bound, bound)

    @property
    def shrink(self) -> int:
        """Tokens lost in total (half on each side)."""
        return (self.kernel - 1) * self.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo = x.shape[1] - self.shrink
        if lo <= 0:
            raise ValueError(f"sequence of {x.shape[1]} tokens is shorter than the kernel's span {self.shrink + 1}")
        c, d = self.c_out, self.dilation
        if not torch.is_grad_enabled():
            return self._forward_inference(x, lo)
        z = x @ self.weight  # (B, L, k * c_out)
        y = z[:, 0:lo, 0:c] + self.bias  # (B, lo, c_out)
        for j in range(1, self.kernel):
            y = y + z[:, j * d : j * d + lo, j * c : (j + 1) * c]
        return y

    def _forward_inference(self, x: torch.Tensor, lo: int) -> torch.Tensor:
        """:meth:`forward` without autograd: the same sums in the same order, added in place (bit-identical;
        accumulating each tap with ``baddbmm_`` instead measured no faster and is not bit-identical)."""
        c, d = self.c_out, self.dilation
        z = x @ self.weight  # (B, L, k * c_out)
        y = z[:, 0:lo, 0:c] + self.bias  # (B, lo, c_out), a new tensor
        for j in range(1, self.kernel):
            y += z[:, j * d : j * d + lo, j * c : (j + 1) * c]
        return y

    def extra_repr(self) -> str:
        return f"{self.c_in}, {self.c_out}, kernel={self.kernel}, dilation={self.dilation}"


class ResBlock(nn.Module):
    """``x[r:-r] + W1x1(act(TokenConv_k,d(act(x))))``; ``(B, L, C) -> (B, L - 2r, C)``, ``r = d(k-1)/2``."""

    def __init__(self, channels: int, kernel: int, dilation: int, act: str):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd so the block stays centred, got {kernel}")
        self.act = ACTIVATIONS[act]
        self.conv = TokenConv(channels, channels, kernel, dilation)
        self.proj = nn.Linear(channels, channels)
        # Zero-init the residual branch: a deep stack starts as the identity (stable early training).
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.reach = self.conv.shrink // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reach
        h = self.proj(self.act(self.conv(self.act(x))))  # (B, L - 2r, C)
        if not torch.is_grad_enabled():
            return h.add_(x[:, r : x.shape[1] - r])  # inference: in place (h + x == x + h exactly)
        return x[:, r : x.shape[1] - r] + h


def _check_act(act: str) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {act!r}")


class ContextualEncoder(nn.Module):
    """Patches ``(B, L + 2 * reach, n)`` -> latents ``(B, L, d_latent)``."""

    def __init__(self, n: int, channels: int, d_latent: int, dilations: Sequence[int], kernel: int = 3,
                 act: str = "gelu"):
        super().__init__()
        _check_act(act)
        self.act = ACTIVATIONS[act]
        self.stem = TokenConv(n, channels, 3, 1)
        self.blocks = nn.Sequential(*[ResBlock(channels, kernel, int(d), act) for d in dilations])
        self.out = nn.Linear(channels, d_latent)
        self.reach = 1 + sum(b.reach for b in self.blocks)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(patches))  # (B, L, C)
        return self.out(self.act(h))  # (B, L, d)


class ContextualDecoder(nn.Module):
    """Codes ``(B, L + 2 * reach, d_latent)`` -> samples ``(B, L, n)`` (reshape to ``(B, L * n)``)."""

    def __init__(self, n: int, channels: int, d_latent: int, dilations: Sequence[int], kernel: int = 3,
                 act: str = "gelu"):
        super().__init__()
        _check_act(act)
        self.act = ACTIVATIONS[act]
        self.inp = TokenConv(d_latent, channels, 3, 1)
        self.blocks = nn.Sequential(*[ResBlock(channels, kernel, int(d), act) for d in dilations])
        self.head = TokenConv(channels, n, 3, 1)
        self.reach = 1 + sum(b.reach for b in self.blocks) + 1

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.inp(codes))  # (B, L + 2, C)
        return self.head(self.act(h))  # (B, L, n)


def chunked_apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, margin: int, chunk: int,
                  batch_chunks: int = 16) -> torch.Tensor:
    """Run a valid, token-wise convolutional ``fn`` over a long sequence in overlapping windows.

    Parameters
    ----------
    fn : callable
        ``(B, W + 2 * margin, c_in) -> (B, W, *rest)``: a function whose output for token ``t`` depends only
        on input tokens ``t - margin .. t + margin`` (the encoder or decoder above).
    x : torch.Tensor
        ``(L + 2 * margin, c_in)``: the whole sequence, already padded by ``margin`` tokens on each side.
    margin : int
        Overlap kept on each side of a window (the function's reach).
    chunk : int
        Output tokens per window.
    batch_chunks : int
        Windows per call of ``fn`` (bounds memory; small batches keep activations in cache).

    Returns
    -------
    torch.Tensor
        ``(L, *rest)``: equal to ``fn(x[None])[0]`` up to float rounding, whatever ``chunk`` is.
    """
    total, c_in = x.shape
    n_tok = total - 2 * margin
    if n_tok <= 0:
        raise ValueError(f"sequence of {total} tokens is not longer than its two margins of {margin}")
    n_chunks = -(-n_tok // chunk)
    tail = n_chunks * chunk - n_tok
    if tail:  # repeat the last token so every window has the same length; those outputs are cut below
        x = torch.cat([x, x[-1:].expand(tail, c_in)])
    windows = x.unfold(0, chunk + 2 * margin, chunk).transpose(1, 2)  # (N, chunk + 2m, c_in), a view
    outs = [fn(windows[i : i + batch_chunks].contiguous()) for i in range(0, n_chunks, batch_chunks)]
    y = torch.cat(outs)  # (N, chunk, *rest)
    return rearrange(y, "k c ... -> (k c) ...")[:n_tok]  # (n_tok, *rest)
