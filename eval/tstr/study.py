"""Train on synthetic, test on real: does a class-conditional ECG LM make data that helps a beat classifier?

The study behind ``python scripts/tstr.py --out DIR`` (configuration: :class:`TSTRConfig`):

1. **Generate** with a conditional LM (:mod:`ecg2llm.lm.conditioning`): ``beat_sequences`` records of ``seconds`` s
   unconditionally (the model picks rhythm and every beat label), and as many with each minority class
   requested (``beat:S``, ``beat:V``, ``beat:F``: ``strengths[c]`` log-odds on that label for LM v2; an LM v3
   reads only its control tokens and ``guidance``, the classifier-free guidance of every conditioned set); plus
   ``rhythm_sequences`` 10-s records per rhythm condition. Every record is a WFDB record with a ``.atr``.
   Sets already generated with the same model, seed and settings under ``synthetic_dir`` are reused.
2. **Cut beats** alike from real DS1, real DS2 and the synthetic records (:mod:`ecg2llm.eval.beats`); for the
   default tree classifier, compute the inter-patient features (:mod:`ecg2llm.eval.tstr.beat_features`) per record and
   per generated sequence (RR and morphology normalised within each).
3. **Arms**, each trained with every seed of ``seeds`` and tested on all real DS2 beats (AAMI N, S, V, F)
   with ``classifier`` -- ``trees`` (:mod:`ecg2llm.eval.tstr.strong_classifier`: model and settings chosen by
   patient-grouped CV on DS1, ``scripts/beat_cv.py``; the default two-stage model's trees call V/F and a
   logistic regression splits N/S; a seed sets the trees' per-split feature subsampling) or ``cnn``
   (:mod:`ecg2llm.eval.beat_classifier`; a seed sets initialisation and batch order):
   (a) real DS1; (b) synthetic beats only; (c) DS1 plus the synthetic S, V and F beats (``synthetic_minority``:
   every S/V/F-labelled beat of the beat sets, or -- LM v3 -- only those labelled c under ``beat:c``); and, with
   ``filtered_arm``, (d) DS1 plus only those synthetic S, V, F beats that the arm-(a) classifier (first
   seed, trained on DS1 alone) assigns the generated label -- the usual agreement filter; no DS2 in it.
4. **Agreement**: the arm-(a) classifier (first seed) labels the generated beats; its agreement with
   the generated labels is reported per class beside its agreement with the real DS2 labels.
5. **Fidelity per condition**: each conditional set is scored (stage-3 metrics) against the real DS2
   windows that match its condition, with real DS1 windows of the same condition as the ceiling row.

Outputs: ``tstr.json`` (``arms.<a|b|c|d>``: ``macro_f1_mean``, ``macro_f1_sd``, ``per_class.<N|S|V|F>``:
``se``, ``ppv``, ``f1``; plus ``command``, ``git_sha``, ``date`` and the details), ``tstr.md`` (tables),
``figures/`` (beat templates, per-class bars), ``synthetic/<set>/`` (the generated records, or
``synthetic_dir``), ``run_info.json``; copies of ``tstr.json`` / ``tstr.md`` at ``results_json`` / ``docs_md``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..beat_classifier import ClassifierConfig, beat_metrics, train_classifier
from ..beats import CLASSES, BeatSet, real_beats, synthetic_beats

MINORITY = ("S", "V", "F")


@dataclass
class TSTRConfig:
    """Fields of ``scripts/tstr.py`` (every field is a flag)."""

    out: str = "runs/tstr"
    model: str = "conditional"          # a conditional LM folder, or "conditional" (the shipped one)
    data_dir: str | None = None
    download: bool = True               # fetch missing MIT-BIH records from PhysioNet (false: fail at once)
    train_records: list[str] = field(default_factory=list)  # empty = DS1
    test_records: list[str] = field(default_factory=list)   # empty = DS2
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    beat_sequences: int = 64            # generated records per set (unconditional, beat:S, beat:V, beat:F)
    seconds: float = 30.0
    # log-odds added to the requested beat class, per class: chosen from yield and agreement with a
    # DS1-trained classifier on synthetic beats only (README), never from DS2
    strengths: dict = field(default_factory=lambda: {"S": 2.0, "V": 2.0, "F": 4.0})
    rhythm_conditions: list[str] = field(default_factory=lambda: ["N", "AFIB", "B", "T", "VT"])
    rhythm_sequences: int = 32
    epochs: int = 6                     # CNN epochs (--classifier cnn; fixed, nothing is tuned on DS2)
    tree_max_iter: int = 0              # boosting rounds override (0 = StrongConfig's, chosen by DS1 CV)
    filtered_arm: bool = True           # arm (d): DS1 + the synthetic S/V/F beats a DS1 classifier agrees with
    fidelity: bool = True               # stage-3 metrics per condition
    fidelity_windows: int = 200         # real windows per condition (reference), at most
    batch_size: int = 64
    seed: int = 0                       # generation seed
    num_threads: int = 0                # torch CPU threads (0 = default)
    # trees: ecg2llm.eval.tstr.strong_classifier (chosen by DS1 CV); cnn: ecg2llm.eval.beat_classifier
    classifier: str = "trees"
    cv_json: str | None = None          # scripts/beat_cv.py's cv.json: its table goes into the report
    results_json: str | None = None     # also write tstr.json here (docs/results/tstr.json)
    docs_md: str | None = None          # also write tstr.md here (docs/tstr.md)
    synthetic_dir: str | None = None    # where generated sets go (default <out>/synthetic); share it between runs
    reuse_synthetic: bool = True        # skip a set whose folder holds the same generation (manifest check)
    # classifier-free guidance scale of every conditioned set (LMs trained with condition dropout: LM v2 and v3;
    # LM v3 has no other way to follow a condition); None = the conditional branch alone
    guidance: float | None = None
    temperature: float = 1.0            # sampling temperature of every set
    label_guidance: float | None = None  # LM v3 opt-in label-contrast guidance of the conditioned sets (none = off)
    # which synthetic S/V/F beats arms (c) and (d) add: "all" = every beat labelled S, V or F in every beat set
    # (unconditional and beat:S/V/F; the LM v2 runs); "requested" = only the beats labelled c in the beat:c set
    # (LM v3: labels are the model's own draws, no sampler rule); "auto" = "requested" for LM v3, else "all"
    synthetic_minority: str = "auto"
    # the guidance check instead of the study: per scale g here and per class c of S/V/F,
    # guidance_check_sequences records under beat:c at scale g; reports the share of beats the model labels c
    # and how often the arm-(a) classifier (first seed, DS1 only) agrees (no DS2); writes tstr_guidance.json
    guidance_check: list[float] = field(default_factory=list)
    guidance_check_sequences: int = 8
    # only arm (a), real DS1 -> real DS2: no generation, no synthetic arms, no agreement or fidelity; writes
    # tstr_real_only.json (and results_json when set); needs no conditional LM
    real_only: bool = False

    def __post_init__(self):
        from ecg2llm.core.errors import ConfigError

        if self.classifier not in ("trees", "cnn"):
            raise ConfigError(f"classifier must be 'trees' or 'cnn', got {self.classifier!r}")
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed, e.g. --seeds 0,1,2,3,4")
        if self.synthetic_minority not in ("auto", "all", "requested"):
            raise ConfigError(f"synthetic_minority must be 'auto', 'all' or 'requested', got "
                              f"{self.synthetic_minority!r}")


def synthetic_root(cfg: TSTRConfig) -> Path:
    """Where the generated sets live: ``cfg.synthetic_dir``, else ``<out>/synthetic``."""
    return Path(cfg.synthetic_dir) if cfg.synthetic_dir else Path(cfg.out) / "synthetic"


def split_records(cfg: TSTRConfig) -> tuple[list[str], list[str]]:
    """Training and test records (default DS1 / DS2); overlapping lists are refused (the study is
    inter-patient)."""
    from ecg2llm.core.errors import ConfigError
    from ecg2llm.tokenizer.splits import DS1, DS2

    train_recs = list(cfg.train_records) or list(DS1)
    test_recs = list(cfg.test_records) or list(DS2)
    if set(train_recs) & set(test_recs):
        raise ConfigError(f"train and test records overlap ({sorted(set(train_recs) & set(test_recs))}): "
                          "the study is inter-patient; give disjoint --train_records / --test_records")
    return train_recs, test_recs


def generate_sets(cfg: TSTRConfig, generate, log=print) -> dict[str, Path]:
    """Step 1 of the study: every beat- and rhythm-conditioned set, ``{set name: folder}``.

    ``generate(folder, conditions, num_samples, seconds, seed, strength, guidance) -> folder`` writes one set (an
    ecg2llm synthetic folder with ``.atr`` beat labels; ``guidance`` is ``cfg.guidance`` for the conditioned sets
    and None for the unconditional one); ``scripts/tstr.py`` passes
    :func:`ecg2llm.lm.synthesize.generate_or_reuse` bound to the study's model, so this package never imports ``lm``.
    """
    root = synthetic_root(cfg)
    g = cfg.guidance
    sets = {"unconditional": generate(root / "unconditional", [], cfg.beat_sequences, cfg.seconds, cfg.seed, 0.0,
                                      None)}
    for i, c in enumerate(MINORITY):
        sets[f"beat:{c}"] = generate(root / f"beat_{c}", [f"beat:{c}"], cfg.beat_sequences, cfg.seconds,
                                     cfg.seed + 1000 * (i + 1), float(cfg.strengths.get(c, 2.0)), g)
    for i, r in enumerate(cfg.rhythm_conditions):
        sets[f"rhythm:{r}"] = generate(root / f"rhythm_{r}", [f"rhythm:{r}"], cfg.rhythm_sequences, 10.0,
                                       cfg.seed + 5000 + 100 * i, 0.0, g)
    return sets


#: What ``cfg.synthetic_minority`` adds to arms (c) and (d), in words (the report says it).
MINORITY_RULES = {
    "all": "every beat labelled S, V or F in the unconditional, beat:S, beat:V and beat:F sets",
    "requested": "the beats the model labelled c in the records generated under beat:c (c = S, V, F); no "
                 "other beat of any set",
}


def synthetic_minority(cfg: TSTRConfig, syn: dict[str, BeatSet]) -> BeatSet:
    """The synthetic S, V and F beats arms (c) and (d) add (``cfg.synthetic_minority``, resolved: ``"all"`` or
    ``"requested"``): every S/V/F-labelled beat of the unconditional and beat sets, or only the beats labelled
    ``c`` in the ``beat:c`` set, for each ``c`` of S, V, F."""
    if cfg.synthetic_minority == "requested":
        return BeatSet.concat([syn[f"beat:{c}"].of_classes((c,)) for c in MINORITY if f"beat:{c}" in syn],
                              "synthetic")
    if cfg.synthetic_minority != "all":
        raise ValueError(f"synthetic_minority {cfg.synthetic_minority!r} is not resolved ('all' or 'requested')")
    return BeatSet.concat([v for k, v in syn.items() if not k.startswith("rhythm:")], "synthetic").of_classes(MINORITY)


def _mean_sd(values) -> dict:
    v = np.asarray([x for x in values if x == x], dtype=np.float64)
    return {"mean": float(v.mean()) if len(v) else float("nan"), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "values": [float(x) for x in values]}


#: Arm letters (the keys of ``result["arms"]``) and what each trains on.
ARMS = {"a": "real DS1", "b": "synthetic only", "c": "DS1 + synthetic S/V/F",
        "d": "DS1 + agreed synthetic S/V/F"}


def make_trainer(cfg: TSTRConfig):
    """``train(beats, seed) -> classifier`` of ``cfg.classifier`` (what a seed varies: module docstrings)."""
    if cfg.classifier == "trees":
        from .strong_classifier import StrongConfig, train_strong

        base = StrongConfig(num_threads=1)
        if cfg.tree_max_iter:
            base = replace(base, max_iter=int(cfg.tree_max_iter))
        return lambda beats, seed: train_strong(beats, replace(base, seed=int(seed)))
    return lambda beats, seed: train_classifier(beats, ClassifierConfig(epochs=cfg.epochs, seed=int(seed)))


def run_arms(train_sets: dict[str, BeatSet], test: BeatSet, seeds, train, log=print,
             trained: dict | None = None) -> dict:
    """Train every arm with every seed, test on ``test``: per arm, macro-F1 mean/sd and per-class Se/PPV/F1.

    Parameters
    ----------
    train_sets : dict
        Arm letter -> training beats.
    train : callable or int
        ``train(beats, seed) -> classifier``; an int is the CNN's epochs (the former signature).
    trained : dict, optional
        ``(arm, seed)`` -> ``(classifier, training seconds)`` already trained on that arm's beats with that
        seed (training is deterministic given the seed): tested instead of retrained.

    Returns
    -------
    dict
        Per arm: ``macro_f1_mean``, ``macro_f1_sd`` (sd over seeds, ddof 1), ``per_class`` (mean ``se``,
        ``ppv``, ``f1`` per class), ``per_class_sd``, ``macro_f1`` (mean, sd, values), ``train_counts``,
        ``runs`` (every seed's metrics and confusion matrix).
    """
    if isinstance(train, int):
        epochs = train

        def train(beats, seed):
            return train_classifier(beats, ClassifierConfig(epochs=epochs, seed=int(seed)))
    trained = trained or {}
    out = {}
    for arm, beats in train_sets.items():
        if len(beats) == 0:
            log(f"[tstr] arm {arm}: no training beats, skipped")
            nan = float("nan")
            out[arm] = {"name": ARMS.get(arm, arm), "train_counts": beats.counts(), "runs": [],
                        "skipped": "no training beats", "macro_f1_mean": nan, "macro_f1_sd": nan,
                        "macro_f1": _mean_sd([nan]),
                        "per_class": {c: {k: nan for k in ("se", "ppv", "f1")} for c in CLASSES},
                        "per_class_sd": {c: {k: nan for k in ("se", "ppv", "f1")} for c in CLASSES}}
            continue
        runs = []
        for seed in seeds:
            t = time.time()
            clf, spent = trained.get((arm, int(seed)), (None, 0.0))
            if clf is None:
                clf = train(beats, int(seed))
            m = beat_metrics(test.y, clf.predict(test))
            m["seed"], m["seconds"] = int(seed), round(time.time() - t + spent, 1)
            runs.append(m)
            pc = m["per_class"]
            log(f"[tstr] arm {arm} seed {seed}: macro-F1 {m['macro_f1']:.3f} (S F1 {pc['S']['f1']:.3f}, "
                f"V F1 {pc['V']['f1']:.3f}; {m['seconds']} s, {len(beats)} training beats)")
        stats = {c: {k: _mean_sd([r["per_class"][c][k] for r in runs]) for k in ("se", "ppv", "f1")}
                 for c in CLASSES}
        f1 = _mean_sd([r["macro_f1"] for r in runs])
        out[arm] = {
            "name": ARMS.get(arm, arm), "macro_f1_mean": f1["mean"], "macro_f1_sd": f1["sd"],
            "per_class": {c: {k: v["mean"] for k, v in d.items()} for c, d in stats.items()},
            "per_class_sd": {c: {k: v["sd"] for k, v in d.items()} for c, d in stats.items()},
            "macro_f1": f1, "train_counts": beats.counts(), "runs": runs,
        }
    return out


def run_study(cfg: TSTRConfig, generate, log=print) -> dict:
    """Everything of the module docstring; returns the JSON-able result (also written by :func:`write_outputs`).

    ``generate`` writes one synthetic set (see :func:`generate_sets`).
    """
    import torch

    from ..conditional import label_agreement

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t0 = time.time()
    train_recs, test_recs = split_records(cfg)

    # 1. generate
    sets = generate_sets(cfg, generate, log)
    t_gen = time.time() - t0
    log(f"[tstr] generated {len(sets)} sets in {t_gen:.0f} s")

    # 2. beats (tree features: per-patient statistics on each whole record / generated sequence first)
    ds1 = real_beats(train_recs, cfg.data_dir, source="real DS1")
    ds2 = real_beats(test_recs, cfg.data_dir, source="real DS2")
    syn = {name: synthetic_beats(folder, source=name) for name, folder in sets.items()}
    if cfg.classifier == "trees":
        from .beat_features import with_features
        from .strong_classifier import StrongConfig

        fs = _feature_sets(StrongConfig())
        ds1, ds2 = with_features(ds1, *fs), with_features(ds2, *fs)
        syn = {k: with_features(v, *fs) if len(v) else v for k, v in syn.items()}
    beat_sets = [syn[k] for k in syn if not k.startswith("rhythm:")]
    syn_all = BeatSet.concat(beat_sets, "synthetic")
    syn_minor = synthetic_minority(cfg, syn)
    log(f"[tstr] beats: DS1 {ds1.counts()}, DS2 {ds2.counts()}, synthetic {syn_all.counts()}")

    # the DS1-only classifier of arm (a), first seed: labels the generated beats (agreement, arm d)
    train = make_trainer(cfg)
    t_clf = time.time()
    clf = train(ds1, int(cfg.seeds[0]))
    t_clf = time.time() - t_clf

    # 3. arms
    arms_in = {"a": ds1, "b": syn_all, "c": BeatSet.concat([ds1, syn_minor])}
    filtered = None
    if cfg.filtered_arm:
        filtered = agreed_beats(clf, syn_minor)
        log(f"[tstr] agreement filter keeps {filtered.counts()} of {syn_minor.counts()} synthetic beats")
        arms_in["d"] = BeatSet.concat([ds1, filtered])
    arms = run_arms(arms_in, ds2, cfg.seeds, train, log, trained={("a", int(cfg.seeds[0])): (clf, t_clf)})

    # 4. agreement
    agreement = {name: label_agreement(clf, b) for name, b in syn.items()}
    agreement["real DS2 (cardiologists' labels)"] = label_agreement(clf, ds2)
    requested = {}
    for name, b in syn.items():
        if name.startswith("beat:") and len(b):
            c = name.split(":")[1]
            requested[name] = {"share_of_beats": float((b.y == CLASSES.index(c)).mean()),
                               "agreement": agreement[name].get(c, {}).get("agreement")}

    # 5. fidelity per condition
    fidelity = _fidelity(cfg, sets, train_recs, test_recs, log) if cfg.fidelity else {}

    result = {
        "arms": arms, "config": asdict(cfg), "classifier": clf.describe() if hasattr(clf, "describe") else {},
        "records": {"train": train_recs, "test": test_recs},
        "beats": {"real_ds1": ds1.counts(), "real_ds2": ds2.counts(),
                  **{f"synthetic {k}": v.counts() for k, v in syn.items()},
                  **({"synthetic S/V/F kept by the agreement filter": filtered.counts()}
                     if filtered is not None else {})},  # also when the filter kept none
        "agreement": agreement, "requested_class": requested, "fidelity": fidelity,
        "synthetic_minority": {"rule": cfg.synthetic_minority, "counts": syn_minor.counts(),
                               "description": MINORITY_RULES.get(cfg.synthetic_minority)},
        "goal": _goal(arms), "seconds": {"generation": round(t_gen, 1), "total": round(time.time() - t0, 1)},
    }
    if cfg.cv_json:
        result["classifier_selection"] = _cv_summary(cfg.cv_json)
    result["_figures"] = {"ds2": ds2, "synthetic": syn_all, "sets": {k: str(v) for k, v in sets.items()}}
    return result


def _feature_sets(cfg) -> tuple[str, ...]:
    """The feature sets a :class:`~ecg2llm.eval.tstr.strong_classifier.StrongConfig` reads: the trees' and the linear
    stage's."""
    from .strong_classifier import stage_feature_sets

    return stage_feature_sets(cfg)


def run_real_arm(cfg: TSTRConfig, log=print) -> dict:
    """Arm (a) alone (``--real_only``): the classifier trained on real DS1 with every seed, tested on real DS2.

    No generation and no synthetic beats: the quick check of a new real-data classifier. Returns ``arms``
    (``{"a": ...}`` as :func:`run_arms`), ``goal`` (SVEB / VEB F1 of arm a), the classifier, beat counts,
    records and seconds.
    """

    t0 = time.time()
    train_recs, test_recs = split_records(cfg)
    ds1 = real_beats(train_recs, cfg.data_dir, source="real DS1")
    ds2 = real_beats(test_recs, cfg.data_dir, source="real DS2")
    if cfg.classifier == "trees":
        from .beat_features import with_features
        from .strong_classifier import StrongConfig

        fs = _feature_sets(StrongConfig())
        ds1, ds2 = with_features(ds1, *fs), with_features(ds2, *fs)
    log(f"[tstr] real only: DS1 {ds1.counts()}, DS2 {ds2.counts()}")
    train = make_trainer(cfg)
    t_clf = time.time()
    clf = train(ds1, int(cfg.seeds[0]))
    t_clf = time.time() - t_clf
    arms = run_arms({"a": ds1}, ds2, cfg.seeds, train, log, trained={("a", int(cfg.seeds[0])): (clf, t_clf)})
    a = arms["a"]
    result = {"arms": arms, "config": asdict(cfg), "classifier": clf.describe() if hasattr(clf, "describe") else {},
              "records": {"train": train_recs, "test": test_recs},
              "beats": {"real_ds1": ds1.counts(), "real_ds2": ds2.counts()},
              "goal": {"a_sveb_f1": a["per_class"]["S"]["f1"], "a_veb_f1": a["per_class"]["V"]["f1"],
                       "a_sveb_met": bool(a["per_class"]["S"]["f1"] >= 0.5),
                       "a_veb_met": bool(a["per_class"]["V"]["f1"] >= 0.85)},
              "seconds": {"total": round(time.time() - t0, 1)}}
    if cfg.cv_json:
        result["classifier_selection"] = _cv_summary(cfg.cv_json)
    return result


def run_guidance_check(cfg: TSTRConfig, generate, log=print) -> dict:
    """``cfg.guidance_check``: how the guidance scale changes the requested beats, judged without DS2.

    For every scale ``g`` and class ``c`` of S, V, F: ``cfg.guidance_check_sequences`` records of ``cfg.seconds``
    under ``beat:c`` at scale ``g`` (seeded as the study's ``beat:c`` set), cut like the study's beats; per set the
    share of beats the model labelled ``c``, and how often arm (a)'s classifier (first seed, trained on DS1 only)
    assigns ``c`` to them. Chosen: the scale with the highest mean agreement over S, V, F (ties: more agreed beats
    per record), since arm (c) adds every beat labelled ``c``. Returns the JSON-able result.
    """
    import torch

    from ..conditional import label_agreement

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t0 = time.time()
    train_recs, _ = split_records(cfg)
    ds1 = real_beats(train_recs, cfg.data_dir, source="real DS1")
    fs = ()
    if cfg.classifier == "trees":
        from .beat_features import with_features
        from .strong_classifier import StrongConfig

        fs = _feature_sets(StrongConfig())
        ds1 = with_features(ds1, *fs)
    clf = make_trainer(cfg)(ds1, int(cfg.seeds[0]))
    root = synthetic_root(cfg) / "guidance_check"
    rows = {}
    for g in cfg.guidance_check:
        t = time.time()
        row = {}
        for i, c in enumerate(MINORITY):
            folder = generate(root / f"g{float(g):g}" / f"beat_{c}", [f"beat:{c}"], cfg.guidance_check_sequences,
                              cfg.seconds, cfg.seed + 1000 * (i + 1), float(cfg.strengths.get(c, 2.0)), float(g))
            b = synthetic_beats(folder, source=f"beat:{c} g={g}")
            if fs and len(b):
                from .beat_features import with_features

                b = with_features(b, *fs)
            ag = label_agreement(clf, b) if len(b) else {}
            n_c = int((b.y == CLASSES.index(c)).sum()) if len(b) else 0
            agree = ag.get(c, {}).get("agreement")
            row[f"beat:{c}"] = {"beats": b.counts() if len(b) else {}, "n_requested_label": n_c,
                                "share_of_beats": n_c / len(b) if len(b) else 0.0, "agreement": agree,
                                "agreed_per_record": (n_c * agree / cfg.guidance_check_sequences) if agree else 0.0,
                                "predicted": ag.get(c, {}).get("predicted")}
            log(f"[tstr] guidance {g:g} beat:{c}: {n_c} of {len(b)} beats labelled {c}, agreement "
                f"{'n/a' if agree is None else f'{agree:.2f}'}")
        ags = [row[f"beat:{c}"]["agreement"] or 0.0 for c in MINORITY]
        rows[f"{float(g):g}"] = {"guidance": float(g), "sets": row, "mean_agreement": float(np.mean(ags)),
                                 "agreed_per_record": float(sum(row[f"beat:{c}"]["agreed_per_record"]
                                                                for c in MINORITY)),
                                 "seconds": round(time.time() - t, 1)}
    chosen = max(rows, key=lambda k: (round(rows[k]["mean_agreement"], 3), rows[k]["agreed_per_record"]))
    return {"guidance": rows, "chosen": rows[chosen]["guidance"],
            "rule": "highest mean agreement of arm (a)'s classifier (DS1 only, first seed) with the requested label "
                    "over beat:S, beat:V, beat:F (ties: more agreed beats per record); no DS2",
            "config": asdict(cfg), "records": {"train": train_recs},
            "classifier": clf.describe() if hasattr(clf, "describe") else {},
            "beats": {"real_ds1": ds1.counts()}, "seconds": {"total": round(time.time() - t0, 1)}}


def _cv_summary(path: str) -> dict:
    """The DS1 cross-validation table of ``scripts/beat_cv.py`` (its cv.json), without confusion matrices."""
    import json

    from ecg2llm.core.errors import ConfigError

    try:
        cv = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--cv_json {path}: cannot read it ({e}); run scripts/beat_cv.py first") from e
    rows = {k: {m: v[m] for m in ("macro_f1", "per_class", "fold_macro_f1", "config")}
            for k, v in cv["results"].items()}
    return {"source": str(path), "n_splits": cv["n_splits"], "folds": cv["folds"], "records": cv.get("records"),
            "chosen": cv["chosen"], "choose": cv.get("choose", "any"), "best_any": cv.get("best_any", cv["chosen"]),
            "results": rows}


def agreed_beats(clf, beats: BeatSet) -> BeatSet:
    """The beats of ``beats`` that ``clf`` assigns their own (generated) label."""
    if not len(beats):
        return beats
    return beats.subset(np.flatnonzero(clf.predict(beats) == beats.y))


def _goal(arms: dict) -> dict:
    """The issue's goals: (a) S F1 >= 0.5 and V F1 >= 0.85; c - a > 2 sd(a); d - a likewise; b / a."""
    a, b, c = (arms[k] for k in ("a", "b", "c"))
    two_sd = 2 * a["macro_f1_sd"]
    out = {"a_sveb_f1": a["per_class"]["S"]["f1"], "a_veb_f1": a["per_class"]["V"]["f1"],
           "a_sveb_f1_reaches_0.5": bool(a["per_class"]["S"]["f1"] >= 0.5),
           "a_veb_f1_reaches_0.85": bool(a["per_class"]["V"]["f1"] >= 0.85),
           "c_minus_a": c["macro_f1_mean"] - a["macro_f1_mean"], "two_sd_a": two_sd,
           "c_beats_a_beyond_2sd": bool(c["macro_f1_mean"] - a["macro_f1_mean"] > two_sd),
           "b_over_a": b["macro_f1_mean"] / a["macro_f1_mean"] if a["macro_f1_mean"] else float("nan")}
    if "d" in arms:
        out.update({"d_minus_a": arms["d"]["macro_f1_mean"] - a["macro_f1_mean"],
                    "d_beats_a_beyond_2sd": bool(arms["d"]["macro_f1_mean"] - a["macro_f1_mean"] > two_sd)})
    return out


def _fidelity(cfg: TSTRConfig, sets: dict, train_recs, test_recs, log) -> dict:
    from ..conditional import condition_windows
    from ..data import load_synthetic
    from ..scorecard.scorer import Scorer, ScoreSettings

    out = {}
    for name, folder in sets.items():
        if name == "unconditional":
            continue
        ref = condition_windows(test_recs, name, cfg.data_dir, n=cfg.fidelity_windows, seed=0)
        if len(ref) < 6:
            out[name] = {"skipped": f"{len(ref)} real DS2 windows match {name} (need >= 6)"}
            log(f"[tstr] fidelity {name}: skipped ({len(ref)} DS2 windows)")
            continue
        scorer = Scorer(ScoreSettings(data_dir=cfg.data_dir, reference_records=tuple(test_recs),
                                      train_records=tuple(train_recs)), reference=ref, verbose=False)
        gen = load_synthetic(folder, short="skip")
        if len(gen) < 6:
            out[name] = {"skipped": f"{len(gen)} generated windows (need >= 6)"}
            continue
        rows = {"synthetic": scorer.score_windows(name, gen)}
        ceil = condition_windows(train_recs, name, cfg.data_dir, n=min(len(ref), 100), seed=1)
        if len(ceil) >= 6:
            rows["real DS1 (same condition)"] = scorer.score_windows("real DS1", ceil, memorization=False)
        out[name] = {"n_reference_windows": len(ref),
                     **{k: {m: v.get(m) for m in FIDELITY_KEYS} for k, v in rows.items()}}
        log(f"[tstr] fidelity {name}: rFED {rows['synthetic']['rfed']:.2f} vs {len(ref)} DS2 windows")
    return out


FIDELITY_KEYS = ("n_windows", "rfed", "mmd", "precision", "recall", "valid_rhythm_rate", "hr_w1_bpm",
                 "disc_score", "memorization_ratio")
