"""Config loader: defaults < YAML < CLI, strict casting, unknown keys refused."""
from dataclasses import dataclass, field

import pytest

from tokenizer.errors import ConfigError
from tokenizer.utils.config import parse_config


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
