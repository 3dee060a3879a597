"""Tokenize the whole database into one token store, in one process or sharded over several.

Launch (from the repo root)::

    python -m ecg2llm.tokenizer.tokenize_db --out runs/store --tokenizer default --data_dir ../shared/data
    python tokenizer/tokenize_db.py --out runs/store_both --leads all      # both leads of every record
    accelerate launch --cpu --num_processes 2 tokenizer/tokenize_db.py --out runs/store_both --leads all
    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml tokenizer/tokenize_db.py --out runs/store_both
    torchrun --nproc_per_node 8 tokenizer/tokenize_db.py --out /shared/store --device cuda   # one GPU per process

One process writes a one-file store. Under ``accelerate launch`` / ``torchrun`` each process tokenizes a
contiguous run of records (balanced by length) into its own memory-mapped shard and the main process writes
one global index over them (``tokenizer/shards.py``): readers see the same offsets and tokens as from a
one-process store. Each process uses ``--num_threads`` torch threads (default: the machine's cores divided
by the processes on it). The store is written to a temporary folder and renamed into place, so a killed
run leaves the previous store or none. Records without a requested lead are skipped and listed in
``meta.json``.
"""
import sys

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.distributed import ProcessGroup, available_cores, relaunch_cpu_ddp
from ecg2llm.tokenizer.build_store import TokenizeConfig, build_store


@run_main
def main(argv=None):
    """Parse flags into :class:`TokenizeConfig`, build the store, print a one-line summary."""
    import torch

    cfg = parse_config(TokenizeConfig, argv, description=__doc__)
    if argv is None:  # a CPU `accelerate launch` started one process: start the N it was asked for
        relaunch_cpu_ddp(__file__, sys.argv[1:])
    group = ProcessGroup.from_env()
    try:
        # one process per core beats threads per process here: the encoder's small matmuls scale poorly
        # across threads, and on a busy machine spinning OpenMP threads of several processes collide
        torch.set_num_threads(cfg.num_threads or max(1, available_cores() // group.local_world_size))
        store = build_store(cfg, group=group)
    finally:
        group.close()
    if group.is_main:
        m = store.meta
        print(f"token store {store.path}: {m['n_tokens']:,} tokens from {len(store.entries())} (record, lead) pairs "
              f"in {m['build']['seconds']} s on {group.world_size} process(es); train {store.n_tokens('train'):,} "
              f"/ valid {store.n_tokens('valid'):,} / test {store.n_tokens('test'):,} tokens; "
              f"skipped {len(m['skipped'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
