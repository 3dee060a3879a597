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

    def sample(self, n_samples: int, n_tokens: int, seed: int = 0) -> np.ndarray:
        """Draw ``(n_samples, n_tokens)`` ids from the smoothed model (the bigram sampler, stage 3's floor).

        The first token comes from the unigram distribution (it follows BOS); each next one from
        ``p(b | a) = (c_ab + k) / (c_a + k V)``: with probability ``c_a / (c_a + k V)`` a successor seen
        after ``a`` in training, drawn in proportion to its count, otherwise a uniform code (the
        smoothing mass). A unigram model draws every token from ``(c_b + k) / (N + k V)``.
        """
        rng = np.random.default_rng(seed)
        V = self.V
        p_uni = (self.uni + (self.k_uni if self.order == 2 else self.k)).astype(np.float64)
        cdf_uni = np.cumsum(p_uni / p_uni.sum())
        out = np.empty((int(n_samples), int(n_tokens)), dtype=np.int64)
        out[:, 0] = np.minimum(np.searchsorted(cdf_uni, rng.random(n_samples), side="right"), V - 1)
        if self.order == 1:
            if n_tokens > 1:
                out[:, 1:] = np.minimum(
                    np.searchsorted(cdf_uni, rng.random((n_samples, n_tokens - 1)), side="right"), V - 1)
            return out
        first = self.pair_keys // V  # pair_keys are sorted, so each context's successors are contiguous
        start = np.searchsorted(first, np.arange(V), side="left")
        cum = np.concatenate([[0], np.cumsum(self.pair_counts)])  # cum[j] = counts before pair j
        for t in range(1, int(n_tokens)):
            a = out[:, t - 1]
            c_a = self.ctx[a]
            seen = rng.random(n_samples) * (c_a + self.k * V) < c_a
            nxt = rng.integers(0, V, n_samples)
            if seen.any():
                r = (rng.random(int(seen.sum())) * c_a[seen]).astype(np.int64)  # in [0, c_a)
                j = np.searchsorted(cum, cum[start[a[seen]]] + r, side="right") - 1
                nxt[seen] = self.pair_keys[j] % V
            out[:, t] = nxt
        return out

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
