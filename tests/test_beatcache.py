"""The beat cache (lm/beatcache.py): a normalized product of the LM with a kernel around the previous beats."""
import math

import numpy as np
import pytest
import torch
from lm_support import random_lm, random_v2_lm

from ecg2llm.core.errors import ConfigError
from ecg2llm.lm.beatcache import (
    CONFIG_KEY,
    BeatCache,
    BeatCacheParams,
    cache_log_probs,
    kernel_rows,
    lattice_kernels,
    resolve,
)

LEVELS = [4, 4, 4]  # 64 codes, as random_v2_lm's codebook
N_CODES = 64
BEAT, OTHER = 70, 80  # a boundary id and a control id that is not one (ids >= N_CODES)


def _digits(c, levels):
    out, base = [], 1
    for n in levels:
        out.append((c // base) % n)
        base *= n
    return np.array(out)


def test_kernel_rows_are_the_fsq_lattice_gaussian():
    levels, sigma = [4, 3, 5], 0.8
    rows = kernel_rows(torch.arange(60), levels, lattice_kernels(levels, sigma)).numpy()  # (60, 60)
    for c in (0, 7, 33, 59):
        want = [np.exp(-((_digits(c, levels) - _digits(e, levels)) ** 2).sum() / (2 * sigma**2)) for e in range(60)]
        np.testing.assert_allclose(rows[c], want, rtol=1e-5)
        assert rows[c].argmax() == c and rows[c, c] == pytest.approx(1.0)


def _cache(**kw):
    return BeatCache(BeatCacheParams(**{"strength": 1.0, "sigma": 0.7, **kw}), LEVELS, [BEAT], "cpu")


def _feed(cache, seq):
    state = cache.new_state(1, "cpu")
    for t in seq:
        cache.update(state, torch.tensor([t]), N_CODES)
    return state


def test_update_buffers_whole_beats_only():
    cache = _cache(beats=2)
    s = _feed(cache, [5, 6, BEAT, 1, 2, OTHER, 3, BEAT, 9])  # codes before the first label are no beat
    assert s["prev_len"].tolist() == [[3, 0]] and s["prev"][0, 0, :3].tolist() == [1, 2, 3]
    assert s["cur_len"].item() == 1 and s["cur"][0, 0].item() == 9
    s = _feed(cache, [BEAT, 1, 2, 3, BEAT, 4, BEAT, 7])
    assert s["prev_len"].tolist() == [[1, 3]] and s["prev"][0, 1, :3].tolist() == [1, 2, 3]


def test_apply_keeps_control_tokens_and_reweights_codes_towards_the_previous_beat():
    torch.manual_seed(0)
    logits = torch.randn(1, 90)
    lp = torch.log_softmax(logits, -1)
    cache = _cache()
    fresh = cache.apply(logits, cache.new_state(1, "cpu"), N_CODES)
    torch.testing.assert_close(fresh, lp)  # no earlier beat: the LM alone
    s = _feed(cache, [BEAT, 17, 40, BEAT])  # next code: phase 0 of the last beat was code 17
    out = cache.apply(logits, s, N_CODES)
    torch.testing.assert_close(out[:, N_CODES:], lp[:, N_CODES:])  # control tokens: the LM's
    assert torch.logsumexp(out[0, :N_CODES], 0) == pytest.approx(float(torch.logsumexp(lp[0, :N_CODES], 0)), abs=1e-5)
    far = 63  # digits (3, 3, 3): the lattice corner far from 17 = (1, 0, 1)
    assert out[0, 17] > lp[0, 17] and out[0, far] < lp[0, far]
    torch.testing.assert_close(_cache(strength=0.0).apply(logits, s, N_CODES), lp)
    # the phase beyond every previous beat's length: the LM alone
    s2 = _feed(cache, [BEAT, 17, BEAT, 3, 4])
    torch.testing.assert_close(cache.apply(logits, s2, N_CODES), lp)


def test_a_grammar_that_masks_every_code_is_left_alone():
    logits = torch.randn(1, 90)
    logits[:, :N_CODES] = -float("inf")
    cache = _cache()
    out = cache.apply(logits, _feed(cache, [BEAT, 1, BEAT]), N_CODES)
    assert torch.isfinite(out[:, N_CODES:]).all() and torch.isinf(out[:, :N_CODES]).all()


def test_cache_likelihood_rewards_repeating_beats_and_is_the_lm_at_strength_zero():
    rng = np.random.default_rng(0)
    beat = rng.integers(0, N_CODES, 12).tolist()
    seq = ([BEAT] + beat) * 6  # a patient whose beats repeat exactly
    ids = torch.tensor([seq, seq])
    logp = torch.log_softmax(torch.randn(2, len(seq) - 1, 90), -1)
    lm_alone = logp.gather(2, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(cache_log_probs(logp, ids, _cache(strength=0.0)), lm_alone)
    with_cache = cache_log_probs(logp, ids, _cache(strength=2.0))
    assert float(with_cache.sum()) > float(lm_alone.sum()) + 10
    # each position is a normalized distribution: exp sums to 1 over the vocabulary
    cache = _cache(strength=2.0)
    s = _feed(cache, seq[:20])
    assert float(torch.logsumexp(cache.apply(logp[0, 19:20], s, N_CODES), -1)) == pytest.approx(0.0, abs=1e-5)


def test_params_are_validated_and_resolved_from_the_model_config():
    for bad in ({"strength": -1}, {"sigma": 0}, {"beats": 0}, {"decay": 0}, {"decay": 1.5}):
        with pytest.raises(ConfigError):
            BeatCacheParams(**bad)
    lm = random_v2_lm({"beat:N": 5})
    assert resolve(lm, None) is None and resolve(lm, 0) is None
    assert resolve(lm, 0.3) == BeatCacheParams(strength=0.3)
    setattr(lm.config, CONFIG_KEY, {"strength": 0.25, "sigma": 1.25, "beats": 4, "decay": 0.6, "max_offset": 96,
                                    "fitted": {"valid_bits_per_token": 3.8}})
    assert resolve(lm, None) is None and resolve(lm, 0) is None  # opt-in
    assert resolve(lm, 0.25) == BeatCacheParams(strength=0.25, sigma=1.25)
    assert resolve(lm, 0.5) == BeatCacheParams(strength=0.5, sigma=1.25)
    delattr(lm.config, CONFIG_KEY)


@pytest.fixture(scope="module")
def v2_lm():
    lm = random_v2_lm({"beat:N": 90, "beat:V": 10, "rhythm:N": 5, "rhythm:B": 2})
    lm.config.ecg_tokenizer = {**lm.config.ecg_tokenizer, "config": {"levels": LEVELS}}
    return lm


def _beat_runs(stream, spec):
    """Per beat (label to label), its codes."""
    beats, cur = [], None
    for t in stream.tolist():
        if t in set(spec.beat_ids().tolist()):
            if cur is not None:
                beats.append(cur)
            cur = []
        elif t < N_CODES and cur is not None:
            cur.append(t)
    return beats


def test_sampling_with_the_cache_repeats_beats_and_off_is_the_sampler_of_before(v2_lm):
    from ecg2llm.lm.control import ControlSpec
    from ecg2llm.lm.guidance import sample_guided

    spec = ControlSpec.of_model(v2_lm)
    kw = dict(n_samples=4, n_codes=150, conditions=["rhythm:N"], grammar=True, tokens_per_second=36.0,
              batch_size=4, seed=2)
    base = sample_guided(v2_lm, **kw)
    off = sample_guided(v2_lm, beat_cache=BeatCacheParams(strength=0.0), **kw)
    assert np.array_equal(base.codes, off.codes) and base.events == off.events
    tight = sample_guided(v2_lm, beat_cache=BeatCacheParams(strength=8.0, sigma=0.3, beats=1), **kw)
    again = sample_guided(v2_lm, beat_cache=BeatCacheParams(strength=8.0, sigma=0.3, beats=1), **kw)
    assert np.array_equal(tight.codes, again.codes)  # deterministic

    def same_phase(samples):
        hit = tot = 0
        for st in samples.streams:
            beats = _beat_runs(np.asarray(st), spec)
            for a, b in zip(beats, beats[1:]):
                n = min(len(a), len(b))
                hit += sum(x == y for x, y in zip(a[:n], b[:n]))
                tot += n
        return hit / max(tot, 1)

    assert same_phase(tight) > 0.8 > 0.3 > same_phase(base)
    assert tight.codes.max() < N_CODES and tight.codes.shape == (4, 150)


def test_the_cache_needs_a_conditional_fsq_lm():
    from ecg2llm.lm.guidance import sample_guided

    lm = random_v2_lm({"beat:N": 5})  # its config records no FSQ levels
    with pytest.raises(ConfigError, match="FSQ levels"):
        sample_guided(lm, 1, 10, beat_cache=BeatCacheParams(strength=0.5))


def test_generate_config_refuses_a_negative_strength():
    from ecg2llm.lm.synthesize import GenerateConfig

    with pytest.raises(ConfigError, match="strength"):
        GenerateConfig(beat_cache=-0.5)
    assert GenerateConfig(beat_cache=0.0).beat_cache == 0.0


def test_fitted_cache_of_the_shipped_lm_is_recorded_and_beats_the_lm_alone():
    """The shipped LM's config carries the setting fitted on validation bits/token (scripts/fit_beat_cache.py)."""
    import json

    from ecg2llm.lm.model import resolve_model_dir

    cfg = json.loads((resolve_model_dir("v2") / "config.json").read_text())
    rec = cfg[CONFIG_KEY]
    fitted = rec["fitted"]
    assert fitted["valid_bits_per_token"] < fitted["valid_bits_per_token_lm_alone"]
    assert fitted["test_bits_per_token"] < fitted["test_bits_per_token_lm_alone"]
    assert BeatCacheParams.from_dict(rec).strength > 0 and math.isfinite(fitted["valid_bits_per_token"])


def test_fit_beat_cache_refuses_an_lm_without_beat_labels(tmp_path, capsys):
    """scripts/fit_beat_cache.py on an LM without control tokens (no beat labels): one clear line, nothing
    written."""
    import importlib.util
    import sys

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("_fit_beat_cache", REPO / "scripts/fit_beat_cache.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # as `import` does: the config dataclass looks its module up there
    spec.loader.exec_module(mod)
    out = tmp_path / "fit.json"
    random_lm().save_pretrained(tmp_path / "plain")
    assert mod.main(["--model", str(tmp_path / "plain"), "--out", str(out)]) == 2
    assert "not a conditional LM v2" in capsys.readouterr().err and not out.exists()
