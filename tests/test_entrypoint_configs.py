"""Every entry point is on the one config path (issue 14): ``--help`` exits 0 and lists every config field,
and ``--config`` YAML reaches the scripts (defaults < YAML < flags), as in ``lm/generate.py``."""
from __future__ import annotations

import dataclasses
import json
import sys

import pytest
from test_entrypoint_errors import ENTRY_POINTS, _main

#: entry point -> its config dataclass (module attribute); the others take their class from another module
CONFIG_CLASSES = {
    "scripts/bigram_samples.py": "BigramSamplesConfig", "scripts/bench.py": "BenchConfig",
    "scripts/demo.py": "DemoConfig", "scripts/reproduce_seed.py": "ReproduceSeedConfig",
    "scripts/rate_distortion.py": "RateDistortionConfig", "scripts/adherence.py": "AdherenceConfig",
    "scripts/planted.py": "PlantedConfig", "scripts/fit_texture.py": "FitTextureConfig",
    "scripts/tokenizer_report.py": "TokenizerReportConfig", "scripts/lm_ablate.py": "AblateConfig",
    "scripts/scorecard_frontier.py": "FrontierConfig", "scripts/verbatim_check.py": "VerbatimConfig",
    "scripts/augment_views.py": "AugmentViewsConfig", "scripts/eval_lm_v3.py": "EvalLMv3Config",
    "scripts/detail_study.py": "DetailStudyConfig",
}


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_help_exits_zero_and_lists_every_field(script, capsys):
    main = _main(script)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--config" in text and "usage:" in text, text[:500]
    if script in CONFIG_CLASSES:
        cls = getattr(sys.modules[main.__module__], CONFIG_CLASSES[script])
        missing = [f.name for f in dataclasses.fields(cls) if f"--{f.name} " not in text + " "]
        assert not missing, (script, missing)


def test_tokenizer_report_reads_its_yaml(tmp_path, capsys):
    """A real run (no scoring: both reports off) from YAML, with one value overridden on the command line."""
    y = tmp_path / "report.yaml"
    y.write_text(f"tokenizer: v2\nout: {tmp_path / 'from_yaml'}\nno_robustness: true\n"
                 f"no_texture_check: true\n")
    assert _main("scripts/tokenizer_report.py")(["--config", str(y), "--out", str(tmp_path / "o")]) == 0
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["tokenizer"] == "v2" and "robustness" not in rep and "texture_check" not in rep
    assert rep["describe"]["tokenizer_type"] and not (tmp_path / "from_yaml").exists()
    info = json.loads((tmp_path / "o" / "run_info.json").read_text())["config"]  # the resolved config
    assert info["out"] == str(tmp_path / "o") and info["no_robustness"] is True and info["seed"] == 0


def test_lm_ablate_table_from_yaml(tmp_path, capsys):
    out = tmp_path / "ablate"
    out.mkdir()
    row = {"name": "ctx256", "test_bits_per_token": 7.5, "test_bigram_bits_per_token": 8.0,
           "ratio_vs_bigram": 0.9375, "val_bits_per_token": 7.4, "regular_share": 0.5, "median_hr_bpm": 75.0,
           "minutes": 8.0}
    row2 = {**row, "name": "leads", "test_bits_per_token": 4.5, "test_bits_per_second": 162.04}
    (out / "results.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(row2) + "\n")
    y = tmp_path / "a.yaml"
    y.write_text(f"out: {out}\ntable: true\nruns: [ctx256]\n")
    assert _main("scripts/lm_ablate.py")(["--config", str(y)]) == 0
    table = capsys.readouterr().out
    assert "| ctx256 |" in table and "| 7.500 | - | 8.000 | 0.938 |" in table  # no bits/s recorded: "-"
    assert "| 4.500 | 162 | 8.000 |" in table  # bits/s beside bits/token where the row has it


def test_bench_config_from_yaml_keeps_the_child_flags(tmp_path):
    y = tmp_path / "b.yaml"
    y.write_text("out: runs/b\nstages: [generate, score]\ngen_batches: [1, 8]\ndevice: cpu\nquick: true\n")
    parse_args = sys.modules[_main("scripts/bench.py").__module__].parse_args
    a = parse_args(["--config", str(y), "--threads", "1", "--child", "generate", "--child_device", "cpu"])
    assert (a.out, a.stages, a.gen_batches, a.device, a.quick, a.threads) == (
        "runs/b", ["generate", "score"], [1, 8], "cpu", True, 1)
    assert (a._extra.child, a._extra.child_device, a._extra.debug) == ("generate", "cpu", False)
    assert dataclasses.asdict(a)["stages"] == ["generate", "score"]  # what the stages receive


def test_every_lm_ablation_stage_is_a_valid_lm_config():
    """Each stage of every ``scripts/lm_ablate.py`` variant composes with the base YAML into an LM config
    (a typo in a variant's overrides fails here, not an hour into a queue of ablations)."""
    from ecg2llm.core.config import parse_config
    from ecg2llm.lm.config import LMTrainConfig

    mod = sys.modules[_main("scripts/lm_ablate.py").__module__]
    base = parse_config(LMTrainConfig, ["--config", mod.BASE])
    assert set(mod.DESCRIBE) == set(mod.ABLATIONS)
    for name, stages in mod.ABLATIONS.items():
        fracs = []
        for stage in stages:
            over, frac = mod._split_frac(list(stage))
            cfg = parse_config(LMTrainConfig, ["--config", mod.BASE, *over])
            fracs.append(frac)
            changed = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(base, f.name)}
            assert changed or over == [], (name, over)  # an override that changes nothing is a typo
        assert sum(fracs) == pytest.approx(1.0 if len(stages) > 1 else fracs[0]), (name, fracs)
    recipe = parse_config(LMTrainConfig, ["--config", mod.BASE, *mod._split_frac(mod.ABLATIONS["recipe"][0])[0]])
    assert recipe.sources == ["mitdb", "cinc2017"] and "V1" in recipe.leads and recipe.augment_views == 2
