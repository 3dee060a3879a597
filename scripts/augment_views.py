"""What the LM's training augmentations do to a record: its two leads, and views rotated in their plane.

Launch::

    python scripts/augment_views.py --record 106 --angles=-30,-15,15,30 --data_dir ../shared/data \\
        --out docs/figures/lead_rotation.png

Draws ``--seconds`` of the record's first two leads (MLII and V1 in most MIT-BIH records), then the first
lead of each view :func:`ecg2llm.lm.corpora.rotate_leads` makes at the given angles -- the lead rotation that
``augment_mix_deg`` applies to augmented views when a store is built (``lm/corpora.py``). Every beat keeps
its time; its shape moves as a different electrical axis or electrode position would move it. Gain, offset
and tempo (the other augmentations) are left out so the rotation is seen alone.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError


@dataclass
class AugmentViewsConfig:
    """Fields of ``scripts/augment_views.py``."""

    record: str = "106"                 # MIT-BIH record with two leads
    angles: list[float] = field(default_factory=lambda: [-30.0, -15.0, 15.0, 30.0])  # rotations (degrees)
    start_s: float = 60.0               # where the strip starts in the record
    seconds: float = 4.0                # strip length
    data_dir: str | None = None         # data root holding mitdb/
    out: str = "runs/lead_rotation.png"  # PNG (written atomically)

    def __post_init__(self):
        if self.seconds <= 0 or self.start_s < 0:
            raise ConfigError("--seconds must be > 0 and --start_s >= 0")
        if not self.angles or any(abs(a) > 90 for a in self.angles):
            raise ConfigError(f"--angles needs one or more angles within [-90, 90] degrees, got {self.angles}")


@run_main
def main(argv=None):
    """Parse flags, draw the figure, print where it went; returns 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ecg2llm.core.io import atomic_path
    from ecg2llm.lm.corpora import rotate_leads
    from ecg2llm.tokenizer.data import read_header, read_record, resolve_data_dir

    a = parse_config(AugmentViewsConfig, argv, description=__doc__)
    root = resolve_data_dir(a.data_dir)
    names = list(read_header(a.record, root / "mitdb").sig_name or [])
    if len(names) < 2:
        raise ConfigError(f"record {a.record} has leads {names}: the rotation needs two; pick another record")
    sig = [read_record(a.record, root, lead=n, annotations=False) for n in names[:2]]
    fs = sig[0].fs
    i0, n = int(a.start_s * fs), int(a.seconds * fs)
    x, y = (s.signal[i0:i0 + n].astype(np.float64) for s in sig)
    if len(x) < n:
        raise ConfigError(f"record {a.record} is shorter than --start_s + --seconds ({a.start_s + a.seconds} s)")
    t = np.arange(n) / fs
    rows = [(f"{names[0]} (recorded)", x), (f"{names[1]} (recorded)", y)]
    rows += [(f"{names[0]} view, rotated {d:+g} deg", rotate_leads(x, y, d)[0]) for d in a.angles]
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 1.3 * len(rows)), sharex=True)
    for ax, (label, v) in zip(axes, rows):
        ax.plot(t, v, lw=0.8, color="k" if "recorded" in label else "tab:blue")
        ax.set_ylabel("mV")
        ax.set_title(label, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(f"s (record {a.record}, from {a.start_s:g} s)")
    fig.tight_layout()
    with atomic_path(a.out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
