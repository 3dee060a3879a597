"""The TSTR beat classifier on inter-patient features, chosen by patient-grouped CV on DS1.

Models (:data:`MODELS`, ``StrongConfig.model``) on the features of :mod:`ecg2llm.eval.tstr.beat_features` (RR normalised
per patient, morphology, morphology against the patient's median beat), trained with per-beat weights
``(class frequency) ** -class_weight_power`` (1 = balanced classes): scikit-learn's
:class:`~sklearn.ensemble.HistGradientBoostingClassifier`, linear discriminants, logistic regression, a
small MLP, the mean of trees and logistic regression, and the default **two-stage** model: trees call V and
F, and N/S models trained on the N and S beats split the other beats into N and S (trees weighted for V learn
the morphology of the 22 DS1 patients and under-call S): by default the mean of boosted trees on the rhythm
context and a class-balanced logistic regression on the patient-average RR ratios, S at P(S) >= 0.7.
The model and its settings (:class:`StrongConfig` defaults) were chosen by :func:`cross_validate` on DS1
alone, folds grouped by record so no patient is in both a fold's training and test beats
(``scripts/beat_cv.py`` writes the table, ``docs/tstr.md`` shows it); DS2 played no part.

Seeds: the trees consider a random ``max_features`` share of the features at each split (random_state =
seed), so seeds change the ensemble the way subsampling does; the MLP's seed sets its initialisation; the
linear models are deterministic.

The public surface mirrors :mod:`ecg2llm.eval.beat_classifier` (``predict``, ``predict_proba``, ``describe``), so
:func:`ecg2llm.eval.conditional.label_agreement` and the TSTR arms take either classifier.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..beat_classifier import beat_metrics
from ..beats import CLASSES, BeatSet
from .beat_features import beat_features, feature_names, with_features


@dataclass
class StrongConfig:
    """Settings of :func:`train_strong`.

    Defaults: the DS1 cross-validation's choice among the mean-reference rows (fourth SVEB pass,
    :data:`FOURTH_PASS_NS`), ``"two-stage: trees sqrt V/F, trees rr_mean+irregularity sqrt, N/S-trained S/N, S
    threshold 0.7"`` of :data:`CV_GRID` (pooled out-of-fold macro-F1 0.609, S F1 0.556, V F1 0.901 on DS1, 5
    record-grouped folds; ``docs/results/beat_cv.json``. The best of all rows, the third pass's choice with a
    median-referenced N/S stage, scores 0.619 on DS1 and misses every S beat of a patient whose majority rhythm is
    ectopic, DS2's record 232: ``docs/tstr.md``): trees with frequency^-0.5 weights on all features call V and F;
    the remaining beats are split into N and S by boosted trees (frequency^-0.5) trained on the N and S beats
    alone, on RR over mean references only (the patient's mean, the 5-min mean, the local mean) and the
    irregularity of the neighbouring intervals, calling S at P(S) >= 0.7.
    """

    model: str = "two-stage"           # trees | logreg | lda | mlp | trees+logreg | two-stage (see MODELS)
    feature_set: str = "rr+morph+patient"
    linear_feature_set: str = "rr_mean+irregularity"  # features of the second half of "trees+logreg" / "two-stage"
    vote: float = 0.5                  # trees+logreg: trees' share of the averaged probabilities
    linear_class_weight_power: float = 0.5  # trees+logreg / two-stage: class weighting of the second half
    second_model: str = "trees"        # two-stage: the N/S splitter, logreg | trees (boosted trees, same settings)
    s_threshold: float = 0.7           # two-stage: call S when the N/S stage's P(S) / (P(N) + P(S)) >= this
    view_feature_set: str = ""         # two-stage: a second N/S model on these features ("": none); N/S = mean
    view_model: str = "logreg"         # ... its kind (logreg | trees) and class weighting
    view_class_weight_power: float = 1.0
    ns_train: str = "NS"               # two-stage N/S models learn "all" four classes (N/S renormalised) | "NS" only
    monotone: bool = False             # ns_train "NS", trees: P(S) non-increasing in every previous-RR ratio
    C: float = 1.0                     # logreg: inverse L2 strength (on standardised features)
    hidden: int = 32                   # mlp: hidden units (one layer)
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
    """The columns of ``feature_set`` from the beats' stored features (computed with it or a superset of
    it, ``beats.meta["feature_names"]``), else computed here."""
    if beats.features is None:
        return beat_features(beats, feature_set)[0]
    if beats.meta.get("feature_set") == feature_set:
        return beats.features
    have = list(beats.meta.get("feature_names", ()))
    want = feature_names(feature_set)
    if have and set(want) <= set(have):
        return beats.features[:, [have.index(n) for n in want]]
    raise ValueError(f"beats carry {beats.meta.get('feature_set')!r} features, the classifier needs "
                     f"{feature_set!r}: recompute with "
                     f"ecg2llm.eval.tstr.beat_features.with_features(beats, {feature_set!r})")


def _weights(y: np.ndarray, power: float) -> np.ndarray:
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    w = np.where(counts > 0, np.maximum(counts, 1) ** -power, 0.0)
    w = w / (w * counts).sum() * counts.sum()  # mean weight per training beat = 1
    return w[y]


#: ``StrongConfig.model`` -> what is fitted. Linear models and the MLP see median-imputed, standardised
#: features; every model is trained with the per-beat class weights (LDA: equal class priors instead).
MODELS = {"trees": "HistGradientBoostingClassifier", "logreg": "LogisticRegression (L2, standardised)",
          "lda": "LinearDiscriminantAnalysis (equal priors, standardised)",
          "mlp": "MLPClassifier (one hidden layer, standardised)",
          "trees+logreg": "mean of HistGradientBoostingClassifier and LogisticRegression probabilities",
          "two-stage": "HistGradientBoostingClassifier for V/F, then LogisticRegression for S vs N"}


def _make(kind: str, cfg: StrongConfig):
    """An unfitted sklearn estimator of ``kind`` (one member of :data:`MODELS`)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "trees":
        return HistGradientBoostingClassifier(
            learning_rate=cfg.learning_rate, max_iter=cfg.max_iter, max_leaf_nodes=cfg.max_leaf_nodes,
            min_samples_leaf=cfg.min_samples_leaf, l2_regularization=cfg.l2_regularization,
            max_features=cfg.max_features, early_stopping=False, random_state=cfg.seed)
    head = {"logreg": lambda: LogisticRegression(C=cfg.C, max_iter=300),
            "lda": lambda: LinearDiscriminantAnalysis(),
            "mlp": lambda: MLPClassifier((cfg.hidden,), alpha=1e-2, max_iter=60, random_state=cfg.seed)}[kind]()
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), head)


def _fit(kind: str, cfg: StrongConfig, f: np.ndarray, y: np.ndarray, power: float):
    model = _make(kind, cfg)
    if kind == "lda":  # no sample weights: balance through the priors (de Chazal et al. 2004)
        present = np.unique(y)
        model.steps[-1][1].set_params(priors=np.full(len(present), 1.0 / len(present)))
        return model.fit(f, y)
    w = _weights(y, power)
    if kind == "trees":
        # a column NaN for every beat (rhythm context of a hand-built BeatSet without ``rhythm``) breaks the
        # trees' binning: constant 0 instead, which no split uses (so NaN there at prediction changes nothing)
        f = np.where(np.isnan(f).all(0, keepdims=True), 0.0, f) if len(f) else f
        return model.fit(f, y, sample_weight=w)
    return model.fit(f, y, **{f"{model.steps[-1][0]}__sample_weight": w})


class StrongClassifier:
    """Fitted models (``(feature set, estimator)`` pairs, probabilities averaged) and their settings."""

    def __init__(self, model, config: StrongConfig, train_counts: dict, seconds: float = 0.0):
        self.model, self.config, self.train_counts, self.seconds = model, config, train_counts, seconds

    def predict_proba(self, beats: BeatSet) -> np.ndarray:
        """``(N, 4)`` probabilities over N, S, V, F (a class absent from training gets 0)."""
        from threadpoolctl import threadpool_limits

        out = np.zeros((len(beats), len(CLASSES)), np.float32)
        if not len(beats):
            return out
        with threadpool_limits(self.config.num_threads):
            probs = []
            for feature_set, model in self.model:
                p = np.zeros_like(out)
                p[:, model.classes_] = model.predict_proba(_features(beats, feature_set))
                probs.append(p)
        if self.config.model == "two-stage":  # trees call V/F; the linear model splits the rest into N / S
            trees, *split = probs  # one N/S model, or two (view_feature_set): their N/S probabilities averaged
            rest = np.isin(trees.argmax(1), [CLASSES.index("N"), CLASSES.index("S")])
            ns = np.mean([q[:, :2] / np.maximum(q[:, :2].sum(1, keepdims=True), 1e-12) for q in split], 0)
            t = float(self.config.s_threshold)
            if t != 0.5:  # shift the S log-odds by logit(t): P(S) >= t becomes the argmax (0.5: unchanged)
                if not 0.0 < t < 1.0:
                    raise ValueError(f"s_threshold must be in (0, 1), got {t}")
                odds = ns[:, 1] / np.maximum(ns[:, 0], 1e-12) * ((1.0 - t) / t)
                ns = np.stack([1.0 / (1.0 + odds), odds / (1.0 + odds)], 1).astype(np.float32)
            out[:] = trees
            out[rest] = 0.0
            out[rest, :2] = ns[rest]
            return out
        for p, share in zip(probs, _shares(self.config)):
            out += share * p
        return out

    def predict(self, beats: BeatSet) -> np.ndarray:
        return self.predict_proba(beats).argmax(1)

    def describe(self) -> dict:
        return {"model": MODELS[self.config.model], "config": asdict(self.config),
                "train_counts": self.train_counts, "seconds": round(self.seconds, 1)}


def _members(cfg: StrongConfig) -> list[tuple[str, str, float]]:
    """``(model kind, feature set, class weight power)`` of each fitted member of ``cfg.model``."""
    if cfg.model not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {cfg.model!r}")
    if cfg.second_model not in ("logreg", "trees"):
        raise ValueError(f"second_model must be 'logreg' or 'trees', got {cfg.second_model!r}")
    if cfg.view_model not in ("logreg", "trees"):
        raise ValueError(f"view_model must be 'logreg' or 'trees', got {cfg.view_model!r}")
    if cfg.model in ("trees+logreg", "two-stage"):
        second = cfg.second_model if cfg.model == "two-stage" else "logreg"
        out = [("trees", cfg.feature_set, cfg.class_weight_power),
               (second, cfg.linear_feature_set, cfg.linear_class_weight_power)]
        if cfg.model == "two-stage" and cfg.view_feature_set:
            out.append((cfg.view_model, cfg.view_feature_set, cfg.view_class_weight_power))
        return out
    return [(cfg.model, cfg.feature_set, cfg.class_weight_power)]


def stage_feature_sets(cfg: StrongConfig) -> tuple[str, ...]:
    """The feature sets ``cfg``'s members read, in member order (compute them together on whole sets)."""
    return tuple(dict.fromkeys(fs for _, fs, _ in _members(cfg)))


def _shares(cfg: StrongConfig) -> list[float]:
    return [cfg.vote, 1.0 - cfg.vote] if cfg.model == "trees+logreg" else [1.0]


#: StrongConfig fields that change no fitted member (how members are combined, or not a fit setting)
_NOT_FIT = ("model", "feature_set", "linear_feature_set", "vote", "linear_class_weight_power", "second_model",
            "class_weight_power", "s_threshold", "num_threads", "view_feature_set", "view_model",
            "view_class_weight_power", "ns_train", "monotone")
#: previous-RR ratios (``StrongConfig.monotone``): an earlier beat is, all else equal, no less likely S
PREMATURITY = ("rr_pre/patient", "rr_pre/local", "ctx_pre/median", "rr_pre/patient_mean", "ref_pre/avg5min",
               "ref_pre/slower_median")


def _fit_key(kind: str, feature_set: str, power: float, cfg: StrongConfig, ns: bool = False) -> tuple:
    """What one fitted member depends on besides its training beats: two configs with the same key fit the
    same estimator (so :func:`cross_validate` fits it once per fold). ``ns``: a two-stage N/S member."""
    own = (cfg.ns_train, cfg.monotone) if ns else ()
    return (kind, feature_set, power, *own) + tuple(
        (k, v) for k, v in sorted(asdict(cfg).items()) if k not in _NOT_FIT)


class _Constant:
    """The N/S member of a training set with one of N / S only: that class, probability 1."""

    def __init__(self, y: np.ndarray):
        self.classes_ = np.unique(y) if len(y) else np.array([CLASSES.index("N")])

    def predict_proba(self, f: np.ndarray) -> np.ndarray:
        return np.ones((len(f), 1))


def _fit_member(kind: str, cfg: StrongConfig, feature_set: str, train: BeatSet, power: float, ns: bool):
    """Fit one member on ``train``; a two-stage N/S member (``ns``) with ``ns_train="NS"`` sees only the N and
    S beats (and, ``monotone`` trees, P(S) non-increasing in each :data:`PREMATURITY` column)."""
    f, y = _features(train, feature_set), train.y
    if ns and cfg.ns_train not in ("all", "NS"):
        raise ValueError(f"ns_train must be 'all' or 'NS', got {cfg.ns_train!r}")
    if ns and cfg.ns_train == "NS":
        keep = np.isin(y, [CLASSES.index("N"), CLASSES.index("S")])
        f, y = f[keep], y[keep]
        if len(np.unique(y)) < 2:  # no S (or no N) beats to learn from, e.g. a small generated set
            return _Constant(y)
        if cfg.monotone and kind == "trees":
            cst = [-1 if n in PREMATURITY else 0 for n in feature_names(feature_set)]
            model = _make(kind, cfg).set_params(monotonic_cst=cst)
            f = np.where(np.isnan(f).all(0, keepdims=True), 0.0, f) if len(f) else f
            return model.fit(f, y, sample_weight=_weights(y, power))
    return _fit(kind, cfg, f, y, power)


def train_strong(train: BeatSet, config: StrongConfig | None = None, cache: dict | None = None) -> StrongClassifier:
    """Fit ``config.model`` on ``train`` (features from ``train.features`` when present).

    Parameters
    ----------
    train : BeatSet
        Labelled beats; compute features on whole sets first (:func:`ecg2llm.eval.tstr.beat_features.with_features`)
        when ``train`` is a class subset of a larger set.
    config : StrongConfig, optional
        Settings; the defaults are the DS1 cross-validation's choice.
    cache : dict, optional
        Fitted members by :func:`_fit_key`, reused and filled; only for calls on the **same** training beats
        (one dict per CV fold), where rows sharing a stage fit it once.
    """
    from threadpoolctl import threadpool_limits

    cfg = config or StrongConfig()
    if len(train) == 0:
        raise ValueError("no training beats")
    t = time.time()
    fitted = []
    with threadpool_limits(cfg.num_threads):
        for i, (kind, feature_set, power) in enumerate(_members(cfg)):
            ns = cfg.model == "two-stage" and i > 0
            key = _fit_key(kind, feature_set, power, cfg, ns)
            if cache is not None and key in cache:
                fitted.append((feature_set, cache[key]))
                continue
            model = _fit_member(kind, cfg, feature_set, train, power, ns)
            if cache is not None:
                cache[key] = model
            fitted.append((feature_set, model))
    return StrongClassifier(fitted, cfg, train.counts(), time.time() - t)


def cross_validate(beats: BeatSet, configs: dict[str, StrongConfig], n_splits: int = 5, log=print) -> dict:
    """Patient-grouped K-fold CV of each named config on ``beats`` (DS1): pooled out-of-fold metrics.

    Folds: :class:`~sklearn.model_selection.GroupKFold` by ``beats.group`` (the record), so each record's
    beats are scored by a model that never saw that patient. Returns, per config, the metrics of the pooled
    out-of-fold predictions (:func:`ecg2llm.eval.beat_classifier.beat_metrics`), the macro-F1 of each fold, and
    the seconds spent.
    """
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(beats.group, dtype=str)
    folds = list(GroupKFold(n_splits=n_splits).split(np.zeros(len(beats)), beats.y, groups))
    cache: dict[str, np.ndarray] = {}
    fitted: list[dict] = [{} for _ in folds]  # per fold: members shared by several rows are fitted once
    out = {}
    for name, cfg in configs.items():
        t = time.time()
        sets = stage_feature_sets(cfg)
        key = "|".join(sets)
        if key not in cache:  # both stages' columns, computed on the whole set (patient statistics)
            whole = with_features(beats, *sets)
            cache[key] = (whole.features, whole.meta["feature_names"])
        feats, names = cache[key]
        pred = np.full(len(beats), -1)
        fold_f1 = []
        for k, (tr, te) in enumerate(folds):
            train = beats.subset(tr)
            meta = {"feature_set": key, "feature_names": names}
            train.features, train.meta = feats[tr], dict(meta)
            test = beats.subset(te)
            test.features, test.meta = feats[te], dict(meta)
            pred[te] = train_strong(train, replace(cfg), cache=fitted[k]).predict(test)
            fold_f1.append(beat_metrics(test.y, pred[te])["macro_f1"])
        m = beat_metrics(beats.y, pred)
        out[name] = {"config": asdict(cfg), "macro_f1": m["macro_f1"],
                     "per_class": {c: {k: m["per_class"][c][k] for k in ("se", "ppv", "f1")} for c in CLASSES},
                     "fold_macro_f1": fold_f1, "confusion": m["confusion"], "seconds": round(time.time() - t, 1)}
        pc = m["per_class"]
        log(f"[cv] {name}: macro-F1 {m['macro_f1']:.3f} (S F1 {pc['S']['f1']:.3f}, V F1 {pc['V']['f1']:.3f}, "
            f"F F1 {pc['F']['f1']:.3f}) {time.time() - t:.0f} s")
    return {"n_splits": n_splits, "folds": [sorted(set(groups[te])) for _, te in folds], "results": out}


#: name -> StrongConfig overrides (on the StrongConfig defaults). Trees first (feature-set ablations,
#: then class weighting), then de Chazal-style linear discriminants, class-balanced logistic regression, a
#: small MLP, and the trees' and the logistic regression's probabilities averaged. "balanced" = class
#: weights frequency^-1, "sqrt" = frequency^-0.5.
def _g(model: str, feature_set: str, power: float, **kw) -> dict:
    if model in ("two-stage", "trees+logreg"):  # rows name their second stage (the default is now trees)
        kw.setdefault("second_model", "logreg")
    # rows name every N/S-stage setting whose default the third pass changed: no view, all-class training,
    # the argmax (0.5) threshold unless the row says otherwise, so each row keeps the meaning it was run with
    for k, v in ROW_NEUTRAL.items():
        kw.setdefault(k, v)
    return {"model": model, "feature_set": feature_set, "class_weight_power": power, **kw}


#: the N/S-stage settings a CV row gets unless it names them (the StrongConfig defaults before the third pass)
ROW_NEUTRAL = {"view_feature_set": "", "view_model": "logreg", "view_class_weight_power": 1.0, "ns_train": "all",
               "monotone": False, "s_threshold": 0.5}


def _ns(linear_feature_set: str, power: float, second_model: str = "logreg", **kw) -> dict:
    """A two-stage row with the chosen V/F stage (trees, ``rr+morph+patient``, sqrt weights) and the N/S
    stage ``second_model`` on ``linear_feature_set`` with class weights frequency^-``power``."""
    return _g("two-stage", "rr+morph+patient", 0.5, linear_feature_set=linear_feature_set,
              linear_class_weight_power=power, second_model=second_model, **kw)


#: N/S stages whose S threshold the third pass cross-validates (each also a row at 0.5), and the thresholds
THIRD_PASS_NS = {
    **{f"trees {fs} sqrt": _ns(fs, 0.5, "trees")
       for fs in ("rr+rhythm", "rr+rhythm+avg", "rr+rhythm+avg+slower", "rr+rhythm+avg+slower+pwave")},
    "trees rr+rhythm sqrt + trees rr+avg sqrt": _ns("rr+rhythm", 0.5, "trees", view_feature_set="rr+avg",
                                                    view_model="trees", view_class_weight_power=0.5),
    "trees rr+rhythm sqrt + logreg rr+avg balanced": _ns("rr+rhythm", 0.5, "trees", view_feature_set="rr+avg",
                                                         view_model="logreg", view_class_weight_power=1.0),
    # the N/S models trained on the N and S beats alone; and trees monotone in prematurity (a physiological prior:
    # no split may make an earlier beat less likely S)
    "trees rr+rhythm sqrt, N/S-trained": _ns("rr+rhythm", 0.5, "trees", ns_train="NS"),
    "trees rr+rhythm sqrt + logreg rr+avg balanced, N/S-trained": _ns(
        "rr+rhythm", 0.5, "trees", view_feature_set="rr+avg", view_model="logreg", view_class_weight_power=1.0,
        ns_train="NS"),
    "trees rr+rhythm+avg+slower sqrt, N/S-trained, monotone": _ns("rr+rhythm+avg+slower", 0.5, "trees",
                                                                  ns_train="NS", monotone=True),
    "trees rr+rhythm+avg+slower sqrt + logreg rr+avg balanced, N/S-trained, monotone": _ns(
        "rr+rhythm+avg+slower", 0.5, "trees", view_feature_set="rr+avg", view_model="logreg",
        view_class_weight_power=1.0, ns_train="NS", monotone=True),
}
S_THRESHOLDS = (0.3, 0.4, 0.6, 0.7, 0.8, 0.9)

#: fourth pass (SVEB): N/S stages that see only **mean** references (``rr_mean`` sets of
#: :mod:`ecg2llm.eval.tstr.beat_features`: de Chazal et al. 2004's patient, 5-min and local average RR), trained on N
#: and S
#: beats. A median reference is the majority rhythm, so it fails a patient whose majority rhythm is ectopic; a
#: mean is moved by a run of premature beats only by its share and raised by pauses. Chosen among themselves
#: (``BeatCVConfig.choose = "mean_reference"``, :func:`mean_reference_only`) on DS1 CV.
FOURTH_PASS_NS = {
    "trees rr_mean sqrt": _ns("rr_mean", 0.5, "trees", ns_train="NS"),
    "trees rr_mean+irregularity sqrt": _ns("rr_mean+irregularity", 0.5, "trees", ns_train="NS"),
    "trees rr_mean+irregularity+pwave sqrt": _ns("rr_mean+irregularity+pwave", 0.5, "trees", ns_train="NS"),
    "trees rr_mean+irregularity sqrt, monotone": _ns("rr_mean+irregularity", 0.5, "trees", ns_train="NS",
                                                     monotone=True),
    "logreg rr_mean balanced": _ns("rr_mean", 1.0, "logreg", ns_train="NS"),
    "trees rr_mean+irregularity sqrt + logreg rr_mean balanced": _ns(
        "rr_mean+irregularity", 0.5, "trees", view_feature_set="rr_mean", view_model="logreg",
        view_class_weight_power=1.0, ns_train="NS"),
}
FOURTH_PASS_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)


def mean_reference_only(row: dict) -> bool:
    """Whether a CV row's N/S stage (and its view) reads only mean-reference features (``rr_mean`` sets)."""
    cfg = replace(StrongConfig(), **row)
    sets = [cfg.linear_feature_set] + ([cfg.view_feature_set] if cfg.view_feature_set else [])
    return cfg.model == "two-stage" and all(s.startswith("rr_mean") for s in sets)

CV_GRID: dict[str, dict] = {
    "trees rr_raw (no patient), balanced": _g("trees", "rr_raw", 1.0),
    "trees rr (per-patient median RR), balanced": _g("trees", "rr", 1.0),
    "trees rr+compact, balanced": _g("trees", "rr+compact", 1.0),
    "trees rr+patient, balanced": _g("trees", "rr+patient", 1.0),
    "trees rr+morph+patient, balanced": _g("trees", "rr+morph+patient", 1.0),
    "trees rr+morph+patient, sqrt": _g("trees", "rr+morph+patient", 0.5),
    "lda rr": _g("lda", "rr", 1.0),
    "lda rr+compact": _g("lda", "rr+compact", 1.0),
    "logreg rr, balanced": _g("logreg", "rr", 1.0),
    "logreg rr+compact, balanced": _g("logreg", "rr+compact", 1.0),
    "logreg rr+patient, balanced": _g("logreg", "rr+patient", 1.0),
    "mlp rr+compact, balanced": _g("mlp", "rr+compact", 1.0),
    "two-stage: trees sqrt V/F, logreg rr+patient balanced S/N": _ns("rr+patient", 1.0),
    "two-stage: trees balanced V/F, logreg rr+patient balanced S/N": _g("two-stage", "rr+morph+patient", 1.0,
                                                                       linear_feature_set="rr+patient",
                                                                       linear_class_weight_power=1.0),
    "two-stage: trees sqrt V/F, logreg rr+compact balanced S/N": _ns("rr+compact", 1.0),
    "trees sqrt + logreg rr+patient balanced": _g("trees+logreg", "rr+morph+patient", 0.5, vote=0.5,
                                                  linear_feature_set="rr+patient", linear_class_weight_power=1.0),
    # rhythm context (ecg2llm.eval.beats.rhythm_features) in the N/S stage, and small boosted trees as that stage
    "two-stage: trees sqrt V/F, logreg rr balanced S/N": _ns("rr", 1.0),
    "two-stage: trees sqrt V/F, logreg rr+rhythm balanced S/N": _ns("rr+rhythm", 1.0),
    "two-stage: trees sqrt V/F, logreg rr+rhythm+patient balanced S/N": _ns("rr+rhythm+patient", 1.0),
    "two-stage: trees sqrt V/F, trees rr balanced S/N": _ns("rr", 1.0, "trees"),
    "two-stage: trees sqrt V/F, trees rr sqrt S/N": _ns("rr", 0.5, "trees"),
    "two-stage: trees sqrt V/F, trees rr+rhythm balanced S/N": _ns("rr+rhythm", 1.0, "trees"),
    "two-stage: trees sqrt V/F, trees rr+rhythm sqrt S/N": _ns("rr+rhythm", 0.5, "trees"),
    "two-stage: trees sqrt V/F, trees rr+rhythm+patient sqrt S/N": _ns("rr+rhythm+patient", 0.5, "trees"),
    # third pass (SVEB): patient-average RR (patient mean, 5-min mean), a slower-beats reference, patient-relative
    # P wave / QRS beside the rhythm context; and the S threshold of the N/S stage (the V/F stage is shared)
    "two-stage: trees sqrt V/F, logreg rr+avg balanced S/N": _ns("rr+avg", 1.0),
    "two-stage: trees sqrt V/F, trees rr+rhythm+avg sqrt S/N": _ns("rr+rhythm+avg", 0.5, "trees"),
    "two-stage: trees sqrt V/F, trees rr+rhythm+slower sqrt S/N": _ns("rr+rhythm+slower", 0.5, "trees"),
    "two-stage: trees sqrt V/F, trees rr+rhythm+avg+slower sqrt S/N": _ns("rr+rhythm+avg+slower", 0.5, "trees"),
    "two-stage: trees sqrt V/F, trees rr+rhythm+pwave sqrt S/N": _ns("rr+rhythm+pwave", 0.5, "trees"),
    "two-stage: trees sqrt V/F, trees rr+rhythm+avg+slower+pwave sqrt S/N": _ns("rr+rhythm+avg+slower+pwave", 0.5,
                                                                              "trees"),
    # two views of the rhythm in the N/S stage, their N/S probabilities averaged: the neighbours' context
    # (rr+rhythm) and the patient-average RR alone (rr+avg; de Chazal / Mondéjar-Guerra), so neither can be ignored
    "two-stage: trees sqrt V/F, trees rr+rhythm sqrt + trees rr+avg sqrt S/N (mean)": THIRD_PASS_NS[
        "trees rr+rhythm sqrt + trees rr+avg sqrt"],
    "two-stage: trees sqrt V/F, trees rr+rhythm sqrt + logreg rr+avg balanced S/N (mean)": THIRD_PASS_NS[
        "trees rr+rhythm sqrt + logreg rr+avg balanced"],
    **{f"two-stage: trees sqrt V/F, {ns} S/N": THIRD_PASS_NS[ns] for ns in (
        "trees rr+rhythm sqrt, N/S-trained", "trees rr+rhythm sqrt + logreg rr+avg balanced, N/S-trained",
        "trees rr+rhythm+avg+slower sqrt, N/S-trained, monotone",
        "trees rr+rhythm+avg+slower sqrt + logreg rr+avg balanced, N/S-trained, monotone")},
    **{f"two-stage: trees sqrt V/F, {ns} S/N, S threshold {t:g}": {**row, "s_threshold": t}
       for ns, row in THIRD_PASS_NS.items() for t in S_THRESHOLDS},
    **{f"two-stage: trees sqrt V/F, {ns}, N/S-trained S/N, S threshold {t:g}": {**row, "s_threshold": t}
       for ns, row in FOURTH_PASS_NS.items() for t in FOURTH_PASS_THRESHOLDS},
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
    # which rows may be chosen: "mean_reference" (N/S stage on mean references only, mean_reference_only) | "any"
    choose: str = "mean_reference"
