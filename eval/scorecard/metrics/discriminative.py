"""Discriminative score: how well a classifier tells real from synthetic windows, |accuracy - 0.5|.

TimeGAN's reference implementation trains a GRU with ``hidden_dim = int(dim / 2)`` units, which is 0 for a
single-channel series, so it cannot score one ECG lead. Here the classifier is a gradient-boosted tree
ensemble (``sklearn.ensemble.HistGradientBoostingClassifier``) on a per-window feature vector that sees
one lead: the frozen embedding, a log power spectrum, amplitude quantiles and R-peak statistics
(:func:`ecg2llm.eval.scorecard.features.discriminator_features`). It is flexible enough to find any of those differences
and cheap enough to cross-validate in seconds on 2 cores.

Protocol: the larger set is subsampled (seeded) to the size of the smaller so chance is exactly 0.5;
stratified k-fold cross-validation (k = 5), repeated ``n_repeats`` times with different shuffles;
accuracy is pooled over all held-out predictions. 0 = indistinguishable, 0.5 = perfectly separable.

Exact duplicates (a synthetic window identical to a real one) are kept in the same fold
(``StratifiedGroupKFold`` with one group per distinct feature vector). Plain k-fold would put a test
window's twin, with the opposite label, in the training folds; the classifier then predicts the wrong
label for nearly every twin and the accuracy drops far *below* 0.5, which ``|acc - 0.5|`` would report
as "easy to tell apart" for two identical sets.
"""

from __future__ import annotations

import os

import numpy as np

#: classifier fits run on this many threads at once (each fit on one OpenMP thread: sklearn's histogram
#: gradient boosting releases the GIL in its Cython loops, so two fits use two cores; results are identical
#: to fitting one after the other). ``ECG2LLM_FIT_WORKERS=1`` runs them in turn.
FIT_WORKERS = max(1, int(os.environ.get("ECG2LLM_FIT_WORKERS", min(2, os.cpu_count() or 1))))


def parallel_map(fn, jobs: list) -> list:
    """``[fn(j) for j in jobs]``, in order, on :data:`FIT_WORKERS` threads."""
    if FIT_WORKERS <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(FIT_WORKERS) as ex:
        return list(ex.map(fn, jobs))


def discriminative_score(
    real: np.ndarray, fake: np.ndarray, n_splits: int = 5, n_repeats: int = 1, seed: int = 0
) -> dict[str, float]:
    """Cross-validated real-vs-fake accuracy on feature vectors.

    Parameters
    ----------
    real, fake : np.ndarray
        ``(N, F)`` and ``(M, F)`` feature matrices (NaN allowed: the trees route missing values).
    n_splits, n_repeats : int
        Stratified k-fold settings.
    seed : int
        Seed of the balancing subsample, the folds and the classifier.

    Returns
    -------
    dict
        ``disc_score = |accuracy - 0.5|`` (lower better), ``disc_accuracy``, ``disc_accuracy_std``
        (across folds) and ``disc_n`` (windows per class).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedGroupKFold
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake))
    if n < n_splits:
        raise ValueError(f"discriminative score needs at least {n_splits} windows per class, got {n}")
    r = np.asarray(real, np.float64)[np.sort(rng.choice(len(real), n, replace=False))]
    f = np.asarray(fake, np.float64)[np.sort(rng.choice(len(fake), n, replace=False))]
    x = np.concatenate([r, f])
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    _, groups = np.unique(np.nan_to_num(x, nan=np.inf), axis=0, return_inverse=True)
    splits = [
        sp
        for rep in range(n_repeats)
        for sp in StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed + rep).split(
            x, y, groups.ravel()
        )
    ]
    def fit(split):
        tr, te = split
        # sklearn's default min_samples_leaf=20 forbids any split below 40 training rows: scale it down for
        # small sets so a tiny set is not declared indistinguishable just because the trees cannot grow
        leaf = int(min(20, max(2, len(tr) // 16)))
        clf = HistGradientBoostingClassifier(
            max_iter=100,
            max_leaf_nodes=15,
            learning_rate=0.1,
            min_samples_leaf=leaf,
            early_stopping=False,
            random_state=seed,
        )
        clf.fit(x[tr], y[tr])
        return clf.predict(x[te]) == y[te]

    # one OpenMP thread per fit: on a few hundred rows threads only add overhead, and on a shared machine their
    # spin-waiting made one fit 100x slower (measured: 126 s vs 1 s for 5 folds of 800 rows); folds run side by
    # side instead (parallel_map)
    with threadpool_limits(limits=1, user_api="openmp"):
        hits = parallel_map(fit, splits)
    correct, total, fold_acc = 0, 0, []
    for (_, te), hit in zip(splits, hits, strict=True):
        correct += int(hit.sum())
        total += len(te)
        fold_acc.append(float(hit.mean()))
    acc = correct / total
    return {
        "disc_score": abs(acc - 0.5),
        "disc_accuracy": acc,
        "disc_accuracy_std": float(np.std(fold_acc)),
        "disc_n": n,
    }
