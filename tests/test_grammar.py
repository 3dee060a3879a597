"""Rhythm grammars (lm/grammar.py): the beat labels an LM v2 draws under rhythm:N/B/T/VT follow the rhythm."""
import numpy as np
import pytest
from lm_support import random_v2_lm

from ecg2llm.core.errors import ConfigError
from ecg2llm.lm.control import ControlSpec
from ecg2llm.lm.grammar import GRAMMARS, RR_RATIO, BeatGrammar

TPS = 36.0


@pytest.fixture(scope="module")
def v2_lm():
    """A randomly initialized conditional v2 LM (context 48): the grammar's invariants need no training."""
    return random_v2_lm({"beat:N": 90, "beat:V": 10, "rhythm:N": 5, "rhythm:B": 2, "rhythm:T": 2,
                               "rhythm:VT": 2, "rhythm:AFIB": 2})


def _beats(events):
    """(code index, class) of the beat labels of one sample."""
    return [(k, n.split(":")[1]) for k, n in events if n.startswith("beat:")]


@pytest.mark.parametrize("rhythm", ["N", "B", "T", "VT"])
@pytest.mark.parametrize("guidance", [None, 2.0])
def test_beats_follow_the_pattern_and_rr_windows_across_context_windows(v2_lm, rhythm, guidance):
    from ecg2llm.lm.guidance import sample_guided

    s = sample_guided(v2_lm, 2, 120, conditions=[f"rhythm:{rhythm}"], guidance=guidance, grammar=True,
                      tokens_per_second=TPS, batch_size=2, seed=3)  # 120 codes = 2.5 context windows of 48
    pattern = GRAMMARS[rhythm]
    assert s.codes.shape == (2, 120) and s.codes.max() < 64
    for ev in s.events:
        beats = _beats(ev)
        classes = [c for _, c in beats]
        p = [c for c, _, _ in pattern]
        assert len(beats) >= 120 / (max(hi for _, _, hi in pattern) * TPS) - 1  # late beats are forced
        # the classes are the pattern, cycled from some phase
        phase = [i for i in range(len(p)) if all(classes[j] == p[(i + j) % len(p)] for j in range(len(classes)))]
        assert phase, classes
        for (k0, _), (k1, _), j in zip(beats, beats[1:], range(1, len(beats))):
            _, lo, hi = pattern[(phase[0] + j) % len(p)]
            rr = k1 - k0  # codes between two beat labels = RR
            if lo is not None:
                assert round(lo * TPS) <= rr <= round(hi * TPS), (rhythm, j, rr)
        if rhythm in RR_RATIO:  # each RR within the ratio window of the one before
            rrs = np.diff([k for k, _ in beats])
            a, b = RR_RATIO[rhythm]
            assert len(rrs) >= 2 and all(np.floor(a * r0) <= r1 <= np.ceil(b * r0) for r0, r1 in zip(rrs, rrs[1:]))


def test_the_first_beat_is_forced_within_one_longest_rr():
    """An LM that never offers a beat label (an unlabelled stream) still gets the rhythm's first beat by the
    pattern's longest RR after the start, and the pattern's RR windows from then on."""
    import torch

    spec = ControlSpec(first_id=67, conditional=True, counts={"beat:N": 9, "beat:V": 3, "rhythm:VT": 1})
    g = BeatGrammar.for_rhythm("VT", spec, TPS, "cpu")
    lo, hi = int(g.lo[0]), int(g.hi[0])
    state = g.new_state(1, torch.Generator().manual_seed(0), "cpu")
    logits = torch.zeros(1, 67 + spec.n_tokens)
    logits[0, 64:] = -1e5  # specials and control tokens (the sampler masks them) ...
    logits[0, spec.beat_ids()] = -1e4  # ... and the LM all but never starts a beat
    beats = []
    for k in range(4 * hi):
        out = g.apply(logits, state, 64)
        tok = out.argmax(1)  # greedy: a beat only where the grammar forces it
        if int(tok) in spec.beat_ids().tolist():
            beats.append(k - len(beats))  # code index of the beat (labels are not codes)
        g.update(state, tok, 64)
    assert beats and beats[0] <= hi  # the first beat within one longest RR of the start
    assert all(lo <= b - a <= hi for a, b in zip(beats, beats[1:])) and len(beats) >= 3


def test_grammar_off_is_the_sampler_of_before(v2_lm):
    from ecg2llm.lm.guidance import sample_guided

    kw = dict(n_samples=3, n_codes=60, conditions=["rhythm:B"], batch_size=3, seed=5)
    a, b = sample_guided(v2_lm, **kw), sample_guided(v2_lm, grammar=False, **kw)
    assert np.array_equal(a.codes, b.codes) and a.events == b.events
    c = sample_guided(v2_lm, grammar=True, tokens_per_second=TPS, **kw)
    assert c.events != a.events  # the random LM draws few V beats on its own


def test_grammar_is_deterministic_and_leaves_other_rhythms_alone(v2_lm):
    from ecg2llm.lm.guidance import sample_guided

    kw = dict(n_samples=2, n_codes=50, batch_size=2, seed=1, grammar=True, tokens_per_second=TPS)
    x, y = (sample_guided(v2_lm, conditions=["rhythm:T"], **kw) for _ in range(2))
    assert np.array_equal(x.codes, y.codes) and x.events == y.events
    spec = ControlSpec.of_model(v2_lm)
    assert BeatGrammar.for_rhythm("AFIB", spec, TPS, "cpu") is None
    af = sample_guided(v2_lm, conditions=["rhythm:AFIB"], **kw)
    af0 = sample_guided(v2_lm, conditions=["rhythm:AFIB"], **{**kw, "grammar": False})
    assert np.array_equal(af.codes, af0.codes)


def test_a_grammar_needing_an_unseen_beat_class_is_refused():
    spec = ControlSpec(first_id=67, conditional=True, counts={"beat:N": 9, "rhythm:VT": 1})
    with pytest.raises(ConfigError, match="grammar=False"):
        BeatGrammar.for_rhythm("VT", spec, TPS, "cpu")
    assert BeatGrammar.for_rhythm("N", spec, TPS, "cpu") is not None


def test_rr_windows_sit_inside_ds1_annotated_rr(data_dir):
    """The RR windows of GRAMMARS lie inside DS1's 5-95 % range of each rhythm's annotated RR (+- 0.03 s)."""
    from ecg2llm.lm.grammar import rr_quantiles

    q = rr_quantiles(data_dir=data_dir)
    rows = {"B": ["B N", "B V"], "T": ["T N after V", "T N after N", "T V"], "VT": ["VT V"], "N": ["N N"]}
    for rhythm, keys in rows.items():
        a, b = (1, 99) if rhythm == "N" else (5, 95)
        for (_, lo, hi), key in zip(GRAMMARS[rhythm], keys):
            assert q[key]["n"] > 200
            assert q[key]["quantiles"][a] - 0.03 <= lo < hi <= q[key]["quantiles"][b] + 0.03, (key, lo, hi)


def test_explicit_beat_conditions_win_over_the_grammar(v2_lm):
    from ecg2llm.lm.guidance import sample_guided

    kw = dict(n_samples=2, n_codes=60, conditions=["rhythm:N", "beat:V"], strength=5.0, batch_size=2, seed=2)
    a = sample_guided(v2_lm, grammar=True, tokens_per_second=TPS, **kw)
    b = sample_guided(v2_lm, grammar=False, **kw)
    assert np.array_equal(a.codes, b.codes) and a.events == b.events


def test_sinus_ratio_window_is_ds1s_5_to_95_percent(data_dir):
    from ecg2llm.lm.grammar import successive_rr_ratio

    q = successive_rr_ratio(data_dir=data_dir)
    lo, hi = RR_RATIO["N"]
    assert q["n"] > 10000 and abs(q["quantiles"][5] - lo) < 0.01 and abs(q["quantiles"][95] - hi) < 0.01


def test_label_gap_keeps_labelled_streams_labelled_and_leaves_the_rest(v2_lm):
    """LabelGap (no rhythm requested): a beat label at most every ``hi`` codes in rows with a real rhythm
    prefix, the class the LM's own; rows drawn under the null rhythm:? and requested rhythms are untouched."""
    import torch

    from ecg2llm.lm.grammar import MAX_LABEL_GAP_S, LabelGap
    from ecg2llm.lm.guidance import sample_guided

    spec = ControlSpec.of_model(v2_lm)
    gap_s = 0.25  # 9 codes at 36 tokens/s: forced often in 120 codes
    rule = LabelGap.for_model(spec, TPS, "cpu", gap_s)
    assert rule.hi == 9 and 1.5 < MAX_LABEL_GAP_S < 3.0
    # the rule alone: late active rows may only draw beat labels, everything else is unchanged
    logits = torch.randn(3, 64 + spec.n_tokens + 3)
    state = rule.new_state(torch.tensor([True, True, False]))
    state["since"] = torch.tensor([9, 3, 50])
    out = rule.apply(logits, state, 64)
    finite = torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert sorted(finite) == sorted(spec.beat_ids().tolist())
    assert torch.equal(out[1:], logits[1:])
    rule.update(state, torch.tensor([int(spec.beat_ids()[2]), 5, spec.id_of("rhythm:N")]), 64)
    assert state["since"].tolist() == [0, 4, 50]  # a beat resets, a code counts, another control token does not
    with pytest.raises(ConfigError, match="label_gap"):
        LabelGap.for_model(spec, TPS, "cpu", 0.0)

    kw = dict(n_samples=4, n_codes=150, batch_size=4, seed=2, tokens_per_second=TPS)
    free = sample_guided(v2_lm, **kw)
    held = sample_guided(v2_lm, label_gap=gap_s, **kw)
    assert held.rhythm == free.rhythm  # the prefix is drawn before the rule starts
    checked = 0
    for ev, ev_free, rh in zip(held.events, free.events, held.rhythm):
        beats = [k for k, n in ev if n.startswith("beat:") and n != "beat:?"]
        if rh == "?":
            assert ev == ev_free  # the unlabelled format is left alone
            continue
        gaps = np.diff([0] + beats + [150])
        assert gaps.max() <= rule.hi, (rh, gaps)
        checked += 1
    assert checked >= 1 and held.events != free.events  # the rule held some labelled row and acted
    again = sample_guided(v2_lm, label_gap=gap_s, **kw)
    assert np.array_equal(held.codes, again.codes) and held.events == again.events  # deterministic
    # a requested rhythm keeps its own grammar: label_gap is not applied on top
    g = dict(conditions=["rhythm:B"], grammar=True, **kw)
    a, b = sample_guided(v2_lm, **g), sample_guided(v2_lm, label_gap=gap_s, **g)
    assert np.array_equal(a.codes, b.codes) and a.events == b.events


def test_label_gap_flag_is_validated():
    from ecg2llm.lm.synthesize import GenerateConfig

    with pytest.raises(ConfigError, match="label_gap must be >= 0"):
        GenerateConfig(label_gap=-1.0)
    assert GenerateConfig(label_gap=2.0).label_gap == 2.0 and GenerateConfig().label_gap == 0.0
