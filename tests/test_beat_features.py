"""Inter-patient beat features and the TSTR beat classifier (eval/beat_features, eval/strong_classifier)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ecg2llm.eval.beat_classifier import beat_metrics
from ecg2llm.eval.beats import BEFORE, CLASSES, BeatSet, cut_beats
from ecg2llm.eval.tstr.beat_features import FEATURE_SETS, beat_features, rr_block, with_features
from ecg2llm.eval.tstr.strong_classifier import StrongConfig, cross_validate, stage_feature_sets, train_strong


def _patient(rr_s: float, premature: set[int], group: str, n: int = 40, seed: int = 0) -> BeatSet:
    """A regular rhythm at ``rr_s`` with premature (S) beats at 0.6 RR: synthetic signal, real cutting code."""
    rng = np.random.default_rng(seed)
    peaks, t = [], 400
    for i in range(n):
        t += round(360 * rr_s * (0.6 if i in premature else 1.0))
        peaks.append(t)
    x = 0.02 * rng.normal(size=peaks[-1] + 400)
    for p in peaks:
        x[p - 5:p + 5] += np.hanning(10)
    cls = ["S" if i in premature else "N" for i in range(n)]
    return cut_beats(x.astype(np.float32), np.array(peaks), cls, 360.0, group)


def _col(beats: BeatSet, name: str) -> np.ndarray:
    f, names = rr_block(beats)
    return f[:, names.index(name)]


def test_rr_is_normalised_per_patient():
    slow, fast = _patient(1.2, {10, 25}, "slow"), _patient(0.6, {10, 25}, "fast")
    both = BeatSet.concat([slow, fast])
    pre = _col(both, "rr_pre")
    norm = _col(both, "rr_pre/patient")
    s_slow = (both.group == "slow") & (both.y == CLASSES.index("S"))
    n_fast = (both.group == "fast") & (both.y == CLASSES.index("N"))
    # the slow patient's premature beats come later than the fast patient's normal beats in seconds ...
    assert pre[s_slow].min() > pre[n_fast].max()
    # ... but are premature for their own patient, which the per-patient ratio shows on one scale
    assert norm[s_slow].max() < 0.75 and norm[n_fast].min() > 0.95
    # the patient RR is each group's own median previous RR
    avg = _col(both, "rr_patient")
    for g in ("slow", "fast"):
        np.testing.assert_allclose(avg[both.group == g], np.nanmedian(both.rr[both.group == g, 0]), rtol=1e-5)


def test_patient_rr_is_the_normal_rhythm_when_premature_beats_are_frequent():
    # bigeminy-like: every third beat premature (0.6 RR). The mean previous-RR (the former patient average)
    # falls to ~0.87 RR and makes the premature beats look less premature; the median stays the normal RR.
    b = _patient(1.0, set(range(2, 60, 3)), "p", n=60)
    pre = b.rr[:, 0].astype(np.float64)
    assert np.nanmean(pre) < 0.9
    np.testing.assert_allclose(_col(b, "rr_patient"), 1.0, rtol=0.01)
    s, n = b.y == CLASSES.index("S"), b.y == CLASSES.index("N")
    ratio = _col(b, "rr_pre/patient")
    assert ratio[s].max() < 0.62 and ratio[n].min() > 0.98


def test_classifier_rr_features_carry_no_patient_constant():
    # a per-patient constant (the patient RR itself, absolute seconds) names the patient to a model trained
    # on 22 patients; the classifier's RR features are all relative to the patient or to the neighbours
    names = beat_features(_patient(0.8, {5}, "p"), "rr")[1]
    assert not {"rr_patient", "rr_pre", "rr_post", "rr_local"} & set(names)
    assert "rr_pre/patient" in names and "rr_post/pre" in names


def test_patient_statistics_ignore_other_patients_and_survive_class_subsets():
    a, b = _patient(0.9, {7, 20}, "a", seed=1), _patient(0.7, {12}, "b", seed=2)
    alone = beat_features(a)[0]
    together = with_features(BeatSet.concat([a, b]))
    np.testing.assert_allclose(together.features[: len(a)], alone, rtol=1e-5, atol=1e-6)
    # a class subset keeps the whole-set statistics: the synthetic S/V/F beats of arm (c) are normalised
    # within their full generated sequence, not among the minority beats alone
    minority = together.of_classes(("S",))
    whole = together.features[together.y == CLASSES.index("S")]
    np.testing.assert_array_equal(minority.features, whole)
    recomputed = beat_features(BeatSet(minority.x, minority.rr, minority.y, minority.group))[0]
    assert not np.allclose(recomputed, whole, equal_nan=True)  # why with_features exists


def test_feature_sets_have_consistent_names_and_unknown_sets_fail():
    b = _patient(0.8, {5}, "p")
    widths = {}
    for fs in FEATURE_SETS:
        f, names = beat_features(b, fs)
        assert f.shape == (len(b), len(names)) and len(set(names)) == len(names)
        widths[fs] = f.shape[1]
    assert widths["rr_raw"] < widths["rr"] < widths["rr+morph"] < widths["rr+morph+patient"]
    assert not any("patient" in n for n in beat_features(b, "rr_raw")[1])
    with pytest.raises(ValueError, match="feature_set"):
        beat_features(b, "wavelets")
    assert rr_block(b)[0].shape[1] == len(rr_block(b)[1])


def _toy(n_per_class: int, seed: int, groups: int = 4) -> BeatSet:
    """Four separable classes (template + prematurity), spread over ``groups`` patients."""
    rng = np.random.default_rng(seed)
    t = np.linspace(-1, 1, 256)
    templates = [np.exp(-(t / 0.05) ** 2), -np.exp(-(t / 0.05) ** 2), np.exp(-(t / 0.2) ** 2), np.sin(8 * t)]
    xs, rrs, ys = [], [], []
    for k, tmpl in enumerate(templates):
        xs.append(tmpl[None, :] + 0.1 * rng.normal(size=(n_per_class, len(t))))
        ratio = 1.0 - 0.2 * k + 0.02 * rng.normal(size=n_per_class)
        rrs.append(np.stack([0.8 * ratio, 0.8 * np.ones(n_per_class), ratio, np.ones(n_per_class)], 1))
        ys.append(np.full(n_per_class, k))
    y = np.concatenate(ys)
    g = np.array([f"p{i % groups}" for i in range(len(y))], dtype=object)
    return BeatSet(np.concatenate(xs).astype(np.float32), np.concatenate(rrs).astype(np.float32), y, g)


def test_tree_classifier_learns_separable_classes_and_is_seeded():
    train, test = _toy(150, 0), _toy(60, 1)
    cfg = StrongConfig(model="trees", max_iter=30, min_samples_leaf=10)
    clf = train_strong(train, cfg)
    m = beat_metrics(test.y, clf.predict(test))
    assert m["macro_f1"] > 0.95  # chance is 0.25
    same = train_strong(train, cfg)
    np.testing.assert_array_equal(clf.predict_proba(test), same.predict_proba(test))
    other = train_strong(train, replace(cfg, seed=1))
    assert not np.array_equal(clf.predict_proba(test), other.predict_proba(test))  # seeds vary the trees
    assert clf.predict_proba(test.subset([])).shape == (0, len(CLASSES))


def test_tree_classifier_refuses_features_of_another_set():
    b = with_features(_toy(20, 0), "rr")
    clf = train_strong(b, StrongConfig(model="trees", feature_set="rr", max_iter=5, min_samples_leaf=5))
    with pytest.raises(ValueError, match="with_features"):
        train_strong(b, StrongConfig(model="trees", feature_set="rr+morph", max_iter=5))
    with pytest.raises(ValueError, match="with_features"):  # the linear stage's rr+patient is not in rr
        train_strong(b, StrongConfig(model="two-stage", feature_set="rr", max_iter=5))
    assert clf.predict(b).shape == (len(b),)


@pytest.mark.parametrize("model", ["logreg", "lda", "mlp", "trees+logreg", "two-stage"])
def test_other_models_learn_separable_classes(model):
    train, test = _toy(150, 0), _toy(60, 1)
    cfg = StrongConfig(model=model, feature_set="rr+morph+patient", linear_feature_set="rr+patient",
                       max_iter=30, min_samples_leaf=10)
    # the combination reads every member's columns from the stored superset
    sets = stage_feature_sets(cfg) if model == "two-stage" else ("rr+morph+patient",)
    clf = train_strong(with_features(train, *sets), cfg)
    p = clf.predict_proba(with_features(test, *sets))
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    assert beat_metrics(test.y, p.argmax(1))["macro_f1"] > 0.95  # chance is 0.25
    assert clf.describe()["model"]
    with pytest.raises(ValueError, match="model"):
        train_strong(train, StrongConfig(model="svm"))


def test_cross_validation_holds_out_whole_patients():
    b = _toy(60, 0, groups=6)
    cv = cross_validate(b, {"small": StrongConfig(max_iter=10, min_samples_leaf=5)}, n_splits=3, log=lambda s: None)
    folds = [set(f) for f in cv["folds"]]
    assert len(folds) == 3 and set().union(*folds) == set(b.group)
    assert all(not (f & g) for i, f in enumerate(folds) for g in folds[i + 1:])  # no patient in two folds
    r = cv["results"]["small"]
    assert len(r["fold_macro_f1"]) == 3 and np.asarray(r["confusion"]).sum() == len(b)  # every beat scored once
    assert r["macro_f1"] > 0.9


def test_beat_cv_refuses_ds2_records(tmp_path, capsys):
    from test_entrypoint_errors import _main

    rc = _main("scripts/beat_cv.py")(["--out", str(tmp_path / "cv"), "--records", "101,100"])
    err = capsys.readouterr().err
    assert rc != 0 and "100" in err and "DS2" in err and "Traceback" not in err
    assert not (tmp_path / "cv").exists()


def test_beat_cv_defaults_to_ds1_only():
    from ecg2llm.eval.tstr.strong_classifier import CV_GRID, BeatCVConfig
    from ecg2llm.tokenizer.splits import DS1, DS2

    assert BeatCVConfig().records == []  # empty means DS1 in scripts/beat_cv.py
    assert not set(DS1) & set(DS2)
    assert all(v["feature_set"] in FEATURE_SETS for v in CV_GRID.values())


def test_combined_models_read_their_linear_features_from_the_stored_features():
    # TSTR computes the union of both stages' feature sets per beat set (on whole records); each stage of a
    # combined model must find its columns there, the trees all of theirs
    from dataclasses import replace

    from ecg2llm.eval.tstr.beat_features import feature_names
    from ecg2llm.eval.tstr.strong_classifier import CV_GRID
    from ecg2llm.eval.tstr.study import _feature_sets

    b = _toy(5, 0)
    for cfg in [StrongConfig()] + [replace(StrongConfig(), **v) for v in CV_GRID.values()]:
        stored = with_features(b, *_feature_sets(cfg))
        assert set(feature_names(cfg.feature_set)) <= set(stored.meta["feature_names"])
        if cfg.model in ("trees+logreg", "two-stage"):
            assert set(feature_names(cfg.linear_feature_set)) <= set(stored.meta["feature_names"])
    # the names of a set are those of real 256-sample beats (the stages select their columns by name)
    assert feature_names("rr+morph+patient") == tuple(beat_features(b, "rr+morph+patient")[1])


def test_real_beats_features_on_one_record(data_dir):
    from ecg2llm.eval.beats import real_beats

    b = with_features(real_beats(["100"], data_dir))
    f, names = b.features, b.meta["feature_names"]
    assert f.shape == (len(b), len(names)) and np.isfinite(f).all()
    # record 100's S beats (33 APCs) are premature for this patient; its N beats are not
    ratio = f[:, names.index("rr_pre/patient")]
    s, n = b.y == CLASSES.index("S"), b.y == CLASSES.index("N")
    assert np.median(ratio[s]) < 0.85 < np.median(ratio[n])
    assert abs(np.median(ratio[n]) - 1.0) < 0.05
    assert np.median(f[n, names.index("corr_patient")]) > 0.95
    assert np.corrcoef(f[:, names.index("r_amp")], b.x[:, BEFORE])[0, 1] > 0.95  # smoothed R amplitude
