"""Rotating training checkpoints (``accelerator.save_state``) and how a run finds the one to resume.

Layout: ``<output_dir>/checkpoints/checkpoint_<step>/`` (Accelerate's automatic naming, with the
iteration set to the optimizer step, so folder names say where training was). A checkpoint counts as
complete only once ``trainer_state.json`` is written into it, after every process has saved: a run killed
mid-save leaves a folder that ``latest`` skips.

Accelerate saves the model (safetensors), the optimizer (``optimizer.bin``) and the RNG states of every
process (``random_states_<rank>.pkl``); :class:`TrainState` (the step, tokens seen, best validation loss) is
written by us as JSON into ``trainer_state.json``, never registered with ``register_for_checkpointing``:
Accelerate reloads such objects with ``torch.load`` and ``weights_only`` off, i.e. arbitrary pickle code.
Accelerate reads ``optimizer.bin`` and ``random_states_*.pkl`` through ``accelerate.utils.load``, which
passes ``weights_only=True`` (tensors, numpy arrays and plain containers only; no code runs). Before
resuming, :func:`check_checkpoint_files` refuses a folder holding any file our trainer does not write (a
stray pickle included). The data position is a function of the step (:class:`ecg2llm.lm.data.TrainBatches`) and
the learning rate too (:func:`lr_at`), so restoring the step restores both.
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

from ecg2llm.core.errors import ConfigError

MARKER = "trainer_state.json"
_NAME = re.compile(r"^checkpoint_(\d+)$")
#: Every file name ``accelerator.save_state`` + :class:`ecg2llm.lm.trainer.Trainer` write into a checkpoint.
_EXPECTED = re.compile(r"^(model(_\d+)?\.safetensors|optimizer(_\d+)?\.bin|random_states_\d+\.pkl|scaler\.pt"
                       r"|sampler(_\d+)?\.bin|dl_state_dict(_\d+)?\.bin|trainer_state\.json)$")


class TrainState:
    """Counters saved with each checkpoint (registered with ``accelerator.register_for_checkpointing``)."""

    def __init__(self):
        self.step = 0                 # optimizer steps done
        self.tokens_seen = 0          # training tokens over all processes
        self.best_val = float("inf")  # best periodic validation loss so far (for keep_best)
        self.best_step = -1

    def state_dict(self) -> dict[str, float]:
        return {"step": int(self.step), "tokens_seen": int(self.tokens_seen), "best_val": float(self.best_val),
                "best_step": int(self.best_step)}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        self.best_val = float(state.get("best_val", float("inf")))
        self.best_step = int(state.get("best_step", -1))


def lr_at(step: int, cfg) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, then cosine to the floor.

    The schedule runs over ``cfg.lr_decay_steps`` (default ``cfg.max_steps``) and stays at
    ``cfg.min_learning_rate`` after it, so a run can be stopped early and resumed, or extended, without
    changing the learning rate of any step it shares with an uninterrupted run.
    """
    lr, lo, warm = cfg.learning_rate, cfg.min_learning_rate, cfg.warmup_steps
    if step < warm:
        return lr * (step + 1) / warm
    horizon = cfg.lr_decay_steps or cfg.max_steps
    if step >= horizon:
        return lo
    ratio = (step - warm) / max(1, horizon - warm)
    return lo + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - lo)


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (by step)."""
    root = checkpoint_dir(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / MARKER).is_file()]
    return [p for _, p in sorted(found)]


def resolve_resume(cfg) -> Path | None:
    """The checkpoint to resume from: ``None``, ``"latest"`` (newest complete one) or a folder.

    ``latest`` with no checkpoint yet starts from scratch (with a notice), so a preemptible job can be
    relaunched with the same command from its first start on.

    Raises
    ------
    ConfigError
        For a named folder that is not a complete checkpoint.
    """
    want = cfg.resume_from_checkpoint
    if want is None:
        return None
    if str(want) == "latest":
        ckpts = complete_checkpoints(cfg.output_dir)
        if not ckpts:
            print(f"resume_from_checkpoint=latest: no complete checkpoint under {checkpoint_dir(cfg.output_dir)}; "
                  f"starting from scratch", flush=True)
            return None
        return ckpts[-1]
    p = Path(want)
    if not p.is_dir():
        raise ConfigError(f"checkpoint {p} does not exist (use 'latest' or <output_dir>/checkpoints/checkpoint_<step>)")
    if not (p / MARKER).is_file():
        raise ConfigError(f"{p} is not a complete checkpoint (no {MARKER}): it may be half-written; pick another")
    return p


def check_checkpoint_files(folder: str | Path) -> None:
    """Refuse a checkpoint folder holding files our trainer does not write (e.g. an unexpected pickle).

    Raises
    ------
    ConfigError
        Naming the unexpected files and what to do.
    """
    from accelerate.utils import load as accelerate_load  # torch.load(weights_only=True) + numpy arrays allowed

    p = Path(folder)
    odd = sorted(f.name for f in p.iterdir() if not (f.is_file() and _EXPECTED.match(f.name)))
    if odd:
        raise ConfigError(
            f"checkpoint {p} holds files lm/train.py never writes: {odd}. Refusing to load it (pickled files can "
            f"run code when unpickled); remove those files if you trust them, or resume from another checkpoint"
        )
    # Accelerate would skip an RNG file it cannot read (silently: the resume is then not exact) and fail deep
    # inside on a bad optimizer.bin; check both here, with the same safe loader, and say which file is bad.
    for f in sorted(p.iterdir()):
        if f.suffix in (".bin", ".pkl", ".pt"):
            try:
                accelerate_load(f, map_location="cpu")
            except Exception as e:  # noqa: BLE001 - UnpicklingError, EOFError, RuntimeError...
                raise ConfigError(
                    f"checkpoint file {f} cannot be loaded safely (torch.load weights_only=True: "
                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); it is corrupt or holds "
                    f"more than tensors. Resume from another checkpoint"
                ) from None


def read_train_state(folder: str | Path, state: TrainState) -> None:
    """Fill ``state`` from the checkpoint's ``trainer_state.json`` (JSON, not pickle)."""
    f = Path(folder) / MARKER
    try:
        state.load_state_dict(json.loads(f.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{f} is unreadable or incomplete ({type(e).__name__}: {e}); resume from another "
                          f"checkpoint") from None


def check_fresh_output_dir(cfg, is_main: bool) -> None:
    """Refuse to start from scratch over an earlier run's checkpoints unless ``overwrite_output_dir``."""
    root = checkpoint_dir(cfg.output_dir)
    has = root.is_dir() and any(root.iterdir())
    if has and not cfg.overwrite_output_dir:
        raise ConfigError(
            f"{cfg.output_dir} already holds checkpoints: pass --resume_from_checkpoint latest to continue that "
            f"run, or --overwrite_output_dir true to start over"
        )
    if has and is_main:
        shutil.rmtree(root)
        for name in ("train_log.jsonl", "metrics.json"):
            (Path(cfg.output_dir) / name).unlink(missing_ok=True)
