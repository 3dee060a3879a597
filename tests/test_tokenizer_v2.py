"""Tokenizer v2 (issue 16): baseline split, band decode, offset/wander invariance, texture, CinC 2017, v1."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecg2llm.core.errors import DataNotFoundError, TokenizerError
from ecg2llm.tokenizer.base import PRETRAINED_DIR, ECGTokenizer
from ecg2llm.tokenizer.baseline import (
    band_filter,
    baseline_bits_per_second,
    estimate_knots,
    interpolate_knots,
    split_baseline,
    wander,
)
from ecg2llm.tokenizer.fsq2_tokenizer import FSQ2Tokenizer, FSQ2TokenizerConfig

FS = 360.0
CARD = json.loads((PRETRAINED_DIR / "v2" / "card.json").read_text())


# ----------------------------------------------------------------------------- baseline method
def test_knots_ignore_qrs_spikes_and_follow_offset():
    t = np.arange(int(20 * FS))
    x = np.full(len(t), 7.5)
    x[(t % 300) < 30] += 2.0  # 1.2 beats/s, 83 ms "QRS" of 2 mV: the median must not move
    knots = estimate_knots(torch.from_numpy(x)[None], 180, 0.002)[0].numpy()
    assert np.allclose(knots, 7.5, atol=0.002)


def test_knots_are_quantized_and_interpolation_hits_them():
    x = torch.from_numpy(wander(3600, FS, 2.0, 0.3) + 0.123456)[None]
    band, knots = split_baseline(x, 180, 0.002)
    q = knots / 0.002
    assert torch.allclose(q, q.round(), atol=1e-3)
    base = interpolate_knots(knots, 180, 3600)
    assert torch.allclose(base[0, 90::180], knots[0], atol=1e-6)  # knot k sits at k * hop + hop // 2
    assert torch.allclose(band + base, x, atol=1e-5)
    # A pure 0.3 Hz, 2 mV wander goes mostly to the baseline: the 1-s median trims its peaks, so up to
    # 0.32 mV of slow wander stays in the band away from the ends (measured); the tokens carry it.
    assert float(band[0, 360:-360].abs().max()) < 0.35


def test_baseline_bits_per_second():
    r = baseline_bits_per_second(np.arange(100) * 0.002, FS, 180, 0.002)
    assert r["baseline_raw_bits_per_second"] == 32.0
    assert r["baseline_entropy_bits_per_knot"] == 0.0  # constant differences: zero entropy


# ----------------------------------------------------------------------------- the type itself
def test_untrained_fsq2_roundtrip_shapes_and_band_identity():
    tok = FSQ2Tokenizer(FSQ2TokenizerConfig(channels=8, dec_channels=8, enc_dilations=[1], dec_dilations=[1]))
    x = (np.sin(np.arange(4005) / 30) + 12.0).astype(np.float32)
    ids, st = tok.encode(x, FS)
    assert len(ids) == 401 and st["n_samples"] == 4005 and len(st["baseline"]) == 23
    band, full = tok.decode(ids), tok.decode(ids, st)
    assert len(band) == 4010 and len(full) == 4005
    base = interpolate_knots(torch.from_numpy(st["baseline"])[None], tok.hop, 4005)[0].numpy()
    assert np.allclose(band[:4005] + base, full, atol=1e-5)
    with pytest.raises(TokenizerError, match="texture"):
        tok.decode(ids, texture=True, seed=0)  # no fitted texture model
    with pytest.raises(TokenizerError, match="baseline knots"):
        tok.decode(ids, {"n_samples": 4005, "baseline": st["baseline"][:-1]})
    with pytest.raises(TokenizerError, match="mV"):
        tok.encode(x * 1000, FS)  # 12 V of offset: not millivolts


# ----------------------------------------------------------------------------- the shipped default
@pytest.fixture(scope="module")
def v2():
    tok = ECGTokenizer.from_pretrained("v2")
    assert isinstance(tok, FSQ2Tokenizer)
    return tok


@pytest.fixture(scope="module")
def rec100(data_dir):
    from ecg2llm.tokenizer.data import read_record

    return read_record("100", data_dir, annotations=False).signal[: int(60 * FS)]


def _band_rmse(tok, x, **kw):
    ids, st = tok.encode(x, FS)
    y = tok.decode(ids, st, **kw)
    return 1000 * np.sqrt(np.mean((band_filter(x, FS) - band_filter(y, FS)) ** 2))


def test_default_is_v2_at_36_tokens_per_second(v2):
    assert v2.tokens_per_second == pytest.approx(36.0) and v2.vocab_size <= 4096
    assert v2.has_texture and not v2.needs_state
    d = v2.describe()
    assert d["baseline_raw_bits_per_second"] == 32.0


# Band RMSE ratio to the clean signal's on record 100's first minute, measured with the refined baseline
# estimator (3 passes): DC +-50 mV 0.99-1.00, ramp 0.99, 1 mV / 2 mV 0.2 Hz 1.03, 2 mV 0.3 Hz 1.06 (all
# within the 1.1x); 2 mV at 0.5 Hz 1.16-1.17 is NOT on this minute (DS2 as a whole: 1.09x; the
# one-pass estimator: 1.50): bounded just above what they measure, so a regression still fails.
@pytest.mark.parametrize("dc,amp,freq,ramp,bound", [
    (50.0, 0.0, 0.0, 0.0, 1.1), (-50.0, 0.0, 0.0, 0.0, 1.1), (-25.0, 0.0, 0.0, 2.0, 1.1),
    (10.0, 1.0, 0.2, 0.0, 1.1), (50.0, 2.0, 0.2, 0.0, 1.1), (-50.0, 2.0, 0.2, 2.0, 1.1),
    (50.0, 2.0, 0.3, 0.0, 1.1), (50.0, 2.0, 0.5, 0.0, 1.22), (-50.0, 2.0, 0.5, 2.0, 1.22),
])
def test_offset_ramp_wander_leave_band_error_near_clean(v2, rec100, dc, amp, freq, ramp, bound):
    clean = _band_rmse(v2, rec100)
    n = len(rec100)
    x = rec100 + dc + wander(n, FS, amp, freq, 0.7) + ramp * np.linspace(-0.5, 0.5, n)
    assert _band_rmse(v2, x.astype(np.float32)) <= bound * clean


def test_decode_without_state_is_the_band_in_mv(v2, rec100):
    ids, st = v2.encode(rec100 + 30.0, FS)  # 30 mV offset: none of it may reach the band
    band = v2.decode(ids)[: len(rec100)]
    assert abs(float(np.median(band))) < 0.1
    err = 1000 * np.sqrt(np.mean((band_filter(band, FS) - band_filter(rec100, FS)) ** 2))
    assert err <= CARD["excerpt_band_bound_rmse_uv"]


def test_default_band_error_on_ds2_excerpt_within_stated_bound(v2, data_dir):
    from ecg2llm.tokenizer.evaluation import load_signals
    from ecg2llm.tokenizer.robustness import band_errors

    sigs = load_signals(CARD["excerpt_records"], data_dir, seconds=60)
    assert band_errors(v2, sigs)["rmse_uv"] <= CARD["excerpt_band_bound_rmse_uv"]


def test_texture_is_seeded_and_close_to_the_decode(v2, rec100):
    ids, st = v2.encode(rec100, FS)
    a = v2.decode(ids, st, texture=True, seed=1)
    b = v2.decode(ids, st, texture=True, seed=1)
    c = v2.decode(ids, st, texture=True, seed=2)
    det = v2.decode(ids, st)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a, det) and len(a) == len(det)
    # record 100's first minute: 1.49 (seed 1; 1.18-1.49 over seeds 1-3); all of DS2: 1.16; issue goal 1.6
    assert _band_rmse(v2, rec100, texture=True, seed=1) <= 1.6 * _band_rmse(v2, rec100)


def test_default_has_no_seam_at_window_edges(v2, rec100):
    import dataclasses

    ids, st = v2.encode(rec100, FS)
    small = FSQ2Tokenizer(dataclasses.replace(v2.config, chunk_tokens=100))
    small.model.load_state_dict(v2.model.state_dict())
    small.model.eval()
    assert np.array_equal(small.encode(rec100, FS)[0], ids)
    assert np.abs(small.decode(ids, st) - v2.decode(ids, st)).max() <= 1e-4


# ----------------------------------------------------------------------------- v1 and the LMs
def test_v1_still_loads_with_its_recorded_hash():
    from ecg2llm.tokenizer.fsq_tokenizer import FSQTokenizer

    v1 = ECGTokenizer.from_pretrained("v1")
    assert isinstance(v1, FSQTokenizer)
    assert json.loads((PRETRAINED_DIR / "v1" / "config.json").read_text())["weights_hash"] == v1.weights_hash


def test_shipped_lms_carry_the_tokenizer_they_were_trained_on():
    from ecg2llm.lm.model import PRETRAINED_DIR as LM_DIR

    want = {"v2": "v2", "v2-conditional": "v2"}  # the tokenizer-v1 LMs: git tag v1-models
    for name, tok_name in want.items():
        folder = LM_DIR / name / "tokenizer"
        if not folder.is_dir():
            pytest.skip(f"no shipped LM {name}")
        tok = ECGTokenizer.from_pretrained(folder)
        assert tok.weights_hash == ECGTokenizer.from_pretrained(tok_name).weights_hash, name
        other = "v1" if tok_name == "v2" else "v2"
        assert tok.weights_hash != ECGTokenizer.from_pretrained(other).weights_hash, name


# ----------------------------------------------------------------------------- CinC 2017
def test_cinc2017_reader(data_dir):
    from ecg2llm.tokenizer.cinc2017 import cinc2017_labels, cinc2017_records, read_cinc2017

    try:
        recs = cinc2017_records(data_dir)
    except DataNotFoundError:
        pytest.skip("CinC 2017 not in the data folder")
    assert len(recs) == 8528 and recs[0] == "A00001"
    x = read_cinc2017("A00001", data_dir)
    assert x.dtype == np.float32 and len(x) == 9000 and 0.3 < np.ptp(x) < 10  # 30 s at 300 Hz, in mV
    assert len(read_cinc2017("A00001", data_dir, fs=360)) == 10800
    labels = cinc2017_labels(data_dir)
    assert labels["A00001"] == "N" and set(labels.values()) <= {"N", "A", "O", "~"}


def test_cinc2017_missing_says_where_to_get_it(tmp_path):
    from ecg2llm.tokenizer.cinc2017 import read_cinc2017

    with pytest.raises(DataNotFoundError, match="challenge-2017"):
        read_cinc2017("A00001", tmp_path)


@pytest.mark.parametrize("iterations,method,thr", [(1, "linear", 0.0), (3, "linear", 0.05), (3, "cubic", 0.0),
                                                    (2, "cubic", 0.05)])
def test_numpy_inference_path_matches_the_training_path(iterations, method, thr):
    from ecg2llm.tokenizer.baseline import estimate_knots_np, interpolate_knots_np

    rng = np.random.default_rng(0)
    for t in (5, 180, 181, 36001):
        x = (rng.standard_normal(t) + np.linspace(0, 5, t) + wander(t, FS, 2.0, 0.5)).astype(np.float32)
        k_t = estimate_knots(torch.from_numpy(x)[None], 180, 0.002, iterations, method, thr)[0].numpy()
        k_n = estimate_knots_np(x, 180, 0.002, iterations, method, thr)
        assert np.abs(k_t - k_n).max() <= (0 if iterations == 1 else 0.0021)  # one 2 µV step at most
        i_t = interpolate_knots(torch.from_numpy(k_n)[None], 180, t, method)[0].numpy()
        assert np.abs(i_t - interpolate_knots_np(k_n, 180, t, method)).max() < 1e-5


def test_linear_interpolation_is_np_interp_bit_for_bit():
    from ecg2llm.tokenizer.baseline import interpolate_knots_np

    rng = np.random.default_rng(1)
    for hop, n in ((180, 1), (180, 90), (180, 91), (180, 36001), (7, 1000), (2, 9)):
        k = (np.round(rng.standard_normal(-(-n // hop)) * 500) * 0.002).astype(np.float32)
        ref = np.interp(np.arange(n), np.arange(len(k)) * hop + hop // 2, k.astype(np.float64)).astype(np.float32)
        assert np.array_equal(interpolate_knots_np(k, hop, n), ref)


def test_refined_baseline_follows_fast_wander_better():
    from ecg2llm.tokenizer.baseline import estimate_knots_np, interpolate_knots_np

    t = 36000
    w = wander(t, FS, 2.0, 0.5, 0.7).astype(np.float32)
    errs = {}
    for it, m in ((1, "linear"), (3, "linear"), (3, "cubic")):
        b = interpolate_knots_np(estimate_knots_np(w, 180, 0.002, it, m, 0.02), 180, t, m)
        errs[(it, m)] = float(np.sqrt(np.mean((b - w)[360:-360] ** 2)))
    assert errs[(3, "linear")] < 0.6 * errs[(1, "linear")] and errs[(3, "cubic")] < errs[(3, "linear")]


# sha256 of the one-pass knots (float32, little-endian) of DS2 records' first minute, from the estimator the
# shipped weights were trained with (commit 368e30a): baseline_iterations=1 must reproduce them exactly.
ONE_PASS_KNOTS_SHA = {"100": "976bc4570c190f35f6ceb74a2f8a5f3f10aacd59812da90d07e0307cfa974207",
                      "213": "4aed09d9607f6c8226857be16421706e079f2de3b06dc430bc4e49ba8cd4490a"}


def test_one_pass_estimator_is_the_trained_with_one_and_refinement_changes_few_tokens(v2, data_dir):
    import copy
    import hashlib

    from ecg2llm.tokenizer.data import read_record

    one = copy.deepcopy(v2)
    one.config.baseline_iterations = 1
    changed, total = 0, 0
    for r, sha in ONE_PASS_KNOTS_SHA.items():
        x = read_record(r, data_dir, lead="MLII", fs=FS, annotations=False).signal[: int(60 * FS)]
        ids1, st1 = one.encode(x, FS)
        assert hashlib.sha256(st1["baseline"].astype("<f4").tobytes()).hexdigest() == sha
        ids3, _ = v2.encode(x, FS)
        changed, total = changed + int((ids1 != ids3).sum()), total + len(ids1)
    assert changed / total < 0.02  # DS2 whole: 0.65 % of the ids differ (docs/tokenizer.md)


def test_local_re_measurement_equals_re_measuring_every_window():
    from ecg2llm.tokenizer.baseline import _median_knots_np, estimate_knots_np, interpolate_knots_np

    def full(x, iterations, method, thr):  # every window re-measured in every pass
        k = _median_knots_np(x, 180)
        for _ in range(iterations - 1):
            c = _median_knots_np(x - interpolate_knots_np(k, 180, len(x), method), 180)
            k = k + np.where(np.abs(c) > np.float32(thr), c, np.float32(0))
        return (np.round(k / np.float32(0.002)) * np.float32(0.002)).astype(np.float32)

    rng = np.random.default_rng(3)
    t = 72000
    for amp, freq in ((2.0, 0.5), (1.0, 0.3), (0.05, 0.2)):
        x = (0.1 * rng.standard_normal(t) + wander(t, FS, amp, freq, 0.4) - 50).astype(np.float32)
        x[30000:30400] += 3.0  # a baseline jump
        for it, m in ((3, "linear"), (4, "cubic"), (5, "linear")):
            assert np.array_equal(estimate_knots_np(x, 180, 0.002, it, m, 0.1), full(x, it, m, 0.1))
