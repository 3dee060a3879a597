"""The stage packages import only downwards: tokenizer <- lm, tokenizer <- eval, and lm and eval never each other.

A static scan of every import statement (module level and inside functions), so a lazy import counts too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {"tokenizer": {"lm", "eval", "ecg2llm"}, "lm": {"eval", "ecg2llm"}, "eval": {"lm", "ecg2llm"}}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_stage_packages_import_only_downwards(package):
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        hit = _imported_packages(path) & FORBIDDEN[package]
        if hit:
            bad.append(f"{path.relative_to(REPO)} imports {sorted(hit)}")
    assert not bad, "\n".join(bad)
