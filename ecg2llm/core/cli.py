"""Entry-point plumbing: one-line errors with a non-zero exit, full traceback only with ``--debug``."""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from typing import Callable, Iterator

from .errors import ConfigError, ECG2LLMError


@contextlib.contextmanager
def _one_line_argparse_errors() -> Iterator[None]:
    """Make argparse report a bad flag as a :class:`ConfigError` (one ``error:`` line, exit 2) instead of a
    usage block: entry points build their parsers in different places (``parse_config``, plain argparse in
    scripts), so the behaviour is set here, for the duration of ``main`` only. ``--help`` is unaffected."""

    def error(self: argparse.ArgumentParser, message: str):
        raise ConfigError(f"{self.prog}: {message} (see {self.prog} --help)")

    saved = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = error  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = saved  # type: ignore[method-assign]


def run_main(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Wrap ``main(argv)``: an :class:`ECG2LLMError` prints one line and exits 2; an ``OSError`` (disk full,
    permission denied) prints one line and exits 1."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        args = sys.argv[1:] if argv is None else list(argv)
        debug = "--debug" in args or os.environ.get("ECG2LLM_DEBUG") == "1"
        try:
            with _one_line_argparse_errors():
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


def int_list(text: str, flag: str) -> list[int]:
    """Parse a comma-separated list of integers given to ``flag``, with a :class:`ConfigError` if it is not one."""
    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated integers such as 5,10,20; got {text!r}") from None
