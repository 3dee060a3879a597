"""Fit the texture model of an ``fsq2`` tokenizer on DS1 training records and save the tokenizer.

Launch::

    python scripts/fit_texture.py --tokenizer runs/tokenizer/fsq2_default/tokenizer --out runs/tok/v2_tex
    python scripts/fit_texture.py --config my_texture.yaml     # the same fields as YAML keys

Data: MLII and the second lead of the DS1 training records (DS1 minus the validation records; never DS2).
The fit is closed-form (ridge regression of the residual's log power spectrum on the decode's, plus
segment- and frame-level covariances; :mod:`tokenizer.texture`). Writes the tokenizer folder and
``texture_fit.json`` next to it (fit statistics, wall time).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenizer.base import ECGTokenizer  # noqa: E402
from tokenizer.errors import TokenizerError  # noqa: E402
from tokenizer.utils.cli import run_main  # noqa: E402
from tokenizer.utils.config import parse_config  # noqa: E402
from tokenizer.utils.io import write_json  # noqa: E402


@dataclass
class FitTextureConfig:
    """Fields of ``scripts/fit_texture.py`` (every field is a flag and a ``--config`` YAML key)."""

    tokenizer: str                  # fsq2 tokenizer folder
    out: str                        # folder to write the tokenizer with its fitted texture
    data_dir: str | None = None     # data root holding mitdb/ ($ECG2LLM_DATA otherwise)
    num_threads: int = 1            # torch CPU threads


@run_main
def main(argv=None):
    """Parse flags (:class:`FitTextureConfig`), fit the texture, save the tokenizer; returns 0."""
    import torch

    from tokenizer.data import read_header, read_record, resolve_data_dir
    from tokenizer.splits import inter_patient_split
    from tokenizer.texture import fit_texture

    a = parse_config(FitTextureConfig, argv, description=__doc__)
    torch.set_num_threads(a.num_threads)
    tok = ECGTokenizer.from_pretrained(a.tokenizer)
    if tok.tokenizer_type != "fsq2":
        raise TokenizerError(f"{a.tokenizer} is a '{tok.tokenizer_type}' tokenizer; texture needs 'fsq2'")
    t0 = time.time()
    db = resolve_data_dir(a.data_dir) / "mitdb"
    sigs = [read_record(r, a.data_dir, lead=lead, fs=tok.fs, annotations=False).signal
            for r in inter_patient_split().train for lead in read_header(r, db).sig_name]
    stats = fit_texture(tok, sigs)
    out = tok.save_pretrained(a.out)
    write_json(Path(a.out).parent / f"{Path(a.out).name}_texture_fit.json",
               {**stats, "wall_seconds": time.time() - t0, "signals": len(sigs), "source": str(a.tokenizer)})
    print(f"texture fitted in {time.time() - t0:.0f} s ({stats}); saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
