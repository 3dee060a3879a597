"""Texture prior: texture states drawn for generated ids (tokenizer/texture_prior.py, scripts/fit_texture_prior.py)."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ecg2llm.core.errors import ConfigError, TokenizerError
from ecg2llm.tokenizer.texture_prior import PRIOR_FILE, TexturePrior, fit_texture_prior

FS = 360.0
ROOT = Path(__file__).resolve().parents[1]


def _states(n: int, seed: int = 0, mean=(-60.0, -40.0), sd: float = 4.0) -> list[dict]:
    """``n`` 30-s states: 2 levels + 3 real entries per segment, Gaussian around ``mean``; 2 lines."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lv = np.round(mean[0] + sd * rng.standard_normal((3, 2)))
        re = np.round(mean[1] + sd * rng.standard_normal((3, 3)))
        ln = np.round(rng.normal(0, 20, (3, 2, 2)))
        out.append({"levels": lv.astype(np.int8), "real": re.astype(np.int8), "lines": ln.astype(np.int16)})
    return out


def test_fit_recovers_the_mean_and_samples_are_seeded_and_shaped():
    prior = fit_texture_prior(_states(200), FS)
    assert prior.dim == 5 and prior.n_levels == 2 and prior.n_segments == 600
    assert np.allclose(prior.mean.numpy(), [-60, -60, -40, -40, -40], atol=0.8)
    assert 0.0 <= prior.rho < 0.2  # independent segments
    a, b = prior.sample(int(25 * FS), seed=3), prior.sample(int(25 * FS), seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # seeded
    # 25 s: 3 segments
    assert a["levels"].shape == (3, 2) and a["real"].shape == (3, 3) and a["lines"].shape == (3, 2, 2)
    assert a["levels"].dtype == np.int8 and a["lines"].dtype == np.int16
    assert not np.array_equal(prior.sample(int(25 * FS), seed=4)["real"], a["real"])
    draws = np.concatenate([prior.sample(int(10 * FS), seed=s)["real"] for s in range(300)])
    assert abs(draws.mean() + 40) < 0.8 and 3.0 < draws.std() < 5.0  # the fitted Gaussian, not a constant
    assert (a["lines"][0] == a["lines"][1]).all()  # one amplitude and phase per sample


def test_fit_refuses_too_few_segments_and_mixed_layouts():
    with pytest.raises(TokenizerError, match="at least 10 full"):
        fit_texture_prior(_states(1), FS)
    bad = _states(50)
    bad[3] = {**bad[3], "real": bad[3]["real"][:, :2]}
    with pytest.raises(TokenizerError, match="different layouts"):
        fit_texture_prior(bad, FS)
    with pytest.raises(TokenizerError, match="at least one"):
        fit_texture_prior([], FS)


def test_file_round_trip_and_clear_errors(tmp_path):
    prior = fit_texture_prior(_states(100, seed=1), FS)
    p = tmp_path / PRIOR_FILE
    p.write_bytes(prior.to_bytes())
    back = TexturePrior.from_file(p, fs=FS)
    assert torch.equal(back.mean, prior.mean) and torch.equal(back.chol, prior.chol) and back.rho == prior.rho
    assert all(np.array_equal(back.sample(3600, 7)[k], prior.sample(3600, 7)[k]) for k in ("levels", "real", "lines"))
    with pytest.raises(TokenizerError, match="fitted at 360.0 Hz"):
        TexturePrior.from_file(p, fs=250.0)
    p.write_bytes(b"not a safetensors file")
    with pytest.raises(TokenizerError, match="not a readable texture prior"):
        TexturePrior.from_file(p, fs=FS)
    with pytest.raises(TokenizerError, match="n_samples"):
        prior.sample(0)


@pytest.fixture(scope="module")
def lm_tok():
    """The shipped LM v3's tokenizer copy (it has texture.safetensors and texture_prior.safetensors)."""
    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer

    return BeatTokenizer.from_pretrained(str(ROOT / "lm" / "pretrained" / "v3" / "tokenizer"))


def test_shipped_tokenizers_carry_a_prior_and_sample_state_draws_it(lm_tok):
    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer

    assert BeatTokenizer.from_pretrained("v3").has_texture_prior and lm_tok.has_texture_prior
    st = lm_tok.sample_state(int(30 * FS), seed=5)
    assert set(st) == {"n_samples", "baseline", "texture"} and st["texture"]["levels"].shape[0] == 3
    again = lm_tok.sample_state(int(30 * FS), seed=5)
    assert np.array_equal(st["texture"]["real"], again["texture"]["real"])
    tok = copy.copy(lm_tok)
    tok.texture_state = False  # the texture decode draws a training recording's levels: no texture state
    assert "texture" not in tok.sample_state(3600, seed=5)


def test_decoded_noise_follows_the_drawn_state(lm_tok, data_dir):
    """Generated ids decoded with a drawn state: finite, and a state 1 (natural-log) unit louder above 45 Hz
    gives a louder high band (the state, not the bank, sets the noise floor)."""
    from scipy.signal import welch

    from ecg2llm.tokenizer.data import read_record

    if not (Path(data_dir) / "mitdb" / "100.dat").is_file():
        pytest.skip("needs MIT-BIH record 100")
    x = read_record("100", data_dir, annotations=False).signal[: int(30 * FS)]
    bt = lm_tok.encode_beats(x, FS)
    st = lm_tok.sample_state(len(x), seed=1)
    loud = copy.deepcopy(st)
    loud["texture"]["real"] = np.clip(loud["texture"]["real"].astype(int) + 10, -126, 127).astype(np.int8)
    loud["texture"]["levels"] = np.clip(loud["texture"]["levels"].astype(int) + 10, -126, 127).astype(np.int8)
    bt.state = {}
    y0 = lm_tok.decode(bt.ids, st, texture=True, seed=2)
    y1 = lm_tok.decode(bt.ids, loud, texture=True, seed=2)
    assert np.isfinite(y0).all() and len(y0) == len(x)
    f, p0 = welch(y0, fs=FS, nperseg=512)
    _, p1 = welch(y1, fs=FS, nperseg=512)
    hi = (f > 100) & (f < 170)
    ratio = p1[hi].mean() / p0[hi].mean()
    assert 1.8 < ratio < 4.0  # e^1 = 2.7 in power where the added noise dominates; EQ caps a gain at 4


def test_fit_script_writes_a_loadable_prior_and_refuses_ds2(tmp_path, data_dir, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import fit_texture_prior as script
    finally:
        sys.path.pop(0)
    from ecg2llm.tokenizer.texture_prior import prior_records

    with pytest.raises(ConfigError, match="never DS2"):
        prior_records("100,106")
    assert script.main(["--tokenizer", "v3", "--out", str(tmp_path / "x"), "--chunk_s", "5"]) != 0
    assert "--chunk_s must be at least 10" in capsys.readouterr().err and not (tmp_path / "x").exists()
    if not (Path(data_dir) / "mitdb" / "106.dat").is_file():
        pytest.skip("needs MIT-BIH record 106")
    out = tmp_path / "tok"
    assert script.main(["--tokenizer", "v3", "--out", str(out), "--records", "106", "--data_dir", str(data_dir)]) == 0
    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer

    tok = BeatTokenizer.from_pretrained(str(out))
    assert tok.has_texture_prior and tok.texture_prior.n_segments > 100
    assert (tmp_path / "tok_texture_prior_fit.json").is_file()
