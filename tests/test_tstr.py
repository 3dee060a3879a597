"""The TSTR pipeline: beat cutting, RR features, the beat classifier, metrics, and scripts/tstr.py end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ecg2llm.eval.beat_classifier import ClassifierConfig, beat_metrics, train_classifier
from ecg2llm.eval.beats import AFTER, BEFORE, CLASSES, BeatSet, cut_beats, real_beats, rr_features
from ecg2llm.eval.tstr.strong_classifier import MODELS, StrongConfig


def test_rr_features_of_a_regular_rhythm():
    peaks = np.arange(10) * 300  # RR = 300 samples = 0.833 s
    rr = rr_features(peaks, 360.0)
    assert np.isnan(rr[0, 0]) and np.isnan(rr[-1, 1])  # no previous / next beat at the ends
    np.testing.assert_allclose(rr[1:, 0], 300 / 360, rtol=1e-6)
    np.testing.assert_allclose(rr[1:-1, 2:], 1.0, rtol=1e-6)  # ratios to the local mean


def test_premature_beat_has_short_previous_rr_ratio():
    peaks = np.array([0, 300, 600, 750, 1200, 1500, 1800])  # a premature beat at 750, compensatory pause
    rr = rr_features(peaks, 360.0)
    assert rr[3, 2] < 0.7 and rr[3, 3] > 1.3


def test_cut_beats_keeps_full_windows_with_both_neighbours():
    x = np.random.default_rng(0).normal(size=3000).astype(np.float32)
    peaks = np.array([50, 400, 800, 1200, 1600, 2950])
    cls = ["N", "V", "Q", "S", "F", "N"]
    b = cut_beats(x, peaks, cls, 360.0, "r")
    # 50: no window before and no previous beat; Q: excluded; 2950: window runs past the end
    assert b.y.tolist() == [CLASSES.index(c) for c in ("V", "S", "F")]
    assert b.x.shape == (3, BEFORE + AFTER)
    np.testing.assert_allclose(np.median(b.x, 1), 0.0, atol=1e-6)  # baseline removed
    np.testing.assert_allclose(b.x[0] + np.median(x[400 - BEFORE:400 + AFTER]), x[400 - BEFORE:400 + AFTER], atol=1e-6)


def test_real_beats_match_the_annotations(data_dir):
    b = real_beats(["100"], data_dir)
    c = b.counts()
    # record 100: 2239 N, 33 A, 1 V in the reference annotations; the first and last beats lack a neighbour
    assert c["S"] == 33 and c["V"] == 1 and 2230 <= c["N"] <= 2239 and c["F"] == 0
    assert np.isfinite(b.x).all() and np.isfinite(b.rr).all()


def _toy_beats(n_per_class: int, seed: int) -> BeatSet:
    """Four separable classes: a class-specific template plus noise, and class-specific prematurity."""
    rng = np.random.default_rng(seed)
    t = np.linspace(-1, 1, BEFORE + AFTER)
    templates = [np.exp(-(t / 0.05) ** 2), -np.exp(-(t / 0.05) ** 2), np.exp(-(t / 0.2) ** 2), np.sin(8 * t)]
    xs, rrs, ys = [], [], []
    for k, tmpl in enumerate(templates):
        xs.append(tmpl[None, :] + 0.1 * rng.normal(size=(n_per_class, len(t))))
        ratio = 1.0 - 0.2 * k + 0.02 * rng.normal(size=n_per_class)
        rrs.append(np.stack([0.8 * ratio, 0.8 * np.ones(n_per_class), ratio, np.ones(n_per_class)], 1))
        ys.append(np.full(n_per_class, k))
    y = np.concatenate(ys)
    return BeatSet(np.concatenate(xs).astype(np.float32), np.concatenate(rrs).astype(np.float32), y,
                   np.array(["toy"] * len(y), dtype=object))


def test_classifier_learns_separable_classes_and_is_seeded():
    train, test = _toy_beats(120, 0), _toy_beats(50, 1)
    clf = train_classifier(train, ClassifierConfig(epochs=4, batch_size=64, seed=0))
    m = beat_metrics(test.y, clf.predict(test))
    assert m["macro_f1"] > 0.9
    again = train_classifier(train, ClassifierConfig(epochs=4, batch_size=64, seed=0))
    np.testing.assert_allclose(clf.predict_proba(test), again.predict_proba(test), atol=1e-6)


def test_agreement_filter_keeps_exactly_the_beats_the_classifier_labels_alike():
    from ecg2llm.eval.tstr.study import agreed_beats

    y = np.array([1, 2, 3, 1, 2, 3])
    beats = BeatSet(np.arange(6, dtype=np.float32)[:, None].repeat(256, 1), np.zeros((6, 4), np.float32), y,
                    np.array([f"s{i}" for i in range(6)]), "synthetic")

    class Fixed:  # a "classifier" whose answers are known
        def predict(self, b):
            return np.array([1, 0, 3, 2, 2, 0])[: len(b)]

    kept = agreed_beats(Fixed(), beats)
    assert kept.group.tolist() == ["s0", "s2", "s4"] and kept.y.tolist() == [1, 3, 2]
    np.testing.assert_array_equal(kept.x[:, 0], [0, 2, 4])  # beats travel with their labels
    assert len(agreed_beats(Fixed(), beats.subset([]))) == 0


def test_beat_metrics_on_a_known_confusion():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 2, 2, 0])
    m = beat_metrics(y_true, y_pred)
    assert m["per_class"]["N"]["se"] == pytest.approx(3 / 4) and m["per_class"]["N"]["ppv"] == pytest.approx(3 / 5)
    assert m["per_class"]["S"]["se"] == pytest.approx(1 / 2) and m["per_class"]["S"]["ppv"] == pytest.approx(1 / 2)
    assert m["per_class"]["V"]["f1"] == pytest.approx(1.0) and m["per_class"]["F"]["f1"] == pytest.approx(0.0)
    f1_n = 2 * 3 / (2 * 3 + 2 + 1)
    assert m["macro_f1"] == pytest.approx((f1_n + 0.5 + 1.0 + 0.0) / 4)
    assert np.asarray(m["confusion"]).sum() == len(y_true)


def test_tstr_script_end_to_end_on_tiny_data(tmp_path, data_dir):
    from test_conditioning import _cond_lm
    from test_entrypoint_errors import _main

    main = _main("scripts/tstr.py")

    lm = _cond_lm(tmp_path / "lm")
    out = tmp_path / "tstr"
    argv = ["--out", str(out), "--model", str(lm), "--data_dir", str(data_dir),
            "--train_records", "106,119", "--test_records", "100,105", "--seeds", "0,1", "--tree_max_iter", "10",
            "--beat_sequences", "3", "--seconds", "6", "--rhythm_conditions", "N", "--rhythm_sequences", "2",
            "--fidelity", "false", "--batch_size", "3", "--synthetic_dir", str(tmp_path / "syn"),
            "--results_json", str(tmp_path / "docs" / "results" / "tstr.json"),
            "--docs_md", str(tmp_path / "docs" / "tstr.md")]
    assert main(argv) == 0
    r = json.loads((out / "tstr.json").read_text())
    # the schema of issue 18, exactly these keys (extra keys beside them are allowed)
    assert set(r["arms"]) == {"a", "b", "c", "d"}
    for arm in r["arms"].values():
        assert isinstance(arm["macro_f1_mean"], float) and isinstance(arm["macro_f1_sd"], float)
        assert set(arm["per_class"]) == set(CLASSES)
        assert all(set(v) == {"se", "ppv", "f1"} for v in arm["per_class"].values())
    assert r["command"].startswith("python scripts/tstr.py --out ") and r["date"] and "git_sha" in r
    assert r["config"]["classifier"] == "trees" and r["classifier"]["model"] == MODELS[StrongConfig().model]
    a = r["arms"]["a"]
    assert len(a["runs"]) == 2 and 0.0 <= a["macro_f1_mean"] <= 1.0
    assert a["macro_f1_mean"] == pytest.approx(np.mean([x["macro_f1"] for x in a["runs"]]))
    assert a["macro_f1_sd"] == pytest.approx(np.std([x["macro_f1"] for x in a["runs"]], ddof=1))
    assert a["train_counts"] == r["beats"]["real_ds1"]
    # arm c = DS1 plus only the synthetic minority beats
    syn = {c: sum(r["beats"][k][c] for k in r["beats"] if k.startswith("synthetic beat:") or
                  k == "synthetic unconditional") for c in CLASSES}
    c_counts = r["arms"]["c"]["train_counts"]
    assert c_counts["N"] == r["beats"]["real_ds1"]["N"]
    assert all(c_counts[c] == r["beats"]["real_ds1"][c] + syn[c] for c in ("S", "V", "F"))
    # arm d = DS1 plus the agreed subset of those minority beats, never more than arm c
    kept = r["beats"]["synthetic S/V/F kept by the agreement filter"]
    d_counts = r["arms"]["d"]["train_counts"]
    assert all(d_counts[c] == r["beats"]["real_ds1"][c] + kept[c] <= c_counts[c] for c in CLASSES)
    assert {"d_minus_a", "c_beats_a_beyond_2sd", "a_sveb_f1_reaches_0.5"} <= set(r["goal"])
    for name in ("unconditional", "beat_S", "beat_V", "beat_F", "rhythm_N"):
        assert (tmp_path / "syn" / name / "manifest.json").is_file()
    md = (out / "tstr.md").read_text()
    assert "(a) real DS1" in md and "macro-F1" in md and "HistGradientBoosting" in md
    assert (out / "figures" / "arms.png").stat().st_size > 0 and (out / "run_info.json").is_file()
    assert json.loads((tmp_path / "docs" / "results" / "tstr.json").read_text())["arms"] == r["arms"]
    assert (tmp_path / "docs" / "tstr.md").read_text() == md

    # a second run reuses the generated sets (same model, seeds, settings) and reproduces the arms;
    # hand-written notes below the marker of the docs page survive it
    from ecg2llm.eval.tstr.report import NOTES_MARKER

    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "syn").glob("*/manifest.json")}
    docs = tmp_path / "docs" / "tstr.md"
    docs.write_text(docs.read_text() + f"\n{NOTES_MARKER}\nwhat limits it: ...\n")
    argv[argv.index(str(out))] = str(tmp_path / "again")
    argv[argv.index("0,1")] = "0"  # one seed is enough to compare
    assert main(argv) == 0
    assert docs.read_text().endswith(f"{NOTES_MARKER}\nwhat limits it: ...\n")
    assert docs.read_text().startswith("# Train on synthetic")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "syn").glob("*/manifest.json")} == stamp
    again = json.loads((tmp_path / "again" / "tstr.json").read_text())
    assert again["arms"]["a"]["macro_f1_mean"] == pytest.approx(a["runs"][0]["macro_f1"])


def test_tstr_checks_the_database_before_generating(tmp_path, capsys):
    from test_entrypoint_errors import _main

    nowhere = tmp_path / "nowhere"
    rc = _main("scripts/tstr.py")(["--out", str(tmp_path / "o"), "--model", "v2-conditional",
                                   "--data_dir", str(nowhere), "--download", "false"])
    err = capsys.readouterr().err
    assert rc != 0 and "nowhere" in err and "ECG2LLM_DATA" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "synthetic").exists()  # failed before any generation


@pytest.mark.parametrize("model,word", [("trees", "HistGradientBoosting"), ("trees+logreg", "logistic regression"),
                                        ("two-stage", "call V and F"),
                                        ("logreg", "logistic regression"), ("lda", "discriminants"),
                                        ("mlp", "MLP")])
def test_report_names_the_chosen_classifier(model, word):
    from dataclasses import asdict

    from ecg2llm.eval.tstr.report import _classifier_line

    cfg = StrongConfig(model=model, feature_set="rr+compact")
    line = _classifier_line({"config": {"classifier": "trees"}, "classifier": {"config": asdict(cfg)}})
    assert word in line and "`rr+compact`" in line


def _labelled(classes: str, source: str) -> BeatSet:
    y = np.array([CLASSES.index(c) for c in classes])
    return BeatSet(np.zeros((len(y), BEFORE + AFTER), np.float32), np.zeros((len(y), 4), np.float32), y,
                   np.array([source] * len(y), dtype=object), source)


def test_synthetic_minority_requested_takes_only_class_c_of_the_beat_c_set():
    """LM v3's rule: the beats labelled c in the beat:c set, nothing else; LM v2's: every S/V/F beat of every
    beat set (never the rhythm sets)."""
    from ecg2llm.eval.tstr.study import TSTRConfig, synthetic_minority

    syn = {"unconditional": _labelled("NNSV", "u"), "beat:S": _labelled("NSSVF", "s"),
           "beat:V": _labelled("NVVVS", "v"), "beat:F": _labelled("NNF", "f"), "rhythm:VT": _labelled("VVV", "r")}
    req = synthetic_minority(TSTRConfig(synthetic_minority="requested"), syn)
    assert req.counts() == {"N": 0, "S": 2, "V": 3, "F": 1}
    assert sorted(set(req.group.tolist())) == ["f", "s", "v"]  # no beat of the unconditional or rhythm sets
    every = synthetic_minority(TSTRConfig(synthetic_minority="all"), syn)
    assert every.counts() == {"N": 0, "S": 4, "V": 5, "F": 2}
    with pytest.raises(ValueError, match="not resolved"):
        synthetic_minority(TSTRConfig(), syn)  # "auto" is resolved by scripts/tstr.py from the LM
    from ecg2llm.core.errors import ConfigError

    with pytest.raises(ConfigError, match="synthetic_minority"):
        TSTRConfig(synthetic_minority="some")


def test_tstr_v3_synthetic_stage_on_tiny_data(tmp_path, data_dir):
    """LM v3 (the shipped `default`): sets steered by control tokens and guidance only, arm (c) = DS1 + the beats
    labelled c under beat:c; and the guidance check (tiny sizes)."""
    from test_entrypoint_errors import _main

    main = _main("scripts/tstr.py")
    common = ["--model", "default", "--data_dir", str(data_dir), "--train_records", "106,119",
              "--test_records", "100,105", "--seeds", "0", "--tree_max_iter", "10", "--seconds", "6",
              "--batch_size", "2", "--synthetic_dir", str(tmp_path / "syn"), "--num_threads", "1"]
    out = tmp_path / "tstr"
    assert main(["--out", str(out), *common, "--beat_sequences", "2", "--rhythm_conditions", "N",
                 "--rhythm_sequences", "1", "--fidelity", "false", "--guidance", "2"]) == 0
    r = json.loads((out / "tstr.json").read_text())
    assert r["config"]["synthetic_minority"] == "requested" and set(r["arms"]) == {"a", "b", "c", "d"}
    for name, g in (("unconditional", None), ("beat_S", 2.0), ("beat_V", 2.0), ("beat_F", 2.0), ("rhythm_N", 2.0)):
        man = json.loads((tmp_path / "syn" / name / "manifest.json").read_text())
        assert man["lm_version"] == 3 and man["conditioning"]["guidance"] == g
    ds1, c_counts = r["beats"]["real_ds1"], r["arms"]["c"]["train_counts"]
    requested = {c: r["beats"][f"synthetic beat:{c}"][c] for c in ("S", "V", "F")}
    assert r["synthetic_minority"]["counts"] == {"N": 0, **requested}
    assert c_counts == {"N": ds1["N"], **{c: ds1[c] + requested[c] for c in ("S", "V", "F")}}
    kept = r["beats"]["synthetic S/V/F kept by the agreement filter"]
    assert all(r["arms"]["d"]["train_counts"][c] == ds1[c] + kept[c] <= c_counts[c] for c in CLASSES)
    assert "no sampler rule" in (out / "tstr.md").read_text()

    chk = tmp_path / "check"
    assert main(["--out", str(chk), *common, "--guidance_check", "1,3", "--guidance_check_sequences", "1"]) == 0
    g = json.loads((chk / "tstr_guidance.json").read_text())
    assert set(g["guidance"]) == {"1", "3"} and g["chosen"] in (1.0, 3.0) and g["command"].startswith("python ")
    for row in g["guidance"].values():
        for c in ("S", "V", "F"):
            s = row["sets"][f"beat:{c}"]
            assert 0.0 <= s["share_of_beats"] <= 1.0 and s["n_requested_label"] == s["beats"].get(c, 0)
    man = json.loads((tmp_path / "syn" / "guidance_check" / "g3" / "beat_V" / "manifest.json").read_text())
    assert man["conditioning"]["guidance"] == 3.0 and man["conditioning"]["beat"] == "V"


def test_beat_timing_summary_tells_premature_from_on_time_beats():
    """scripts/tstr_beat_timing.py: a premature V beat with a pause reads prev/local < 0.85 and next/local > 1;
    its shape is closer to the V template than to N."""
    import sys

    from test_entrypoint_errors import _main

    _main("scripts/tstr_beat_timing.py")
    summarize = sys.modules["_ep_scripts_tstr_beat_timing"].summarize
    t = np.linspace(-1, 1, BEFORE + AFTER)
    tmpl = {"N": np.exp(-(t / 0.05) ** 2), "V": -np.exp(-(t / 0.2) ** 2)}
    y = np.array([0, 0, 2, 2])
    x = np.stack([tmpl["N"], tmpl["N"], tmpl["V"], tmpl["V"]]).astype(np.float32)
    rr = np.array([[0.8, 0.8, 1.0, 1.0], [0.8, 0.8, 1.0, 1.0], [0.5, 1.1, 0.62, 1.4], [0.8, 0.8, 1.0, 1.0]],
                  np.float32)
    r = summarize(BeatSet(x, rr, y, np.array(["s"] * 4, dtype=object), "toy"), tmpl, 0.85)
    assert r["N"]["n"] == 2 and r["N"]["premature_share"] == 0.0 and r["N"]["shape_closer_to_N_than_V"] == 1.0
    assert r["V"]["premature_share"] == 0.5 and r["V"]["shape_closer_to_V_than_N"] == 1.0
    assert r["V"]["prev_over_local_median"] == pytest.approx(0.81) and r["V"]["share"] == 0.5
