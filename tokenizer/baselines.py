"""Non-learned baseline tokenizers, one token per ``n`` samples, for the rate-distortion study.

All three share one front end, so they differ only in how a value becomes a token:

* decimation: anti-aliased polyphase decimation by ``n`` (``scipy.signal.resample_poly``, Kaiser FIR),
  one value per ``n`` samples; decoding interpolates back with the same polyphase filter (band-limited
  interpolation, better than linear at every rate we tried);
* ``decimate_uniform``: the value in mV, ``num_bins`` uniform bins on ``[-range_mv, range_mv]`` (the seed's
  quantizer formula, absolute units: ``decode(ids, None)`` gives mV);
* ``decimate_mulaw``: the value companded by mu-law (ITU-T G.711, ``mu = 255``) over ``range_mv`` before
  uniform bins, so small amplitudes (P and T waves, the isoelectric line) get finer steps than R peaks;
  absolute units;
* ``chronos_meanscale``: Chronos' tokenization (Ansari et al. 2024, Sec. 3.1) at the same token rate:
  each context of ``context_tokens`` values is divided by its mean absolute value, then ``num_bins``
  uniform bins on ``[-15, 15]`` (Chronos' limits). The per-context scale is side information: it
  travels in ``state`` and is counted in :meth:`side_info_bits_per_second` (16 bits per context);
  ``decode(ids, None)`` raises because the ids alone do not give mV.

Every one has an empty state dict (nothing is trained); they are registered tokenizer types so the
harness (``ecg2llm.tokenizer.evaluation.evaluate_tokenizer``) treats them exactly like the learned ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ecg2llm.core.errors import TokenizerError

from .base import ECGTokenizer, register_tokenizer

CHRONOS_LIMIT = 15.0  # Chronos' bin range [-15, 15] on mean-scaled values (Ansari et al. 2024, Sec. 3.1)


def decimate(x: np.ndarray, n: int) -> np.ndarray:
    """Anti-aliased decimation by ``n``: ``ceil(len(x) / n)`` values (``resample_poly``, line padding)."""
    from scipy.signal import resample_poly

    if n == 1:
        return np.asarray(x, dtype=np.float64)
    return resample_poly(np.asarray(x, dtype=np.float64), 1, n, padtype="line")


def interpolate(v: np.ndarray, n: int) -> np.ndarray:
    """Band-limited interpolation by ``n`` (the inverse of :func:`decimate`): ``len(v) * n`` samples."""
    from scipy.signal import resample_poly

    if n == 1:
        return np.asarray(v, dtype=np.float64)
    return resample_poly(np.asarray(v, dtype=np.float64), n, 1, padtype="line")


def uniform_quantize(v: np.ndarray, num_bins: int, lo: float, hi: float) -> np.ndarray:
    """The seed's formula: ``floor((v - lo) / w)`` clamped to ``[0, num_bins)``, ``w = (hi - lo) / num_bins``."""
    w = (hi - lo) / num_bins
    return np.clip(np.floor((v - lo) / w), 0, num_bins - 1).astype(np.int64)


def uniform_dequantize(q: np.ndarray, num_bins: int, lo: float, hi: float) -> np.ndarray:
    """Bin centres ``lo + w * (q + 0.5)``."""
    w = (hi - lo) / num_bins
    return lo + w * (np.asarray(q, dtype=np.float64) + 0.5)


def _check_common(fs: float, n: int, num_bins: int) -> None:
    if not fs > 0:
        raise TokenizerError(f"fs must be positive, got {fs}")
    if int(n) < 1:
        raise TokenizerError(f"samples_per_token must be >= 1, got {n}")
    if int(num_bins) < 2:
        raise TokenizerError(f"num_bins must be >= 2, got {num_bins}")


class _DecimatingTokenizer(ECGTokenizer):
    """Shared front end: decimate -> value quantizer -> ids; ids -> values -> interpolate."""

    def __init__(self, config):
        super().__init__(config)
        import torch

        self.model = torch.nn.Module()  # nothing to learn: empty state dict

    @property
    def vocab_size(self) -> int:
        return int(self.config.num_bins)

    @property
    def samples_per_token(self) -> float:
        return float(self.config.samples_per_token)

    @property
    def side_info_bits_per_second(self) -> float:
        """Bits per second needed besides the ids (0: the ids alone give mV)."""
        return 0.0

    def _to_ids(self, v: np.ndarray) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def _from_ids(self, ids: np.ndarray, state: dict | None) -> np.ndarray:
        raise NotImplementedError

    def _encode(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        n = int(self.config.samples_per_token)
        ids, state = self._to_ids(decimate(x, n))
        return ids, {**state, "n_samples": int(len(x))}

    def _decode(self, ids: np.ndarray, state: dict | None) -> np.ndarray:
        x = interpolate(self._from_ids(ids, state), int(self.config.samples_per_token))
        if state is not None and "n_samples" in state:
            x = x[: int(state["n_samples"])]
        return x.astype(np.float32)


@dataclass
class DecimateUniformConfig:
    """Config of ``decimate_uniform``: decimation by ``samples_per_token``, uniform bins in mV."""

    fs: float = 360.0
    samples_per_token: int = 10
    num_bins: int = 256
    range_mv: float = 5.0  # bins cover [-range_mv, range_mv]; MIT-BIH MLII stays within +-5 mV

    def __post_init__(self):
        _check_common(self.fs, self.samples_per_token, self.num_bins)
        if not self.range_mv > 0:
            raise TokenizerError(f"range_mv must be positive, got {self.range_mv}")


@register_tokenizer("decimate_uniform")
class DecimateUniformTokenizer(_DecimatingTokenizer):
    """Decimation + uniform quantization in absolute mV + band-limited interpolation."""

    config_class = DecimateUniformConfig

    def _to_ids(self, v):
        c = self.config
        return uniform_quantize(v, c.num_bins, -c.range_mv, c.range_mv), {}

    def _from_ids(self, ids, state):
        c = self.config
        return uniform_dequantize(ids, c.num_bins, -c.range_mv, c.range_mv)


@dataclass
class DecimateMuLawConfig:
    """Config of ``decimate_mulaw``: decimation, mu-law companding over ``range_mv``, uniform bins."""

    fs: float = 360.0
    samples_per_token: int = 10
    num_bins: int = 256
    range_mv: float = 5.0
    mu: float = 255.0  # ITU-T G.711 mu-law

    def __post_init__(self):
        _check_common(self.fs, self.samples_per_token, self.num_bins)
        if not (self.range_mv > 0 and self.mu > 0):
            raise TokenizerError(f"range_mv and mu must be positive, got {self.range_mv}, {self.mu}")


@register_tokenizer("decimate_mulaw")
class DecimateMuLawTokenizer(_DecimatingTokenizer):
    """Decimation + mu-law companding + uniform quantization + band-limited interpolation (mV)."""

    config_class = DecimateMuLawConfig

    def _to_ids(self, v):
        c = self.config
        u = np.clip(v / c.range_mv, -1.0, 1.0)
        f = np.sign(u) * np.log1p(c.mu * np.abs(u)) / math.log1p(c.mu)  # in [-1, 1]
        return uniform_quantize(f, c.num_bins, -1.0, 1.0), {}

    def _from_ids(self, ids, state):
        c = self.config
        f = uniform_dequantize(ids, c.num_bins, -1.0, 1.0)
        return np.sign(f) * np.expm1(np.abs(f) * math.log1p(c.mu)) / c.mu * c.range_mv


@dataclass
class ChronosMeanScaleConfig:
    """Config of ``chronos_meanscale``: Chronos' mean scaling and bins, one value per ``samples_per_token``."""

    fs: float = 360.0
    samples_per_token: int = 10
    num_bins: int = 256
    context_tokens: int = 512  # one scale per context (Chronos' default context length)
    scale_bits: int = 16  # side information per context, counted in the bit rate

    def __post_init__(self):
        _check_common(self.fs, self.samples_per_token, self.num_bins)
        if self.context_tokens < 1:
            raise TokenizerError(f"context_tokens must be >= 1, got {self.context_tokens}")


@register_tokenizer("chronos_meanscale")
class ChronosMeanScaleTokenizer(_DecimatingTokenizer):
    """Decimation + Chronos mean scaling per context + uniform bins on [-15, 15] (scales in ``state``)."""

    config_class = ChronosMeanScaleConfig

    @property
    def side_info_bits_per_second(self) -> float:
        c = self.config
        return c.scale_bits * self.tokens_per_second / c.context_tokens

    def _to_ids(self, v):
        c = self.config
        n_ctx = -(-len(v) // c.context_tokens)
        scales = np.empty(n_ctx, dtype=np.float32)
        ids = np.empty(len(v), dtype=np.int64)
        for i in range(n_ctx):
            seg = v[i * c.context_tokens : (i + 1) * c.context_tokens]
            s = float(np.mean(np.abs(seg)))
            s = s if s > 0 else 1.0  # Chronos' guard for an all-zero context
            scales[i] = s
            ids[i * c.context_tokens : (i + 1) * c.context_tokens] = uniform_quantize(
                seg / s, c.num_bins, -CHRONOS_LIMIT, CHRONOS_LIMIT)
        return ids, {"scales": scales}

    def _from_ids(self, ids, state):
        c = self.config
        if state is None or "scales" not in state:
            raise TokenizerError(
                "chronos_meanscale ids are in units of each context's mean |x|: decoding to mV needs the "
                "per-context scales, pass the state returned by encode (decode(ids, state))"
            )
        scales = np.asarray(state["scales"], dtype=np.float64)
        n_ctx = -(-len(ids) // c.context_tokens)
        if len(scales) != n_ctx:
            raise TokenizerError(f"state holds {len(scales)} scales but {len(ids)} ids span {n_ctx} contexts")
        v = uniform_dequantize(ids, c.num_bins, -CHRONOS_LIMIT, CHRONOS_LIMIT)
        return v * np.repeat(scales, c.context_tokens)[: len(ids)]
