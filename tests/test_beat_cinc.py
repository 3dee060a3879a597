"""scripts/beat_cinc.py (issue 37's "any ECG" check on CinC 2017): the stratified draw, the DS2 reference, errors."""
from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from conftest import REPO

from ecg2llm.core.errors import ConfigError


@pytest.fixture(scope="module")
def mod():
    spec = importlib.util.spec_from_file_location("_beat_cinc", REPO / "scripts/beat_cinc.py")
    m = importlib.util.module_from_spec(spec)
    sys.modules["_beat_cinc"] = m
    spec.loader.exec_module(m)
    return m


def test_draw_is_stratified_seeded_and_without_repeats(mod):
    labels = {f"A{i:05d}": "NAO~"[i % 4] for i in range(1, 101)}  # 25 of each label
    labels["A09999"] = "N"
    a = mod.draw(labels, ["N", "A", "O", "~"], 10, seed=0)
    assert a == mod.draw(labels, ["N", "A", "O", "~"], 10, seed=0)
    assert a != mod.draw(labels, ["N", "A", "O", "~"], 10, seed=1)
    for c, recs in a.items():
        assert len(recs) == len(set(recs)) == 10 and all(labels[r] == c for r in recs) and recs == sorted(recs)
    assert len(mod.draw(labels, ["A"], 99, seed=0)["A"]) == 25  # a label with fewer: all of it


def test_ds2_reference_and_config_errors(mod, tmp_path):
    good = tmp_path / "fid.json"
    good.write_text(json.dumps({"git_sha": "abc", "ds2": {"rmse_uv": 17.5, "prdn": 6.2},
                                "tokenizer": {"weights_hash": "h"}}))
    ref = mod.ds2_reference(good)
    assert ref["rmse_uv"] == 17.5 and ref["prdn"] == 6.2 and ref["weights_hash"] == "h"
    with pytest.raises(ConfigError, match="no such file"):
        mod.ds2_reference(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ds2": {"rmse": 1}}))
    with pytest.raises(ConfigError, match="ds2.rmse_uv"):
        mod.ds2_reference(bad)
    with pytest.raises(ConfigError, match="per_class"):
        mod.BeatCincConfig(per_class=0)
    with pytest.raises(ConfigError, match="classes"):
        mod.BeatCincConfig(classes=["N", "X"])


def test_summary_pools_rmse_by_duration_and_averages_prdn(mod):
    rows = {"a": {"rmse_uv": 10.0, "prdn": 4.0, "seconds": 30.0, "fallback_share": 0.0, "gain_segment_share": 0.0,
                  "band_std_uv": 200.0},
            "b": {"rmse_uv": 20.0, "prdn": 8.0, "seconds": 10.0, "fallback_share": 1.0, "gain_segment_share": 1.0,
                  "band_std_uv": 100.0}}
    s = mod.summarize({"per_record": rows}, {"N": ["a"], "A": ["b"]}, {"rmse_uv": 10.0, "prdn": 4.0})
    assert s["Normal"]["rmse_ratio_to_ds2"] == 1.0 and s["AF"]["prdn_ratio_to_ds2"] == 2.0
    assert s["all"]["rmse_uv"] == pytest.approx((0.75 * 100 + 0.25 * 400) ** 0.5)
    assert s["all"]["prdn"] == 6.0 and s["all"]["fallback_share"] == 0.25 and s["all"]["recordings"] == 2
    w = mod.summarize({"per_record": rows}, {"N": ["a"], "A": ["b"]}, {"rmse_uv": 10.0, "prdn": 4.0},
                      prevalence={"N": 3, "A": 1})["database_weighted"]
    assert w["weights"] == {"Normal": 0.75, "AF": 0.25} and w["prdn"] == 5.0
    assert w["rmse_uv"] == pytest.approx((0.75 * 100 + 0.25 * 400) ** 0.5)
