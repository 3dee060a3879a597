"""Fit the baseline (wander) model of an ``fsq2`` tokenizer on DS1 training records; write ``wander.json``.

Launch (the shipped files: the default tokenizer and the copies inside the LM folders that carry it)::

    python scripts/fit_wander.py --tokenizer default --into tokenizer/pretrained/v2,\
lm/pretrained/v2/tokenizer,lm/pretrained/v2-conditional/tokenizer --report runs/wander/fit.json

Data: MLII of the MIT-BIH DS1 training records (DS1 minus the validation records; never DS2). The knots
are the tokenizer's own (:meth:`FSQ2Tokenizer.estimate_baseline`), the fit is closed form
(:func:`ecg2llm.tokenizer.wander.fit_wander`, ~10 s). ``wander.json`` is not part of the weights hash: every
folder written to is reloaded and its hash checked against the one before.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import TokenizerError
from ecg2llm.core.io import write_json, write_text
from ecg2llm.tokenizer.base import ECGTokenizer


@dataclass
class FitWanderConfig:
    """Fields of ``scripts/fit_wander.py`` (every field is a flag and a ``--config`` YAML key)."""

    tokenizer: str = "v2"                 # fsq2 tokenizer (shipped name or folder) whose knots are modelled
    into: list[str] = field(default_factory=list)  # tokenizer folders to write wander.json into (comma list)
    data_dir: str | None = None           # data root holding mitdb/ ($ECG2LLM_DATA otherwise)
    lead: str = "MLII"                    # lead of the training records
    order: int = 4                        # AR order
    segment_knots: int = 20               # knots per scale segment (20 = 10 s)
    report: str | None = None             # optional JSON with the fitted parameters and provenance


@run_main
def main(argv=None):
    """Parse flags (:class:`FitWanderConfig`), fit, write ``wander.json`` into each ``--into``; returns 0."""
    from ecg2llm.tokenizer.data import read_record
    from ecg2llm.tokenizer.splits import inter_patient_split
    from ecg2llm.tokenizer.wander import WANDER_FILE, fit_wander

    a = parse_config(FitWanderConfig, argv, description=__doc__)
    tok = ECGTokenizer.from_pretrained(a.tokenizer)
    if tok.tokenizer_type != "fsq2":
        raise TokenizerError(f"{a.tokenizer} is a '{tok.tokenizer_type}' tokenizer; the wander model needs 'fsq2'")
    t0 = time.time()
    records = inter_patient_split().train
    knots = [tok.estimate_baseline(read_record(r, a.data_dir, lead=a.lead, fs=tok.fs, annotations=False).signal)
             for r in records]
    model = fit_wander(knots, tok.config.baseline_knot_s, tok.fs, tok.hop, order=a.order,
                       segment_knots=a.segment_knots, step_mv=tok.config.baseline_step_mv,
                       method=tok.config.baseline_interp)
    model.fit.update({"records": list(records), "lead": a.lead, "source": str(a.tokenizer),
                      "weights_hash": tok.weights_hash, "wall_seconds": round(time.time() - t0, 1)})
    for folder in a.into:
        before = ECGTokenizer.from_pretrained(folder).weights_hash
        if before != tok.weights_hash:
            raise TokenizerError(f"{folder} holds other weights ({before[:12]}…) than {a.tokenizer} "
                                 f"({tok.weights_hash[:12]}…); its knots would differ")
        write_text(Path(folder) / WANDER_FILE, model.to_json())
        after = ECGTokenizer.from_pretrained(folder)
        if after.weights_hash != before or not after.has_wander_model:
            raise TokenizerError(f"{folder}: reloading after writing {WANDER_FILE} failed the hash check")
        print(f"wrote {Path(folder) / WANDER_FILE}")
    if a.report:
        write_json(a.report, {"model": json.loads(model.to_json()), "into": a.into})
    print(f"wander model fitted in {time.time() - t0:.0f} s on {len(knots)} records: ar={model.ar}, "
          f"mu={model.mu:.3f}, tau_record={model.tau_record:.3f}, tau_segment={model.tau_segment:.3f}, "
          f"rho={model.rho_segment:.3f}, dc={model.dc_mean_mv:.3f}+-{model.dc_std_mv:.3f} mV")
    return 0


if __name__ == "__main__":
    sys.exit(main())
