"""Invariants of the finite scalar quantizer (tokenizer/fsq.py)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ecg2llm.tokenizer.fsq import FSQ

LEVEL_SETS = [[8, 6, 5], [8, 5, 5, 5], [8, 8, 8, 8], [4, 4, 4, 4, 4, 4], [2, 3], [7, 5, 5, 5, 5]]


@pytest.mark.parametrize("levels", LEVEL_SETS)
def test_indices_codes_bijective_over_whole_vocabulary(levels):
    q = FSQ(levels)
    assert q.vocab_size == math.prod(levels)
    idx = torch.arange(q.vocab_size)
    codes = q.indices_to_codes(idx)  # (V, d)
    assert codes.shape == (q.vocab_size, len(levels))
    assert torch.equal(q.codes_to_indices(codes), idx)
    assert len(torch.unique(codes, dim=0)) == q.vocab_size  # every index has its own code
    assert codes.min() >= -1 and codes.max() <= 1


@pytest.mark.parametrize("levels", LEVEL_SETS)
def test_forward_ids_in_vocabulary_and_consistent_with_codes(levels):
    q = FSQ(levels)
    z = torch.randn(4, 300, len(levels)) * 4  # wide spread reaches the extreme levels
    codes, ids = q(z)
    assert ids.shape == (4, 300) and ids.dtype == torch.int64
    assert ids.min() >= 0 and ids.max() < q.vocab_size
    assert torch.equal(q.indices_to_codes(ids), codes)
    # every channel uses exactly its number of levels on a wide input
    for ch, lv in enumerate(levels):
        assert len(torch.unique(codes[..., ch])) == lv


@settings(max_examples=50, deadline=None)
@given(levels=st.lists(st.integers(2, 9), min_size=1, max_size=5), data=st.data())
def test_roundtrip_property(levels, data):
    q = FSQ(levels)
    ids = torch.tensor(data.draw(st.lists(st.integers(0, q.vocab_size - 1), min_size=1, max_size=64)))
    assert torch.equal(q.codes_to_indices(q.indices_to_codes(ids)), ids)


def test_straight_through_gradient():
    q = FSQ([8, 5, 5, 5])
    z = (torch.randn(2, 10, 4) * 0.5).requires_grad_()
    codes, _ = q(z)
    codes.sum().backward()
    # d(codes)/dz is the derivative of the bounding tanh (rounding passes the gradient unchanged)
    assert z.grad is not None and (z.grad > 0).all()


def test_fp32_under_autocast():
    q = FSQ([8, 8, 8, 8])
    z = torch.randn(3, 50, 4) * 2
    ref_codes, ref_ids = q(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        codes, ids = q(z.to(torch.bfloat16).float())  # same values, inside an autocast region
        codes_bf, ids_bf = q(z.to(torch.bfloat16))  # bf16 input is upcast before rounding
    assert codes.dtype == torch.float32 and codes_bf.dtype == torch.float32
    assert torch.equal(ids, q.codes_to_indices(codes))
    assert torch.equal(ids_bf, q(z.to(torch.bfloat16).float())[1])
    assert torch.equal(q(z)[1], ref_ids) and torch.equal(q(z)[0], ref_codes)


def test_tables_are_not_saved():
    q = FSQ([8, 5, 5, 5])
    assert dict(q.state_dict()) == {}  # derived tables are persistent=False buffers


@pytest.mark.parametrize("bad", [[], [1, 4], [8, 0]])
def test_rejects_bad_levels(bad):
    with pytest.raises(ValueError, match="levels"):
        FSQ(bad)


def test_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="4 channels"):
        FSQ([8, 8, 8, 8])(torch.randn(2, 10, 3))
