"""scripts/rhythm_support.py: rhythm episodes counted from the reference annotations."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import rhythm_support  # noqa: E402


def test_episodes_run_from_mark_to_mark_and_to_the_end():
    got = rhythm_support.episodes(np.array([500, 0, 900]), ["(VT", "(N", "(N"], 1000)
    assert got == [("N", 0, 500), ("VT", 500, 900), ("N", 900, 1000)]


def test_record_223_holds_the_long_vt_episode(data_dir, tmp_path):
    out = tmp_path / "s.json"
    assert rhythm_support.main(["--data_dir", str(data_dir), "--records", "223,203",
                                "--rhythms", "VT,B", "--out", str(out)]) == 0
    vt = json.loads(out.read_text())["sets"]["records"]["rhythms"]["VT"]
    # MIT-BIH's VT: many short runs (203) and one longer episode (223); episode seconds add up
    assert vt["records"] == ["203", "223"]
    assert vt["episodes"] >= 10 and vt["beats"] > 3 * vt["episodes"] - 10
    assert vt["longest_episode_s"] > 10 > vt["median_episode_s"]
    assert 1 <= vt["windows_10s"] <= vt["seconds"] / 10
