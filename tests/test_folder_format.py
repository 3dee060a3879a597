"""The one ECG folder format: writer/reader round trip, untrusted manifests, legacy manifests, and the
prompted generate -> score path (real prompt never scored as synthetic)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ecg2llm.eval.data import load_synthetic
from ecg2llm.eval.testing import gaussian_wave_ecg
from ecg2llm.tokenizer.folder import FORMAT, VERSION, SyntheticDataError, iter_samples, read_manifest, write_folder

FS = 360.0


def _sig(n, seconds=10.0):
    return [gaussian_wave_ecg(60 + 5 * i, seconds, seed=i) for i in range(n)]


def test_manifest_is_versioned_and_per_sample(tmp_path):
    m = write_folder(tmp_path / "f", _sig(2), FS, prompts=[{"record": "100", "seconds": 2.0}, None],
                     extra={"generator": "test"})
    on_disk = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    assert m["format"] == FORMAT and m["version"] == VERSION and m["generator"] == "test"
    assert m["samples"][0]["prompt"]["seconds"] == 2.0 and m["samples"][1]["prompt"] is None
    got = list(iter_samples(tmp_path / "f", prompted="continuation"))
    assert [s.prompt_s for s in got] == [2.0, 0.0]
    np.testing.assert_array_equal(got[1].x, _sig(2)[1].astype(np.float32))


@pytest.mark.parametrize("bad", ["../x.npy", "/etc/passwd", "sub/../../x.npy", ".."])
def test_manifest_paths_that_leave_the_folder_are_refused(tmp_path, bad):
    outside = tmp_path / "x.npy"
    np.save(outside, gaussian_wave_ecg(70))
    folder = tmp_path / "f"
    write_folder(folder, _sig(1), FS)
    man = json.loads((folder / "manifest.json").read_text())
    man["samples"][0]["npy"] = bad
    (folder / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(SyntheticDataError, match="not a plain file name"):
        read_manifest(folder)
    with pytest.raises(SyntheticDataError, match="not a plain file name"):
        load_synthetic(folder)


def test_writer_refuses_unsafe_names_and_foreign_folders(tmp_path):
    with pytest.raises(SyntheticDataError, match="plain file name"):
        write_folder(tmp_path / "f", _sig(1), FS, names=["../evil"])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep")
    with pytest.raises(SyntheticDataError, match="not an earlier output"):
        write_folder(busy, _sig(1), FS)
    assert (busy / "notes.txt").read_text() == "keep"


def test_legacy_manifests_are_read_with_their_prompts(tmp_path):
    """Both pre-versioned layouts: the top-level prompt of the old lm/generate.py and the per-sample
    ``prompt_seconds`` of the old stage-3 writer."""
    folder = tmp_path / "old"
    folder.mkdir()
    sig = _sig(2, 15.0)
    for i, x in enumerate(sig):
        np.save(folder / f"s{i}.npy", x.astype(np.float32))
    samples = [{"name": f"s{i}", "npy": f"s{i}.npy"} for i in range(2)]
    (folder / "manifest.json").write_text(json.dumps(
        {"fs": FS, "units": "mV", "prompt": {"record": "100", "seconds": 5.0, "tokens": 180}, "samples": samples}))
    with pytest.raises(SyntheticDataError, match="all samples are prompted"):
        load_synthetic(folder)
    cont = load_synthetic(folder, prompted="continuation")
    np.testing.assert_array_equal(cont.x[0], sig[0][1800:5400].astype(np.float32))
    samples[0]["prompt"] = {"record": "100", "start_sample": 0, "prompt_seconds": 5.0}
    (folder / "manifest.json").write_text(json.dumps({"fs": FS, "units": "mV", "samples": samples}))
    assert load_synthetic(folder).names == ["s1"]


def test_newer_or_foreign_manifests_are_refused(tmp_path):
    folder = tmp_path / "f"
    write_folder(folder, _sig(1), FS)
    man = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**man, "version": VERSION + 1}))
    with pytest.raises(SyntheticDataError, match="upgrade"):
        read_manifest(folder)
    (folder / "manifest.json").write_text(json.dumps({**man, "format": "something-else"}))
    with pytest.raises(SyntheticDataError, match="format"):
        read_manifest(folder)


def test_prompted_generate_then_score_never_scores_the_prompt(tmp_path):
    """lm/generate.py with a real prompt -> the stage-3 loader: by default nothing prompted is scored; with
    ``continuation`` exactly the generated samples after the prompt are, never the real prefix."""
    from conftest import synthetic_ecg, write_wfdb
    from lm_support import UniformBlockConfig, UniformBlockTokenizer
    from test_lm_generate import _save_lm

    from ecg2llm.lm.generate import main as generate

    lm_dir = _save_lm(tmp_path / "lm", UniformBlockTokenizer(UniformBlockConfig()))
    root = tmp_path / "data"
    x = synthetic_ecg(30, seed=4)
    write_wfdb(root / "mitdb", "100", np.stack([x, -x], 1))
    out = tmp_path / "gen"
    assert generate(["--model", str(lm_dir), "--num-samples", "3", "--seconds", "10", "--out", str(out),
                     "--prompt-record", "100", "--prompt-seconds", "5", "--data_dir", str(root), "--png", "false"]) == 0
    with pytest.raises(SyntheticDataError, match="all samples are prompted"):
        load_synthetic(out)
    ws = load_synthetic(out, prompted="continuation")
    assert len(ws) == 3 and ws.x.shape == (3, 3600)
    for i in range(3):
        full = np.load(out / f"sample_{i:03d}.npy")
        assert len(full) == 15 * 360
        np.testing.assert_array_equal(ws.x[i], full[1800:])
