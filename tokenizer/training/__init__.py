"""Training routines, one module per tokenizer type, dispatched by ``tokenizer/train.py``.

Each module exposes a ``TrainConfig`` dataclass (with a ``tokenizer_type`` field) and
``run(cfg) -> pathlib.Path`` that trains, writes a self-describing run directory and returns the folder
of the saved tokenizer (``<output_dir>/tokenizer``).
"""
import importlib

TRAINERS = {
    "seed": "tokenizer.training.seed",
    "fsq": "tokenizer.training.fsq",
    "fsq2": "tokenizer.training.fsq2",
    "beat": "tokenizer.training.beat",
}


def trainer_module(tokenizer_type: str):
    """The training module for ``tokenizer_type``, with a clear error for an unknown type."""
    from ..errors import ConfigError

    if tokenizer_type not in TRAINERS:
        raise ConfigError(f"unknown tokenizer_type {tokenizer_type!r}; trainable types: {sorted(TRAINERS)}")
    return importlib.import_module(TRAINERS[tokenizer_type])
