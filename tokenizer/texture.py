"""Texture decode: sample the detail an MSE-trained decoder averages away, conditioned on the decode.

Model (a heteroscedastic Gaussian model of the residual's short-time spectrum, fitted in closed form):
the residual ``r = x - decode(ids, state)`` of training signals is analysed with a Hann STFT
(``n_fft`` = 120, hop 60 at 360 Hz: 3 Hz bins, so 60 Hz mains and the token rate's harmonics fall on
bins). Its log power per frame and bin is regressed (ridge, all bins jointly) on the decode's own log
power spectrum in the same frame::

    log P_r[f, :] = [log P_y[f, :], 1] @ W + u[segment(f)] + e[f] + calib

with ``u`` a 10-s random effect (covariance of per-segment mean residuals: a noisy record stays noisy) and
``e`` a per-frame one (within-segment covariance minus the ``pi^2 / 6`` that the sampled noise's own
chi-square scatter adds back). Sampling draws ``u`` (interpolated between segments) and ``e``, shapes
the STFT of white Gaussian noise with ``exp(logP / 2)`` and inverts it; ``calib`` (per bin) makes the
mean power of decode + sample on training signals equal to the real signals' (the sample fills the
decode's spectral deficit, never doubles the decode's own spurious detail). A ``torch.Generator`` seeded by
``seed`` drives every draw, so the same seed gives the same texture.

Why not adversarial training: on 2 CPU cores and a one-hour budget a GAN vocoder does not converge; the
issue measured that noise with the residual's *average* spectrum fails (0.489), because real windows
differ in noise level and the decode's spectrum says how much detail is missing where. This model keeps
both: the level follows the decode frame by frame, and the spread between records is sampled.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from einops import reduce
from torch import nn

EULER_GAMMA = 0.5772156649015329
SEGMENT_S = 10.0


def _stft(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """``(T,)`` -> complex ``(n_fft // 2 + 1, frames)``, Hann window, centred frames."""
    win = torch.hann_window(n_fft, periodic=True, dtype=x.dtype)
    return torch.stft(x, n_fft, hop, window=win, center=True, return_complex=True)


def log_power(x: torch.Tensor, n_fft: int, hop: int, eps: float = 1e-10) -> torch.Tensor:
    """``(T,)`` -> ``(frames, bins)`` log power, normalized so white unit noise has mean power 1."""
    win = torch.hann_window(n_fft, periodic=True, dtype=x.dtype)
    p = _stft(x, n_fft, hop).abs().pow(2).T / win.pow(2).sum()  # (F, nb)
    return torch.log(p + eps)


class TextureModel(nn.Module):
    """The fitted tensors (saved with the tokenizer's weights, so they count in its weights hash)."""

    def __init__(self, n_fft: int):
        super().__init__()
        nb = n_fft // 2 + 1
        self.n_fft = int(n_fft)
        self.W = nn.Parameter(torch.zeros(nb + 1, nb), requires_grad=False)
        self.chol_segment = nn.Parameter(torch.zeros(nb, nb), requires_grad=False)
        self.chol_frame = nn.Parameter(torch.zeros(nb, nb), requires_grad=False)
        self.calib = nn.Parameter(torch.zeros(nb), requires_grad=False)
        self.fitted_flag = nn.Parameter(torch.zeros(1), requires_grad=False)

    @property
    def fitted(self) -> bool:
        return bool(self.fitted_flag.item() > 0)

    def mean_log_power(self, y: torch.Tensor, hop: int) -> torch.Tensor:
        """``(T,)`` decode -> ``(frames, bins)`` predicted mean log power of the residual."""
        feat = log_power(y, self.n_fft, hop)  # (F, nb)
        feat = torch.cat([feat, torch.ones_like(feat[:, :1])], dim=1)  # (F, nb + 1)
        return feat @ self.W + self.calib  # (F, nb)

    @torch.no_grad()
    def sample(self, y: np.ndarray, hop: int, seed: int | None, fs: float = 360.0) -> np.ndarray:
        """One texture sample for the decode ``y`` (1-D mV): same length, float32, mV."""
        if len(y) < self.n_fft:
            return np.zeros(len(y), np.float32)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        g = torch.Generator().manual_seed(int(seed))
        yt = torch.from_numpy(np.asarray(y, np.float32)).to(self.W.device, torch.float32)
        mu = self.mean_log_power(yt, hop)  # (F, nb)
        n_frames, nb = mu.shape
        seg = max(1, int(round(SEGMENT_S * fs / hop)))
        n_seg = n_frames // seg + 2
        u = torch.randn(n_seg, nb, generator=g) @ self.chol_segment.T.cpu()  # (S, nb)
        pos = torch.arange(n_frames, dtype=torch.float32) / seg
        i0 = pos.floor().long()
        w = (pos - i0)[:, None]
        u = u[i0] * (1 - w) + u[i0 + 1] * w  # (F, nb), linear between segment draws
        e = torch.randn(n_frames, nb, generator=g) @ self.chol_frame.T.cpu()  # (F, nb)
        logp = mu.cpu() + u + e  # (F, nb)
        noise = torch.randn(len(y), generator=g)  # (T,)
        spec = _stft(noise, self.n_fft, hop)  # (nb, F)
        spec = spec * torch.exp(0.5 * logp).T  # (nb, F)
        win = torch.hann_window(self.n_fft, periodic=True)
        r = torch.istft(spec, self.n_fft, hop, window=win, center=True, length=len(y))  # (T,)
        return r.numpy().astype(np.float32)


def fit_texture(tok, signals: list[np.ndarray], ridge: float = 1.0, calib_signals: int = 12,
                progress: bool = True) -> dict:
    """Fit ``tok.model.texture`` on training signals (mV at ``tok.fs``); returns fit statistics.

    Parameters
    ----------
    tok : FSQ2Tokenizer
    signals : list of 1-D arrays in mV (training records only, never the test set)
    ridge : float
        L2 penalty of the log-power regression.
    """
    from tqdm.auto import tqdm

    tex, hop, n_fft = tok.model.texture, tok.config.texture_hop, tok.config.texture_n_fft
    seg = max(1, int(round(SEGMENT_S * tok.fs / hop)))
    feats, targets, seg_ids, decodes, resids = [], [], [], [], []
    sid = 0
    for x in tqdm(signals, desc="texture: decode training signals", disable=not progress):
        ids, state = tok.encode(x, tok.fs)
        full = tok.decode(ids, state)
        band = tok.decode(ids)[: len(x)]
        r = torch.from_numpy(np.asarray(x, np.float32) - full)
        yb = torch.from_numpy(band)
        fy, fr = log_power(yb, n_fft, hop), log_power(r, n_fft, hop)  # (F, nb) each
        feats.append(fy)
        targets.append(fr)
        seg_ids.append(sid + torch.arange(len(fy)) // seg)
        sid = int(seg_ids[-1].max()) + 1
        decodes.append(band)
        resids.append(r.numpy())
    X = torch.cat(feats).double()  # (N, nb)
    X = torch.cat([X, torch.ones_like(X[:, :1])], dim=1)  # (N, nb + 1)
    Y = torch.cat(targets).double()  # (N, nb)
    S = torch.cat(seg_ids)
    reg = ridge * torch.eye(X.shape[1], dtype=torch.float64)
    reg[-1, -1] = 0
    W = torch.linalg.solve(X.T @ X + reg, X.T @ Y)  # (nb + 1, nb)
    res = Y - X @ W  # (N, nb)
    n_seg = int(S.max()) + 1
    counts = torch.bincount(S, minlength=n_seg).double()[:, None]
    seg_mean = torch.zeros(n_seg, res.shape[1], dtype=torch.float64).index_add_(0, S, res) / counts
    within = res - seg_mean[S]
    nb = res.shape[1]
    cov_f = within.T @ within / len(within) - (math.pi**2 / 6) * torch.eye(nb, dtype=torch.float64)
    cov_s = torch.cov(seg_mean.T)
    tex.W.data = W.float()
    tex.chol_segment.data = _psd_sqrt(cov_s).float()
    tex.chol_frame.data = _psd_sqrt(cov_f).float()
    # The residual's log power has mean log(P) - gamma; samples have the same scatter, so shift by gamma.
    tex.calib.data = torch.full((nb,), EULER_GAMMA, dtype=torch.float32)
    tex.fitted_flag.data = torch.ones(1)
    # Calibrate per bin in the output domain: decode + texture should have the real signal's spectrum, so
    # samples fill the decode's deficit and never double its own spurious detail (e.g. seams). First in
    # power (deficit mean P_x - mean P_y, floored at 5 % of the residual's), then three corrections of the
    # mean log 10-s power (what a spectral classifier sees), solved for the texture's share of each bin.
    pairs = list(zip(decodes[:calib_signals], resids[:calib_signals]))
    want = torch.zeros(nb, dtype=torch.float64)
    have = torch.zeros(nb, dtype=torch.float64)
    for i, (yb, r) in enumerate(pairs):
        s = tex.sample(yb, hop, seed=10_000 + i, fs=tok.fs)
        px = log_power(torch.from_numpy(yb + r), n_fft, hop).exp().double().mean(0)
        py = log_power(torch.from_numpy(yb), n_fft, hop).exp().double().mean(0)
        pr = log_power(torch.from_numpy(r), n_fft, hop).exp().double().mean(0)
        want += torch.maximum(px - py, 0.05 * pr)
        have += log_power(torch.from_numpy(s), n_fft, hop).exp().double().mean(0)
    tex.calib.data = tex.calib.data + torch.log(want / have).float()
    q = float(getattr(tok.config, "texture_adc_step_mv", 0.0))

    def digitize(v: np.ndarray) -> np.ndarray:  # the decode rounds texture output to the ADC grid
        return (np.round(v / q) * q).astype(np.float32) if q > 0 else v

    for _ in range(3):
        d_log = torch.zeros(nb, dtype=torch.float64)
        share = torch.zeros(nb, dtype=torch.float64)
        for i, (yb, r) in enumerate(pairs):
            s = tex.sample(yb, hop, seed=20_000 + i, fs=tok.fs)
            lx = _segment_log_power(yb + r, n_fft, hop, seg)  # (S, nb)
            lo = _segment_log_power(digitize(yb + s), n_fft, hop, seg)
            ps = log_power(torch.from_numpy(s), n_fft, hop).exp().double().mean(0)
            po = log_power(torch.from_numpy(digitize(yb + s)), n_fft, hop).exp().double().mean(0)
            d_log += (lx - lo).mean(0)
            share += ps / po
        d_log, share = d_log / len(pairs), share / len(pairs)
        # P_out = P_other + P_tex: moving log P_out by d needs P_tex x (1 + (e^d - 1) / share)
        step = torch.log((1 + (torch.exp(d_log) - 1) / share.clamp(min=1e-3)).clamp(min=0.05))
        tex.calib.data = tex.calib.data + step.clamp(-2, 2).float()
    return {"frames": int(len(X)), "segments": n_seg, "r2_log_power": float(1 - res.var() / Y.var()),
            "frame_sd": float(torch.diagonal(cov_f).clamp(min=0).mean().sqrt()),
            "segment_sd": float(torch.diagonal(cov_s).mean().sqrt())}


def _segment_log_power(x: np.ndarray, n_fft: int, hop: int, seg: int) -> torch.Tensor:
    """Log of the mean power per bin over blocks of ``seg`` frames: ``(T,)`` -> ``(S, nb)`` float64."""
    p = log_power(torch.from_numpy(np.asarray(x, np.float32)), n_fft, hop).exp().double()  # (F, nb)
    k = max(1, len(p) // seg)
    return torch.log(reduce(p[: k * seg], "(k s) b -> k b", "mean", k=k) + 1e-12)  # (S, nb)


def _psd_sqrt(c: torch.Tensor) -> torch.Tensor:
    """A square root ``L`` with ``L @ L.T`` the nearest positive semi-definite matrix to ``c``."""
    vals, vecs = torch.linalg.eigh((c + c.T) / 2)
    return vecs * vals.clamp(min=0).sqrt()
