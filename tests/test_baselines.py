"""The non-learned baseline tokenizers (tokenizer/baselines.py) in the common tokenizer interface."""
from __future__ import annotations

import numpy as np
import pytest

from ecg2llm.core.errors import TokenizerError
from ecg2llm.tokenizer.base import ECGTokenizer
from ecg2llm.tokenizer.baselines import (
    ChronosMeanScaleConfig,
    ChronosMeanScaleTokenizer,
    DecimateMuLawConfig,
    DecimateMuLawTokenizer,
    DecimateUniformConfig,
    DecimateUniformTokenizer,
    decimate,
    interpolate,
    uniform_dequantize,
    uniform_quantize,
)

FS = 360.0


def _slow_signal(seconds=20.0, seed=0):
    """Content well below every tested Nyquist rate (n = 20 -> 9 Hz): only quantization error remains."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    x = 0.8 * np.sin(2 * np.pi * 1.1 * t) + 0.3 * np.sin(2 * np.pi * 2.7 * t + rng.uniform(0, 6)) - 0.2
    return x.astype(np.float32)


def _make(kind, n, bins):
    if kind == "decimate_uniform":
        return DecimateUniformTokenizer(DecimateUniformConfig(samples_per_token=n, num_bins=bins))
    if kind == "decimate_mulaw":
        return DecimateMuLawTokenizer(DecimateMuLawConfig(samples_per_token=n, num_bins=bins))
    return ChronosMeanScaleTokenizer(ChronosMeanScaleConfig(samples_per_token=n, num_bins=bins, context_tokens=64))


KINDS = ["decimate_uniform", "decimate_mulaw", "chronos_meanscale"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [5, 10, 20])
def test_rate_ids_and_length(kind, n):
    tok = _make(kind, n, 1024)
    x = _slow_signal()[:7001]  # not a multiple of n
    ids, state = tok.encode(x, FS)
    assert len(ids) == -(-len(x) // n)
    assert ids.min() >= 0 and ids.max() < tok.vocab_size == 1024
    assert tok.tokens_per_second == pytest.approx(FS / n)
    assert tok.bits_per_second == pytest.approx(FS / n * 10)
    assert len(tok.decode(ids, state)) == len(x)


def test_decimation_then_interpolation_is_near_exact_below_nyquist():
    x = _slow_signal()
    for n in (5, 10, 20):
        y = interpolate(decimate(x, n), n)[: len(x)]
        assert np.abs(y - x)[360:-360].max() < 0.005  # < 5 uV away from the ends (filter transients)


@pytest.mark.parametrize("kind", KINDS)
def test_quantization_adds_about_one_bin(kind):
    """Against float decimation + interpolation, the tokens add uniform-quantization noise: RMS ~ step/sqrt(12)."""
    tok = _make(kind, 10, 4096)
    x = _slow_signal()
    ids, state = tok.encode(x, FS)
    y = tok.decode(ids, state)
    y_float = interpolate(decimate(x, 10), 10)[: len(x)]
    if kind == "decimate_uniform":
        step = 10.0 / 4096  # range +-5 mV
    elif kind == "decimate_mulaw":  # the widest mu-law bin for |x| <= 1.1 mV (the signal's peak)
        step = 2.0 / 4096 * np.log1p(255) / 255 * 5.0 * (1 + 255 * 1.1 / 5)
    else:
        step = 30.0 / 4096 * float(np.max(state["scales"]))
    rms = np.sqrt(np.mean((y - y_float) ** 2))
    assert 0 < rms < 1.2 * step / np.sqrt(12)


def test_mulaw_finer_near_zero_than_uniform():
    x = 0.05 * np.sin(2 * np.pi * 1.0 * np.arange(3600) / FS).astype(np.float32)  # small amplitude
    err = {}
    for kind in ("decimate_uniform", "decimate_mulaw"):
        tok = _make(kind, 10, 256)
        ids, st = tok.encode(x, FS)
        err[kind] = np.sqrt(np.mean((tok.decode(ids, st) - x) ** 2))
    assert err["decimate_mulaw"] < err["decimate_uniform"] / 3


def test_uniform_quantizer_formula():
    v = np.array([-5.0, 0.0, 4.999, 7.0, -9.0])
    q = uniform_quantize(v, 256, -5.0, 5.0)
    assert q.tolist() == [0, 128, 255, 255, 0]
    assert np.allclose(uniform_dequantize(q, 256, -5.0, 5.0)[:3], v[:3], atol=10 / 256 / 2 + 1e-9)


def test_absolute_baselines_decode_without_state():
    for kind in ("decimate_uniform", "decimate_mulaw"):
        tok = _make(kind, 10, 1024)
        x = _slow_signal()
        ids, _ = tok.encode(x, FS)
        y = tok.decode(ids)  # no state: whole tokens, mV
        assert len(y) == len(ids) * 10
        assert np.sqrt(np.mean((y[360:len(x) - 360] - x[360:-360]) ** 2)) < 0.01


def test_chronos_needs_its_scales():
    tok = _make("chronos_meanscale", 10, 1024)
    ids, state = tok.encode(_slow_signal(), FS)
    with pytest.raises(TokenizerError, match="scales"):
        tok.decode(ids, None)
    assert tok.side_info_bits_per_second == pytest.approx(16 * 36 / 64)
    with pytest.raises(TokenizerError, match="contexts"):
        tok.decode(ids, {"scales": state["scales"][:-1]})


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_through_registry(kind, tmp_path):
    tok = _make(kind, 5, 256)
    tok.save_pretrained(tmp_path / "t")
    back = ECGTokenizer.from_pretrained(tmp_path / "t")
    assert type(back) is type(tok) and back.config == tok.config
    x = _slow_signal(5)
    assert np.array_equal(back.encode(x, FS)[0], tok.encode(x, FS)[0])


def test_bad_config_is_a_clear_error():
    with pytest.raises(TokenizerError, match="num_bins"):
        DecimateUniformConfig(num_bins=1)
    with pytest.raises(TokenizerError, match="samples_per_token"):
        DecimateMuLawConfig(samples_per_token=0)
