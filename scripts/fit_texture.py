"""Fit the texture model of a tokenizer (``fsq2``: v2, ``beat``: v3) on DS1 records and save the tokenizer.

Launch::

    python scripts/fit_texture.py --tokenizer default --out runs/tok/v2_bank            # texture v2 (bank)
    python scripts/fit_texture.py --tokenizer v3 --out runs/tok/v3_bank --coherent_lines true   # tokenizer v3
    python scripts/fit_texture.py --tokenizer default --out runs/tok/v2_gauss --method gaussian --leads all
    python scripts/fit_texture.py --config my_texture.yaml     # the same fields as YAML keys

Data: the 22 DS1 records (``--records train``: DS1 minus the validation records; never DS2), MLII by
default (``--leads all`` adds the second leads). The texture fit is closed-form with nothing to stop early,
so it does not need the validation records held out; :mod:`scripts.texture_cv` (``scripts/texture_cv.py``)
is its model selection, cross-validated over DS1 records. Both methods are closed-form:

* ``bank`` (default, :mod:`ecg2llm.tokenizer.texture_bank`): noise levels resampled from the training recordings'
  10-s segments, spectral lines (found in the residuals: 60, 120, 149.9 Hz on MIT-BIH) as tones. Written to
  ``texture.safetensors`` beside the weights, outside the weights hash, so every LM and token store made
  with this tokenizer stays valid.
* ``gaussian`` (:mod:`ecg2llm.tokenizer.texture`): the first model, Gaussian levels; its tensors are part of the
  weights (a refit changes the weights hash); ``fsq2`` only.

For tokenizer v3 the bank is fitted on v3's own round trip (its residual is not v2's); the ids do not
change (the file is read by decode only).

Writes the tokenizer folder and ``<out>_texture_fit.json`` next to it (fit statistics, wall time).
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
from ecg2llm.tokenizer.base import ECGTokenizer

TEXTURE_TYPES = {"fsq2": "v2", "beat": "v3"}  # tokenizer types with a texture decode (bank: both; gaussian: fsq2)


@dataclass
class FitTextureConfig:
    """Fields of ``scripts/fit_texture.py`` (every field is a flag and a ``--config`` YAML key)."""

    tokenizer: str                  # fsq2 (v2) or beat (v3) tokenizer: shipped name or folder
    out: str                        # folder to write the tokenizer with its fitted texture
    method: str = "bank"            # bank (texture.safetensors, outside the hash) | gaussian (in the weights)
    leads: str = "mlii"             # mlii | all (MLII and the second lead of each record)
    records: str = "ds1"            # ds1 (all 22 DS1 records) | train (DS1 minus the validation records)
    data_dir: str | None = None     # data root holding mitdb/ ($ECG2LLM_DATA otherwise)
    num_threads: int = 1            # torch CPU threads
    coherent_lines: bool = False    # bank: scale the lines the decode carries (v3's decode keeps half the mains)


@run_main
def main(argv=None):
    """Parse flags (:class:`FitTextureConfig`), fit the texture, save the tokenizer; returns 0."""
    import torch

    from ecg2llm.tokenizer.data import read_header, read_record, resolve_data_dir
    from ecg2llm.tokenizer.splits import inter_patient_split

    a = parse_config(FitTextureConfig, argv, description=__doc__)
    if a.method not in ("bank", "gaussian"):
        raise ConfigError(f"--method must be bank or gaussian, got {a.method!r}")
    if a.records not in ("ds1", "train"):
        raise ConfigError(f"--records must be ds1 or train, got {a.records!r}")
    if a.leads not in ("mlii", "all"):
        raise ConfigError(f"--leads must be mlii or all, got {a.leads!r}")
    torch.set_num_threads(a.num_threads)
    tok = ECGTokenizer.from_pretrained(a.tokenizer)
    if tok.tokenizer_type not in TEXTURE_TYPES:
        raise TokenizerError(f"{a.tokenizer} is a '{tok.tokenizer_type}' tokenizer; texture needs one of "
                             f"{sorted(TEXTURE_TYPES)}")
    if a.method == "gaussian" and tok.tokenizer_type != "fsq2":
        raise ConfigError(f"--method gaussian lives in the fsq2 weights; a '{tok.tokenizer_type}' tokenizer "
                          "takes --method bank")
    t0 = time.time()
    db = resolve_data_dir(a.data_dir) / "mitdb"
    sigs = []
    sp = inter_patient_split()
    for r in (sp.train if a.records == "train" else (*sp.train, *sp.valid)):
        for lead in (["MLII"] if a.leads == "mlii" else read_header(r, db).sig_name):
            sigs.append(read_record(r, a.data_dir, lead=lead, fs=tok.fs, annotations=False).signal)
    if a.method == "bank":
        from ecg2llm.tokenizer.texture_bank import fit_texture_bank

        tok.texture_bank, stats = fit_texture_bank(tok, sigs, coherent_lines=a.coherent_lines)
    else:
        from ecg2llm.tokenizer.texture import fit_texture

        tok.texture_bank = None
        stats = fit_texture(tok, sigs)
    out = tok.save_pretrained(a.out)
    write_json(Path(a.out).parent / f"{Path(a.out).name}_texture_fit.json",
               {**stats, "method": a.method, "leads": a.leads, "records": a.records, "wall_seconds": time.time() - t0,
                "signals": len(sigs), "source": str(a.tokenizer), "weights_hash": tok.weights_hash})
    print(f"{a.method} texture fitted in {time.time() - t0:.0f} s ({stats}); saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
