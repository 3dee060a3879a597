"""Train a tokenizer on DS1 (early-stopped on held-out DS1 records) into a self-describing run directory.

Launch::

    python tokenizer/train.py --config configs/tokenizer/seed_n10_scalar.yaml --output_dir runs/tok/seed
    python tokenizer/train.py --config configs/tokenizer/fsq_default.yaml --data_dir ../shared/data

The YAML's ``tokenizer_type`` (or ``--tokenizer_type``; default ``seed``) picks the training module in
``tokenizer/training/``; every other key is a field of that module's ``TrainConfig`` and can be
overridden on the command line (``--epochs 3``). ``--tokenizer_type fsq --help`` lists that trainer's
fields. The run directory gets ``run_info.json``,
``metrics.json`` and ``tokenizer/`` (``config.json`` + ``model.safetensors``).
"""
import sys

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config, peek_value
from ecg2llm.tokenizer.training import trainer_module


@run_main
def main(argv=None):
    """Parse ``--config``/overrides, dispatch on ``tokenizer_type``, train. Returns 0 on success."""
    args = sys.argv[1:] if argv is None else list(argv)
    module = trainer_module(str(peek_value(args, "tokenizer_type", default="seed")))
    cfg = parse_config(module.TrainConfig, args, description=__doc__)
    out = module.run(cfg)
    print(f"tokenizer saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
