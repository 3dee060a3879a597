"""Hardening (issue 6): every bad input gives one specific ``error:`` line (what, where, what to do) or a
documented handling, never a deep traceback and never a partial output.

Cases already covered elsewhere are not repeated here: NaN gaps up to 0.5 s interpolated
(``test_data.py::test_nan_policy_interpolates_short_gaps_and_refuses_long_ones``), a lead absent from some
records (skipped and listed, ``test_store.py::test_skipped_leads_are_recorded``), corrupt stores opened by
the library (``test_store.py``), a tokenizer/LM mismatch at generation
(``test_lm_generate.py::test_mismatched_or_stateful_tokenizers_are_refused``).
"""
from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_ecg, write_wfdb
from lm_support import build_test_store, seed_tokenizer_dir

from ecg2llm.core.errors import DataNotFoundError, TokenizerError
from ecg2llm.tokenizer.base import ECGTokenizer
from ecg2llm.tokenizer.tokenize_db import main as tokenize_main


@pytest.fixture(scope="module")
def seed_tok(tmp_path_factory) -> Path:
    return seed_tokenizer_dir(tmp_path_factory.mktemp("tok") / "seed")


def _tokenize(capsys, root: Path, out: Path, tok: Path, records=("100", "101"), *extra: str) -> tuple[int, str]:
    rc = tokenize_main(["--out", str(out), "--tokenizer", str(tok), "--data_dir", str(root),
                        "--records", ",".join(records), "--download", "false", *extra])
    return rc, capsys.readouterr().err


def _assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc != 0
    assert "Traceback" not in err
    chunks = [c for ln in err.split("\n") for c in ln.split("\r")]
    lines = [c for c in chunks if c.strip() and "%|" not in c]  # tqdm progress bars are not messages
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _no_leftovers(out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in out.parent.glob(f".{out.name}*")]  # no temporary folder left behind


# ------------------------------------------------------------------ data on disk
def _garble_header(db: Path) -> str:
    (db / "101.hea").write_text("this is not a WFDB header\n\x00\x01\n")
    return "101.hea is corrupt"


def _truncate_dat(db: Path) -> str:
    dat = db / "101.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    return "truncated"


def _remove_record(db: Path) -> str:
    for ext in ("hea", "dat", "atr"):
        (db / f"101.{ext}").unlink()
    return "missing record(s) 101"


def _long_nan_gap(db: Path) -> str:
    x = synthetic_ecg(20, seed=5).astype(np.float64)
    x[1000:1400] = np.nan  # 1.1 s: longer than the 0.5 s that are interpolated
    write_wfdb(db, "101", np.stack([x, -0.5 * x], 1))
    return "a gap of 400 missing samples"


def _rename_leads(db: Path) -> str:
    for rec in ("100", "101"):
        x = synthetic_ecg(20)
        write_wfdb(db, rec, np.stack([x, x], 1), sig_name=("V2", "V5"))
    return "no record of ['100', '101'] has the lead(s) ['MLII']"


@pytest.mark.parametrize("damage", [_garble_header, _truncate_dat, _remove_record, _long_nan_gap, _rename_leads],
                         ids=["garbled_hea", "truncated_dat", "missing_record", "nan_gap", "lead_absent"])
def test_bad_records_give_one_line_and_no_store(damage, tiny_db, seed_tok, tmp_path, capsys):
    needle = damage(tiny_db / "mitdb")
    out = tmp_path / "store"
    rc, err = _tokenize(capsys, tiny_db, out, seed_tok)
    _assert_one_line_error(rc, err, needle)
    _no_leftovers(out)


def test_missing_data_folder(seed_tok, tmp_path, capsys):
    out = tmp_path / "store"
    rc, err = _tokenize(capsys, tmp_path / "nowhere", out, seed_tok)
    _assert_one_line_error(rc, err, str(tmp_path / "nowhere" / "mitdb"), "ECG2LLM_DATA")
    _no_leftovers(out)


def test_missing_atr_tokenizes_but_annotated_read_names_the_file(tiny_db, seed_tok, tmp_path, capsys):
    """Documented handling: tokenizing needs signals only; reading annotations names the missing file."""
    (tiny_db / "mitdb" / "101.atr").unlink()
    rc, _ = _tokenize(capsys, tiny_db, tmp_path / "store", seed_tok)
    assert rc == 0 and (tmp_path / "store" / "meta.json").is_file()
    from ecg2llm.tokenizer.data import read_record

    with pytest.raises(DataNotFoundError, match=r"annotation file .*101\.atr is missing"):
        read_record("101", tiny_db)


def test_other_sampling_rate_is_resampled(tmp_path, seed_tok, capsys):
    root = tmp_path / "data"
    write_wfdb(root / "mitdb", "100", np.stack([synthetic_ecg(20, fs=250.0)] * 2, 1), fs=250.0)
    rc, _ = _tokenize(capsys, root, tmp_path / "store", seed_tok, ("100",))
    assert rc == 0
    from ecg2llm.tokenizer.store import TokenStore

    e = TokenStore.open(tmp_path / "store").get("100")
    assert e.n_samples == 20 * 360  # counted at the tokenizer's 360 Hz, not the record's 250 Hz


def test_flat_line_record_tokenizes_to_a_flat_line(tmp_path, seed_tok, capsys):
    root = tmp_path / "data"
    write_wfdb(root / "mitdb", "100", np.zeros((3600, 2)) + 0.25)  # 10 s of a constant 0.25 mV
    rc, _ = _tokenize(capsys, root, tmp_path / "store", seed_tok, ("100",))
    assert rc == 0
    from ecg2llm.tokenizer.store import TokenStore

    s = TokenStore.open(tmp_path / "store")
    e = s.get("100")
    y = ECGTokenizer.from_pretrained(seed_tok).decode(np.asarray(s.tokens_of(e), np.int64), s.state_of(e))
    assert y.shape == (3600,) and np.allclose(y, 0.25, atol=0.01)


# ------------------------------------------------------------------ arrays given to a tokenizer
@pytest.fixture(scope="module", params=["seed", "v2", "v3"])
def tok(request, seed_tok) -> ECGTokenizer:
    return ECGTokenizer.from_pretrained(seed_tok if request.param == "seed" else request.param)


def test_flat_and_shorter_than_a_window(tok):
    for x in (np.zeros(5000), np.full(5000, -0.7), np.full(50, 0.3)):  # 50 samples < one window / receptive field
        ids, state = tok.encode(x, 360)
        y = tok.decode(ids, state)
        assert y.dtype == np.float32 and len(y) == len(x) and np.isfinite(y).all()
        assert np.abs(y - x).max() < 0.15, np.abs(y - x).max()  # a flat line stays flat at its level


def test_integer_input_equals_float_input(tok):
    x = (synthetic_ecg(5) * 200).astype(np.int16)
    assert np.array_equal(tok.encode(x, 360)[0], tok.encode(x.astype(np.float64), 360)[0])


def test_empty_arrays(tok):
    with pytest.raises(TokenizerError, match="empty signal"):
        tok.encode(np.zeros(0), 360)
    y = tok.decode(np.zeros(0, np.int64), {"window_min": np.zeros(0), "window_max": np.zeros(0), "n_samples": 0})
    assert y.shape == (0,) and y.dtype == np.float32  # documented: no ids decode to no samples


@pytest.mark.parametrize("bad", [[0, -1], "vocab", [[1, 2]], [0.5, 1.0]], ids=["negative", "past_end", "2d", "float"])
def test_decode_refuses_ids_outside_the_vocabulary(tok, bad):
    ids = np.array([1, tok.vocab_size]) if bad == "vocab" else np.array(bad)
    with pytest.raises(TokenizerError, match="outside the vocabulary|1-D|integers"):
        tok.decode(ids, None)


# ------------------------------------------------------------------ corrupt store given to lm/train.py
def _truncate(s: Path) -> str:
    with open(s / "tokens.bin", "r+b") as f:
        f.truncate(100)
    return "truncated"


def _bad_meta(s: Path) -> str:
    (s / "meta.json").write_text("{not json")
    return "meta.json is not valid JSON"


def _past_end(s: Path) -> str:
    idx = json.loads((s / "index.json").read_text())
    idx[0]["end"] = 10**9
    (s / "index.json").write_text(json.dumps(idx))
    return "past the end"


@pytest.mark.parametrize("corrupt", [_truncate, _bad_meta, _past_end], ids=["truncated", "bad_meta", "index_past_end"])
def test_lm_train_on_a_corrupt_store_is_one_line(corrupt, tiny_db, seed_tok, tmp_path, capsys):
    from ecg2llm.lm.train import main as train_main

    store = build_test_store(tmp_path / "store", seed_tok, tiny_db, ["100", "101"])
    needle = corrupt(store)
    rc = train_main(["--tokenizer", str(seed_tok), "--store", str(store), "--output_dir", str(tmp_path / "run"),
                     "--max_steps", "1", "--num_threads", "1", "--progress", "false"])
    _assert_one_line_error(rc, capsys.readouterr().err, needle, "rebuild")
    assert not (tmp_path / "run" / "final").exists()


# ------------------------------------------------------------------ output that cannot be written
def test_unwritable_output_folder(tiny_db, seed_tok, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc, err = _tokenize(capsys, tiny_db, blocker / "store", seed_tok)
    _assert_one_line_error(rc, err, "cannot write to output folder", str(blocker))


def test_disk_full_midway_keeps_the_previous_store(tiny_db, seed_tok, tmp_path, capsys, monkeypatch):
    out = tmp_path / "store"
    assert _tokenize(capsys, tiny_db, out, seed_tok)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    from ecg2llm.tokenizer import store as store_mod

    real_add, calls = store_mod.StoreWriter.add, []

    def add_then_fill_the_disk(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.folder / "tokens.bin"))
        return real_add(self, *a, **k)

    monkeypatch.setattr(store_mod.StoreWriter, "add", add_then_fill_the_disk)
    rc, err = _tokenize(capsys, tiny_db, out, seed_tok)
    _assert_one_line_error(rc, err, "No space left on device", "nothing was written")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p.name for p in tmp_path.glob(".store*")]


def test_disk_full_in_write_json_keeps_the_previous_file(tmp_path, monkeypatch):
    from ecg2llm.core import io

    target = io.write_json(tmp_path / "metrics.json", {"old": 1})
    monkeypatch.setattr(io.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(OSError):
        io.write_json(target, {"new": 2})
    assert json.loads(target.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
