"""Fit a tokenizer v3's texture prior (texture states for generated ids) on MIT-BIH training records.

Launch::

    python scripts/fit_texture_prior.py --tokenizer lm/pretrained/v3/tokenizer --out runs/tok/v3_prior
    python scripts/fit_texture_prior.py --config my_prior.yaml     # the same fields as YAML keys

Encode measures each recording's texture state (:meth:`ecg2llm.tokenizer.texture_bank.TextureBank.analyse`);
this script encodes the MLII of ``--records`` (``train``: DS1 minus the validation records 101, 112, 119, the
records the LMs train on; never DS2) in ``--chunk_s`` pieces, fits :class:`ecg2llm.tokenizer.texture_prior.TexturePrior`
on their states (closed form, seconds) and saves the tokenizer with ``texture_prior.safetensors``. The file is
outside the weights hash: every LM and token store made with the tokenizer stays valid; ``sample_state`` then
draws a texture state for generated ids. ``--records a,b,c`` fits on a list of records (the split check of
``docs/lm.md`` fits on half of the training records and judges against the other half).

Writes the tokenizer folder and ``<out>_texture_prior_fit.json`` beside it (records, segments, rho, wall time).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError, TokenizerError
from ecg2llm.core.io import write_json


@dataclass
class FitPriorConfig:
    """Fields of ``scripts/fit_texture_prior.py`` (every field is a flag and a ``--config`` YAML key)."""

    tokenizer: str                  # a beat (v3) tokenizer with texture.safetensors: shipped name or folder
    out: str                        # folder to write the tokenizer with texture_prior.safetensors
    records: str = "train"          # train (DS1 minus the validation records) | ds1 | comma list of records
    chunk_s: float = 30.0           # encode each record in pieces of this many seconds
    data_dir: str | None = None     # data root holding mitdb/ ($ECG2LLM_DATA otherwise)
    num_threads: int = 1            # torch CPU threads


@run_main
def main(argv=None):
    """Parse flags (:class:`FitPriorConfig`), fit the prior, save the tokenizer; returns 0."""
    import torch

    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer
    from ecg2llm.tokenizer.texture_prior import fit_texture_prior, measured_states, prior_records

    a = parse_config(FitPriorConfig, argv, description=__doc__)
    if a.chunk_s < 10.0:
        raise ConfigError(f"--chunk_s must be at least 10 (one texture segment), got {a.chunk_s}")
    records = prior_records(a.records)
    torch.set_num_threads(a.num_threads)
    tok = BeatTokenizer.from_pretrained(a.tokenizer)
    if not tok.has_texture:
        raise TokenizerError(f"{a.tokenizer} has no texture.safetensors: fit it first (scripts/fit_texture.py)")
    tok.texture_state = True
    t0 = time.time()
    states = measured_states(tok, records, a.data_dir, a.chunk_s)
    tok.texture_prior = prior = fit_texture_prior(states, tok.fs)
    out = tok.save_pretrained(a.out)
    write_json(Path(a.out).parent / f"{Path(a.out).name}_texture_prior_fit.json",
               {"records": records, "chunk_s": a.chunk_s, "states": len(states), "segments": prior.n_segments,
                "dim": prior.dim, "rho": prior.rho, "wall_seconds": time.time() - t0, "source": str(a.tokenizer),
                "weights_hash": tok.weights_hash})
    print(f"texture prior fitted on {prior.n_segments} segments of {len(records)} records in {time.time() - t0:.0f} s "
          f"(rho {prior.rho:.3f}); saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
