"""Token store: layout, index consistency, reading API, atomic writes and corrupt-store errors."""
import json

import numpy as np
import pytest

from ecg2llm.core.errors import StoreError
from ecg2llm.tokenizer import SeedTokenizer, SeedTokenizerConfig
from ecg2llm.tokenizer.build_store import TokenizeConfig, build_store
from ecg2llm.tokenizer.store import TokenStore


@pytest.fixture
def tok_dir(tmp_path):
    torch_seed = 0
    import torch

    torch.manual_seed(torch_seed)
    return SeedTokenizer(SeedTokenizerConfig()).save_pretrained(tmp_path / "tok")


@pytest.fixture
def store(tiny_db, tok_dir, tmp_path):
    cfg = TokenizeConfig(out=str(tmp_path / "store"), tokenizer=str(tok_dir), data_dir=str(tiny_db),
                         records=["100", "101", "114"], leads=["all"], download=False)
    return build_store(cfg, progress=False)


def test_store_matches_direct_encoding(store, tiny_db, tok_dir):
    from ecg2llm.tokenizer import ECGTokenizer, read_record

    tok = ECGTokenizer.from_pretrained(tok_dir)
    assert len(store.entries()) == 6  # 3 records x 2 leads
    e = store.get("114", "MLII")
    assert e.split == "train"  # 114 is a DS1 training record
    x = read_record("114", tiny_db, lead="MLII").signal
    ids, state = tok.encode(x, 360)
    assert np.array_equal(np.asarray(store.tokens_of(e)), ids)
    st = store.state_of(e)
    assert np.allclose(st["window_min"], state["window_min"]) and st["n_samples"] == len(x)
    assert store.meta["tokenizer"]["weights_hash"] == tok.weights_hash
    assert store.tokens.dtype == np.uint16 and isinstance(store.tokens, np.memmap)


def test_random_crops_stay_inside_records(store):
    rng = np.random.default_rng(0)
    crops = store.random_crops(50, 64, split=None, rng=rng)
    assert crops.shape == (64, 50) and crops.max() < store.vocab_size
    whole = np.asarray(store.tokens)
    for c in crops[:8]:  # each crop occurs as a contiguous run of some record
        hits = [e for e in store.entries() if any(np.array_equal(whole[s:s + 50], c)
                                                  for s in range(e.start, e.end - 49, 1))]
        assert hits


def test_same_input_same_bytes(tiny_db, tok_dir, tmp_path):
    paths = []
    for i in range(2):
        cfg = TokenizeConfig(out=str(tmp_path / f"s{i}"), tokenizer=str(tok_dir), data_dir=str(tiny_db),
                             records=["100", "101"], download=False)
        paths.append(build_store(cfg, progress=False).path)
    assert (paths[0] / "tokens.bin").read_bytes() == (paths[1] / "tokens.bin").read_bytes()
    assert (paths[0] / "index.json").read_text() == (paths[1] / "index.json").read_text()


def test_skipped_leads_are_recorded(tiny_db, tok_dir, tmp_path):
    cfg = TokenizeConfig(out=str(tmp_path / "s"), tokenizer=str(tok_dir), data_dir=str(tiny_db),
                         records=["100", "114"], leads=["V5"], download=False)
    s = build_store(cfg, progress=False)
    assert [e.record for e in s.entries()] == ["114"]
    assert s.meta["skipped"][0]["record"] == "100"


def test_failed_build_leaves_previous_store(store, tiny_db, tok_dir):
    before = (store.path / "tokens.bin").read_bytes()
    (tiny_db / "mitdb" / "101.hea").write_text("garbage\n")
    cfg = TokenizeConfig(out=str(store.path), tokenizer=str(tok_dir), data_dir=str(tiny_db),
                         records=["100", "101"], download=False)
    with pytest.raises(Exception, match="corrupt"):
        build_store(cfg, progress=False)
    assert (store.path / "tokens.bin").read_bytes() == before
    assert not [p for p in store.path.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_truncated_tokens_file(store):
    with open(store.path / "tokens.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(StoreError, match="truncated"):
        TokenStore.open(store.path)


def test_bad_meta_json(store):
    (store.path / "meta.json").write_text("{not json")
    with pytest.raises(StoreError, match="meta.json is not valid JSON"):
        TokenStore.open(store.path)


def test_index_past_the_end(store):
    idx = json.loads((store.path / "index.json").read_text())
    idx[0]["end"] = 10**9
    (store.path / "index.json").write_text(json.dumps(idx))
    with pytest.raises(StoreError, match="past the end"):
        TokenStore.open(store.path)


def test_missing_store(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        TokenStore.open(tmp_path / "none")
