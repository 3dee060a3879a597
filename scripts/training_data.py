"""Write ``training_data.json`` into the shipped LM folders (``lm/pretrained/*``), from their training configs.

Launch::

    python scripts/training_data.py                 # every shipped folder
    python scripts/training_data.py --models default --check true   # fail if a committed file differs

``lm/train.py`` writes the file into every model folder it saves (:mod:`ecg2llm.tokenizer.training_data`); the shipped
folders
were trained before it did, so their files are derived here from the config chain their model cards name
(pretrain -> continue -> fine-tune, merged as training merges them). The CinC 2017 rule needs no data: none
of the shipped runs filtered CinC recordings (``cinc_labels`` empty, ``cinc_min_r_mv`` 0).
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
#: each shipped folder and the configs of its training stages, in order (from the folder's README.md)
SHIPPED: dict[str, tuple[str, ...]] = {
    "v2-conditional": ("configs/lm/v2_conditional.yaml", "configs/lm/v2_conditional_ft.yaml"),
    "v2": ("configs/lm/v2b_conditional.yaml", "configs/lm/v2d_continue.yaml", "configs/lm/v2d_default_ft.yaml"),
}


def derive(configs) -> dict:
    """The merged training data of a chain of ``lm/train.py`` configs (each stage fine-tunes the last)."""
    from ecg2llm.lm.config import LMTrainConfig
    from ecg2llm.tokenizer import training_data

    spec = None
    for c in configs:
        cfg = parse_config(LMTrainConfig, ["--config", str(ROOT / c)])
        if cfg.cinc_labels or cfg.cinc_min_r_mv > 0:
            from ecg2llm.core.errors import ConfigError

            raise ConfigError(f"{c} filters CinC 2017 recordings: derive its file by training (lm/train.py)")
        spec = training_data.merge(spec, training_data.spec_of_config(cfg, stage=cfg.output_dir))
    spec["written_by"] = "scripts/training_data.py (from " + " -> ".join(configs) + ")"
    return spec


@dataclass
class TrainingDataConfig:
    """Fields of ``scripts/training_data.py``."""

    models: list[str] = field(default_factory=list)  # shipped folders to write (default: all of SHIPPED)
    check: bool = False                              # compare with the committed files instead of writing


@run_main
def main(argv=None):
    """Write (or check) each shipped folder's ``training_data.json``; returns 0 (1 if a check fails)."""
    import json

    from ecg2llm.tokenizer import training_data

    a = parse_config(TrainingDataConfig, argv, description=__doc__)
    bad = 0
    for name in a.models or list(SHIPPED):
        if name not in SHIPPED:
            from ecg2llm.core.errors import ConfigError

            raise ConfigError(f"--models: {name!r} is not a shipped folder; choose from {', '.join(SHIPPED)}")
        spec, folder = derive(SHIPPED[name]), ROOT / "lm" / "pretrained" / name
        if a.check:
            same = training_data.read(folder) == json.loads(json.dumps(spec))
            bad += not same
            print(f"{name}: {'ok' if same else 'DIFFERS from ' + str(folder / training_data.FILENAME)}")
        else:
            print(f"wrote {training_data.write(folder, spec)}: {len(spec['mitdb']['records'])} MIT-BIH records, "
                  f"leads {spec['mitdb']['leads']}, CinC 2017 {'yes' if spec['cinc2017']['used'] else 'no'}")
    return int(bad > 0)


if __name__ == "__main__":
    sys.exit(main())
