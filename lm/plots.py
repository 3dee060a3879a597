"""Figures: generated ECGs beside real ones, and single-record plots (millivolts against seconds)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _mpl():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _ecg_axes(ax, x: np.ndarray, fs: float, title: str | None = None, mark_s: float | None = None):
    t = np.arange(len(x)) / fs
    ax.plot(t, x, lw=0.7, color="k")
    if mark_s is not None:
        ax.axvline(mark_s, color="tab:red", lw=0.8, ls="--")
    ax.set_xlim(0, max(t[-1], 1e-3) if len(t) else 1)
    ax.grid(True, which="major", color="tab:red", alpha=0.2, lw=0.5)
    ax.set_ylabel("mV")
    if title:
        ax.set_title(title, fontsize=9)


def comparison_figure(generated: Sequence[np.ndarray], real: Sequence[np.ndarray], fs: float,
                      title: str = ""):
    """Rows of (real | generated) ECGs in mV; returns a matplotlib Figure (caller closes it).

    Parameters
    ----------
    generated, real : sequences of 1-D float arrays in mV at ``fs``
        ``real`` may be empty (then only generated ECGs are drawn).
    """
    plt = _mpl()
    rows = max(len(generated), len(real), 1)
    cols = 2 if len(real) else 1
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 1.8 * rows), squeeze=False, sharey=True)
    for i in range(rows):
        if cols == 2:
            if i < len(real):
                _ecg_axes(axes[i, 0], real[i], fs, "real (tokenized, decoded)" if i == 0 else None)
            else:
                axes[i, 0].axis("off")
        if i < len(generated):
            _ecg_axes(axes[i, cols - 1], generated[i], fs, "generated" if i == 0 else None)
        else:
            axes[i, cols - 1].axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("s")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_record_png(path, x: np.ndarray, fs: float, title: str = "", prompt_seconds: float | None = None):
    """One ECG in mV to a PNG (a dashed line marks where a prompt ends and generation starts)."""
    plt = _mpl()
    seconds = len(x) / fs
    fig, ax = plt.subplots(figsize=(min(max(6.0, 1.2 * seconds), 24.0), 2.2))
    _ecg_axes(ax, x, fs, title, mark_s=prompt_seconds)
    ax.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
