"""Config loader: defaults < YAML < CLI, strict casting, unknown keys refused, required fields, choices."""
from dataclasses import dataclass, field
from typing import Literal

import pytest

from ecg2llm.core.config import build_parser, parse_config, peek_value
from ecg2llm.core.errors import ConfigError


@dataclass
class C:
    n_layer: int = 2
    lr: float = 1e-3
    name: str = "x"
    flag: bool = False
    records: list[str] = field(default_factory=list)
    maybe: int | None = None


def test_precedence_and_casting(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("n_layer: 4.0\nlr: 0.5\nrecords: [100, 101]\nflag: yes\n")
    c = parse_config(C, ["--config", str(y), "--lr", "0.25", "--maybe", "none"])
    assert c.n_layer == 4 and isinstance(c.n_layer, int) and c.lr == 0.25 and c.flag is True
    assert c.records == ["100", "101"] and c.maybe is None and c.name == "x"


def test_unknown_key_and_bad_value(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("n_layers: 4\n")
    with pytest.raises(ConfigError, match="unknown key.*n_layers"):
        parse_config(C, ["--config", str(y)])
    with pytest.raises(ConfigError, match="n_layer.*'four'"):
        parse_config(C, ["--n_layer", "four"])
    with pytest.raises(ConfigError, match="not found"):
        parse_config(C, ["--config", str(tmp_path / "missing.yaml")])


@dataclass
class Script:
    out: str                                  # where results go
    device: Literal["auto", "cpu"] = "auto"   # which device
    quick: bool = False
    sizes: list[int] = field(default_factory=lambda: [5, 10])


def test_required_literal_bare_bool_and_empty_list(tmp_path):
    with pytest.raises(ConfigError, match="missing required value.*--out"):
        parse_config(Script, ["--quick"])
    c = parse_config(Script, ["--out", "o", "--quick", "--sizes", ""])
    assert c.quick is True and c.sizes == [] and c.device == "auto"
    assert parse_config(Script, ["--out", "o", "--quick", "false"]).quick is False
    y = tmp_path / "s.yaml"
    y.write_text("out: from_yaml\ndevice: cpu\nsizes: [1, 2]\n")
    c = parse_config(Script, ["--config", str(y), "--sizes", "3,4"])
    assert (c.out, c.device, c.sizes) == ("from_yaml", "cpu", [3, 4])
    with pytest.raises(ConfigError, match="'cuda' is not one of auto, cpu"):
        parse_config(Script, ["--out", "o", "--device", "cuda"])
    with pytest.raises(ConfigError, match="'x' as int"):
        parse_config(Script, ["--out", "o", "--sizes", "1,x"])


def test_help_lists_every_field_with_its_comment():
    text = build_parser(Script).format_help()
    assert "where results go (required)" in text and "which device (one of auto, cpu; default: auto)" in text
    assert "--quick [BOOL]" in text and "--sizes SIZES" in text


def test_peek_value(tmp_path):
    y = tmp_path / "t.yaml"
    y.write_text("tokenizer_type: fsq\nsteps: 3\n")
    assert peek_value(["--config", str(y)], "tokenizer_type") == "fsq"
    assert peek_value(["--config", str(y), "--tokenizer-type", "fsq2"], "tokenizer_type") == "fsq2"
    assert peek_value(["--steps", "2"], "tokenizer_type", default="seed") == "seed"
