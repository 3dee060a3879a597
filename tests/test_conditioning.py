"""Control tokens of a conditional LM: label mapping, stream plumbing, conditional sampling, .atr output.

The LMs here are untrained (random weights) with the toy tokenizer of ``lm_support``: what is tested is
where labels go and that conditions are honoured, not sample quality.
"""
from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from lm_support import UniformBlockConfig, UniformBlockTokenizer, build_test_store

from ecg2llm.core.errors import ConfigError
from ecg2llm.lm.conditioning import (
    ConditionedCorpus,
    ConditionSpec,
    events_to_annotations,
    interleave,
    label_events,
    rhythm_in_force,
    split_stream,
)
from ecg2llm.lm.model import TOKENIZER_SUBDIR, build_model, tokenizer_record
from ecg2llm.tokenizer.data import Annotations
from ecg2llm.tokenizer.ecg import rhythm_name

V = 64  # the toy tokenizer's codebook
SPEC = ConditionSpec(first_id=V + 3)


def _ann(items) -> Annotations:
    return Annotations(sample=np.array([s for s, _, _ in items], np.int64), symbol=[m for _, m, _ in items],
                       aux_note=[a for _, _, a in items])


def test_label_mapping_and_positions():
    ann = _ann([(3, "+", "(N"), (400, "N", ""), (800, "A", ""), (1000, "+", "(AFIB"), (1200, "V", ""),
                (1300, "?", ""), (1350, "~", ""), (1500, "F", ""), (1700, "/", ""), (1900, "L", "")])
    pos, ids, initial = label_events(ann, n_codes=200, samples_per_token=10, fs=360.0, spec=SPEC)
    names = [SPEC.name_of(i) for i in ids]
    # the first rhythm note sets the prefix; "?" (unclassifiable) and "~" (noise) get no token
    assert SPEC.name_of(initial) == "rhythm:N"
    assert names == ["beat:N", "beat:S", "rhythm:AFIB", "beat:V", "beat:F", "beat:Q", "beat:N"]
    # a beat token sits lead_s = 0.2 s (72 samples) before its R peak; a rhythm token at its note
    lead = 72
    assert pos.tolist() == [(400 - lead) // 10, (800 - lead) // 10, 100, (1200 - lead) // 10,
                            (1500 - lead) // 10, (1700 - lead) // 10, (1900 - lead) // 10]
    assert np.all(np.diff(pos) >= 0)


def test_rhythm_names_and_excerpt_offset():
    assert rhythm_name("(AFIB") == "AFIB" and rhythm_name("(N\x00") == "N" and rhythm_name("(XYZ") == "other"
    ann = _ann([(0, "+", "(N"), (500, "+", "(VT"), (900, "V", ""), (2000, "+", "(N")])
    # an excerpt starting after the VT note: VT is in force at its start, only the later note is inline
    pos, ids, initial = label_events(ann, n_codes=200, samples_per_token=10, fs=360.0, spec=SPEC, offset=600)
    assert SPEC.name_of(initial) == "rhythm:VT"
    assert [SPEC.name_of(i) for i in ids] == ["beat:V", "rhythm:N"]
    assert pos.tolist() == [(900 - 72 - 600) // 10, (2000 - 600) // 10]


def test_interleave_and_split_are_inverse():
    rng = np.random.default_rng(0)
    for _ in range(20):
        codes = rng.integers(0, V, size=int(rng.integers(1, 300)))
        k = int(rng.integers(0, 30))
        pos = np.sort(rng.integers(0, len(codes), size=k))
        ids = SPEC.first_id + rng.integers(0, SPEC.n_tokens, size=k)
        stream = interleave(codes, pos, ids)
        assert len(stream) == len(codes) + k
        back, events = split_stream(stream, SPEC)
        assert np.array_equal(back, codes)
        assert [e[0] for e in events] == pos.tolist()
        assert [e[1] for e in events] == [SPEC.name_of(i) for i in ids]


def test_rhythm_in_force_follows_the_last_rhythm_token():
    n, afib, vt = (SPEC.id_of(f"rhythm:{r}") for r in ("N", "AFIB", "VT"))
    beat = SPEC.id_of("beat:N")
    stream = np.array([5, 6, beat, afib, 7, 8, vt, 9])
    assert rhythm_in_force(stream, n, SPEC).tolist() == [n, n, n, afib, afib, afib, vt, vt]


def test_parse_conditions_checks_names_and_training_counts():
    spec = ConditionSpec(first_id=V + 3, counts={"beat:V": 10, "beat:N": 100, "rhythm:AFIB": 3, "rhythm:N": 9})
    assert spec.parse_conditions(["rhythm:AFIB", "beat:V"]) == ("AFIB", ["V"])
    assert spec.parse_conditions(["V", "(AFIB"]) == ("AFIB", ["V"])  # bare names are understood
    with pytest.raises(ConfigError, match=r"unknown condition 'beat:X'.*beat:V \(10\)"):
        spec.parse_conditions(["beat:X"])
    with pytest.raises(ConfigError, match="never occurred"):
        spec.parse_conditions(["beat:F"])
    with pytest.raises(ConfigError, match="two rhythms"):
        spec.parse_conditions(["rhythm:AFIB", "rhythm:N"])


def _cond_lm(folder: Path, context_length: int = 48) -> Path:
    tok = UniformBlockTokenizer(UniformBlockConfig())
    cfg = types.SimpleNamespace(n_layer=2, n_head=2, n_kv_head=None, d_model=32, d_ff=None,
                                context_length=context_length, rope_theta=1e4, attention_dropout=0.0,
                                tie_embeddings=True, vocab_multiple=64, init_std=0.02, leads=["MLII"])
    torch.manual_seed(0)
    model = build_model(cfg, {**tokenizer_record(tok), "source": "test"}, ConditionSpec(first_id=V + 3))
    assert model.config.vocab_size >= V + 3 + SPEC.n_tokens
    model.save_pretrained(folder)
    tok.save_pretrained(folder / TOKENIZER_SUBDIR)
    return folder


@pytest.fixture(scope="module")
def cond_lm(tmp_path_factory) -> Path:
    return _cond_lm(tmp_path_factory.mktemp("cond") / "final")


def test_conditional_sampling_honours_rhythm_and_biases_beats(cond_lm):
    from ecg2llm.lm.model import load_lm
    from ecg2llm.lm.sampling import sample_conditioned, sample_tokens

    model, _ = load_lm(cond_lm)
    n_codes = 120  # > the 48-token context: the sliding window keeps the rhythm prefix
    out = sample_conditioned(model, 6, n_codes, conditions=["rhythm:AFIB"], batch_size=3, seed=0)
    assert out.codes.shape == (6, n_codes) and out.codes.min() >= 0 and out.codes.max() < V
    assert out.rhythm == ["AFIB"] * 6
    for stream, codes, events in zip(out.streams, out.codes, out.events):
        back, ev = split_stream(stream, SPEC)
        assert np.array_equal(back[:n_codes], codes)
        assert all(name == "rhythm:AFIB" for _, name in ev if name.startswith("rhythm:"))
        assert all(0 <= k < n_codes for k, _ in events)
    base = sample_conditioned(model, 6, n_codes, batch_size=3, seed=1)
    pushed = sample_conditioned(model, 6, n_codes, conditions=["beat:V"], strength=4.0, batch_size=3, seed=1)

    def share_v(s):
        beats = [n for ev in s.events for _, n in ev if n.startswith("beat:")]
        return beats.count("beat:V") / max(len(beats), 1)

    assert share_v(pushed) > share_v(base) + 0.2
    # the plain sampler returns codes only for a conditional LM
    codes = sample_tokens(model, 2, 30, batch_size=2, seed=0)
    assert codes.shape == (2, 30) and codes.max() < V


def test_generate_writes_annotations_that_wfdb_reads(tmp_path, cond_lm):
    import wfdb

    from ecg2llm.eval.beats import synthetic_beats
    from ecg2llm.lm.generate import main

    out = tmp_path / "gen"
    assert main(["--model", str(cond_lm), "--num_samples", "3", "--seconds", "4", "--out", str(out),
                 "--condition", "rhythm:N,beat:V", "--batch_size", "3", "--png", "false"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["conditioning"]["conditions"] == ["rhythm:N", "beat:V"]
    total = 0
    for s in m["samples"]:
        ann = wfdb.rdann(str(out / s["name"]), "atr")
        rec = wfdb.rdrecord(str(out / s["name"]))
        assert set(ann.symbol) <= {"N", "A", "V", "F", "Q", "+"}
        assert ann.sample.min() >= 0 and ann.sample.max() < rec.sig_len
        assert [a for a, sym in zip(ann.aux_note, ann.symbol) if sym == "+"][0] == "(N"
        beats = [sym for sym in ann.symbol if sym != "+"]
        assert len(beats) == s["beats"]
        total += len(beats)
        peaks = ann.sample[[sym != "+" for sym in ann.symbol]]
        assert np.all(np.diff(peaks) >= 0.15 * 360)  # one label per peak
    assert sum(m["conditioning"]["beats_per_class"].values()) == total
    beats = synthetic_beats(out)
    assert len(beats) <= total and beats.x.shape[1] == 256


def test_conditions_need_a_conditional_lm_and_known_names(tmp_path, cond_lm, capsys):
    from test_lm_generate import _save_lm

    from ecg2llm.lm.generate import main

    plain = _save_lm(tmp_path / "plain", UniformBlockTokenizer(UniformBlockConfig()))
    assert main(["--model", str(plain), "--condition", "beat:V", "--out", str(tmp_path / "a")]) == 2
    assert "needs a conditional LM" in capsys.readouterr().err
    assert main(["--model", str(cond_lm), "--condition", "beat:X", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "unknown condition 'beat:X'" in err and "beat:V" in err and "rhythm:AFIB" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_events_to_annotations_merges_labels_on_one_peak():
    x = np.zeros(3600, np.float32)
    x[[500, 1200]] = 1.0  # two sharp R peaks
    # two beat tokens a few codes apart both point at the first peak
    ev = [(42, "beat:V"), (43, "beat:N"), (110, "beat:N")]
    lab = events_to_annotations(ev, "N", x, 360.0, 10, 0.2)
    assert lab.beat_sample.tolist() == [500, 1200] and lab.beat_class == ["V", "N"] and lab.dropped == 1
    assert lab.rhythm == ["N"] and lab.rhythm_sample.tolist() == [0]


def test_corpus_crops_are_prefixed_stream_slices(tmp_path, data_dir):
    tok_dir = UniformBlockTokenizer(UniformBlockConfig()).save_pretrained(tmp_path / "tok")
    store_dir = build_test_store(tmp_path / "store", tok_dir, data_dir, ["106", "101"])
    from ecg2llm.tokenizer.store import TokenStore

    store = TokenStore.open(store_dir)
    corpus = ConditionedCorpus(store, SPEC, data_dir, 360.0, 10.0)
    # every AAMI-labelled beat of the record became exactly one beat token, codes unchanged
    from ecg2llm.lm.conditioning import read_annotations
    from ecg2llm.tokenizer.ecg import AAMI_CLASSES

    for split, rec in (("train", "106"), ("valid", "101")):
        (stream,) = corpus.streams[split]
        codes, events = split_stream(stream, SPEC)
        assert np.array_equal(codes, np.asarray(store.tokens_of(store.get(rec)), np.int64))
        _, symbols = read_annotations(rec, data_dir, 360.0).beats()
        n_beats = sum(1 for e in events if e[1].startswith("beat:"))
        assert n_beats == sum(s in AAMI_CLASSES for s in symbols)
    counts = corpus.counts("train")
    assert counts["beat:V"] > 100 and set(counts) == set(SPEC.names)  # record 106 has ~520 PVCs
    crops = corpus.random_crops(64, 16, "train", np.random.default_rng(0))
    assert crops.shape == (16, 64)
    rid = set(SPEC.rhythm_ids().tolist())
    (stream,) = corpus.streams["train"]
    for c in crops:
        assert c[0] in rid
        starts = [s for s in range(len(stream) - 62) if np.array_equal(stream[s:s + 63], c[1:])]
        assert starts and corpus.rhythm_at["train"][0][starts[0]] == c[0]
    tiles = corpus.tiles("valid", 64, max_crops=5)
    assert tiles.shape == (5, 64) and np.array_equal(tiles, corpus.tiles("valid", 64, max_crops=5))



def test_shipped_conditional_model_generates_the_requested_rhythm(tmp_path):
    import wfdb

    from ecg2llm.lm.generate import main

    out = tmp_path / "g"
    assert main(["--model", "v2-conditional", "--condition", "rhythm:AFIB", "--num_samples", "2", "--seconds", "10",
                 "--out", str(out), "--png", "false"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    for s in m["samples"]:
        rec = wfdb.rdrecord(str(out / s["name"]))
        ann = wfdb.rdann(str(out / s["name"]), "atr")
        assert rec.sig_len == 3600 and np.isfinite(rec.p_signal).all()
        assert {a for a, sym in zip(ann.aux_note, ann.symbol) if sym == "+"} == {"(AFIB"}
        assert s["beats"] >= 5  # a 10-s ECG has beats, and every one is labelled
    from ecg2llm.lm.model import PRETRAINED_DIR

    spec = ConditionSpec.from_dict(
        json.loads((PRETRAINED_DIR / "v2-conditional" / "config.json").read_text())["ecg_conditioning"])
    assert spec.counts["beat:V"] > 1000 and spec.counts["rhythm:AFIB"] > 0


def test_store_with_other_validation_records_is_refused(tmp_path, data_dir):
    """Splits are fixed when a store is built: a config asking for other validation records gets a clear error."""
    from ecg2llm.core.errors import StoreError
    from ecg2llm.lm.data import open_or_build_store

    tok = UniformBlockTokenizer(UniformBlockConfig())
    tok_dir = tok.save_pretrained(tmp_path / "tok")
    store = build_test_store(tmp_path / "store", tok_dir, data_dir, ["106", "101", "112"])  # 101, 112: valid
    cfg = types.SimpleNamespace(store=str(store), tokenizer=str(tok_dir), valid_records=["101", "112", "119", "208"])
    assert open_or_build_store(cfg, tok).path == store  # 119/208 are not in this store: consistent
    cfg.valid_records = ["101"]  # would make 112 a training record
    with pytest.raises(StoreError, match=r"validation records \['101', '112'\].*asks for \['101'\]"):
        open_or_build_store(cfg, tok)
