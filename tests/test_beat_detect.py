"""Tokenizer v3's fast paths give the bits of the plain ones: the R-peak detector against neurokit2, the
sticky Viterbi against a step-by-step one, the chunked codeword search against the one-shot product."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_ecg

from ecg2llm.tokenizer.beat_codec import ProductCode, viterbi_sticky
from ecg2llm.tokenizer.beat_detect import most_prominent_peaks, neurokit_peaks

FS = 360.0


def _nk(x: np.ndarray, fs: float) -> np.ndarray:
    import neurokit2 as nk

    return np.asarray(nk.ecg_findpeaks(x, sampling_rate=int(fs), method="neurokit")["ECG_R_Peaks"], np.int64)


@pytest.mark.parametrize("variant", ["clean", "noisy", "quantized", "short_segments"])
def test_neurokit_peaks_are_neurokit2s(variant):
    rng = np.random.default_rng(0)
    x = synthetic_ecg(60.0, FS, hr_bpm=85, seed=1).astype(np.float64)
    if variant == "noisy":
        x = x + 0.08 * rng.standard_normal(len(x))
    elif variant == "quantized":  # ADC steps: plateaus (runs of equal samples) everywhere
        x = np.round(x * 40) / 40
    elif variant == "short_segments":  # spikes give QRS segments of a few samples
        x = x + (rng.random(len(x)) < 0.01) * rng.standard_normal(len(x))
    assert np.array_equal(neurokit_peaks(x, int(FS)), _nk(x, FS))


def test_neurokit_peaks_on_real_records(data_dir):
    from ecg2llm.tokenizer.data import read_record

    for rec, lead in (("106", "MLII"), ("207", "MLII"), ("203", "V1")):
        x = read_record(rec, data_dir, lead=lead, fs=FS, annotations=False).signal[: int(300 * FS)]
        x = (x - np.median(x)).astype(np.float64)
        assert np.array_equal(neurokit_peaks(x, int(FS)), _nk(x, FS)), (rec, lead)


def test_most_prominent_peaks_matches_find_peaks_segment_by_segment():
    from scipy.signal import find_peaks

    rng = np.random.default_rng(5)
    x = np.round(rng.standard_normal(5000).cumsum() * 3) / 3  # a walk with many plateaus
    beg = np.sort(rng.choice(np.arange(0, 4800, 60), 60, replace=False))
    end = beg + rng.integers(1, 59, len(beg))
    end[::7] = beg[::7] + 300  # some long segments (the one-at-a-time path)
    ok = end[:-1] <= beg[1:]
    beg, end = beg[:-1][ok], end[:-1][ok]
    got = most_prominent_peaks(x, beg, end, width=128)
    for b, e, g in zip(beg, end, got):
        p, props = find_peaks(x[b:e], prominence=(None, None))
        assert g == (b + p[np.argmax(props["prominences"])] if len(p) else -1)


def _viterbi_reference(cost, switch_cost, breaks=None):
    """The step-by-step Viterbi the shipped v3 was encoded with."""
    n, g, L = cost.shape
    dp = cost[0].astype(np.float64)
    back = np.empty((n, g, L), np.int32)
    stay_idx = np.broadcast_to(np.arange(L, dtype=np.int32), (g, L))
    rows = np.arange(g)
    for t in range(1, n):
        best = dp.argmin(1)
        sw = dp[rows, best][:, None] + (0.0 if breaks is not None and breaks[t] else switch_cost)
        stay = dp <= sw
        back[t] = np.where(stay, stay_idx, best[:, None])
        dp = cost[t] + np.where(stay, dp, sw)
    out = np.empty((n, g), np.int64)
    c = dp.argmin(1)
    for t in range(n - 1, -1, -1):
        out[t] = c
        c = back[t, rows, c]
    return out


def test_viterbi_is_the_step_by_step_one_ties_included():
    rng = np.random.default_rng(7)
    for trial in range(200):
        n, g, L = int(rng.integers(1, 40)), int(rng.integers(1, 5)), int(rng.integers(2, 9))
        cost = rng.integers(0, 4, (n, g, L)) if trial % 2 else rng.random((n, g, L))  # integers: many ties
        cost = cost.astype(np.float32)
        br = rng.random(n) < 0.1 if trial % 3 else None
        sc = float(rng.choice([0.5, 1.0, 2.0]))
        assert np.array_equal(viterbi_sticky(cost, sc, br), _viterbi_reference(cost, sc, br))


@pytest.mark.parametrize("n", [1, 2, 255, 257, 511, 512, 513, 1025])
def test_chunked_codeword_search_is_the_one_shot_one(n):
    rng = np.random.default_rng(n)
    groups = [2, 2, 4, 8]
    basis = np.linalg.qr(rng.standard_normal((40, 40)))[0][:16].astype(np.float32)
    pc = ProductCode(rng.standard_normal(40), basis, groups, rng.standard_normal((4, 64, 8)).astype(np.float32))
    x = rng.standard_normal((n, 40)).astype(np.float32)
    z = pc.project(x)
    want = np.stack([np.argmin(pc._norms[j][None] - 2.0 * z[:, a:b] @ pc.codebooks[j, :, : b - a].T, axis=1)
                     for j, (a, b) in enumerate(zip(pc.bounds[:-1], pc.bounds[1:]))], axis=1)
    assert np.array_equal(pc.encode(x, chunk=256), want)
