"""scripts/scorecard_frontier.py: several scored sets per model, summarized and plotted."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_entrypoint_errors import _main


def _scored(folder: Path, disc: float, memo: float, draws: list[float], copies: dict | None) -> None:
    """A minimal eval/score.py metrics.json: a synthetic row with headline, draws and near copies."""
    band = {"embedding": [2.6, 8.5], "discriminator": [0.355, 0.677], "memorization": [0.0, 0.043]}
    vals = {"embedding": 3.0, "discriminator": disc, "memorization": memo}
    head = {k: {"value": v, "real_band": band[k],
                "verdict": "as_real" if band[k][0] <= v <= band[k][1] else "worse"} for k, v in vals.items()}
    verdict = "worse" if any(h["verdict"] == "worse" for h in head.values()) else "as_real"
    row = {"n_windows": 300, "headline": head, "verdict": verdict, "hr_w1_bpm": 4.0,
           "discriminator_draws": {"values": draws, "mean": sum(draws) / len(draws)}}
    if copies is not None:
        row["near_copies"] = {"n": sum(copies.values()), "by_record": copies, "windows": []}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"rows": {"synthetic": row}}))


def test_frontier_summarizes_each_model_over_its_sets(tmp_path, capsys):
    _scored(tmp_path / "a_s0", 0.70, 0.02, [0.70, 0.72], {"205": 3})
    _scored(tmp_path / "a_s1", 0.66, 0.06, [0.66, 0.68], {"205": 2, "122": 1})
    _scored(tmp_path / "b_s0", 0.80, 0.01, [0.80, 0.80], None)
    _scored(tmp_path / "b_s1", 0.60, 0.01, [0.60, 0.62], None)
    out, fig = tmp_path / "f.json", tmp_path / "f.png"
    rc = _main("scripts/scorecard_frontier.py")(
        ["--sets", f"A={tmp_path}/a_s*,B={tmp_path}/b_s*", "--out", str(out), "--figure", str(fig)])
    assert rc == 0 and fig.stat().st_size > 0
    s = json.loads(out.read_text())["summary"]
    assert s["A"]["n_sets"] == 2 and s["B"]["n_sets"] == 2
    assert s["A"]["as_real_overall"] == 0 and s["B"]["as_real_overall"] == 1  # the verdict, set by set
    assert s["A"]["discriminator_mean"]["mean"] == pytest.approx((0.71 + 0.67) / 2)
    assert s["A"]["headline"]["memorization"]["mean"] == pytest.approx(0.04)
    assert s["A"]["headline"]["memorization"]["sd"] == pytest.approx(0.02)
    assert s["A"]["as_real"] == {"embedding": 2, "discriminator": 1, "memorization": 1}
    assert s["A"]["near_copy_records"] == {"205": 5, "122": 1}
    assert s["B"]["near_copy_records"] == {}
    assert "A" in capsys.readouterr().out


def test_frontier_refuses_a_folder_without_a_scored_row(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "metrics.json").write_text(json.dumps({"rows": {"real DS1 (ceiling)": {}}}))
    assert _main("scripts/scorecard_frontier.py")(["--sets", f"X={tmp_path}/x"]) == 2
    err = capsys.readouterr().err
    assert "no scored row 'synthetic'" in err and "real DS1 (ceiling)" in err
    assert _main("scripts/scorecard_frontier.py")(["--sets", "no label here"]) == 2
    assert "label=glob" in capsys.readouterr().err


def test_frontier_reads_every_row_of_one_run_with_a_row_glob(tmp_path, capsys):
    """One eval/score.py run that scored several sets (--extra_rows): --row "*" makes each row a set."""
    _scored(tmp_path / "one", 0.70, 0.02, [0.70], None)
    _scored(tmp_path / "two", 0.60, 0.01, [0.60], None)
    m = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m["rows"]["s3"] = json.loads((tmp_path / "two" / "metrics.json").read_text())["rows"]["synthetic"]
    m["rows"]["real DS1 (ceiling)"] = {"n_windows": 300}  # a reference row without a headline: not a set
    (tmp_path / "one" / "metrics.json").write_text(json.dumps(m))
    out = tmp_path / "f.json"
    assert _main("scripts/scorecard_frontier.py")(["--sets", f"A={tmp_path}/one", "--row", "*", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["summary"]["A"]["n_sets"] == 2 and r["summary"]["A"]["as_real_overall"] == 1
    assert [f["folder"] for f in r["sets"]["A"]] == [f"{tmp_path}/one", f"{tmp_path}/one:s3"]
    assert _main("scripts/scorecard_frontier.py")(["--sets", f"A={tmp_path}/one", "--row", "zz*"]) == 2
    assert "no scored row matching 'zz*'" in capsys.readouterr().err
