"""One request object (issue 39, deliver 3): ``GenerateConfig`` drives ``synthesize``, ``sample_guided`` and
``ECGPipeline``; the keyword arguments it replaced still work with a ``FutureWarning`` naming the exact request
to pass; the v2 sampler draws the ids it drew before the refactor (``tests/v2_sampler_pins.json``, drawn with
the API of commit 08d5191); the control spec is worked out once per loaded model."""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from lm_support import UniformBlockConfig, UniformBlockTokenizer, random_lm, random_v2_lm

from ecg2llm.lm.model import PRETRAINED_DIR
from ecg2llm.lm.request import GenerateConfig, request_repr

PINS = json.loads((Path(__file__).parent / "v2_sampler_pins.json").read_text())
COUNTS = {"beat:N": 90, "beat:V": 10, "rhythm:N": 5, "rhythm:B": 2, "rhythm:AFIB": 3}
#: the pinned draws of shipped LMs: (model, request fields); every one 2 samples x 1.5 s, seed 3, batch 2,
#: float32 KV cache, no texture ("prompt": the first 36 codes of another case's first sample)
SHIPPED_CASES = {
    "default/plain": ("v2", {}),
    "default/rhythm:VT": ("v2", {"condition": ["rhythm:VT"]}),  # + the LM's default lead guidance (2)
    "conditional/rhythm:B,g2": ("v2-conditional", {"condition": ["rhythm:B"], "guidance": 2.0}),
    "conditional/beat:V,cache": ("v2-conditional", {"condition": ["beat:V"], "condition_strength": 3.0,
                                                 "beat_cache": 0.25}),
    "conditional/label_gap,lead_guidance": ("v2-conditional", {"label_gap": 1.0, "lead_guidance": 1.25}),
    "conditional/rhythm:N,nogrammar,warpers": ("v2-conditional", {"condition": ["rhythm:N"], "grammar": False,
                                                               "temperature": 0.9, "top_k": 50, "top_p": 0.95}),
    "default/prompt": ("v2", {"prompt": "default/plain"}),
}


def _replacement(w) -> str:
    """The GenerateConfig(...) text a deprecation warning tells the caller to write."""
    m = re.search(r"(GenerateConfig\(.*?\))[,)]", str(w.message))
    assert m, str(w.message)
    return m.group(1)


# ------------------------------------------------------------------------------- same seed, same ids
def test_v2_sampler_draws_the_pinned_ids_of_before_the_refactor():
    from ecg2llm.lm.guidance import sample_guided
    from ecg2llm.lm.synthesize import synthesize

    tok = UniformBlockTokenizer(UniformBlockConfig())
    req = GenerateConfig(num_samples=3, seconds=1.5, seed=5, batch_size=2, texture=False)
    assert synthesize(random_lm(), tok, req, progress=False).ids.tolist() == PINS["toy/plain"]
    lm2 = random_v2_lm(COUNTS)
    base = GenerateConfig(num_samples=3, batch_size=2, kv_cache="float32", condition_strength=0.0, grammar=False)
    got = sample_guided(lm2, replace(base, seed=1), 40, unconditional=True).codes
    assert got.tolist() == PINS["sample_guided/uncond"]
    got = sample_guided(lm2, replace(base, seed=2, condition=["rhythm:B"], guidance=1.5, grammar=True), 40).codes
    assert got.tolist() == PINS["sample_guided/B,g1.5,grammar"]


@pytest.mark.skipif(not (PRETRAINED_DIR / "v2-conditional" / "config.json").is_file(), reason="no shipped LMs")
def test_shipped_v2_lms_draw_the_pinned_ids_of_before_the_refactor():
    from ecg2llm.lm.model import load_lm, load_tokenizer_for
    from ecg2llm.lm.synthesize import synthesize

    loaded = {}
    for name, (m, fields) in SHIPPED_CASES.items():
        if m not in loaded:
            lm, folder = load_lm(m, "cpu")
            loaded[m] = lm, load_tokenizer_for(lm.config, folder, None)
        lm, tok = loaded[m]
        fields = dict(fields)
        prompt = np.array(PINS[fields.pop("prompt")][0][:36]) if "prompt" in fields else None
        req = GenerateConfig(num_samples=2, seconds=1.5, seed=3, batch_size=2, texture=False, kv_cache="float32",
                             **fields)
        assert synthesize(lm, tok, req, prompt=prompt, progress=False).ids.tolist() == PINS[name], name


# ------------------------------------------------------------------------------- the deprecated keywords
def test_synthesize_old_keywords_warn_with_the_request_to_write_and_draw_the_same():
    from ecg2llm.lm.sampling import SamplingParams
    from ecg2llm.lm.synthesize import synthesize

    lm, tok = random_lm(), UniformBlockTokenizer(UniformBlockConfig())
    with pytest.warns(FutureWarning, match=r"synthesize: the keyword arguments .*deprecated.*removed in ecg2llm "
                                           r"0\.4\.0.*synthesize\(model, tok, GenerateConfig\(") as rec:
        old = synthesize(lm, tok, 3, 1.5, seed=5, batch_size=2, params=SamplingParams(top_k=7), progress=False)
    text = _replacement(rec[0])
    assert text == "GenerateConfig(num_samples=3, seconds=1.5, seed=5, top_k=7, batch_size=2)"
    req = eval(text, {"GenerateConfig": GenerateConfig})  # what the warning says to write, verbatim
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new call warns about nothing
        new = synthesize(lm, tok, req, progress=False)
    assert np.array_equal(old.ids, new.ids) and np.array_equal(old.signals, new.signals)
    with pytest.raises(TypeError, match="unexpected keyword argument.*temprature"):
        synthesize(lm, tok, 3, 1.5, temprature=2.0)
    with pytest.raises(TypeError, match="request only"):
        synthesize(lm, tok, req, seed=1)


def test_sample_guided_old_arguments_warn_with_the_request_to_write_and_draw_the_same():
    from ecg2llm.lm.beatcache import BeatCacheParams
    from ecg2llm.lm.guidance import sample_guided

    lm2 = random_v2_lm(COUNTS)
    kw = {"conditions": ["rhythm:N", "beat:V"], "strength": 2.0, "guidance": 1.5, "batch_size": 2, "seed": 4,
          "kv_cache": "float32"}
    with pytest.warns(FutureWarning, match=r"sample_guided: .*n_samples.*deprecated") as rec:
        old = sample_guided(lm2, 3, 30, **kw)
    text = _replacement(rec[0])
    # the old defaults that differ from the request's are spelled out: strength 0 -> given, grammar False
    assert "condition=['rhythm:N', 'beat:V']" in text and "condition_strength=2.0" in text
    assert "grammar=False" in text and "n_codes=30" in str(rec[0].message)
    new = sample_guided(lm2, eval(text, {"GenerateConfig": GenerateConfig}), 30)
    assert np.array_equal(old.codes, new.codes) and old.streams[0].tolist() == new.streams[0].tolist()
    # a BeatCacheParams of its own shape still samples with that shape (the warning says where the shape
    # comes from on the request path)
    from ecg2llm.core.errors import ConfigError

    with pytest.warns(FutureWarning, match="beat cache's shape then comes from the LM's config"), \
            pytest.raises(ConfigError, match="no FSQ levels"):  # this toy LM's tokenizer record has none
        sample_guided(lm2, 2, 10, beat_cache=BeatCacheParams(strength=0.5, sigma=0.3), seed=0)


@pytest.mark.skipif(not (PRETRAINED_DIR / "v2" / "config.json").is_file(), reason="no shipped default LM")
def test_pipeline_old_keywords_warn_with_the_request_to_write_and_give_the_same_arrays():
    from ecg2llm import ECGPipeline

    pipe = ECGPipeline.from_pretrained("v2", device="cpu")
    with pytest.warns(FutureWarning, match=r"ECGPipeline\.generate: the keyword arguments texture, top_k are "
                                           r"deprecated .*pipe\.generate\(\.\.\., request=GenerateConfig") as rec:
        old = pipe.generate(2, 1, seed=0, top_k=1, texture=False)
    text = _replacement(rec[0])
    assert text == "GenerateConfig(top_k=1, texture=False)"
    new = pipe.generate(2, 1, seed=0, request=eval(text, {"GenerateConfig": GenerateConfig}))
    assert np.array_equal(old, new)
    # explicit arguments > request > defaults
    req = GenerateConfig(num_samples=3, seconds=2.0, seed=9, texture=False)
    assert pipe.generate(request=req).shape == (3, 720)
    assert np.array_equal(pipe.generate(2, 1, request=req), pipe.generate(request=replace(req, num_samples=2,
                                                                                          seconds=1.0)))
    with pytest.warns(FutureWarning, match=r"ECGPipeline\.forecast: the keyword argument batch_size is deprecated"):
        f_old = pipe.forecast(old[0], seconds=0.5, num_samples=2, seed=1, batch_size=1)
    f_new = pipe.forecast(old[0], seconds=0.5, num_samples=2, seed=1, request=GenerateConfig(batch_size=1))
    assert f_old.shape == (2, 180) and np.array_equal(f_old, f_new)
    with pytest.raises(TypeError, match="unexpected keyword argument.*temp"):
        pipe.generate(1, 1, temp=0.5)
    with pytest.raises(ValueError, match="request must be an ecg2llm.lm.request.GenerateConfig"):
        pipe.generate(1, 1, request={"top_k": 1})


def test_request_repr_round_trips():
    req = GenerateConfig(num_samples=2, condition=["rhythm:AFIB"], guidance=2.0, top_p=0.9)
    assert eval(request_repr(req), {"GenerateConfig": GenerateConfig}) == req
    assert request_repr(GenerateConfig()) == "GenerateConfig()"


# ------------------------------------------------------------------------------- control spec once per model
def test_control_spec_is_worked_out_once_per_loaded_model():
    from ecg2llm.lm.conditioning import ConditionSpec
    from ecg2llm.lm.control import ControlSpec

    lm2 = random_v2_lm(COUNTS)
    a = ControlSpec.of_model(lm2)
    assert a is ControlSpec.of_model(lm2) and a.counts == COUNTS  # the same object: parsed once
    assert ConditionSpec.of_model(lm2) is ConditionSpec.of_model(lm2)
    assert ControlSpec.of_model(random_v2_lm(COUNTS)) is not a  # another model, its own spec
    assert ControlSpec.of_model(random_lm()) is None
    lm2.config.ecg_conditioning = {**lm2.config.ecg_conditioning, "condition_dropout": 0.0}  # replaced: re-parsed
    assert ControlSpec.of_model(lm2).condition_dropout == 0.0


@pytest.mark.skipif(not (PRETRAINED_DIR / "v2" / "config.json").is_file(), reason="no shipped default LM")
def test_a_pipeline_parses_its_control_spec_at_most_once(monkeypatch):
    """Before the memo every ``generate`` parsed ``config.ecg_conditioning`` three times (the pipeline's
    condition check, ``check_request`` and ``sample_guided``)."""
    from ecg2llm import ECGPipeline
    from ecg2llm.lm.control import ControlSpec

    pipe = ECGPipeline.from_pretrained("v2", device="cpu")  # a fresh model object
    parses = []
    parse = ControlSpec.from_dict.__func__
    monkeypatch.setattr(ControlSpec, "from_dict", classmethod(lambda cls, d: parses.append(1) or parse(cls, d)))
    req = GenerateConfig(texture=False, kv_cache="float32")
    for cond in ("rhythm:N", "rhythm:AFIB"):
        pipe.generate(1, 0.5, condition=cond, request=req)
    assert pipe.is_conditional and pipe.supports_guidance and pipe.control is pipe.control
    assert len(parses) <= 1
