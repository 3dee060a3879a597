"""Synthetic ECGs from the bigram token model: the floor every generator in the stage-3 report must beat.

Launch (after a token store exists, e.g. the one ``lm/train.py`` built)::

    python scripts/bigram_samples.py --store runs/store/default_mlii --out runs/bigram --num_samples 200
    python scripts/bigram_samples.py --config my_bigram.yaml          # the same fields as YAML keys
    python eval/score.py --synthetic runs/gen --extra_rows "bigram sampler=runs/bigram" --out runs/eval

The bigram model is fitted on the store's ``train`` records and its smoothing ``k`` tuned on 64 crops of
its ``valid`` records (:func:`ecg2llm.lm.baselines.fit_baselines`, exactly the model ``lm/train.py`` reports
bits/token for); ``NGramModel.sample`` draws the tokens and the store's tokenizer (``--tokenizer``,
default ``default``; its weights hash must match the store's) decodes them to millivolts. Output: the
synthetic-folder format of ``lm/generate.py`` (``manifest.json``, ``.npy``, WFDB), written atomically.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError, StoreError


@dataclass
class BigramSamplesConfig:
    """Fields of ``scripts/bigram_samples.py`` (every field is a flag and a ``--config`` YAML key)."""

    store: str                      # token store folder (tokenizer/tokenize_db.py or lm/train.py)
    out: str                        # output folder (replaced atomically)
    tokenizer: str = "v2"           # tokenizer that built the store
    num_samples: int = 200          # ECGs to sample
    seconds: float = 10.0           # seconds per ECG
    seed: int = 0

    def __post_init__(self):
        if self.num_samples < 1 or not self.seconds > 0:
            raise ConfigError("--num_samples must be >= 1 and --seconds > 0")


def bigram_samples(store_path: str, out: str, tokenizer: str = "v2", num_samples: int = 200,
                   seconds: float = 10.0, seed: int = 0) -> Path:
    """Fit the bigram model on ``store_path``, sample ``num_samples`` ECGs of ``seconds``, write ``out``."""
    from ecg2llm.lm.baselines import fit_baselines
    from ecg2llm.lm.sampling import check_stateless
    from ecg2llm.tokenizer.base import ECGTokenizer
    from ecg2llm.tokenizer.folder import write_folder
    from ecg2llm.tokenizer.store import TokenStore

    store = TokenStore.open(store_path)
    tok = ECGTokenizer.from_pretrained(tokenizer)
    if store.tokenizer_hash != tok.weights_hash:
        raise StoreError(f"token store {store_path} was not built by tokenizer {tokenizer!r} (weights hash "
                         f"{str(store.tokenizer_hash)[:12]}… vs {tok.weights_hash[:12]}…); pass --tokenizer")
    check_stateless(tok)
    train = [np.asarray(store.tokens_of(e), dtype=np.int64) for e in store.entries("train")]
    valid = store.random_crops(256, 64, split="valid", rng=np.random.default_rng(seed))
    bigram = fit_baselines(train, store.vocab_size, valid)["bigram"]
    n_tok = int(np.ceil(seconds * tok.tokens_per_second))
    n_out = int(round(seconds * tok.fs))
    ids = bigram.sample(num_samples, n_tok, seed=seed)
    signals = [tok.decode(row, None)[:n_out] for row in ids]
    write_folder(
        out, signals, tok.fs,
        extra={"generator": "bigram token model (ecg2llm.lm.baselines.NGramModel, add-k smoothing)",
               "k": bigram.k, "seed": seed, "store": str(store_path), "tokenizer_weights_hash": tok.weights_hash,
               "bits_per_token_valid": bigram.bits_per_token(valid)})
    return Path(out)


@run_main
def main(argv=None):
    """Parse flags (``--config`` YAML + overrides, :class:`BigramSamplesConfig`), sample, print the folder."""
    a = parse_config(BigramSamplesConfig, argv, description=__doc__)
    folder = bigram_samples(a.store, a.out, a.tokenizer, a.num_samples, a.seconds, a.seed)
    print(f"{a.num_samples} bigram-sampler ECGs x {a.seconds:g} s written to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
