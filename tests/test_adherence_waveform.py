"""The waveform adherence rules (eval/scorecard/adherence.py) on beat-class strings: VT needs fast and ventricular
beats."""

import pytest

from ecg2llm.eval.scorecard.adherence import RULES, adherence_rows, meets


def test_vt_needs_rate_and_ventricular_run():
    assert meets("VT", "NVVVVN", 150.0)
    assert not meets("VT", "NNNNNNNN", 150.0)  # a sinus tachycardia is fast, not VT
    assert not meets("VT", "VVVVV", 80.0)      # an idioventricular run below 100 bpm is not VT
    assert not meets("VT", "NVVNVVN", float("nan"))


def test_bigeminy_and_trigeminy_patterns():
    assert meets("B", "NVNVN", 70.0) and meets("B", "VNVN", 70.0)
    assert not meets("B", "NNVNNV", 70.0) and not meets("B", "NVN", 70.0)
    assert meets("T", "NNVNNV", 70.0) and not meets("T", "NVNVNV", 70.0) and not meets("T", "NNNNNN", 70.0)
    with pytest.raises(ValueError, match="no waveform rule"):
        meets("AFIB", "NNN", 70.0)


def test_unrecognised_real_rhythm_is_not_measurable_not_met():
    import numpy as np

    from ecg2llm.eval.data import WindowSet

    class Never:  # a classifier that never sees V: real windows of VT never meet the rule
        def predict(self, beats):
            return np.zeros(len(beats), int)

    ws = WindowSet(x=np.zeros((2, 3600), np.float32), fs=360.0, names=["a", "b"], source="t")
    rows = adherence_rows(Never(), {"rhythm:VT": ws}, {"VT": {"share": 0.1, "measurable": False}})
    assert rows[0]["verdict"] == "not measurable" and set(RULES) == {"VT", "B", "T"}
