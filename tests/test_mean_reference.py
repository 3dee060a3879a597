"""Fourth SVEB pass: N/S stages on mean references only (eval/beat_features ``rr_mean`` sets,
eval/strong_classifier FOURTH_PASS_NS, mean_reference_only, scripts/beat_cv.py ``--choose``)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ecg2llm.eval.beats import CLASSES, cut_beats
from ecg2llm.eval.tstr.beat_features import IRREGULARITY, RR_MEAN, beat_features, feature_names, with_features
from ecg2llm.eval.tstr.strong_classifier import CV_GRID, FOURTH_PASS_NS, StrongConfig, mean_reference_only, train_strong

FS = 360.0


def _record(rr_s, cls, group="r", seed=0):
    rng = np.random.default_rng(seed)
    peaks = np.round(400 + np.concatenate([[0.0], np.cumsum(np.asarray(rr_s) * FS)])).astype(np.int64)
    x = 0.01 * rng.normal(size=peaks[-1] + 400)
    for p in peaks:
        x[p - 5:p + 5] += np.hanning(10)
    return cut_beats(x.astype(np.float32), peaks, cls, FS, group)


def _ectopic_majority():
    """A 232-like record: a slow sinus rhythm (2.2 s pauses) whose beats are mostly premature (0.7 s)."""
    rr = np.tile([2.2, 0.7, 0.7, 0.7], 40)
    cls = ["N"] + ["N" if r > 1 else "S" for r in rr]  # a beat's class follows from its previous interval
    return _record(rr, cls), rr


def test_mean_sets_hold_no_median_reference_and_are_tempo_invariant():
    beats, rr = _ectopic_majority()
    for fs in ("rr_mean", "rr_mean+irregularity", "rr_mean+irregularity+pwave"):
        names = feature_names(fs)
        assert names[:len(RR_MEAN)] == RR_MEAN
        assert ("+irregularity" in fs) == (set(IRREGULARITY) <= set(names))
        rr_names = [n for n in names if not n.startswith("pw_")]  # the P-wave block compares shapes, not RR
        assert not any(n.endswith("/patient") or "median" in n for n in rr_names), fs  # no median reference
    slow = _record(rr * 1.3, ["N"] + ["N" if r > 1 else "S" for r in rr])
    a, b = beat_features(beats, "rr_mean+irregularity")[0], beat_features(slow, "rr_mean+irregularity")[0]
    np.testing.assert_allclose(a, b, rtol=0.02, atol=0.01)  # ratios only: a slower tempo changes nothing


def test_premature_majority_reads_early_against_the_mean_and_on_time_against_the_median():
    beats, _ = _ectopic_majority()
    f, names = beat_features(beats, "rr_mean")
    med, med_names = beat_features(beats, "rr")
    s, n = beats.y == CLASSES.index("S"), beats.y == CLASSES.index("N")
    pre_mean = f[:, names.index("rr_pre/patient_mean")]
    pre_median = med[:, med_names.index("rr_pre/patient")]
    assert np.allclose(pre_median[s], 1.0, atol=0.02)  # the majority rhythm is the median: S looks on time
    assert pre_mean[s].max() < 0.75 and pre_mean[n].min() > 1.9  # 0.7 / 1.075 and 2.2 / 1.075
    assert f[s, names.index("ref_pre/avg5min")].max() < 0.75


def test_fourth_pass_rows_are_mean_reference_two_stage_rows_and_the_default_is_one():
    fourth = {k: v for k, v in CV_GRID.items() if any(ns in k for ns in FOURTH_PASS_NS)}
    assert len(fourth) == len(FOURTH_PASS_NS) * 4
    assert all(mean_reference_only(v) and v["ns_train"] == "NS" for v in fourth.values())
    # rows of the earlier passes read a median reference in their N/S stage (or are not two-stage)
    assert not any(mean_reference_only(v) for k, v in CV_GRID.items() if k not in fourth)
    cfg = StrongConfig()
    assert cfg.linear_feature_set.startswith("rr_mean") and (not cfg.view_feature_set
                                                             or cfg.view_feature_set.startswith("rr_mean"))


def test_mean_reference_ns_stage_finds_the_premature_majority_a_median_stage_misses():
    # train on regular-rhythm patients with isolated premature beats; test on the ectopic-majority record
    train = []
    for g in range(6):
        rr = np.full(160, 0.8 + 0.05 * g)
        cls = ["N"] * 161
        for i in range(10, 150, 9):
            rr[i], rr[i + 1] = 0.55 * rr[i], 1.3 * rr[i]
            cls[i + 1] = "S"
        train.append(_record(rr, cls, group=f"p{g}", seed=g))
    from ecg2llm.eval.beats import BeatSet

    train = BeatSet.concat(train)
    test, _ = _ectopic_majority()
    s = test.y == CLASSES.index("S")
    calls = {}
    for name, fs in (("mean", "rr_mean+irregularity"), ("median", "rr+rhythm")):
        cfg = replace(StrongConfig(), max_iter=20, min_samples_leaf=5, linear_feature_set=fs, view_feature_set="",
                      second_model="trees", ns_train="NS", s_threshold=0.5)
        tr, te = with_features(train, "rr+morph+patient", fs), with_features(test, "rr+morph+patient", fs)
        calls[name] = (train_strong(tr, cfg).predict(te) == CLASSES.index("S"))[s].mean()
    assert calls["mean"] > 0.9 and calls["median"] < 0.1, calls


def test_beat_cv_rejects_an_unknown_choice(tmp_path, capsys):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts/beat_cv.py"
    spec = importlib.util.spec_from_file_location("_beat_cv_choose", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_beat_cv_choose"] = mod
    spec.loader.exec_module(mod)
    rc = mod.main(["--out", str(tmp_path / "cv"), "--choose", "best_on_ds2", "--download", "false"])
    err = capsys.readouterr().err
    assert rc != 0 and "--choose" in err and "best_on_ds2" in err and "Traceback" not in err
