"""Rhythm-context RR features (eval/beats.rhythm_features) and their use by the beat classifier."""
from __future__ import annotations

import numpy as np
import pytest

from ecg2llm.eval.beats import RHYTHM_NAMES, BeatSet, cut_beats, rhythm_features
from ecg2llm.eval.tstr.beat_features import FEATURE_SETS, beat_features, feature_names, with_features

FS = 360.0


def _col(r: np.ndarray, name: str) -> np.ndarray:
    return r[:, RHYTHM_NAMES.index(name)]


def _peaks(rr_s: np.ndarray) -> np.ndarray:
    """Peak samples whose successive intervals are ``rr_s`` (s): beat ``i``'s previous RR is ``rr_s[i - 1]``."""
    return np.round(400 + np.concatenate([[0.0], np.cumsum(np.asarray(rr_s) * FS)])).astype(np.int64)


def test_regular_rhythm_has_no_irregularity_and_no_prematurity():
    r = rhythm_features(_peaks(np.full(40, 0.8)), FS)
    inner = r[1:-1]
    assert np.isfinite(inner).all()
    np.testing.assert_allclose(_col(inner, "ctx_irregularity"), 0.0, atol=1e-3)
    np.testing.assert_allclose(_col(inner, "ctx_mad"), 0.0, atol=1e-3)
    np.testing.assert_allclose(_col(inner, "ctx_irregular_share"), 0.0)
    np.testing.assert_allclose(_col(inner, "ctx_pre/median"), 1.0, atol=1e-3)
    np.testing.assert_allclose(_col(inner, "ctx_prematurity_z"), 0.0, atol=0.1)
    assert np.isnan(r[0]).all() and np.isnan(r[-1]).all()  # first / last beat: one interval missing


def test_premature_beat_in_regular_rhythm_is_premature_in_a_regular_context():
    rr = np.full(40, 0.8)
    rr[20], rr[21] = 0.5, 1.1  # beat 21 (peak after interval 20) early, then a compensatory pause
    r = rhythm_features(_peaks(rr), FS)
    i = 21
    # its own intervals are left out of its context: the reference stays the normal rhythm
    assert _col(r, "ctx_pre/median")[i] == pytest.approx(0.5 / 0.8, abs=0.01)
    assert _col(r, "ctx_post/median")[i] == pytest.approx(1.1 / 0.8, abs=0.01)
    assert _col(r, "ctx_irregularity")[i] < 0.01 and _col(r, "ctx_irregular_share")[i] == 0.0
    assert _col(r, "ctx_prematurity_z")[i] > 10 and _col(r, "ctx_prematurity*regular")[i] > 0.3
    # the neighbours of the ectopic beat keep a regular context too (a median of successive differences)
    assert _col(r, "ctx_irregularity")[[18, 19, 23, 24]].max() < 0.01
    others = np.setdiff1d(np.arange(1, 40), [i, i + 1])  # beats whose previous RR is normal
    assert np.abs(_col(r, "ctx_prematurity_z")[others]).max() < 1.0


def test_atrial_fibrillation_like_rhythm_is_irregular_and_its_early_beats_are_not_premature_for_it():
    rng = np.random.default_rng(0)
    rr = rng.uniform(0.45, 1.05, size=80)  # irregularly irregular, like atrial fibrillation
    r = rhythm_features(_peaks(rr), FS)[10:-10]
    assert np.median(_col(r, "ctx_irregularity")) > 0.15
    assert np.median(_col(r, "ctx_irregular_share")) > 0.5
    # a beat as early as the ectopic beat above (pre 0.6-0.65 x the context median) scores far less
    early = _col(r, "ctx_pre/median") < 0.7
    assert early.sum() >= 5
    assert _col(r, "ctx_prematurity_z")[early].max() < 5 and _col(r, "ctx_prematurity*regular")[early].max() < 0.05


def test_cut_beats_carry_the_rhythm_through_subset_and_concat():
    rr = np.full(40, 0.8)
    rr[20] = 0.5
    peaks = _peaks(rr)
    x = np.zeros(peaks[-1] + 400, np.float32)
    cls = ["S" if i == 21 else "N" for i in range(len(peaks))]
    b = cut_beats(x, peaks, cls, FS, "p")
    assert b.rhythm.shape == (len(b), len(RHYTHM_NAMES))
    s = b.of_classes(["S"])
    assert len(s) == 1 and s.rhythm[0, RHYTHM_NAMES.index("ctx_pre/median")] == pytest.approx(0.625, abs=0.01)
    both = BeatSet.concat([b, b.subset(np.arange(3))])
    assert both.rhythm.shape == (len(b) + 3, len(RHYTHM_NAMES))
    # a hand-built set without rhythm: the rhythm columns are NaN (trees route it, linear models impute)
    bare = BeatSet(b.x, b.rr, b.y, b.group)
    f, names = beat_features(bare, "rr+rhythm")
    assert np.isnan(f[:, names.index("ctx_irregularity")]).all()
    assert BeatSet.concat([b, bare]).rhythm is None


def test_rhythm_feature_sets_and_the_union_of_two_sets():
    for fs in FEATURE_SETS:
        if "+rhythm" in fs:
            names = feature_names(fs)
            assert set(RHYTHM_NAMES) <= set(names)
            assert set(feature_names(fs.replace("+rhythm", ""))) <= set(names)
    rr = np.full(40, 0.8)
    peaks = _peaks(rr)
    b = cut_beats(np.zeros(peaks[-1] + 400, np.float32), peaks, ["N"] * len(peaks), FS, "p")
    u = with_features(b, "rr+morph+patient", "rr+rhythm+patient")
    want = set(feature_names("rr+morph+patient")) | set(feature_names("rr+rhythm+patient"))
    assert set(u.meta["feature_names"]) == want and u.features.shape == (len(b), len(want))


def test_two_stage_reads_both_stages_from_the_tstr_feature_union():
    # TSTR computes the union of the trees' and the second stage's feature sets on whole records
    from dataclasses import replace

    from ecg2llm.eval.tstr.strong_classifier import CV_GRID, StrongConfig
    from ecg2llm.eval.tstr.study import _feature_sets

    for cfg in [StrongConfig()] + [replace(StrongConfig(), **v) for v in CV_GRID.values()]:
        union = set().union(*(feature_names(f) for f in _feature_sets(cfg)))
        assert set(feature_names(cfg.feature_set)) <= union
        if cfg.model in ("trees+logreg", "two-stage"):
            assert set(feature_names(cfg.linear_feature_set)) <= union


def test_two_stage_with_a_tree_second_stage_learns_premature_beats_in_regular_rhythm():
    from ecg2llm.eval.tstr.strong_classifier import StrongConfig, cross_validate

    rng = np.random.default_rng(0)
    sets = []
    for g in range(6):  # six patients: regular rhythm with S beats at 0.6 RR, then an AF-like stretch of N
        rr = np.concatenate([np.full(60, 0.8 + 0.05 * g), rng.uniform(0.45, 1.1, size=60)])
        prem = set(range(5, 55, 7))
        for i in prem:
            rr[i - 1] *= 0.6
        peaks = _peaks(rr)
        x = (0.02 * rng.normal(size=peaks[-1] + 400)).astype(np.float32)
        for p in peaks:
            x[p - 5:p + 5] += np.hanning(10).astype(np.float32)
        sets.append(cut_beats(x, peaks, ["S" if i in prem else "N" for i in range(len(peaks))], FS, f"p{g}"))
    b = with_features(BeatSet.concat(sets), "rr+rhythm+morph+patient")
    cfg = StrongConfig(model="two-stage", feature_set="rr+rhythm+morph+patient", linear_feature_set="rr+rhythm",
                       second_model="trees", max_iter=20, min_samples_leaf=5)
    cv = cross_validate(b, {"t": cfg}, n_splits=3, log=lambda s: None)
    r = cv["results"]["t"]
    assert np.asarray(r["confusion"]).sum() == len(b)
    assert r["per_class"]["S"]["f1"] > 0.9 and r["per_class"]["N"]["f1"] > 0.95
    with pytest.raises(ValueError, match="second_model"):
        from ecg2llm.eval.tstr.strong_classifier import train_strong

        train_strong(b, StrongConfig(second_model="svm"))


def test_tstr_real_only_trains_arm_a_without_a_language_model(data_dir, tmp_path):
    import json

    from test_entrypoint_errors import _main

    out = tmp_path / "real"
    rc = _main("scripts/tstr.py")(["--out", str(out), "--data_dir", str(data_dir), "--download", "false",
                                   "--train_records", "101,106", "--test_records", "100", "--seeds", "0",
                                   "--tree_max_iter", "5", "--num_threads", "1", "--real_only", "true",
                                   "--model", "no-such-model"])  # never read: no generation
    assert rc == 0
    r = json.loads((out / "tstr_real_only.json").read_text())
    assert list(r["arms"]) == ["a"] and r["beats"]["real_ds2"]["N"] > 1000
    assert 0.0 <= r["goal"]["a_sveb_f1"] <= 1.0 and r["arms"]["a"]["runs"][0]["seed"] == 0
    assert "synthetic" not in " ".join(r["beats"])
