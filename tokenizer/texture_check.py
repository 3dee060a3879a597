"""The spectral discriminator of issue 16: can a plain classifier tell decoded 10-s windows from real ones?

Features of a 10-s window (mean removed): the log Welch power spectrum (Hann, 256-sample segments, 50 %
overlap: 129 bins, 1.4 Hz apart at 360 Hz) and slope statistics of its first difference ``d``: log of
std, mean absolute value and 50/90/99th percentiles of ``|d|``, kurtosis of ``d``, log std of the second
difference and the rate of sign changes of ``d``. Classifier: standardized logistic regression, 5-fold
cross-validation grouped by record (a record's real and decoded windows are always in the same fold, so
the classifier cannot learn a record instead of a property). Score: ``|accuracy - 0.5|`` (0 = cannot
tell, 0.5 = always tells), mean over folds.

.. code-block:: python

    from ecg2llm.tokenizer.texture_check import texture_report
    rep = texture_report(tok, records=DS2, data_dir="../shared/data")   # deterministic vs texture decode

Command: ``python scripts/texture_check.py --tokenizer default`` (prints and writes JSON).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

WINDOW_S = 10.0


def to_windows(x: np.ndarray, fs: float, window_s: float = WINDOW_S) -> np.ndarray:
    """``(T,)`` -> ``(W, window)`` non-overlapping windows (the tail shorter than a window is dropped)."""
    w = int(round(window_s * fs))
    k = len(x) // w
    return np.asarray(x[: k * w], np.float64).reshape(k, w)


def window_features(windows: np.ndarray, fs: float) -> np.ndarray:
    """``(W, T)`` windows -> ``(W, 129 + 8)`` features (log power spectrum + slope statistics)."""
    from scipy.signal import welch
    from scipy.stats import kurtosis

    x = windows - windows.mean(axis=1, keepdims=True)
    _, p = welch(x, fs=fs, nperseg=256, axis=1)  # (W, 129)
    logp = np.log10(p + 1e-12)
    d = np.diff(x, axis=1)
    ad = np.abs(d) + 1e-9
    q = np.percentile(ad, [50, 90, 99], axis=1).T  # (W, 3)
    slope = np.column_stack([
        np.log(d.std(axis=1) + 1e-9), np.log(ad.mean(axis=1)), np.log(q), kurtosis(d, axis=1),
        np.log(np.diff(d, axis=1).std(axis=1) + 1e-9), (np.diff(np.sign(d), axis=1) != 0).mean(axis=1),
    ])
    return np.column_stack([logp, slope]).astype(np.float64)


def discriminator_score(real: np.ndarray, fake: np.ndarray, groups: np.ndarray, folds: int = 5,
                        seed: int = 0, classifier=None) -> dict:
    """Cross-validated real-vs-decoded classifier on feature rows.

    Parameters
    ----------
    real, fake : ndarray, shape (W, F)
        Features of real and decoded windows, row ``i`` of both from the same window (paired).
    groups : ndarray, shape (W,)
        Record of each row; folds never split a record.
    classifier : callable, optional
        ``classifier(seed)`` -> an unfitted scikit-learn classifier; default: standardized logistic regression
        (the project's texture check).

    Returns
    -------
    dict
        ``score`` = mean over folds of ``|accuracy - 0.5|``, ``accuracy``, ``fold_scores``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    X = np.vstack([real, fake])
    y = np.r_[np.ones(len(real)), np.zeros(len(fake))]
    g = np.r_[groups, groups]
    accs = []
    with threadpool_limits(1):
        for tr, te in GroupKFold(n_splits=folds).split(X, y, g):
            clf = (classifier(seed) if classifier is not None else
                   make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000, random_state=seed)))
            clf.fit(X[tr], y[tr])
            accs.append(float((clf.predict(X[te]) == y[te]).mean()))
    scores = [abs(a - 0.5) for a in accs]
    return {"score": float(np.mean(scores)), "accuracy": float(np.mean(accs)), "fold_scores": scores,
            "n_windows_per_class": int(len(real))}


def texture_report(tok, records: Sequence[str] | None = None, data_dir=None, seed: int = 0,
                   seconds: float | None = None, group_seconds: float | None = None,
                   progress: bool = True) -> dict:
    """Discriminator score and band RMSE of the deterministic and (if available) texture decodes.

    Real windows are the records' MLII; decoded windows are ``decode(ids, state)`` (full signal) and
    ``decode(ids, state, texture=True, seed=seed + i)`` for record ``i``. Folds are grouped by record, or
    by blocks of ``group_seconds`` within records when given (for fewer than 5 records, e.g. validation).
    """
    from tqdm.auto import tqdm

    from .evaluation import load_signals
    from .robustness import band_errors
    from .splits import DS2

    records = list(records or DS2)
    sigs = load_signals(records, data_dir, fs=tok.fs, seconds=seconds)
    modes = {"deterministic": {}}
    if getattr(tok, "has_texture", False):
        modes["texture"] = {"texture": True}
    feats: dict[str, list[np.ndarray]] = {m: [] for m in ["real", *modes]}
    groups, rmse = [], {}
    for i, x in enumerate(tqdm(sigs.values(), desc="texture check", disable=not progress)):
        ids, state = tok.encode(x, tok.fs)
        feats["real"].append(window_features(to_windows(x, tok.fs), tok.fs))
        for m, kw in modes.items():
            kw = {**kw, "seed": seed + i} if kw else {}
            y = tok.decode(ids, state, **kw)
            feats[m].append(window_features(to_windows(y, tok.fs), tok.fs))
        nw = len(feats["real"][-1])
        per = max(1, int(group_seconds // WINDOW_S)) if group_seconds else nw
        groups.append(i * 100_000 + np.arange(nw) // per)
    g = np.concatenate(groups)
    real = np.vstack(feats["real"])
    out = {"records": records, "tokens_per_second": tok.tokens_per_second,
           "bits_per_second": tok.bits_per_second}
    for m, kw in modes.items():
        out[m] = discriminator_score(real, np.vstack(feats[m]), g)
        kw2 = {**kw, "seed": seed} if kw else None
        band = band_errors(tok, sigs, decode_kwargs=kw2)
        out[m]["band"] = {k: v for k, v in band.items() if k != "per_record"}
        rmse[m] = out[m]["band"]["rmse_uv"]
    if "texture" in rmse:
        out["texture_rmse_ratio"] = rmse["texture"] / rmse["deterministic"]
    return out


def format_report(rep: dict) -> str:
    lines = []
    for m in ("deterministic", "texture"):
        if m in rep:
            r = rep[m]
            lines.append(f"{m:13s} disc |acc-0.5| = {r['score']:.3f}  "
                         f"band RMSE {r['band']['rmse_uv']:.1f} uV  "
                         f"PRDN {r['band']['prdn']:.2f} %")
    if "texture_rmse_ratio" in rep:
        lines.append(f"texture / deterministic band RMSE = {rep['texture_rmse_ratio']:.2f}")
    lines.append(f"at {rep['tokens_per_second']:g} tokens/s, {rep['bits_per_second']:g} bit/s")
    return "\n".join(lines)
