"""Experiment trackers through Accelerate (W&B or TensorBoard), and the run's own JSON-lines log.

W&B: online when an API key is configured (``WANDB_API_KEY`` or ``wandb login``), offline otherwise, by
setting ``WANDB_MODE=offline`` only when the user has not set it; nothing is forced in ``wandb.init``'s
arguments, so ``WANDB_MODE=disabled`` (tests) and ``WANDB_DIR`` keep working. Offline runs are written to
``$WANDB_DIR/wandb/offline-run-*`` (default: the run's output directory) for a later ``wandb sync``.
"""
from __future__ import annotations

import json
import netrc
import os
from pathlib import Path
from typing import Any

from ecg2llm.core.errors import ConfigError


def wandb_logged_in() -> bool:
    """True when W&B has credentials (environment or ~/.netrc), without any network call."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1].split("/")[0]
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def prepare_tracker_env(report_to: str, output_dir: str | Path) -> str | None:
    """Check the tracker is importable and set W&B defaults; returns Accelerate's ``log_with`` value."""
    if report_to == "none":
        return None
    if report_to == "wandb":
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ConfigError("--report_to wandb needs the wandb package: pip install wandb") from None
        if "WANDB_MODE" not in os.environ and not wandb_logged_in():
            os.environ["WANDB_MODE"] = "offline"
        return "wandb"
    if report_to == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("--report_to tensorboard needs tensorboard: pip install tensorboard") from None
        return "tensorboard"
    raise ConfigError(f"unknown report_to {report_to!r}")


def wandb_init_kwargs(cfg, output_dir: str | Path) -> dict[str, Any]:
    """``wandb.init`` arguments: run name, mode and folder passed explicitly on every run.

    wandb caches its settings per process at the first ``init``; passing ``dir`` and ``mode`` each time
    makes a second training in the same process (a notebook, a test session) honour the current
    ``$WANDB_DIR`` / ``$WANDB_MODE`` and its own ``output_dir`` (the default folder) instead of the first
    run's.
    """
    kw: dict[str, Any] = {"name": cfg.run_name or Path(output_dir).name,
                          "dir": os.environ.get("WANDB_DIR") or str(Path(output_dir).resolve())}
    if os.environ.get("WANDB_MODE"):
        kw["mode"] = os.environ["WANDB_MODE"]
    return kw


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """Tracker-safe config: lists joined with commas, None as "none" (TensorBoard hparams take scalars)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, (list, tuple)):
            v = ",".join(map(str, v))
        elif v is None:
            v = "none"
        out[k] = v
    return out


def log_figure(accelerator, report_to: str, fig, key: str, step: int) -> None:
    """Send a matplotlib figure to the active tracker (main process only)."""
    if not accelerator.is_main_process or report_to == "none":
        return
    if report_to == "wandb":
        import wandb

        accelerator.get_tracker("wandb", unwrap=True).log({key: wandb.Image(fig)}, step=step)
    elif report_to == "tensorboard":
        accelerator.get_tracker("tensorboard", unwrap=True).add_figure(key, fig, global_step=step)


class JsonlLog:
    """Append-only ``train_log.jsonl`` in the run directory, written by the main process only."""

    def __init__(self, path: str | Path, enabled: bool):
        self.path, self.enabled = Path(path), enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run re-logs the steps after its checkpoint)."""
        if not self.enabled or not self.path.is_file():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        from ecg2llm.core.io import write_text

        write_text(self.path, "".join(line + "\n" for line in keep))

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
