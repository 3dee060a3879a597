"""Sharded token stores: global indexing over memmapped shards, the merge, and readers that never load it whole.

The merge is exercised in one process by writing the shards a 2-process build would write (the same
record split, through the same functions); ``test_sharded_tokenize.py`` runs the real 2-process launch.
"""
import json

import numpy as np
import pytest

from ecg2llm.core.errors import StoreError
from ecg2llm.tokenizer import SeedTokenizer, SeedTokenizerConfig
from ecg2llm.tokenizer.build_store import TokenizeConfig, _write_shard, build_store
from ecg2llm.tokenizer.data import resolve_data_dir
from ecg2llm.tokenizer.shards import ShardedArray, merge_shards, plan_shards, shard_name
from ecg2llm.tokenizer.store import TokenStore

RECORDS = ["100", "101", "114"]


def _parts(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4096, n).astype(np.uint16) for n in sizes]


@pytest.mark.parametrize("sizes", [[5, 7, 3], [4, 0, 9], [1], [0, 6, 0, 2]])
def test_sharded_array_indexes_like_the_concatenation(sizes):
    parts = _parts(sizes)
    whole = np.concatenate(parts)
    a = ShardedArray(parts)
    n = len(whole)
    assert len(a) == n and a.shape == (n,) and a.dtype == np.uint16
    for i in list(range(n)) + [-1, -n]:
        assert a[i] == whole[i]
    for start in range(n + 1):
        for stop in range(start, n + 2):
            assert np.array_equal(a[start:stop], whole[start:stop]), (start, stop)
    assert np.array_equal(a[::2], whole[::2]) and np.array_equal(a[-3:], whole[-3:])
    idx = np.random.default_rng(1).integers(-n, n, size=(4, 5))
    assert np.array_equal(a[idx], whole[idx]) and a[idx].shape == (4, 5)
    assert np.array_equal(np.asarray(a), whole)


def test_sharded_array_rejects_bad_indices():
    a = ShardedArray(_parts([3, 4]))
    with pytest.raises(IndexError):
        a[7]
    with pytest.raises(IndexError):
        a[np.array([0, 9])]
    with pytest.raises(TypeError):
        a[np.ones(7, bool)]


def test_slice_inside_one_shard_is_a_memmap_view(tmp_path):
    files = []
    for i, p in enumerate(_parts([10, 20])):
        f = tmp_path / f"{i}.bin"
        p.tofile(f)
        files.append(np.memmap(f, dtype=np.uint16, mode="r"))
    a = ShardedArray(files)
    assert isinstance(a[12:25], np.memmap)  # no copy: read from the page cache on access


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_plan_shards_is_contiguous_and_balanced(n):
    sizes = np.random.default_rng(n).uniform(1, 3, size=48)
    plan = plan_shards(sizes, n)
    assert len(plan) == n and plan[0][0] == 0 and plan[-1][1] == 48
    assert all(plan[i][1] == plan[i + 1][0] for i in range(n - 1))  # contiguous, in order, no overlap
    loads = [sizes[a:b].sum() for a, b in plan]
    assert max(loads) - min(loads) <= 2 * sizes.max()  # within about one record of each other


def test_plan_shards_with_more_shards_than_items():
    plan = plan_shards([1.0, 1.0], 4)
    assert sum(b - a for a, b in plan) == 2 and plan[-1][1] == 2


@pytest.fixture
def seed_tok(tmp_path):
    import torch

    torch.manual_seed(0)
    return SeedTokenizer(SeedTokenizerConfig()).save_pretrained(tmp_path / "tok")


def _sharded(tiny_db, tok_path, folder, world=2):
    """The store a ``world``-process build writes, made here shard by shard."""
    from ecg2llm.tokenizer import ECGTokenizer

    tok = ECGTokenizer.from_pretrained(tok_path)
    cfg = TokenizeConfig(out=str(folder), tokenizer=str(tok_path), data_dir=str(tiny_db), records=RECORDS,
                         leads=["all"], download=False)
    root = resolve_data_dir(tiny_db)
    names = []
    for rank, (a, b) in enumerate(plan_shards([1.0] * len(RECORDS), world)):
        name = shard_name(rank, world)
        w, info = _write_shard(folder / name, tok, RECORDS[a:b], cfg, root, root / "mitdb", False, rank)
        w.close({"skipped": info["skipped"]})
        names.append(name)
    merge_shards(folder, names, {"skipped": []})
    return TokenStore.open(folder)


def test_merged_index_matches_the_one_process_store(tiny_db, seed_tok, tmp_path):
    one = build_store(TokenizeConfig(out=str(tmp_path / "one"), tokenizer=str(seed_tok), data_dir=str(tiny_db),
                                     records=RECORDS, leads=["all"], download=False), progress=False)
    two = _sharded(tiny_db, seed_tok, tmp_path / "two")
    assert isinstance(two.tokens, ShardedArray) and len(two.shard_paths) == 2
    assert json.loads((tmp_path / "one" / "index.json").read_text()) == \
        json.loads((tmp_path / "two" / "index.json").read_text())  # same global offsets, state offsets included
    assert two.meta["n_tokens"] == one.meta["n_tokens"] and two.meta["state_keys"] == one.meta["state_keys"]
    for e in one.entries():
        f = two.get(e.record, e.lead)
        assert np.array_equal(one.tokens_of(e), two.tokens_of(f))
        s1, s2 = one.state_of(e), two.state_of(f)  # the seed tokenizer's per-window min/max, from shard files
        assert s1.keys() == s2.keys() and all(np.array_equal(s1[k], s2[k]) for k in s1)
    rng1, rng2 = np.random.default_rng(3), np.random.default_rng(3)
    assert np.array_equal(one.random_crops(40, 16, split=None, rng=rng1),
                          two.random_crops(40, 16, split=None, rng=rng2))


def test_lm_readers_work_on_a_sharded_store_without_loading_it(tiny_db, seed_tok, tmp_path):
    from ecg2llm.lm.data import TrainBatches, tile_crops

    store = _sharded(tiny_db, seed_tok, tmp_path / "two")
    assert all(isinstance(p, np.memmap) for p in store.tokens.parts)  # shards stay on disk
    for e in store.entries():
        assert isinstance(store.tokens_of(e), np.memmap)
    tiles = tile_crops(store, "train", 50)
    whole = np.asarray(store.tokens)
    starts = [s for e in store.entries("train") for s in range(e.start, e.end - 49, 50)]
    assert np.array_equal(tiles, np.stack([whole[s:s + 50] for s in starts]))
    batch = TrainBatches(store, 33, 4, bos_id=4099, seed=0).batch(step=0)
    assert batch.shape == (4, 33) and int(batch[:, 1:].max()) < store.vocab_size


def test_corrupt_sharded_store_is_refused(tiny_db, seed_tok, tmp_path):
    store = _sharded(tiny_db, seed_tok, tmp_path / "two")
    meta = json.loads((store.path / "meta.json").read_text())
    shard = store.shard_paths[1] / "tokens.bin"
    data = shard.read_bytes()
    shard.write_bytes(data[:-10])
    with pytest.raises(StoreError, match="truncated"):
        TokenStore.open(store.path)
    shard.write_bytes(data)
    index = json.loads((store.path / "index.json").read_text())
    first = meta["shards"][0]["n_tokens"]
    index[0]["end"] = first + 5  # reaches into the second shard
    (store.path / "index.json").write_text(json.dumps(index))
    with pytest.raises(StoreError, match="crosses a shard boundary"):
        TokenStore.open(store.path)
    (store.path / "meta.json").write_text(json.dumps({**meta, "shards": []}))
    with pytest.raises(StoreError, match="shards"):
        TokenStore.open(store.path)
