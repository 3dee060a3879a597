"""Tokenizer v2 (``fsq2``): slow baseline in ``state``, ECG band in the tokens, optional texture decode.

.. code-block:: python

    from ecg2llm.tokenizer import ECGTokenizer
    tok = ECGTokenizer.from_pretrained("default")                # this type since tokenizer v2
    ids, state = tok.encode(signal_mv, fs=500)                   # any rate, any DC offset / wander
    full = tok.decode(ids, state)                                # the whole signal in mV
    band = tok.decode(ids)                                       # the ECG band in mV (what an LM generates)
    real = tok.decode(ids, texture=True, seed=0)                 # + sampled noise / mains / fine detail

Encode: the signal (resampled to ``fs``) is split by :mod:`ecg2llm.tokenizer.baseline` into a slow baseline (median
knots at 2 Hz refined on the residual, quantized to 2 µV, linear interpolation; ``state["baseline"]``) and the band
``x - baseline``, which the contextual FSQ autoencoder codes at ``fs / n`` tokens per second on an
absolute mV scale (``band / scale_mv``; nothing estimated per signal). So ids alone decode to millivolts
of the band, and any DC offset or slow wander leaves the band - and its tokens - unchanged.

Decode: the token-rate decoder (:mod:`ecg2llm.tokenizer.models.contextual`, may be wider than the encoder) gives
``n`` samples per token; a learned sample-rate FIR (``post_taps`` taps, residual, zero-initialized) then
smooths the seams between tokens, the source of the block structure (spectral lines at multiples of
``fs / n``) of v1. ``texture=True`` adds a sample of realistic detail whose short-time spectrum is predicted
from the decoded band (measurement noise, mains, the fine structure MSE training averages away), seeded for
reproducibility: :class:`ecg2llm.tokenizer.texture_bank.TextureBank` (``texture.safetensors`` in the folder, outside
the weights hash: noise levels resampled from real recordings, mains and other spectral lines as tones)
where the folder has one, else the in-weights Gaussian :class:`ecg2llm.tokenizer.texture.TextureModel`.

Generated ids have no state: :meth:`FSQ2Tokenizer.sample_state` draws one from the baseline (wander) model
of :mod:`ecg2llm.tokenizer.wander` (``wander.json`` in the folder, outside the weights hash), so
``decode(ids, tok.sample_state(n, seed), texture=True, seed=s)`` carries a realistic baseline too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ecg2llm.core.errors import TokenizerError

from .base import register_tokenizer
from .baseline import INTERPOLATIONS, estimate_knots_np, interpolate_knots_np, knot_hop, n_knots
from .fsq import FSQ
from .fsq_tokenizer import FSQModelTokenizer
from .models.contextual import ContextualDecoder, ContextualEncoder, chunked_apply
from .texture import TextureModel
from .texture_bank import TEXTURE_FILE, TextureBank
from .wander import WANDER_FILE, WanderModel


@dataclass
class FSQ2TokenizerConfig:
    """Config of :class:`FSQ2Tokenizer` (architecture, baseline method, texture analysis, chunking)."""

    fs: float = 360.0
    samples_per_token: int = 10
    levels: list[int] = field(default_factory=lambda: [8, 8, 8, 8])
    channels: int = 48  # encoder width
    dec_channels: int = 64  # decoder width (wider than the encoder: decoding is the harder half)
    enc_dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    dec_dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    kernel: int = 3
    activation: str = "gelu"
    scale_mv: float = 1.0  # fixed divisor of the band (absolute, never per-signal)
    post_taps: int = 15  # sample-rate FIR after the decoder (odd; 1 = none)
    baseline_knot_s: float = 0.5  # one baseline knot per this many seconds (2 Hz)
    baseline_step_mv: float = 0.002  # knot quantization step (2 µV)
    baseline_iterations: int = 3  # knot passes, each on the residual of the last (1: the estimator trained with)
    baseline_interp: str = "linear"  # knot interpolation: "linear" (trained with, decodes old states) or "cubic"
    baseline_min_correction_mv: float = 0.1  # refinement passes keep only knot corrections above this (mV)
    texture_n_fft: int = 120  # texture STFT: 3 Hz bins at 360 Hz (60 Hz mains and fs/n lines on bins)
    texture_hop: int = 60
    texture_adc_step_mv: float = 0.005  # texture output rounded to this ADC step (MIT-BIH: 5 µV; 0 = off)
    chunk_tokens: int = 512  # inference: output tokens per window (does not change results)
    batch_chunks: int = 8

    def __post_init__(self):
        if int(self.samples_per_token) < 1:
            raise TokenizerError(f"samples_per_token must be >= 1, got {self.samples_per_token}")
        if not self.levels or min(int(v) for v in self.levels) < 2:
            raise TokenizerError(f"levels must be integers >= 2, got {self.levels}")
        if not self.scale_mv > 0 or not self.baseline_step_mv > 0 or not self.baseline_knot_s > 0:
            raise TokenizerError("scale_mv, baseline_step_mv and baseline_knot_s must be positive")
        if int(self.baseline_iterations) < 1:
            raise TokenizerError(f"baseline_iterations must be >= 1, got {self.baseline_iterations}")
        if self.baseline_interp not in INTERPOLATIONS:
            raise TokenizerError(f"baseline_interp must be one of {INTERPOLATIONS}, got {self.baseline_interp!r}")
        if int(self.post_taps) < 1 or int(self.post_taps) % 2 != 1:
            raise TokenizerError(f"post_taps must be an odd integer >= 1, got {self.post_taps}")
        if self.chunk_tokens < 1 or self.batch_chunks < 1:
            raise TokenizerError("chunk_tokens and batch_chunks must be >= 1")


class FSQ2Autoencoder(nn.Module):
    """Encoder -> FSQ -> (wider) decoder -> sample-rate FIR; plus the texture model's tensors."""

    def __init__(self, cfg: FSQ2TokenizerConfig):
        super().__init__()
        n = int(cfg.samples_per_token)
        self.n = n
        self.fsq = FSQ(cfg.levels)
        self.encoder = ContextualEncoder(n, cfg.channels, self.fsq.dim, cfg.enc_dilations, cfg.kernel,
                                         cfg.activation)
        self.decoder = ContextualDecoder(n, cfg.dec_channels, self.fsq.dim, cfg.dec_dilations, cfg.kernel,
                                         cfg.activation)
        self.post = nn.Parameter(torch.zeros(int(cfg.post_taps)))  # residual FIR taps, identity at init
        self.texture = TextureModel(int(cfg.texture_n_fft))

    @property
    def reach(self) -> int:
        return self.encoder.reach + self.decoder.reach

    @property
    def post_pad(self) -> int:
        return (self.post.numel() - 1) // 2

    def post_filter(self, y: torch.Tensor, valid: bool = False) -> torch.Tensor:
        """``(B, T)`` -> ``y + h * y``; ``valid`` trims ``post_pad`` samples per side, else edges
        replicate."""
        p = self.post_pad
        if p == 0:
            return y + self.post[0] * y
        inp = y[:, None] if valid else F.pad(y[:, None], (p, p), mode="replicate")  # (B, 1, T')
        z = F.conv1d(inp, self.post.view(1, 1, -1))[:, 0]  # (B, T or T - 2p)
        return (y[:, p:-p] if valid else y) + z

    def post_filter_fast(self, y: torch.Tensor) -> torch.Tensor:
        """:meth:`post_filter` of one ``(T,)`` signal as a sum of shifted slices (faster than a 1-channel
        ``conv1d`` on CPU; same function)."""
        p = self.post_pad
        yp = torch.cat([y[:1].expand(p), y, y[-1:].expand(p)])  # (T + 2p,)
        out = y.clone()
        for j in range(self.post.numel()):
            out += self.post[j] * yp[j : j + len(y)]
        return out

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: ``(B, L + 2 reach, n)`` -> (``(B, L * n - 2 post_pad)`` samples, bounded latents).

        The output matches ``patches[:, reach : reach + L].reshape(B, -1)[:, post_pad : -post_pad]``.
        """
        z = self.encoder(patches)  # (B, L + 2 r_dec, d)
        codes = self.fsq.quantize(z)  # (B, L + 2 r_dec, d)
        y = self.decoder(codes)  # (B, L, n)
        y = self.post_filter(rearrange(y, "b l n -> b (l n)"), valid=True)  # (B, L n - 2p)
        return y, self.fsq.bound(z.float())


@register_tokenizer("fsq2")
class FSQ2Tokenizer(FSQModelTokenizer):
    """Baseline-split contextual FSQ tokenizer with a texture decode (see module docstring)."""

    config_class = FSQ2TokenizerConfig
    model_class = FSQ2Autoencoder

    def __init__(self, config):
        super().__init__(config)
        self.wander_model: WanderModel | None = None  # read from wander.json by load_extras
        self.texture_bank: TextureBank | None = None  # read from texture.safetensors by load_extras

    @property
    def hop(self) -> int:
        """Samples between baseline knots."""
        return knot_hop(self.fs, self.config.baseline_knot_s)

    @property
    def has_texture(self) -> bool:
        return self.texture_bank is not None or bool(self.model.texture.fitted)

    @property
    def texture_kind(self) -> str | None:
        """``"bank"`` (texture.safetensors), ``"gaussian"`` (the in-weights model) or None (no texture)."""
        if self.texture_bank is not None:
            return "bank"
        return "gaussian" if self.model.texture.fitted else None

    @property
    def has_wander_model(self) -> bool:
        """True when a fitted baseline (wander) model is loaded: :meth:`sample_state` works."""
        return self.wander_model is not None

    def sample_state(self, n_samples: int, seed: int | None = None) -> dict:
        """A realistic ``state`` for ids an LM generated: ``decode(ids, state)`` adds a sampled baseline.

        Parameters
        ----------
        n_samples : int
            Samples of the decoded signal (at most ``len(ids) * samples_per_token``).
        seed : int, optional
            Seed of the baseline sample; the same seed gives the same state (None: fresh randomness).

        Returns
        -------
        dict
            ``{"n_samples": n_samples, "baseline": knots}``, knots ``(n_knots(n_samples, hop),)`` float32 mV
            drawn from :class:`ecg2llm.tokenizer.wander.WanderModel` (DC offset included).
        """
        if self.wander_model is None:
            raise TokenizerError("this tokenizer has no baseline (wander) model; fit one with "
                                 "scripts/fit_wander.py, or decode with state=None (the ECG band)")
        n_samples = int(n_samples)
        if n_samples < 1:
            raise TokenizerError(f"n_samples must be >= 1, got {n_samples}")
        knots = self.wander_model.sample(n_knots(n_samples, self.hop), seed)
        return {"n_samples": n_samples, "baseline": knots}

    def _extra_files(self) -> dict[str, str | bytes]:
        out: dict[str, str | bytes] = {}
        if self.wander_model is not None:
            out[WANDER_FILE] = self.wander_model.to_json()
        if self.texture_bank is not None:
            out[TEXTURE_FILE] = self.texture_bank.to_bytes()
        return out

    def load_extras(self, folder) -> "FSQ2Tokenizer":
        """Load ``wander.json`` and ``texture.safetensors`` when the folder has them (older folders: none)."""
        from pathlib import Path

        t = Path(folder) / TEXTURE_FILE
        if t.is_file():
            self.texture_bank = TextureBank.from_file(t, n_fft=int(self.config.texture_n_fft),
                                                      hop=int(self.config.texture_hop), fs=float(self.fs))

        f = Path(folder) / WANDER_FILE
        if f.is_file():
            wm = WanderModel.from_json(f.read_text(), source=str(f))
            if abs(wm.knot_s - float(self.config.baseline_knot_s)) > 1e-9:
                raise TokenizerError(f"{f} was fitted on knots every {wm.knot_s} s, but this tokenizer places "
                                     f"them every {self.config.baseline_knot_s} s")
            self.wander_model = wm
        return self

    def describe(self) -> dict:
        d = super().describe()
        d["baseline_knots_per_second"] = self.fs / self.hop
        d["baseline_raw_bits_per_second"] = 16.0 * self.fs / self.hop
        return d

    # ----------------------------------------------------------------- public API
    def decode(self, ids: np.ndarray, state: dict | None = None, *, texture: bool = False,
               seed: int | None = None) -> np.ndarray:
        """Ids (+ state) -> 1-D float32 mV at ``fs``.

        Parameters
        ----------
        ids : array of int, shape (tokens,)
        state : dict, optional
            From :meth:`encode`: adds the baseline back and cuts the last token's padding. Without it the
            result is the ECG band (``len(ids) * n`` samples), which is what a language model's ids give.
        texture : bool
            Add a sample of realistic detail (noise, mains, fine structure) conditioned on the decode, and
            round the result to the digitizer step ``texture_adc_step_mv`` (5 µV, MIT-BIH's 200 units/mV).
        seed : int, optional
            Seed of the texture sample; the same seed gives the same output (None: fresh randomness).
        """
        ids = self.check_ids(ids)
        y = self._decode_band(ids)
        if texture:
            if not self.has_texture:
                raise TokenizerError("this tokenizer has no fitted texture model; decode with texture=False "
                                     "or fit one with scripts/fit_texture.py")
            if self.texture_bank is not None:
                y = y + self.texture_bank.sample(y, seed)
            else:
                y = y + self.model.texture.sample(y, self.config.texture_hop, seed, fs=self.fs)
        if state is not None:
            y = self._apply_state(y, ids, state)
        q = float(self.config.texture_adc_step_mv)
        if texture and q > 0:  # a recording is digitized: its samples sit on the ADC grid
            y = np.round(np.asarray(y, np.float64) / q) * q
        return np.asarray(y, dtype=np.float32)

    def estimate_baseline(self, x: np.ndarray) -> np.ndarray:
        """Quantized baseline knots ``(n_knots(len(x), hop),)`` mV of a 1-D signal at ``fs`` (what
        :meth:`encode` stores in ``state["baseline"]``)."""
        c = self.config
        return estimate_knots_np(np.asarray(x, np.float32), self.hop, c.baseline_step_mv, int(c.baseline_iterations),
                                 c.baseline_interp, float(c.baseline_min_correction_mv))

    def interpolate_baseline(self, knots: np.ndarray, n_samples: int) -> np.ndarray:
        """The baseline ``(n_samples,)`` float32 mV that ``knots`` stand for (what :meth:`decode` adds)."""
        return interpolate_knots_np(knots, self.hop, n_samples, self.config.baseline_interp)

    # ----------------------------------------------------------------- internals
    @torch.inference_mode()
    def _encode(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        n, m = self.model.n, self.model.encoder.reach
        knots = self.estimate_baseline(x)  # (K,)
        band = np.asarray(x, np.float32) - self.interpolate_baseline(knots, len(x))  # (T,)
        if float(np.abs(knots).max()) > 32767 * self.config.baseline_step_mv:
            raise TokenizerError(
                f"baseline reaches {float(np.abs(knots).max()):.1f} mV, beyond what int16 knots at "
                f"{self.config.baseline_step_mv * 1000:g} µV hold; is the signal in mV (not µV or ADC "
                f"units)?"
            )
        n_tok = -(-len(x) // n)
        bt = torch.from_numpy(band).to(self.device) / self.config.scale_mv  # (T,)
        bt = torch.cat([bt[:1].expand(m * n), bt, bt[-1:].expand((n_tok + m) * n - len(x))])  # ((L+2m) n,)
        patches = rearrange(bt, "(l n) -> l n", n=n)  # (L + 2m, n)
        fsq, enc = self.model.fsq, self.model.encoder

        def fn(w: torch.Tensor) -> torch.Tensor:
            return fsq.codes_to_indices(fsq.quantize(enc(w)))  # (B, W)

        ids = chunked_apply(fn, patches, m, self.config.chunk_tokens, self.config.batch_chunks)  # (L,)
        state = {"n_samples": len(x), "baseline": knots}
        return ids.cpu().numpy(), state

    @torch.inference_mode()
    def _decode_band(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros(0, dtype=np.float32)
        m = self.model.decoder.reach
        idx = torch.from_numpy(ids).to(self.device)
        codes = self.model.fsq.indices_to_codes(idx)  # (L, d)
        codes = torch.cat([codes[:1].expand(m, -1), codes, codes[-1:].expand(m, -1)])  # (L + 2m, d)
        y = chunked_apply(self.model.decoder, codes, m, self.config.chunk_tokens, self.config.batch_chunks)
        y = self.model.post_filter_fast(y.reshape(-1))  # (L n,)
        return (y * self.config.scale_mv).float().cpu().numpy()

    def _apply_state(self, y: np.ndarray, ids: np.ndarray, state: dict) -> np.ndarray:
        n_samples = int(state.get("n_samples", len(y)))
        if n_samples == 0 == len(y):
            return y
        if not 0 < n_samples <= len(y):
            raise TokenizerError(f"state says {n_samples} samples but {len(ids)} ids decode to {len(y)}; is "
                                 f"the state from another signal?")
        y = y[:n_samples]
        if state.get("baseline") is not None:
            knots = np.asarray(state["baseline"], np.float32).reshape(-1)
            if len(knots) != n_knots(n_samples, self.hop):
                raise TokenizerError(f"state has {len(knots)} baseline knots, {n_knots(n_samples, self.hop)} "
                                     f"expected for {n_samples} samples; is the state from another signal?")
            y = y + self.interpolate_baseline(knots, n_samples)
        return y
