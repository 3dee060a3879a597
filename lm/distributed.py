"""Make ``accelerate launch --cpu --num_processes N`` start N processes.

Accelerate 1.x runs a ``--cpu`` launch through its "simple launcher", which starts **one** process and
expects ``mpirun`` to start the others (huggingface/accelerate#2741, #2492); without an MPI hostfile the
documented command trains on one process while the user believes it is DDP. That lone process is
recognizable: ``ACCELERATE_USE_CPU`` is true and ``MASTER_ADDR`` is set (the launcher sets it only when
more than one process was asked for) but no ``WORLD_SIZE``/MPI rank variables exist. :func:`relaunch_cpu_ddp`
then replaces it, in place (``os.execv``), with ``torchrun --standalone --nproc_per_node N`` on the same
script and arguments; the launcher waits on the same pid and sees its exit status. ``N`` is read from the
launcher's command line. ``torchrun --nproc_per_node N lm/train.py`` and
``accelerate launch --multi_gpu --num_processes N`` (on a machine without CUDA) work directly.
"""
from __future__ import annotations

import os
import sys

_DIST_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _launcher_num_processes(pid: int) -> int | None:
    """``--num_processes`` on the command line of process ``pid`` (Linux ``/proc``), else None."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return None
    for i, a in enumerate(args):
        for flag in ("--num_processes", "--num-processes"):
            if a == flag and i + 1 < len(args):
                return int(args[i + 1]) if args[i + 1].isdigit() else None
            if a.startswith(flag + "="):
                v = a.split("=", 1)[1]
                return int(v) if v.isdigit() else None
    return None


def relaunch_cpu_ddp(script: str, argv: list[str]) -> None:
    """If this is the lone process of ``accelerate launch --cpu --num_processes N>1``, exec torchrun.

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
