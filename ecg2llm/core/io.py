"""Crash-safe file output and self-describing run directories.

Every output is written to a temporary name in the destination folder and renamed into place
(``os.replace`` is atomic on POSIX), so an interrupted job leaves either the previous file or none.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Iterator

from .errors import ECG2LLMError


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) and check that we can write there, with a clear error if not."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ECG2LLMError(
            f"cannot write to output folder {p}: {e.strerror or e}. Choose another --out/--output_dir."
        ) from None
    return p


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on failure delete it.

    Works for files and for folders (a folder replaces an existing one: the old one is moved aside first
    and removed only after the new one is in place).
    """
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    _remove_stale_temps(dst)
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    try:
        yield tmp
        if tmp.is_dir() and dst.exists():
            old = dst.parent / f".{dst.name}.old-{os.getpid()}"
            os.replace(dst, old)
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        elif tmp.exists():
            os.replace(tmp, dst)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise


def _remove_stale_temps(dst: Path) -> None:
    """Delete temporaries of ``dst`` left by processes that no longer exist (a killed earlier run).

    The pid in the name is checked on this machine only; that is enough because shared outputs are written
    by the main process of a run, and a temporary of a live process is never touched.
    """
    for p in dst.parent.glob(f".{glob_escape(dst.name)}.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
            continue
        except ProcessLookupError:
            pass
        except OSError:  # exists but is not ours (EPERM): leave it
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_safetensors(path: str | Path, error: type[ECG2LLMError], what: str, fix: str) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a safetensors side file (torch tensors), or ``error`` in one line:
    ``"<path> is not a readable <what> (<reason>); <fix>"`` for a truncated or foreign file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - truncated or foreign files
        raise error(f"{path} is not a readable {what} ({e}); {fix}") from None


def git_sha(cwd: str | Path | None = None) -> str | None:
    """The current git commit (with ``-dirty`` when the tree has changes), or None outside a checkout."""
    cwd = cwd or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    """Versions of the libraries that decide a run's numbers.

    A library not imported yet is looked up in its installed metadata (the same string as its
    ``__version__``) instead of being imported: importing wandb and accelerate only to read their versions
    cost ~2 s of ``lm/generate.py``'s start-up."""
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "numpy", "wfdb", "transformers", "accelerate", "wandb", "scipy"):
        if name not in sys.modules:
            try:
                out[name] = metadata.version(name)
                continue
            except Exception:  # noqa: BLE001 - no metadata (a source checkout): import it, as before
                pass
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", None)
        except Exception:  # noqa: BLE001 - a missing optional library is reported as None
            out[name] = None
    return out


def write_run_info(run_dir: str | Path, config: dict[str, Any], **extra: Any) -> Path:
    """Write ``run_info.json``: resolved config, git sha, library versions, command line, time."""
    info = {
        "config": config,
        "git_sha": git_sha(),
        "versions": versions(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        **extra,
    }
    return write_json(Path(run_dir) / "run_info.json", info)
