"""``lm/forecast.py`` (K sampled continuations of real prefixes) and the bigram sampler of ``ecg2llm.lm.baselines``."""
from __future__ import annotations

import json

import numpy as np
import pytest
from lm_support import UniformBlockConfig, UniformBlockTokenizer
from test_lm_generate import _save_lm

from ecg2llm.core.errors import ConfigError
from ecg2llm.lm.baselines import NGramModel
from ecg2llm.lm.forecast import ForecastConfig, forecast, main
from ecg2llm.tokenizer.forecasts import load_forecasts


@pytest.fixture(scope="module")
def uniform_lm(tmp_path_factory):
    return _save_lm(tmp_path_factory.mktemp("lm") / "final", UniformBlockTokenizer(UniformBlockConfig()))


def test_forecast_file_has_the_tasks_shapes_and_real_prefixes(tmp_path, uniform_lm, tiny_db):
    cfg = ForecastConfig(model=str(uniform_lm), out=str(tmp_path / "fc"), data_dir=str(tiny_db),
                         records=["100", "101"], n_tasks=3, k=4, prefix_s=2.0, horizon_s=1.0)
    info = forecast(cfg)
    f = load_forecasts(tmp_path / "fc")
    assert f["prefix"].shape == (3, 720) and f["truth"].shape == (3, 360) and f["samples"].shape == (3, 4, 360)
    assert float(f["fs"]) == 360.0 and set(f["records"]) <= {"100", "101"}
    assert np.isfinite(f["samples"]).all() and np.abs(f["samples"]).max() <= 2.0  # toy levels lie in [-2, 2] mV
    # the K continuations are random draws, not copies of one another
    assert np.ptp(f["samples"], axis=1).max() > 0
    assert info["n_tasks"] == 3 and info["tokenizer_weights_hash"]
    assert json.loads((tmp_path / "fc" / "forecast.json").read_text())["k"] == 4


def test_forecast_is_reproducible(tmp_path, uniform_lm, tiny_db):
    runs = []
    for name in ("a", "b"):
        forecast(ForecastConfig(model=str(uniform_lm), out=str(tmp_path / name), data_dir=str(tiny_db),
                                records=["100"], n_tasks=2, k=3, prefix_s=1.0, horizon_s=1.0, seed=5))
        runs.append(load_forecasts(tmp_path / name)["samples"])
    np.testing.assert_array_equal(runs[0], runs[1])


def test_forecast_bad_options_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="k must be >= 1"):
        ForecastConfig(k=0)
    assert main(["--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "fc")]) == 2
    assert "error:" in capsys.readouterr().err


def test_bigram_sampler_follows_a_learned_cycle():
    cycle = np.tile(np.arange(5), 400)
    m = NGramModel(2, vocab_size=64, k=1e-6).fit([cycle])
    m.k_uni = 1e-6
    s = m.sample(8, 50, seed=0)
    assert s.shape == (8, 50) and s.min() >= 0 and s.max() < 64
    assert np.all((s[:, 1:] - s[:, :-1]) % 5 == 1)  # every step follows the only successor seen
    np.testing.assert_array_equal(s, m.sample(8, 50, seed=0))


def test_bigram_sampler_matches_the_model_probabilities():
    rng = np.random.default_rng(0)
    seq = rng.choice(4, size=5000, p=[0.4, 0.3, 0.2, 0.1])
    m = NGramModel(2, vocab_size=4, k=0.5).fit([seq])
    s = m.sample(2000, 30, seed=1)
    a, b = s[:, :-1].ravel(), s[:, 1:].ravel()
    for ctx in range(4):
        emp = np.bincount(b[a == ctx], minlength=4) / max(1, (a == ctx).sum())
        model = 2.0 ** m._log2_bigram(np.full(4, ctx), np.arange(4), m.k)
        np.testing.assert_allclose(emp, model, atol=0.03)


def test_forecast_cli_runs_the_shipped_lm_v3(tmp_path, data_dir):
    """``lm/forecast.py --model default`` (LM v3, beats) continues real DS2 prefixes: the same file as LM v2's, the
    continuations differ from one another and stay at ECG amplitudes, and a second run gives the same samples."""
    cfg = dict(model="default", data_dir=str(data_dir), records=["100"], n_tasks=2, k=2, prefix_s=4.0,
               horizon_s=2.0, seed=3, num_threads=1)
    info = forecast(ForecastConfig(out=str(tmp_path / "a"), **cfg))
    f = load_forecasts(tmp_path / "a")
    assert info["lm_version"] == 3 and f["samples"].shape == (2, 2, 720) and f["prefix"].shape == (2, 1440)
    assert np.isfinite(f["samples"]).all() and np.abs(f["samples"]).max() < 8.0
    assert np.ptp(f["samples"], axis=1).max() > 0.05  # K draws, not copies
    forecast(ForecastConfig(out=str(tmp_path / "b"), **cfg))
    np.testing.assert_array_equal(f["samples"], load_forecasts(tmp_path / "b")["samples"])
