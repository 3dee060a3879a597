"""Make ``accelerate launch --cpu --num_processes N`` start N processes (see :mod:`tokenizer.utils.distributed`).

The relaunch lives with the tokenizer's multi-process plumbing because ``tokenizer/tokenize.py`` needs it
too and nothing in ``tokenizer`` may import ``lm``; this module keeps the name ``lm/train.py`` imports.
"""
from tokenizer.utils.distributed import _launcher_num_processes, relaunch_cpu_ddp  # noqa: F401
