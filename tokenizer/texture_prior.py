"""Texture states for generated ids: a Gaussian model of what encode measures in real recordings.

Encode measures each recording's texture into ``state["texture"]`` (:meth:`ecg2llm.tokenizer.texture_bank.TextureBank.
analyse`: per 10-s segment the noise power the texture must add in 14 bands, the real signal's power per STFT bin
above 45 Hz, and the mains lines' complex amplitudes), and the texture decode of those ids reproduces them. Ids an
LM generated have no recording, so until now their texture decode drew a training recording's segment levels from
the bank and scaled them by a regression on the decode's own spectrum. On generated ECGs that left the noise
floor too even below 100 Hz and too uneven above it, across windows, compared with real ones; the scorecard's
discriminator read mostly that (its band powers alone: 0.64-0.77 on the first 20 sets of LM v3).

:class:`TexturePrior` is a generative model of the state instead: each 10-s segment's vector (band levels and
real power per bin, both in the state's log steps) is Gaussian (mean and full covariance of the training
recordings' segments), consecutive segments of one sample follow an AR(1) of the whitened vector (one
coefficient, fitted on consecutive segments), and each spectral line has a log-normal amplitude and one random
phase per sample. :meth:`TexturePrior.sample` draws a state; the tokenizer's ``sample_state`` adds it, so
``decode(ids, tok.sample_state(n, seed), texture=True, seed=s)`` decodes generated ids with a drawn texture state.
It is a model of the states, not a table of them: no training recording's state is stored or replayed.

Fitted by ``scripts/fit_texture_prior.py`` on the MLII of the MIT-BIH training records (a few seconds); stored as
``texture_prior.safetensors`` beside the tokenizer weights (outside the weights hash, like ``texture.safetensors``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ecg2llm.core.errors import TokenizerError

from .texture import SEGMENT_S

PRIOR_FILE = "texture_prior.safetensors"
PRIOR_FORMAT = "ecg2llm-texture-prior-v1"
LEVEL_MIN, LEVEL_MAX = -126, 127  # int8 state steps (-127 marks an empty segment in a measured state)


@dataclass
class TexturePrior:
    """Gaussian model of texture states (``D = n_levels + n_real`` numbers per 10-s segment, ``L`` lines)."""

    mean: torch.Tensor           # (D,) float64: segment vector mean (state steps)
    chol: torch.Tensor           # (D, D) float64: Cholesky factor of its covariance
    rho: float                   # AR(1) coefficient of the whitened vector between consecutive segments
    n_levels: int                # the first n_levels entries are "levels", the rest "real"
    line_log_mean: torch.Tensor  # (L,) float64: mean of log(1 + |amplitude| in state steps) per line
    line_log_sd: torch.Tensor    # (L,) float64
    fs: float
    n_segments: int = 0          # segments it was fitted on (for the record)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def sample(self, n_samples: int, seed: int | None = None) -> dict:
        """A texture state (``levels``, ``real``, ``lines``: :meth:`TextureBank.analyse`'s layout) for
        ``n_samples`` samples at :attr:`fs`; the same seed gives the same state."""
        if int(n_samples) < 1:
            raise TokenizerError(f"n_samples must be >= 1, got {n_samples}")
        rng = np.random.default_rng(seed)
        k = max(1, math.ceil(int(n_samples) / int(round(SEGMENT_S * self.fs))))
        z = np.empty((k, self.dim))
        z[0] = rng.standard_normal(self.dim)
        for i in range(1, k):
            z[i] = self.rho * z[i - 1] + math.sqrt(max(1.0 - self.rho ** 2, 0.0)) * rng.standard_normal(self.dim)
        v = self.mean.numpy()[None] + z @ self.chol.numpy().T
        v = np.clip(np.round(v), LEVEL_MIN, LEVEL_MAX).astype(np.int8)
        n_lines = int(self.line_log_mean.shape[0])
        mag = np.expm1(self.line_log_mean.numpy() + self.line_log_sd.numpy() * rng.standard_normal(n_lines))
        ph = rng.uniform(0.0, 2 * np.pi, n_lines)
        lines = np.stack([np.maximum(mag, 0) * np.cos(ph), np.maximum(mag, 0) * np.sin(ph)], -1)  # (L, 2)
        lines = np.clip(np.round(np.repeat(lines[None], k, 0)), -32767, 32767).astype(np.int16)
        return {"levels": v[:, : self.n_levels], "real": v[:, self.n_levels:], "lines": lines}

    # ------------------------------------------------------------------ file format
    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        t = {"mean": self.mean, "chol": self.chol, "line_log_mean": self.line_log_mean,
             "line_log_sd": self.line_log_sd}
        meta = {"format": PRIOR_FORMAT, "rho": repr(float(self.rho)), "n_levels": str(int(self.n_levels)),
                "fs": repr(float(self.fs)), "n_segments": str(int(self.n_segments))}
        return save({k: v.contiguous() for k, v in t.items()}, metadata=meta)

    @classmethod
    def from_file(cls, path, fs: float) -> "TexturePrior":
        """Read ``texture_prior.safetensors``; it must be fitted at the tokenizer's rate ``fs``."""
        from ecg2llm.core.io import read_safetensors

        t, meta = read_safetensors(path, TokenizerError, "texture prior",
                                   "refit it with scripts/fit_texture_prior.py or delete it")
        if meta.get("format") != PRIOR_FORMAT:
            raise TokenizerError(f"{path} has format {meta.get('format')!r}, expected {PRIOR_FORMAT!r}")
        missing = {"mean", "chol", "line_log_mean", "line_log_sd"} - set(t)
        if missing:
            raise TokenizerError(f"{path} lacks tensors {sorted(missing)}; refit it with scripts/fit_texture_prior.py")
        d = int(t["mean"].shape[0])
        if tuple(t["chol"].shape) != (d, d) or not 0 < int(meta.get("n_levels", 0)) < d:
            raise TokenizerError(f"{path}: chol {tuple(t['chol'].shape)} and n_levels {meta.get('n_levels')} do "
                                 f"not fit a mean of {d}; refit it")
        if float(meta["fs"]) != float(fs):
            raise TokenizerError(f"{path} was fitted at {float(meta['fs'])} Hz, this tokenizer runs at {float(fs)} Hz; "
                                 f"refit it")
        return cls(mean=t["mean"].double(), chol=t["chol"].double(), rho=float(meta["rho"]),
                   n_levels=int(meta["n_levels"]), line_log_mean=t["line_log_mean"].double(),
                   line_log_sd=t["line_log_sd"].double(), fs=float(meta["fs"]),
                   n_segments=int(meta.get("n_segments", 0)))


def fit_texture_prior(states: list[dict], fs: float, ridge: float = 1e-3) -> TexturePrior:
    """Fit :class:`TexturePrior` on measured texture states (``state["texture"]`` of real recordings).

    Segments with an empty entry (-127: shorter than one STFT frame) are left out of the mean and covariance;
    ``rho`` is the mean lag-1 product of the whitened vectors over consecutive full segments of one state,
    over their mean square. Raises :class:`TokenizerError` with fewer full segments than twice the dimension.
    """
    if not states:
        raise TokenizerError("fit_texture_prior needs at least one texture state")
    n_levels = int(np.asarray(states[0]["levels"]).shape[1])
    vec = [np.concatenate([np.asarray(s["levels"], np.float64), np.asarray(s["real"], np.float64)], 1) for s in states]
    d = vec[0].shape[1]
    if any(v.shape[1] != d for v in vec):
        raise TokenizerError("texture states of different layouts (another tokenizer?) cannot be fitted together")
    full = [v[(v > -127).all(1)] for v in vec]
    x = np.concatenate(full)
    if len(x) < 2 * d:
        raise TokenizerError(f"fit_texture_prior needs at least {2 * d} full 10-s segments, got {len(x)}: "
                             f"give it more (or longer) recordings")
    mean = x.mean(0)
    cov = np.cov(x.T)
    cov = cov + ridge * np.eye(d) * max(float(np.trace(cov)) / d, 1e-9)
    chol = np.linalg.cholesky(cov)
    num = den = 0.0
    for v in vec:
        ok = (v > -127).all(1)
        z = np.linalg.solve(chol, (v - mean).T).T
        pair = ok[1:] & ok[:-1]
        num += float((z[1:][pair] * z[:-1][pair]).sum())
        den += float((z[ok] ** 2).sum())
    rho = float(np.clip(num / den, 0.0, 0.99)) if den > 0 else 0.0
    amp = np.concatenate([np.asarray(s["lines"], np.float64).reshape(-1, *np.asarray(s["lines"]).shape[1:])
                          for s in states])  # (segments, L, 2)
    lm = np.log1p(np.hypot(amp[..., 0], amp[..., 1]))  # (segments, L)
    return TexturePrior(mean=torch.from_numpy(mean), chol=torch.from_numpy(chol), rho=rho, n_levels=n_levels,
                        line_log_mean=torch.from_numpy(lm.mean(0)), line_log_sd=torch.from_numpy(lm.std(0)),
                        fs=float(fs), n_segments=int(len(x)))


def prior_records(spec: str) -> list[str]:
    """The MIT-BIH records a prior is fitted on: ``train`` (DS1 minus the validation records, what the LMs train
    on), ``ds1``, or a comma list of DS1 records; anything else (a DS2 record) is refused."""
    from ecg2llm.core.errors import ConfigError

    from .splits import inter_patient_split

    sp = inter_patient_split()
    if spec == "train":
        return list(sp.train)
    if spec == "ds1":
        return [*sp.train, *sp.valid]
    recs = [r.strip() for r in spec.split(",") if r.strip()]
    bad = [r for r in recs if r not in (*sp.train, *sp.valid)]
    if not recs or bad:
        raise ConfigError(f"--records must be train, ds1 or a comma list of DS1 records (never DS2); "
                          f"not DS1: {bad or spec!r}")
    return recs


def measured_states(tok, records: list[str], data_dir, chunk_s: float = 30.0) -> list[dict]:
    """``state["texture"]`` that ``tok`` (a beat tokenizer with a texture bank) measures on each ``chunk_s``
    piece of each record's MLII (a tqdm bar over records): what :func:`fit_texture_prior` fits."""
    from tqdm.auto import tqdm

    from .data import read_record

    n = int(round(chunk_s * tok.fs))
    out = []
    for r in tqdm(records, desc="texture states", unit="record"):
        x = read_record(r, data_dir, lead="MLII", fs=tok.fs, annotations=False).signal
        for s in range(0, len(x) - n + 1, n):
            out.append(tok.encode_beats(x[s : s + n], tok.fs).state["texture"])
    return out
