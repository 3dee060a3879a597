"""Baseline (wander) model of tokenizer v2: shapes, seeding, saving, the weights hash, and realism vs DS1."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ecg2llm.core.errors import TokenizerError
from ecg2llm.tokenizer.base import ECGTokenizer
from ecg2llm.tokenizer.baseline import n_knots
from ecg2llm.tokenizer.wander import WANDER_FILE, WanderModel, fit_wander, wander_log_rms

SHIPPED_HASH = "1d93e402062b09aaa89cf90105d8ee70996c414967ff96eddee19cba9279b7fc"


@pytest.fixture(scope="module")
def v2():
    return ECGTokenizer.from_pretrained("v2")


def _toy_model() -> WanderModel:
    return WanderModel(knot_s=0.5, ar=[0.9, -0.1], mu=-3.0, tau_record=0.4, tau_segment=0.5, rho_segment=0.5,
                       dc_mean_mv=-0.4, dc_std_mv=0.3)


def test_default_has_a_wander_model_and_keeps_its_hash(v2):
    assert v2.has_wander_model
    assert v2.weights_hash == SHIPPED_HASH  # wander.json is beside the weights, not in them


@pytest.mark.parametrize("n", [1, 179, 180, 3600, 36001])
def test_sample_state_shape_and_decode(v2, n):
    st = v2.sample_state(n, seed=3)
    assert st["n_samples"] == n and st["baseline"].shape == (n_knots(n, v2.hop),)
    assert st["baseline"].dtype == np.float32 and np.isfinite(st["baseline"]).all()
    ids = np.zeros(-(-n // 10), np.int64)
    y = v2.decode(ids, st, texture=True, seed=1)
    assert y.shape == (n,)
    np.testing.assert_allclose(y - v2.decode(ids, {"n_samples": n}, texture=True, seed=1),
                               v2.interpolate_baseline(st["baseline"], n), atol=0.006)  # ADC rounding


def test_sample_state_is_seeded(v2):
    a, b, c = (v2.sample_state(7200, seed=s)["baseline"] for s in (5, 5, 6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(v2.sample_state(7200)["baseline"], v2.sample_state(7200)["baseline"])


def test_folder_without_wander_file_has_no_model(v2, tmp_path):
    import shutil

    src = v2.save_pretrained(tmp_path / "tok")
    assert (src / WANDER_FILE).is_file()  # save_pretrained keeps it
    assert ECGTokenizer.from_pretrained(src).has_wander_model
    old = tmp_path / "old"
    shutil.copytree(src, old)
    (old / WANDER_FILE).unlink()
    tok = ECGTokenizer.from_pretrained(old)
    assert not tok.has_wander_model and tok.weights_hash == SHIPPED_HASH
    with pytest.raises(TokenizerError, match="fit_wander"):
        tok.sample_state(100)


def test_bad_wander_files_fail_clearly(v2, tmp_path):
    folder = v2.save_pretrained(tmp_path / "tok")
    (folder / WANDER_FILE).write_text("{not json")
    with pytest.raises(TokenizerError, match="not valid JSON"):
        ECGTokenizer.from_pretrained(folder)
    d = json.loads(_toy_model().to_json())
    d["knot_s"] = 1.0
    (folder / WANDER_FILE).write_text(json.dumps(d))
    with pytest.raises(TokenizerError, match="knots every"):
        ECGTokenizer.from_pretrained(folder)
    with pytest.raises(TokenizerError, match="stationary"):
        WanderModel(knot_s=0.5, ar=[1.2], mu=-3, tau_record=0, tau_segment=0, rho_segment=0)


def test_json_round_trip():
    m = _toy_model()
    m2 = WanderModel.from_json(m.to_json())
    assert m2 == m
    np.testing.assert_array_equal(m.sample(100, seed=1), m2.sample(100, seed=1))


def test_shipped_lm_copies_carry_the_same_wander_model(v2):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    ref = (root / "tokenizer/pretrained/v2" / WANDER_FILE).read_text()
    for name in ("v2", "v2-conditional"):
        f = root / "lm/pretrained" / name / "tokenizer" / WANDER_FILE
        assert f.read_text() == ref, name


def test_lm_loader_reads_the_wander_model():
    from pathlib import Path

    from ecg2llm.lm.model import load_tokenizer_for

    root = Path(__file__).resolve().parents[1]
    folder = root / "lm/pretrained/v2"
    cfg = json.loads((folder / "config.json").read_text())

    class C:
        ecg_tokenizer = cfg["ecg_tokenizer"]

    tok = load_tokenizer_for(C, folder=folder)
    assert tok.has_wander_model and tok.weights_hash == SHIPPED_HASH


def test_wander_metric_matches_the_scorecard():
    from ecg2llm.eval.scorecard.clinical import texture_features

    rng = np.random.default_rng(0)
    w = np.cumsum(rng.standard_normal((4, 3600)), axis=1) * 0.01
    np.testing.assert_allclose(wander_log_rms(w, 360.0), texture_features(w, 360.0)["wander"], rtol=0, atol=1e-12)


def test_fit_recovers_a_known_model():
    truth = _toy_model()
    series = [truth.sample(4000, seed=i) for i in range(30)]
    fit = fit_wander(series, 0.5, 360.0, 180, order=2, calibrate=False)
    np.testing.assert_allclose(fit.ar, truth.ar, atol=0.05)
    assert abs(fit.mu - truth.mu) < 0.25 and abs(fit.tau_record - truth.tau_record) < 0.2
    assert abs(fit.dc_mean_mv - truth.dc_mean_mv) < 0.15


def test_sampled_wander_sits_inside_the_real_ds1_distribution(v2, data_dir):
    """Median 10-s wander of sampled baselines within the real DS1-train baselines' interquartile range, and
    the sampled interquartile range overlapping most of the real one."""
    from ecg2llm.tokenizer.data import read_record
    from ecg2llm.tokenizer.splits import inter_patient_split

    win = 3600
    real = []
    for r in inter_patient_split().train[::3]:
        x = read_record(r, data_dir, lead="MLII", fs=v2.fs, annotations=False).signal
        b = v2.interpolate_baseline(v2.estimate_baseline(x), len(x))
        m = len(b) // win
        real.append(wander_log_rms(b[: m * win].reshape(m, win), v2.fs))
    real = np.concatenate(real)
    samp = np.stack([v2.interpolate_baseline(v2.sample_state(win, seed=i)["baseline"], win) for i in range(400)])
    sim = wander_log_rms(samp, v2.fs)
    q25, q50, q75 = np.percentile(real, [25, 50, 75])
    s25, s50, s75 = np.percentile(sim, [25, 50, 75])
    assert q25 < s50 < q75, (np.percentile(real, [25, 50, 75]), np.percentile(sim, [25, 50, 75]))
    overlap = min(q75, s75) - max(q25, s25)
    assert overlap > 0.6 * (q75 - q25)


def test_other_tokenizers_say_they_have_no_wander_model():
    v1 = ECGTokenizer.from_pretrained("v1")
    assert v1.has_wander_model is False
    with pytest.raises(TokenizerError, match="no baseline"):
        v1.sample_state(3600, seed=0)


def test_shipped_lm_accepts_a_re_saved_copy_of_its_tokenizer(v2, tmp_path):
    """A copy saved by this code carries the newer config fields (baseline estimator); the LM's record,
    written before them, must still match it once defaults are filled in - and still refuse other configs."""
    from pathlib import Path

    from ecg2llm.lm.model import load_tokenizer_for

    root = Path(__file__).resolve().parents[1]
    cfg = json.loads((root / "lm/pretrained/v2-conditional/config.json").read_text())  # recorded before them
    assert "baseline_iterations" not in cfg["ecg_tokenizer"]["config"]

    class C:
        ecg_tokenizer = cfg["ecg_tokenizer"]

    folder = v2.save_pretrained(tmp_path / "tok")
    assert "baseline_iterations" in json.loads((folder / "config.json").read_text())
    tok = load_tokenizer_for(C, tokenizer=folder)
    assert tok.has_wander_model and tok.weights_hash == SHIPPED_HASH
    c2 = json.loads((folder / "config.json").read_text())
    c2["texture_hop"] = 30
    (folder / "config.json").write_text(json.dumps(c2))
    with pytest.raises(TokenizerError, match="has config"):
        load_tokenizer_for(C, tokenizer=folder)
