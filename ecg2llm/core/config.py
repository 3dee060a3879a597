"""Configs as dataclasses, loaded from YAML plus ``--key value`` command-line overrides.

Precedence: dataclass defaults < YAML file (``--config``) < command line. Values are cast to the
field's annotated type, so ``n_embd: 256.0`` in YAML or ``--n_layer 4`` on the command line reach
strict consumers (transformers 5 configs) as ``int``.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass
... class C:
...     lr: float = 1e-3
...     name: str = "x"
>>> parse_config(C, ["--lr", "0.5"]).lr
0.5
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Return (inner type, optional?) for ``X``, ``X | None`` and ``Optional[X]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        return str, True
    return tp, False


def cast_value(value: Any, tp: Any, name: str) -> Any:
    """Cast ``value`` (from YAML or the command line) to the annotated type ``tp``."""
    inner, optional = _base_type(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in {"none", "null"}):
        if optional or inner is Any:
            return None
        raise ConfigError(f"config field '{name}' may not be null")
    origin = typing.get_origin(inner)
    if origin is typing.Literal:  # a fixed set of choices, e.g. Literal["auto", "cpu", "cuda"]
        choices = typing.get_args(inner)
        for c in choices:
            if str(c) == str(value):
                return c
        raise ConfigError(f"config field '{name}': {value!r} is not one of {', '.join(map(str, choices))}")
    try:
        if inner is bool:
            if isinstance(value, bool):
                return value
            s = str(value).lower()
            if s in _TRUE:
                return True
            if s in _FALSE:
                return False
            raise ValueError(value)
        if inner is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if inner is float:
            return float(value)
        if inner is str:
            return str(value)
        if origin in (list, tuple):
            (item_t, *_) = typing.get_args(inner) or (Any,)
            if isinstance(value, str):  # "a,b" or "[a, b]"; "" is the empty list
                value = (yaml.safe_load(value) if value.strip().startswith("[")
                         else [v for v in value.split(",") if v.strip()])
            if not isinstance(value, (list, tuple)):
                value = [value]
            items = [cast_value(v, item_t, name) if item_t is not Any else v for v in value]
            return list(items) if origin is list else tuple(items)
        if origin is dict or inner is dict:
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
    except ConfigError:  # an item of a list: its own message names the item
        raise
    except (TypeError, ValueError):
        raise ConfigError(
            f"config field '{name}': cannot read {value!r} as {getattr(inner, '__name__', inner)}"
        ) from None
    return value


def config_from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Build dataclass ``cls`` from a plain dict, casting each value and rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(names)}"
        )
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values and _is_required(f)]
    if missing:
        raise ConfigError(
            f"{source}: missing required value(s) for {', '.join('--' + m for m in missing)}; pass them as "
            f"flags or set them in the --config YAML"
        )
    kwargs = {k: cast_value(v, hints[k], k) for k, v in values.items()}
    return cls(**kwargs)


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]


_COMMENTED_FIELD = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+?)\s*$")


def field_comments(cls: type) -> dict[str, str]:
    """The trailing ``# comment`` of each field line in the source of dataclass ``cls`` (and its bases): the
    ``--help`` text of the field. Empty for fields without one, or when the source is not available."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in src.splitlines():
            m = _COMMENTED_FIELD.match(line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:  # one line: the position and the problem, not PyYAML's multi-line excerpt
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or " ".join(str(e).split())
        raise ConfigError(f"config file {p} is not valid YAML{where}: {what}; fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of key: value, got {type(data).__name__}")
    return data


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the module docstring's layout (its launch commands) and show the defaults of extra flags."""


def build_parser(cls: type, description: str | None = None, extra: argparse.ArgumentParser | None = None):
    """An argparse parser with ``--config``, ``--debug`` and one ``--field`` per dataclass field."""
    parser = argparse.ArgumentParser(
        description=description,
        parents=[extra] if extra is not None else [],
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--config", default=None, help="YAML file with values for the fields below")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    comments = field_comments(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name
        alias = "--" + f.name.replace("_", "-")
        names = [flag] if alias == flag else [flag, alias]
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        inner, _ = _base_type(hints.get(f.name))
        what = "required" if _is_required(f) else f"default: {default}"
        if typing.get_origin(inner) is typing.Literal:
            what = f"one of {', '.join(map(str, typing.get_args(inner)))}; {what}"
        text = f"{comments[f.name]} ({what})" if f.name in comments else f"({what})"
        kw: dict[str, Any] = {}
        if inner is bool:  # a bare `--flag` means true; `--flag false` still works
            kw = {"nargs": "?", "const": "true", "metavar": "BOOL"}
        parser.add_argument(*names, dest=f.name, default=argparse.SUPPRESS, help=text.replace("%", "%%"), **kw)
    return parser


def parse_config(cls: type[T], argv: Sequence[str] | None = None, description: str | None = None,
                 extra: argparse.ArgumentParser | None = None) -> T:
    """Parse ``argv`` into dataclass ``cls`` (defaults < ``--config`` YAML < CLI flags).

    Extra (non-config) arguments of ``extra`` are attached to the result as ``cfg._extra`` (a Namespace).
    """
    parser = build_parser(cls, description, extra)
    ns = parser.parse_args(argv)
    values: dict[str, Any] = {}
    if ns.config:
        values.update(load_yaml(ns.config))
    field_names = {f.name for f in dataclasses.fields(cls)}
    cli = {k: v for k, v in vars(ns).items() if k in field_names}
    values.update(cli)
    cfg = config_from_dict(cls, values, source=ns.config or "command line")
    extras = {k: v for k, v in vars(ns).items() if k not in field_names}
    object.__setattr__(cfg, "_extra", argparse.Namespace(**extras))
    return cfg


def peek_value(argv: Sequence[str], name: str, default: Any = None) -> Any:
    """The value of one key before the config class is known: ``--name`` (or ``--na-me``) on the command line,
    else the ``--config`` YAML's ``name``, else ``default``. For entry points whose config class depends on a
    key (``tokenizer/train.py`` picks its trainer by ``tokenizer_type``); everything else is then read by
    :func:`parse_config`, which also reports any unknown flag."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # only the exact flags
    pre.add_argument("--config")
    pre.add_argument("--" + name, *(["--" + name.replace("_", "-")] if "_" in name else []), dest=name)
    known, _ = pre.parse_known_args(list(argv))
    value = getattr(known, name)
    if value is None and known.config:
        value = load_yaml(known.config).get(name)
    return default if value is None else value


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON/YAML-safe dict of a dataclass config."""
    return dataclasses.asdict(cfg)
