"""Entry-point plumbing: one-line errors with a non-zero exit, full traceback only with ``--debug``."""
from __future__ import annotations

import functools
import os
import sys
from typing import Callable

from ..errors import ECG2LLMError


def run_main(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Wrap ``main(argv)``: an :class:`ECG2LLMError` prints one line and exits 2; an ``OSError`` (disk full,
    permission denied) prints one line and exits 1."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        args = sys.argv[1:] if argv is None else list(argv)
        debug = "--debug" in args or os.environ.get("ECG2LLM_DEBUG") == "1"
        try:
            return int(main(argv) or 0)
        except ECG2LLMError as e:
            if debug:
                raise
            print(f"error: {e}", file=sys.stderr)
            return 2
        except OSError as e:  # disk full, permissions, read-only file system: one line, what to do
            if debug:
                raise
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            print(f"error: {e.strerror or e}{where}; nothing was written at the destination (outputs are renamed "
                  f"into place only when complete). Free disk space or choose another output folder, then "
                  f"run again (--debug shows the traceback)", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
