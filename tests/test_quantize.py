"""The seed's uniform quantizer: exact formulas, edges, clamping, bin centres, straight-through gradient."""
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ecg2llm.tokenizer.quantize import UniformQuantizer

floats = st.floats(min_value=-50, max_value=50, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(x=floats)
def test_formula_matches_report(x):
    q = UniformQuantizer(256, -5.0, 5.0)
    bw = 10.0 / 256
    expected = int(np.clip(np.floor((np.float32(x) - np.float32(-5.0)) / np.float32(bw)), 0, 255))
    got = int(q.quantize(torch.tensor([x], dtype=torch.float32))[0])
    assert got == expected and 0 <= got < 256


@settings(max_examples=200, deadline=None)
@given(x=st.floats(min_value=-4.989999771118164, max_value=4.989999771118164, allow_nan=False, width=32))
def test_in_range_error_is_at_most_half_a_bin(x):
    q = UniformQuantizer(256, -5.0, 5.0)
    t = torch.tensor([x])
    err = float((q.dequantize(q.quantize(t)) - t).abs()[0])
    assert err <= q.bin_width / 2 + 1e-5


def test_edges_clamp_and_centres():
    q = UniformQuantizer(256, -5.0, 5.0)
    x = torch.tensor([-100.0, -5.0, -5.0 + 1e-6, 0.0, 5.0 - 1e-4, 5.0, 100.0])
    assert q.quantize(x).tolist() == [0, 0, 0, 128, 255, 255, 255]
    centres = q.dequantize(torch.arange(256))
    assert torch.allclose(centres[0], torch.tensor(-5.0 + 10 / 512))
    assert torch.allclose(centres.diff(), torch.full((255,), 10 / 256), atol=1e-5)
    assert torch.equal(q.quantize(centres), torch.arange(256))  # centres are fixed points


def test_straight_through_gradient_and_no_parameters():
    q = UniformQuantizer(256, -5.0, 5.0)
    assert sum(p.numel() for p in q.parameters()) == 0
    x = torch.linspace(-3, 3, 11, requires_grad=True)
    y, idx = q(x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x)) and idx.dtype == torch.int64


def test_quantizes_in_fp32_under_autocast():
    q = UniformQuantizer(256, -5.0, 5.0)
    x = torch.linspace(-4, 4, 1001)
    ref = q.quantize(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = q.quantize(x.to(torch.bfloat16).float())
    assert (got - ref).abs().max() <= 1  # only the bf16 rounding of the input itself may move a bin
