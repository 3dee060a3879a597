"""Lead-contrast guidance (lm/guidance.py): a negative prompt on the lead token of an LM v2."""
import numpy as np
import pytest
import torch
from lm_support import random_v2_lm

from ecg2llm.core.errors import ConfigError
from ecg2llm.lm.control import ControlSpec
from ecg2llm.lm.guidance import guided_bias, lead_contrast, sample_guided

COUNTS = {"beat:N": 90, "beat:V": 10, "rhythm:N": 5, "rhythm:B": 2}


@pytest.fixture(scope="module")
def v2_lm():
    lm = random_v2_lm(COUNTS)
    lm.config.ecg_leads = ["MLII", "V1"]  # trained on both MIT-BIH leads
    return lm


def test_the_first_draw_sees_logits_pushed_away_from_the_contrast_lead(v2_lm, monkeypatch):
    """What is sampled is ``l + (s - 1) (l - l_contrast)`` (+ the sampler's masks), l the LM's logits."""
    import ecg2llm.lm.guidance as g

    seen = []
    real_draw = g.draw

    def spy(logits, params, gen):
        seen.append(logits.clone())
        return real_draw(logits, params, gen)

    monkeypatch.setattr(g, "draw", spy)
    spec = ControlSpec.of_model(v2_lm)
    sample_guided(v2_lm, 2, 3, conditions=["rhythm:N"], lead_guidance=1.5, batch_size=2, seed=0)
    bos = int(v2_lm.config.bos_token_id)
    head = [bos, *spec.prefix("mitdb", "MLII"), spec.id_of("rhythm:N")]
    other = [bos, *spec.prefix("mitdb", "V1"), spec.id_of("rhythm:N")]
    vcut = spec.first_id + spec.n_tokens
    with torch.inference_mode():
        lp = v2_lm(input_ids=torch.tensor([head])).logits[0, -1, :vcut].float()
        lc = v2_lm(input_ids=torch.tensor([other])).logits[0, -1, :vcut].float()
    want = lp + 0.5 * (lp - lc) + guided_bias(spec, vcut, "N")
    ok = torch.isfinite(want)
    assert torch.equal(ok, torch.isfinite(seen[0][0]))
    torch.testing.assert_close(seen[0][0][ok], want[ok], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(lp, lc)  # the lead token matters to this LM


def test_scale_one_or_none_is_the_sampler_of_before_and_a_scale_changes_the_draws(v2_lm):
    kw = dict(n_samples=3, n_codes=60, conditions=["rhythm:N"], grammar=True, batch_size=3, seed=4)
    base = sample_guided(v2_lm, **kw)
    one = sample_guided(v2_lm, lead_guidance=1.0, **kw)
    assert np.array_equal(base.codes, one.codes) and base.events == one.events
    a = sample_guided(v2_lm, lead_guidance=2.0, **kw)
    b = sample_guided(v2_lm, lead_guidance=2.0, **kw)
    assert np.array_equal(a.codes, b.codes)  # deterministic
    assert not np.array_equal(a.codes, base.codes)
    assert a.codes.shape == (3, 60) and a.codes.max() < v2_lm.config.ecg_codebook_size


def test_it_composes_with_rhythm_guidance_and_the_unconditional_branch(v2_lm):
    kw = dict(n_samples=2, n_codes=40, batch_size=2, seed=1)
    both = sample_guided(v2_lm, conditions=["rhythm:B"], guidance=2.0, lead_guidance=1.5, **kw)
    assert both.codes.shape == (2, 40)
    assert not np.array_equal(both.codes, sample_guided(v2_lm, conditions=["rhythm:B"], guidance=2.0, **kw).codes)
    unc = sample_guided(v2_lm, unconditional=True, lead_guidance=1.5, **kw)
    assert unc.codes.shape == (2, 40)


def test_bad_lead_guidance_is_refused_with_what_to_do(v2_lm):
    spec = ControlSpec.of_model(v2_lm)
    assert lead_contrast(v2_lm, spec, "MLII", None) is None
    assert lead_contrast(v2_lm, spec, "MLII", 1.0) is None
    assert lead_contrast(v2_lm, spec, "MLII", 1.25) == (spec.lead_id("MLII"), spec.lead_id("V1"), 1.25)
    assert lead_contrast(v2_lm, spec, "V1", 2)[1] == spec.lead_id("MLII")  # V1's default contrast is MLII
    with pytest.raises(ConfigError, match="finite number >= 0"):
        lead_contrast(v2_lm, spec, "MLII", -1)
    with pytest.raises(ConfigError, match="finite number >= 0"):
        lead_contrast(v2_lm, spec, "MLII", float("nan"))
    with pytest.raises(ConfigError, match="is the lead being generated"):
        lead_contrast(v2_lm, spec, "MLII", 1.5, "MLII")
    with pytest.raises(ConfigError, match="unknown lead 'V7'"):
        lead_contrast(v2_lm, spec, "MLII", 1.5, "V7")
    with pytest.raises(ConfigError, match="needs a lead_guidance scale"):
        lead_contrast(v2_lm, spec, "MLII", None, "V1")


def test_generate_config_and_a_v1_lm_refuse_it():
    import types

    from lm_support import UniformBlockConfig, UniformBlockTokenizer

    from ecg2llm.lm.model import build_model, tokenizer_record
    from ecg2llm.lm.synthesize import GenerateConfig, synthesize

    with pytest.raises(ConfigError, match="finite number >= 0"):
        GenerateConfig(lead_guidance=-0.5)
    with pytest.raises(ConfigError, match="needs --lead_guidance"):
        GenerateConfig(contrast_lead="V1")
    tok = UniformBlockTokenizer(UniformBlockConfig())
    cfg = types.SimpleNamespace(n_layer=1, n_head=2, n_kv_head=None, d_model=16, d_ff=None, context_length=16,
                                rope_theta=1e4, attention_dropout=0.0, tie_embeddings=True, vocab_multiple=8,
                                init_std=0.02, leads=["MLII"])
    v1 = build_model(cfg, {**tokenizer_record(tok), "source": "test"}, None).eval()
    with pytest.raises(ConfigError, match="needs an LM v2"):
        synthesize(v1, tok, 1, 1.0, lead_guidance=1.25, progress=False)


def test_lead_check_polarity_tells_upright_from_inverted_complexes():
    import importlib.util
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "lead_check.py"
    spec = importlib.util.spec_from_file_location("_lead_check", script)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_lead_check"] = mod  # as `import` does (the dataclass looks its module up)
    spec.loader.exec_module(mod)
    t = np.arange(3600)
    beats = np.exp(-0.5 * (((t % 300) - 150) / 4.0) ** 2)  # narrow spikes, 1.2 s apart
    x = np.stack([beats, -beats, 0.2 * beats - 0.8 * np.roll(beats, 6)])  # upright, inverted, rS
    p = mod.polarity(x)
    assert p[0] > 0.9 and p[1] < -0.9 and p[2] < 0
    np.testing.assert_allclose(mod.polarity(3 * x + 5), p)  # gain and offset do not matter
