"""The token store: every record's tokens in one flat memory-mappable array, plus an index.

Layout of a store folder (nanoGPT ``prepare.py`` style, JSON only)::

    meta.json     format version, dtype, token count, tokenizer config + weights hash + rates, split
    index.json    one entry per (record, lead): split, [start, end) offsets into tokens.bin, n_samples,
                  offsets into the state arrays
    tokens.bin    flat uint16 (vocab <= 65536) or int32 array, read with ``np.memmap``
    state_<key>.bin  per-window side information of tokenizers that need it (the seed's window min/max),
                  float32, concatenated in index order

A store is written into a temporary folder and renamed into place (:func:`ecg2llm.core.io.atomic_path`),
so an interrupted write leaves the previous store or none, never a half one.

A build with several processes writes a *sharded* store (format 2, :mod:`ecg2llm.tokenizer.shards`): one such
folder per process under the store, a global ``index.json`` whose offsets run over the shards in order,
and ``TokenStore.tokens`` a :class:`ecg2llm.tokenizer.shards.ShardedArray` over their memmaps. Readers see the same
API and the same offsets as for a one-file store.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ecg2llm.core.errors import StoreError

from .shards import SHARDED_FORMAT_VERSION, ShardedArray

FORMAT_VERSION = 1  # one tokens.bin; SHARDED_FORMAT_VERSION (2): shard folders and a global index


@dataclass
class StoreEntry:
    """Index entry of one (record, lead) in a store."""

    record: str
    lead: str
    split: str
    start: int
    end: int
    n_samples: int
    state_offsets: dict  # key -> [start, end) into state_<key>.bin

    @property
    def n_tokens(self) -> int:
        return self.end - self.start


def token_dtype(vocab_size: int) -> np.dtype:
    """Smallest integer dtype holding ids below ``vocab_size``."""
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.int32)


class StoreWriter:
    """Append (record, lead) token arrays to a store being written in ``folder`` (a temporary path).

    Use through :func:`write_store`, which handles the atomic rename.
    """

    def __init__(self, folder: Path, tokenizer_meta: dict, vocab_size: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dtype = token_dtype(vocab_size)
        self.vocab_size = int(vocab_size)
        self.tokenizer_meta = tokenizer_meta
        self._tokens = open(self.folder / "tokens.bin", "wb")
        self._states: dict[str, object] = {}
        self._state_len: dict[str, int] = {}
        self.entries: list[StoreEntry] = []
        self.n_tokens = 0

    def add(self, record: str, lead: str, split: str, ids: np.ndarray, state: dict | None,
            n_samples: int) -> StoreEntry:
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise StoreError(f"record {record} lead {lead}: ids outside [0, {self.vocab_size})")
        self._tokens.write(ids.astype(self.dtype).tobytes())
        offsets = {}
        for key, value in (state or {}).items():
            arr = np.asarray(value)
            if arr.ndim != 1:  # scalars (n_samples) live in the entry itself
                continue
            if key not in self._states:
                self._states[key] = open(self.folder / f"state_{key}.bin", "wb")
                self._state_len[key] = 0
            self._states[key].write(arr.astype(np.float32).tobytes())  # type: ignore[attr-defined]
            offsets[key] = [self._state_len[key], self._state_len[key] + len(arr)]
            self._state_len[key] += len(arr)
        e = StoreEntry(record, lead, split, self.n_tokens, self.n_tokens + len(ids), int(n_samples), offsets)
        self.n_tokens += len(ids)
        self.entries.append(e)
        return e

    def close(self, extra_meta: dict | None = None) -> None:
        for f in (self._tokens, *self._states.values()):
            f.flush()  # type: ignore[attr-defined]
            os.fsync(f.fileno())  # type: ignore[attr-defined]  # on disk before the folder is renamed in
            f.close()  # type: ignore[attr-defined]
        from ecg2llm.core.io import write_json

        meta = {
            "format_version": FORMAT_VERSION, "dtype": self.dtype.name, "n_tokens": self.n_tokens,
            "vocab_size": self.vocab_size, "state_keys": sorted(self._states),
            "state_lengths": dict(sorted(self._state_len.items())),
            "tokenizer": self.tokenizer_meta, **(extra_meta or {}),
        }
        write_json(self.folder / "index.json", [asdict(e) for e in self.entries])
        write_json(self.folder / "meta.json", meta)


class TokenStore:
    """Read-only view of a token store (memory-mapped; nothing is loaded whole).

    ``tokens`` is the flat id array that entry offsets point into: an ``np.memmap`` of ``tokens.bin``, or a
    :class:`ecg2llm.tokenizer.shards.ShardedArray` over the shards' memmaps (same indexing, same offsets).

    Examples
    --------
    >>> store = TokenStore.open("runs/store")                                # doctest: +SKIP
    >>> [e.record for e in store.entries(split="train")][:3]                 # doctest: +SKIP
    >>> crops = store.random_crops(256, 8, split="train", rng=np.random.default_rng(0))  # (8, 256)
    """

    def __init__(self, path: Path, meta: dict, entries: list[StoreEntry], tokens: np.ndarray | ShardedArray):
        self.path = path
        self.meta = meta
        self._entries = entries
        self.tokens = tokens
        self._state_arrays: dict[str, np.ndarray | ShardedArray] = {}

    # ------------------------------------------------------------------ open + validate
    @classmethod
    def open(cls, path: str | Path) -> "TokenStore":
        """Open and validate a store folder (one-file or sharded); raises :class:`StoreError` naming what is wrong."""
        p = Path(path)
        if not p.is_dir():
            raise StoreError(f"token store {p} does not exist; build it with "
                             f"`python -m ecg2llm.tokenizer.tokenize_db --out {p}`")
        meta = _read_json(p / "meta.json", "meta")
        index = _read_json(p / "index.json", "index")
        for key in ("dtype", "n_tokens", "vocab_size", "tokenizer"):
            if key not in meta:
                raise StoreError(f"{p / 'meta.json'} lacks '{key}'; the store is corrupt, rebuild it")
        version = meta.get("format_version")
        if version not in (FORMAT_VERSION, SHARDED_FORMAT_VERSION):
            raise StoreError(f"{p}: store format {version} is not {FORMAT_VERSION} or {SHARDED_FORMAT_VERSION}; "
                             f"rebuild it")
        try:
            dtype = np.dtype(meta["dtype"])
            n = int(meta["n_tokens"])
        except (TypeError, ValueError) as e:
            raise StoreError(f"{p / 'meta.json'}: bad dtype/n_tokens ({e}); rebuild the store") from None
        if version == FORMAT_VERSION:
            tokens: np.ndarray | ShardedArray = _open_tokens(p / "tokens.bin", dtype, n)
        else:
            shards = meta.get("shards")
            if not isinstance(shards, list) or not shards:
                raise StoreError(f"{p / 'meta.json'}: a sharded store (format 2) without a 'shards' list; rebuild it")
            parts = [_open_tokens(p / str(sh.get("path")) / "tokens.bin", dtype, int(sh.get("n_tokens", -1)))
                     for sh in shards]
            tokens = ShardedArray(parts, dtype)
            if len(tokens) != n:
                raise StoreError(f"{p}: the shards hold {len(tokens)} tokens but meta.json says {n}; rebuild the store")
        try:
            entries = [StoreEntry(**e) for e in index]
        except TypeError as e:
            raise StoreError(f"{p / 'index.json'} has malformed entries ({e}); rebuild the store") from None
        bounds = tokens.bounds if isinstance(tokens, ShardedArray) else None
        for e in entries:
            if not (0 <= e.start <= e.end <= n):
                raise StoreError(
                    f"{p / 'index.json'}: record {e.record} lead {e.lead} points to tokens [{e.start}, {e.end}) "
                    f"past the end of tokens.bin ({n}); rebuild the store"
                )
            # an entry inside one shard is read as a view of that shard's memmap; one across a boundary is
            # not something a build writes, so it means a hand-edited or corrupt index
            if bounds is not None and e.end > e.start and (np.searchsorted(bounds, e.start, "right")
                                                           != np.searchsorted(bounds, e.end - 1, "right")):
                raise StoreError(f"{p / 'index.json'}: record {e.record} lead {e.lead} crosses a shard boundary; "
                                 f"the index is corrupt, rebuild the store")
        return cls(p, meta, entries, tokens)

    @property
    def shard_paths(self) -> list[Path]:
        """The folders holding ``tokens.bin`` files: the store itself, or its shards in order."""
        return [self.path / sh["path"] for sh in self.meta["shards"]] if "shards" in self.meta else [self.path]

    # ------------------------------------------------------------------ queries
    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def tokenizer_config(self) -> dict:
        return dict(self.meta["tokenizer"].get("config", {}))

    @property
    def tokenizer_hash(self) -> str | None:
        return self.meta["tokenizer"].get("weights_hash")

    def entries(self, split: str | Iterable[str] | None = None, lead: str | None = None) -> list[StoreEntry]:
        """Index entries, optionally filtered by split name(s) and lead."""
        splits = {split} if isinstance(split, str) else (set(split) if split is not None else None)
        return [e for e in self._entries if (splits is None or e.split in splits) and (lead is None or e.lead == lead)]

    def get(self, record: str, lead: str = "MLII") -> StoreEntry:
        for e in self._entries:
            if e.record == str(record) and e.lead == lead:
                return e
        have = sorted({e.record for e in self._entries})
        raise StoreError(f"record {record} lead {lead} is not in store {self.path} (records: {have})")

    def tokens_of(self, entry: StoreEntry) -> np.ndarray:
        """The token ids of one entry (a memmap view, int64 copy not made)."""
        return self.tokens[entry.start:entry.end]

    def state_of(self, entry: StoreEntry) -> dict | None:
        """The decode state of one entry (``None`` for stateless tokenizers)."""
        if not entry.state_offsets:
            return None
        state: dict = {"n_samples": entry.n_samples}
        for key, (a, b) in entry.state_offsets.items():
            state[key] = np.asarray(self._state_array(key)[a:b])
        return state

    def _state_array(self, key: str) -> np.ndarray | ShardedArray:
        """The flat float32 ``state_<key>`` array (a memmap, or one per shard), opened on first use."""
        if key not in self._state_arrays:
            parts = []
            for folder in self.shard_paths:
                f = folder / f"state_{key}.bin"
                parts.append(np.memmap(f, dtype=np.float32, mode="r") if f.is_file() and f.stat().st_size
                             else np.zeros(0, np.float32))
            self._state_arrays[key] = parts[0] if len(parts) == 1 else ShardedArray(parts, np.float32)
        return self._state_arrays[key]

    def iter_records(self, split: str | None = None) -> Iterator[tuple[StoreEntry, np.ndarray]]:
        for e in self.entries(split):
            yield e, self.tokens_of(e)

    def n_tokens(self, split: str | Iterable[str] | None = None) -> int:
        return sum(e.n_tokens for e in self.entries(split))

    def random_crops(self, length: int, n: int, split: str | Iterable[str] | None = "train",
                     rng: np.random.Generator | None = None) -> np.ndarray:
        """``n`` random crops of ``length`` consecutive tokens from the split's records, shape ``(n, length)``.

        A record is drawn with probability proportional to its number of possible crops, then a start
        within it uniformly, so every valid crop position is equally likely. Crops never cross records.
        """
        rng = rng if rng is not None else np.random.default_rng()
        ents = [e for e in self.entries(split) if e.n_tokens >= length]
        if not ents:
            raise StoreError(f"no record in split {split!r} of {self.path} has >= {length} tokens")
        weights = np.array([e.n_tokens - length + 1 for e in ents], dtype=np.float64)
        which = rng.choice(len(ents), size=n, p=weights / weights.sum())
        out = np.empty((n, length), dtype=np.int64)
        for i, w in enumerate(which):
            e = ents[w]
            s = e.start + int(rng.integers(0, e.n_tokens - length + 1))
            out[i] = self.tokens[s:s + length]
        return out


def _open_tokens(tok_file: Path, dtype: np.dtype, n: int) -> np.ndarray:
    """Memory-map ``tok_file`` after checking it holds exactly ``n`` tokens."""
    if not tok_file.is_file():
        raise StoreError(f"{tok_file} is missing; rebuild the store")
    size = tok_file.stat().st_size
    if size != n * dtype.itemsize:
        raise StoreError(
            f"{tok_file} holds {size // dtype.itemsize} tokens but meta.json says {n}: the file is truncated "
            f"or the store is corrupt; rebuild it"
        )
    return np.memmap(tok_file, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise StoreError(f"{path} is missing: the store is incomplete; rebuild it")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise StoreError(f"{path} is not valid JSON ({e}); the store's {what} is corrupt, rebuild it") from None
