"""Errors in the ECG band and the robustness checks of tokenizer v2 (issue 16), for any tokenizer.

Band error: the input ``x`` and the full decode ``decode(ids, state)`` are both high-passed at 0.5 Hz
(zero-phase 2nd-order Butterworth, :func:`ecg2llm.tokenizer.baseline.band_filter`) and compared: RMSE in µV
pooled over all samples, PRDN per record averaged over records (the compression literature's habit).

:func:`robustness_report` measures, on the given records (DS2 for the study, never used in training):

* ``clean``: MLII as recorded;
* ``gain_0.3``: MLII x 0.3 (``prdn_ratio`` = its PRDN / clean PRDN; goal <= 1.5);
* ``second_lead``: each record's other lead (V1, V2, V4, V5; ``prdn_ratio`` vs MLII; goal <= 1.5);
* ``offset10_wander1``: + 10 mV DC + 1 mV 0.2 Hz wander (the issue's v1 measurement);
* ``offset-50_ramp_wander2``: - 50 mV DC + a 2 mV ramp per record + 2 mV 0.5 Hz wander (the extreme the
  issue allows); ``rmse_ratio`` vs clean (goal <= 1.1);
* ``fs_250`` / ``fs_500`` / ``fs_1000``: MLII resampled to that rate and encoded from it, compared with
  the resampled input brought back to 360 Hz.

Every row carries the token rate and bits/s; fsq2 rows add the baseline side information (raw int16
knots and the entropy of their differences measured on these records).
"""
from __future__ import annotations

import math
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from .baseline import band_filter, baseline_bits_per_second, wander


def band_errors(tok, signals: Mapping[str, np.ndarray], fs: float | None = None,
                transform: Callable[[str, np.ndarray], np.ndarray] | None = None,
                decode_kwargs: dict | None = None, keep_knots: bool = False) -> dict:
    """Encode/decode each signal and score the band error.

    Parameters
    ----------
    tok : ECGTokenizer
    signals : mapping name -> 1-D mV array at ``fs`` (default ``tok.fs``)
    transform : callable(name, x) -> x, optional
        Applied to each signal before encoding (offsets, gains); the reference is the transformed signal.
    decode_kwargs : dict, optional
        Extra arguments of ``decode`` (``texture=True, seed=0`` for fsq2).

    Returns
    -------
    dict
        ``rmse_uv, prdn, n_samples, encode_s, decode_s, per_record`` (+ ``knots`` if asked).
    """
    from .data import resample

    fs = float(fs or tok.fs)
    sq, n_tot, prdns, per, knots = 0.0, 0, [], {}, []
    t_enc = t_dec = 0.0
    for name, x in signals.items():
        x = np.asarray(x, np.float32)
        if transform is not None:
            x = np.asarray(transform(name, x), np.float32)
        t0 = time.perf_counter()
        ids, state = tok.encode(x, fs)
        t1 = time.perf_counter()
        y = tok.decode(ids, state, **(decode_kwargs or {}))
        t_enc, t_dec = t_enc + t1 - t0, t_dec + time.perf_counter() - t1
        ref = x if fs == tok.fs else resample(x, fs, tok.fs)
        m = min(len(ref), len(y))
        bx, by = band_filter(ref[:m], tok.fs), band_filter(y[:m], tok.fs)
        e2 = float(np.sum((bx - by) ** 2))
        prdn = 100 * math.sqrt(e2 / max(float(np.sum((bx - bx.mean()) ** 2)), 1e-30))
        sq, n_tot = sq + e2, n_tot + m
        prdns.append(prdn)
        per[name] = {"rmse_uv": 1000 * math.sqrt(e2 / m), "prdn": prdn}
        if keep_knots and state and "baseline" in state:
            knots.append(np.asarray(state["baseline"]))
    res = {"rmse_uv": 1000 * math.sqrt(sq / max(n_tot, 1)), "prdn": float(np.mean(prdns)), "n_samples": n_tot,
           "encode_s": t_enc, "decode_s": t_dec, "per_record": per}
    if keep_knots:
        res["knots"] = knots
    return res


def _offset_wander(dc: float, amp: float, freq: float, ramp: float = 0.0, fs: float = 360.0):
    def f(name: str, x: np.ndarray) -> np.ndarray:
        n = len(x)
        return x + dc + wander(n, fs, amp, freq, phase=0.3) + ramp * np.linspace(-0.5, 0.5, n)
    return f


def robustness_report(tok, data_dir=None, records: Sequence[str] | None = None, seconds: float | None = None,
                      rates: Sequence[float] = (250.0, 500.0, 1000.0), progress: bool = True) -> dict:
    """All band-error rows above for ``tok`` on ``records`` (default DS2), with rates and ratios."""
    from .data import read_header, read_record, resample, resolve_data_dir
    from .splits import DS2

    records = list(records or DS2)
    fs = tok.fs
    mlii, lead2 = {}, {}
    for r in records:
        x = read_record(r, data_dir, lead="MLII", fs=fs, annotations=False).signal
        mlii[r] = x[: int(seconds * fs)] if seconds else x
        other = [s for s in read_header(r, resolve_data_dir(data_dir) / "mitdb").sig_name if s != "MLII"]
        if other:
            y = read_record(r, data_dir, lead=other[0], fs=fs, annotations=False).signal
            lead2[f"{r}:{other[0]}"] = y[: int(seconds * fs)] if seconds else y
    rows: dict[str, dict] = {}

    def row(name, sigs, **kw):
        t0 = time.perf_counter()
        rows[name] = band_errors(tok, sigs, **kw)
        if progress:
            print(f"  {name}: band RMSE {rows[name]['rmse_uv']:.1f} uV, PRDN {rows[name]['prdn']:.2f} % "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    row("clean", mlii, keep_knots=True)
    row("gain_0.3", mlii, transform=lambda n, x: 0.3 * x)
    row("second_lead", lead2)
    row("offset10_wander1", mlii, transform=_offset_wander(10.0, 1.0, 0.2, fs=fs))
    row("offset-50_ramp_wander2", mlii, transform=_offset_wander(-50.0, 2.0, 0.5, ramp=2.0, fs=fs))
    for rate in rates:
        sub = {k: resample(v, fs, rate).astype(np.float32) for k, v in mlii.items()}
        row(f"fs_{int(rate)}", sub, fs=rate)
    clean = rows["clean"]
    knots = clean.pop("knots", [])
    for v in rows.values():
        v["rmse_ratio"] = v["rmse_uv"] / clean["rmse_uv"]
        v["prdn_ratio"] = v["prdn"] / clean["prdn"]
    side = {}
    if hasattr(tok, "hop"):
        side = baseline_bits_per_second(np.concatenate(knots) if knots else None, fs, tok.hop,
                                        tok.config.baseline_step_mv)
    summary = {
        "band_rmse_uv": clean["rmse_uv"], "band_prdn": clean["prdn"],
        "gain_0.3_prdn_ratio": rows["gain_0.3"]["prdn_ratio"],
        "second_lead_prdn_ratio": rows["second_lead"]["prdn_ratio"],
        "offset10_wander1_rmse_ratio": rows["offset10_wander1"]["rmse_ratio"],
        "offset-50_ramp_wander2_rmse_ratio": rows["offset-50_ramp_wander2"]["rmse_ratio"],
        "tokens_per_second": tok.tokens_per_second, "bits_per_second": tok.bits_per_second, **side,
        "encode_samples_per_s": clean["n_samples"] / max(clean["encode_s"], 1e-9),
        "decode_samples_per_s": clean["n_samples"] / max(clean["decode_s"], 1e-9),
    }
    return {"summary": summary, "rows": rows, "records": records}
