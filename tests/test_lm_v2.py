"""LM v2 ingredients: control vocabulary, CinC 2017 reader, mixed corpus with condition dropout,
classifier-free guidance invariants, pretrain -> fine-tune, and the XQRS rhythm check."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_ecg, write_wfdb
from lm_support import random_v2_lm, seed_tokenizer_dir

from ecg2llm.core.errors import ConfigError
from ecg2llm.lm.conditioning import ConditionSpec
from ecg2llm.lm.control import ControlSpec, drop_conditions

TINY = ["--n_layer", "2", "--d_model", "32", "--n_head", "2", "--context_length", "64", "--batch_size", "4",
        "--eval_crops", "8", "--final_eval_crops", "8", "--eval_batch_size", "8", "--log_every", "1",
        "--progress", "false", "--num_threads", "1", "--figure_samples", "0", "--save_every", "0"]


# ------------------------------------------------------------------------------------------ vocabulary
def test_control_spec_keeps_v1_ids_and_round_trips_source_and_lead_tokens():
    v1, v2 = ConditionSpec(first_id=67), ControlSpec(first_id=67)
    for name in v1.names:  # every id the shipped conditional LM uses is unchanged
        assert v2.id_of(name) == v1.id_of(name)
    assert v2.names[len(v1.names):len(v1.names) + 2] == ["beat:?", "rhythm:?"]
    for src in ("mitdb", "cinc2017"):
        for lead in ("MLII", "V1", "I"):
            ids = v2.prefix(src, lead)
            assert [v2.name_of(i) for i in ids] == [f"source:{src}", f"lead:{lead}"]
    d = json.loads(json.dumps(v2.to_dict()))
    assert ControlSpec.from_dict(d) == v2 and d["version"] == 2
    assert ConditionSpec.from_dict(d).names == v1.names  # a v1 reader sees the v1 vocabulary
    assert ControlSpec.of_model(type("C", (), {"ecg_conditioning": v1.to_dict()})()) is None
    with pytest.raises(ConfigError, match="unknown source"):
        v2.source_id("ptbxl")
    with pytest.raises(ConfigError, match="not a condition"):
        v2.parse_conditions(["source:mitdb"])


def test_condition_dropout_rate_and_what_it_replaces():
    spec = ControlSpec(first_id=67)
    row = np.array(spec.prefix("mitdb", "MLII") + [spec.id_of("rhythm:AFIB"), 5, spec.id_of("beat:V"), 7,
                                                   spec.id_of("beat:N"), spec.id_of("rhythm:N"), 9])
    crops = np.tile(row, (20000, 1))
    out = drop_conditions(crops, spec, 0.1, np.random.default_rng(0))
    dropped = (out != crops).any(1)
    assert abs(dropped.mean() - 0.1) < 3 * np.sqrt(0.1 * 0.9 / len(crops))  # within 3 sigma of p
    assert (out[~dropped] == row).all()
    nulled = out[dropped][0]
    assert [spec.name_of(i) for i in nulled[[2, 4, 6, 7]]] == ["rhythm:?", "beat:?", "beat:?", "rhythm:?"]
    assert (nulled[[0, 1, 3, 5, 8]] == row[[0, 1, 3, 5, 8]]).all()  # source, lead and codes untouched
    assert (drop_conditions(crops[:50], spec, 0.0, np.random.default_rng(0)) == crops[:50]).all()
    all_null = drop_conditions(crops[:50], spec, 1.0, np.random.default_rng(0))
    assert not np.isin(all_null, np.r_[spec.beat_ids(), spec.rhythm_ids()]).any()


# ------------------------------------------------------------------------------------------ CinC 2017
@pytest.fixture(scope="module")
def cinc_root() -> Path:
    from conftest import _real_data_root

    root = _real_data_root()
    if root is None or not (root / "cinc2017" / "REFERENCE.csv").is_file():
        pytest.skip("CinC 2017 not found at ../shared/data/cinc2017")
    return root


def test_cinc2017_reader_on_real_data(cinc_root):
    from ecg2llm.lm.corpora import CINC_RHYTHM, read_cinc2017, read_cinc2017_labels

    labels = read_cinc2017_labels(cinc_root)
    counts = {k: sum(v == k for v in labels.values()) for k in CINC_RHYTHM}
    assert counts == {"N": 5050, "A": 738, "O": 2456, "~": 284}  # the challenge's v3 labels
    r = read_cinc2017("A00001", cinc_root)
    assert (r.fs, r.lead, len(r.signal)) == (300.0, "I", 9000)
    assert 0.3 < np.ptp(r.signal) < 5.0  # millivolts, not ADC units
    r360 = read_cinc2017("A00001", cinc_root, fs=360.0)
    assert r360.fs == 360.0 and len(r360.signal) == 10800


def test_cinc2017_missing_folder_says_where_to_get_it(tmp_path):
    from ecg2llm.core.errors import DataNotFoundError
    from ecg2llm.lm.corpora import read_cinc2017_labels

    with pytest.raises(DataNotFoundError, match="training2017.zip"):
        read_cinc2017_labels(tmp_path)


def test_r_amplitude_proxy_tracks_qrs_height_not_offset_or_polarity():
    from ecg2llm.lm.corpora import r_amplitude_mv

    x = synthetic_ecg(30, hr_bpm=75, seed=0).astype(np.float64)
    a = r_amplitude_mv(x, 360.0)
    assert 0.3 < a < 3.0
    assert r_amplitude_mv(0.5 * x, 360.0) == pytest.approx(0.5 * a, rel=1e-6)  # linear in gain
    assert r_amplitude_mv(x + 2.0, 360.0) == pytest.approx(a, rel=0.02)  # a DC offset does not count
    assert r_amplitude_mv(-x, 360.0) == pytest.approx(a, rel=1e-6)  # handheld leads may be inverted
    assert r_amplitude_mv(x[:1800], 360.0) > 0  # shorter than one window: one window


def test_cinc2017_curation_on_real_data(cinc_root):
    """Label and amplitude filters name the recordings left out; the amplitude read is the real one."""
    from ecg2llm.lm.corpora import cinc2017_excluded, read_cinc2017_labels

    labels = dict(list(read_cinc2017_labels(cinc_root).items())[:60])
    assert cinc2017_excluded(labels) == set()
    noisy = {n for n, lab in labels.items() if lab == "~"}
    assert cinc2017_excluded(labels, keep_labels=["N", "A", "O"]) == noisy
    low = cinc2017_excluded(labels, min_r_mv=0.5, data_dir=cinc_root, progress=False)
    assert 0 < len(low) < 30  # about a quarter of CinC reads under 0.5 mV (MIT-BIH DS1: under 1 %)
    assert cinc2017_excluded(labels, ["N", "A", "O"], 0.5, cinc_root, False) == low | noisy


# ------------------------------------------------------------------------------------------ corpus
@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Synthetic MIT-BIH-named two-lead records: 100 (test), 101 (valid), 106 and 108 (train), 40 s each."""
    root = tmp_path_factory.mktemp("v2data")
    for i, (rec, hr) in enumerate((("100", 70), ("101", 64), ("106", 80), ("108", 95))):
        x = synthetic_ecg(40, hr_bpm=hr, seed=i)
        write_wfdb(root / "mitdb", rec, np.stack([x, -0.5 * x], 1))
    return root


@pytest.fixture(scope="module")
def seed_tok(tmp_path_factory) -> Path:
    return seed_tokenizer_dir(tmp_path_factory.mktemp("v2tok") / "seed")


def test_augmented_store_and_mixed_corpus(tmp_path, data_root, seed_tok):
    from ecg2llm.lm.corpora import augment, build_mitdb_store, draw_augmentation
    from ecg2llm.lm.mixture import MixedCorpus
    from ecg2llm.tokenizer.base import ECGTokenizer

    tok = ECGTokenizer.from_pretrained(seed_tok)
    store = build_mitdb_store(tmp_path / "s", tok, data_root, records=["100", "101", "106", "108"],
                              valid_records=["101"], views=1, progress=False)
    names = {(e.record, e.lead, e.split) for e in store.entries()}
    assert ("106@a1", "V1", "train") in names and ("100", "V1", "test") in names
    assert not any("@a" in r for r, _, s in names if s != "train")  # only training records are augmented
    d = store.meta["views"]["106@a1"]
    assert 0.8 <= d["gain"] <= 1.25 and abs(d["offset_mv"]) <= 0.1 and 0.95 <= d["tempo"] <= 1.05
    x = synthetic_ecg(10)
    assert len(augment(x, 360.0, draw_augmentation(np.random.default_rng(1)))) == pytest.approx(
        len(x) / draw_augmentation(np.random.default_rng(1)).tempo, abs=1)

    spec = ControlSpec(first_id=tok.vocab_size + 3, conditional=True, condition_dropout=0.5)
    c = MixedCorpus([(store, "mitdb")], spec, train_leads=["MLII", "V1"], data_dir=data_root, fs=tok.fs,
                    samples_per_token=tok.samples_per_token)
    assert {n[2] for n in c.names["train"]} == {"MLII", "V1"} and len(c.names["train"]) == 8
    assert c.names["valid"] == [("mitdb", "101", "MLII")] and c.names["test"] == [("mitdb", "100", "MLII")]
    assert len(c.sequences("train")) == 2  # the bigram reference: DS1 MLII originals only
    tiles = c.tiles("test", 63)
    assert (tiles[:, 0] == spec.source_id("mitdb")).all() and (tiles[:, 1] == spec.lead_id("MLII")).all()
    assert np.isin(tiles[:, 2], spec.rhythm_ids()).all()
    assert np.isin(spec.id_of("beat:N"), tiles)  # inline beat labels from the .atr
    crops = c.random_crops(63, 400, rng=np.random.default_rng(0))
    dropped = (crops[:, 2] == spec.null_rhythm_id)
    assert 0.4 < dropped.mean() < 0.6
    assert not np.isin(crops[dropped], spec.beat_ids()).any()
    # the augmented view's beat labels follow its tempo: ~ as many per second of codes as the original
    i_aug = c.names["train"].index(("mitdb", "106@a1", "MLII"))
    i_org = c.names["train"].index(("mitdb", "106", "MLII"))
    streams = [c.streams["train"][i] for i in (i_aug, i_org)]
    rate = [np.isin(s, spec.beat_ids()).sum() / (s < tok.vocab_size).sum() for s in streams]
    assert rate[0] == pytest.approx(rate[1] * d["tempo"], rel=0.05)


def test_lead_rotation_views_are_rotations_of_the_record_pair(tmp_path, data_root, seed_tok):
    from ecg2llm.core.errors import RecordError, StoreError
    from ecg2llm.lm.config import LMTrainConfig
    from ecg2llm.lm.corpora import augment, build_mitdb_store, draw_augmentation, rotate_leads
    from ecg2llm.lm.mixture import open_corpus
    from ecg2llm.tokenizer.base import ECGTokenizer
    from ecg2llm.tokenizer.data import read_record, resample

    # the rotation: power and timing kept, the identity at 0, its inverse at -deg, 90 deg swaps the leads
    a, b = synthetic_ecg(5, seed=1), synthetic_ecg(5, seed=2)
    x, y = rotate_leads(a, b, 30.0)
    np.testing.assert_allclose(x ** 2 + y ** 2, a ** 2 + b ** 2, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(rotate_leads(*rotate_leads(a, b, 25.0), -25.0), (a, b), atol=1e-6)
    np.testing.assert_allclose(rotate_leads(a, b, 90.0), (b, -a), atol=1e-6)
    # the angle is drawn last: gain, offset and tempo are those of the draw without rotation
    d0, d = draw_augmentation(np.random.default_rng([0, 1, 106])), draw_augmentation(
        np.random.default_rng([0, 1, 106]), max_mix_deg=30.0)
    assert (d.gain, d.offset_mv, d.tempo) == (d0.gain, d0.offset_mv, d0.tempo) and d0.mix_deg == 0.0
    assert 0 < abs(d.mix_deg) <= 30.0
    d.tempo, d.gain, d.offset_mv = 1.0, 1.0, 0.0
    np.testing.assert_allclose(augment(a, 360.0, d, other=b), rotate_leads(a, b, d.mix_deg)[0], atol=1e-5)
    np.testing.assert_allclose(augment(b, 360.0, d, other=a, first=False), rotate_leads(a, b, d.mix_deg)[1],
                               atol=1e-5)
    with pytest.raises(RecordError, match="second lead"):
        augment(a, 360.0, d)
    with pytest.raises(RecordError, match="same length"):
        rotate_leads(a, b[:-1], 10.0)

    tok = ECGTokenizer.from_pretrained(seed_tok)
    store = build_mitdb_store(tmp_path / "rot", tok, data_root, records=["100", "101", "106"],
                              valid_records=["101"], views=1, mix_deg=30.0, progress=False)
    assert store.meta["augment_mix_deg"] == 30.0
    view = store.meta["views"]["106@a1"]
    assert 0 < abs(view["mix_deg"]) <= 30.0
    # the stored view is the tokenization of the rotated pair, not of the lead alone
    recs = [read_record("106", data_root, lead=ld, annotations=False) for ld in ("MLII", "V1")]
    ra, rb = (r.signal if r.fs == tok.fs else resample(r.signal, r.fs, tok.fs).astype(np.float32) for r in recs)
    want, _ = tok.encode(augment(ra, tok.fs, draw_augmentation(np.random.default_rng([0, 1, 106]),
                                                               max_mix_deg=30.0), other=rb), tok.fs)
    got = {(e.record, e.lead): e for e in store.entries()}
    np.testing.assert_array_equal(store.tokens_of(got[("106@a1", "MLII")]), want)
    plain, _ = tok.encode(augment(ra, tok.fs, draw_augmentation(np.random.default_rng([0, 1, 106]))), tok.fs)
    assert (store.tokens_of(got[("106@a1", "MLII")]) != plain).mean() > 0.05
    with pytest.raises(StoreError, match="mix_deg"):
        build_mitdb_store(tmp_path / "bad", tok, data_root, records=["106"], views=1, mix_deg=120.0, progress=False)

    # a config must match its store; and the knob needs views
    cfg = LMTrainConfig(sources=["mitdb"], store=str(tmp_path / "rot"), records=["100", "101", "106"],
                        valid_records=["101"], augment_views=1, augment_mix_deg=20.0, data_dir=str(data_root))
    with pytest.raises(StoreError, match="augment_mix_deg 20"):
        open_corpus(cfg, tok)
    with pytest.raises(ConfigError, match="augment_views"):
        LMTrainConfig(sources=["mitdb"], augment_mix_deg=10.0)
    with pytest.raises(ConfigError, match="0, 90"):
        LMTrainConfig(sources=["mitdb"], augment_views=1, augment_mix_deg=-5.0)


def test_augment_views_figure_on_a_real_record(tmp_path, data_root):
    from test_entrypoint_errors import _main

    out = tmp_path / "rot.png"
    assert _main("scripts/augment_views.py")(["--record", "106", "--angles=-20,20", "--start_s", "0", "--seconds", "2",
                                               "--data_dir", str(data_root), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob("*.tmp*"))


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, data_root, seed_tok):
    """Records 100 (DS2), 101 (validation), 106 and 108 (DS1 training), every lead, no views: the store, an
    unconditional spec, and the MixedCorpus keywords (MLII and V1) of the crop-weighting tests."""
    from ecg2llm.lm.corpora import build_mitdb_store
    from ecg2llm.tokenizer.base import ECGTokenizer

    tok = ECGTokenizer.from_pretrained(seed_tok)
    store = build_mitdb_store(tmp_path_factory.mktemp("small_store") / "s", tok, data_root,
                              records=["100", "101", "106", "108"], valid_records=["101"], views=0, progress=False)
    spec = ControlSpec(first_id=tok.vocab_size + 3, conditional=False)
    return store, spec, dict(train_leads=["MLII", "V1"], fs=tok.fs, samples_per_token=tok.samples_per_token)


def test_source_weights_set_each_database_share_of_training_crops(small_store):
    from ecg2llm.core.errors import ConfigError
    from ecg2llm.lm.config import LMTrainConfig
    from ecg2llm.lm.mixture import MixedCorpus

    store, spec, kw = small_store
    # the same records read as a second database: equal tokens, so unweighted crops split ~50/50
    both = [(store, "mitdb"), (store, "cinc2017")]
    plain = MixedCorpus(both, spec, **kw)
    weighted = MixedCorpus(both, spec, source_weights={"mitdb": 3.0, "cinc2017": 1.0}, **kw)
    assert plain.n_tokens("train", "mitdb") == pytest.approx(plain.n_tokens("train", "cinc2017"), rel=0.3)
    mitdb_id = spec.source_id("mitdb")
    share = [(c.random_crops(40, 2000, rng=np.random.default_rng(0))[:, 0] == mitdb_id).mean()
             for c in (plain, weighted)]
    assert share[0] == pytest.approx(plain.n_tokens("train", "mitdb") / plain.n_tokens("train"), abs=0.05)
    assert share[1] == pytest.approx(0.75, abs=0.03)
    # exclude leaves those CinC recordings out of training, MIT-BIH's records of the same name stay
    cut = MixedCorpus(both, spec, exclude={"106"}, **kw)
    assert cut.excluded == 2 and cut.n_tokens("train", "mitdb") == plain.n_tokens("train", "mitdb")
    assert ("cinc2017", "106", "MLII") not in cut.names["train"] and ("mitdb", "106", "MLII") in cut.names["train"]
    assert 0 < cut.n_tokens("train", "cinc2017") < plain.n_tokens("train", "cinc2017")
    # evaluation tiles are untouched by the weights
    assert np.array_equal(plain.tiles("test", 40), weighted.tiles("test", 40))
    with pytest.raises(ConfigError, match="no weight to"):
        MixedCorpus(both, spec, source_weights={"mitdb": 1.0}, **kw).random_crops(40, 4)
    with pytest.raises(ConfigError, match="one weight per source"):
        LMTrainConfig(sources=["mitdb", "cinc2017"], source_weights=[1.0])
    with pytest.raises(ConfigError, match="must all be > 0"):
        LMTrainConfig(sources=["mitdb", "cinc2017"], source_weights=[1.0, 0.0])
    with pytest.raises(ConfigError, match="not CinC 2017 labels"):
        LMTrainConfig(sources=["mitdb", "cinc2017"], cinc_labels=["N", "AF"])
    with pytest.raises(ConfigError, match="cinc_min_r_mv"):
        LMTrainConfig(sources=["mitdb", "cinc2017"], cinc_min_r_mv=-1.0)


def test_record_weights_set_a_records_share_of_its_database_crops(small_store):
    from ecg2llm.core.errors import ConfigError
    from ecg2llm.lm.config import LMTrainConfig
    from ecg2llm.lm.mixture import MixedCorpus

    store, spec, kw = small_store
    length, body = 40, 38
    first = {}  # the first 8 body tokens of every crop position of record 106 (both leads) -> (stream, start)
    ref = MixedCorpus([(store, "mitdb")], spec, **kw)
    for r, (_, rec, _) in enumerate(ref.names["train"]):
        if rec == "106":
            s = ref.streams["train"][r]
            for i in range(len(s) - body + 1):
                first.setdefault(s[i:i + 8].tobytes(), []).append((r, i))

    def share_106(c, n=3000):
        crops = c.random_crops(length, n, rng=np.random.default_rng(1))
        hit = 0
        for row in crops[:, 2:]:
            hit += any(np.array_equal(ref.streams["train"][r][i:i + body], row)
                       for r, i in first.get(row[:8].tobytes(), []))
        return hit / n

    sizes = {rec: sum(len(s) - body + 1 for s, n in zip(ref.streams["train"], ref.names["train"]) if n[1] == rec)
             for rec in ("106", "108")}  # DS1's training records here (100 is DS2, 101 validation)
    plain = sizes["106"] / sum(sizes.values())
    quarter = 0.25 * sizes["106"] / (0.25 * sizes["106"] + sizes["108"])
    assert share_106(ref) == pytest.approx(plain, abs=0.03)
    assert share_106(MixedCorpus([(store, "mitdb")], spec, record_weights={"106": 0.25}, **kw)) == \
        pytest.approx(quarter, abs=0.03)
    # inside a database's share: the same store read as a second database keeps its 3:1 split of crops
    both = [(store, "mitdb"), (store, "cinc2017")]
    mixed = MixedCorpus(both, spec, source_weights={"mitdb": 3.0, "cinc2017": 1.0}, record_weights={"106": 0.25},
                        **kw)
    crops = mixed.random_crops(length, 2000, rng=np.random.default_rng(0))
    assert (crops[:, 0] == spec.source_id("mitdb")).mean() == pytest.approx(0.75, abs=0.03)
    scale = mixed._compute_scale("train", body)
    mit = [(w * (len(s) - body + 1), n[1]) for w, s, n in zip(scale, mixed.streams["train"], mixed.names["train"])
           if n[0] == "mitdb"]
    assert sum(w for w, rec in mit if rec == "106") / sum(w for w, _ in mit) == pytest.approx(quarter)
    # evaluation tiles are untouched; bad weights are clear errors
    assert np.array_equal(ref.tiles("test", length), mixed.tiles("test", length))
    with pytest.raises(ConfigError, match=r"not MIT-BIH training records.*\['106', '108'\]"):
        MixedCorpus([(store, "mitdb")], spec, record_weights={"101": 0.5}, **kw)
    assert LMTrainConfig(sources=["mitdb"], record_weights={205: "0.5"}).record_weights == {"205": 0.5}
    with pytest.raises(ConfigError, match=r"record_weights\['205'\] must be > 0"):
        LMTrainConfig(sources=["mitdb"], record_weights={"205": 0})
    with pytest.raises(ConfigError, match="needs a v2 corpus"):
        LMTrainConfig(record_weights={"205": 0.5})


def test_pretrain_then_finetune_end_to_end(tmp_path, data_root, seed_tok, capsys):
    from ecg2llm.lm.model import load_lm
    from ecg2llm.lm.train import main

    common = ["--tokenizer", str(seed_tok), "--store", str(tmp_path / "store"), "--data_dir", str(data_root),
              "--records", "100,101,106,108", "--valid_records", "101", "--sources", "[mitdb]",
              "--leads", "[MLII,V1]", "--conditioning", "true", "--condition_dropout", "0.2", *TINY]
    assert main([*common, "--output_dir", str(tmp_path / "pre"), "--max_steps", "6"]) == 0
    assert main([*common, "--output_dir", str(tmp_path / "ft"), "--max_steps", "2", "--learning_rate", "0",
                 "--min_learning_rate", "0", "--init_from", str(tmp_path / "pre" / "final")]) == 0
    pre, _ = load_lm(tmp_path / "pre")
    ft, _ = load_lm(tmp_path / "ft")
    for (k, a), b in zip(pre.state_dict().items(), ft.state_dict().values()):
        assert torch.equal(a, b), k  # learning rate 0: the fine-tuned weights are exactly the pretrained ones
    spec = ControlSpec.of_model(ft)
    assert spec.conditional and spec.condition_dropout == 0.2 and spec.counts["beat:N"] > 0
    m_pre, m_ft = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("pre", "ft"))
    # same weights, same DS2 tiles
    assert m_ft["test"]["loss"] == pytest.approx(m_pre["test"]["loss"], rel=1e-6)
    capsys.readouterr()
    rc = main([*common, "--output_dir", str(tmp_path / "bad"), "--max_steps", "1", "--n_layer", "3",
               "--init_from", str(tmp_path / "pre" / "final")])
    assert rc != 0 and "num_hidden_layers is 2 there but 3" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ guidance
@pytest.fixture(scope="module")
def v2_lm():
    """A randomly initialized conditional v2 LM (context 48): sampling invariants need no training."""
    return random_v2_lm({"beat:N": 90, "beat:V": 10, "rhythm:N": 5, "rhythm:AFIB": 2})


def test_guidance_one_is_conditional_and_zero_is_unconditional_bit_for_bit(v2_lm):
    from ecg2llm.lm.guidance import sample_guided

    kw = dict(n_samples=5, n_codes=100, conditions=["rhythm:N"], batch_size=3, seed=7)  # 100 codes > context
    plain = sample_guided(v2_lm, **kw)
    g1 = sample_guided(v2_lm, guidance=1.0, **kw)
    assert np.array_equal(plain.codes, g1.codes) and plain.events == g1.events
    g0 = sample_guided(v2_lm, guidance=0.0, **kw)
    unc = sample_guided(v2_lm, unconditional=True, **kw)
    assert np.array_equal(g0.codes, unc.codes) and g0.events == unc.events
    g2 = sample_guided(v2_lm, guidance=2.0, **kw)
    assert not np.array_equal(g2.codes, plain.codes)
    for s in (plain, g0, g2):
        assert s.codes.shape == (5, 100) and s.codes.max() < 64 and s.rhythm == ["N"] * 5
        names = {n for ev in s.events for _, n in ev}
        assert names <= {"beat:N", "beat:V", "rhythm:N"}  # never a null, source, lead or untrained token


def test_guidance_refuses_models_without_an_unconditional_branch(v2_lm):
    from ecg2llm.lm.guidance import sample_guided

    spec = ControlSpec.of_model(v2_lm)
    v2_lm.config.ecg_conditioning = {**spec.to_dict(), "condition_dropout": 0.0}
    try:
        with pytest.raises(ConfigError, match="condition_dropout"):
            sample_guided(v2_lm, 1, 5, guidance=2.0)
        assert sample_guided(v2_lm, 1, 5).codes.shape == (1, 5)
    finally:
        v2_lm.config.ecg_conditioning = spec.to_dict()


# ------------------------------------------------------------------------------------------ rhythm check
def test_rhythm_check_separates_regular_from_irregular():
    from ecg2llm.lm.rhythm_check import rhythm_stats

    regular = [synthetic_ecg(10, hr_bpm=hr, seed=i) for i, hr in enumerate((60, 75, 90))]
    rng = np.random.default_rng(0)
    irregular = []
    for _ in range(3):  # beats at random intervals of 0.4-1.2 s (CV ~ 0.3): AF-like
        t = np.cumsum(rng.uniform(0.4, 1.2, 20))
        x = np.zeros(3600, np.float32)
        for b in t[t < 9.8]:
            k = int(b * 360)
            x[max(0, k - 4):k + 4] += np.hanning(len(x[max(0, k - 4):k + 4])).astype(np.float32) * 1.2
        irregular.append(x + 0.01 * rng.standard_normal(3600).astype(np.float32))
    r = rhythm_stats(regular, 360.0)
    assert r["regular_share"] == 1.0 and abs(r["median_hr_bpm"] - 75) < 3
    i = rhythm_stats(irregular, 360.0)
    assert i["regular_share"] == 0.0 and i["n_detected"] == 3
    flat = rhythm_stats([np.zeros(3600, np.float32)], 360.0)
    assert flat["regular_share"] == 0.0 and flat["n_detected"] == 0
