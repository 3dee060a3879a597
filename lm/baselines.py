"""Unigram and bigram token models: the floor a GPT's bits/token must beat to mean anything.

Both are fitted by counting on the training records (pairs never cross a record boundary) with add-k
(Lidstone) smoothing, and scored on exactly the sequences the LM is scored on: the first token of a
sequence follows BOS, so the bigram model predicts it with its unigram distribution, as the LM must
predict it from BOS alone. The smoothing constant ``k`` is chosen on the validation sequences from a small
grid (that helps the baselines, never the LM), then used unchanged on the test sequences.

Examples
--------
>>> import numpy as np
>>> train = [np.array([0, 1, 0, 1, 0, 1])]
>>> m = NGramModel(order=2, vocab_size=2, k=0.01).fit(train)
>>> round(m.bits_per_token(np.array([[0, 1, 0, 1]])), 2)   # first token 1 bit, then ~0 each
0.25
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

K_GRID: tuple[float, ...] = (1e-3, 1e-2, 0.1, 0.5, 1.0)


class NGramModel:
    """Add-k smoothed unigram (``order=1``) or bigram (``order=2``) model over ``vocab_size`` codes.

    Bigram counts are kept sparse (sorted pair codes ``a * V + b`` and their counts), so a 4096-code
    vocabulary costs memory in proportion to the pairs seen, not V².
    """

    def __init__(self, order: int, vocab_size: int, k: float = 0.5):
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        self.order, self.V, self.k = int(order), int(vocab_size), float(k)
        self.uni = np.zeros(self.V, dtype=np.int64)
        self.ctx = np.zeros(self.V, dtype=np.int64)  # occurrences of a token followed by another one
        self.pair_keys = np.zeros(0, dtype=np.int64)
        self.pair_counts = np.zeros(0, dtype=np.int64)
        self.k_uni = float(k)

    def fit(self, sequences: Iterable[np.ndarray]) -> "NGramModel":
        """Count tokens (and adjacent pairs within each sequence)."""
        keys = []
        for s in sequences:
            s = np.asarray(s, dtype=np.int64)
            self.uni += np.bincount(s, minlength=self.V)
            if self.order == 2 and len(s) > 1:
                self.ctx += np.bincount(s[:-1], minlength=self.V)
                keys.append(s[:-1] * self.V + s[1:])
        if keys:
            self.pair_keys, self.pair_counts = np.unique(np.concatenate(keys), return_counts=True)
        return self

    def _log2_unigram(self, t: np.ndarray, k: float) -> np.ndarray:
        n = self.uni.sum()
        return np.log2((self.uni[t] + k) / (n + k * self.V))

    def _log2_bigram(self, a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
        key = a * self.V + b
        c_ab = np.zeros(len(key), dtype=np.int64)
        if len(self.pair_keys):
            pos = np.minimum(np.searchsorted(self.pair_keys, key), len(self.pair_keys) - 1)
            hit = self.pair_keys[pos] == key
            c_ab[hit] = self.pair_counts[pos[hit]]
        return np.log2((c_ab + k) / (self.ctx[a] + k * self.V))

    def bits_per_token(self, crops: np.ndarray, k: float | None = None) -> float:
        """Mean -log2 p over every token of ``crops`` ``(N, T)``; the first of each row follows BOS."""
        crops = np.asarray(crops, dtype=np.int64)
        k = self.k if k is None else float(k)
        first = self._log2_unigram(crops[:, 0], self.k_uni if self.order == 2 else k)
        if self.order == 1:
            rest = self._log2_unigram(crops[:, 1:].reshape(-1), k)
        else:
            rest = self._log2_bigram(crops[:, :-1].reshape(-1), crops[:, 1:].reshape(-1), k)
        return float(-(first.sum() + rest.sum()) / crops.size)

    def tune_k(self, crops: np.ndarray, grid: Sequence[float] = K_GRID) -> float:
        """Set ``k`` to the grid value with the lowest bits/token on ``crops``; returns it."""
        scores = {kk: self.bits_per_token(crops, kk) for kk in grid}
        self.k = min(scores, key=scores.get)
        return self.k


def fit_baselines(train_sequences: Sequence[np.ndarray], vocab_size: int, valid_crops: np.ndarray
                  ) -> dict[str, NGramModel]:
    """Fit unigram and bigram models on ``train_sequences``, tune each ``k`` on ``valid_crops``.

    The bigram model predicts a sequence's first token with the tuned unigram distribution.
    """
    train_sequences = list(train_sequences)
    uni = NGramModel(1, vocab_size).fit(train_sequences)
    uni.tune_k(valid_crops)
    bi = NGramModel(2, vocab_size).fit(train_sequences)
    bi.k_uni = uni.k
    bi.tune_k(valid_crops)
    return {"unigram": uni, "bigram": bi}


def baseline_metrics(models: dict[str, NGramModel], crops: np.ndarray, tokens_per_second: float) -> dict:
    """``{name: {"bits_per_token", "bits_per_second", "k"}}`` of each model on ``crops``."""
    out = {}
    for name, m in models.items():
        b = m.bits_per_token(crops)
        out[name] = {"bits_per_token": b, "bits_per_second": b * tokens_per_second, "k": m.k,
                     "loss": b * math.log(2)}
    return out
