"""ECG-paper strips of LM v3 under each condition, beside a real DS2 strip of that condition where DS2 has one.

Launch (from the repo root; the committed figure)::

    python scripts/lm_v3_strips.py --out docs/figures/lm_v3_conditions.png --guidance 2 --seed 0
    python scripts/lm_v3_strips.py --out docs/figures/lm_v3_label_guidance.png --guidance 3 --label_guidance 1 \
        --conditions beat:V,rhythm:B --seed 0      # the opt-in label-contrast guidance

One row per condition (default ``rhythm:N, rhythm:AFIB, rhythm:VT, rhythm:B, beat:V, beat:S``): left, a real
10-s MLII window of DS2 that matches the condition (:func:`ecg2llm.eval.conditional.condition_windows`: a
rhythm in force for the whole window, or at least one beat of that class; one window drawn with
``--real_seed``), right, sample 0 of ``--model`` under that condition (control tokens and classifier-free
guidance ``--guidance`` only, no sampler rule; row ``i`` seeded ``--seed + 100 i``, texture decode as the LM's
default). Both at 25
mm/s and 10 mm/mV on the red grid (:func:`ecg2llm.eval.scorecard.ecgpaper.draw_strip`); each labelled beat
that is not N carries its class letter above the trace (the cardiologists' label on the real strip, the label
the model drew on the synthetic one). Writes the PNG and, beside it, nothing else; prints what each row shows.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config

CONDITIONS = ["rhythm:N", "rhythm:AFIB", "rhythm:VT", "rhythm:B", "beat:V", "beat:S"]


@dataclass
class StripsConfig:
    """Fields of ``scripts/lm_v3_strips.py`` (every field is a flag)."""

    out: str = "docs/figures/lm_v3_conditions.png"
    model: str = "default"              # an LM v3 folder or shipped name
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))
    guidance: float = 2.0               # classifier-free guidance scale (lm_v3_adherence_g2.json used 2)
    label_guidance: float | None = None  # opt-in label-contrast guidance (GenerateConfig.label_guidance); none = off
    seed: int = 0                       # generation seed of row 0 (row i: seed + 100 i; sample 0 is shown)
    seconds: float = 10.0
    real_seed: int = 0                  # which matching DS2 window is drawn
    data_dir: str | None = None
    dpi: int = 80
    num_threads: int = 1


def _real_strip(cond: str, data_dir, seconds: float, seed: int):
    """A matching DS2 window ``(x, name, [(sample, class)])`` or None where DS2 has none."""
    import numpy as np

    from ecg2llm.eval.conditional import condition_windows
    from ecg2llm.tokenizer.data import read_record, resolve_data_dir
    from ecg2llm.tokenizer.ecg import AAMI_CLASSES
    from ecg2llm.tokenizer.splits import DS2

    w = condition_windows(DS2, cond, data_dir, n=1, seed=seed, window_s=seconds)
    if len(w.x) == 0:
        return None
    rec, start = str(w.records[0]), int(w.starts[0])
    ann = read_record(rec, str(resolve_data_dir(data_dir)), lead="MLII", fs=w.fs, annotations=True).annotations
    samples, symbols = ann.beats()
    keep = (samples >= start) & (samples < start + len(w.x[0]))
    marks = [(int(s) - start, AAMI_CLASSES.get(sym, "")) for s, sym in zip(np.asarray(samples)[keep],
                                                                         np.asarray(symbols)[keep])]
    return w.x[0], f"record {rec} at {start / w.fs:.0f} s", marks


def _marks(ax, marks, fs: float) -> None:
    """Class letters of the non-N labelled beats above the trace."""
    for s, c in marks:
        if c and c != "N":
            ax.text(s / fs, 1.75, c, color="#1f4fbf", fontsize=7, ha="center", va="center", zorder=3)


@run_main
def main(argv=None):
    """Generate one sample per condition, cut a real DS2 window per condition, draw the figure."""
    cfg = parse_config(StripsConfig, argv, description=__doc__)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from ecg2llm.core.io import atomic_path
    from ecg2llm.eval.scorecard.ecgpaper import MM_PER_MV, MM_PER_S, draw_strip
    from ecg2llm.lm.beat_generate import BeatLM
    from ecg2llm.lm.model import resolve_model_dir
    from ecg2llm.lm.request import GenerateConfig

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    blm = BeatLM.from_folder(resolve_model_dir(cfg.model))
    fs = float(blm.tok.fs)
    lo, hi = -1.5, 2.0
    n = len(cfg.conditions)
    w_in = 2 * cfg.seconds * MM_PER_S / 25.4 + 0.6
    h_in = n * ((hi - lo) * MM_PER_MV / 25.4 + 0.35)
    fig, axes = plt.subplots(n, 2, figsize=(w_in, h_in), squeeze=False)
    lg = f", label guidance {cfg.label_guidance:g}" if cfg.label_guidance else ""
    for i, cond in enumerate(cfg.conditions):
        real = _real_strip(cond, cfg.data_dir, cfg.seconds, cfg.real_seed)
        if real is None:
            axes[i, 0].axis("off")
            axes[i, 0].text(0.5, 0.5, f"{cond}: no real DS2 window of this condition", ha="center", va="center",
                            fontsize=9, transform=axes[i, 0].transAxes)
            print(f"{cond}: real -- none in DS2")
        else:
            x, name, marks = real
            draw_strip(axes[i, 0], x, fs, f"real DS2 {cond}: {name}", (lo, hi))
            _marks(axes[i, 0], marks, fs)
            print(f"{cond}: real {name}")
        seed = cfg.seed + 100 * i  # each row its own draw (with one seed for all, weak conditions look alike)
        req = GenerateConfig(model=cfg.model, num_samples=1, seconds=cfg.seconds, seed=seed,
                             condition=[cond], guidance=cfg.guidance, batch_size=1,
                             label_guidance=cfg.label_guidance)
        sig, ann, _, spent = blm.synthesize(req)
        a = ann[0]
        classes = [str(c) for c in a.beat_class]
        labels = ", ".join(f"{c} {classes.count(c)}" for c in sorted(set(classes)))
        draw_strip(axes[i, 1], sig[0], fs, f"LM v3 {cond}, guidance {cfg.guidance:g}{lg}, seed {seed}, sample 0 "
                                           f"(beat labels drawn: {labels})", (lo, hi))
        _marks(axes[i, 1], list(zip(a.beat_sample.tolist(), classes)), fs)
        print(f"{cond}: synthetic labels {labels} ({spent:.1f} s)")
    extra = f"{lg} (opt-in)" if lg else ""
    fig.suptitle(f"LM v3 ({cfg.model}) per condition, no sampler rule{extra}; 25 mm/s, 10 mm/mV; small squares "
                 f"0.04 s x 0.1 mV; blue letters: non-N beat labels", fontsize=9)
    fig.tight_layout()
    from pathlib import Path

    path = Path(cfg.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=cfg.dpi)
    plt.close(fig)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
