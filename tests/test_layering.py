"""One installed namespace, imports only downwards, no import cycles (issue 36).

Layers: ``ecg2llm.core`` (plumbing) <- ``ecg2llm.tokenizer`` <- ``ecg2llm.lm`` and ``ecg2llm.eval`` (which never
import each other) <- the facade (``ecg2llm.pipeline``, ``ecg2llm.cli``, ``ecg2llm.scoring``). Inside ``eval/`` the
shared pieces (``data``, ``beats``, ``beat_classifier``, ``conditional``, ``testing``) import neither room, and the
scorecard never imports the TSTR study.

A static scan of every import statement (module level and inside functions alike, so a lazy import counts
too; only ``if TYPE_CHECKING:`` blocks, which never run, are left out), plus subprocess checks of what an
isolated interpreter (``python -I``, run from a temporary folder) can import.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: checkout folder -> installed package (pyproject.toml [tool.setuptools] package-dir)
FOLDERS = {"ecg2llm": "ecg2llm", "tokenizer": "ecg2llm.tokenizer", "lm": "ecg2llm.lm", "eval": "ecg2llm.eval"}
SKIP = {".git", ".venv", "runs", "__pycache__", "build", "dist"}
STAGES = ("tokenizer", "lm", "eval")


def _layer(module: str) -> str:
    """core | tokenizer | lm | eval | facade"""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("core", *STAGES):
        return parts[1]
    return "facade"


FORBIDDEN = {
    "core": {"tokenizer", "lm", "eval", "facade"},
    "tokenizer": {"lm", "eval", "facade"},
    "lm": {"eval", "facade"},
    "eval": {"lm", "facade"},
    "facade": set(),
}
EVAL_SHARED = {f"ecg2llm.eval.{m}" for m in ("data", "beats", "beat_classifier", "conditional", "testing")}


def _modules() -> dict[str, Path]:
    """Installed module name -> file, for every module of the four packages."""
    out = {}
    for folder, pkg in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            if any(p in SKIP for p in rel.parts):
                continue
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


def _py_files() -> list[Path]:
    return [p for p in sorted(REPO.rglob("*.py")) if not set(p.relative_to(REPO).parts) & SKIP]


def _imports(path: Path, module: str | None) -> list[tuple[int, str, list[str]]]:
    """``(line, absolute module, imported names)`` of every import that can run (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if module is None:
                    continue
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name, [a.name for a in node.names]))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for _, name, names in _imports(path, mod):
            targets = [f"{name}.{n}" for n in names if f"{name}.{n}" in mods] or [name]
            graph[mod] |= {t for t in targets if t in mods and t != mod}
    return graph


def test_no_import_cycles():
    """Tarjan's strongly connected components over the module graph: every component is one module."""
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles (break them by passing the dependency in, not by a local import):\n" + \
        "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_sees_function_level_imports(tmp_path):
    """The scan counts an import inside a function (the old cycles were closed by exactly those)."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from .other import x\n    return x\n")
    assert _imports(f, "ecg2llm.eval.scorecard.m") == [(2, "ecg2llm.eval.scorecard.other", ["x"])]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_only_downwards(layer):
    bad = []
    for mod, path in _modules().items():
        if _layer(mod) != layer:
            continue
        for line, name, _ in _imports(path, mod):
            if name.split(".")[0] == "ecg2llm" and _layer(name) in FORBIDDEN[layer] and name != "ecg2llm":
                bad.append(f"{path.relative_to(REPO)}:{line} ({layer}) imports {name} ({_layer(name)})")
            if layer != "facade" and name == "ecg2llm":
                bad.append(f"{path.relative_to(REPO)}:{line} ({layer}) imports the facade package ecg2llm")
    assert not bad, "\n".join(bad)


def test_eval_rooms():
    """Shared eval modules import neither room; the scorecard never imports the TSTR study."""
    bad = []
    for mod, path in _modules().items():
        for line, name, _ in _imports(path, mod):
            if mod in EVAL_SHARED and name.startswith(("ecg2llm.eval.scorecard", "ecg2llm.eval.tstr")):
                bad.append(f"{path.relative_to(REPO)}:{line} (shared) imports {name}")
            if mod.startswith("ecg2llm.eval.scorecard") and name.startswith("ecg2llm.eval.tstr"):
                bad.append(f"{path.relative_to(REPO)}:{line} (scorecard) imports {name}")
    assert not bad, "\n".join(bad)


def test_no_bare_stage_imports_anywhere():
    """``import tokenizer`` / ``from lm.x import y`` would load a second copy from the checkout root (its
    ConfigError is not ecg2llm's); everything imports ``ecg2llm.<stage>``. Relative imports are fine."""
    bad = []
    for path in _py_files():
        for line, name, _ in _imports(path, None):
            if name.split(".")[0] in STAGES:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_no_sys_path_edits_outside_tests():
    """No module, entry point or script touches ``sys.path``: the package is installed, never path-hacked."""
    bad = []
    for path in _py_files():
        if path.relative_to(REPO).parts[0] == "tests":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
                    and node.value.id == "sys"):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not bad, "sys.path used in: " + ", ".join(bad)


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_installed():
    """Each folder with an ``__init__.py`` is in [tool.setuptools] packages (a missing one is silently absent
    from a non-editable install), and the package-dir map is the one these tests assume."""
    st = _pyproject()["tool"]["setuptools"]
    assert st["package-dir"] == {v: k for k, v in FOLDERS.items()}
    folders = {m for m, p in _modules().items() if p.name == "__init__.py"}
    listed = set(st["packages"])
    assert folders - listed == set(), f"package folders missing from pyproject.toml packages: {folders - listed}"
    assert listed - folders == set(), f"packages listed without a folder: {listed - folders}"
    assert set(st["package-data"]) <= listed
    assert not any(k in STAGES for k in st["package-data"])
    assert _pyproject()["tool"]["ruff"]["lint"]["isort"]["known-first-party"] == ["ecg2llm"]


def _isolated(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """``python -I -c code`` from an empty temporary folder: no PYTHONPATH, no checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_installed_names_import_from_anywhere(tmp_path):
    r = _isolated("import ecg2llm.tokenizer, ecg2llm.lm, ecg2llm.eval, ecg2llm.eval.scorecard.scorer, "
                  "ecg2llm.eval.tstr.study, ecg2llm.core.hub; print(ecg2llm.tokenizer.__file__)", tmp_path)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).is_file()


@pytest.mark.parametrize("name", STAGES)
def test_bare_stage_names_are_not_installed(name, tmp_path):
    r = _isolated(f"import {name}", tmp_path)
    assert r.returncode != 0 and f"ModuleNotFoundError: No module named '{name}'" in r.stderr, r.stderr


def test_core_and_facade_import_light(tmp_path):
    """``import ecg2llm`` / ``ecg2llm.core`` (and its torch-free modules) load no stage and no torch."""
    r = _isolated(
        "import sys, ecg2llm, ecg2llm.core, ecg2llm.core.errors, ecg2llm.core.config, ecg2llm.core.cli, "
        "ecg2llm.core.io, ecg2llm.core.distributed, ecg2llm.cli\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers') or "
        "m.startswith(('ecg2llm.tokenizer', 'ecg2llm.lm', 'ecg2llm.eval')))\n"
        "print(heavy)\n"
        "assert callable(ecg2llm.score) and 'ecg2llm.eval' not in sys.modules", tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


@pytest.mark.slow
def test_wheel_holds_one_top_level_name_and_the_shipped_weights(tmp_path):
    """``pip wheel`` of a copy of the checkout (a stale in-tree build/ could leak removed modules): only
    ``ecg2llm/`` inside, every module of the four folders, and every shipped weight/config under
    ``ecg2llm/<stage>/pretrained/``."""
    import shutil
    import zipfile

    try:
        import setuptools
    except ModuleNotFoundError:
        pytest.skip("setuptools is not installed in this environment (needed with --no-build-isolation)")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} < 77 (pyproject.toml's build requirement)")
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in (*FOLDERS, "pyproject.toml", "README.md", "LICENSE"):
        p = REPO / name
        (shutil.copytree(p, src / name, ignore=ignore) if p.is_dir() else shutil.copy2(p, src / name))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                        "-w", str(tmp_path / "whl")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = (tmp_path / "whl").glob("ecg2llm-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    assert {n.split("/")[0] for n in names} == {"ecg2llm", whl.name.split("-py")[0] + ".dist-info"}
    for mod, path in _modules().items():
        inside = "/".join(mod.split(".")) + ("/__init__.py" if path.name == "__init__.py" else ".py")
        assert inside in names, f"{path.relative_to(REPO)} is missing from the wheel (as {inside})"
    shipped = [p for stage in STAGES for p in sorted((REPO / stage / "pretrained").rglob("*")) if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in shipped)
    for p in shipped:
        inside = "ecg2llm/" + p.relative_to(REPO).as_posix()
        assert inside in names, f"shipped file {p.relative_to(REPO)} is missing from the wheel"
