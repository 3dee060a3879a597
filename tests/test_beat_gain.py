"""Tokenizer v3's segment gains (encode side, ``state["gain"]``): a planted artifact the codes cannot reach is
coded at a lower gain and round-trips closer; a clean signal keeps exactly the ids it had without the search."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_ecg

from ecg2llm.core.errors import TokenizerError
from ecg2llm.tokenizer.base import PRETRAINED_DIR
from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer, BeatTokenizerConfig

FS = 360.0
SEG = slice(3600, 7200)  # the second 10-s segment


@pytest.fixture(scope="module")
def toks() -> tuple[BeatTokenizer, BeatTokenizer]:
    if not (PRETRAINED_DIR / "v3" / "model.safetensors").is_file():
        pytest.skip("tokenizer/pretrained/v3 not shipped")
    on = BeatTokenizer.from_pretrained("v3")
    off = BeatTokenizer.from_pretrained("v3")
    off.config.gain_segment_s, off.gain_segment_n = 0.0, 0
    assert on.gain_segment_n == int(round(10.0 * FS))  # the shipped config searches 10-s segments
    return on, off


def planted_artifact() -> tuple[np.ndarray, np.ndarray]:
    """30 s of synthetic ECG, and the same with 4-mV, 0.25-s pulses (electrode motion) in 10.5-19.5 s."""
    x = synthetic_ecg(30.0, FS, hr_bpm=70)
    t = np.arange(len(x)) / FS
    art = np.zeros_like(x)
    for c in np.arange(10.5, 19.5, 1.3):
        art += 4.0 * ((t > c) & (t < c + 0.25))
    return x.astype(np.float32), (x + art).astype(np.float32)


def rmse_uv(a, b, s=slice(None)) -> float:
    return 1000 * float(np.sqrt(np.mean((np.asarray(a)[s] - np.asarray(b)[s]) ** 2)))


def test_clean_signal_keeps_its_ids(toks):
    on, off = toks
    x, _ = planted_artifact()
    bt, b0 = on.encode_beats(x, FS), off.encode_beats(x, FS)
    assert "gain" not in bt.state
    assert np.array_equal(bt.ids, b0.ids)
    assert np.array_equal(on.decode(bt.ids, bt.state), off.decode(b0.ids, b0.state))


def test_planted_artifact_is_coded_at_a_lower_gain(toks):
    on, off = toks
    _, x = planted_artifact()
    bt, b0 = on.encode_beats(x, FS), off.encode_beats(x, FS)
    lv = bt.state["gain"]
    assert lv.dtype == np.int8 and len(lv) == 3
    assert lv[0] == 0 and lv[2] == 0 and lv[1] > 0  # only the artifact's segment
    y, y0 = on.decode_beats(bt, bt.state), off.decode_beats(b0, b0.state)
    assert np.array_equal(y, on.decode(bt.ids, bt.state))  # both decode paths apply the gain
    # the artifact segment round-trips within a bound, 3x closer than at gain 1 (measured 176 vs 550 µV)
    assert rmse_uv(y, x, SEG) < 250.0
    assert rmse_uv(y, x, SEG) < 0.5 * rmse_uv(y0, x, SEG)
    assert rmse_uv(y, x, slice(0, 3000)) < 20.0  # the clean first segment stays as it was
    assert np.array_equal(bt.kind, b0.kind) and np.array_equal(bt.rr, b0.rr)  # the same units and RR tokens
    # only the units of the segment set to a gain get other codes; every other unit keeps its codes exactly
    seg = np.minimum(np.where(bt.kind == 0, bt.r, bt.start) // on.gain_segment_n, len(lv) - 1)
    keep = lv[seg] == 0
    codes = [np.concatenate([b.coarse, b.detail, b.fallback], 1) for b in (bt, b0)]
    assert np.array_equal(codes[0][keep], codes[1][keep]) and not np.array_equal(codes[0][~keep], codes[1][~keep])
    # ids alone decode at gain 1 (what an LM's ids give): the codes' scale, the artifact segment smaller
    band = on.decode(bt.ids)
    assert np.array_equal(band, on.decode_band_units(bt, state={}))
    assert np.abs(band[SEG]).max() < 0.8 * np.abs(on.decode_band_units(bt)[SEG]).max()
    # the coarse-only decode divides the gain out as well
    c = on.decode(bt.ids, bt.state, coarse_only=True)
    assert rmse_uv(c, x, SEG) < rmse_uv(on.decode(bt.ids, {**bt.state, "gain": None}, coarse_only=True), x, SEG)


def test_bad_gain_state_and_config_raise_clear_errors(toks):
    on, off = toks
    _, x = planted_artifact()
    bt = on.encode_beats(x, FS)
    with pytest.raises(TokenizerError, match="gain"):
        on.decode(bt.ids, {**bt.state, "gain": np.array([0, 9, 0], np.int8)})  # beyond gain_levels
    with pytest.raises(TokenizerError, match="gain_segment_s"):
        off.decode(bt.ids, bt.state)  # a state with gains, a tokenizer without the search
    with pytest.raises(TokenizerError, match="gain_margin"):
        BeatTokenizerConfig(gain_margin=1.0)
    with pytest.raises(TokenizerError, match="gain_segment_s"):
        BeatTokenizerConfig(gain_segment_s=-1.0)
