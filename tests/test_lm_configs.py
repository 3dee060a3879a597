"""The LM recipes are valid before anyone spends an hour on them: every YAML of ``configs/lm`` (the shipped
recipes and their bases) and of ``configs/studies/<study>/`` (the studies' LM configs) builds an
``LMTrainConfig``; every fine-tuning stage starts from a pretraining stage among them whose model it can load
(same shape, context, tokenizer and control vocabulary); the shipped LMs name configs in ``configs/lm``, which
holds nothing else but their bases; and every study folder says in a README who uses it and how it ran."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO

from ecg2llm.core.config import config_from_dict, load_yaml
from ecg2llm.lm.config import LMTrainConfig
from ecg2llm.lm.model import SHIPPED

SHIPPED_CONFIGS = sorted((REPO / "configs" / "lm").glob("*.yaml"))
STUDY_DIRS = sorted(p for p in (REPO / "configs" / "studies").iterdir() if p.is_dir())
LM_CONFIGS = SHIPPED_CONFIGS + sorted(p for d in STUDY_DIRS for p in d.glob("*.yaml"))
#: recipes in configs/lm that no shipped model names: the GPU bases, `make demo`'s `tiny_v3` (and `tiny`, its
#: `--lm v2` recipe) and `tiny`'s conditional twin `tiny_cond` (the small recipe the "no control tokens" errors
#: point to; the retired v1 LMs were trained from them)
BASES = {"base.yaml", "small.yaml", "tiny.yaml", "tiny_cond.yaml", "tiny_v3.yaml"}
#: what ecg2llm.lm.finetune.init_from_pretrained compares between the saved LM and the new run
SHAPE = ("n_layer", "n_head", "n_kv_head", "d_model", "d_ff", "context_length", "tie_embeddings", "tokenizer",
         "conditioning", "vocab_multiple")


def _cfg(path: Path) -> LMTrainConfig:
    return config_from_dict(LMTrainConfig, load_yaml(path), source=str(path))


@pytest.mark.parametrize("path", LM_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_lm_yaml_is_a_valid_config(path):
    cfg = _cfg(path)
    assert cfg.output_dir and cfg.max_steps >= 1 and cfg.context_length >= 2


def test_fine_tuning_stages_match_their_pretraining():
    cfgs = [(p, _cfg(p)) for p in LM_CONFIGS]
    by_output = {str(Path(c.output_dir)): (p, c) for p, c in cfgs}
    stages = [(p, c) for p, c in cfgs if c.init_from]
    assert stages, "configs/lm and configs/studies hold no fine-tuning stage"
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
        views = (ft.augment_views, ft.augment_mix_deg, ft.cinc_max_records) != (
            pre.augment_views, pre.augment_mix_deg, pre.cinc_max_records)  # or another CinC 2017 subset
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


def test_configs_lm_holds_only_shipped_recipes_and_bases():
    """Recipes apart from experiments (issue 36): configs/lm holds each shipped LM's stages (the config
    SHIPPED names and every stage it starts from, through ``init_from``) and the bases; a study's configs
    live in configs/studies/<study>/."""
    by_output = {str(Path(c.output_dir)): p for p, c in ((p, _cfg(p)) for p in SHIPPED_CONFIGS)}
    stages = set()
    for name, rel in SHIPPED.items():
        path = REPO / rel
        while True:
            stages.add(path.name)
            parent = _cfg(path).init_from
            if not parent:
                break
            assert str(Path(parent).parent) in by_output, f"{name}: stage {parent} has no config in configs/lm"
            path = by_output[str(Path(parent).parent)]
    names = {p.name for p in SHIPPED_CONFIGS}
    assert names <= stages | BASES, f"study configs in configs/lm: {sorted(names - stages - BASES)}"
    # shipped stages (LM v3: 2, v3-conditional: 1 more, v2: 3, v2-conditional: 2) + the 5 bases; anything more
    # belongs in a study folder
    assert len(list((REPO / "configs" / "lm").iterdir())) <= 13


@pytest.mark.parametrize("study", STUDY_DIRS, ids=lambda p: p.name)
def test_every_study_folder_says_who_uses_it(study):
    readme = study / "README.md"
    assert readme.is_file(), f"{study}: no README.md (which page or script uses it, how it was run)"
    text = readme.read_text()
    assert "Used by" in text and "Run:" in text, readme
    assert any(study.glob("*.yaml")), f"{study}: an empty study folder"
