"""Verbatim n-gram overlap (eval/scorecard/verbatim.py, scripts/verbatim_check.py): planted replays are found, chance
overlap of unrelated streams is not, and n-grams never span two training streams."""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_entrypoint_errors import _main

from ecg2llm.eval.scorecard.verbatim import NgramIndex, ngram_hashes, summarize, window_coverage


def test_hashes_match_exactly_the_equal_ngrams():
    a = np.array([5, 1, 2, 3, 1, 2, 3, 0, 0, 0])
    h = ngram_hashes(a, 3)
    assert len(h) == len(a) - 2 and h.dtype == np.uint64
    assert h[1] == h[4] and len(set(h.tolist())) == len(h) - 1  # (1, 2, 3) twice, every other 3-gram distinct
    assert ngram_hashes(a, 11).size == 0
    assert ngram_hashes(np.zeros(4, int), 2)[0] != ngram_hashes(np.zeros(4, int), 3)[0]
    with pytest.raises(ValueError, match="n-gram length"):
        ngram_hashes(a, 0)


def test_planted_replay_is_found_and_unrelated_streams_are_not():
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 4096, 5000) for _ in range(3)]
    index = NgramIndex(train, 16)
    assert index.n_tokens == 15000 and len(index) == 3 * (5000 - 15)
    fresh = rng.integers(0, 4096, (4, 720))           # 4 samples of two 360-token windows
    fresh[1, 400:460] = train[2][1000:1060]            # a 60-token replay inside sample 1's second window
    cov = window_coverage(fresh, index, 360)
    assert cov.shape == (4, 2)
    assert cov[1, 1] == pytest.approx((60 - 16 + 1) / (360 - 16 + 1))
    assert (np.delete(cov.ravel(), 3) == 0).all()      # nothing else overlaps by chance at n = 16
    s = summarize(cov)
    assert s["n_windows"] == 8 and s["share_any"] == pytest.approx(1 / 8) and s["max_coverage"] == cov[1, 1]


def test_ngrams_never_span_two_training_streams():
    a, b = np.arange(0, 20), np.arange(100, 120)
    index = NgramIndex([a, b], 4)
    assert index.contains(ngram_hashes(np.array([17, 18, 19, 100]), 4)).tolist() == [False]
    assert index.contains(ngram_hashes(np.array([16, 17, 18, 19]), 4)).tolist() == [True]
    with pytest.raises(ValueError, match="window"):
        window_coverage(np.zeros((1, 100), int), index, 4)


def test_verbatim_check_script_on_real_records(tmp_path, capsys, data_dir):
    """End to end on the shipped tokenizer: a 'generated' folder that replays a DS1 training record is found
    verbatim in every window; a DS2 record's tokens (a patient no LM saw) much less."""
    from ecg2llm.tokenizer import ECGTokenizer, read_record

    tok_dir = "lm/pretrained/v2/tokenizer"
    tok = ECGTokenizer.from_pretrained(tok_dir)
    ids = {}
    for r in ("106", "100"):  # DS1 training record, DS2 record
        rec = read_record(r, data_dir, lead="MLII", annotations=False)
        ids[r] = np.asarray(tok.encode(rec.signal, rec.fs)[0])[36 * 60:36 * 120]  # 60 s of the whole record's ids
    folders = {}
    for r, x in ids.items():
        d = tmp_path / f"gen_{r}"
        d.mkdir()
        np.save(d / "tokens.npy", x.reshape(2, -1).astype(np.int32))
        (d / "manifest.json").write_text(json.dumps({"model_dir": "lm/pretrained/v2",
                                                     "tokenizer": {"weights_hash": tok.weights_hash}}))
        folders[r] = d
    out = tmp_path / "v.json"
    rc = _main("scripts/verbatim_check.py")(["--synthetic", f"{folders['106']},{folders['100']}", "--data_dir",
                                              str(data_dir), "--n", "24", "--real_windows", "20", "--out", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    replay, unseen = rows["gen_106"]["24"], rows["gen_100"]["24"]
    assert replay["n_windows"] == 6 and replay["share_any"] == 1.0 and replay["mean_coverage"] > 0.9
    assert unseen["mean_coverage"] < 0.05 and rows["real DS2 MLII"]["24"]["n_windows"] == 20
    assert "gen_106" in capsys.readouterr().out
