"""The ``ecg2llm`` command: one subcommand per entry point, each a thin call into its ``main(argv)``.

Launch (after ``make install``; ``python -m ecg2llm`` is the same)::

    ecg2llm --help                                   # the subcommands, one line each
    ecg2llm generate --help                          # that entry point's flags
    ecg2llm generate --model default --num-samples 8 --seconds 10 --out runs/gen --seed 0
    ecg2llm score --synthetic runs/gen --out runs/eval

Each subcommand runs the same ``main(argv)`` as ``python <script> ...`` (so flags, configs, errors and exit
codes are the script's own), in this process. Multi-process training stays ``accelerate launch lm/train.py``
(``ecg2llm train`` is the one-process run). ``tstr``, ``bench`` and ``demo`` live in the checkout's
``scripts/`` folder, which is not an installed package: they need the source checkout next to this package
(``make install`` installs it editable, so they are found).
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: subcommand -> (importable module, or a path relative to the checkout for scripts/ files)
SUBCOMMANDS: dict[str, str] = {
    "tokenize": "ecg2llm.tokenizer.tokenize_db",
    "train-tokenizer": "ecg2llm.tokenizer.train",
    "train": "ecg2llm.lm.train",
    "generate": "ecg2llm.lm.generate",
    "forecast": "ecg2llm.lm.forecast",
    "score": "ecg2llm.eval.score",
    "tstr": "scripts/tstr.py",
    "bench": "scripts/bench.py",
    "demo": "scripts/demo.py",
}


def _source(target: str) -> Path | None:
    """The file behind a subcommand, without importing it (None if it cannot be found)."""
    if target.endswith(".py"):
        p = REPO / target
        return p if p.is_file() else None
    parts = target.split(".")
    package, rest = ".".join(parts[:2]), parts[2:]
    try:  # find the stage package without importing it (importing ecg2llm.tokenizer or .lm loads torch)
        spec = importlib.util.find_spec(package)  # imports only the light parent, ``ecg2llm``
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        p = Path(root, *rest).with_suffix(".py")
        if p.is_file():
            return p
    return None


def describe(target: str) -> str:
    """First line of the entry point's module docstring (read with ``ast``: nothing heavy is imported)."""
    src = _source(target)
    if src is None:
        return "(needs the source checkout: scripts/ is not installed)"
    try:
        doc = ast.get_docstring(ast.parse(src.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError, ValueError):
        doc = ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _load(name: str, target: str):
    """Import the entry point's module (``scripts/*.py`` by file path) and return its ``main``."""
    from ecg2llm.core.errors import ConfigError

    if not target.endswith(".py"):
        return importlib.import_module(target).main
    path = _source(target)
    if path is None:
        raise ConfigError(
            f"`ecg2llm {name}` runs {target} from the ecg2llm source checkout, which is not next to this "
            f"installed package ({Path(__file__).resolve().parent}); clone the repository and run "
            f"`make install` there (an editable install), or run `python {target}` inside the checkout")
    mod_name = f"_ecg2llm_script_{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling-free multiprocessing look modules up by name
    spec.loader.exec_module(module)
    return module.main


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    rows = "\n".join(f"  {n:<{width}}  {describe(t)}" for n, t in SUBCOMMANDS.items())
    return (
        "usage: ecg2llm <subcommand> [flags]     (ecg2llm <subcommand> --help for its flags)\n\n"
        "ECG -> tokens -> GPT -> synthetic ECG, scored against real MIT-BIH recordings.\n\n"
        f"subcommands:\n{rows}\n\n"
        "options:\n  -h, --help     show this message and exit\n"
        "  --version      print the version and exit\n\n"
        "Python: from ecg2llm import ECGPipeline; ECGPipeline.from_pretrained('default').generate(8, 10)\n"
        "Multi-process training: accelerate launch lm/train.py --config configs/lm/tiny.yaml\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ecg2llm <subcommand> [flags]``; returns the subcommand's exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success; 2 on a bad subcommand or bad input (one ``error:`` line on stderr).

    Examples
    --------
    >>> from ecg2llm.cli import main
    >>> main(["generate", "--model", "default", "--num-samples", "2", "--seconds", "2",
    ...       "--out", "runs/gen"])                                   # doctest: +SKIP
    0
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage(), end="")
        return 0 if args else 2
    if args[0] == "--version":
        import ecg2llm

        print(f"ecg2llm {ecg2llm.__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(SUBCOMMANDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"error: unknown subcommand {name!r}{hint} (known: {', '.join(SUBCOMMANDS)}; "
              f"see ecg2llm --help)", file=sys.stderr)
        return 2
    from ecg2llm.core.errors import ECG2LLMError

    try:
        entry = _load(name, SUBCOMMANDS[name])
    except ECG2LLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    saved = sys.argv
    sys.argv = [f"ecg2llm {name}", *rest]  # argparse names the program after sys.argv[0] in usage/--help
    try:
        rc = entry(rest)
    except SystemExit as e:  # argparse --help / a script's own sys.exit
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    finally:
        sys.argv = saved
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
