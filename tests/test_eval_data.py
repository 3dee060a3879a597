"""Synthetic-folder loader (manifest / .npy / WFDB), window policy, and real reference windows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecg2llm.eval.data import load_synthetic, real_windows
from ecg2llm.eval.testing import gaussian_wave_ecg, real_data_root, write_tiny_mitdb
from ecg2llm.tokenizer.folder import SyntheticDataError, write_folder

FS = 360.0


def signals(n: int, seconds: float = 10.0) -> list[np.ndarray]:
    return [gaussian_wave_ecg(60 + 5 * i, seconds, seed=i) for i in range(n)]


def test_manifest_folder_roundtrip(tmp_path):
    sig = signals(3)
    write_folder(tmp_path / "s", sig, FS)
    man = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert man["fs"] == 360.0 and man["units"] == "mV" and len(man["samples"]) == 3
    assert man["samples"][0]["name"] == "sample_000" and man["samples"][0]["prompt"] is None
    ws = load_synthetic(tmp_path / "s")
    assert ws.x.shape == (3, 3600) and ws.x.dtype == np.float32 and ws.fs == 360.0
    np.testing.assert_array_equal(ws.x, np.stack(sig))  # .npy is read first: exact


def test_wfdb_only_folder_matches_npy_to_1uv(tmp_path):
    sig = signals(2)
    folder = tmp_path / "s"
    write_folder(folder, sig, FS)
    for p in list(folder.glob("*.npy")) + [folder / "manifest.json"]:
        p.unlink()
    ws = load_synthetic(folder)
    assert ws.names == ["sample_000", "sample_001"]
    np.testing.assert_allclose(ws.x, np.stack(sig), atol=0.6e-3)


def test_npy_only_folder_uses_fs_and_resamples(tmp_path):
    (tmp_path / "n").mkdir()
    np.save(tmp_path / "n" / "a.npy", gaussian_wave_ecg(70, 20.0, fs=250.0))
    ws = load_synthetic(tmp_path / "n", fs=250.0)
    assert ws.x.shape == (2, 3600) and ws.names == ["a#0", "a#1"]
    assert load_synthetic(tmp_path / "n").x.shape == (1, 3600)  # read as 360 Hz by default: 5000 samples


def test_long_samples_cut_short_rejected_or_skipped(tmp_path):
    write_folder(tmp_path / "s", [gaussian_wave_ecg(70, 25.0), gaussian_wave_ecg(70, 6.0)], FS)
    with pytest.raises(SyntheticDataError, match="shorter than one 10-s window.*sample_001"):
        load_synthetic(tmp_path / "s")
    ws = load_synthetic(tmp_path / "s", short="skip")
    assert ws.names == ["sample_000#0", "sample_000#1"] and ws.meta["n_short_skipped"] == 1


def test_prompted_samples(tmp_path):
    prompt = {"record": "100", "lead": "MLII", "start_s": 0.0, "seconds": 5.0}
    write_folder(tmp_path / "s", signals(2, 15.0), FS, prompts=[prompt, None])
    assert load_synthetic(tmp_path / "s").names == ["sample_001"]
    cont = load_synthetic(tmp_path / "s", prompted="continuation")
    assert cont.names == ["sample_000", "sample_001"]
    np.testing.assert_array_equal(cont.x[0], signals(2, 15.0)[0][1800:5400])
    write_folder(tmp_path / "p", signals(1), FS, prompts=[prompt])
    with pytest.raises(SyntheticDataError, match="all samples are prompted"):
        load_synthetic(tmp_path / "p")


def test_bad_folders_raise_clear_errors(tmp_path):
    with pytest.raises(SyntheticDataError, match="does not exist"):
        load_synthetic(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SyntheticDataError, match="no manifest.json"):
        load_synthetic(tmp_path / "empty")
    (tmp_path / "nan").mkdir()
    x = gaussian_wave_ecg(70)
    x[100] = np.nan
    np.save(tmp_path / "nan" / "a.npy", x)
    with pytest.raises(SyntheticDataError, match="NaN"):
        load_synthetic(tmp_path / "nan")
    (tmp_path / "2d").mkdir()
    np.save(tmp_path / "2d" / "a.npy", np.zeros((2, 3600), np.float32))
    with pytest.raises(SyntheticDataError, match="1-D"):
        load_synthetic(tmp_path / "2d")
    write_folder(tmp_path / "m", signals(1), FS)
    with pytest.raises(SyntheticDataError, match="contradicts"):
        load_synthetic(tmp_path / "m", fs=250.0)


def test_real_windows_seeded_and_disjoint(tmp_path):
    root = write_tiny_mitdb(tmp_path, ["100", "103"], seconds=100.0)
    all_w = real_windows(["100", "103"], root)
    assert all_w.x.shape == (20, 3600) and set(all_w.records) == {"100", "103"}
    a = real_windows(["100", "103"], root, n=8, seed=3)
    b = real_windows(["100", "103"], root, n=8, seed=3)
    np.testing.assert_array_equal(a.x, b.x)
    rest = real_windows(["100", "103"], root, n=12, seed=1, exclude=a)
    assert not set(a.names) & set(rest.names) and len(rest) == 12
    i = a.names.index(a.names[0])
    rec, start = a.records[i], a.starts[i]
    np.testing.assert_array_equal(a.x[i], all_w.x[all_w.names.index(f"{rec}@{start}")])


def test_real_ds2_windows_in_mv():
    root = real_data_root()
    if root is None:
        pytest.skip("MIT-BIH not found (set ECG2LLM_DATA or place it at ../shared/data)")
    ws = real_windows(["100", "114"], root, n=10, seed=0)
    assert ws.x.shape == (10, 3600) and ws.fs == 360.0
    # MLII R waves are around 1-2 mV: the windows are in millivolts, not ADC units
    assert 0.3 < np.median(np.ptp(ws.x, axis=1)) < 6.0
