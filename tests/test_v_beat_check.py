"""scripts/v_beat_check.py: the teacher-forced copy measure of V beats."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import v_beat_check  # noqa: E402

from ecg2llm.lm.beat_layout import N_PREFIX, BeatLayout  # noqa: E402

N_ID, V_ID, VOCAB = 20, 21, 24


class CopyLM(torch.nn.Module):
    """At every position, probability ``p`` on the id ``tpb`` tokens back (the previous beat's token), the rest
    spread evenly: a model whose copy probability is known."""

    def __init__(self, tpb: int, p: float):
        super().__init__()
        self.tpb, self.p = tpb, p

    def forward(self, input_ids):
        B, L = input_ids.shape
        prob = torch.full((B, L, VOCAB), (1 - self.p) / (VOCAB - 1))
        for t in range(L):
            # position t predicts t + 1, whose previous beat's token is at t + 1 - tpb
            src = t + 1 - self.tpb
            if src >= 0:
                prob[torch.arange(B), t, input_ids[:, src]] = self.p
        return SimpleNamespace(logits=prob.log())


def _seq(lay, labels, coarse):
    units = lay.units(np.array(labels), np.zeros(len(labels), np.int64), np.array(coarse))
    return torch.as_tensor(np.r_[np.full(1 + N_PREFIX, 23), units.reshape(-1)])


def test_copy_probability_splits_first_and_later_v_beats():
    lay = BeatLayout(n_rr=4, n_coarse=2, n_coarse_levels=3)
    blm = SimpleNamespace(layout=lay, model=CopyLM(lay.tokens_per_beat, 0.4))
    seqs = [_seq(lay, [N_ID, V_ID, N_ID, V_ID], [[0, 1], [0, 2], [1, 1], [2, 0]]),  # first V copies, later not
            _seq(lay, [N_ID, N_ID, V_ID], [[0, 0], [1, 1], [1, 2]])]  # first V copies
    got = v_beat_check.copy_probability(blm, seqs, V_ID, N_ID, batch=1)
    assert got["first"]["v_after_n"] == 2 and got["later"]["v_after_n"] == 1
    assert got["first"]["copied"] == 1.0 and got["later"]["copied"] == 0.0
    for k in ("first", "later"):
        assert abs(got[k]["model_copy_probability"] - 0.4) < 1e-5
    # batching pads shorter sequences after their end: the same numbers
    assert v_beat_check.copy_probability(blm, seqs, V_ID, N_ID, batch=2) == got
