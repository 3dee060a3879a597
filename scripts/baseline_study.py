"""Compare baseline estimators of an ``fsq2`` tokenizer on MIT-BIH (no retraining: same weights, same hash).

Launch::

    python scripts/baseline_study.py --tokenizer default --out runs/baseline_study/ds2.json \\
        --variants 1:linear,3:linear,2:cubic,3:cubic

Each variant is ``iterations:interp[:min_correction_mv]`` (``FSQ2TokenizerConfig.baseline_iterations`` /
``baseline_interp`` / ``baseline_min_correction_mv``, default 0; ``1:linear`` is the estimator the shipped
weights were trained with). On ``records`` (default DS2, MLII,
whole) it reports, per variant: the clean band RMSE / PRDN, the band RMSE ratio to clean of the issue's two
offset + wander cases (:func:`ecg2llm.tokenizer.robustness.robustness_report`'s ``offset10_wander1`` and
``offset-50_ramp_wander2``), the knots' difference entropy (bits/s), and the fraction of clean-signal token
ids that differ from the first variant's.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError, TokenizerError
from ecg2llm.core.io import write_json
from ecg2llm.tokenizer.base import ECGTokenizer


@dataclass
class BaselineStudyConfig:
    """Fields of ``scripts/baseline_study.py``."""

    tokenizer: str = "v2"
    variants: list[str] = field(default_factory=lambda: ["1:linear", "3:cubic"])  # iterations:interp
    out: str | None = None
    data_dir: str | None = None
    records: list[str] = field(default_factory=list)  # empty: DS2
    seconds: float | None = None  # only the first seconds of each record (None: whole)


def _parse_variant(v: str) -> tuple[int, str, float]:
    """``"3:linear:0.1"`` -> (3, "linear", 0.1); the threshold defaults to 0."""
    from ecg2llm.tokenizer.baseline import INTERPOLATIONS

    parts = v.split(":")
    try:
        it, interp, thr = int(parts[0]), parts[1], float(parts[2]) if len(parts) > 2 else 0.0
    except (ValueError, IndexError):
        raise ConfigError(f"variant {v!r} is not iterations:interp[:min_correction_mv], e.g. 3:linear:0.1") from None
    if it < 1 or interp not in INTERPOLATIONS or len(parts) > 3:
        raise ConfigError(f"variant {v!r}: iterations >= 1 and interp one of {INTERPOLATIONS}")
    return it, interp, thr


@run_main
def main(argv=None):
    """Parse flags, measure every variant, print and optionally write the table; returns 0."""
    import numpy as np

    from ecg2llm.tokenizer.baseline import baseline_bits_per_second
    from ecg2llm.tokenizer.data import read_record
    from ecg2llm.tokenizer.robustness import _offset_wander, band_errors
    from ecg2llm.tokenizer.splits import DS2

    a = parse_config(BaselineStudyConfig, argv, description=__doc__)
    variants = [_parse_variant(v) for v in a.variants]
    tok = ECGTokenizer.from_pretrained(a.tokenizer)
    if tok.tokenizer_type != "fsq2":
        raise TokenizerError(f"{a.tokenizer} is a '{tok.tokenizer_type}' tokenizer; baseline variants need 'fsq2'")
    records = list(a.records or DS2)
    sigs = {}
    for r in records:
        x = read_record(r, a.data_dir, lead="MLII", fs=tok.fs, annotations=False).signal.astype(np.float32)
        sigs[r] = x[: int(a.seconds * tok.fs)] if a.seconds else x
    cases = {"offset10_wander1": _offset_wander(10.0, 1.0, 0.2, fs=tok.fs),
             "offset-50_ramp_wander2": _offset_wander(-50.0, 2.0, 0.5, ramp=2.0, fs=tok.fs)}
    out, ref_ids = {}, None
    for v, (it, interp, thr) in zip(a.variants, variants):
        tok.config.baseline_iterations, tok.config.baseline_interp = it, interp
        tok.config.baseline_min_correction_mv = thr
        clean = band_errors(tok, sigs, keep_knots=True)
        ids = np.concatenate([tok.encode(x, tok.fs)[0] for x in sigs.values()])
        ref_ids = ids if ref_ids is None else ref_ids
        side = baseline_bits_per_second(np.concatenate(clean.pop("knots")), tok.fs, tok.hop,
                                        tok.config.baseline_step_mv)
        row = {"band_rmse_uv": clean["rmse_uv"], "band_prdn": clean["prdn"],
               "tokens_changed_vs_first": float(np.mean(ids != ref_ids)),
               "baseline_entropy_bits_per_second": side["baseline_entropy_bits_per_second"],
               "encode_samples_per_s": clean["n_samples"] / clean["encode_s"]}
        for name, f in cases.items():
            row[f"{name}_rmse_ratio"] = band_errors(tok, sigs, transform=f)["rmse_uv"] / clean["rmse_uv"]
        out[v] = row
        print(v, {k: round(x, 4) for k, x in row.items()}, flush=True)
    if a.out:
        write_json(a.out, {"variants": out, "records": records, "tokenizer": a.tokenizer, "seconds": a.seconds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
