"""Multi-process plumbing shared by the entry points that scale out (``tokenizer/tokenize_db.py``, ``lm/train.py``).

Two things live here:

* :func:`relaunch_cpu_ddp` makes ``accelerate launch --cpu --num_processes N`` (or ``--config_file`` of a
  ``MULTI_CPU`` config) start N processes. Accelerate 1.x runs a CPU launch through its "simple launcher",
  which starts **one** process and expects ``mpirun`` to start the others (huggingface/accelerate#2741,
  #2492); without an MPI hostfile the documented command runs one process while the user believes it is
  distributed. That lone process is recognizable: ``ACCELERATE_USE_CPU`` is true and ``MASTER_ADDR`` is set
  (the launcher sets it only when more than one process was asked for) but no ``WORLD_SIZE``/MPI rank
  variables exist. It is then replaced, in place (``os.execv``), by ``torchrun --standalone
  --nproc_per_node N`` on the same script and arguments; the launcher waits on the same pid and sees its
  exit status. ``N`` is read from the launcher's command line, or from the YAML its ``--config_file`` names.
* :class:`ProcessGroup`: rank, world size and the three collectives the sharded tokenizer needs
  (barrier, broadcast of a small object, all-gather of small objects), over ``torch.distributed`` with the
  ``gloo`` backend (CPU; the payloads are paths and status strings, never tensors), or a no-op single
  process group when the script was not launched by ``torchrun``/``accelerate launch``.
"""
from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path
from typing import Any

_DIST_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _launcher_args(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _flag_value(args: list[str], *flags: str) -> str | None:
    for i, a in enumerate(args):
        for flag in flags:
            if a == flag and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(flag + "="):
                return a.split("=", 1)[1]
    return None


def _launcher_num_processes(pid: int) -> int | None:
    """``--num_processes`` of the launcher ``pid`` (Linux ``/proc``), else ``num_processes`` of its
    ``--config_file`` YAML, else None."""
    args = _launcher_args(pid)
    v = _flag_value(args, "--num_processes", "--num-processes")
    if v is not None:
        return int(v) if v.isdigit() else None
    cfg = _flag_value(args, "--config_file", "--config-file")
    if cfg is None:
        return None
    path = Path(cfg)
    if not path.is_absolute():  # relative to the launcher's working directory
        try:
            path = Path(os.readlink(f"/proc/{pid}/cwd")) / path
        except OSError:
            return None
    try:
        import yaml

        n = (yaml.safe_load(path.read_text()) or {}).get("num_processes")
    except Exception:  # noqa: BLE001 - an unreadable config is the launcher's error to report, not ours
        return None
    return int(n) if isinstance(n, int) else None


def relaunch_cpu_ddp(script: str, argv: list[str]) -> None:
    """If this is the lone process of a CPU ``accelerate launch`` asking for N > 1 processes, exec torchrun.

    Returns without doing anything in every other case (plain ``python``, torchrun, GPU launches, MPI).
    """
    env = os.environ
    if any(env.get(v) for v in _DIST_VARS):
        return
    if env.get("ACCELERATE_USE_CPU", "").lower() not in ("true", "1") or "MASTER_ADDR" not in env:
        return
    n = _launcher_num_processes(os.getppid())
    if not n or n < 2:
        return
    print(f"accelerate launch --cpu starts a single process (huggingface/accelerate#2741): relaunching with "
          f"torchrun --nproc_per_node {n}", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           os.path.abspath(script), *argv]
    sys.stdout.flush()
    os.execv(sys.executable, cmd)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class ProcessGroup:
    """This process's place among the processes of a launch, and the collectives a sharded job needs.

    ``ProcessGroup.from_env()`` joins the ``torch.distributed`` group that ``torchrun`` / ``accelerate
    launch`` describe in the environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...), with the ``gloo``
    backend; without those variables it is a single process and every collective returns at once.

    Parameters
    ----------
    rank, world_size, local_rank, local_world_size : int
    timeout_s : float
        How long a collective waits for the slowest process. Tokenizing a shard of a large corpus takes
        hours, so the default is a day; a crashed process ends the launch anyway (torchrun stops the others).
    """

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, local_world_size: int = 1,
                 timeout_s: float = 86400.0):
        self.rank, self.world_size = int(rank), int(world_size)
        self.local_rank, self.local_world_size = int(local_rank), int(local_world_size)
        self._owns_group = False
        if self.world_size > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
                self._owns_group = True

    @classmethod
    def from_env(cls, timeout_s: float = 86400.0) -> "ProcessGroup":
        env = os.environ
        world = int(env.get("WORLD_SIZE", "1"))
        return cls(rank=int(env.get("RANK", "0")), world_size=world, local_rank=int(env.get("LOCAL_RANK", "0")),
                   local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world))), timeout_s=timeout_s)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """The main process's ``obj`` on every process (a small picklable value: a path, a status)."""
        if self.world_size == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order, on every process."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self._owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._owns_group = False
