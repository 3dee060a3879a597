"""Shared fixtures: the real MIT-BIH database when present, tiny synthetic WFDB records otherwise."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per xdist worker: -n 2 on 2 cores, no oversubscription
    import torch

    torch.set_num_threads(1)


def _real_data_root() -> Path | None:
    for cand in (os.environ.get("ECG2LLM_DATA"), REPO.parent / "shared" / "data"):
        if cand and (Path(cand) / "mitdb" / "100.hea").is_file():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data root (contains mitdb/); the test is skipped when the database is absent."""
    root = _real_data_root()
    if root is None:
        pytest.skip("MIT-BIH not found (set ECG2LLM_DATA or place it at ../shared/data)")
    return root


def synthetic_ecg(seconds: float, fs: float = 360.0, hr_bpm: float = 72.0, seed: int = 0) -> np.ndarray:
    """A cheap ECG-like signal in mV: Gaussian P/QRS/T waves at a fixed rate plus slow baseline wander."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    x = 0.05 * np.sin(2 * np.pi * 0.3 * t)
    period = 60.0 / hr_bpm
    for beat in np.arange(0.3, seconds, period):
        for offset, width, amp in ((-0.16, 0.025, 0.12), (0.0, 0.010, 1.2), (0.02, 0.012, -0.25), (0.25, 0.04, 0.3)):
            x += amp * np.exp(-0.5 * ((t - beat - offset) / width) ** 2)
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_wfdb(folder: Path, name: str, signals: np.ndarray, fs: float = 360.0,
               sig_name=("MLII", "V1"), symbols: bool = True) -> Path:
    """Write a WFDB record (format 212, like MIT-BIH) and an .atr with N beats every second."""
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    sig = np.atleast_2d(np.asarray(signals, dtype=np.float64))
    if sig.shape[0] < sig.shape[1]:
        sig = sig.T  # (samples, leads)
    names = list(sig_name)[: sig.shape[1]]
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(names), sig_name=names, p_signal=sig, fmt=["212"] * len(names),
                adc_gain=[200.0] * len(names), baseline=[1024] * len(names), write_dir=str(folder))
    if symbols:
        samples = np.arange(int(0.3 * fs), sig.shape[0], int(fs))
        wfdb.wrann(name, "atr", samples, symbol=["N"] * len(samples), write_dir=str(folder))
    return folder / name


@pytest.fixture
def tiny_db(tmp_path) -> Path:
    """A data root with ``mitdb/`` holding three short synthetic two-lead records (100, 101, 114)."""
    db = tmp_path / "data" / "mitdb"
    for i, rec in enumerate(("100", "101", "114")):
        mlii = synthetic_ecg(20, seed=i)
        v1 = -0.5 * mlii
        leads = ("V5", "MLII") if rec == "114" else ("MLII", "V1")
        sig = np.stack([v1, mlii] if rec == "114" else [mlii, v1], axis=1)
        write_wfdb(db, rec, sig, sig_name=leads)
    return tmp_path / "data"


_WHY = ("Fatal Python error", "terminate called", "what():", "Error:", "error:", "Aborted", "Segmentation fault",
        "Thread 0x", "Current thread", 'File "')


def launch(cmd: list[str], env: dict, timeout: float = 900, cwd: Path = REPO):
    """Run a multi-process ``accelerate launch`` with Python's fault handler on in every process, so a process
    that dies by a signal (SIGABRT, SIGSEGV) prints the Python stack of each thread before it goes."""
    import subprocess

    return subprocess.run(cmd, cwd=cwd, env={**env, "PYTHONFAULTHANDLER": "1"}, capture_output=True, text=True,
                          timeout=timeout)


def launch_failure(proc) -> str:
    """Why a launch failed: the lines that say it (fatal errors, C++ aborts, stacks), then the head and the tail of
    stderr. The tail alone is torchrun's and Accelerate's summary, which names the signal but not the cause."""
    err = proc.stderr or ""
    why = [ln for ln in err.splitlines() if any(k in ln for k in _WHY)]
    return (f"exit {proc.returncode}\n--- lines that say why ---\n" + "\n".join(why[:120])
            + f"\n--- stderr head ---\n{err[:4000]}\n--- stderr tail ---\n{err[-2000:]}")


def free_port() -> int:
    """A TCP port free right now, for ``accelerate launch --main_process_port``: two multi-process launches
    running at once in different pytest-xdist workers would otherwise both rendezvous on 29500."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
