"""Inter-patient split: DS1/DS2 disjoint by record, paced records excluded, validation = whole DS1 records."""
import pytest

from ecg2llm.core.errors import ConfigError
from ecg2llm.tokenizer.data import MITDB_RECORDS
from ecg2llm.tokenizer.splits import DS1, DS2, PACED, inter_patient_split, intra_record_split


def test_ds1_ds2_paced_partition_mitdb():
    assert len(DS1) == len(DS2) == 22 and len(PACED) == 4
    assert not set(DS1) & set(DS2) and not (set(DS1) | set(DS2)) & set(PACED)
    assert set(DS1) | set(DS2) | set(PACED) == set(MITDB_RECORDS)


def test_validation_is_whole_ds1_records():
    sp = inter_patient_split(["101", "203"])
    assert set(sp.valid) == {"101", "203"} and not set(sp.valid) & set(sp.train)
    assert set(sp.train) | set(sp.valid) == set(DS1) and sp.test == DS2
    assert sp.of("102") == "excluded" and sp.of("100") == "test" and sp.of("101") == "valid"


def test_validation_from_ds2_is_refused():
    with pytest.raises(ConfigError, match="DS1"):
        inter_patient_split(["100"])


def test_intra_record_split_is_ordered_and_disjoint():
    tr, te = intra_record_split(100, 0.8)
    assert len(tr) == 80 and len(te) == 20 and tr.max() < te.min()
