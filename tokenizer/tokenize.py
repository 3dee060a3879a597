"""Tokenize the whole database into one token store.

Launch (from the repo root)::

    python -m tokenizer.tokenize --out runs/store --tokenizer default --data_dir ../shared/data
    python tokenizer/tokenize.py --out runs/store_both --leads all      # both leads of every record

The store (see ``tokenizer/store.py``) is written to a temporary folder and renamed into place, so a
killed run leaves the previous store or none. Records without a requested lead are skipped and listed
in ``meta.json``.
"""
import os
import sys

if __name__ == "__main__":  # keep tokenizer/ off sys.path: this file would shadow the stdlib `tokenize`
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

from tokenizer.build_store import TokenizeConfig, build_store  # noqa: E402
from tokenizer.utils.cli import run_main  # noqa: E402
from tokenizer.utils.config import parse_config  # noqa: E402


@run_main
def main(argv=None):
    """Parse flags into :class:`TokenizeConfig`, build the store, print a one-line summary."""
    cfg = parse_config(TokenizeConfig, argv, description=__doc__)
    store = build_store(cfg)
    m = store.meta
    print(f"token store {store.path}: {m['n_tokens']:,} tokens from {len(store.entries())} (record, lead) pairs "
          f"in {m['build']['seconds']} s; train {store.n_tokens('train'):,} / valid {store.n_tokens('valid'):,} "
          f"/ test {store.n_tokens('test'):,} tokens; skipped {len(m['skipped'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
