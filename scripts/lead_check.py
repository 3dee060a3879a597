"""How much a synthetic MLII set looks like MLII: QRS polarity and R amplitude against real MIT-BIH windows.

Launch::

    python scripts/lead_check.py --synthetic runs/gen/plain,runs/gen/lead125 --labels "LM alone,lead guidance 1.25" \\
        --data_dir ../shared/data --out runs/lead_check/check.json --figure runs/lead_check/check.png

An LM trained on MLII and MIT-BIH's second leads (V1, V2, V4, V5) can draw second-lead complexes under
``lead:MLII`` (``docs/notes/lm-v2-notebook.md``, "Lead-contrast guidance"). Per 10-s window (synthetic folders through
:func:`ecg2llm.eval.data.load_synthetic`, real ones from ``records`` of the ``lead``):

* ``negative_dominant``: whether the window's 1st percentile lies further below its median than the 99th
  percentile lies above it (a QS / rS complex dominates: V1-like; MLII is mostly upright);
* ``polarity``: ``(p99 - median - |p1 - median|) / (p99 - p1)`` in [-1, 1] (the figure's left panel);
* ``r_amp_mv`` and ``beat_consistency``: :func:`ecg2llm.eval.scorecard.clinical.clinical_features` (median-beat R
amplitude,
  median correlation of each beat with the median beat).

Prints one row per set (share negative-dominant, R amplitude and beat consistency quantiles 10/50/90 %) and
writes them as JSON; ``--figure`` plots the polarity histogram and the R-amplitude distribution of each set.
Real windows: ``per_record`` random 10-s windows of each record (seeded), DS2 by default.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError


@dataclass
class LeadCheckConfig:
    """Fields of ``scripts/lead_check.py``."""

    synthetic: list[str] = field(default_factory=list)  # synthetic folders (lm/generate.py output), comma list
    labels: list[str] = field(default_factory=list)     # one label per folder (default: the folder names)
    data_dir: str | None = None         # data root holding mitdb/
    records: list[str] = field(default_factory=list)    # real MIT-BIH records (empty: DS2)
    lead: str = "MLII"                  # real lead to compare with
    per_record: int = 14                # random 10-s windows per real record
    seed: int = 0
    out: str | None = None              # JSON with every row
    figure: str | None = None           # PNG: polarity histogram and R-amplitude distribution per set

    def __post_init__(self):
        if self.labels and len(self.labels) != len(self.synthetic):
            raise ConfigError(f"--labels has {len(self.labels)} names for {len(self.synthetic)} --synthetic folders")
        if self.per_record < 1:
            raise ConfigError(f"per_record must be >= 1, got {self.per_record}")


def polarity(x):
    """``(p99 - med - |p1 - med|) / (p99 - p1)`` per row of ``x`` ``(N, T)``: +1 upright, -1 inverted."""
    import numpy as np

    p1, med, p99 = np.percentile(x, [1, 50, 99], axis=1)
    return ((p99 - med) - (med - p1)) / np.maximum(p99 - p1, 1e-9)


def describe(x, fs: float) -> dict:
    """The row of one set of windows ``x`` ``(N, T)`` in mV."""
    import numpy as np

    from ecg2llm.eval.scorecard.clinical import clinical_features

    f = clinical_features(x, fs)
    q = [0.1, 0.5, 0.9]
    return {
        "windows": int(len(x)),
        "negative_dominant": float(np.mean(polarity(x) < 0)),
        "r_amp_mv_q10_50_90": [float(v) for v in np.nanquantile(f["r_amp_mv"], q)],
        "beat_consistency_q10_50_90": [float(v) for v in np.nanquantile(f["beat_consistency"], q)],
        "_polarity": polarity(x), "_r_amp": f["r_amp_mv"],
    }


def real_set(a: LeadCheckConfig):
    """``per_record`` seeded random 10-s windows of each real record (360 Hz, mV)."""
    import numpy as np

    from ecg2llm.tokenizer.data import read_record, resolve_data_dir
    from ecg2llm.tokenizer.splits import DS2

    rng = np.random.default_rng(a.seed)
    root = resolve_data_dir(a.data_dir)
    ws = []
    for r in a.records or DS2:
        rec = read_record(str(r), root, lead=a.lead, fs=360.0, annotations=False)
        for s in rng.integers(0, len(rec.signal) - 3600, a.per_record):
            ws.append(rec.signal[s:s + 3600])
    return np.stack(ws).astype(np.float64)


@run_main
def main(argv=None):
    """Parse flags, measure every set, print the table, write JSON / PNG; returns 0."""
    import numpy as np

    from ecg2llm.core.io import atomic_path, write_json
    from ecg2llm.eval.data import load_synthetic

    a = parse_config(LeadCheckConfig, argv, description=__doc__)
    if not a.synthetic:
        raise ConfigError("give at least one --synthetic folder (lm/generate.py output)")
    synth = {(a.labels[i] if a.labels else Path(d).name): load_synthetic(d).x.astype(np.float64)
             for i, d in enumerate(a.synthetic)}  # the folders first: a bad one fails before the real reads
    sets = {f"real {a.lead} ({'DS2' if not a.records else ','.join(a.records)})": real_set(a), **synth}
    rows = {k: describe(x, 360.0) for k, x in sets.items()}
    print(f"{'set':>32} {'windows':>7} {'neg.-dom.':>9}  {'R amp mV q10/50/90':>20}  {'beat consistency':>20}")
    for k, r in rows.items():
        print(f"{k[:32]:>32} {r['windows']:7d} {r['negative_dominant']:9.3f}  "
              f"{'/'.join(f'{v:.2f}' for v in r['r_amp_mv_q10_50_90']):>20}  "
              f"{'/'.join(f'{v:.3f}' for v in r['beat_consistency_q10_50_90']):>20}")
    if a.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
        bins = np.linspace(-1, 1, 41)
        for k, r in rows.items():
            ax[0].hist(r["_polarity"], bins=bins, histtype="step", density=True, lw=1.5,
                       label=f"{k} ({100 * r['negative_dominant']:.1f} % < 0)")
            v = np.sort(r["_r_amp"][np.isfinite(r["_r_amp"])])
            ax[1].plot(v, np.arange(1, len(v) + 1) / len(v), lw=1.5, label=k)
        ax[0].axvline(0, color="grey", lw=0.8)
        ax[0].set(xlabel="polarity (p99 - median - |p1 - median|) / (p99 - p1)", ylabel="density",
                  title="QRS polarity of 10-s windows")
        ax[1].set(xlabel="median-beat R amplitude (mV)", ylabel="share of windows", xlim=(0, 3),
                  title="R amplitude")
        ax[0].legend(fontsize=7, loc="upper left")
        ax[1].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        Path(a.figure).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(Path(a.figure)) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)
        print(f"wrote {a.figure}")
    if a.out:
        write_json(a.out, {"config": {k: getattr(a, k) for k in ("synthetic", "labels", "records", "lead",
                                                                  "per_record", "seed")},
                           "rows": {k: {kk: vv for kk, vv in r.items() if not kk.startswith("_")}
                                    for k, r in rows.items()}})
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
