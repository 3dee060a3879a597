"""Third SVEB pass: patient-average and slower-beats reference RR, P wave / QRS vs the patient, the S threshold
(eval/beats.reference_features, eval/beat_features ``+avg`` / ``+slower`` / ``+pwave``, StrongConfig.s_threshold)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ecg2llm.eval.beats import CLASSES, REFERENCE_NAMES, BeatSet, cut_beats, reference_features
from ecg2llm.eval.tstr.beat_features import AVG_RR, SLOWER_RR, beat_features, feature_names, pwave_block, with_features
from ecg2llm.eval.tstr.strong_classifier import CV_GRID, StrongConfig, cross_validate, train_strong

FS = 360.0


def _peaks(rr_s) -> np.ndarray:
    return np.round(400 + np.concatenate([[0.0], np.cumsum(np.asarray(rr_s) * FS)])).astype(np.int64)


def _ref(r: np.ndarray, name: str) -> np.ndarray:
    return r[:, REFERENCE_NAMES.index(name)]


def _beats(rr_s, cls, group: str, seed: int = 0, p_shift: int = 0, ectopic=()) -> BeatSet:
    """Beats cut by the real code from a synthetic signal: a QRS at each peak and a P wave 45 samples before it
    (``p_shift`` samples earlier, and inverted, at the ``ectopic`` beats)."""
    rng = np.random.default_rng(seed)
    peaks = _peaks(rr_s)
    x = 0.01 * rng.normal(size=peaks[-1] + 400)
    for i, p in enumerate(peaks):
        x[p - 5:p + 5] += np.hanning(10)
        sign, at = (-1.0, p - 45 - p_shift) if i in ectopic else (1.0, p - 45)
        x[at - 10:at + 10] += sign * 0.15 * np.hanning(20)
    return cut_beats(x.astype(np.float32), peaks, cls, FS, group)


def test_sinus_rhythm_sits_on_both_references_and_an_isolated_premature_beat_does_not():
    rr = np.full(80, 0.8)
    rr[40], rr[41] = 0.5, 1.1  # beat 41 premature, then a pause
    r = reference_features(_peaks(rr), FS)
    i, normal = 41, np.r_[10:39, 45:70]
    np.testing.assert_allclose(_ref(r, "ref_pre/avg5min")[normal], 1.0, atol=0.02)
    np.testing.assert_allclose(_ref(r, "ref_pre/slower_median")[normal], 1.0)
    assert _ref(r, "ref_slower_share")[normal].max() <= 1 / 16  # at most the one pause among 16 neighbours
    assert _ref(r, "ref_pre/slower_median")[i] == pytest.approx(0.5 / 0.8, abs=0.01)
    assert _ref(r, "ref_slower_share")[i] == 1.0
    assert _ref(r, "ref_pre/avg5min")[i] < 0.65
    assert np.isnan(r[0, 3:]).all() and np.isnan(r[-1, 3:]).all()


def test_premature_beats_that_are_the_ongoing_rhythm_still_read_early_against_the_slower_references():
    # a slow rhythm with long pauses whose beats are mostly early (the premature beats outnumber the rest):
    # the neighbours' median, the patient median, is the premature RR itself; the mean (pulled up by the
    # pauses) and the median of the clearly slower neighbours are not
    rr = np.tile([0.7, 0.7, 0.7, 2.5], 30)
    r = reference_features(_peaks(rr), FS)
    early = np.flatnonzero(np.r_[np.nan, rr] == 0.7)[10:-10]  # beats whose previous RR is 0.7 s
    assert np.median(rr) == pytest.approx(0.7)
    assert _ref(r, "ref_pre/avg5min")[early].max() < 0.65  # 0.7 / 1.15
    assert _ref(r, "ref_pre/slower_median")[early].max() < 0.3
    assert 0.2 < _ref(r, "ref_slower_share")[early].min()


def test_reference_and_pwave_features_are_label_free_and_per_patient():
    rr = np.full(60, 0.8)
    rr[[20, 40]] = 0.5
    n = len(rr) + 1
    a1 = _beats(rr, ["N"] * n, "a", ectopic=(21, 41), p_shift=20)
    a2 = _beats(rr, ["S" if i in (21, 41) else "N" for i in range(n)], "a", ectopic=(21, 41), p_shift=20)
    fs = "rr+rhythm+avg+slower+pwave"
    np.testing.assert_array_equal(beat_features(a1, fs)[0], beat_features(a2, fs)[0])  # the labels change nothing
    # another patient in the set changes nothing of this one's (patient mean, median beat: its own beats only)
    b = _beats(np.full(50, 1.1), ["N"] * 51, "b", seed=3)
    together = with_features(BeatSet.concat([a2, b]), fs)
    np.testing.assert_allclose(together.features[: len(a2)], beat_features(a2, fs)[0], rtol=1e-5, atol=1e-6)
    # and every column is a ratio or a shift against the patient: the same rhythm scaled stays the same
    slow = _beats(rr * 1.5, ["N"] * n, "s")
    f_fast, names = beat_features(a1, "rr+rhythm+avg+slower")
    f_slow = beat_features(slow, "rr+rhythm+avg+slower")[0]
    np.testing.assert_allclose(f_slow, f_fast, rtol=0.02, atol=0.02)
    assert set(AVG_RR) | set(SLOWER_RR) <= set(names)


def test_pwave_block_sees_a_changed_p_wave_on_a_normal_qrs():
    rr = np.full(60, 0.8)
    b = _beats(rr, ["N"] * 61, "p", ectopic=(30,), p_shift=20)
    f, names = pwave_block(b)
    col = {k: f[:, names.index(k)] for k in names}
    i = int(np.flatnonzero(np.isin(np.arange(1, 61), [30]))[0])  # beat 30 is row 29 (beat 0 has no previous RR)
    others = np.setdiff1d(np.arange(len(b)), [i])
    assert col["pw_qrs_corr"][others].min() > 0.9 and col["pw_qrs_corr"][i] > 0.9   # the QRS is normal
    assert col["pw_p_corr"][i] < 0.6 and col["pw_p_corr"][others].min() > 0.9           # the P wave is not
    assert col["pw_p_peak_shift"][i] != 0.0 and np.abs(col["pw_p_peak_shift"][others]).max() < 0.02


def test_beats_without_reference_get_nan_columns_and_subset_concat_carry_it():
    b = _beats(np.full(30, 0.8), ["N"] * 31, "p")
    assert b.reference.shape == (len(b), len(REFERENCE_NAMES))
    assert BeatSet.concat([b, b.subset(np.arange(3))]).reference.shape == (len(b) + 3, len(REFERENCE_NAMES))
    bare = BeatSet(b.x, b.rr, b.y, b.group)
    f, names = beat_features(bare, "rr+slower")
    assert np.isnan(f[:, names.index("ref_slower_share")]).all()
    assert feature_names("rr+rhythm+avg+slower+pwave")[: len(feature_names("rr+rhythm"))] == feature_names("rr+rhythm")


def _train_set() -> BeatSet:
    rng = np.random.default_rng(0)
    sets = []
    for g in range(6):
        rr = rng.uniform(0.75, 0.85, 120)
        prem = rng.choice(np.arange(5, 115), 12, replace=False)
        rr[prem] *= 0.6
        cls = ["S" if i - 1 in prem else "N" for i in range(len(rr) + 1)]
        v = rng.choice([i for i in range(3, 118) if cls[i] == "N"], 6, replace=False)
        for i in v:
            cls[i] = "V"
        sets.append(_beats(rr, cls, f"r{g}", seed=g))
    return BeatSet.concat(sets)


def test_s_threshold_only_moves_beats_between_n_and_s_and_cv_shares_the_fitted_stages():
    beats = with_features(_train_set(), "rr+morph+patient", "rr+rhythm+avg")
    base = StrongConfig(max_iter=5, min_samples_leaf=5, linear_feature_set="rr+rhythm+avg", view_feature_set="",
                        ns_train="all", s_threshold=0.5)
    cache: dict = {}
    p5 = train_strong(beats, base, cache=cache).predict(beats)
    assert len(cache) == 2
    np.testing.assert_array_equal(train_strong(beats, base).predict(beats), p5)  # the cache changes nothing
    calls = {}
    for t in (0.1, 0.3, 0.5, 0.7, 0.9):
        calls[t] = train_strong(beats, replace(base, s_threshold=t), cache=cache).predict(beats)
        vf = np.isin(p5, [CLASSES.index("V"), CLASSES.index("F")])
        np.testing.assert_array_equal(calls[t][vf], p5[vf])                    # V / F calls untouched
        assert set(np.unique(calls[t][~vf])) <= {CLASSES.index("N"), CLASSES.index("S")}
    assert len(cache) == 2  # the threshold fits nothing new
    np.testing.assert_array_equal(calls[0.5], p5)
    s = {t: set(np.flatnonzero(c == CLASSES.index("S"))) for t, c in calls.items()}
    assert s[0.9] <= s[0.7] <= s[0.5] <= s[0.3] <= s[0.1]                      # lower threshold: more S
    with pytest.raises(ValueError):
        train_strong(beats, replace(base, s_threshold=1.0), cache=cache).predict(beats)
    # a second N/S view (patient-average RR, logistic): one more fit; the V / F calls stay the first stage's
    view = train_strong(beats, replace(base, view_feature_set="rr+avg", view_model="logreg"), cache=cache)
    assert len(cache) == 3 and len(view.model) == 3 and view.model[2][0] == "rr+avg"
    pv = view.predict(beats)
    np.testing.assert_array_equal(pv[vf], p5[vf])
    assert set(np.unique(pv[~vf])) <= {CLASSES.index("N"), CLASSES.index("S")}
    # cross_validate fits each stage once per fold for both rows; the lower threshold calls at least as many S
    rows = {"a": base, "b": replace(base, s_threshold=0.3)}
    res = cross_validate(beats, rows, n_splits=2, log=lambda m: None)["results"]
    s_calls = {k: np.asarray(v["confusion"])[:, CLASSES.index("S")].sum() for k, v in res.items()}
    assert s_calls["b"] >= s_calls["a"]
    assert np.asarray(res["a"]["confusion"])[:, 2:].tolist() == np.asarray(res["b"]["confusion"])[:, 2:].tolist()


def test_third_pass_rows_keep_the_shared_vf_stage_and_name_their_threshold():
    from ecg2llm.eval.tstr.study import _feature_sets

    for v in CV_GRID.values():  # TSTR computes every member's features on whole records, the view's too
        cfg = replace(StrongConfig(), **v)
        if cfg.view_feature_set:
            assert cfg.view_feature_set in _feature_sets(cfg)
    third = {k: v for k, v in CV_GRID.items() if "S threshold" in k}
    assert third and all(v["feature_set"] == "rr+morph+patient" and v["class_weight_power"] == 0.5
                         for v in third.values())
    for k, v in third.items():
        assert f"S threshold {v['s_threshold']:g}" in k and v["linear_feature_set"] in k


def test_ns_stage_trained_on_n_and_s_only_and_monotone_in_prematurity():
    from ecg2llm.eval.tstr.beat_features import feature_names as names_of
    from ecg2llm.eval.tstr.strong_classifier import PREMATURITY, _features

    fs = "rr+rhythm+avg+slower"
    beats = with_features(_train_set(), "rr+morph+patient", fs)
    cfg = StrongConfig(max_iter=5, min_samples_leaf=5, linear_feature_set=fs, ns_train="NS", monotone=True)
    clf = train_strong(beats, cfg)
    ns_model = clf.model[1][1]
    assert list(ns_model.classes_) == [CLASSES.index("N"), CLASSES.index("S")]  # no V / F beats in its training
    x = _features(beats, fs)[::7].astype(np.float64)
    cols = [i for i, n in enumerate(names_of(fs)) if n in PREMATURITY]
    assert len(cols) == len(PREMATURITY)
    for c in cols:  # an earlier beat (a smaller previous-RR ratio), all else equal, is no less likely S
        lo, hi = x.copy(), x.copy()
        lo[:, c], hi[:, c] = 0.5, 1.2
        assert (ns_model.predict_proba(lo)[:, 1] >= ns_model.predict_proba(hi)[:, 1] - 1e-9).all()
    with pytest.raises(ValueError):
        train_strong(beats, replace(cfg, ns_train="V"))


def test_every_cv_row_replays_the_config_it_was_run_with():
    # the StrongConfig defaults moved (view, N/S-only training, threshold 0.7): each CV_GRID row must still
    # build the config stored with its score in docs/results/beat_cv.json (rows name the neutral settings)
    import json
    from dataclasses import asdict
    from pathlib import Path

    from ecg2llm.eval.tstr.strong_classifier import ROW_NEUTRAL

    cv = json.loads((Path(__file__).resolve().parents[1] / "docs/results/beat_cv.json").read_text())
    assert set(CV_GRID) <= set(cv["results"])
    ns_keys = {"linear_feature_set", "vote", "linear_class_weight_power", "second_model", *ROW_NEUTRAL}
    unused = {"two-stage": {"vote"}, "trees+logreg": {"second_model", *ROW_NEUTRAL}}  # fields a model never reads
    for name, row in CV_GRID.items():
        now, stored = asdict(replace(StrongConfig(), **row)), cv["results"][name]["config"]
        for k, v in now.items():
            if k not in unused.get(now["model"], ns_keys):
                assert stored.get(k, ROW_NEUTRAL.get(k, v)) == v, (name, k)
    # the defaults are the chosen row, and that row was chosen without DS2
    chosen = cv["chosen"]
    assert asdict(replace(StrongConfig(), **CV_GRID[chosen])) == asdict(StrongConfig())
    from ecg2llm.eval.tstr.strong_classifier import mean_reference_only

    eligible = [k for k in cv["results"] if cv.get("choose", "any") == "any" or mean_reference_only(CV_GRID[k])]
    assert sorted(eligible) == sorted(cv.get("eligible", eligible))
    assert max(eligible, key=lambda k: cv["results"][k]["macro_f1"]) == chosen
    assert cv.get("best_any", chosen) == max(cv["results"], key=lambda k: cv["results"][k]["macro_f1"])
    from ecg2llm.tokenizer.splits import DS1, DS2

    assert sorted(cv["records"]) == sorted(DS1) and not set(cv["records"]) & set(DS2)


def test_ns_stage_without_s_beats_calls_no_s():
    from ecg2llm.eval.tstr.study import _feature_sets

    beats = with_features(_train_set(), *_feature_sets(StrongConfig()))
    no_s = beats.subset(np.flatnonzero(beats.y != CLASSES.index("S")))
    clf = train_strong(no_s, StrongConfig(max_iter=5, min_samples_leaf=5))
    assert CLASSES.index("S") not in set(clf.predict(beats))
