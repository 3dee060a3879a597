"""The contextual FSQ tokenizer: shapes, seamless windowing, exact receptive field, save/load, the default."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ecg2llm.core.errors import TokenizerError
from ecg2llm.tokenizer.base import PRETRAINED_DIR, ECGTokenizer
from ecg2llm.tokenizer.fsq_tokenizer import FSQTokenizer, FSQTokenizerConfig

REPO = Path(__file__).resolve().parents[1]
FS = 360.0

# Stated in tokenizer/pretrained/v1/README.md ("Round-trip error bound"): RMSE of the default on the
# first 60 s of DS2 records 100, 203... (see DEFAULT_EXCERPT) is at most this many µV.
DEFAULT_EXCERPT = ("100", "105", "213", "232")
DEFAULT_EXCERPT_RMSE_BOUND_UV = float(
    json.loads((PRETRAINED_DIR / "v1" / "card.json").read_text())["roundtrip_bound_rmse_uv"]
) if (PRETRAINED_DIR / "v1" / "card.json").is_file() else None


def _data_root() -> Path | None:
    for cand in (os.environ.get("ECG2LLM_DATA"), REPO.parent / "shared" / "data"):
        if cand and (Path(cand) / "mitdb" / "100.hea").is_file():
            return Path(cand)
    return None


needs_data = pytest.mark.skipif(_data_root() is None, reason="MIT-BIH not found (ECG2LLM_DATA or ../shared/data)")


def _synthetic(seconds=12.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    x = 0.1 * np.sin(2 * np.pi * 0.3 * t)
    for beat in np.arange(0.3, seconds, 0.8):
        x += 1.2 * np.exp(-0.5 * ((t - beat) / 0.01) ** 2) + 0.3 * np.exp(-0.5 * ((t - beat - 0.25) / 0.04) ** 2)
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def _random_tok(**kw) -> FSQTokenizer:
    torch.manual_seed(0)
    tok = FSQTokenizer(FSQTokenizerConfig(channels=16, **kw))
    with torch.no_grad():  # non-zero residual branches, so every block contributes to the receptive field
        for p in tok.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return tok


def _with_chunk(tok: FSQTokenizer, chunk: int) -> FSQTokenizer:
    other = FSQTokenizer(FSQTokenizerConfig(**{**tok.config.__dict__, "chunk_tokens": chunk}))
    other.model.load_state_dict(tok.model.state_dict())
    return other


@pytest.mark.parametrize("n,levels", [(5, [8, 6, 5]), (10, [8, 8, 8, 8]), (20, [8, 5, 5, 5])])
def test_one_token_per_n_samples_and_lengths(n, levels):
    tok = _random_tok(samples_per_token=n, levels=levels)
    x = _synthetic()[:4321]
    ids, state = tok.encode(x, FS)
    assert ids.dtype == np.int64 and len(ids) == -(-len(x) // n)
    assert ids.min() >= 0 and ids.max() < tok.vocab_size == int(np.prod(levels))
    assert tok.tokens_per_second == pytest.approx(FS / n)
    assert state == {"n_samples": len(x)}  # no information about the signal travels outside the ids
    y_full = tok.decode(ids)  # no state: whole tokens, mV
    y = tok.decode(ids, state)
    assert len(y_full) == len(ids) * n and len(y) == len(x)
    assert np.array_equal(y, y_full[: len(x)])


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_equals_one_shot(chunk):
    """Windows that overlap by the receptive field give the one-shot result: no seam anywhere."""
    big = _random_tok(chunk_tokens=100_000)
    small = _with_chunk(big, chunk)
    x = _synthetic(20)
    ids_big, st = big.encode(x, FS)
    ids_small, _ = small.encode(x, FS)
    assert np.array_equal(ids_big, ids_small)
    np.testing.assert_allclose(small.decode(ids_big, st), big.decode(ids_big, st), rtol=0, atol=1e-5)


def test_receptive_field_is_exactly_the_stated_reach():
    """A change at one sample moves ids only within the encoder's reach; one id moves only the decoder's."""
    tok = _random_tok()
    n, r_enc, r_dec = tok.model.n, tok.model.encoder.reach, tok.model.decoder.reach
    x = _synthetic(20)
    ids, st = tok.encode(x, FS)
    p = 3000  # sample index (token 300)
    x2 = x.copy()
    x2[p] += 5.0
    ids2, _ = tok.encode(x2, FS)
    changed = np.flatnonzero(ids != ids2)
    assert changed.size and changed.min() >= p // n - r_enc and changed.max() <= p // n + r_enc
    ids3 = ids.copy()
    ids3[300] = (ids3[300] + 1234) % tok.vocab_size
    diff = np.abs(tok.decode(ids3) - tok.decode(ids))
    moved = np.flatnonzero(diff > 0) // n
    assert moved.min() >= 300 - r_dec and moved.max() <= 300 + r_dec
    assert moved.min() < 300 - r_dec + 3 and moved.max() > 300 + r_dec - 3  # the reach is not overstated


def test_save_load_roundtrip(tmp_path):
    tok = _random_tok(samples_per_token=5, levels=[8, 6, 5])
    tok.save_pretrained(tmp_path / "tok")
    back = ECGTokenizer.from_pretrained(tmp_path / "tok")
    assert isinstance(back, FSQTokenizer) and back.config == tok.config
    assert back.weights_hash == tok.weights_hash
    x = _synthetic()
    assert np.array_equal(back.encode(x, FS)[0], tok.encode(x, FS)[0])


def test_bad_inputs_are_clear_errors():
    tok = _random_tok()
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.decode(np.array([0, tok.vocab_size]))
    with pytest.raises(TokenizerError, match="1-D"):
        tok.encode(np.zeros((100, 2), np.float32), FS)
    ids, _ = tok.encode(_synthetic(2), FS)
    with pytest.raises(TokenizerError, match="state says"):
        tok.decode(ids, {"n_samples": len(ids) * 10 + 1})
    with pytest.raises(TokenizerError, match="levels"):
        FSQTokenizerConfig(levels=[8, 1])


def test_training_step_lowers_the_error():
    """A few optimizer steps on synthetic ECG reduce the validation RMSE (the trainer wires loss to weights)."""
    from ecg2llm.tokenizer.training.fsq import TrainConfig, train_tokenizer

    cfg = TrainConfig(channels=16, enc_dilations=[1, 2], dec_dilations=[1, 2], steps=60, eval_every=20,
                      batch_size=8, crop_tokens=32, lr=3e-3, warmup_steps=5, patience=0, threads=1)
    train = [_synthetic(60, seed=s) for s in range(3)]
    valid = {"v": _synthetic(20, seed=9)}
    tok, hist = train_tokenizer(cfg, train, valid, progress=False)
    curve = [h["valid_rmse_uv"] for h in hist["history"]]
    assert hist["best_valid_rmse_uv"] == min(curve) and curve[-1] < curve[0]
    assert isinstance(tok, FSQTokenizer) and not tok.model.training


# ----------------------------------------------------------------------------- v1 (the default until tokenizer v2)
def test_default_loads_without_a_path():
    tok = ECGTokenizer.from_pretrained("v1")
    assert isinstance(tok, FSQTokenizer)
    assert tok.samples_per_token == 10 and tok.tokens_per_second == pytest.approx(36.0)
    assert tok.vocab_size <= 4096
    size = sum(f.stat().st_size for f in (PRETRAINED_DIR / "v1").iterdir())
    assert size < 5 * 2**20  # the package ships it: keep it small
    assert (PRETRAINED_DIR / "v1" / "README.md").is_file()


@needs_data
def test_default_roundtrip_on_ds2_excerpt_within_stated_error():
    from ecg2llm.tokenizer.evaluation import evaluate_tokenizer, load_signals

    tok = ECGTokenizer.from_pretrained("v1")
    signals = load_signals(DEFAULT_EXCERPT, _data_root(), seconds=60)
    res = evaluate_tokenizer(tok, signals)
    assert DEFAULT_EXCERPT_RMSE_BOUND_UV is not None
    assert res["rmse_uv"] <= DEFAULT_EXCERPT_RMSE_BOUND_UV
    # decode(ids, None) is already in mV: same signal as with the state, only the tail padding differs
    x = signals["100"]
    ids, st = tok.encode(x, FS)
    assert np.array_equal(tok.decode(ids)[: len(x)], tok.decode(ids, st))


@needs_data
def test_default_has_no_seam_at_window_edges():
    """Decoding in windows of 100 tokens equals one call (|diff| <= 1e-4 mV), and the error within the
    decoder's reach of a window edge is not larger than elsewhere (ratio <= 1.1; it is 1 up to rounding)."""
    from ecg2llm.tokenizer.data import read_record

    tok = ECGTokenizer.from_pretrained("v1")
    x = read_record("100", _data_root(), annotations=False).signal[: 120 * 360]
    ids, st = tok.encode(x, FS)
    y_one = tok.decode(ids, st)
    chunk = 100
    windowed = _with_chunk(tok, chunk)
    y_win = windowed.decode(ids, st)
    assert np.abs(y_win - y_one).max() <= 1e-4
    assert np.array_equal(windowed.encode(x, FS)[0], ids)
    n, r = tok.model.n, tok.model.decoder.reach
    tok_idx = np.arange(len(x)) // n
    dist = np.abs(((tok_idx + chunk // 2) % chunk) - chunk // 2)  # tokens to the nearest window edge
    near = dist < r
    err = (y_win - x) ** 2
    ratio = np.sqrt(err[near].mean() / err[~near].mean())
    assert ratio <= 1.1
