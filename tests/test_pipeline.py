"""``ecg2llm.ECGPipeline``: loading, sampling, forecasting, save/load, Hub ids (offline only)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ecg2llm.lm.model import PRETRAINED_DIR
from ecg2llm.lm.request import GenerateConfig

pytestmark = pytest.mark.skipif(
    not (PRETRAINED_DIR / "v2" / "config.json").is_file(), reason="no shipped default LM"
)


@pytest.fixture(scope="module")
def pipe():
    from ecg2llm import ECGPipeline

    return ECGPipeline.from_pretrained("v2", device="cpu")


@pytest.fixture(scope="module")
def cond_pipe():
    from ecg2llm import ECGPipeline

    if not (PRETRAINED_DIR / "v2-conditional" / "config.json").is_file():
        pytest.skip("no shipped conditional LM")
    return ECGPipeline.from_pretrained("v2-conditional", device="cpu")


def _offline_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub"),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled")
    return env


def test_generate_shape_rate_and_seed(pipe):
    x = pipe.generate(num_samples=3, seconds=2, seed=0)
    assert pipe.fs == 360.0 and pipe.tokens_per_second == 36.0
    assert x.shape == (3, 720) and x.dtype == np.float32 and np.isfinite(x).all()
    assert 0.05 < float(np.std(x)) < 5.0  # millivolts, not normalized units or raw ADC counts
    assert np.array_equal(x, pipe.generate(3, 2, seed=0))          # same seed => identical
    assert not np.array_equal(x, pipe.generate(3, 2, seed=1))      # another seed => another draw
    assert not np.array_equal(x[0], x[1])                          # samples of one call differ
    assert pipe.generate(1, 1.5, seed=0).shape == (1, 540)


def test_sampling_settings_are_used_and_checked(pipe):
    x = pipe.generate(2, 1, seed=0)
    greedy = pipe.generate(2, 1, seed=0, request=GenerateConfig(top_k=1, texture=False))  # texture: seeded per sample
    assert not np.array_equal(x, greedy)
    assert np.array_equal(greedy[0], greedy[1])  # top_k=1 is greedy: every sample identical
    nucleus = GenerateConfig(top_p=0.9)
    assert np.array_equal(pipe.generate(2, 1, seed=0, request=nucleus), pipe.generate(2, 1, seed=0, request=nucleus))
    for bad in ({"num_samples": 0}, {"seconds": -1}, {"num_samples": 2.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            pipe.generate(**{"num_samples": 1, "seconds": 1, **bad})
    for bad in ({"temperature": 0}, {"top_k": -1}, {"top_p": 1.5}, {"batch_size": 0}, {"num_samples": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            pipe.generate(1, 1, request=GenerateConfig(**bad))


def _unconditional_toy():
    """An untrained LM without control tokens on the toy tokenizer of lm_support (stateless, no texture)."""
    from lm_support import UniformBlockConfig, UniformBlockTokenizer, random_lm

    return random_lm(), UniformBlockTokenizer(UniformBlockConfig())


def test_retired_v1_lms_name_the_tag_that_keeps_them():
    from ecg2llm import ECGPipeline

    for name in ("v1", "v1-conditional"):
        with pytest.raises(ValueError, match=f"git checkout v1-models -- lm/pretrained/{name}"):
            ECGPipeline.from_pretrained(name, device="cpu")


def test_conditions(pipe, cond_pipe):
    from ecg2llm import ECGPipeline

    plain = ECGPipeline(*_unconditional_toy())  # an LM without control tokens (configs/lm/tiny.yaml's kind)
    assert plain.conditions == [] and not plain.is_conditional
    with pytest.raises(ValueError, match="needs a conditional LM") as e:
        plain.generate(1, 1, condition="rhythm:AFIB")
    assert "from_pretrained('conditional')" in str(e.value)
    # `default` (the unconditional generator) and `conditional` are two LMs on one control vocabulary: both
    # take the same conditions, their samples differ
    assert pipe.is_conditional and pipe.conditions == cond_pipe.conditions
    assert not np.array_equal(pipe.generate(2, 1, seed=5), cond_pipe.generate(2, 1, seed=5))
    assert cond_pipe.is_conditional and "rhythm:AFIB" in cond_pipe.conditions
    with pytest.raises(ValueError, match="unknown condition 'rhythm:NOPE'") as e:
        cond_pipe.generate(1, 1, condition="rhythm:NOPE")
    assert all(n in str(e.value) for n in ("rhythm:AFIB", "beat:V", "rhythm:N"))  # lists the known ones
    y = cond_pipe.generate(2, 2, condition="rhythm:AFIB", seed=0)
    assert y.shape == (2, 720) and np.isfinite(y).all()
    s2 = GenerateConfig(condition_strength=2.0)
    a = cond_pipe.generate(2, 2, condition="rhythm:N,beat:V", seed=0, request=s2)
    b = cond_pipe.generate(2, 2, condition=["rhythm:N", "beat:V"], seed=0, request=s2)
    assert np.array_equal(a, b)  # "a,b" and ["a", "b"] are the same request
    assert not np.array_equal(a, y)


def test_forecast_shapes_rates_and_determinism(pipe):
    prefix = pipe.generate(1, 3, seed=7)[0]  # (1080,) mV at 360 Hz
    f = pipe.forecast(prefix, fs=360, seconds=1, num_samples=4, seed=0)
    assert f.shape == (4, 360) and f.dtype == np.float32 and np.isfinite(f).all()
    assert np.array_equal(f, pipe.forecast(prefix, fs=360, seconds=1, num_samples=4, seed=0))
    assert not np.array_equal(f, pipe.forecast(prefix, fs=360, seconds=1, num_samples=4, seed=1))
    # a prefix at another rate is resampled; a prefix that is not whole tokens is trimmed at its start
    from ecg2llm.tokenizer.data import resample

    assert pipe.forecast(resample(prefix, 360, 250), fs=250, seconds=1, num_samples=2).shape == (2, 360)
    assert pipe.forecast(prefix[3:], seconds=0.5, num_samples=2).shape == (2, 180)


@pytest.mark.parametrize("prefix,match", [
    (np.zeros((720, 2)), "1-D"),
    (np.r_[np.zeros(100), np.nan, np.zeros(619)], "NaN/inf .* index 100"),
    (np.zeros(5), "too short"),
    (np.zeros(0), "empty"),
    (np.array(["a"] * 720), "numeric"),
])
def test_forecast_refuses_bad_prefix(pipe, prefix, match):
    with pytest.raises(ValueError, match=match):
        pipe.forecast(prefix, fs=360, seconds=1, num_samples=2)


def test_tokenizer_round_trip(pipe):
    x = pipe.generate(1, 2, seed=0)[0]
    ids, state = pipe.tokenizer.encode(x, pipe.fs)
    assert ids.shape == (72,) and ids.min() >= 0 and ids.max() < pipe.tokenizer.vocab_size
    assert pipe.tokenizer.decode(ids, state).shape == x.shape


def test_save_pretrained_round_trip_and_generate_py(pipe, tmp_path):
    from ecg2llm import ECGPipeline
    from ecg2llm.lm.generate import main as generate_main

    folder = pipe.save_pretrained(tmp_path / "my_model")
    want = {"config.json", "model.safetensors", "generation_config.json", "tokenizer"}
    assert {p.name for p in folder.iterdir()} >= want
    extra = {"wander.json"} if pipe.tokenizer.has_wander_model else set()  # tokenizer v2's baseline model
    if getattr(pipe.tokenizer, "texture_kind", None) == "bank":
        extra.add("texture.safetensors")  # tokenizer v2's texture bank
    assert {p.name for p in (folder / "tokenizer").iterdir()} == {"config.json", "model.safetensors"} | extra
    again = ECGPipeline.from_pretrained(folder, device="cpu")
    x = pipe.generate(2, 2, seed=3)
    assert np.array_equal(again.generate(2, 2, seed=3), x)
    f = pipe.forecast(x[0], seconds=1, num_samples=2, seed=0)
    assert np.array_equal(again.forecast(x[0], seconds=1, num_samples=2, seed=0), f)
    # the saved folder is an LM folder for every entry point: lm/generate.py draws the same arrays
    out = tmp_path / "gen"
    assert generate_main(["--model", str(folder), "--num-samples", "2", "--seconds", "2", "--seed", "3",
                          "--out", str(out), "--png", "false", "--device", "cpu"]) == 0
    assert np.array_equal(np.stack([np.load(out / f"sample_{i:03d}.npy").reshape(-1) for i in range(2)]), x)
    pipe.save_pretrained(folder)  # saving again replaces the folder as a whole
    assert np.array_equal(ECGPipeline.from_pretrained(folder, device="cpu").generate(2, 2, seed=3), x)


def test_dtype_and_bad_arguments(pipe):
    import torch

    from ecg2llm import ECGPipeline

    half = ECGPipeline.from_pretrained("v2", device="cpu", dtype="bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    assert half.generate(1, 1, seed=0).shape == (1, 360)
    with pytest.raises(ValueError, match="dtype"):
        ECGPipeline.from_pretrained("v2", device="cpu", dtype="int8")
    with pytest.raises(ValueError, match="revision"):
        ECGPipeline.from_pretrained("v2", device="cpu", revision="main")
    with pytest.raises(ValueError, match="not a LM folder"):
        ECGPipeline.from_pretrained(Path(__file__).parent, device="cpu")


def test_tokenizer_override_must_match(pipe, tmp_path):
    from ecg2llm import ECGPipeline
    from ecg2llm.tokenizer.base import ECGTokenizer

    same = ECGPipeline.from_pretrained("v2", device="cpu", tokenizer="v2")  # LM v2: tokenizer v2
    assert same.tokenizer.weights_hash == pipe.tokenizer.weights_hash
    ECGTokenizer.from_config(pipe.tokenizer.config_dict()).save_pretrained(tmp_path / "untrained")
    with pytest.raises(ValueError, match="weights hash"):
        ECGPipeline.from_pretrained("v2", device="cpu", tokenizer=tmp_path / "untrained")


def test_push_to_hub_uploads_a_loadable_folder(pipe, tmp_path, monkeypatch):
    """No network: ``huggingface_hub.HfApi`` is replaced by a recorder that copies what would be uploaded."""
    import shutil

    import huggingface_hub

    from ecg2llm import ECGPipeline

    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls["create"] = (repo_id, private, exist_ok)

        def upload_folder(self, folder_path, repo_id, commit_message):
            shutil.copytree(folder_path, tmp_path / "uploaded")
            calls["upload"] = (repo_id, commit_message)
            return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/0"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = pipe.push_to_hub("user/ecg-gpt", private=True, token="t")
    assert url.endswith("user/ecg-gpt/commit/0")
    assert calls["create"] == ("user/ecg-gpt", True, True) and calls["token"] == "t"
    assert calls["upload"][0] == "user/ecg-gpt"
    up = ECGPipeline.from_pretrained(tmp_path / "uploaded", device="cpu")
    assert np.array_equal(up.generate(1, 1, seed=2), pipe.generate(1, 1, seed=2))


def test_hub_id_offline(pipe, tmp_path):
    """``HF_HUB_OFFLINE=1``: a cached Hub id loads from the cache, a never-downloaded one names itself."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--user--ecg-gpt"
    pipe.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    np.save(tmp_path / "want.npy", pipe.generate(2, 1, seed=4))
    code = textwrap.dedent(f"""
        import numpy as np
        from ecg2llm import ECGPipeline
        try:
            ECGPipeline.from_pretrained("someone/never-downloaded", device="cpu")
        except ValueError as e:
            print("ERROR:", e)
        p = ECGPipeline.from_pretrained("user/ecg-gpt", device="cpu")
        print("FOLDER:", p.folder)
        print("SAME:", np.array_equal(p.generate(2, 1, seed=4), np.load({str(tmp_path / 'want.npy')!r})))
    """)
    r = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path,
                       env=_offline_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    err = next(line for line in r.stdout.splitlines() if line.startswith("ERROR:"))
    assert "'someone/never-downloaded'" in err and "HF_HUB_OFFLINE" in err
    assert f"FOLDER: {repo / 'snapshots' / commit}" in r.stdout
    assert "SAME: True" in r.stdout
    shutil.rmtree(tmp_path / "hf")


def test_forecast_matches_lm_forecast_py(pipe, data_dir, tmp_path):
    """The facade and ``lm/forecast.py`` are one sampling path: same real prefix and seed, same forecasts."""
    from ecg2llm.lm.forecast import main as forecast_main
    from ecg2llm.tokenizer.forecasts import load_forecasts

    out = tmp_path / "fc"
    assert forecast_main(["--model", "v2", "--data_dir", str(data_dir), "--n_tasks", "2", "--k", "3",
                          "--seed", "5", "--out", str(out), "--device", "cpu"]) == 0
    fc = load_forecasts(out)
    for i in range(2):
        got = pipe.forecast(fc["prefix"][i], fs=fc["fs"], seconds=5, num_samples=3, seed=5 * 100003 + i)
        assert np.array_equal(got, fc["samples"][i])


def test_docstring_examples_run():
    import doctest

    import ecg2llm.pipeline

    res = doctest.testmod(ecg2llm.pipeline, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 10 and res.failed == 0
