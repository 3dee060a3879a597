"""The tokenizer interface every stage uses, and its save/load format.

.. code-block:: python

    from ecg2llm.tokenizer import ECGTokenizer
    tok = ECGTokenizer.from_pretrained(path)   # or "default", the shipped tokenizer
    ids, state = tok.encode(signal_mv, fs)     # 1-D int64 in [0, tok.vocab_size); state or None
    x_hat = tok.decode(ids, state)             # 1-D float32 in mV at tok.fs
    tok.fs, tok.samples_per_token, tok.vocab_size, tok.tokens_per_second

A tokenizer folder holds ``config.json`` (``tokenizer_type`` plus that type's config dataclass as a
plain dict) and ``model.safetensors``, plus optional small side files a type reads in :meth:`load_extras`
(``wander.json`` and ``texture.safetensors`` of ``fsq2``). Nothing is pickled. ``weights_hash`` is a SHA-256 over the
tensors (sorted by name), so a saved LM can refuse a tokenizer whose weights differ from its own.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ecg2llm.core.errors import TokenizerError
from ecg2llm.core.hub import load_weights, push_folder, read_config, resolve_folder, save_folder, state_dict_hash

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
_REGISTRY: dict[str, type["ECGTokenizer"]] = {}


def register_tokenizer(name: str):
    """Class decorator: make a tokenizer type loadable by ``from_pretrained`` through ``config.json``."""

    def deco(cls):
        cls.tokenizer_type = name
        _REGISTRY[name] = cls
        return cls

    return deco


class ECGTokenizer:
    """Base class: turns a 1-D ECG in mV into integer tokens and back.

    Subclasses set ``config_class`` (a dataclass), build ``self.model`` (a ``torch.nn.Module``) and
    implement :meth:`_encode` / :meth:`_decode` on signals already at ``self.fs``.
    """

    tokenizer_type: ClassVar[str] = "base"
    config_class: ClassVar[type] = object

    def __init__(self, config: Any):
        self.config = config
        self.model: torch.nn.Module = torch.nn.Identity()

    # ----------------------------------------------------------------- properties
    @property
    def fs(self) -> float:
        """Sampling rate (Hz) of decoded signals; inputs are resampled to it."""
        return float(self.config.fs)

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def samples_per_token(self) -> float:
        """Signal samples (at ``fs``) per token; fractional when a block emits several tokens."""
        raise NotImplementedError

    @property
    def tokens_per_second(self) -> float:
        return self.fs / self.samples_per_token

    @property
    def needs_state(self) -> bool:
        """True when :meth:`decode` needs the ``state`` from :meth:`encode` to return millivolts.

        A language model generates ids only, so only tokenizers with ``needs_state == False`` can turn
        generated tokens into an ECG in mV (``decode(ids, None)``).
        """
        return False

    @property
    def has_wander_model(self) -> bool:
        """True when :meth:`sample_state` can draw a realistic ``state`` for generated ids (tokenizer v2 with
        a fitted ``wander.json``); False for every other tokenizer."""
        return False

    @property
    def has_texture_prior(self) -> bool:
        """True when :meth:`sample_state` also draws a texture state (tokenizer v3 with
        ``texture_prior.safetensors``); False for every other tokenizer."""
        return False

    def sample_state(self, n_samples: int, seed: int | None = None) -> dict:
        """A sampled ``state`` for ids an LM generated; only tokenizers with :attr:`has_wander_model`."""
        raise TokenizerError(f"a '{self.tokenizer_type}' tokenizer has no baseline (wander) model to sample a "
                             f"state from; decode generated ids with state=None")

    @property
    def bits_per_token(self) -> float:
        return math.log2(self.vocab_size)

    @property
    def bits_per_second(self) -> float:
        return self.tokens_per_second * self.bits_per_token

    @property
    def weights_hash(self) -> str:
        return state_dict_hash(self.model.state_dict())

    def config_dict(self) -> dict[str, Any]:
        """``{"tokenizer_type": ..., **config}``: what ``config.json`` holds and what an LM carries."""
        return {"tokenizer_type": self.tokenizer_type, **dataclasses.asdict(self.config)}

    def describe(self) -> dict[str, Any]:
        """Rates and sizes, for run records and reports."""
        return {
            "tokenizer_type": self.tokenizer_type, "fs": self.fs, "vocab_size": self.vocab_size,
            "samples_per_token": self.samples_per_token, "tokens_per_second": self.tokens_per_second,
            "bits_per_token": self.bits_per_token, "bits_per_second": self.bits_per_second,
            "weights_hash": self.weights_hash,
        }

    # ----------------------------------------------------------------- public API
    def encode(self, signal_mv: np.ndarray, fs: float) -> tuple[np.ndarray, dict | None]:
        """Tokenize a 1-D ECG.

        Parameters
        ----------
        signal_mv : array-like, shape (samples,)
            One lead in millivolts (integers are accepted and read as mV).
        fs : float
            Its sampling rate in Hz; resampled to ``self.fs`` if different.

        Returns
        -------
        ids : np.ndarray of int64, shape (tokens,)
            Values in ``[0, vocab_size)``.
        state : dict or None
            What :meth:`decode` needs besides the ids (None when the tokens alone suffice).
        """
        x = self._check_signal(signal_mv, fs)
        if float(fs) != self.fs:
            from .data import resample

            x = resample(x, float(fs), self.fs).astype(np.float32)
        ids, state = self._encode(x)
        return np.ascontiguousarray(ids, dtype=np.int64), state

    def decode(self, ids: np.ndarray, state: dict | None = None) -> np.ndarray:
        """Turn ids back into a 1-D float32 signal at ``self.fs`` (mV unless a subclass says otherwise)."""
        ids = self.check_ids(ids)
        return np.asarray(self._decode(ids, state), dtype=np.float32)

    def check_ids(self, ids: Any) -> np.ndarray:
        """Validate token ids: 1-D integers within ``[0, vocab_size)``."""
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise TokenizerError(f"ids must be 1-D, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TokenizerError(f"ids must be integers, got dtype {arr.dtype}")
        if arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= self.vocab_size:
                bad = int(np.flatnonzero((arr < 0) | (arr >= self.vocab_size))[0])
                raise TokenizerError(
                    f"token id {int(arr[bad])} at position {bad} is outside the vocabulary "
                    f"[0, {self.vocab_size}); were these ids made by another tokenizer?"
                )
        return arr.astype(np.int64, copy=False)

    def _check_signal(self, signal_mv: Any, fs: Any) -> np.ndarray:
        try:
            fs = float(fs)
        except (TypeError, ValueError):
            raise TokenizerError(f"fs must be a number in Hz, got {fs!r}") from None
        if not fs > 0:
            raise TokenizerError(f"fs must be positive, got {fs}")
        x = np.asarray(signal_mv)
        if x.ndim != 1:
            raise TokenizerError(
                f"encode expects one lead as a 1-D array of samples, got shape {x.shape}; pass "
                f"signal[:, lead] for a (samples, leads) WFDB array"
            )
        if x.size == 0:
            raise TokenizerError("encode got an empty signal (0 samples)")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TokenizerError(f"signal must be numeric (mV), got dtype {x.dtype}")
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            i = int(np.flatnonzero(~np.isfinite(x))[0])
            raise TokenizerError(
                f"signal has NaN/inf samples (first at index {i}); fill gaps first, e.g. "
                f"ecg2llm.tokenizer.data.fill_nan_gaps(x, fs, max_gap_s)"
            )
        return x

    # ----------------------------------------------------------------- subclass hooks
    def _encode(self, x: np.ndarray) -> tuple[np.ndarray, dict | None]:
        raise NotImplementedError

    def _decode(self, ids: np.ndarray, state: dict | None) -> np.ndarray:
        raise NotImplementedError

    # ----------------------------------------------------------------- save / load
    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``path`` (atomically, as a folder)."""
        return save_folder(path, self.model.state_dict(), self.config_dict(),
                           metadata={"tokenizer_type": self.tokenizer_type}, extra_files=self._extra_files())

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Save into a temporary folder and upload it to the Hugging Face Hub as ``repo_id``."""
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            return push_folder(self.save_pretrained(Path(d) / "tokenizer"), repo_id, **kwargs)

    def _extra_files(self) -> dict[str, str | bytes]:
        """Small side files saved beside the weights (name -> text or bytes); not part of the weights hash."""
        return {}

    def load_extras(self, folder: str | Path) -> "ECGTokenizer":
        """Read the optional side files of a saved folder (:meth:`_extra_files`'s); none by default."""
        return self

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ECGTokenizer":
        """Build an untrained tokenizer from a ``config.json``-style dict (``tokenizer_type`` picks the class)."""
        from ecg2llm.core.config import config_from_dict

        cfg = dict(config)
        ttype = cfg.pop("tokenizer_type", None) or cls.tokenizer_type
        cfg.pop("weights_hash", None)
        _load_builtin_types()
        if ttype not in _REGISTRY:
            raise TokenizerError(f"unknown tokenizer_type {ttype!r}; known: {sorted(_REGISTRY)}")
        klass = _REGISTRY[ttype]
        return klass(config_from_dict(klass.config_class, cfg, source=f"{ttype} tokenizer config"))

    @classmethod
    def from_pretrained(cls, path: str | Path = "default") -> "ECGTokenizer":
        """Load a tokenizer: a shipped name (``"default"``), a folder, or a Hugging Face Hub id.

        Raises
        ------
        TokenizerError
            If the folder or its files are missing or inconsistent.
        """
        p = resolve_folder(path, PRETRAINED_DIR, what="tokenizer", error=TokenizerError,
                           required=("config.json", "model.safetensors"))
        config = read_config(p, TokenizerError)
        tok = cls.from_config(config)
        load_weights(p, tok.model, config.get("weights_hash"), TokenizerError)
        return tok.load_extras(p)


def _load_builtin_types() -> None:
    """Import the modules that register the built-in tokenizer types."""
    import importlib

    for mod in ("seed_tokenizer", "fsq_tokenizer", "fsq2_tokenizer", "beat_tokenizer", "baselines"):
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{mod}":
                raise
