"""``python -m ecg2llm <subcommand> [flags]``: the same as the ``ecg2llm`` console command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
