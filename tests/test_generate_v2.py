"""Generation with LM v2 and tokenizer v2: guidance, source/lead, texture decode (issue 17, deliverables 2-3).

The LMs here are untrained (random weights, context 48): what is tested is the dispatch and plumbing of
:func:`ecg2llm.lm.synthesize.synthesize`, ``lm/generate.py`` and :class:`ecg2llm.ECGPipeline`, not sample quality.
The v2 tokenizer is the shipped default (``fsq2`` with a fitted texture model).
"""
from __future__ import annotations

import json
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from lm_support import UniformBlockConfig, UniformBlockTokenizer

from ecg2llm.core.errors import ConfigError, TokenizerError
from ecg2llm.lm.control import ControlSpec
from ecg2llm.lm.model import TOKENIZER_SUBDIR, build_model, tokenizer_record
from ecg2llm.lm.request import GenerateConfig

COUNTS = {"beat:N": 90, "beat:V": 10, "rhythm:N": 5, "rhythm:AFIB": 2}


def _model(tok, spec=None, seed: int = 0):
    cfg = types.SimpleNamespace(n_layer=2, n_head=2, n_kv_head=None, d_model=32, d_ff=None, context_length=48,
                                rope_theta=1e4, attention_dropout=0.0, tie_embeddings=True, vocab_multiple=64,
                                init_std=0.02, leads=["MLII", "V1"] if spec is not None else ["MLII"])
    torch.manual_seed(seed)
    return build_model(cfg, {**tokenizer_record(tok), "source": "test"}, spec).eval()


def _save(model, tok, folder: Path) -> Path:
    model.save_pretrained(folder)
    tok.save_pretrained(folder / TOKENIZER_SUBDIR)
    return folder


@pytest.fixture(scope="module")
def tok2():
    from ecg2llm.tokenizer.base import ECGTokenizer

    tok = ECGTokenizer.from_pretrained("v2")
    if not getattr(tok, "has_texture", False):
        pytest.skip("the shipped default tokenizer has no texture model")
    return tok


@pytest.fixture(scope="module")
def v2_lm(tok2):
    """A conditional LM v2 trained (notionally) with condition dropout 0.1, on tokenizer v2."""
    spec = ControlSpec(first_id=tok2.vocab_size + 3, conditional=True, condition_dropout=0.1, counts=COUNTS)
    return _model(tok2, spec)


@pytest.fixture(scope="module")
def v2_dir(tmp_path_factory, v2_lm, tok2) -> Path:
    return _save(v2_lm, tok2, tmp_path_factory.mktemp("lm2") / "final")


@pytest.fixture(scope="module")
def v1_toy():
    """A v1 LM (no control tokens) on the toy tokenizer of lm_support (no texture)."""
    tok = UniformBlockTokenizer(UniformBlockConfig())
    return _model(tok), tok


def _syn(model, tok, **kw):
    from ecg2llm.lm.synthesize import synthesize

    args = {"num_samples": 3, "seconds": 2.0, "seed": 4, "batch_size": 2, "progress": False}
    return synthesize(model, tok, **{**args, **kw})


# ------------------------------------------------------------------------------------------ guidance
def test_v2_dispatches_to_sample_guided_and_guidance_one_is_conditional_only(v2_lm, tok2):
    from ecg2llm.lm.guidance import sample_guided

    kw = {"condition": ["rhythm:N", "beat:V"], "condition_strength": 5.0, "texture": False}
    plain = _syn(v2_lm, tok2, **kw)
    g1 = _syn(v2_lm, tok2, guidance=1.0, **kw)
    g2 = _syn(v2_lm, tok2, guidance=2.0, **kw)
    ref = sample_guided(v2_lm, 3, 72, conditions=["rhythm:N", "beat:V"], strength=5.0, batch_size=2, seed=4)
    assert plain.lm_version == 2 and np.array_equal(plain.ids, ref.codes)  # the v2 sampler, same draws
    assert np.array_equal(plain.ids, g1.ids) and np.array_equal(plain.signals, g1.signals)
    assert not np.array_equal(plain.ids, g2.ids)
    assert plain.signals.shape == (3, 720) and np.isfinite(plain.signals).all()
    # beat labels -> annotations, as the v1 conditional path writes them
    for a in plain.annotations:
        s = a.summary()
        assert s["rhythms"] == ["N"] and set(s["beats_per_class"]) <= {"N", "V"}
    assert sum(a.summary()["beats"] for a in plain.annotations) > 0  # strength 5 on beat:V draws labels
    assert any(a.summary()["beats_per_class"].get("V", 0) for a in plain.annotations)


def test_source_and_lead_change_the_prefix_and_unknown_ones_are_refused(v2_lm, tok2):
    a = _syn(v2_lm, tok2, texture=False)
    b = _syn(v2_lm, tok2, texture=False, source="mitdb", lead="MLII")
    c = _syn(v2_lm, tok2, texture=False, source="cinc2017", lead="I")
    assert np.array_equal(a.ids, b.ids)  # the defaults are mitdb / MLII
    assert not np.array_equal(a.ids, c.ids)
    with pytest.raises(ConfigError, match="unknown source 'ptbxl'"):
        _syn(v2_lm, tok2, source="ptbxl")
    with pytest.raises(ConfigError, match="unknown lead 'aVR'"):
        _syn(v2_lm, tok2, lead="aVR")
    with pytest.raises(ConfigError, match="finite number >= 0"):
        _syn(v2_lm, tok2, guidance=float("nan"))
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        _syn(v2_lm, tok2, prompt=np.full(4, tok2.vocab_size))  # PAD is not an ECG code
    from ecg2llm.lm.guidance import sample_guided

    with pytest.raises(ConfigError, match="no PAD/BOS/EOS"):
        sample_guided(v2_lm, 1, 4, prompt=np.full(4, tok2.vocab_size))


def _real_prompt(tok, data_dir, seconds: float = 3.0) -> np.ndarray:
    from ecg2llm.tokenizer.data import read_record

    rec = read_record("100", data_dir, lead="MLII", annotations=False)
    ids, _ = tok.encode(rec.signal[: int(seconds * rec.fs)], rec.fs)
    return np.asarray(ids, np.int64)


def test_null_label_stream_puts_one_null_beat_per_detected_beat(v2_lm, tok2, data_dir):
    from ecg2llm.lm.conditioning import split_stream
    from ecg2llm.lm.guidance import null_label_stream
    from ecg2llm.lm.rhythm_check import detect_beats

    spec = ControlSpec.of_model(v2_lm)
    codes = _real_prompt(tok2, data_dir)
    x = tok2.decode(codes, None)
    stream = null_label_stream(codes, x, tok2.fs, tok2.samples_per_token, spec)
    back, events = split_stream(stream, spec)
    assert np.array_equal(back, codes)  # the codes are untouched, in order
    n_beats = len(detect_beats(x, tok2.fs))
    assert 2 <= n_beats <= 6  # record 100 runs at ~75 bpm: 3-4 beats in 3 s
    assert [name for _, name in events] == ["beat:?"] * n_beats


def test_v2_continues_a_prompt_and_returns_only_the_new_codes(v2_lm, tok2, data_dir):
    prompt = _real_prompt(tok2, data_dir, 1.0)
    a = _syn(v2_lm, tok2, prompt=prompt, texture=False)
    b = _syn(v2_lm, tok2, prompt=prompt, texture=False)
    n_new = int(np.ceil(2.0 * tok2.tokens_per_second))
    assert a.ids.shape == (3, n_new) and a.ids.max() < tok2.vocab_size
    assert np.array_equal(a.ids, b.ids)  # same seed, same continuation
    n_out = int(round((len(prompt) / tok2.tokens_per_second + 2.0) * tok2.fs))
    assert a.signals.shape == (3, n_out)
    # the decoded prompt is the prompt's own decode (the continuation cannot reach back)
    head = tok2.decode(prompt, None)[: int(0.5 * tok2.fs)]
    assert np.allclose(a.signals[0, : len(head)], head, atol=1e-4)
    c = _syn(v2_lm, tok2, prompt=prompt[: len(prompt) // 2], texture=False)
    assert not np.array_equal(a.ids, c.ids)  # the prompt is seen


def test_guidance_needs_dropout_and_conditions_need_a_conditional_v2(tok2):
    no_drop = _model(tok2, ControlSpec(first_id=tok2.vocab_size + 3, conditional=True, counts=COUNTS))
    with pytest.raises(ConfigError, match="condition_dropout"):
        _syn(no_drop, tok2, guidance=2.0)
    uncond = _model(tok2, ControlSpec(first_id=tok2.vocab_size + 3, conditional=False))
    s = _syn(uncond, tok2, texture=False)
    assert s.annotations is None and s.ids.shape == (3, 72) and s.ids.max() < tok2.vocab_size
    with pytest.raises(ConfigError, match="needs a conditional LM"):
        _syn(uncond, tok2, condition=["rhythm:N"])
    from ecg2llm import ECGPipeline

    pipe = ECGPipeline(uncond, tok2)
    assert not pipe.is_conditional and pipe.conditions == [] and not pipe.supports_guidance
    assert np.array_equal(pipe.generate(3, 2, seed=4, request=GenerateConfig(batch_size=2, texture=False)), s.signals)


def test_v1_lm_refuses_guidance_source_lead_and_texture(v1_toy):
    model, tok = v1_toy
    needs = r"needs an LM trained with condition dropout \(configs/lm/v2_\*.yaml\)"
    with pytest.raises(ConfigError, match=needs):
        _syn(model, tok, guidance=2.0)
    with pytest.raises(ConfigError, match="need an LM v2"):
        _syn(model, tok, source="cinc2017")
    with pytest.raises(ConfigError, match="need an LM v2"):
        _syn(model, tok, lead="V1")
    with pytest.raises(ConfigError, match="texture=True needs a tokenizer v2"):
        _syn(model, tok, texture=True)


def test_v1_path_is_the_plain_sampler_and_decode(v1_toy):
    from ecg2llm.lm.sampling import SamplingParams, sample_tokens

    model, tok = v1_toy
    s = _syn(model, tok)
    ids = sample_tokens(model, 3, 72, params=SamplingParams(), batch_size=2, seed=4, progress=False)
    assert s.lm_version == 1 and not s.texture and s.texture_seeds is None
    assert np.array_equal(s.ids, ids)
    assert np.array_equal(s.signals, np.stack([tok.decode(r, None) for r in ids]).astype(np.float32))
    assert np.array_equal(_syn(model, tok, texture=False).signals, s.signals)


# ------------------------------------------------------------------------------------------ texture
def test_texture_is_on_by_default_for_tokenizer_v2_and_seeded(v2_lm, tok2):
    from ecg2llm.lm.synthesize import texture_seed, wander_seed

    tex = _syn(v2_lm, tok2)
    again = _syn(v2_lm, tok2)
    clean = _syn(v2_lm, tok2, texture=False)
    other = _syn(v2_lm, tok2, seed=5)
    assert tex.texture and not clean.texture
    assert tex.texture_seeds == [texture_seed(4, i) for i in range(3)]
    assert len(set(tex.texture_seeds)) == 3  # every sample its own texture
    assert np.array_equal(tex.signals, again.signals)  # same seed => identical
    assert np.array_equal(tex.ids, clean.ids) and not np.array_equal(tex.signals, clean.signals)
    assert not np.array_equal(tex.signals, other.signals)
    assert np.array_equal(clean.signals, np.stack([tok2.decode(r) for r in clean.ids]))  # the clean band
    assert tex.wander == tok2.has_wander_model and not clean.wander
    base = np.zeros_like(tex.signals)
    for i, r in enumerate(tex.ids):
        st = tok2.sample_state(tex.signals.shape[1], seed=wander_seed(texture_seed(4, i))) if tex.wander else None
        assert np.array_equal(tex.signals[i], tok2.decode(r, st, texture=True, seed=texture_seed(4, i)))
        if st is not None:  # the sampled baseline, as decode adds it
            base[i] = tok2.decode(r, st) - tok2.decode(r)[: tex.signals.shape[1]]
    if tex.wander:  # a baseline of its own per sample, slow: a 10-s wander, not noise
        assert not np.allclose(base[0], base[1]) and np.abs(np.diff(base, axis=1)).max() < 0.05
    # texture is detail on top of the band (and baseline), not another signal; 64 uV RMS on this untrained LM
    assert float(np.sqrt(np.mean((tex.signals - base - clean.signals) ** 2))) < 0.1
    # the texture of a sample does not depend on the batch it was drawn in
    one = _syn(v2_lm, tok2, batch_size=3)
    assert one.texture_seeds == tex.texture_seeds


def test_v1_lm_on_tokenizer_v2_gets_texture_too(tok2):
    s = _syn(_model(tok2), tok2, num_samples=2)
    assert s.lm_version == 1 and s.texture and s.annotations is None
    assert not np.array_equal(s.signals, _syn(_model(tok2), tok2, num_samples=2, texture=False).signals)


# ------------------------------------------------------------------------------------------ lm/generate.py
def test_generate_cli_records_guidance_texture_source_and_lead(tmp_path, v2_dir, tok2):
    import wfdb

    from ecg2llm.lm.generate import main
    from ecg2llm.lm.synthesize import texture_seed

    args = ["--model", str(v2_dir), "--num-samples", "2", "--seconds", "2", "--seed", "3", "--png", "false",
            "--condition", "rhythm:N,beat:V", "--condition_strength", "5", "--guidance", "2", "--lead", "V1"]
    assert main([*args, "--out", str(tmp_path / "tex")]) == 0
    assert main([*args, "--out", str(tmp_path / "clean"), "--texture", "false"]) == 0
    m = json.loads((tmp_path / "tex" / "manifest.json").read_text())
    assert m["lm_version"] == 2 and m["lead"] == "V1"
    assert m["guidance"] == {"scale": 2.0, "source": "mitdb", "lead": "V1",
                             "sampler": "ecg2llm.lm.guidance.sample_guided"}
    assert m["texture"]["on"] is True and m["config"]["guidance"] == 2.0
    assert (m["texture"]["wander"] is not None) == tok2.has_wander_model
    assert m["texture"]["model"] == tok2.texture_kind
    assert m["conditioning"]["grammar"] is None  # beat:V asked for: the rhythm:N grammar steps aside
    assert [s["texture_seed"] for s in m["samples"]] == [texture_seed(3, i) for i in range(2)]
    assert m["conditioning"]["conditions"] == ["rhythm:N", "beat:V"]
    mc = json.loads((tmp_path / "clean" / "manifest.json").read_text())
    assert mc["texture"] == {"on": False, "seed": None, "model": None, "wander": None}
    assert "texture_seed" not in mc["samples"][0]
    ids = np.load(tmp_path / "clean" / "tokens.npy")
    assert np.array_equal(ids, np.load(tmp_path / "tex" / "tokens.npy"))
    x = np.load(tmp_path / "clean" / "sample_000.npy")
    assert np.array_equal(x, tok2.decode(ids[0].astype(np.int64)))
    assert not np.array_equal(x, np.load(tmp_path / "tex" / "sample_000.npy"))
    rec = wfdb.rdrecord(str(tmp_path / "tex" / "sample_000"))
    assert rec.sig_name == ["V1"] and rec.sig_len == 720
    assert (tmp_path / "tex" / "sample_000.atr").is_file()
    assert m["lead_guidance"] is None and mc["lead_guidance"] is None
    assert main([*args[:-2], "--out", str(tmp_path / "lg"), "--lead_guidance", "1.5", "--texture", "false"]) == 0
    ml = json.loads((tmp_path / "lg" / "manifest.json").read_text())
    assert ml["lead_guidance"] == {"scale": 1.5, "lead": "MLII", "contrast_lead": "V1",
                                   "sampler": "ecg2llm.lm.guidance.sample_guided"}
    assert not np.array_equal(np.load(tmp_path / "lg" / "tokens.npy"), ids)
    from ecg2llm.lm.kvdecode import attend_one

    assert m["kv_cache"] == ("float16" if attend_one() is not None else "float32")  # auto on CPU
    assert main([*args, "--out", str(tmp_path / "f32"), "--texture", "false", "--kv_cache", "float32"]) == 0
    assert json.loads((tmp_path / "f32" / "manifest.json").read_text())["kv_cache"] == "float32"
    assert main([*args, "--out", str(tmp_path / "bad"), "--kv_cache", "fp16"]) == 2
    assert not (tmp_path / "bad").exists()


def test_generate_cli_refuses_v2_flags_on_a_v1_lm(tmp_path, capsys):
    from ecg2llm.lm.generate import main

    tok = UniformBlockTokenizer(UniformBlockConfig())
    v1 = _save(_model(tok), tok, tmp_path / "v1")
    for extra, msg in ((["--guidance", "2"], "condition dropout"), (["--source", "cinc2017"], "LM v2"),
                       (["--texture", "true"], "texture=True needs")):
        assert main(["--model", str(v1), "--out", str(tmp_path / "g"), *extra]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
    assert main(["--model", str(v1), "--out", str(tmp_path / "g"), "--guidance", "-1"]) == 2
    assert "finite number >= 0" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ ECGPipeline
def test_pipeline_generate_guidance_texture_source_lead(v2_lm, tok2):
    from ecg2llm import ECGPipeline

    pipe = ECGPipeline(v2_lm, tok2)
    assert pipe.is_conditional and pipe.supports_guidance and pipe.has_texture
    assert set(pipe.conditions) == {"beat:N", "beat:V", "rhythm:N", "rhythm:AFIB"}  # no null/source/lead
    g2 = GenerateConfig(guidance=2.0)
    x = pipe.generate(2, 2, seed=1, condition="rhythm:AFIB", request=g2)
    assert x.shape == (2, 720) and np.array_equal(x, pipe.generate(2, 2, seed=1, condition="rhythm:AFIB",
                                                                   request=g2))
    syn = _syn(v2_lm, tok2, num_samples=2, seed=1, batch_size=64, condition=["rhythm:AFIB"], guidance=2.0)
    assert np.array_equal(x, syn.signals)  # the one sampling path
    clean = pipe.generate(2, 2, seed=1, condition="rhythm:AFIB", request=replace(g2, texture=False))
    assert not np.array_equal(x, clean)
    hand = pipe.generate(2, 2, seed=1, request=GenerateConfig(source="cinc2017", lead="I", texture=False))
    assert not np.array_equal(hand, pipe.generate(2, 2, seed=1, request=GenerateConfig(texture=False)))
    f = pipe.forecast(clean[0], seconds=1, num_samples=2, seed=3)  # an LM v2 continues a prefix too
    assert f.shape == (2, 360) and np.isfinite(f).all()
    assert np.array_equal(f, pipe.forecast(clean[0], seconds=1, num_samples=2, seed=3))
    with pytest.raises(ValueError, match="not a condition"):
        pipe.generate(1, 1, condition="beat:?")


def test_pipeline_v1_refuses_guidance_and_keeps_forecast_clean(v1_toy):
    from ecg2llm import ECGPipeline

    model, tok = v1_toy
    pipe = ECGPipeline(model, tok)
    assert not pipe.supports_guidance and not pipe.has_texture
    with pytest.raises(ValueError, match="condition dropout"):
        pipe.generate(1, 1, request=GenerateConfig(guidance=1.5))
    with pytest.raises(ValueError, match="texture=True needs"):
        pipe.generate(1, 1, request=GenerateConfig(texture=True))
    assert np.array_equal(pipe.generate(2, 1, seed=2), pipe.generate(2, 1, seed=2,
                                                                     request=GenerateConfig(texture=False)))


def test_lm_forecast_continues_prefixes_with_an_lm_v2_as_the_pipeline_does(tmp_path, v2_dir, v2_lm, tok2,
                                                                           tiny_db):
    from ecg2llm import ECGPipeline
    from ecg2llm.lm.forecast import ForecastConfig, forecast
    from ecg2llm.tokenizer.forecasts import load_forecasts

    forecast(ForecastConfig(model=str(v2_dir), out=str(tmp_path / "fc"), data_dir=str(tiny_db), records=["100"],
                            n_tasks=2, k=2, prefix_s=1.0, horizon_s=0.5, seed=1, device="cpu"))
    f = load_forecasts(tmp_path / "fc")
    assert f["samples"].shape == (2, 2, 180) and np.isfinite(f["samples"]).all()
    # task i with --seed s --k K is forecast(prefix_i, num_samples=K, seed=s * 100003 + i, batch_size=K)
    same = ECGPipeline(v2_lm, tok2).forecast(f["prefix"][1], seconds=0.5, num_samples=2, seed=100003 + 1,
                                             batch_size=2)
    np.testing.assert_allclose(f["samples"][1], same, atol=1e-5)


def test_a_condition_default_switches_lead_guidance_on_unless_the_caller_sets_it(v2_lm, tok2, monkeypatch):
    """``config.ecg_condition_defaults`` (``default``: lead guidance 2 for ``rhythm:VT``) applies to requests of
    that condition when ``lead_guidance`` is left unset; an explicit value (1 = off) wins; others untouched."""
    kw = {"condition": ["rhythm:N"], "texture": False}
    plain, other = _syn(v2_lm, tok2, **kw), _syn(v2_lm, tok2, condition=["rhythm:AFIB"], texture=False)
    explicit = _syn(v2_lm, tok2, lead_guidance=2.0, **kw)
    monkeypatch.setattr(v2_lm.config, "ecg_condition_defaults", {"rhythm:N": {"lead_guidance": 2.0}}, raising=False)
    auto = _syn(v2_lm, tok2, **kw)
    assert np.array_equal(auto.ids, explicit.ids) and not np.array_equal(auto.ids, plain.ids)
    assert auto.lead_guidance == {**explicit.lead_guidance, "model_default_for": "rhythm:N"}
    off = _syn(v2_lm, tok2, lead_guidance=1.0, **kw)
    assert np.array_equal(off.ids, plain.ids) and off.lead_guidance is None
    assert np.array_equal(_syn(v2_lm, tok2, condition=["rhythm:AFIB"], texture=False).ids, other.ids)
    assert _syn(v2_lm, tok2, texture=False).lead_guidance is None  # unconditional: no default
    monkeypatch.setattr(v2_lm.config, "ecg_condition_defaults", {"rhythm:N": {"temperature": 0.8}})
    with pytest.raises(ConfigError, match=r"ecg_condition_defaults\['rhythm:N'\] sets temperature"):
        _syn(v2_lm, tok2, **kw)


def test_the_shipped_default_recommends_lead_guidance_for_vt():
    cfg = json.loads((Path(__file__).resolve().parents[1] / "lm/pretrained/v2/config.json").read_text())
    assert cfg["ecg_condition_defaults"] == {"rhythm:VT": {"lead_guidance": 2.0}}


def test_v2_refuses_label_guidance(v2_lm, tok2):
    """label_guidance is LM v3's opt-in processor: the v2 loop says so instead of ignoring it."""
    from ecg2llm.lm.request import GenerateConfig
    from ecg2llm.lm.synthesize import synthesize

    with pytest.raises(ConfigError, match="label_guidance"):
        synthesize(v2_lm, tok2, GenerateConfig(num_samples=1, seconds=1, label_guidance=1.0))
