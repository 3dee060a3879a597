"""Tokenizer v3 (issue 37): beats as words - layout, RR without drift, round trip, fallback, API errors."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_ecg

from ecg2llm.core.errors import TokenizerError
from ecg2llm.tokenizer.base import PRETRAINED_DIR, ECGTokenizer
from ecg2llm.tokenizer.beat_codec import ProductCode, RRScale, unwarp_cycles, viterbi_sticky, warp_cycles
from ecg2llm.tokenizer.beat_layout import BEAT, FALLBACK
from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer

FS = 360.0
HAS_V3 = (PRETRAINED_DIR / "v3" / "model.safetensors").is_file()
needs_v3 = pytest.mark.skipif(not HAS_V3, reason="tokenizer/pretrained/v3 not shipped")


@pytest.fixture(scope="module")
def tok() -> BeatTokenizer:
    if not HAS_V3:
        pytest.skip("tokenizer/pretrained/v3 not shipped")
    return BeatTokenizer.from_pretrained("v3")


# ----------------------------------------------------------------------------- pure parts
def test_rr_scale_resolution_and_range():
    s = RRScale(FS)
    c = s.centers
    assert c[0] == 0 and np.all(np.diff(c) > 0)
    assert c[-1] / FS <= 6.0 and c[-1] / FS > 5.97  # covers up to 6 s
    step = np.diff(c)  # samples between neighbouring tokens
    assert np.all(step[: 250] == 1)  # exact samples (2.8 ms) up to 0.69 s
    assert np.all(step <= 0.004 * c[1:] + 1)  # then 0.4 % (rounded to whole samples)
    rr = np.arange(1, int(6 * FS))
    err = np.abs(s.samples(s.quantize(rr)) - rr)
    assert np.all(err <= 0.002 * rr + 0.5)  # half a step
    assert s.size < 850


def test_rr_error_feedback_never_drifts():
    rng = np.random.default_rng(0)
    rr = rng.uniform(0.3, 1.9, 2400) * FS  # 30+ min of irregular beats
    r = np.cumsum(rr).round().astype(np.int64)
    toks, dec = RRScale(FS).encode_positions(r)
    assert np.abs(dec - r).max() <= 0.004 * 1.9 * FS / 2 + 1  # half a step at the longest RR, never growing
    assert np.array_equal(np.cumsum(RRScale(FS).samples(toks)), dec)


def test_warp_is_identity_on_nominal_cycles_and_inverts():
    x = np.random.default_rng(1).standard_normal(2000).astype(np.float32)
    start, r, end = np.array([10, 370]), np.array([100, 460]), np.array([370, 730])
    w = warp_cycles(x, start, r, end, 90, 270)
    assert np.allclose(w[0], x[10:370]) and np.allclose(w[1], x[370:730])
    y = unwarp_cycles(w, start, r, end, 90, 270, 2000)
    assert np.allclose(y[10:730], x[10:730]) and not y[:10].any() and not y[730:].any()
    # other lengths: a smooth signal survives the warp and its inverse
    s = np.sin(np.arange(2000) / 40).astype(np.float32)
    start, r, end = np.array([0, 500]), np.array([60, 700]), np.array([500, 900])
    y = unwarp_cycles(warp_cycles(s, start, r, end, 90, 270), start, r, end, 90, 270, 2000)
    inner = np.r_[0:498, 500:898]  # the last sample of a stretched cycle lies beyond its last warped sample
    assert np.abs(y[inner] - s[inner]).max() < 2e-3
    assert np.abs(y[:900] - s[:900]).max() < 0.025 * 440 / 270  # one warped step at the signal's slope


def test_sticky_codes_trade_changes_for_error_exactly():
    rng = np.random.default_rng(2)
    cost = rng.random((200, 3, 8)).astype(np.float32)
    brk = np.zeros(200, bool)
    assert np.array_equal(viterbi_sticky(cost, 0.0, brk), cost.argmin(2))  # no switch cost: nearest codes
    huge = viterbi_sticky(cost, 1e6, brk)
    assert np.all(huge == huge[0])  # an unaffordable switch: one code per chain
    brk[100] = True  # a chain break (after a fallback stretch) is free
    two = viterbi_sticky(cost, 1e6, brk)
    assert np.all(two[:100] == two[0]) and np.all(two[100:] == two[100])
    assert np.array_equal(two[100:], viterbi_sticky(cost[100:], 1e6, brk[100:]))
    # optimality against brute force on a short chain: cost + switch_cost * changes is minimal
    c = rng.random((5, 1, 3)).astype(np.float32)
    best = viterbi_sticky(c, 0.3)[:, 0]
    import itertools

    def total(seq):
        return sum(c[t, 0, k] for t, k in enumerate(seq)) + 0.3 * sum(a != b for a, b in zip(seq, seq[1:]))
    assert abs(total(best) - min(total(q) for q in itertools.product(range(3), repeat=5))) < 1e-5


def test_product_code_round_trip_of_codewords():
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.standard_normal((6, 6)))[0][:4]  # (P=4, D=6) orthonormal rows
    cb = rng.standard_normal((2, 5, 2)).astype(np.float32)
    pc = ProductCode(np.zeros(6), basis, [2, 2], cb)
    codes = rng.integers(0, 5, (10, 2))
    x = pc.decode(codes)
    assert np.array_equal(pc.encode(x), codes)  # a codeword encodes to itself
    assert np.array_equal(pc.encode_sticky(x, 0.0), codes)
    assert np.allclose(pc.costs(x)[np.arange(10)[:, None], np.arange(2), codes], 0, atol=1e-5)


# ----------------------------------------------------------------------------- the shipped tokenizer
@needs_v3
def test_loads_by_name_through_the_generic_loader(tok):
    t2 = ECGTokenizer.from_pretrained("v3")
    assert isinstance(t2, BeatTokenizer) and t2.fs == 360.0 and t2.weights_hash == tok.weights_hash
    L = tok.layout
    assert L.vocab_size == tok.vocab_size and L.tokens_per_beat == 1 + L.n_coarse + L.n_detail
    assert tok.describe()["layout"]["vocab_size"] == tok.vocab_size
    with pytest.raises(TokenizerError, match="not a beat"):
        BeatTokenizer.from_pretrained("v2")


@needs_v3
def test_encode_beats_fields_shapes_and_ranges(tok):
    x = synthetic_ecg(30.0, FS, hr_bpm=75)
    bt = tok.encode_beats(x, FS)
    L = tok.layout
    m = len(bt)
    assert bt.coarse.shape == (m, L.n_coarse) and bt.detail.shape == (m, L.n_detail)
    assert bt.fallback.shape == (m, L.n_fallback) and bt.kind.shape == (m,)
    b = bt.kind == BEAT
    assert 34 <= b.sum() <= 39  # 75 bpm over 30 s
    assert bt.coarse[b].min() >= 0 and bt.coarse[b].max() < L.coarse_size
    assert bt.detail[b].min() >= 0 and bt.detail[b].max() < L.detail_size
    assert np.all(bt.coarse[~b] == -1) and np.all(bt.rr[~b] == -1)
    assert bt.ids.dtype == np.int64 and bt.ids.min() >= 0 and bt.ids.max() < tok.vocab_size
    assert len(bt.ids) == b.sum() * L.tokens_per_beat + (~b).sum() * L.tokens_per_fallback
    # RR of a regular 75 bpm rhythm: 0.8 s
    assert np.allclose(tok.rr_seconds(bt.rr[b][1:]), 0.8, atol=0.01)
    # ids <-> fields are inverse; the unit timeline from the ids alone matches encode's
    back = tok.ids_to_beats(bt.ids)
    for k in ("kind", "rr", "coarse", "detail", "fallback", "r", "start", "end"):
        assert np.array_equal(getattr(back, k), getattr(bt, k)), k
    assert np.array_equal(tok.beats_to_ids(back), bt.ids)
    # cycles partition the signal: each unit starts where the last ended
    assert bt.start[0] == 0 and np.array_equal(bt.start[1:], bt.end[:-1]) and bt.end[-1] >= len(x)
    w = tok.decode_coarse(bt.coarse[b])
    assert w.shape == (b.sum(), tok.window) and w.dtype == np.float32


@needs_v3
def test_round_trip_decode_paths_agree(tok):
    x = synthetic_ecg(20.0, FS, hr_bpm=64) + 3.0  # a DC offset goes to the baseline
    bt = tok.encode_beats(x, FS)
    ids, state = tok.encode(x, FS)
    assert np.array_equal(ids, bt.ids)
    full = tok.decode(ids, state)
    assert full.shape == x.shape and full.dtype == np.float32
    assert np.array_equal(full, tok.decode_beats(bt, bt.state))
    band = tok.decode(ids)  # ids alone: the band, no offset
    assert len(band) >= len(x) and abs(float(np.median(band))) < 0.1
    err = 1000 * np.sqrt(np.mean((full - x) ** 2))
    assert err < 15.0  # µV, on a synthetic ECG the codes were not fitted on (measured 12.4)
    coarse = tok.decode(ids, state, coarse_only=True)
    assert 1000 * np.sqrt(np.mean((coarse - x) ** 2)) > err  # detail adds information


@needs_v3
def test_real_record_round_trip_and_no_drift(tok, data_dir):
    from ecg2llm.tokenizer.data import read_record

    rd = read_record("100", data_dir, fs=FS)  # DS2, the whole 30 min
    x = rd.signal
    ann, _ = rd.annotations.beats()
    bt = tok.encode_beats(x, FS, r_peaks=ann)
    b = bt.kind == BEAT
    assert np.abs(bt.r[b] - np.unique(ann)).max() <= 2  # <= 5.6 ms everywhere over 30 min
    y = tok.decode_beats(bt, bt.state)
    rmse = 1000 * np.sqrt(np.mean((y - x) ** 2))
    assert rmse < 13.0  # µV, whole signal incl. baseline (measured 11.0)
    det = tok.encode_beats(x, FS)
    assert abs(det.n_beats - len(ann)) < 0.01 * len(ann)


@needs_v3
@pytest.mark.parametrize("case", ["flat", "noise", "short"])
def test_fallback_on_signals_without_beats(tok, case):
    rng = np.random.default_rng(3)
    x = {"flat": np.full(3600, 0.7, np.float32), "noise": 0.3 * rng.standard_normal(3600).astype(np.float32),
         "short": np.zeros(100, np.float32)}[case]
    bt = tok.encode_beats(x, FS)
    y = tok.decode_beats(bt, bt.state)
    assert y.shape == x.shape and np.isfinite(y).all()
    assert np.all(bt.kind == FALLBACK)
    if case != "noise":
        assert np.abs(y - x).max() < 0.02  # mV (measured 0.018: the fallback code's mean, 2 µV baseline steps)
    else:  # white noise has no beat shape: the fallback code keeps its low band only (documented bound)
        assert 1000 * np.sqrt(np.mean((y - x) ** 2)) < 280.0  # of 300 µV (measured 259)


@needs_v3
def test_other_sampling_rates(tok):
    from ecg2llm.tokenizer.data import resample

    x = synthetic_ecg(12.0, FS, hr_bpm=80)
    for fs in (250.0, 500.0, 1000.0):
        xs = resample(x, FS, fs).astype(np.float32)
        ids, state = tok.encode(xs, fs)
        y = tok.decode(ids, state)
        assert len(y) == len(resample(xs, fs, FS))


@needs_v3
def test_bad_inputs_raise_clear_errors(tok):
    with pytest.raises(TokenizerError, match="1-D"):
        tok.encode_beats(np.zeros((10, 2)), FS)
    with pytest.raises(TokenizerError, match="NaN"):
        tok.encode_beats(np.array([0.0, np.nan] * 500), FS)
    with pytest.raises(TokenizerError, match="fs"):
        tok.encode_beats(np.zeros(1000), -1)
    with pytest.raises(TokenizerError, match="r_peaks"):
        tok.encode_beats(np.zeros(1000), FS, r_peaks=[5000])
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    c = tok.layout.coarse_offset
    with pytest.raises(TokenizerError, match="starts a unit"):
        tok.decode([c, c])  # a coarse token cannot start a unit
    with pytest.raises(TokenizerError, match="not a valid"):
        tok.decode([5, 5, 5] + [c] * 30)  # RR then RR: wrong type inside a beat unit
    ids = tok.encode(synthetic_ecg(5.0, FS), FS)[0]
    assert len(tok.decode(ids[:-3])) > 0  # an incomplete last unit is dropped, not an error
    with pytest.raises(TokenizerError, match="ends inside"):
        tok.ids_to_beats(ids[:-3], partial="error")
    with pytest.raises(TokenizerError, match="baseline knots"):
        tok.decode(ids, {"n_samples": 1800, "baseline": np.zeros(3)})
