"""Distribution distances on embeddings: Fréchet distance, MMD, precision / recall / density / coverage.

All functions take two arrays of embeddings, ``real (N, D)`` and ``fake (M, D)``, as numpy float arrays.
"""

from __future__ import annotations

import numpy as np


def _as2d(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or len(a) < 2:
        raise ValueError(f"{name} must be (N >= 2, D) embeddings, got shape {a.shape}")
    return a


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets (FID's formula, Heusel et al. 2017).

    ``||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^{1/2})``. The trace of the matrix square root is
    computed as ``sum(sqrt(eig(S_r^{1/2} S_f S_r^{1/2})))``, a symmetric PSD form that avoids the
    complex round-off of ``scipy.linalg.sqrtm`` on nearly singular covariances. Lower is better; 0 for
    identical sets. Biased upwards for small N (report it relative to a real-vs-real value at equal N).
    """
    a, b = _as2d(real, "real"), _as2d(fake, "fake")
    return frechet_from_stats(reference_stats(a), (b.mean(0), np.cov(b, rowvar=False)))


def reference_stats(real: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(mean, S^{1/2}, tr S)`` of a reference set: what :func:`frechet_from_stats` needs of it, computed once
    when one reference is compared with many sets (the scorecard's band draws)."""
    a = _as2d(real, "real")
    s_a = np.cov(a, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    return a.mean(0), (v * np.sqrt(np.clip(w, 0, None))) @ v.T, float(np.trace(s_a))


def frechet_from_stats(ref: tuple[np.ndarray, np.ndarray, float], fake: tuple[np.ndarray, np.ndarray]) -> float:
    """:func:`frechet_distance` from :func:`reference_stats` of the reference and ``(mean, covariance)`` of the
    other set (the same arithmetic, in the same order)."""
    mu_a, s_a_half, tr_a = ref
    mu_b, s_b = fake
    cross = np.linalg.eigvalsh(s_a_half @ s_b @ s_a_half)
    tr_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    d = float(((mu_a - mu_b) ** 2).sum() + tr_a + np.trace(s_b) - 2.0 * tr_sqrt)
    return max(d, 0.0)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.clip(d, 0.0, None)


def median_bandwidth(real: np.ndarray, fake: np.ndarray) -> float:
    """Median heuristic: the median pairwise Euclidean distance over the pooled sample (non-zero pairs)."""
    z = np.concatenate([_as2d(real, "real"), _as2d(fake, "fake")])
    d = np.sqrt(_sq_dists(z, z)[np.triu_indices(len(z), k=1)])
    d = d[d > 0]
    return float(np.median(d)) if len(d) else 1.0


def mmd_rbf(real: np.ndarray, fake: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD with an RBF kernel (Gretton et al. 2012, eq. 3).

    ``k(x, y) = exp(-||x - y||^2 / (2 s^2))`` with ``s`` the median heuristic over the pooled sample unless
    given. Lower is better; around 0 (it can be slightly negative: the estimator is unbiased) when the two
    sets come from one distribution.
    """
    a, b = _as2d(real, "real"), _as2d(fake, "fake")
    s = bandwidth or median_bandwidth(a, b)
    g = 1.0 / (2.0 * s * s)
    kaa, kbb, kab = np.exp(-g * _sq_dists(a, a)), np.exp(-g * _sq_dists(b, b)), np.exp(-g * _sq_dists(a, b))
    n, m = len(a), len(b)
    t_aa = (kaa.sum() - np.trace(kaa)) / (n * (n - 1))
    t_bb = (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
    return float(t_aa + t_bb - 2.0 * kab.mean())


def _kth_nn_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = np.sqrt(_sq_dists(x, x))
    # k+1-th smallest in each row: the smallest is the point itself (distance 0)
    return np.partition(d, k, axis=1)[:, k]


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al., ICML 2020, eqs. 1-4 with k-NN balls).

    * precision: fraction of fake samples inside some real sample's k-NN ball (fidelity) -- higher better;
    * recall: fraction of real samples inside some fake sample's k-NN ball (diversity) -- higher better;
    * density: mean number of real balls holding each fake sample, divided by k (1 in expectation for
      matching distributions; above 1 = samples crowd the dense real modes);
    * coverage: fraction of real samples whose k-NN ball holds at least one fake sample -- higher better.
    """
    a, b = _as2d(real, "real"), _as2d(fake, "fake")
    if len(a) <= k or len(b) <= k:
        raise ValueError(f"prdc needs more than k={k} samples per set (got {len(a)} real, {len(b)} fake)")
    r_real, r_fake = _kth_nn_radius(a, k), _kth_nn_radius(b, k)
    d = np.sqrt(_sq_dists(a, b))  # (N, M)
    inside_real = d < r_real[:, None]  # (N, M): fake j inside real i's ball
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d < r_fake[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) < r_real).mean()),
    }
