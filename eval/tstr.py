"""Train on synthetic, test on real: does a class-conditional ECG LM make data that helps a beat classifier?

The study behind ``python scripts/tstr.py --out DIR`` (configuration: :class:`TSTRConfig`):

1. **Generate** with a conditional LM (:mod:`lm.conditioning`): ``beat_sequences`` records of ``seconds`` s
   unconditionally (the model picks rhythm and every beat label), and as many with each minority class
   requested (``beat:S``, ``beat:V``, ``beat:F``: ``strengths[c]`` log-odds on that label); plus
   ``rhythm_sequences`` 10-s records per rhythm condition. Every record is a WFDB record with a ``.atr``.
2. **Cut beats** alike from real DS1, real DS2 and the synthetic records (:mod:`eval.beats`).
3. **Three arms**, each trained with every seed of ``seeds`` and tested on real DS2 (AAMI N, S, V, F):
   (a) real DS1; (b) synthetic beats only; (c) DS1 plus the synthetic S, V and F beats; and, with
   ``filtered_arm``, (d) DS1 plus only those synthetic S, V, F beats that the arm-(a) classifier (first
   seed, trained on DS1 alone) assigns the generated label -- the usual agreement filter; no DS2 in it.
4. **Agreement**: the arm-(a) classifier (first seed) labels the generated beats; its agreement with
   the generated labels is reported per class beside its agreement with the real DS2 labels.
5. **Fidelity per condition**: each conditional set is scored (stage-3 metrics) against the real DS2
   windows that match its condition, with real DS1 windows of the same condition as the ceiling row.

Outputs: ``tstr.json`` (everything), ``tstr.md`` (tables), ``figures/`` (beat templates, per-class bars),
``synthetic/<set>/`` (the generated records), ``run_info.json``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .beat_classifier import ClassifierConfig, beat_metrics, train_classifier
from .beats import CLASSES, BeatSet, real_beats, synthetic_beats

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
    epochs: int = 6                     # beat-classifier epochs (fixed; nothing is tuned on DS2)
    filtered_arm: bool = True           # arm (d): DS1 + the synthetic S/V/F beats a DS1 classifier agrees with
    fidelity: bool = True               # stage-3 metrics per condition
    fidelity_windows: int = 200         # real windows per condition (reference), at most
    batch_size: int = 64
    seed: int = 0                       # generation seed
    num_threads: int = 0                # torch CPU threads (0 = default)


def _generate(cfg: TSTRConfig, name: str, conditions: list[str], n: int, seconds: float, seed: int,
              strength: float = 0.0) -> Path:
    from lm.synthesize import GenerateConfig, generate

    folder = Path(cfg.out) / "synthetic" / name
    generate(GenerateConfig(model=cfg.model, num_samples=n, seconds=seconds, out=str(folder), seed=seed,
                            batch_size=cfg.batch_size, png=False, condition=conditions,
                            condition_strength=strength, num_threads=cfg.num_threads))
    return folder


def _mean_sd(values) -> dict:
    v = np.asarray([x for x in values if x == x], dtype=np.float64)
    return {"mean": float(v.mean()) if len(v) else float("nan"), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "values": [float(x) for x in values]}


def run_arms(train_sets: dict[str, BeatSet], test: BeatSet, seeds, epochs: int, log=print,
             trained: dict | None = None) -> dict:
    """Train every arm with every seed, test on ``test``: per arm, mean/sd of macro-F1 and per-class Se/PPV.

    ``trained`` maps ``(arm, seed)`` to ``(classifier, training seconds)`` of a classifier already trained on
    that arm's beats with that seed and ``epochs`` (training is deterministic given the seed): it is tested
    instead of retrained.
    """
    trained = trained or {}
    out = {}
    for arm, beats in train_sets.items():
        if len(beats) == 0:
            log(f"[tstr] arm {arm}: no training beats, skipped")
            nan = _mean_sd([float("nan")])
            out[arm] = {"train_counts": beats.counts(), "runs": [], "skipped": "no training beats",
                        "macro_f1": nan, "per_class": {c: {k: nan for k in ("se", "ppv", "f1")} for c in CLASSES}}
            continue
        runs = []
        for seed in seeds:
            t = time.time()
            clf, spent = trained.get((arm, int(seed)), (None, 0.0))
            if clf is None:
                clf = train_classifier(beats, ClassifierConfig(epochs=epochs, seed=int(seed)))
            m = beat_metrics(test.y, clf.predict(test))
            m["seconds"] = round(time.time() - t + spent, 1)
            runs.append(m)
            log(f"[tstr] arm {arm} seed {seed}: macro-F1 {m['macro_f1']:.3f} ({m['seconds']} s, "
                f"{len(beats)} training beats)")
        out[arm] = {
            "train_counts": beats.counts(), "runs": runs,
            "macro_f1": _mean_sd([r["macro_f1"] for r in runs]),
            "per_class": {c: {k: _mean_sd([r["per_class"][c][k] for r in runs]) for k in ("se", "ppv", "f1")}
                          for c in CLASSES},
        }
    return out


def run_study(cfg: TSTRConfig, log=print) -> dict:
    """Everything of the module docstring; returns the JSON-able result (also written by :func:`write_outputs`)."""
    import torch

    from tokenizer.splits import DS1, DS2

    from .conditional import label_agreement

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    t0 = time.time()
    train_recs = list(cfg.train_records) or list(DS1)
    test_recs = list(cfg.test_records) or list(DS2)

    # 1. generate
    sets = {"unconditional": _generate(cfg, "unconditional", [], cfg.beat_sequences, cfg.seconds, cfg.seed)}
    for i, c in enumerate(MINORITY):
        sets[f"beat:{c}"] = _generate(cfg, f"beat_{c}", [f"beat:{c}"], cfg.beat_sequences, cfg.seconds,
                                      cfg.seed + 1000 * (i + 1), float(cfg.strengths.get(c, 2.0)))
    for i, r in enumerate(cfg.rhythm_conditions):
        sets[f"rhythm:{r}"] = _generate(cfg, f"rhythm_{r}", [f"rhythm:{r}"], cfg.rhythm_sequences, 10.0,
                                        cfg.seed + 5000 + 100 * i)
    t_gen = time.time() - t0
    log(f"[tstr] generated {len(sets)} sets in {t_gen:.0f} s")

    # 2. beats
    ds1 = real_beats(train_recs, cfg.data_dir, source="real DS1")
    ds2 = real_beats(test_recs, cfg.data_dir, source="real DS2")
    syn = {name: synthetic_beats(folder, source=name) for name, folder in sets.items()}
    beat_sets = [syn[k] for k in syn if not k.startswith("rhythm:")]
    syn_all = BeatSet.concat(beat_sets, "synthetic")
    syn_minor = syn_all.of_classes(MINORITY)
    log(f"[tstr] beats: DS1 {ds1.counts()}, DS2 {ds2.counts()}, synthetic {syn_all.counts()}")

    # the DS1-only classifier of arm (a), first seed: labels the generated beats (agreement, arm d)
    t_clf = time.time()
    clf = train_classifier(ds1, ClassifierConfig(epochs=cfg.epochs, seed=int(cfg.seeds[0])))
    t_clf = time.time() - t_clf

    # 3. arms
    arms_in = {"a_real": ds1, "b_synthetic": syn_all, "c_real_plus_synthetic": BeatSet.concat([ds1, syn_minor])}
    filtered = None
    if cfg.filtered_arm:
        filtered = agreed_beats(clf, syn_minor)
        log(f"[tstr] agreement filter keeps {filtered.counts()} of {syn_minor.counts()} synthetic beats")
        arms_in["d_real_plus_filtered_synthetic"] = BeatSet.concat([ds1, filtered])
    arms = run_arms(arms_in, ds2, cfg.seeds, cfg.epochs, log, trained={("a_real", int(cfg.seeds[0])): (clf, t_clf)})

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
        "config": asdict(cfg), "records": {"train": train_recs, "test": test_recs},
        "beats": {"real_ds1": ds1.counts(), "real_ds2": ds2.counts(),
                  **{f"synthetic {k}": v.counts() for k, v in syn.items()},
                  **({"synthetic S/V/F kept by the agreement filter": filtered.counts()} if filtered else {})},
        "arms": arms, "agreement": agreement, "requested_class": requested, "fidelity": fidelity,
        "goal": _goal(arms), "seconds": {"generation": round(t_gen, 1), "total": round(time.time() - t0, 1)},
    }
    result["_figures"] = {"ds2": ds2, "synthetic": syn_all, "sets": {k: str(v) for k, v in sets.items()}}
    return result


def agreed_beats(clf, beats: BeatSet) -> BeatSet:
    """The beats of ``beats`` that ``clf`` assigns their own (generated) label."""
    if not len(beats):
        return beats
    return beats.subset(np.flatnonzero(clf.predict(beats) == beats.y))


def _goal(arms: dict) -> dict:
    a, b, c = (arms[k]["macro_f1"] for k in ("a_real", "b_synthetic", "c_real_plus_synthetic"))
    spread = max(a["sd"], c["sd"])
    out = {"c_minus_a": c["mean"] - a["mean"], "seed_spread": spread,
           "c_beats_a_beyond_spread": bool(c["mean"] - a["mean"] > spread),
           "b_over_a": b["mean"] / a["mean"] if a["mean"] else float("nan"),
           "b_reaches_0.7_a": bool(b["mean"] >= 0.7 * a["mean"])}
    if "d_real_plus_filtered_synthetic" in arms:
        d = arms["d_real_plus_filtered_synthetic"]["macro_f1"]
        out.update({"d_minus_a": d["mean"] - a["mean"], "d_seed_spread": max(a["sd"], d["sd"]),
                    "d_beats_a_beyond_spread": bool(d["mean"] - a["mean"] > max(a["sd"], d["sd"]))})
    return out


def _fidelity(cfg: TSTRConfig, sets: dict, train_recs, test_recs, log) -> dict:
    from .conditional import condition_windows
    from .data import load_synthetic
    from .scorer import Scorer, ScoreSettings

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
