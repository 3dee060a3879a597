"""The committed embedding network: loads, is versioned, is sensitive to amplitude and not to offsets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ecg2llm.eval.scorecard.embedding import (
    PRETRAINED_DIR,
    ECGEmbeddingNet,
    Embedder,
    EmbeddingConfig,
    EmbeddingError,
    load_model,
    save_model,
)
from ecg2llm.eval.testing import gaussian_wave_ecg, real_data_root


@pytest.fixture(scope="module")
def emb() -> Embedder:
    return Embedder.from_pretrained()


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return np.stack([gaussian_wave_ecg(55 + 10 * i, seed=i) for i in range(6)])


def test_committed_weights_small_and_hash_recorded(emb):
    assert (PRETRAINED_DIR / "model.safetensors").stat().st_size < 2_000_000
    cfg = json.loads((PRETRAINED_DIR / "config.json").read_text())
    assert cfg["weights_hash"] == emb.weights_hash and len(emb.weights_hash) == 64
    assert emb.weights_hash in (PRETRAINED_DIR / "README.md").read_text()


def test_embed_shape_deterministic(emb, windows):
    z = emb.embed(windows)
    assert z.shape == (6, emb.cfg.embed_dim) and z.dtype == np.float32 and np.isfinite(z).all()
    np.testing.assert_array_equal(z, emb.embed(windows))
    np.testing.assert_allclose(
        emb.embed(windows[:1]), z[:1], rtol=1e-5, atol=1e-5
    )  # batch-independent (eval BN)


def test_offset_invariant_amplitude_sensitive(emb, windows):
    z = emb.embed(windows)
    shifted = emb.embed(windows + 0.7)  # a DC offset is removed by the median centring
    np.testing.assert_allclose(shifted, z, atol=1e-4)
    scaled = emb.embed(windows * 1.5)  # a wrong amplitude must move the embedding, unlike min-max scaling
    noisy = emb.embed(
        windows + 0.005 * np.random.default_rng(0).standard_normal(windows.shape).astype(np.float32)
    )
    d_scaled = np.linalg.norm(scaled - z, axis=1).mean()
    d_noise = np.linalg.norm(noisy - z, axis=1).mean()
    assert d_scaled > 5 * d_noise


def test_other_rates_resampled_wrong_length_rejected(emb):
    x250 = np.stack([gaussian_wave_ecg(70, fs=250.0)])
    assert emb.embed(x250, fs=250.0).shape == (1, emb.cfg.embed_dim)
    with pytest.raises(EmbeddingError, match="10-s windows"):
        emb.embed(np.zeros((2, 1000), np.float32))


def test_save_load_roundtrip_and_tamper(tmp_path):
    model = ECGEmbeddingNet(EmbeddingConfig(embed_dim=8))
    save_model(model, tmp_path / "e")
    again = load_model(tmp_path / "e")
    x = np.stack([gaussian_wave_ecg(70)])
    np.testing.assert_array_equal(Embedder(model).embed(x), Embedder(again).embed(x))
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "e", bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["weights_hash"] = "0" * 64
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(EmbeddingError, match="hash differs"):
        load_model(bad)
    with pytest.raises(EmbeddingError, match="train_embedding.py"):
        load_model(tmp_path / "nothing")


def test_train_embedding_smoke(tmp_path):
    root = real_data_root()
    if root is None:
        pytest.skip("MIT-BIH not found (set ECG2LLM_DATA or place it at ../shared/data)")
    from ecg2llm.eval.train_embedding import main

    out = tmp_path / "emb"
    assert (
        main(
            [
                "--data_dir",
                str(root),
                "--output_dir",
                str(out),
                "--epochs",
                "1",
                "--max_train_windows",
                "64",
                "--stride_s",
                "30",
                "--embed_dim",
                "16",
            ]
        )
        == 0
    )
    e = Embedder.from_pretrained(out)
    assert e.cfg.embed_dim == 16
    info = json.loads((out / "config.json").read_text())["training"]
    assert (
        info["n_train_windows"] == 64
        and "101" in info["valid_records"]
        and "100" not in info["train_records"]
    )
    assert e.weights_hash in (out / "README.md").read_text()
