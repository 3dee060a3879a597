"""Data layer: reading leads by name in mV, resampling, annotations, and specific errors on bad input."""
import os
import shutil

import numpy as np
import pytest

from ecg2llm.core.errors import DataNotFoundError, RecordError
from ecg2llm.tokenizer.data import ENV_VAR, ensure_database, fill_nan_gaps, read_record, resolve_data_dir
from ecg2llm.tokenizer.ecg import AAMI_CLASSES


def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv(ENV_VAR)
    assert resolve_data_dir(None).name == "ecg2llm"


def test_reads_lead_by_name_not_position(tiny_db):
    a = read_record("100", tiny_db, lead="MLII")
    b = read_record("114", tiny_db, lead="MLII")  # stored second, as in MIT-BIH record 114
    assert a.lead == b.lead == "MLII" and a.fs == 360.0
    assert a.signal.dtype == np.float32 and a.signal.ndim == 1
    # MLII of the synthetic records has a +1.2 mV R wave; V1 was written as -0.5 x MLII
    assert a.signal.max() > 0.8 and b.signal.max() > 0.8


def test_real_record_114_mlii(data_dir):
    rec = read_record("114", data_dir)
    assert rec.lead == "MLII" and len(rec.signal) == 650000 and rec.fs == 360.0
    assert abs(float(np.median(rec.signal))) < 1.0  # physical mV, ADC baseline removed
    beats, symbols = rec.annotations.beats()
    assert len(beats) > 1000 and set(symbols) <= set("NLRBAaJSVrFejnE/fQ?")
    _, rhythms = rec.annotations.rhythms()
    assert "(N" in rhythms and all("\x00" not in r for r in rhythms)


def test_resampling_scales_length_and_annotations(tiny_db):
    a = read_record("100", tiny_db)
    b = read_record("100", tiny_db, fs=250)
    assert b.fs == 250 and abs(len(b.signal) - len(a.signal) * 250 / 360) <= 1
    ratio = b.annotations.sample / np.maximum(a.annotations.sample, 1)
    assert np.allclose(ratio[a.annotations.sample > 100], 250 / 360, atol=0.01)
    # the R-peak amplitude survives resampling (within 15 %: narrow QRS, 250 Hz)
    assert abs(b.signal.max() - a.signal.max()) < 0.15 * a.signal.max()


def test_missing_folder_names_env_var_and_layout(tmp_path):
    with pytest.raises(DataNotFoundError, match=ENV_VAR) as e:
        read_record("100", tmp_path / "nowhere")
    assert "mitdb" in str(e.value)


def test_incomplete_database_lists_missing_records(tiny_db):
    with pytest.raises(DataNotFoundError) as e:
        ensure_database(tiny_db, records=["100", "101", "203"], download=False)
    assert "203" in str(e.value) and ENV_VAR in str(e.value) and "100" not in str(e.value).split("missing")[1][:10]


def test_missing_record(tiny_db):
    with pytest.raises(DataNotFoundError, match="'999'"):
        read_record("999", tiny_db)


def test_missing_lead_lists_available(tiny_db):
    with pytest.raises(RecordError, match=r"no lead 'V5'.*MLII"):
        read_record("100", tiny_db, lead="V5")


def test_corrupt_header(tiny_db):
    (tiny_db / "mitdb" / "101.hea").write_text("this is not a header\n\x00\x01")
    with pytest.raises(RecordError, match="header .* corrupt"):
        read_record("101", tiny_db)


def test_truncated_dat(tiny_db):
    dat = tiny_db / "mitdb" / "101.dat"
    with open(dat, "r+b") as f:
        f.truncate(os.path.getsize(dat) // 3)
    with pytest.raises(RecordError, match="truncated"):
        read_record("101", tiny_db)


def test_missing_annotation_file(tiny_db):
    (tiny_db / "mitdb" / "101.atr").unlink()
    with pytest.raises(DataNotFoundError, match="annotation"):
        read_record("101", tiny_db)
    assert read_record("101", tiny_db, annotations=False).annotations is None


def test_nan_policy_interpolates_short_gaps_and_refuses_long_ones():
    x = np.sin(np.linspace(0, 20, 3600))
    y = x.copy()
    y[100:110] = np.nan
    filled = fill_nan_gaps(y, 360.0, max_gap_s=0.5)
    assert np.isfinite(filled).all() and np.abs(filled[100:110] - x[100:110]).max() < 0.01
    y[1000:1400] = np.nan  # 1.1 s
    with pytest.raises(RecordError, match=r"gap of 400 missing samples .* starts at sample 1000"):
        fill_nan_gaps(y, 360.0, max_gap_s=0.5, where="record 'x'")


def test_aami_mapping_matches_seed_notes():
    assert {s for s, c in AAMI_CLASSES.items() if c == "N"} == set("NLRej")
    assert {s for s, c in AAMI_CLASSES.items() if c == "S"} == set("AaJS")
    assert {s for s, c in AAMI_CLASSES.items() if c == "V"} == set("VE")
    assert {s for s, c in AAMI_CLASSES.items() if c == "Q"} == set("/fQ")


def test_data_dir_pointing_at_mitdb_itself_is_accepted(tiny_db):
    assert resolve_data_dir(tiny_db / "mitdb") == tiny_db
    shutil.rmtree(tiny_db / "mitdb")
