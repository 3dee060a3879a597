"""Scorer known cases and eval/score.py end to end (tiny synthetic database; real MIT-BIH when present)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecg2llm.core.errors import ConfigError
from ecg2llm.eval.score import REQUIRED_KEYS, main
from ecg2llm.eval.scorecard.scorer import Scorer, ScoreSettings
from ecg2llm.eval.testing import gaussian_wave_ecg, real_data_root, write_tiny_mitdb
from ecg2llm.tokenizer.folder import write_folder
from ecg2llm.tokenizer.forecasts import make_forecast_tasks, save_forecasts

REF, TRAIN = ["100", "103"], ["101", "106"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return write_tiny_mitdb(tmp_path_factory.mktemp("data"), REF + TRAIN, seconds=150.0)


@pytest.fixture(scope="module")
def scorer(tiny_root, tmp_path_factory):
    s = ScoreSettings(
        data_dir=str(tiny_root),
        reference_records=tuple(REF),
        train_records=tuple(TRAIN),
        n_real=20,
        memo_stride_s=10.0,
        cache_dir=str(tmp_path_factory.mktemp("cache")),
    )
    return Scorer(s, verbose=False)


def test_identical_set_scores_zero_and_rescaled_set_does_not(scorer):
    ref = scorer.reference
    same = scorer.score_windows("identical", ref)
    assert same["fed"] == pytest.approx(0.0, abs=1e-6)
    # unbiased MMD^2 of a set against itself is -2 (1 - mean off-diagonal kernel) / n: at most 2/n in size
    assert -2.0 / len(ref) <= same["mmd"] <= 0.0
    assert same["disc_score"] < 0.1
    assert same["precision"] == 1.0 and same["coverage"] == 1.0
    big = scorer.score_windows("rescaled x1.5", ref.x * 1.5)
    assert big["fed"] > 10 * max(same["fed"], 0.05)
    assert big["mmd"] > 0.1 and big["disc_score"] > 0.3
    assert big["r_amp_w1_mv"] > 0.2


def test_cache_gives_identical_features(scorer):
    a = scorer.features(scorer.reference)
    b = scorer.features(scorer.reference)
    np.testing.assert_array_equal(a.emb, b.emb)
    assert any((scorer.cache / "features").glob("*.npz"))


def test_score_py_end_to_end_tiny(tiny_root, tmp_path, capsys):
    synth = [gaussian_wave_ecg(65 + 3 * i, 20.0, seed=100 + i) for i in range(8)]  # 16 windows of 10 s
    write_folder(tmp_path / "gen", synth, 360.0)
    tasks = make_forecast_tasks(tiny_root, records=REF, n=6, seed=0)
    k = 4
    samples = np.repeat(tasks["truth"][:, None], k, axis=1)  # a perfect forecaster
    save_forecasts(
        tmp_path / "fc", tasks["prefix"], tasks["truth"], samples, 360.0, tasks["records"], tasks["starts"]
    )
    out = tmp_path / "out"
    rc = main(
        [
            "--synthetic",
            str(tmp_path / "gen"),
            "--out",
            str(out),
            "--data_dir",
            str(tiny_root),
            "--reference_records",
            ",".join(REF),
            "--train_records",
            ",".join(TRAIN),
            "--n_real",
            "16",
            "--n_ref_rows",
            "10",
            "--memo_stride_s",
            "10",
            "--forecast",
            str(tmp_path / "fc"),
            "--cache_dir",
            str(tmp_path / "cache"),
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in REQUIRED_KEYS:
        assert key in m
    assert m["forecast_crps"] == pytest.approx(0.0, abs=1e-7)
    assert m["synthetic"]["n_windows"] == 16 and m["primary_row"] == "synthetic"
    assert set(m["rows"]) == {"synthetic", "real DS1 (ceiling)", "ECGSYN (neurokit2)"}
    assert m["rows"]["real DS1 (ceiling)"]["memorization_ratio"] is None
    assert m["embedding_weights_hash"] == m["reference"]["embedding"]["weights_hash"]
    assert m["forecast_rows"]["naive: prefix mean"]["forecast_crps"] > 0
    report = (out / "report.md").read_text()
    assert "| synthetic | 16 |" in report and "rfed ↓" in report and "forecast_crps ↓" in report
    for fig in ("overlays.png", "hr_hist.png", "embedding.png", "forecast_fan.png", "report.html"):
        assert (out / fig).stat().st_size > 1000
    assert "rfed=" in capsys.readouterr().out


def test_score_py_bad_input_is_one_line_error(tmp_path, capsys):
    assert main(["--synthetic", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err


def test_perfect_generator_on_real_data(tmp_path):
    """Held-out real DS2 windows score like real data: low rFED and disc, memorization ratio ~1."""
    root = real_data_root()
    if root is None:
        pytest.skip("MIT-BIH not found (set ECG2LLM_DATA or place it at ../shared/data)")
    s = ScoreSettings(data_dir=str(root), n_real=150, memo_stride_s=60.0, cache_dir=str(tmp_path / "cache"))
    sc = Scorer(s, verbose=False)
    perfect = sc.score_windows("held-out DS2", sc.heldout_real(100))
    ds1 = sc.score_windows(
        "DS1",
        __import__("ecg2llm.eval.scorecard.references", fromlist=["ds1_windows"]).ds1_windows(sc, 100),
        memorization=False,
    )
    assert perfect["rfed"] < 0.5 * ds1["rfed"]
    assert perfect["disc_score"] < 0.15
    assert 0.8 < perfect["memorization_ratio"] < 1.25
    assert perfect["valid_rhythm_rate"] > 0.9


def test_tokenizer_roundtrip_row(scorer, tmp_path):
    """The round-trip row runs any tokenizer folder (here an untrained seed tokenizer) on held-out windows."""
    from ecg2llm.eval.scorecard.references import tokenizer_roundtrip_row, tokenizer_roundtrip_windows
    from ecg2llm.tokenizer import SeedTokenizer, SeedTokenizerConfig

    tok = SeedTokenizer(SeedTokenizerConfig())
    tok.save_pretrained(tmp_path / "tok")
    held = scorer.heldout_real(8)
    assert not set(held.names) & set(scorer.reference.names)
    rt = tokenizer_roundtrip_windows(tok, held)
    assert rt.x.shape == held.x.shape and np.isfinite(rt.x).all()
    row = tokenizer_roundtrip_row(scorer, tmp_path / "tok", n=8)
    assert row["name"].startswith("tokenizer round trip (seed, 36 tok/s)")
    assert row["tokenizer"]["weights_hash"] == tok.weights_hash and row["tokenizer"]["texture"] is False
    assert row["name"] in scorer.sets
    with pytest.raises(ConfigError, match="texture model"):
        tokenizer_roundtrip_row(scorer, tok, n=8, texture=True)


def test_texture_roundtrip_row_decodes_as_generated_ecgs_are(scorer):
    """With tokenizer v2 the ceiling row also comes decoded with texture, seeded per window (same seed, same
    windows; the ECG band itself unchanged underneath: texture adds noise, it does not move the beats)."""
    from ecg2llm.eval.scorecard.references import tokenizer_roundtrip_row, tokenizer_roundtrip_windows
    from ecg2llm.tokenizer import ECGTokenizer

    tok = ECGTokenizer.from_pretrained("v2")
    held = scorer.heldout_real(4)
    plain, tex = tokenizer_roundtrip_windows(tok, held), tokenizer_roundtrip_windows(tok, held, texture=True)
    again = tokenizer_roundtrip_windows(tok, held, texture=True)
    assert np.array_equal(tex.x, again.x) and not np.array_equal(tex.x, plain.x)
    noise = tex.x - plain.x
    assert 0 < np.std(noise) < 0.5 * np.std(plain.x)
    row = tokenizer_roundtrip_row(scorer, tok, n=8, texture=True)
    assert row["name"].endswith("texture decode)") and row["tokenizer"]["texture"] is True


def test_front_door_score_returns_the_verdicts_the_cli_prints(tiny_root, tmp_path):
    """``ecg2llm.score(folder)``: one call, the command's verdicts as a result object; ``out=None`` scores into a
    temporary folder that is gone afterwards; an unknown option is a ConfigError naming the valid ones."""
    import ecg2llm
    from ecg2llm.eval.score import SUMMARY_KEYS, summary_lines

    synth = [gaussian_wave_ecg(65 + 3 * i, 20.0, seed=200 + i) for i in range(8)]  # 16 windows of 10 s
    write_folder(tmp_path / "gen", synth, 360.0)
    with pytest.raises(ConfigError, match="unknown key.*n_rael.*valid keys"):
        ecg2llm.score(tmp_path / "gen", n_rael=3)
    result = ecg2llm.score(tmp_path / "gen", data_dir=str(tiny_root), reference_records=REF, train_records=TRAIN,
                           n_real=16, n_ref_rows=10, memo_stride_s=10.0, references="none",
                           cache_dir=str(tmp_path / "cache"))
    m = result.metrics
    assert isinstance(result, ecg2llm.ScoreResult) and result.out is None
    assert not Path(m["config"]["out"]).exists()  # the temporary folder is cleaned up
    assert m["primary_row"] == "synthetic" and m["synthetic"]["n_windows"] == 16
    assert result.verdict == m["verdict"] and result.verdict in ("as_real", "worse")
    assert set(result.headline) == set(m["headline"]) and result.headline
    for h in result.headline.values():
        assert {"value", "verdict", "real_band"} <= set(h)
    assert list(result.summary) == list(SUMMARY_KEYS) and result.summary["rfed"] == m["rfed"] > 0
    lines = str(result).splitlines()
    assert lines == summary_lines(m) and lines[0].startswith(f"verdict: {result.verdict}")
    assert set(m["rows"]) == {"synthetic"}
