"""One save/load path for every ecg2llm model folder: shipped name, local folder or Hugging Face Hub id.

Every model the project ships -- tokenizers, the eval embedding, the LM bundle -- is a folder of
``config.json`` (plain JSON, never a pickle) and ``model.safetensors``. This module is the only place that
turns a name into such a folder and reads or writes one:

- :func:`resolve_folder` -- ``"default"`` (a shipped folder inside the package, or a name that the package's
  ``pretrained/aliases.json`` maps to one: :func:`shipped_aliases`), a local path, or a Hub id such as
  ``"user/ecg-gpt"`` (``huggingface_hub.snapshot_download``; honours ``HF_HUB_OFFLINE=1`` and the
  local cache, so nothing is downloaded when the files are already there).
- :func:`save_folder` / :func:`load_folder` -- ``config.json`` + ``model.safetensors`` with the weights'
  SHA-256 (:func:`state_dict_hash`) recorded on save and checked on load; written to a temporary folder and
  renamed, so a crash never leaves half a model.
- :func:`push_folder` -- upload a saved folder to the Hub (``huggingface_hub.HfApi.upload_folder``).

Why one helper rather than ``PyTorchModelHubMixin`` on each class: the tokenizers are not ``nn.Module``
subclasses (they wrap one and carry a type registry), the LM is saved by transformers, and all three need
the same weights-hash check and atomic write; the mixin would give three different loaders again.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from .errors import ECG2LLMError
from .io import atomic_path, write_json

CONFIG_NAME = "config.json"
ALIASES_NAME = "aliases.json"  # in a stage's pretrained/ folder: shipped name -> folder name ("default": "v3")
WEIGHTS_NAME = "model.safetensors"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def state_dict_hash(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's tensors (name, dtype, shape and bytes, names sorted)."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def is_hub_id(name: str | Path) -> bool:
    """``"user/repo"`` that is not an existing local path."""
    s = str(name)
    return bool(_HUB_ID.match(s)) and not Path(s).exists()


def shipped_aliases(shipped_root: Path | None) -> dict[str, str]:
    """Names that point at another shipped folder, from ``<shipped_root>/aliases.json`` (``{}`` without one).

    ``{"default": "v3"}`` makes ``from_pretrained("default")`` load ``pretrained/v3``: the project moves its
    default by editing one line, and the folder keeps the name of the version it holds.
    """
    f = Path(shipped_root) / ALIASES_NAME if shipped_root is not None else None
    if f is None or not f.is_file():
        return {}
    try:
        table = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ECG2LLMError(f"{f} is not valid JSON ({e}); it maps shipped names to folders, e.g. "
                           '{"default": "v3"}') from None
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise ECG2LLMError(f"{f} must map names to folder names (strings), e.g. " '{"default": "v3"}')
    return table


def shipped_name(name: str | Path, shipped_root: Path | None) -> str:
    """The shipped folder name ``name`` stands for (itself unless ``aliases.json`` maps it)."""
    return shipped_aliases(shipped_root).get(str(name), str(name))


def resolve_folder(name_or_path: str | Path, shipped_root: Path | None = None, *, what: str = "model",
                   error: type[ECG2LLMError] = ECG2LLMError, required: tuple[str, ...] = (CONFIG_NAME,),
                   revision: str | None = None, hint: str = "") -> Path:
    """Turn a shipped name, a local folder or a Hub id into a local folder holding ``required`` files.

    Parameters
    ----------
    name_or_path : str or Path
        A folder name under ``shipped_root`` (``"default"``), a local folder, or ``"user/repo"`` on the Hub.
    shipped_root : Path, optional
        Where the package keeps its shipped folders.
    what : str
        What is being loaded, for error messages (``"tokenizer"``, ``"LM"``...).
    error : exception class
        Raised (one clear line) when nothing usable is found.
    hint : str
        What to do instead, appended to that line (e.g. the command that trains one).

    Returns
    -------
    Path
        A local folder that contains every file in ``required``.
    """
    s = str(name_or_path)
    p = Path(s)
    if shipped_root is not None and not p.exists():
        s = shipped_name(s, shipped_root)
    if shipped_root is not None and not p.exists() and (shipped_root / s).is_dir():
        p = shipped_root / s
    elif not p.exists() and is_hub_id(s):
        p = _download(s, what, error, revision)
    missing = [f for f in required if not (p / f).is_file()]
    if missing:
        shipped = sorted([d.name for d in shipped_root.iterdir() if d.is_dir()] + [
            f"{k} (= {v})" for k, v in shipped_aliases(shipped_root).items()]) if shipped_root and \
            shipped_root.is_dir() else []
        hint2 = f". {hint}" if hint else ""
        hint = f"; shipped {what}s: {', '.join(shipped)}" if shipped else ""
        raise error(f"{p} is not a {what} folder: it needs {' and '.join(required)} (give a shipped name, a folder "
                    f"written by save_pretrained, or a Hugging Face Hub id 'user/repo'{hint}){hint2}")
    return p


def _download(repo_id: str, what: str, error: type[ECG2LLMError], revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision))
    except LocalEntryNotFoundError:
        raise error(f"{what} {repo_id!r} is not in the local Hugging Face cache and the Hub cannot be reached "
                    f"(offline, or HF_HUB_OFFLINE=1): connect once, or pass a local folder") from None
    except Exception as e:  # noqa: BLE001 - repository not found, gated, HTTP errors: one line
        raise error(f"cannot fetch {what} {repo_id!r} from the Hugging Face Hub: {type(e).__name__}: {e}") from None


def save_folder(path: str | Path, state_dict: Mapping[str, torch.Tensor], config: dict[str, Any], *,
                metadata: dict[str, str] | None = None, extra_files: dict[str, str | bytes] | None = None) -> Path:
    """Write ``config.json`` (``config`` + ``weights_hash``) and ``model.safetensors`` into ``path``, atomically.

    ``extra_files`` (name -> text or bytes) are written beside them, outside the weights hash.

    Returns
    -------
    Path
        ``path``, replaced as a whole.
    """
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.mkdir(parents=True)
        save_file(sd, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", **(metadata or {})})
        write_json(tmp / CONFIG_NAME, {**config, "weights_hash": state_dict_hash(sd)})
        for name, data in (extra_files or {}).items():
            if isinstance(data, bytes):
                (tmp / name).write_bytes(data)
            else:
                (tmp / name).write_text(data)
    return path


def read_config(folder: str | Path, error: type[ECG2LLMError] = ECG2LLMError) -> dict[str, Any]:
    """``config.json`` of a model folder as a dict, with a one-line error for a missing or invalid file."""
    f = Path(folder) / CONFIG_NAME
    try:
        cfg = json.loads(f.read_text())
    except FileNotFoundError:
        raise error(f"{f} is missing: not a model folder") from None
    except json.JSONDecodeError as e:
        raise error(f"{f} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise error(f"{f} must hold a JSON object")
    return cfg


def load_weights(folder: str | Path, module: torch.nn.Module, expected_hash: str | None,
                 error: type[ECG2LLMError] = ECG2LLMError) -> torch.nn.Module:
    """Load ``model.safetensors`` into ``module`` (strict) and check the weights against ``expected_hash``."""
    from safetensors.torch import load_file

    w = Path(folder) / WEIGHTS_NAME
    if not w.is_file():
        raise error(f"{w} is missing: not a model folder")
    try:
        module.load_state_dict(load_file(str(w)), strict=True)
    except Exception as e:  # noqa: BLE001 - safetensors/torch raise various errors on bad files
        raise error(f"{w} does not match {Path(folder) / CONFIG_NAME} or is corrupt: {e}") from None
    if expected_hash and expected_hash != state_dict_hash(module.state_dict()):
        raise error(f"{w}: weights hash differs from the one recorded in {CONFIG_NAME}")
    return module.eval()


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload ecg2llm model") -> str:
    """Create ``repo_id`` on the Hub if needed and upload ``folder``; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message)
    return str(getattr(info, "commit_url", info))
