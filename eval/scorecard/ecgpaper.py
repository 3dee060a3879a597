"""ECG-paper figures: strips at 25 mm/s and 10 mm/mV on the standard red grid, the way ECGs are read.

Grid: 1-mm small squares (0.04 s x 0.1 mV) and 5-mm large squares (0.2 s x 0.5 mV). The figure is drawn
at true scale (printed at 100 % a second is 25 mm and a millivolt 10 mm); the PNG is written at
``dpi`` dots per inch. Each signal is centred on its median so that baseline offsets do not push it off
the strip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

MM_PER_S, MM_PER_MV = 25.0, 10.0
MINOR = dict(color="#f4b6b6", lw=0.35)
MAJOR = dict(color="#e06060", lw=0.7)


def draw_strip(ax, x: np.ndarray, fs: float, title: str = "",
               mv_range: tuple[float, float] = (-1.5, 2.0)) -> None:
    """One strip on ``ax``: the red grid, then the signal (mV, median-centred) in black."""
    t_end = len(x) / fs
    lo, hi = mv_range
    for t in np.arange(0, t_end + 1e-9, 0.04):
        ax.axvline(t, **(MAJOR if round(t / 0.04) % 5 == 0 else MINOR), zorder=0)
    for v in np.arange(np.floor(lo * 10) / 10, hi + 1e-9, 0.1):
        ax.axhline(v, **(MAJOR if round(v / 0.1) % 5 == 0 else MINOR), zorder=0)
    y = np.clip(np.asarray(x, np.float64) - np.median(x), lo, hi)
    ax.plot(np.arange(len(x)) / fs, y, color="black", lw=0.8, zorder=2)
    ax.set_xlim(0, t_end)
    ax.set_ylim(lo, hi)
    ax.set_aspect(MM_PER_MV / MM_PER_S)  # one second is 2.5x as long as one millivolt
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title, fontsize=8, loc="left")


def fig_ecg_paper(left: Sequence[np.ndarray], right: Sequence[np.ndarray], fs: float, path: str | Path,
                  left_names: Sequence[str] = (), right_names: Sequence[str] = (),
                  left_label: str = "real", right_label: str = "synthetic", dpi: int = 100) -> Path:
    """Rows of strips, ``left`` (real) beside ``right`` (synthetic), at true ECG-paper scale; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecg2llm.core.io import atomic_path

    n = max(len(left), len(right))
    seconds = max(len(x) for x in [*left, *right]) / fs
    lo, hi = -1.5, 2.0
    w_in = 2 * seconds * MM_PER_S / 25.4 + 0.6
    h_in = n * ((hi - lo) * MM_PER_MV / 25.4 + 0.3)
    fig, axes = plt.subplots(n, 2, figsize=(w_in, h_in), squeeze=False)
    columns = ((left, left_names, left_label), (right, right_names, right_label))
    for col, (sigs, names, label) in enumerate(columns):
        for i in range(n):
            ax = axes[i, col]
            if i < len(sigs):
                nm = names[i] if i < len(names) else f"#{i}"
                draw_strip(ax, sigs[i], fs, f"{label}: {nm}", (lo, hi))
            else:
                ax.axis("off")
    fig.suptitle("25 mm/s, 10 mm/mV; small squares 0.04 s x 0.1 mV", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path
