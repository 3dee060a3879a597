"""scripts/filter_teacher.py: the teacher filter of `default`'s guidance distillation keeps exactly the samples whose
30-s windows all have beats that repeat, and writes what the distillation loader reads."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import filter_teacher  # noqa: E402

FS = 360.0
V_ID = 7


def _beats(seconds: float, rng, vary: float) -> np.ndarray:
    """An ECG-like trace at 75 bpm: each beat a QRS spike and a T wave; ``vary`` mixes in a random shape per beat
    (0: every beat the same; 1: every beat its own)."""
    t = np.arange(int(seconds * FS)) / FS
    x = np.zeros_like(t)
    for r in np.arange(0.4, seconds - 0.6, 0.8):
        shape = 1.0 * np.exp(-(((t - r) / 0.012) ** 2)) + 0.3 * np.exp(-(((t - r - 0.25) / 0.05) ** 2))
        other = rng.normal(0, 1, 5)
        wild = sum(a * np.exp(-(((t - r + 0.1 - 0.08 * k) / 0.02) ** 2)) for k, a in enumerate(other))
        x += (1 - vary) * shape + vary * (shape + wild)
    return (x + rng.normal(0, 0.005, len(t))).astype(np.float32)


def _teacher(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    src = tmp_path / "syn" / "beat_V"
    src.mkdir(parents=True)
    sig = [_beats(60, rng, 0.0), np.concatenate([_beats(30, rng, 0.0), _beats(30, rng, 1.0)]), _beats(60, rng, 0.0)]
    samples = []
    for i, x in enumerate(sig):
        np.save(src / f"sample_{i:03d}.npy", x)
        samples.append({"name": f"sample_{i:03d}", "npy": f"sample_{i:03d}.npy"})
    units = np.full((3, 6, 4), -1, np.int64)
    units[:, :4] = [[V_ID, 5, 1, 2], [3, 5, 1, 1], [V_ID, 5, 1, 2], [V_ID, 5, 3, 3]]  # V pairs share 1, then 0
    units[2, :4, 0] = 3  # no V beat at all
    (src / "manifest.json").write_text(json.dumps({"fs": FS, "samples": samples, "lm_version": 3}))
    np.save(src / "beat_units.npy", units)
    return src


def test_keeps_the_samples_whose_windows_all_repeat(tmp_path):
    src = _teacher(tmp_path)
    row = filter_teacher.filter_folder(src, tmp_path / "kept", min_consistency=0.714)
    assert (row["kept"], row["of"]) == (2, 3)  # the second sample's second half has beats of every shape
    man = json.loads((tmp_path / "kept" / "manifest.json").read_text())
    assert [s["name"] for s in man["samples"]] == ["sample_000", "sample_002"]
    assert man["teacher_filter"]["kept_indices"] == [0, 2] and man["lm_version"] == 3
    units = np.load(tmp_path / "kept" / "beat_units.npy")
    assert np.array_equal(units, np.load(src / "beat_units.npy")[[0, 2]])
    assert not any(p.name.endswith(".tmp.npy") for p in (tmp_path / "kept").iterdir())


def test_v_repeat_and_the_second_filter(tmp_path):
    src = _teacher(tmp_path)
    units = np.load(src / "beat_units.npy")
    assert filter_teacher.v_repeat(units[0], V_ID) == pytest.approx(0.5)  # (1 + 0) / 2 over the two V pairs
    assert np.isnan(filter_teacher.v_repeat(units[2], V_ID))  # no V pair: passes the filter
    row = filter_teacher.filter_folder(src, tmp_path / "kept", 0.714, min_v_repeat=0.6, v_id=V_ID)
    assert row["kept"] == 1  # sample 0 repeats its V beats too little, sample 2 has none


def test_a_sample_shorter_than_a_window_is_a_clear_error():
    with pytest.raises(ValueError, match="no whole 30-s window"):
        filter_teacher.window_consistency(np.zeros(int(10 * FS)), FS)
