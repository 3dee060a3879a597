"""Training and evaluation sequences from the token store.

Training batches are a pure function of ``(seed, optimizer step, micro-step, process index)``: each draws
its crops with ``np.random.default_rng([seed, step, micro, rank])``. Nothing about the data position has to
be saved in a checkpoint: restoring the step restores the data stream exactly, whatever happened before
(nanoGPT draws ``torch.randint`` offsets from a global RNG and cannot resume its data stream).

Every sequence starts with BOS followed by ``context_length - 1`` consecutive tokens of one record (crops
never cross records). Evaluation uses fixed, non-overlapping tiles of the held-out records, the same for
every run, so numbers are comparable across runs and with the n-gram baselines of :mod:`ecg2llm.lm.baselines`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ecg2llm.core.errors import StoreError
from ecg2llm.tokenizer.store import TokenStore


def open_or_build_store(cfg, tok, accelerator=None) -> TokenStore:
    """Open the store named in ``cfg.store``; build it with ``tok`` first if it does not exist.

    With several processes the main process builds while the others wait
    (``accelerator.main_process_first``), then every process opens the same folder.

    Raises
    ------
    StoreError
        If the store exists but was made by a different tokenizer (weights hash differs).
    """
    from contextlib import nullcontext

    path = Path(cfg.store)
    ctx = accelerator.main_process_first() if accelerator is not None else nullcontext()
    with ctx:
        if not (path / "meta.json").is_file():
            from ecg2llm.tokenizer.build_store import TokenizeConfig, build_store

            is_main = accelerator is None or accelerator.is_main_process
            if is_main:
                print(f"token store {path} not found: building it with tokenizer {cfg.tokenizer!r} "
                      f"(leads {cfg.leads})", flush=True)
                build_store(TokenizeConfig(out=str(path), tokenizer=cfg.tokenizer, data_dir=cfg.data_dir,
                                           records=list(cfg.records), leads=list(cfg.leads),
                                           valid_records=list(cfg.valid_records), download=cfg.download),
                            tokenizer=tok, progress=True)
        store = TokenStore.open(path)
    if store.tokenizer_hash != tok.weights_hash:
        raise StoreError(
            f"token store {path} was built by a tokenizer with weights hash {str(store.tokenizer_hash)[:12]}…, "
            f"not by {cfg.tokenizer!r} ({tok.weights_hash[:12]}…); delete the store or point --store elsewhere"
        )
    if store.vocab_size != tok.vocab_size:
        raise StoreError(f"token store {path} has vocabulary {store.vocab_size}, tokenizer {tok.vocab_size}")
    valid = sorted({e.record for e in store.entries("valid")})
    present = {e.record for e in store.entries()}
    want = sorted(str(r) for r in cfg.valid_records if str(r) in present)
    if cfg.valid_records and valid != want:
        raise StoreError(
            f"token store {path} holds validation records {valid}, but the config asks for {want}: splits are "
            f"fixed when a store is built; point --store at another folder (it is built on first use) or use "
            f"the store's validation records"
        )
    have = {e.split for e in store.entries()}
    for split in ("train", "valid"):
        if split not in have:
            raise StoreError(f"token store {path} has no '{split}' records (splits present: {sorted(have)})")
    return store


def with_bos(crops: np.ndarray, bos_id: int) -> torch.Tensor:
    """Prepend BOS to each row: ``(N, T)`` ids -> ``(N, T + 1)`` int64 tensor."""
    crops = np.asarray(crops, dtype=np.int64)
    out = np.empty((crops.shape[0], crops.shape[1] + 1), dtype=np.int64)
    out[:, 0] = bos_id
    out[:, 1:] = crops
    return torch.from_numpy(out)  # (N, T + 1)


class TrainBatches:
    """Deterministic random training crops: ``batch(step, micro, rank)`` is the same in every run.

    Parameters
    ----------
    store : TokenStore or ecg2llm.lm.conditioning.ConditionedCorpus
        Where crops come from (a conditional LM's corpus adds the rhythm prefix and beat labels).
    context_length : int
        Sequence length including BOS.
    batch_size : int
        Sequences per call.
    bos_id : int
    seed : int
    split : str
    """

    def __init__(self, store: TokenStore, context_length: int, batch_size: int, bos_id: int, seed: int,
                 split: str = "train"):
        self.store, self.length, self.batch_size = store, int(context_length) - 1, int(batch_size)
        self.bos_id, self.seed, self.split = int(bos_id), int(seed), split
        if hasattr(store, "longest"):  # a ConditionedCorpus
            longest = store.longest(split)
        else:
            longest = max((e.n_tokens for e in store.entries(split)), default=0)
        if longest < self.length:
            raise StoreError(
                f"no '{split}' record of {store.path} holds context_length - 1 = {self.length} tokens "
                f"(longest: {longest}); lower context_length"
            )

    def batch(self, step: int, micro: int = 0, rank: int = 0, return_distill: bool = False):
        """Sequences for one micro-step of one process, shape ``(batch_size, context_length)``; with
        ``return_distill`` (a beat corpus with guided samples) also the ``(batch_size,)`` bool of their rows."""
        rng = np.random.default_rng([self.seed, int(step), int(micro), int(rank)])
        if return_distill:
            crops, rows = self.store.random_crops(self.length, self.batch_size, split=self.split, rng=rng,
                                                  return_distill=True)
            return with_bos(crops, self.bos_id), rows
        crops = self.store.random_crops(self.length, self.batch_size, split=self.split, rng=rng)
        return with_bos(crops, self.bos_id)  # (B, L)


def tile_crops(store: TokenStore, split: str, length: int, max_crops: int = 0) -> np.ndarray:
    """Non-overlapping tiles of ``length`` tokens over every record of ``split``, in index order.

    Each record contributes ``n_tokens // length`` tiles (its tail shorter than ``length`` is left out).
    With ``max_crops > 0`` an evenly spaced subset of that many tiles is kept, so a capped evaluation still
    covers every record in proportion to its length. Deterministic: no random numbers involved.

    Returns
    -------
    np.ndarray of int64, shape (n_crops, length)
    """
    starts = []
    for e in store.entries(split):
        k = e.n_tokens // length
        starts.extend(e.start + length * np.arange(k))
    if not starts:
        raise StoreError(f"split '{split}' of {store.path} has no record with >= {length} tokens")
    starts = np.asarray(starts, dtype=np.int64)
    if 0 < max_crops < len(starts):
        starts = starts[np.unique(np.linspace(0, len(starts) - 1, max_crops).round().astype(np.int64))]
    idx = starts[:, None] + np.arange(length)[None, :]  # (N, length)
    return np.asarray(store.tokens[idx], dtype=np.int64)


class LatticeNoise:
    """Input-token corruption for training: some input codes move to a neighbouring FSQ code; targets stay clean.

    Each ECG code (an id below the codebook size; BOS, condition and label tokens are never touched) is
    replaced, with probability ``rate``, by a code one step away on the FSQ lattice: one latent channel moves
    up or down one level (reflected at the ends). A lattice neighbour decodes to a slightly different 0.028-s
    segment, the kind of error sampling makes, so the model learns to predict the *clean* next token from a
    context with small errors in it -- it must lean on the window's earlier beats rather than on the last
    few codes, and it cannot recall a training crop token for token. Deterministic like
    :class:`TrainBatches`: the corruption of a batch is a pure function of ``(seed, step, micro, rank)``.

    Parameters
    ----------
    levels : sequence of int
        The FSQ tokenizer's levels (``index = sum_i digit_i * prod(levels[:i])``, :mod:`ecg2llm.tokenizer.fsq`).
    rate : float
        Share of ECG codes corrupted, in ``[0, 1)``.
    seed : int
    """

    def __init__(self, levels, rate: float, seed: int):
        self.levels = np.asarray([int(v) for v in levels], dtype=np.int64)
        if self.levels.size == 0 or self.levels.min() < 2:
            raise ValueError(f"LatticeNoise needs FSQ levels >= 2, got {list(levels)}")
        self.basis = np.concatenate([[1], np.cumprod(self.levels[:-1])]).astype(np.int64)
        self.codebook_size = int(np.prod(self.levels))
        self.rate, self.seed = float(rate), int(seed)
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"input noise rate must be in [0, 1), got {rate}")

    def __call__(self, x: torch.Tensor, step: int, micro: int = 0, rank: int = 0) -> torch.Tensor:
        """A corrupted copy of the ``(B, L)`` id batch ``x`` (``x`` itself is not modified)."""
        if self.rate == 0.0:
            return x
        ids = x.cpu().numpy()
        rng = np.random.default_rng([self.seed, 0x6E6F, int(step), int(micro), int(rank)])  # "no"ise stream
        hit = (ids < self.codebook_size) & (rng.random(ids.shape) < self.rate)
        n = int(hit.sum())
        if n == 0:
            return x
        codes = ids[hit]
        ch = rng.integers(0, len(self.levels), n)  # which latent channel moves
        digit = (codes // self.basis[ch]) % self.levels[ch]
        up = rng.random(n) < 0.5
        up = np.where(digit == 0, True, np.where(digit == self.levels[ch] - 1, False, up))  # reflect at the ends
        out = ids.copy()
        out[hit] = codes + np.where(up, 1, -1) * self.basis[ch]
        return torch.from_numpy(out).to(x.device)
