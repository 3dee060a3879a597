"""The LM recipes in ``configs/lm`` are valid before anyone spends an hour on them: every YAML builds an
``LMTrainConfig``, every fine-tuning stage starts from a pretraining stage in the same folder whose model it
can load (same shape, context, tokenizer and control vocabulary), and the shipped LMs name configs that exist."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO

from ecg2llm.core.config import config_from_dict, load_yaml
from ecg2llm.lm.config import LMTrainConfig
from ecg2llm.lm.model import SHIPPED

LM_CONFIGS = sorted((REPO / "configs" / "lm").glob("*.yaml"))
#: what ecg2llm.lm.finetune.init_from_pretrained compares between the saved LM and the new run
SHAPE = ("n_layer", "n_head", "n_kv_head", "d_model", "d_ff", "context_length", "tie_embeddings", "tokenizer",
         "conditioning", "vocab_multiple")


def _cfg(path: Path) -> LMTrainConfig:
    return config_from_dict(LMTrainConfig, load_yaml(path), source=str(path))


@pytest.mark.parametrize("path", LM_CONFIGS, ids=lambda p: p.name)
def test_every_lm_yaml_is_a_valid_config(path):
    cfg = _cfg(path)
    assert cfg.output_dir and cfg.max_steps >= 1 and cfg.context_length >= 2


def test_fine_tuning_stages_match_their_pretraining():
    cfgs = [(p, _cfg(p)) for p in LM_CONFIGS]
    by_output = {str(Path(c.output_dir)): (p, c) for p, c in cfgs}
    stages = [(p, c) for p, c in cfgs if c.init_from]
    assert stages, "configs/lm holds no fine-tuning stage"
    for path, ft in stages:
        parent = str(Path(ft.init_from).parent)
        assert parent in by_output, f"{path.name}: init_from {ft.init_from} is no config's output_dir/final"
        pre_path, pre = by_output[parent]
        assert Path(ft.init_from).name == "final", path.name
        diff = {k: (getattr(pre, k), getattr(ft, k)) for k in SHAPE if getattr(pre, k) != getattr(ft, k)}
        assert not diff, f"{path.name} cannot load {pre_path.name}'s weights: {diff}"
        assert ft.valid_records == pre.valid_records and ft.tokenizer == pre.tokenizer, path.name
        # another MIT-BIH store only for other augmented views (validation and test records are never
        # augmented, so both stores hold the same validation and test tokens)
        views = (ft.augment_views, ft.augment_mix_deg) != (pre.augment_views, pre.augment_mix_deg)
        assert ft.store == pre.store or views, f"{path.name}: another store ({ft.store}) with the same views"
        assert ft.store != pre.store or not views, f"{path.name}: other views need another store than {pre.store}"
        assert set(ft.sources) <= set(pre.sources) and ft.output_dir != pre.output_dir, path.name


def test_shipped_lms_name_existing_configs():
    import json

    from ecg2llm.lm.model import PRETRAINED_DIR

    for name, rel in SHIPPED.items():
        assert (REPO / rel).is_file(), (name, rel)
        cfg = _cfg(REPO / rel)
        saved = PRETRAINED_DIR / name / "config.json"
        if saved.is_file():  # the shipped weights are the shape their config trains
            hf = json.loads(saved.read_text())
            assert (hf["num_hidden_layers"], hf["hidden_size"], hf["num_attention_heads"]) == (
                cfg.n_layer, cfg.d_model, cfg.n_head), (name, rel)
