"""Stage-3 metrics on cases with known answers (no data, no embedding network needed)."""

from __future__ import annotations

import numpy as np
import pytest

from ecg2llm.eval.scorecard.metrics import (
    beat_features,
    crps_ensemble,
    discriminative_score,
    frechet_distance,
    memorization_metrics,
    mmd_rbf,
    naive_last_beat,
    naive_mean,
    nearest_distances,
    physiology_metrics,
    prdc,
)
from ecg2llm.eval.scorecard.metrics.forecast import forecast_metrics
from ecg2llm.eval.testing import gaussian_wave_ecg
from ecg2llm.tokenizer.forecasts import ForecastError, load_forecasts, save_forecasts

FS = 360.0


@pytest.fixture(scope="module")
def gauss():
    rng = np.random.default_rng(0)
    return rng.standard_normal((400, 8)), rng.standard_normal((400, 8))


def test_frechet_identical_zero_shifted_large(gauss):
    a, b = gauss
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    same = frechet_distance(a, b)  # two samples of one distribution: small finite-sample bias only
    assert same < 0.3
    assert frechet_distance(a, b + 1.0) > 8 * 0.9 and frechet_distance(a, b + 1.0) > 10 * same
    assert frechet_distance(a, 2.0 * b) > 10 * same  # rescaled: covariance term


def test_frechet_matches_closed_form_for_diagonal_gaussians():
    # FD between N(0, I) and N(m, s^2 I) in d dims is |m|^2 + d (1 - s)^2: check with a large sample
    rng = np.random.default_rng(1)
    a = rng.standard_normal((20000, 4))
    b = 0.5 + 2.0 * rng.standard_normal((20000, 4))
    assert frechet_distance(a, b) == pytest.approx(4 * 0.25 + 4 * 1.0, rel=0.05)


def test_mmd_identical_near_zero_shifted_large(gauss):
    a, b = gauss
    assert abs(mmd_rbf(a, a)) < 0.01
    assert abs(mmd_rbf(a, b)) < 0.01
    assert mmd_rbf(a, b + 1.0) > 0.1
    assert mmd_rbf(a, 2.0 * b) > 0.05


def test_prdc_identical_and_disjoint(gauss):
    a, b = gauss
    same = prdc(a, a, k=5)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    far = prdc(a, b + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    twin = prdc(a, b, k=5)  # same distribution: all four near 1 (density ~1 by construction)
    assert twin["precision"] > 0.8 and twin["coverage"] > 0.8 and 0.7 < twin["density"] < 1.3


def test_discriminative_identical_vs_shifted(gauss):
    a, b = gauss
    assert discriminative_score(a, a, seed=0)["disc_score"] < 0.1
    assert discriminative_score(a, b, seed=0)["disc_score"] < 0.1
    assert discriminative_score(a, b + 1.0, seed=0)["disc_score"] > 0.3


def test_discriminative_small_sets_still_separable():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((20, 4))
    assert discriminative_score(a, rng.standard_normal((20, 4)) + 3.0)["disc_score"] > 0.3


def test_discriminative_balances_classes():
    rng = np.random.default_rng(2)
    r = discriminative_score(rng.standard_normal((300, 3)), rng.standard_normal((40, 3)))
    assert r["disc_n"] == 40


def sinus(hr: float, seconds: float = 10.0, seed: int = 0, method: str = "ecgsyn") -> np.ndarray:
    import neurokit2 as nk

    return np.asarray(
        nk.ecg_simulate(
            duration=seconds,
            sampling_rate=int(FS),
            heart_rate=hr,
            heart_rate_std=0.5,
            method=method,
            random_state=seed,
            noise=0.01,
        ),
        np.float32,
    )


# neurokit's "simple" simulator is left out on purpose: at 75 bpm requested its beats are 71.8 bpm apart
@pytest.mark.parametrize("hr", [48.0, 75.0, 120.0])
def test_heart_rate_of_ecgsyn_sinus_within_2_bpm(hr):
    f = beat_features(sinus(hr)[None, : int(10 * FS)], FS)
    assert f["valid"][0]
    assert abs(f["hr_bpm"][0] - hr) <= 2.0


# not above ~190 bpm: neurokit's detector keeps R-peaks >= 0.3 s apart (at 200 bpm it halves the rate)
@pytest.mark.parametrize("hr", [40.0, 60.0, 150.0, 185.0])
def test_heart_rate_of_periodic_ecg_within_2_bpm(hr):
    f = beat_features(gaussian_wave_ecg(hr)[None], FS)
    assert f["valid"][0]
    assert abs(f["hr_bpm"][0] - hr) <= 2.0
    assert f["sdnn_ms"][0] < 5.0  # exactly periodic beats: RR spread is detection jitter only


def test_flat_and_noise_windows_are_invalid_not_errors():
    rng = np.random.default_rng(0)
    x = np.stack([np.zeros(3600), 0.01 * rng.standard_normal(3600)]).astype(np.float32)
    f = beat_features(x, FS)
    assert not f["valid"][0] and f["n_beats"][0] == 0 and np.isnan(f["hr_bpm"][0])
    assert f["template"].shape == (2, int(0.25 * FS) + int(0.45 * FS))


def test_physiology_metrics_same_vs_other_rate():
    real = beat_features(np.stack([sinus(70, seed=s)[:3600] for s in range(4)]), FS)
    same = beat_features(np.stack([sinus(70, seed=10 + s)[:3600] for s in range(4)]), FS)
    fast = beat_features(np.stack([sinus(110, seed=20 + s)[:3600] for s in range(4)]), FS)
    m_same, m_fast = physiology_metrics(real, same), physiology_metrics(real, fast)
    assert m_same["valid_rhythm_rate"] == 1.0
    assert m_same["hr_w1_bpm"] < 2.0
    assert m_fast["hr_w1_bpm"] == pytest.approx(40.0, abs=3.0)
    assert m_same["beat_corr"] > 0.95


def test_crps_perfect_forecast_is_zero_and_matches_brute_force():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((3, 50))
    perfect = np.repeat(truth[:, None, :], 7, axis=1)
    assert np.abs(crps_ensemble(perfect, truth)).max() < 1e-12
    samples = rng.standard_normal((3, 9, 50))
    brute = np.abs(samples - truth[:, None]).mean(1) - 0.5 * np.abs(
        samples[:, :, None] - samples[:, None, :]
    ).mean((1, 2))
    np.testing.assert_allclose(crps_ensemble(samples, truth), brute, atol=1e-12)
    # one member: CRPS is the absolute error
    np.testing.assert_allclose(crps_ensemble(samples[:, :1], truth), np.abs(samples[:, 0] - truth))


def test_crps_of_gaussian_ensemble_matches_closed_form():
    # CRPS(N(0,1), y=0) = 2 phi(0) - 1/sqrt(pi) = 0.2337
    rng = np.random.default_rng(3)
    samples = rng.standard_normal((1, 4000, 1))
    assert crps_ensemble(samples, np.zeros((1, 1)))[0, 0] == pytest.approx(0.2337, abs=0.01)


def test_naive_forecasts():
    x = gaussian_wave_ecg(75, seconds=12.0, wander=0.0)
    p = int(5 * FS)
    prefix, truth = x[None, :p], x[None, p : p + int(5 * FS)]
    last = naive_last_beat(prefix, truth.shape[1], FS)
    mean = naive_mean(prefix, truth.shape[1])
    assert mean.shape == truth.shape and np.allclose(mean, prefix.mean())
    # a strictly periodic ECG is forecast by repeating its last beat to within the noise (0.01 mV s.d.)
    assert np.abs(last - truth).mean() < 0.02 < np.abs(mean - truth).mean()


def test_naive_beat_ensemble_spread_follows_rr_variability():
    from ecg2llm.eval.scorecard.metrics import naive_beat_ensemble

    p, h = int(5 * FS), int(5 * FS)
    steady = gaussian_wave_ecg(75, seconds=12.0, wander=0.0)
    jittery = gaussian_wave_ecg(75, seconds=12.0, wander=0.0, seed=3, rr_jitter=0.08)
    e_steady = naive_beat_ensemble(steady[None, :p], h, FS, k=8)
    e_jitter = naive_beat_ensemble(jittery[None, :p], h, FS, k=8)
    assert e_steady.shape == (1, 8, h)
    # regular rhythm: members nearly agree; irregular rhythm: they spread
    assert e_steady.std(axis=1).mean() < 0.5 * e_jitter.std(axis=1).mean()
    truth = steady[None, p : p + h]
    assert crps_ensemble(e_steady, truth).mean() < 0.05


def test_forecast_file_roundtrip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    prefix, truth = rng.standard_normal((4, 1800)), rng.standard_normal((4, 1800))
    samples = np.repeat(truth[:, None], 5, axis=1)
    path = save_forecasts(tmp_path, prefix, truth, samples, 360.0, records=["100"] * 4, starts=np.arange(4))
    f = load_forecasts(tmp_path)
    assert f["samples"].shape == (4, 5, 1800) and str(f["records"][0]) == "100"
    assert forecast_metrics(f["prefix"], f["truth"], f["samples"], 360.0)["forecast_crps"] == pytest.approx(
        0.0, abs=1e-6
    )
    with pytest.raises(ForecastError, match="disagree"):
        save_forecasts(path, prefix, truth[:, :100], samples, 360.0)
    with pytest.raises(ForecastError, match="no forecast file"):
        load_forecasts(tmp_path / "missing")


def test_memorization_copies_vs_new_samples():
    rng = np.random.default_rng(0)
    train = rng.standard_normal((2000, 8))
    heldout = rng.standard_normal((300, 8))
    d_ref, _ = nearest_distances(heldout, train)
    copies = train[:200] + 1e-3 * rng.standard_normal((200, 8))
    d_copy, idx = nearest_distances(copies, train)
    assert (idx == np.arange(200)).all()
    m_copy = memorization_metrics(d_copy, d_ref)
    assert m_copy["memorization_ratio"] < 0.05 and m_copy["near_copy_rate"] == 1.0
    d_new, _ = nearest_distances(rng.standard_normal((300, 8)), train)
    m_new = memorization_metrics(d_new, d_ref)
    assert 0.85 < m_new["memorization_ratio"] < 1.15 and m_new["near_copy_rate"] < 0.05


def test_nearest_distances_matches_brute_force():
    rng = np.random.default_rng(5)
    q, r = rng.standard_normal((37, 5)), rng.standard_normal((600, 5))
    d, i = nearest_distances(q, r, batch=8)
    full = np.linalg.norm(q[:, None] - r[None], axis=2)
    np.testing.assert_array_equal(i, full.argmin(1))
    np.testing.assert_allclose(d, full.min(1), atol=1e-9)


def test_crps_refuses_mismatched_shapes():
    from ecg2llm.eval.scorecard.metrics.forecast import crps_ensemble
    from ecg2llm.tokenizer.forecasts import ForecastError

    with pytest.raises(ForecastError, match="do not match"):
        crps_ensemble(np.zeros((3, 4, 10)), np.zeros((3, 9)))
