"""A token store made of shards: one folder per process of a sharded build, one global index.

A sharded store (format 2) is what ``accelerate launch ... tokenizer/tokenize_db.py`` writes with more than
one process::

    meta.json                    format_version 2, the global token count, "shards": [{path, n_tokens, ...}]
    index.json                   one entry per (record, lead), offsets into the *concatenation* of the shards
    shard-00000-of-00002/        a complete one-shard store (its own meta.json, index.json, tokens.bin,
    shard-00001-of-00002/        state_<key>.bin) with local offsets: each process writes its own

Global offsets are the local offsets of a shard plus the tokens of the shards before it, so every reader
of :class:`ecg2llm.tokenizer.store.TokenStore` (``tokens``, ``tokens_of``, ``random_crops``...) is unchanged: its
``tokens`` is a :class:`ShardedArray`, which indexes the shards' memmaps with global offsets and loads
nothing whole. Records are assigned to processes in contiguous runs (:func:`plan_shards`), so the
concatenated shards hold exactly the bytes, and the global index exactly the entries, that a
one-process build writes.
"""
from __future__ import annotations

import bisect
import json
import numbers
from pathlib import Path
from typing import Sequence

import numpy as np

from ecg2llm.core.errors import StoreError

SHARDED_FORMAT_VERSION = 2


def shard_name(rank: int, world_size: int) -> str:
    """Folder name of shard ``rank`` of ``world_size`` (``shard-00001-of-00002``)."""
    return f"shard-{rank:05d}-of-{world_size:05d}"


def plan_shards(sizes: Sequence[float], n: int) -> list[tuple[int, int]]:
    """Cut items of the given sizes into ``n`` contiguous runs ``[a, b)`` of near-equal total size.

    Contiguous (not round-robin) so that the shards, concatenated in rank order, are the one-process store.
    Cut ``k`` is placed where the running total is closest to ``k / n`` of the whole; with many records per
    process the largest imbalance is about one record.

    Examples
    --------
    >>> plan_shards([1, 1, 1, 1], 2)
    [(0, 2), (2, 4)]
    >>> plan_shards([5, 1, 1, 1, 1, 1], 2)
    [(0, 1), (1, 6)]
    """
    if n < 1:
        raise ValueError(f"need at least one shard, got {n}")
    cum = np.concatenate([[0.0], np.cumsum(np.asarray(sizes, dtype=np.float64))])  # (items + 1,)
    total = cum[-1]
    cuts = [0]
    for k in range(1, n):
        j = int(np.argmin(np.abs(cum - k * total / n))) if total > 0 else round(k * len(sizes) / n)
        cuts.append(max(j, cuts[-1]))
    cuts.append(len(sizes))
    return [(cuts[i], cuts[i + 1]) for i in range(n)]


class ShardedArray:
    """Read-only 1-D concatenation of arrays (memmaps), indexed with global offsets; nothing is loaded whole.

    Supports what the token store's readers do with a flat array: ``len``, ``dtype``, ``shape``, an integer,
    a slice (a view of one shard's memmap when it stays inside that shard, which store entries always do),
    an integer array of any shape (gathered shard by shard) and ``np.asarray`` (the one call that does load
    everything, for small stores and tests).

    Parameters
    ----------
    parts : list of np.ndarray
        One 1-D array per shard, in order, all of one dtype.
    """

    def __init__(self, parts: Sequence[np.ndarray], dtype: np.dtype | str | None = None):
        dtypes = {np.dtype(p.dtype) for p in parts}
        if len(dtypes) > 1:
            raise StoreError(f"shards have different dtypes {sorted(map(str, dtypes))}; rebuild the store")
        self.dtype = np.dtype(dtype) if dtype is not None else (dtypes.pop() if dtypes else np.dtype(np.uint16))
        self.parts = [p for p in parts if len(p)]  # empty shards own no offsets
        self.bounds = np.concatenate([[0], np.cumsum([len(p) for p in self.parts])]).astype(np.int64)  # (S + 1,)
        self._bounds = self.bounds.tolist()  # bisect on a list: a slice costs ~1 us more than a memmap's, not ~4

    def __len__(self) -> int:
        return int(self.bounds[-1])

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    @property
    def ndim(self) -> int:
        return 1

    @property
    def size(self) -> int:
        return len(self)

    def __repr__(self) -> str:
        return f"ShardedArray({len(self)} x {self.dtype}, {len(self.parts)} shards)"

    def _shard_of(self, i):
        return np.searchsorted(self.bounds, i, side="right") - 1

    def __getitem__(self, key):
        n = len(self)
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                return self[np.arange(start, stop, step)]
            if stop <= start:
                return np.empty(0, self.dtype)
            b = self._bounds
            s0, s1 = bisect.bisect_right(b, start) - 1, bisect.bisect_right(b, stop - 1) - 1
            if s0 == s1:
                return self.parts[s0][start - b[s0]:stop - b[s0]]
            pieces = [self.parts[s][max(start, b[s]) - b[s]:min(stop, b[s + 1]) - b[s]] for s in range(s0, s1 + 1)]
            return np.concatenate(pieces)
        if isinstance(key, numbers.Integral):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"index {key} is out of bounds for a sharded array of {n} tokens")
            s = int(self._shard_of(i))
            return self.parts[s][i - self.bounds[s]]
        idx = np.asarray(key)
        if idx.dtype == bool or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"a sharded array takes integers, slices or integer arrays, not {idx.dtype} arrays")
        flat = idx.reshape(-1).astype(np.int64)
        flat = np.where(flat < 0, flat + n, flat)
        if flat.size and (flat.min() < 0 or flat.max() >= n):
            raise IndexError(f"index array reaches outside [0, {n})")
        shard = self._shard_of(flat)
        out = np.empty(flat.shape, self.dtype)
        for s in np.unique(shard):
            m = shard == s
            out[m] = self.parts[s][flat[m] - self.bounds[s]]
        return out.reshape(idx.shape)

    def __array__(self, dtype=None, copy=None):
        whole = np.concatenate(self.parts) if self.parts else np.empty(0, self.dtype)
        return whole.astype(dtype) if dtype is not None else whole


def merge_shards(folder: str | Path, shard_dirs: Sequence[str], extra_meta: dict | None = None) -> dict:
    """Write the global ``meta.json`` and ``index.json`` of a sharded store over its shard folders.

    Parameters
    ----------
    folder : path
        The store folder (still the temporary one: it is renamed into place after this).
    shard_dirs : list of str
        Shard folder names inside ``folder``, in rank order; each is a complete one-shard store.
    extra_meta : dict, optional
        More keys for the global ``meta.json`` (``db``, ``leads``, ``skipped``, ``split``, ``build``).

    Returns
    -------
    dict
        The global ``meta.json`` written.
    """
    from ecg2llm.core.io import write_json

    folder = Path(folder)
    metas, entries, shards = [], [], []
    token_base, state_base = 0, {}
    for name in shard_dirs:
        meta = json.loads((folder / name / "meta.json").read_text())
        index = json.loads((folder / name / "index.json").read_text())
        state_len = {k: int(v) for k, v in meta.get("state_lengths", {}).items()}
        for e in index:
            e = dict(e, start=e["start"] + token_base, end=e["end"] + token_base)
            e["state_offsets"] = {k: [a + state_base.get(k, 0), b + state_base.get(k, 0)]
                                  for k, (a, b) in e["state_offsets"].items()}
            entries.append(e)
        shards.append({"path": name, "n_tokens": int(meta["n_tokens"]), "state_lengths": state_len})
        token_base += int(meta["n_tokens"])
        for k, v in state_len.items():
            state_base[k] = state_base.get(k, 0) + v
        metas.append(meta)
    first = metas[0]
    for name, m in zip(shard_dirs, metas):
        if m["tokenizer"] != first["tokenizer"] or m["dtype"] != first["dtype"]:
            raise StoreError(f"shard {name} was written by another tokenizer or dtype than {shard_dirs[0]}")
    meta = {
        "format_version": SHARDED_FORMAT_VERSION, "dtype": first["dtype"], "n_tokens": token_base,
        "vocab_size": first["vocab_size"], "state_keys": sorted(state_base), "state_lengths": state_base,
        "tokenizer": first["tokenizer"], "shards": shards, **(extra_meta or {}),
    }
    write_json(folder / "index.json", entries)
    write_json(folder / "meta.json", meta)
    return meta
