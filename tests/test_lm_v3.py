"""LM v3 (a GPT over heartbeats): layout, corpus, sampler processors, training, detail head, generation.

Runs against the naive beat code of ``tests/lm_v3_support.py`` (same interface as tokenizer v3), so the LM
is tested without the trained tokenizer; the real-data tests use a few MIT-BIH records.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_v3_support import NaiveBeatTokenizer  # noqa: E402

import ecg2llm.lm.beat_train as _beat_train  # noqa: E402
from ecg2llm.core.errors import ConfigError  # noqa: E402
from ecg2llm.lm.beat_layout import N_PREFIX, BeatLayout, beat_condition  # noqa: E402
from ecg2llm.lm.control import ControlSpec  # noqa: E402

RECORDS = ["101", "106", "100"]  # valid, train, test
REAL_LOAD_BEAT_TOKENIZER = _beat_train.load_beat_tokenizer  # before any fixture patches it


@pytest.fixture(scope="module")
def tok():
    return NaiveBeatTokenizer()


@pytest.fixture(scope="module")
def layout(tok):
    return BeatLayout.from_tokenizer(tok)


@pytest.fixture(scope="module")
def spec(layout):
    return ControlSpec(first_id=layout.codebook_size + 3, conditional=True, condition_dropout=0.5)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    """A 12-step LM v3 run on three records (stand-in tokenizer), with a detail head."""
    import ecg2llm.lm.beat_train as bt
    from ecg2llm.lm.beat_detail import SUBDIR, save_detail, train_detail
    from ecg2llm.lm.beatstream import load_records
    from ecg2llm.lm.config import LMTrainConfig
    from ecg2llm.lm.trainer import Trainer

    tmp = tmp_path_factory.mktemp("lm3")
    mp = pytest.MonkeyPatch()
    mp.setattr(bt, "load_beat_tokenizer", lambda name: NaiveBeatTokenizer())
    cfg = LMTrainConfig(beat_stream=True, tokenizer="naive", store=str(tmp / "store"), data_dir=str(data_dir),
                        records=RECORDS, sources=["mitdb"], leads=["MLII", "V1"], valid_records=["101"],
                        context_length=5 + 5 * 24, max_steps=12, rhythm_slot=True, batch_size=4, eval_every=6,
                        save_every=6, output_dir=str(tmp / "run"), condition_dropout=0.2, figure_samples=0, n_layer=1,
                        d_model=32, n_head=2, final_eval_crops=8, progress=False)
    final = Trainer(cfg).run()
    records, meta = load_records(tmp / "store")
    head = train_detail([r for r in records if r.split == "train"], BeatLayout.from_dict(meta["layout"]),
                        steps=30, progress=False, codebooks=NaiveBeatTokenizer().detail_codebooks())
    save_detail(head, Path(final) / SUBDIR)
    yield {"final": Path(final), "store": tmp / "store", "records": records, "cfg": cfg, "tmp": tmp}
    mp.undo()


# ------------------------------------------------------------------------------------------ layout
def test_units_roundtrip_and_type_table(layout, spec):
    rng = np.random.default_rng(0)
    rr = rng.integers(0, layout.n_rr, 50)
    coarse = rng.integers(0, layout.n_coarse_levels, (50, layout.n_coarse))
    labels = rng.choice(spec.beat_ids(), 50)
    u = layout.units(labels, rr, coarse)
    assert u.shape == (50, layout.tokens_per_beat)
    lab, rr2, co2 = layout.split_units(u)
    assert (lab == labels).all() and (rr2 == rr).all() and (co2 == coarse).all()
    table = layout.allowed_table(spec, spec.first_id + spec.n_tokens)
    seq = np.concatenate([[0, spec.source_id("mitdb"), spec.lead_id("MLII"), spec.id_of("rhythm:N"),
                           spec.id_of("beat:V")], u.reshape(-1)])
    for p in range(1, len(seq)):
        assert table[layout.slot_of(p), seq[p]], f"token {seq[p]} not allowed at position {p}"
    # each unit slot allows exactly one type: rows of different slots do not overlap
    rows = table[N_PREFIX:]
    assert int(rows.sum(0).max()) == 1


def test_rhythm_slot_units_and_type_table(layout, spec):
    from dataclasses import replace

    lay = replace(layout, rhythm_slot=True)
    assert lay.tokens_per_beat == layout.tokens_per_beat + 1 and lay.without_rhythm() == layout
    rng = np.random.default_rng(1)
    rr = rng.integers(0, lay.n_rr, 20)
    coarse = rng.integers(0, lay.n_coarse_levels, (20, lay.n_coarse))
    labels = rng.choice(spec.beat_ids(), 20)
    rhythms = rng.choice(list(spec.rhythm_ids()) + [spec.null_rhythm_id], 20)
    with pytest.raises(ConfigError, match="rhythm slot"):
        lay.units(labels, rr, coarse)
    u = lay.units(labels, rr, coarse, rhythms)
    assert (u[:, 0] == rhythms).all() and (u[:, 1:] == layout.units(labels, rr, coarse)).all()
    lab, rr2, co2 = lay.split_units(u)
    assert (lab == labels).all() and (rr2 == rr).all() and (co2 == coarse).all()
    table = lay.allowed_table(spec, spec.first_id + spec.n_tokens)
    seq = np.concatenate([[0, spec.source_id("mitdb"), spec.lead_id("MLII"), spec.id_of("rhythm:N"),
                           spec.id_of("beat:V")], u.reshape(-1)])
    for p in range(1, len(seq)):
        assert table[lay.slot_of(p), seq[p]], f"token {seq[p]} not allowed at position {p}"
    assert int(table[N_PREFIX:].sum(0).max()) == 1
    assert BeatLayout.from_dict(lay.to_dict()) == lay and BeatLayout.from_dict(layout.to_dict()) == layout


def test_units_refuse_out_of_range(layout):
    with pytest.raises(ConfigError, match="RR token out of range"):
        layout.units([0], [layout.n_rr], [[0] * layout.n_coarse])


def test_beat_condition():
    assert beat_condition(np.array(["N"] * 9 + ["V"])) == "beat:V"
    assert beat_condition(np.array(["N"] * 19 + ["V"])) == "beat:N"
    assert beat_condition(np.array(["N"] * 8 + ["S", "S"])) == "beat:S"
    assert beat_condition(np.array(["", ""])) == "beat:?"


# ------------------------------------------------------------------------------------------ corpus
def test_corpus_crops_are_beat_aligned(run, spec):
    from dataclasses import replace

    from ecg2llm.lm.beatstream import BeatCorpus

    stored = BeatLayout.from_dict(json.loads((run["store"] / "meta.json").read_text())["layout"])
    assert not stored.rhythm_slot  # the store keeps label, RR, coarse; the rhythm per beat is its own array
    lay = replace(stored, rhythm_slot=True)
    sp = ControlSpec(first_id=lay.codebook_size + 3, conditional=True, condition_dropout=0.5)
    pad = lay.codebook_size
    corpus = BeatCorpus(run["records"], sp, lay, pad)
    crops = corpus.random_crops(5 + 7 * lay.tokens_per_beat - 1, 64, "train", np.random.default_rng(1))
    table = lay.allowed_table(sp, sp.first_id + sp.n_tokens)
    for row in crops:
        full = np.concatenate([[pad + 1], row])  # BOS first, as TrainBatches prepends it
        for p in range(1, len(full)):
            assert full[p] == pad or table[lay.slot_of(p), full[p]]
    # condition dropout nulls the prefix conditions, and a dropped rhythm every rhythm slot with it; the
    # per-beat labels are never nulled
    assert (crops[:, 2] == sp.id_of("rhythm:?")).any() and (crops[:, 3] == sp.id_of("beat:?")).any()
    labels = crops[:, N_PREFIX + 1::lay.tokens_per_beat]
    assert not (labels == sp.null_beat_id).any()  # MIT-BIH beats are all annotated in these records
    slots = crops[:, N_PREFIX::lay.tokens_per_beat]
    null_r = sp.id_of("rhythm:?")
    dropped = crops[:, 2] == null_r
    assert (slots[dropped] == null_r).all() and not (slots[~dropped] == null_r).all()
    # undropped: each slot is the rhythm in force at its beat, so a crop can change rhythm mid-way (106: B, VT)
    rec = next(r for r in run["records"] if r.record == "106" and r.lead == "MLII")
    want = corpus.rhythm_ids(rec)
    assert set(np.unique(want).tolist()) >= {sp.id_of("rhythm:N"), sp.id_of("rhythm:B")}
    full = corpus.lm_units(rec)
    assert (full[:, 0] == want).all() and (full[:, 1:] == rec.units).all()
    assert any(len(np.unique(s)) > 1 for s in slots[~dropped])
    tiles = corpus.tiles("valid", 5 + 7 * lay.tokens_per_beat - 1)
    assert (tiles == corpus.tiles("valid", 5 + 7 * lay.tokens_per_beat - 1)).all()
    assert not (tiles == pad).any()


def test_focus_crops_start_in_rare_rhythms(run):
    """focus_share: that share of training crops starts inside a focus-rhythm episode with its conditions kept;
    the other crops are the ones the same draws give without it."""
    from ecg2llm.lm.beatstream import BeatCorpus

    lay = BeatLayout.from_dict(json.loads((run["store"] / "meta.json").read_text())["layout"])
    sp = ControlSpec(first_id=lay.codebook_size + 3, conditional=True, condition_dropout=0.5)
    length = 5 + 7 * lay.tokens_per_beat - 1
    plain = BeatCorpus(run["records"], sp, lay, lay.codebook_size)
    focus = BeatCorpus(run["records"], sp, lay, lay.codebook_size, focus_share=0.5, focus_rhythms=["VT", "B"])
    assert sorted(focus.focus) == ["B", "VT"]  # record 106 holds both
    a = plain.random_crops(length, 400, "train", np.random.default_rng(3))
    b = focus.random_crops(length, 400, "train", np.random.default_rng(3))
    same = (a == b).all(1)
    assert 0.35 < 1 - same.mean() < 0.65
    rare = {sp.id_of("rhythm:VT"), sp.id_of("rhythm:B")}
    assert all(int(r) in rare for r in b[~same, 2])  # prefix rhythm = the focus rhythm at the first beat
    assert {int(r) for r in b[~same, 2]} == rare  # a rhythm is drawn first: the short VT episodes are not drowned
    assert not (b[~same, 3] == sp.id_of("beat:?")).any()  # focus crops keep their conditions
    assert (a[:, 2] == sp.id_of("rhythm:?")).any()  # (the usual crops are still dropped at the usual rate)
    with pytest.raises(ConfigError, match="focus_rhythms"):
        BeatCorpus(run["records"], sp, lay, lay.codebook_size, focus_share=0.5, focus_rhythms=["VFL"])


def test_ectopic_loss_weights(run):
    """ectopic_weight scales the RR and coarse targets of S/V/F beats, never a label; weights 1 = the plain loss."""
    from ecg2llm.lm.beatstream import BeatCorpus
    from ecg2llm.lm.trainer import weighted_loss

    lay = BeatLayout.from_dict(json.loads((run["store"] / "meta.json").read_text())["layout"])
    sp = ControlSpec(first_id=lay.codebook_size + 3, conditional=True, condition_dropout=0.0)
    corpus = BeatCorpus(run["records"], sp, lay, lay.codebook_size)
    crops = corpus.random_crops(5 + 20 * lay.tokens_per_beat - 1, 32, "train", np.random.default_rng(0))
    seqs = torch.from_numpy(np.concatenate([np.full((len(crops), 1), lay.codebook_size + 1), crops], 1))
    w = corpus.loss_weights(seqs, 3.0).numpy()
    ectopic = {sp.id_of(f"beat:{c}") for c in "SVF"}
    tpb, first = lay.tokens_per_beat, 1 + N_PREFIX
    want = np.ones_like(w)
    for i, row in enumerate(seqs.numpy()):
        for u in range((len(row) - first) // tpb):
            if int(row[first + u * tpb + lay.label_col]) in ectopic:
                want[i, first + u * tpb + lay.label_col + 1: first + (u + 1) * tpb] = 3.0
    assert (w == want).all() and (w == 3.0).any()  # 106 has V beats
    logits = torch.randn(2, 9, 11)
    labels = torch.randint(0, 11, (2, 9))
    labels[0, 4] = -100
    plain = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1))
    assert torch.allclose(weighted_loss(logits, labels, torch.ones(2, 9)), plain)
    ww = torch.ones(2, 9)
    ww[1, 3] = 5.0
    assert not torch.allclose(weighted_loss(logits, labels, ww), plain)


def test_focus_settings_need_the_beat_stream():
    from ecg2llm.lm.config import LMTrainConfig

    with pytest.raises(ConfigError, match="beat_stream"):
        LMTrainConfig(focus_share=0.2)
    with pytest.raises(ConfigError, match="ectopic_weight"):
        LMTrainConfig(beat_stream=True, ectopic_weight=0)
    with pytest.raises(ConfigError, match="focus_share"):
        LMTrainConfig(beat_stream=True, focus_share=1.0)


def test_training_data_and_config(run):
    final = run["final"]
    from ecg2llm.tokenizer import training_data as td

    data = td.read(final)  # the one schema the scorecard reads (format 1)
    assert data["mitdb"]["records"] == ["106"] and data["validation_records"] == ["101"]
    assert sorted(data["mitdb"]["leads"]) == ["MLII", "V1"] and data["cinc2017"] == {"used": False}
    assert "101" not in data["mitdb"]["records"] and "100" not in data["mitdb"]["records"]
    cfg = json.loads((final / "config.json").read_text())
    assert cfg["ecg_stream"]["kind"] == "beats" and cfg["ecg_conditioning"]["version"] == 3
    m = json.loads((final / "metrics.json").read_text())
    assert np.isfinite(m["val"]["bits_per_token"]) and m["val"]["bits_per_token"] < 12


# ------------------------------------------------------------------------------------------ sampler
def _tiny_lm(vocab=40):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def test_branch_matches_full_forward_and_slides():
    from ecg2llm.lm.sampler import Branch

    model = _tiny_lm()
    ids = torch.randint(0, 40, (2, 30))
    b = Branch(model, max_len=64, head=5, unit=5)
    for L in (6, 7, 12, 30):
        got = b.logits(ids[:, :L])
        want = model(ids[:, :L]).logits[:, -1]
        assert torch.allclose(got, want, atol=1e-4)
    small = Branch(model, max_len=16, head=5, unit=5)  # slides: prefix + the last whole units
    starts = set()
    for L in range(6, 31):
        got = small.logits(ids[:, :L])
        window = torch.cat([ids[:, :5], ids[:, small.start:L]], 1)
        assert (small.start - 5) % 5 == 0 and window.shape[1] <= 16
        assert torch.allclose(got, model(window).logits[:, -1], atol=1e-4)
        starts.add(small.start)
    assert len(starts) > 2  # it did slide, more than once


def test_cfg_scale_one_is_conditional_and_zero_is_null():
    from ecg2llm.lm.sampler import ClassifierFreeGuidance

    model = _tiny_lm()
    ids = torch.randint(0, 40, (3, 12))
    null = ids[:, :5].clone()
    null[:, 3:5] = 7
    cond = model(ids).logits[:, -1]
    one = ClassifierFreeGuidance(model, null, 1.0, 64, 5)(ids, cond.clone())
    assert torch.allclose(one, torch.log_softmax(cond, -1), atol=1e-5)
    zero = ClassifierFreeGuidance(model, null, 0.0, 64, 5)(ids, cond.clone())
    want = torch.log_softmax(model(torch.cat([null, ids[:, 5:]], 1)).logits[:, -1], -1)
    assert torch.allclose(zero, want, atol=1e-4)


def test_cfg_null_slots_null_every_unit_slot():
    from ecg2llm.lm.sampler import ClassifierFreeGuidance

    model = _tiny_lm()
    ids = torch.randint(0, 30, (2, 5 + 4 * 3 + 1))  # prefix 5, units of 4, one token into the 4th unit
    null = ids[:, :5].clone()
    null[:, 3:5] = 7
    cond = model(ids).logits[:, -1]
    got = ClassifierFreeGuidance(model, null, 0.0, 64, 4, null_slots=[(0, 9)])(ids, cond.clone())
    ref = torch.cat([null, ids[:, 5:]], 1)
    ref[:, 5::4] = 9
    assert torch.allclose(got, torch.log_softmax(model(ref).logits[:, -1], -1), atol=1e-4)


def test_label_contrast_touches_only_ectopic_beats():
    """Label-contrast guidance: a beat labelled V (its RR and shape) and the RR after it get
    own + s (own - log p under N labels); labels and normal beats pass through."""
    from ecg2llm.lm.sampler import LabelContrast

    model = _tiny_lm()
    V, N, head, unit = 30, 31, 5, 4  # label ids; prefix 5 (BOS + 4); units of 4: label, RR, two coarse
    ids = torch.randint(0, 20, (3, head + 3 * unit))
    ids[:, head::unit] = N
    ids[1, head + 2 * unit] = V  # row 1: its third beat (the last one so far) is V
    ids[2, head + unit] = V      # row 2: its second beat is V, the third N
    lc = LabelContrast(model, 1.5, 64, unit, head, 0, [V], N)

    def scores(x):
        return model(x).logits[:, -1]

    label_due = torch.cat([ids, torch.zeros(3, 0, dtype=torch.long)], 1)  # next token: the 4th beat's label
    s = scores(label_due)
    assert lc(label_due, s) is s
    coarse = ids[:, :head + 2 * unit + 2]  # next: the third beat's second coarse token
    s = scores(coarse)
    got = lc(coarse, s.clone())
    ref = coarse.clone()
    ref[1, head + 2 * unit] = N
    own, contrast = torch.log_softmax(s, -1), torch.log_softmax(scores(ref), -1)
    assert torch.allclose(got[1], (own + 1.5 * (own - contrast))[1], atol=1e-4)
    assert torch.equal(got[[0, 2]], s[[0, 2]])  # an N beat: untouched (row 2's V was the beat before)
    rr = ids[:, :head + 2 * unit + 1]  # next: the third beat's RR, the interval after row 2's V
    s = scores(rr)
    got = LabelContrast(model, 1.0, 64, unit, head, 0, [V], N)(rr, s.clone())
    ref = rr.clone()
    ref[2, head + unit] = N
    own, contrast = torch.log_softmax(s, -1), torch.log_softmax(scores(ref), -1)
    assert torch.allclose(got[2], (own + (own - contrast))[2], atol=1e-4)
    assert torch.equal(got[0], s[0]) and not torch.allclose(got[1], s[1])  # row 1's beat is V itself


def test_label_guidance_is_lm_v3_only(run, monkeypatch):
    import ecg2llm.lm.beat_generate as bg
    from ecg2llm.lm.request import GenerateConfig
    from ecg2llm.lm.sampler import LabelContrast

    with pytest.raises(ConfigError, match="label_guidance"):
        GenerateConfig(label_guidance=-1)
    blm = bg.BeatLM.from_folder(run["final"], tokenizer=NaiveBeatTokenizer())
    req = GenerateConfig(num_samples=2, seconds=4, batch_size=2, seed=1, texture=False, label_guidance=1.0)
    assert any(isinstance(p, LabelContrast) for p in blm.processors(req, 2, None, None))
    x, _, _, _ = blm.synthesize(req)
    assert x.shape == (2, int(4 * blm.tok.fs)) and np.isfinite(x).all()


def test_type_mask_only_allows_due_type(layout, spec):
    from ecg2llm.lm.sampler import TypeMask

    v = spec.first_id + spec.n_tokens
    table = layout.allowed_table(spec, v)
    m = TypeMask(table, layout.slot_of)
    out = m(torch.zeros(2, 1 + N_PREFIX + 1, dtype=torch.long), torch.zeros(2, v))  # next: RR slot
    assert torch.isfinite(out).sum(1).tolist() == [layout.n_rr] * 2


# ------------------------------------------------------------------------------------------ generation
def test_generate_beats_end_to_end(run, tmp_path, monkeypatch):
    import ecg2llm.lm.beat_train as bt
    from ecg2llm.lm.synthesize import GenerateConfig, generate

    monkeypatch.setattr(bt, "load_beat_tokenizer", lambda name: NaiveBeatTokenizer())
    cfg = GenerateConfig(model=str(run["final"]), num_samples=3, seconds=6, batch_size=2, out=str(tmp_path / "g"),
                         condition=["rhythm:N"], guidance=2.0, png=False, seed=3)
    man = generate(cfg)
    assert len(man["samples"]) == 3 and man["lm_version"] == 3
    x = np.load(tmp_path / "g" / "sample_000.npy")
    assert x.shape == (6 * 360,) and np.isfinite(x).all()
    again = generate(GenerateConfig(**{**cfg.__dict__, "out": str(tmp_path / "h")}))
    assert np.array_equal(np.load(tmp_path / "h" / "sample_000.npy"), x)  # same seed, same batch: same ECG
    units = np.load(tmp_path / "g" / "beat_units.npy")
    assert units.shape[0] == 3 and again["conditioning"]["rhythm"] == "N"


def test_rhythm_condition_is_every_beats_rhythm_slot(run, monkeypatch):
    """Under rhythm:X every beat's rhythm slot is X (written from the request); unconditional requests draw
    the slot ("sample") or hold it null ("null"); the labels and RR stay the model's draws."""
    from ecg2llm.lm.beat_generate import BeatLM
    from ecg2llm.lm.model import load_lm
    from ecg2llm.lm.synthesize import GenerateConfig

    model, folder = load_lm(run["final"])
    assert model.config.ecg_stream["rhythm_slot"] and model.config.ecg_stream["unconditional_rhythm"] == "sample"
    blm = BeatLM(model, NaiveBeatTokenizer())
    s = blm.sample_beats(GenerateConfig(num_samples=3, seconds=5, condition=["rhythm:VT"], guidance=2.0), 3, 0)
    assert all(len(r) > 0 and (r == "VT").all() for r in s.beat_rhythm)
    null = BeatLM(model, NaiveBeatTokenizer(), rhythm_slot="null").sample_beats(
        GenerateConfig(num_samples=2, seconds=5), 2, 0)
    assert all((r == "").all() for r in null.beat_rhythm)
    drawn = blm.sample_beats(GenerateConfig(num_samples=4, seconds=5, temperature=2.0), 4, 0)
    names = {x for r in drawn.beat_rhythm for x in r.tolist()}
    assert len(names) > 1  # the model draws the slot (a 12-step model at temperature 2: more than one rhythm)
    with pytest.raises(ConfigError, match="rhythm_slot"):
        BeatLM(model, NaiveBeatTokenizer(), rhythm_slot="always")


@pytest.mark.parametrize("guidance", [None, 2.0])
def test_retired_rows_give_the_same_ecgs(run, monkeypatch, guidance):
    """Rows that have their beats stop being computed (BeatLM.draw_beats retire): the signals and annotations
    are those of the whole batch drawn to the end, and each row keeps the beats it drew."""
    import ecg2llm.lm.beat_generate as bg
    from ecg2llm.lm.request import GenerateConfig

    blm = bg.BeatLM.from_folder(run["final"], tokenizer=NaiveBeatTokenizer())
    monkeypatch.setattr(bg, "CHUNK_RR_S", 2.0)  # a short first chunk, then chunks of 4 beats: rows finish apart
    req = GenerateConfig(num_samples=8, seconds=12, batch_size=8, seed=4, temperature=1.3, texture=False,
                         condition=["rhythm:N"] if guidance else [], guidance=guidance)
    monkeypatch.setattr(bg, "RETIRE", False)
    x0, a0, s0, _ = blm.synthesize(req)
    monkeypatch.setattr(bg, "RETIRE", True)
    x1, a1, s1, _ = blm.synthesize(req)
    assert np.array_equal(x0, x1)
    assert all(np.array_equal(p.beat_sample, q.beat_sample) and list(p.beat_class) == list(q.beat_class)
               for p, q in zip(a0, a1))
    n0, n1 = [len(r) for r in s0.rr], [len(r) for r in s1.rr]
    assert all(b <= a for a, b in zip(n0, n1)) and n1 != n0  # some rows were retired early ...
    assert all(np.array_equal(r0[:len(r1)], r1) for r0, r1 in zip(s0.rr + s0.coarse, s1.rr + s1.coarse))  # ... with
    #                                                                                         the beats they drew


def test_v3_refuses_v2_rules(run, tmp_path, monkeypatch):
    import ecg2llm.lm.beat_train as bt
    from ecg2llm.lm.synthesize import GenerateConfig, generate

    monkeypatch.setattr(bt, "load_beat_tokenizer", lambda name: NaiveBeatTokenizer())
    with pytest.raises(ConfigError, match="no sampler rules"):
        generate(GenerateConfig(model=str(run["final"]), num_samples=1, seconds=2, out=str(tmp_path / "g"),
                                beat_cache=0.25))
    with pytest.raises(ConfigError, match="needs a condition"):
        generate(GenerateConfig(model=str(run["final"]), num_samples=1, seconds=2, out=str(tmp_path / "g"),
                                guidance=2.0))


def test_detail_head_beats_the_prior(run):
    from ecg2llm.lm.beat_detail import evaluate, load_detail

    records = run["records"]
    lay = BeatLayout.from_dict(json.loads((run["store"] / "meta.json").read_text())["layout"])
    head = load_detail(run["final"])
    valid = [r for r in records if r.split == "valid"]
    m = evaluate(head, valid, lay)
    train_detail = np.concatenate([r.detail for r in records if r.split == "train"])
    prior = max(float(np.mean(train_detail[:, j] == np.bincount(train_detail[:, j]).argmax()))
                for j in range(train_detail.shape[1]))
    assert m["accuracy"] > prior  # coarse + neighbours say more than the most frequent value


# ------------------------------------------------------------------------------------------ real tokenizer v3
def test_two_process_launch_with_tokenizer_v3(tmp_path, data_dir):
    """``accelerate launch --cpu --num_processes 2 lm/train.py --config configs/lm/v3.yaml`` trains (DDP)."""
    import os

    pytest.importorskip("ecg2llm.tokenizer.beat_tokenizer")
    from conftest import free_port, launch, launch_failure

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
           "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines",
           "1", "--main_process_port", str(free_port()), "--mixed_precision", "no", "--dynamo_backend", "no",
           "lm/train.py", "--config", "configs/lm/v3.yaml", "--data_dir", str(data_dir),
           "--store", str(tmp_path / "store"), "--records", "101,106,100", "--sources", "mitdb",
           "--source_weights", "", "--leads", "MLII", "--valid_records", "101", "--output_dir", str(out),
           "--max_steps", "2", "--save_every", "2", "--eval_every", "0", "--context_length", "165",
           "--n_layer", "1", "--d_model", "32", "--n_head", "2", "--batch_size", "2", "--final_eval_crops", "4",
           "--eval_crops", "2", "--progress", "false"]
    proc = launch(cmd, env, timeout=900, cwd=repo)
    assert proc.returncode == 0, launch_failure(proc)
    info = json.loads((out / "run_info.json").read_text())
    assert info["config"]["num_processes"] == 2
    assert (out / "checkpoints" / "checkpoint_2" / "random_states_1.pkl").is_file()
    final = out / "final"
    assert json.loads((final / "training_data.json").read_text())["mitdb"]["records"] == ["106"]
    assert json.loads((final / "config.json").read_text())["ecg_stream"]["n_coarse"] == 6


def test_pipeline_generates_with_one_request(run, monkeypatch):
    from ecg2llm.lm.model import load_lm
    from ecg2llm.lm.synthesize import GenerateConfig
    from ecg2llm.pipeline import ECGPipeline

    model, folder = load_lm(run["final"])
    pipe = ECGPipeline(model, NaiveBeatTokenizer(), folder)
    assert pipe.is_conditional and pipe.supports_guidance and "rhythm:N" in pipe.conditions
    a = pipe.generate(2, 4.0, seed=1, condition="rhythm:N", guidance=1.5)
    b = pipe.generate(request=GenerateConfig(num_samples=2, seconds=4.0, seed=1, condition=["rhythm:N"],
                                             guidance=1.5))
    assert a.shape == (2, 4 * 360) and np.array_equal(a, b)  # keywords fill the same request


def test_detail_modes(layout):
    from ecg2llm.lm.beat_detail import DetailConfig, DetailHead

    torch.manual_seed(0)
    head = DetailHead(DetailConfig(layout.n_rr, layout.n_coarse, layout.n_coarse_levels, layout.n_detail,
                                   layout.n_detail_levels, codebook_dim=3)).eval()
    head.codebooks.normal_()
    rng = np.random.default_rng(0)
    rr = rng.integers(0, layout.n_rr, (2, 12))
    coarse = rng.integers(0, 2, (2, 12, layout.n_coarse))  # few spellings: many repeats
    p = head.predict(rr, coarse, "persist", seed=1)
    for b in range(2):
        for i in range(12):
            for j in range(i):
                if (coarse[b, i] == coarse[b, j]).all():
                    assert (p[b, i] == p[b, j]).all()  # a repeated coarse spelling reuses its detail
    assert np.array_equal(head.predict(rr, coarse, "sample", seed=1), head.predict(rr, coarse, "sample", seed=1))
    m = head.predict(rr, coarse, "mean")
    assert m.shape == (2, 12, layout.n_detail) and m.min() >= 0 and m.max() < layout.n_detail_levels
    with torch.no_grad():  # "mean": the code nearest the expected codeword, by brute force
        p = torch.softmax(head(torch.as_tensor(rr), torch.as_tensor(coarse)), -1)
        e = torch.einsum("bngl,gld->bngd", p, head.codebooks)
        want = ((head.codebooks[None, None] - e[:, :, :, None]) ** 2).sum(-1).argmin(-1).numpy()
    assert np.array_equal(m, want)
    with pytest.raises(ConfigError, match="detail mode"):
        head.predict(rr, coarse, "best")


def test_store_and_detail_clis_on_real_records(tmp_path, data_dir, monkeypatch):
    """The two commands the demo runs around ``lm/train.py`` for an LM v3: ``python -m ecg2llm.lm.beatstream``
    builds the store the config names (here three records), and ``python -m ecg2llm.lm.beat_detail`` trains a
    detail head that carries the LM tokenizer's codebooks, so the default detail mode ("mean") works."""
    import shutil

    from conftest import REPO

    import ecg2llm.lm.beat_train as bt
    from ecg2llm.lm.beat_detail import load_detail
    from ecg2llm.lm.beat_detail import main as detail_main
    from ecg2llm.lm.beatstream import load_records
    from ecg2llm.lm.beatstream import main as store_main

    monkeypatch.setattr(bt, "load_beat_tokenizer", REAL_LOAD_BEAT_TOKENIZER)  # the `run` fixture patches it
    store, lm = tmp_path / "store", tmp_path / "lm"
    assert store_main(["--config", str(REPO / "configs/lm/tiny_v3.yaml"), "--store", str(store), "--data_dir",
                       str(data_dir), "--records", "101,106,100", "--progress", "false"]) == 0
    records, meta = load_records(store)
    assert {(r.record, r.split) for r in records} >= {("101", "valid"), ("106", "train"), ("100", "test")}
    assert {r.lead for r in records if r.record == "106"} == {"MLII", "V1"}  # training records: both leads
    assert detail_main(["--lm", str(lm), "--store", str(store), "--steps", "3", "--progress", "false"]) == 2
    shutil.copytree(REPO / "tokenizer/pretrained/v3", lm / "tokenizer")
    assert detail_main(["--lm", str(lm), "--store", str(store), "--steps", "3", "--progress", "false"]) == 0
    head = load_detail(lm)
    layout = BeatLayout.from_dict(meta["layout"])
    r = next(r for r in records if r.split == "valid")
    _, rr, coarse = layout.split_units(r.units[None, :20])
    d = head.predict(rr, coarse, mode="mean")
    assert d.shape == (1, 20, layout.n_detail) and (d >= 0).all() and (d < layout.n_detail_levels).all()


def test_visible_beats_decode_the_same_signal(monkeypatch):
    """LM v3's decode stops at the first beat whose cycle starts at the end: the signal is that of every beat
    drawn (shipped LM and tokenizer, texture off, rows drawn to the end), with no flat tail."""
    import ecg2llm.lm.beat_generate as bg
    from ecg2llm.lm.beat_tokens import decode_beats, last_visible, make_beat_tokens
    from ecg2llm.lm.model import resolve_model_dir
    from ecg2llm.lm.request import GenerateConfig

    folder = resolve_model_dir("default")
    loaded = bg.BeatLM.from_folder(folder)  # (the `run` fixture swaps the tokenizer loader for the stand-in)
    blm = bg.BeatLM(loaded.model, REAL_LOAD_BEAT_TOKENIZER(str(folder / "tokenizer")), loaded.detail)
    monkeypatch.setattr(bg, "RETIRE", False)
    _, _, s, _ = blm.synthesize(GenerateConfig(num_samples=6, seconds=8, batch_size=6, seed=2, texture=False))
    n = int(8 * blm.tok.fs)
    for rr, co, det in zip(s.rr, s.coarse, s.detail):
        i = last_visible(blm.tok, rr, n)
        assert i is not None and i + 1 < len(rr)  # beats were drawn past the visible ones
        bt, _ = make_beat_tokens(blm.tok, rr, co, det, n)
        every = np.asarray(blm.tok.decode_beats(bt, None, texture=False), np.float32)[:n]
        got, _ = decode_beats(blm.tok, rr, co, det, n)
        assert len(every) == n and np.array_equal(got, every)
        assert np.ptp(got[-int(0.3 * blm.tok.fs):]) > 0.005  # the last 0.3 s is a trace, not a padded line


def test_fine_tune_keeps_the_detail_head_of_its_init_from(run, monkeypatch):
    """A fine-tune on the same tokenizer carries its init_from's detail head over, byte for byte (generation would
    otherwise decode zeros for every beat's detail); on another tokenizer it carries none."""
    import dataclasses

    import ecg2llm.lm.beat_train as bt
    from ecg2llm.lm.beat_detail import SUBDIR
    from ecg2llm.lm.trainer import Trainer

    src = run["final"] / SUBDIR
    cfg = dataclasses.replace(run["cfg"], init_from=str(run["final"]), max_steps=2, eval_every=2, save_every=2,
                              output_dir=str(run["tmp"] / "ft"))
    final = Path(Trainer(cfg).run())
    assert sorted(p.name for p in (final / SUBDIR).iterdir()) == sorted(p.name for p in src.iterdir())
    for p in src.iterdir():
        assert (final / SUBDIR / p.name).read_bytes() == p.read_bytes()
    def load(name):  # the run's own tokenizer, and another one in init_from's folder
        tok = NaiveBeatTokenizer()
        if str(name) != "naive":
            tok.weights_hash = "another tokenizer"
        return tok

    monkeypatch.setattr(bt, "load_beat_tokenizer", load)
    cfg = dataclasses.replace(cfg, output_dir=str(run["tmp"] / "ft_other"))
    assert not (Path(Trainer(cfg).run()) / SUBDIR).exists()


def test_an_lm_without_detail_head_warns(run, tmp_path):
    """Generation from an LM v3 folder without its detail head decodes coarse-only beats: it says so on load."""
    import shutil

    from ecg2llm.lm.beat_detail import SUBDIR
    from ecg2llm.lm.beat_generate import BeatLM

    bare = tmp_path / "bare"
    shutil.copytree(run["final"], bare, ignore=shutil.ignore_patterns(SUBDIR))
    with pytest.warns(UserWarning, match="no detail head"):
        blm = BeatLM.from_folder(bare)
    assert blm.detail is None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert BeatLM.from_folder(run["final"]).detail is not None


def test_weak_v_rule_flags_premature_beats_shaped_unlike_their_neighbours(spec):
    """lm.beatstream.weak_v_beats: premature + a pause after + a shape unlike both neighbours; label_weak_v labels
    only CinC 2017 records with it."""
    from ecg2llm.lm.beatstream import BeatRecord, label_weak_v, weak_v_beats

    rr_s = np.array([0.5, 0.8, 1.1])  # RR ids 0, 1, 2 in seconds
    n_id = spec.id_of("beat:N")
    base = [0, 0, 0, 0, 0, 0]
    other = [1, 1, 1, 1, 0, 0]  # 4 of 6 differ
    rows = [(n_id, 1, base), (n_id, 1, base), (n_id, 1, base), (n_id, 0, other), (n_id, 2, base), (n_id, 1, base),
            (n_id, 0, base),  # premature, but shaped like its neighbours: not flagged
            (n_id, 1, base)]
    units = np.array([[lab, rr, *co] for lab, rr, co in rows])
    assert weak_v_beats(units, rr_s).tolist() == [False, False, False, True, False, False, False, False]
    # no pause after it: not flagged
    late = units.copy()
    late[4, 1] = 0
    assert not weak_v_beats(late, rr_s)[3]
    assert weak_v_beats(units[:2], rr_s).tolist() == [False, False]

    def rec(db):
        return BeatRecord(db, "x", "I", "train", units.copy(), np.arange(len(units)), np.full(len(units), ""),
                          np.full(len(units), ""), np.zeros((len(units), 2), np.int64))

    out, total = label_weak_v([rec("cinc2017"), rec("mitdb")], spec, rr_s)
    assert total == 1
    assert out[0].units[3, 0] == spec.id_of("beat:V") and out[0].classes[3] == "V"
    assert (np.delete(out[0].units, 3, 0) == np.delete(units, 3, 0)).all()
    assert (out[1].units == units).all() and (out[1].classes == "").all()  # MIT-BIH keeps its annotations


def test_cinc_weak_v_needs_cinc_in_the_sources():
    from ecg2llm.lm.config import LMTrainConfig

    with pytest.raises(ConfigError, match="cinc_weak_v"):
        LMTrainConfig(beat_stream=True, sources=["mitdb"], cinc_weak_v=True)
    with pytest.raises(ConfigError, match="beat_stream"):
        LMTrainConfig(cinc_weak_v=True, sources=["mitdb", "cinc2017"])


# ------------------------------------------------------------------------------------------ guidance distillation
def _distill_corpus(run, share, dropout=0.0, distill_dropout=True):
    from dataclasses import replace as dc_replace

    from ecg2llm.lm.beatstream import BeatCorpus

    lay = BeatLayout.from_dict(json.loads((run["store"] / "meta.json").read_text())["layout"]).without_rhythm()
    sp = ControlSpec(first_id=lay.codebook_size + 3, conditional=True, condition_dropout=dropout)
    train = [r for r in run["records"] if r.split == "train"]
    guided = [dc_replace(r, record=f"distill:{r.record}", beat_prefix="beat:V") for r in train]
    return lay, sp, BeatCorpus(run["records"], sp, lay, lay.codebook_size, distill=guided if share else None,
                               distill_share=share, distill_dropout=distill_dropout)


def test_distill_dropout_false_keeps_the_guided_conditions(run):
    """With distill_dropout false the guided crops always carry their condition (the null branch never learns
    them); with it, some are dropped like any crop."""
    for keep in (False, True):
        lay, sp, corpus = _distill_corpus(run, 0.5, dropout=0.5, distill_dropout=keep)
        crops, rows = corpus.random_crops(5 + 4 * lay.tokens_per_beat - 1, 200, "train", np.random.default_rng(0),
                                          return_distill=True)
        kept = crops[rows, 3] == sp.id_of("beat:V")
        assert kept.all() if not keep else 0.2 < kept.mean() < 0.8


def test_distill_crops_and_loss_weights_keep_only_guided_tokens(run):
    """Guided samples replace distill_share of the crops (the other rows are drawn as without them); in their
    rows only the tokens label contrast moves are targets: the RR and coarse tokens of S/V/F beats and the RR
    after each; every other row keeps the plain weights."""
    lay, sp, plain = _distill_corpus(run, 0.0)
    _, _, corpus = _distill_corpus(run, 0.5)
    length = 5 + 20 * lay.tokens_per_beat - 1
    ref = plain.random_crops(length, 64, "train", np.random.default_rng(3))
    crops, rows = corpus.random_crops(length, 64, "train", np.random.default_rng(3), return_distill=True)
    assert 10 < rows.sum() < 54 and (crops[~rows] == ref[~rows]).all()
    assert (crops[rows, 3] == sp.id_of("beat:V")).all()  # the guided sample's own prefix
    assert np.array_equal(plain.random_crops(length, 8, "valid", np.random.default_rng(1)),
                          corpus.random_crops(length, 8, "valid", np.random.default_rng(1)))  # never in scoring
    seqs = torch.from_numpy(np.concatenate([np.full((len(crops), 1), lay.codebook_size + 1), crops], 1))
    w = corpus.loss_weights(seqs, 1.0, rows).numpy()
    assert (w[~rows] == 1.0).all()
    ectopic = {sp.id_of(f"beat:{c}") for c in "SVF"}
    tpb, first = lay.tokens_per_beat, 1 + N_PREFIX
    want = np.zeros_like(w[rows])
    for i, row in enumerate(seqs.numpy()[rows]):
        n = (len(row) - first) // tpb
        for u in range(n):
            if int(row[first + u * tpb]) in ectopic:
                want[i, first + u * tpb + 1: first + (u + 1) * tpb] = 1.0
                if u + 1 < n:
                    want[i, first + (u + 1) * tpb + 1] = 1.0
    assert np.array_equal(w[rows], want) and want.sum() > 0  # 106 has V beats
    assert np.array_equal(corpus.loss_weights(seqs, 1.0).numpy(), np.ones_like(w))  # no rows given: plain


def test_distill_records_from_a_generated_folder(run, tmp_path, monkeypatch):
    """lm/generate.py's beat_units.npy + manifest -> training records with the request's prefix; bad folders
    are refused with what to do."""
    import ecg2llm.lm.beat_train as bt
    from ecg2llm.lm.beatstream import load_distill_records, tokenizer_id
    from ecg2llm.lm.synthesize import GenerateConfig, generate

    monkeypatch.setattr(bt, "load_beat_tokenizer", lambda name: NaiveBeatTokenizer())
    tok = NaiveBeatTokenizer()
    generate(GenerateConfig(model=str(run["final"]), num_samples=3, seconds=8, batch_size=3, png=False, seed=5,
                            out=str(tmp_path / "g"), condition=["beat:V"], guidance=2.0, label_guidance=1.0))
    lay = BeatLayout.from_dict(json.loads((run["final"] / "config.json").read_text())["ecg_stream"])
    sp = ControlSpec(first_id=lay.codebook_size + 3, conditional=True)
    rr_s = tok.rr_seconds(np.arange(lay.n_rr))
    recs = load_distill_records([tmp_path / "g"], sp, lay, tok, rr_s)
    units = np.load(tmp_path / "g" / "beat_units.npy")
    assert len(recs) == 3 and all(r.beat_prefix == "beat:V" and r.split == "train" for r in recs)
    table = lay.without_rhythm().allowed_table(sp, int(sp.first_id + len(sp.names)))[N_PREFIX:]
    for r, u in zip(recs, units):
        u = u[(u >= 0).all(1)]
        assert np.array_equal(r.units, lay.without_rhythm().units(u[:, 0], u[:, 1], u[:, 2:]))
        assert table[np.arange(table.shape[0])[None], torch.from_numpy(r.units)].all()  # each id of its slot's type
        assert len(r.r) == len(u) and (np.diff(r.r) > 0).all()
        assert all((c == "" and lab == sp.null_beat_id) or sp.id_of(f"beat:{c}") == lab
                   for c, lab in zip(r.classes, u[:, 0]))
    assert tokenizer_id(tok)  # what the manifest's weights_hash is checked against
    with pytest.raises(ConfigError, match="beat_units.npy"):
        load_distill_records([tmp_path], sp, lay, tok, rr_s)
    man = json.loads((tmp_path / "g" / "manifest.json").read_text())
    man["tokenizer"]["weights_hash"] = "another"
    (tmp_path / "g" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ConfigError, match="tokenizer"):
        load_distill_records([tmp_path / "g"], sp, lay, tok, rr_s)


def test_distill_settings():
    from ecg2llm.lm.config import LMTrainConfig

    with pytest.raises(ConfigError, match="go together"):
        LMTrainConfig(beat_stream=True, distill_share=0.2)
    with pytest.raises(ConfigError, match="go together"):
        LMTrainConfig(beat_stream=True, distill_dirs=["x"])
    with pytest.raises(ConfigError, match="distill_share"):
        LMTrainConfig(beat_stream=True, distill_dirs=["x"], distill_share=1.0)
    with pytest.raises(ConfigError, match="beat_stream"):
        LMTrainConfig(distill_dirs=["x"], distill_share=0.2)


def test_distill_fine_tune_runs_and_says_so(run, tmp_path, monkeypatch):
    """A short LM v3 run with guided samples: trains (weighted loss), and training_data.json names them apart from
    the records (the scorecard's copy search never reads them as patients)."""
    import ecg2llm.lm.beat_train as bt
    from ecg2llm.lm.beatstream import tokenizer_id
    from ecg2llm.lm.config import LMTrainConfig
    from ecg2llm.lm.trainer import Trainer
    from ecg2llm.tokenizer import training_data as td

    monkeypatch.setattr(bt, "load_beat_tokenizer", lambda name: NaiveBeatTokenizer())
    tok = NaiveBeatTokenizer()
    lay = BeatLayout.from_dict(json.loads((run["store"] / "meta.json").read_text())["layout"]).without_rhythm()
    sp = ControlSpec(first_id=lay.codebook_size + 3, conditional=True)
    units = [lay.split_units(r.units) for r in run["records"] if r.split == "train"][:2]
    arr = np.full((2, max(len(u[0]) for u in units), lay.tokens_per_beat), -1, np.int32)
    for i, (lab, rr, co) in enumerate(units):  # what lm/generate.py writes: label id, RR index, coarse indices
        arr[i, :len(lab)] = np.concatenate([lab[:, None], rr[:, None], co], 1)
    g = tmp_path / "guided"
    g.mkdir()
    np.save(g / "beat_units.npy", arr)
    (g / "manifest.json").write_text(json.dumps({"lm_version": 3, "tokenizer": {"weights_hash": tokenizer_id(tok)},
                                                 "conditioning": {"rhythm": None, "beat": "V"}, "config": {}}))
    assert sp.id_of("beat:V")
    cfg = LMTrainConfig(**{**run["cfg"].__dict__, "rhythm_slot": False, "output_dir": str(tmp_path / "run"),
                           "max_steps": 3, "eval_every": 0, "save_every": 0, "distill_dirs": [str(g)],
                           "distill_share": 0.5})
    final = Trainer(cfg).run()
    data = td.read(final)
    assert data["distill"]["samples"] == 2 and data["distill"]["share"] == 0.5
    assert data["mitdb"]["records"] == ["106"]
    m = json.loads((Path(final) / "metrics.json").read_text())
    assert np.isfinite(m["val"]["bits_per_token"])
    with pytest.raises(ConfigError, match="rhythm_slot"):
        Trainer(LMTrainConfig(**{**cfg.__dict__, "rhythm_slot": True, "output_dir": str(tmp_path / "r2")})).run()


# ------------------------------------------------------------------------------------------ KL anchor
def test_anchor_kl_is_the_mean_kl_over_kept_targets():
    from ecg2llm.lm.trainer import anchor_kl

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 5, 7, generator=g), torch.randn(3, 5, 7, generator=g)
    labels = torch.ones(3, 5, dtype=torch.long)
    labels[0, 2] = -100  # a target that is not one (PAD)
    assert float(anchor_kl(a, a, labels)) == pytest.approx(0.0, abs=1e-6)
    lp, lq = torch.log_softmax(a[:, :-1], -1), torch.log_softmax(b[:, :-1], -1)
    kl = (lq.exp() * (lq - lp)).sum(-1)  # (3, 4): KL(ref || model) at each target
    keep = torch.ones(3, 4, dtype=torch.bool)
    keep[0, 1] = False  # the -100 target
    keep[1] = False  # the skipped (guided) row
    got = float(anchor_kl(a, b, labels, skip_rows=[False, True, False]))
    assert got == pytest.approx(float(kl[keep].mean()), rel=1e-5) and got > 0


def test_anchor_fine_tune_starts_at_zero_kl_and_records_it(run, tmp_path, monkeypatch):
    """A fine-tune with ``anchor_weight`` starts from a copy of its anchor (KL 0 at the first step), moves away from
    it, and logs the KL; without ``init_from`` the setting is refused."""
    import ecg2llm.lm.beat_train as bt
    from ecg2llm.lm.config import LMTrainConfig
    from ecg2llm.lm.trainer import Trainer

    monkeypatch.setattr(bt, "load_beat_tokenizer", lambda name: NaiveBeatTokenizer())
    cfg = LMTrainConfig(**{**run["cfg"].__dict__, "output_dir": str(tmp_path / "run"), "max_steps": 3,
                           "eval_every": 0, "save_every": 0, "log_every": 1, "init_from": str(run["final"]),
                           "anchor_weight": 1.0, "learning_rate": 1e-2})
    final = Trainer(cfg).run()
    log = [json.loads(ln) for ln in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    kl = [r["train/anchor_kl"] for r in log if "train/anchor_kl" in r]
    assert len(kl) == 3 and kl[0] == pytest.approx(0.0, abs=1e-6) and kl[-1] > 1e-6
    assert json.loads((tmp_path / "run" / "run_info.json").read_text())["config"]["anchor_weight"] == 1.0
    assert (Path(final) / "model.safetensors").is_file()
    with pytest.raises(ConfigError, match="init_from"):
        LMTrainConfig(beat_stream=True, anchor_weight=0.5)
    with pytest.raises(ConfigError, match="anchor_weight"):
        LMTrainConfig(anchor_weight=-1.0, init_from="x")
