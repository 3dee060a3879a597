"""Test-only stand-in for tokenizer v3: the naive beat code of BEAT-TOKENS.md section 2, same interface.

``NaiveBeatTokenizer`` cuts R-aligned windows (-0.25 s ... +0.45 s), projects them on a fixed cosine basis
(coarse: the first ``kc`` coefficients, detail: the next ``kd``), quantizes each uniformly over +-3 sd,
and codes each RR interval in 48 log-spaced bins (0.25-2.5 s). It implements what LM v3 uses of
:class:`ecg2llm.tokenizer.beat_tokenizer.BeatTokenizer` (``encode_beats``, ``decode_beats``, ``layout``,
``rr_seconds``, ``decode_coarse``, ``save_pretrained``) so the LM can be tested without the trained one.
Never shipped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FS = 360.0
PRE, POST = int(0.25 * FS), int(0.45 * FS)
RR_EDGES = np.geomspace(0.25, 2.5, 49)


@dataclass
class BeatTokens:
    r: np.ndarray
    rr: np.ndarray
    coarse: np.ndarray
    detail: np.ndarray
    kind: np.ndarray
    state: dict = field(default_factory=dict)
    ids: np.ndarray | None = None


class NaiveBeatTokenizer:
    fs = FS

    def __init__(self, kc: int = 3, kd: int = 2, levels: int = 6, detail_levels: int = 8, sd: float = 0.3):
        self.kc, self.kd, self.levels, self.detail_levels, self.sd = kc, kd, levels, detail_levels, sd
        t = np.arange(PRE + POST)
        k = np.arange(kc + kd)[:, None]
        basis = np.cos(np.pi * (t[None] + 0.5) * (k + 1) / (PRE + POST))
        self.basis = basis / np.linalg.norm(basis, axis=1, keepdims=True)  # (kc + kd, W)
        self.weights_hash = f"naive-{kc}-{kd}-{levels}-{detail_levels}"

    @classmethod
    def from_pretrained(cls, name="naive"):
        p = Path(str(name)) / "config.json"
        return cls(**json.loads(p.read_text())) if p.is_file() else cls()

    def save_pretrained(self, folder):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "config.json").write_text(json.dumps(self.config_dict()))

    @property
    def config(self):
        """The cycle window in seconds, as tokenizer v3's config has it (what LM v3's decode reads)."""
        from types import SimpleNamespace

        return SimpleNamespace(pre_s=PRE / FS, post_s=POST / FS)

    def config_dict(self):
        return {"kc": self.kc, "kd": self.kd, "levels": self.levels, "detail_levels": self.detail_levels,
                "sd": self.sd}

    @property
    def layout(self):
        from types import SimpleNamespace

        return SimpleNamespace(rr_size=48, n_coarse=self.kc, coarse_size=self.levels, n_detail=self.kd,
                               detail_size=self.detail_levels)

    def _q(self, c, levels):
        return np.clip(np.round((c / (3 * self.sd) + 1) / 2 * (levels - 1)), 0, levels - 1).astype(np.int64)

    def _dq(self, q, levels):
        return (np.asarray(q, np.float64) / (levels - 1) * 2 - 1) * 3 * self.sd

    def detail_codebooks(self):
        """``(kd, levels, 1)``: each detail slot's dequantized values (the "codebooks" of the detail head)."""
        v = self._dq(np.arange(self.detail_levels), self.detail_levels)
        return np.broadcast_to(v[None, :, None], (self.kd, self.detail_levels, 1)).astype(np.float32)

    def rr_seconds(self, rr):
        return np.sqrt(RR_EDGES[np.asarray(rr)] * RR_EDGES[np.asarray(rr) + 1])

    def encode_beats(self, x, fs, r_peaks=None):
        x = np.asarray(x, np.float64)
        if r_peaks is None:
            from scipy.signal import find_peaks

            r_peaks, _ = find_peaks(x, height=np.percentile(x, 98) * 0.5, distance=int(0.3 * fs))
        r = np.asarray(r_peaks, np.int64)
        r = r[(r >= PRE) & (r + POST <= len(x))]
        if len(r) == 0:
            raise ValueError("no beat")
        wins = np.stack([x[p - PRE:p + POST] for p in r])
        wins = wins - np.median(wins, axis=1, keepdims=True)
        c = wins @ self.basis.T  # (n, kc + kd)
        rr_s = np.diff(np.concatenate([[r[0] - 0.8 * fs], r])) / fs
        rr = np.clip(np.searchsorted(RR_EDGES, rr_s) - 1, 0, 47)
        return BeatTokens(r, rr, self._q(c[:, :self.kc], self.levels), self._q(c[:, self.kc:], self.detail_levels),
                          np.zeros(len(r), np.int64), {"n_samples": len(x)})

    def decode_coarse(self, coarse):
        return self._dq(coarse, self.levels) @ self.basis[:self.kc]

    def decode_beats(self, bt, state=None, *, texture=False, seed=None):
        c = np.concatenate([self._dq(bt.coarse, self.levels), self._dq(bt.detail, self.detail_levels)], axis=1)
        wins = c @ self.basis
        r = np.round(np.cumsum(self.rr_seconds(bt.rr)) * self.fs).astype(np.int64)
        n = int((state or {}).get("n_samples", r[-1] + POST + 1 if len(r) else 0))
        y = np.zeros(n + PRE + POST)
        for p, w in zip(r, wins):
            if 0 <= p < n:
                y[p:p + PRE + POST] += w  # shifted by PRE
        return y[PRE:PRE + n].astype(np.float32)
