"""Memorization: are synthetic windows closer to the training windows than new real patients are?

For each window, the distance (Euclidean, in the frozen embedding space) to its nearest neighbour among
the DS1 training windows (by default every 10-s window at a 5-s hop, so a copy at any offset is at most
2.5 s from a reference window). The held-out real DS2 windows -- patients the generator never saw -- give
the distances a non-copying generator should show.

* ``memorization_ratio = median d(synthetic) / median d(held-out real)``: about 1 for a generator that
  makes new patients, far below 1 for one that replays training windows (higher is better up to ~1);
* ``near_copy_rate``: fraction of synthetic windows closer to DS1 than the 1st percentile of the held-out
  real distances (about 0.01 when nothing is copied; lower is better).
"""

from __future__ import annotations

import numpy as np


def nearest_distances(
    queries: np.ndarray, reference: np.ndarray, batch: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Distance to, and index of, each query's nearest reference row (exact, batched). ``(Q,)``, ``(Q,)``."""
    q = np.asarray(queries, np.float64)
    r = np.asarray(reference, np.float64)
    rn = (r * r).sum(1)
    dist, idx = np.empty(len(q)), np.empty(len(q), np.int64)
    for i in range(0, len(q), batch):
        qb = q[i : i + batch]
        d2 = (qb * qb).sum(1)[:, None] + rn[None, :] - 2.0 * qb @ r.T  # (b, R)
        j = d2.argmin(1)
        idx[i : i + batch] = j
        dist[i : i + batch] = np.sqrt(np.clip(d2[np.arange(len(qb)), j], 0.0, None))
    return dist, idx


def memorization_metrics(
    fake_to_train: np.ndarray, heldout_to_train: np.ndarray, copy_quantile: float = 0.01
) -> dict[str, float]:
    """Summaries of nearest-training-window distances (see the module docstring).

    Parameters
    ----------
    fake_to_train : np.ndarray
        ``(M,)`` distances of synthetic windows to their nearest DS1 window.
    heldout_to_train : np.ndarray
        ``(N,)`` the same for held-out real (DS2) windows.
    copy_quantile : float
        Quantile of ``heldout_to_train`` below which a synthetic window counts as a near-copy.
    """
    ref_med = float(np.median(heldout_to_train))
    thr = float(np.quantile(heldout_to_train, copy_quantile))
    return {
        "memorization_ratio": float(np.median(fake_to_train)) / ref_med if ref_med > 0 else float("nan"),
        "near_copy_rate": float((fake_to_train < thr).mean()),
        "nn_dist_median": float(np.median(fake_to_train)),
        "nn_dist_median_heldout_real": ref_med,
        "near_copy_threshold": thr,
    }
