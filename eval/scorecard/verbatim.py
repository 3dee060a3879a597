"""Verbatim memorization in token space: which share of a generated stream repeats an n-token run of the
LM's training streams.

The scorecard's memorization headline (:mod:`ecg2llm.eval.scorecard.headline`) is a distance in a learned embedding: a
window counts as a near copy when it lies closer to a DS1 training window than 99 % of unseen real windows
do. That catches a patient's *look* reproduced; it does not say whether the LM replays its training tokens.
This module measures the latter, the token-level memorization of the language-model literature
("extractable" sequences): every n-gram of a generated window is looked up in the n-grams of the training
streams, tokenized with the same tokenizer.

- :func:`ngram_hashes`: the n-grams of a token stream as 64-bit polynomial hashes (collisions between
  distinct n-grams have probability ~1e-19 per pair).
- :class:`NgramIndex`: the sorted, unique n-gram hashes of the training streams; ``contains`` is a binary
  search, so a ~7 M-token corpus indexes in seconds and ~100 MB.
- :func:`window_coverage`: per window, the share of its n-gram positions found in the index.
- :func:`record_streams`: MIT-BIH records (default: the training records, DS1 minus the validation records,
  every lead), read from a local copy and tokenized with the LM's tokenizer.

At 36 tokens/s (the default tokenizer) ``n = 16`` is 0.44 s of signal, about half a beat: real DS2 windows
(patients no LM saw) share such a run with DS1 in ~1 % of 10-s windows. ``scripts/verbatim_check.py`` is
the command line.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

#: odd 64-bit multiplier of the polynomial hash (any large odd constant works)
_P = np.uint64(0x9E3779B97F4A7C15)


def ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """64-bit hashes of every n-gram of a 1-D token stream, in order (``len(ids) - n + 1`` of them).

    Parameters
    ----------
    ids : np.ndarray
        Token ids (non-negative integers).
    n : int
        n-gram length in tokens (>= 1).

    Returns
    -------
    np.ndarray of uint64, shape ``(max(0, len(ids) - n + 1),)``
    """
    if n < 1:
        raise ValueError(f"n-gram length must be >= 1, got {n}")
    a = np.asarray(ids).astype(np.uint64, copy=False).ravel()
    m = len(a) - n + 1
    if m <= 0:
        return np.zeros(0, np.uint64)
    h = np.zeros(m, np.uint64)
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
        for j in range(n):
            h = h * _P + (a[j:j + m] + np.uint64(1))  # +1: a run of id 0 does not hash like a shorter one
    return h


class NgramIndex:
    """The n-grams of a set of token streams, for membership queries.

    Parameters
    ----------
    streams : iterable of np.ndarray
        Token streams (one per record and lead); n-grams never span two streams.
    n : int
        n-gram length in tokens.
    """

    def __init__(self, streams: Iterable[np.ndarray], n: int):
        self.n = int(n)
        parts = [ngram_hashes(s, self.n) for s in streams]
        self.n_tokens = sum(len(p) + self.n - 1 for p in parts if len(p))
        self.hashes = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)

    def __len__(self) -> int:
        return len(self.hashes)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``hashes`` are n-grams of the indexed streams."""
        hashes = np.asarray(hashes, np.uint64)
        if not len(self.hashes) or not len(hashes):
            return np.zeros(len(hashes), bool)
        pos = np.searchsorted(self.hashes, hashes)
        pos = np.minimum(pos, len(self.hashes) - 1)
        return self.hashes[pos] == hashes


def window_coverage(ids: np.ndarray, index: NgramIndex, window: int) -> np.ndarray:
    """Share of each window's n-gram positions that occur in ``index``.

    Parameters
    ----------
    ids : np.ndarray
        ``(samples, tokens)`` (or one stream) of token ids; each sample is cut into consecutive windows of
        ``window`` tokens (a shorter tail is dropped).
    index : NgramIndex
    window : int
        Window length in tokens (``10 s x tokens_per_second`` in the scorecard's protocol); must exceed the
        index's n-gram length.

    Returns
    -------
    np.ndarray, shape ``(samples, windows per sample)``
        0 = no n-gram of the window is in the training streams; 1 = every one is.
    """
    ids = np.atleast_2d(np.asarray(ids))
    if window <= index.n:
        raise ValueError(f"windows of {window} tokens cannot hold a {index.n}-gram more than once; "
                         f"use a longer window or a shorter n")
    k = ids.shape[1] // window
    if k == 0:
        raise ValueError(f"samples of {ids.shape[1]} tokens are shorter than one {window}-token window")
    out = np.zeros((ids.shape[0], k))
    for i in range(ids.shape[0]):
        for j in range(k):
            out[i, j] = index.contains(ngram_hashes(ids[i, j * window:(j + 1) * window], index.n)).mean()
    return out


def summarize(cov: np.ndarray) -> dict:
    """Mean coverage, share of windows with any verbatim n-gram, and the 95th percentile / maximum."""
    c = np.asarray(cov, float).ravel()
    if not len(c):
        return {"n_windows": 0}
    return {"n_windows": int(len(c)), "mean_coverage": float(c.mean()), "share_any": float((c > 0).mean()),
            "p95_coverage": float(np.quantile(c, 0.95)), "max_coverage": float(c.max())}


def record_streams(tok, data_dir=None, records: Sequence[str] | None = None, leads: Sequence[str] = ("all",),
                   progress: bool = True) -> list[np.ndarray]:
    """Token streams of MIT-BIH records, every requested lead (in record order), tokenized with ``tok``.

    Parameters
    ----------
    tok : ecg2llm.tokenizer.base.ECGTokenizer
    data_dir : path, optional
        Folder holding ``mitdb/`` (``$ECG2LLM_DATA`` otherwise).
    records : sequence of str, optional
        Default: the LMs' training records, DS1 minus the validation records ``101, 112, 119``.
    leads : sequence of str
        Lead names, or ``("all",)`` for every lead of each record (the shipped LMs train on both).
    """
    from tqdm.auto import tqdm

    from ecg2llm.tokenizer.data import read_header, read_record, resolve_data_dir
    from ecg2llm.tokenizer.splits import DS1

    if records is None:
        records = [r for r in DS1 if r not in ("101", "112", "119")]
    root = resolve_data_dir(data_dir)
    streams = []
    for rec in tqdm(list(records), desc="tokenizing records", unit="record", disable=not progress):
        names = list(read_header(rec, root / "mitdb").sig_name or []) if tuple(leads) == ("all",) else list(leads)
        for lead in names:
            r = read_record(rec, root, lead=lead, annotations=False)
            streams.append(np.asarray(tok.encode(r.signal, r.fs)[0]))
    return streams
