"""The TSTR beat classifier: gradient-boosted trees on inter-patient features, chosen by patient-grouped CV.

Model: scikit-learn's :class:`~sklearn.ensemble.HistGradientBoostingClassifier` on the features of
:mod:`eval.beat_features` (RR normalised per patient, morphology, morphology against the patient's median
beat), trained with per-beat weights ``(class frequency) ** -class_weight_power`` (1 = balanced classes).
Its settings (:class:`StrongConfig` defaults) were chosen by :func:`cross_validate` on DS1 alone, folds
grouped by record so no patient is in both a fold's training and test beats (``scripts/beat_cv.py``
writes the table, ``docs/tstr.md`` shows it); DS2 played no part.

Seeds: the trees consider a random ``max_features`` share of the features at each split (random_state =
seed), so seeds change the ensemble the way subsampling does; everything else is deterministic.

The public surface mirrors :mod:`eval.beat_classifier` (``predict``, ``predict_proba``, ``describe``), so
:func:`eval.conditional.label_agreement` and the TSTR arms take either classifier.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .beat_classifier import beat_metrics
from .beat_features import beat_features
from .beats import CLASSES, BeatSet


@dataclass
class StrongConfig:
    """Settings of :func:`train_strong`.

    Defaults: the DS1 cross-validation's choice, ``"rr+morph+patient, sqrt weights"`` of :data:`CV_GRID`
    (pooled out-of-fold macro-F1 0.530 on DS1, 5 record-grouped folds; ``docs/results/beat_cv.json``).
    """

    feature_set: str = "rr+morph+patient"
    learning_rate: float = 0.1
    max_iter: int = 100
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 100
    l2_regularization: float = 1.0
    max_features: float = 0.5          # share of features tried per split (the seed's randomness)
    class_weight_power: float = 0.5    # per-beat weight ~ class frequency ** -power (1 = balanced)
    seed: int = 0
    num_threads: int = 1               # OpenMP threads (1: the machine is shared; spin-waits cost more)


def _features(beats: BeatSet, feature_set: str) -> np.ndarray:
    """The beats' stored features when they were computed with ``feature_set``, else computed here."""
    if beats.features is not None and beats.meta.get("feature_set") == feature_set:
        return beats.features
    if beats.features is not None:
        raise ValueError(f"beats carry {beats.meta.get('feature_set')!r} features, the classifier needs "
                         f"{feature_set!r}: recompute with eval.beat_features.with_features(beats, {feature_set!r})")
    return beat_features(beats, feature_set)[0]


def _weights(y: np.ndarray, power: float) -> np.ndarray:
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    w = np.where(counts > 0, np.maximum(counts, 1) ** -power, 0.0)
    w = w / (w * counts).sum() * counts.sum()  # mean weight per training beat = 1
    return w[y]


class StrongClassifier:
    """A fitted gradient-boosted tree ensemble and the settings it was trained with."""

    def __init__(self, model, config: StrongConfig, train_counts: dict, seconds: float = 0.0):
        self.model, self.config, self.train_counts, self.seconds = model, config, train_counts, seconds

    def predict_proba(self, beats: BeatSet) -> np.ndarray:
        """``(N, 4)`` probabilities over N, S, V, F (a class absent from training gets 0)."""
        from threadpoolctl import threadpool_limits

        out = np.zeros((len(beats), len(CLASSES)), np.float32)
        if not len(beats):
            return out
        with threadpool_limits(self.config.num_threads):
            p = self.model.predict_proba(_features(beats, self.config.feature_set))
        out[:, self.model.classes_] = p
        return out

    def predict(self, beats: BeatSet) -> np.ndarray:
        return self.predict_proba(beats).argmax(1)

    def describe(self) -> dict:
        return {"model": "HistGradientBoostingClassifier", "config": asdict(self.config),
                "train_counts": self.train_counts, "n_iter": int(self.model.n_iter_),
                "seconds": round(self.seconds, 1)}


def train_strong(train: BeatSet, config: StrongConfig | None = None) -> StrongClassifier:
    """Fit the tree ensemble on ``train`` (features from ``train.features`` when present).

    Parameters
    ----------
    train : BeatSet
        Labelled beats; compute features on whole sets first (:func:`eval.beat_features.with_features`)
        when ``train`` is a class subset of a larger set.
    config : StrongConfig, optional
        Settings; the defaults are the DS1 cross-validation's choice.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    cfg = config or StrongConfig()
    if len(train) == 0:
        raise ValueError("no training beats")
    t = time.time()
    f = _features(train, cfg.feature_set)
    model = HistGradientBoostingClassifier(
        learning_rate=cfg.learning_rate, max_iter=cfg.max_iter, max_leaf_nodes=cfg.max_leaf_nodes,
        min_samples_leaf=cfg.min_samples_leaf, l2_regularization=cfg.l2_regularization,
        max_features=cfg.max_features, early_stopping=False, random_state=cfg.seed)
    with threadpool_limits(cfg.num_threads):
        model.fit(f, train.y, sample_weight=_weights(train.y, cfg.class_weight_power))
    counts = train.counts()
    return StrongClassifier(model, cfg, counts, time.time() - t)


def cross_validate(beats: BeatSet, configs: dict[str, StrongConfig], n_splits: int = 5, log=print) -> dict:
    """Patient-grouped K-fold CV of each named config on ``beats`` (DS1): pooled out-of-fold metrics.

    Folds: :class:`~sklearn.model_selection.GroupKFold` by ``beats.group`` (the record), so each record's
    beats are scored by a model that never saw that patient. Returns, per config, the metrics of the pooled
    out-of-fold predictions (:func:`eval.beat_classifier.beat_metrics`), the macro-F1 of each fold, and
    the seconds spent.
    """
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(beats.group, dtype=str)
    folds = list(GroupKFold(n_splits=n_splits).split(np.zeros(len(beats)), beats.y, groups))
    cache: dict[str, np.ndarray] = {}
    out = {}
    for name, cfg in configs.items():
        t = time.time()
        if cfg.feature_set not in cache:
            cache[cfg.feature_set] = beat_features(beats, cfg.feature_set)[0]
        feats = cache[cfg.feature_set]
        pred = np.full(len(beats), -1)
        fold_f1 = []
        for tr, te in folds:
            train = beats.subset(tr)
            train.features, train.meta = feats[tr], {"feature_set": cfg.feature_set}
            test = beats.subset(te)
            test.features, test.meta = feats[te], {"feature_set": cfg.feature_set}
            pred[te] = train_strong(train, replace(cfg)).predict(test)
            fold_f1.append(beat_metrics(test.y, pred[te])["macro_f1"])
        m = beat_metrics(beats.y, pred)
        out[name] = {"config": asdict(cfg), "macro_f1": m["macro_f1"],
                     "per_class": {c: {k: m["per_class"][c][k] for k in ("se", "ppv", "f1")} for c in CLASSES},
                     "fold_macro_f1": fold_f1, "confusion": m["confusion"], "seconds": round(time.time() - t, 1)}
        pc = m["per_class"]
        log(f"[cv] {name}: macro-F1 {m['macro_f1']:.3f} (S F1 {pc['S']['f1']:.3f}, V F1 {pc['V']['f1']:.3f}, "
            f"F F1 {pc['F']['f1']:.3f}) {time.time() - t:.0f} s")
    return {"n_splits": n_splits, "folds": [sorted(set(groups[te])) for _, te in folds], "results": out}


#: name -> StrongConfig overrides. Feature-set ablations at one setting, then weighting and capacity.
CV_GRID: dict[str, dict] = {
    "rr_raw": {"feature_set": "rr_raw"},
    "rr (per-patient RR)": {"feature_set": "rr"},
    "rr+patient": {"feature_set": "rr+patient"},
    "rr+morph": {"feature_set": "rr+morph"},
    "rr+morph+patient": {"feature_set": "rr+morph+patient"},
    "rr+morph+patient, sqrt weights": {"feature_set": "rr+morph+patient", "class_weight_power": 0.5},
    "rr+morph+patient, small trees": {"feature_set": "rr+morph+patient", "max_leaf_nodes": 7,
                                      "min_samples_leaf": 300, "learning_rate": 0.05, "max_iter": 200},
    "rr+patient, small trees": {"feature_set": "rr+patient", "max_leaf_nodes": 7, "min_samples_leaf": 300,
                                "learning_rate": 0.05, "max_iter": 200},
}


@dataclass
class BeatCVConfig:
    """Fields of ``scripts/beat_cv.py`` (every field is a flag)."""

    out: str = "runs/beat_cv"
    data_dir: str | None = None
    download: bool = True
    records: list[str] = field(default_factory=list)  # empty = DS1 (never DS2)
    n_splits: int = 5
    max_iter: int = 100             # boosting rounds of the grid's base setting
    only: list[str] = field(default_factory=list)     # run only these CV_GRID names (empty = all)
