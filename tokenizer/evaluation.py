"""Score any tokenizer on whole records: round trip in mV, error metrics, token rate, codebook usage.

One harness for the learned tokenizers and the baselines, so every row of the rate-distortion study is
measured the same way::

    from ecg2llm.tokenizer.evaluation import evaluate_tokenizer, load_signals
    signals = load_signals(DS2, data_dir)                 # {record: mV array}, MLII
    result = evaluate_tokenizer(tok, signals)             # dict, see below

Aggregation: ``rmse_uv`` pools the squared error of every sample of every record (records have equal
length in MIT-BIH); ``prdn``, ``snr_db``, ``prd`` and ``mse_seed_norm`` are per-record values averaged
over records (the convention of the ECG-compression literature); ``per_record`` keeps each record's numbers.
"""
from __future__ import annotations

import math
import time
from typing import Mapping, Sequence

import numpy as np

from .metrics import codebook_usage, compression_ratio, reconstruction_report


def load_signals(records: Sequence[str], data_dir=None, lead: str = "MLII", fs: float = 360.0,
                 seconds: float | None = None) -> dict[str, np.ndarray]:
    """Read ``lead`` of each record in mV (``seconds`` > 0 keeps only the start of each record)."""
    from .data import read_record

    out = {}
    for r in records:
        x = read_record(r, data_dir, lead=lead, fs=fs, annotations=False).signal
        out[str(r)] = x[: int(seconds * fs)] if seconds else x
    return out


def evaluate_tokenizer(tok, signals: Mapping[str, np.ndarray], side_info_bits_per_second: float = 0.0,
                       keep_ids: bool = False) -> dict:
    """Encode and decode each signal; return error metrics next to the token rate and bits per second.

    Parameters
    ----------
    tok : ECGTokenizer
        Any tokenizer (``decode(ids, state)`` must give mV).
    signals : mapping of record name -> 1-D array in mV at ``tok.fs``
    side_info_bits_per_second : float
        Bits per second the tokenizer needs besides its ids (e.g. the seed's per-window min/max); added
        to ``total_bits_per_second`` and used for the compression ratio.
    keep_ids : bool
        Also return the concatenated ids (``"ids"``) for further analysis.

    Returns
    -------
    dict
        ``rmse_uv, prdn, prd, snr_db, mse_seed_norm, tokens_per_second, bits_per_token,
        bits_per_second, total_bits_per_second, compression_ratio, codes_used_fraction, code_perplexity,
        code_entropy_bits, encode_s, decode_s, n_samples, per_record``.
    """
    per_record, all_ids, sq_err, n_tot = {}, [], 0.0, 0
    t_enc = t_dec = 0.0
    for name, x in signals.items():
        t0 = time.perf_counter()
        ids, state = tok.encode(x, tok.fs)
        t1 = time.perf_counter()
        y = tok.decode(ids, state)
        t2 = time.perf_counter()
        t_enc, t_dec = t_enc + t1 - t0, t_dec + t2 - t1
        if len(y) != len(x):
            raise ValueError(f"{tok.tokenizer_type}: record {name} decoded to {len(y)} samples, not {len(x)}")
        rep = reconstruction_report(x, y, tok.tokens_per_second, tok.bits_per_token, tok.fs)
        per_record[name] = {k: rep[k] for k in ("rmse_uv", "prdn", "prd", "snr_db", "mse_seed_norm")}
        sq_err += float(np.sum((np.asarray(x, np.float64) - y) ** 2))
        n_tot += len(x)
        all_ids.append(ids)
    ids_cat = np.concatenate(all_ids)
    bps = tok.bits_per_second
    total_bps = bps + float(side_info_bits_per_second)
    res = {
        "rmse_uv": 1000.0 * math.sqrt(sq_err / max(n_tot, 1)),
        **{k: float(np.mean([r[k] for r in per_record.values()])) for k in ("prdn", "prd", "snr_db", "mse_seed_norm")},
        "tokens_per_second": tok.tokens_per_second, "vocab_size": tok.vocab_size,
        "bits_per_token": tok.bits_per_token, "bits_per_second": bps,
        "side_info_bits_per_second": float(side_info_bits_per_second), "total_bits_per_second": total_bps,
        "compression_ratio": compression_ratio(total_bps, tok.fs),
        **codebook_usage(ids_cat, tok.vocab_size),
        "encode_s": t_enc, "decode_s": t_dec, "n_samples": n_tot, "n_records": len(per_record),
        "per_record": per_record,
    }
    if keep_ids:
        res["ids"] = ids_cat
    return res
