"""Compare generators on the scorecard across several generated sets each: realism against copies.

Launch::

    python scripts/scorecard_frontier.py \\
        --sets "LM v2 (shipped)=runs/eval/shipped_s*,v2b pretrain=runs/eval/pre_s*" \\
        --out docs/results/frontier.json --figure docs/figures/lm_frontier.png

One ``eval/score.py`` run scores one generated set: 100 samples of one generation seed. The headline
discriminator of two such sets of the *same* model differs by 0.03-0.05 (docs/scorecard.md, "How much one
draw moves"), as much as two models often do, so a model is judged here on several sets (one per generation
seed, ``lm/generate.py --seed k``), each scored by ``eval/score.py``. ``--sets`` is a comma list of
``label=pattern`` entries (labels without commas): a glob of ``eval/score.py`` output folders (their
``metrics.json``), one per seed.

Per label it reports, over its folders, the mean and sd of every headline metric (the discriminator as the
mean of each folder's 5 draws, ``discriminator_draws``), how many folders read each headline "as real", the
near-copy records (``near_copies``, where scored), the heart-rate W1, and how many folders read "as real"
overall (the verdict). ``--real_reference true`` adds the yardstick for that count: each leave-patients-out
draw of *real* held-out windows judged against the band of the other draws
(``ecg2llm.eval.scorecard.headline.leave_one_out_pass``,
the scorer of ``eval/score.py``'s defaults, ~3 min), so "k of n sets as real" can be read against what unseen
real patients reach (rate^n for all n). The figure puts each folder at
(memorization, discriminator) with the real bands shaded: a generator can move towards real on the
discriminator by reproducing its training patients, and this is the plane where that trade shows.
"""
from __future__ import annotations

import glob
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError

ROW = "synthetic"


@dataclass
class FrontierConfig:
    """Fields of ``scripts/scorecard_frontier.py``."""

    sets: list[str] = field(default_factory=list)  # "label=glob of eval/score.py folders", one entry per model
    row: str = ROW                                  # the row of each metrics.json to read; a glob ("*") reads
    # every scored row with a headline: one eval/score.py run that scored many sets (--extra_rows), a set per row
    out: str | None = None                          # JSON: per label, per folder and summary
    figure: str | None = None                       # PNG: discriminator vs memorization, real bands shaded
    real_reference: bool = False                    # also: how often a held-out real set reads "as real" (slow)
    data_dir: str | None = None                     # data root for --real_reference (holds mitdb/)

    def __post_init__(self):
        bad = [s for s in self.sets if "=" not in s or not s.split("=", 1)[0].strip()]
        if bad:
            raise ConfigError(f"--sets entries must be 'label=glob' (e.g. \"LM v2=runs/eval/shipped_s*\"); got {bad}")


def _metrics(path: Path) -> dict:
    f = path / "metrics.json"
    try:
        return json.loads(f.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} has no metrics.json: is it an eval/score.py output folder?") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{f} is not valid JSON ({e}); rerun eval/score.py for it") from None


def read_rows(path: Path, row: str) -> list[dict]:
    """:func:`read_folder` of each row of ``path``'s metrics.json that ``row`` names: one name, or a glob
    (``fnmatch``) of the rows with a headline, in their order in the file."""
    import fnmatch

    if not any(c in row for c in "*?["):
        return [read_folder(path, row)]
    rows = [k for k, r in _metrics(path).get("rows", {}).items() if fnmatch.fnmatchcase(k, row) and r.get("headline")]
    if not rows:
        raise ConfigError(f"{path}/metrics.json has no scored row matching {row!r}")
    return [read_folder(path, k) for k in rows]


def read_folder(path: Path, row: str) -> dict:
    """The headline values and verdicts, discriminator draws, HR W1 and near copies of one scored folder."""
    m = _metrics(path)
    r = m.get("rows", {}).get(row)
    if r is None or not r.get("headline"):
        raise ConfigError(f"{path / 'metrics.json'} has no scored row {row!r} with a headline "
                          f"(rows: {sorted(m.get('rows', {}))})")
    draws = r.get("discriminator_draws") or {}
    nc = r.get("near_copies")
    return {
        "folder": str(path) if row == ROW else f"{path}:{row}",
        "headline": {k: h["value"] for k, h in r["headline"].items()},
        "verdicts": {k: h["verdict"] for k, h in r["headline"].items()},
        "bands": {k: h["real_band"] for k, h in r["headline"].items()},
        "discriminator_mean": draws.get("mean", r["headline"]["discriminator"]["value"]),
        "verdict": r["verdict"],
        "hr_w1_bpm": r.get("hr_w1_bpm"),
        "near_copy_records": nc["by_record"] if nc else None,
    }


def summarize(folders: list[dict]) -> dict:
    """Mean and sd over folders of each headline value, ``discriminator_mean`` and HR W1; as-real counts."""
    import numpy as np

    keys = list(folders[0]["headline"])
    out = {"n_sets": len(folders), "headline": {}, "as_real": {}, "worse": {}}
    for k in keys:
        v = np.array([f["headline"].get(k) for f in folders], dtype=np.float64)
        out["headline"][k] = {"mean": float(np.nanmean(v)), "sd": float(np.nanstd(v))}
        out["as_real"][k] = sum(f["verdicts"].get(k) == "as_real" for f in folders)
        out["worse"][k] = sum(f["verdicts"].get(k) == "worse" for f in folders)
    for k in ("discriminator_mean", "hr_w1_bpm"):
        v = np.array([f[k] if f[k] is not None else np.nan for f in folders], dtype=np.float64)
        out[k] = {"mean": float(np.nanmean(v)), "sd": float(np.nanstd(v))}
    recs: dict[str, int] = {}
    for f in folders:
        for rec, n in (f["near_copy_records"] or {}).items():
            recs[rec] = recs.get(rec, 0) + n
    out["near_copy_records"] = dict(sorted(recs.items(), key=lambda kv: (-kv[1], kv[0])))
    out["as_real_overall"] = sum(f["verdict"] != "worse" for f in folders)
    return out


def real_reference(data_dir: str | None, n: int = 300) -> dict:
    """Leave-one-draw-out "as real on every headline" rate of real held-out sets of ``n`` windows, with the
    scorer ``eval/score.py`` builds by default (same reference, band pool and draws)."""
    from ecg2llm.eval.score import ScoreConfig, scorer_settings
    from ecg2llm.eval.scorecard.headline import leave_one_out_pass
    from ecg2llm.eval.scorecard.scorer import Scorer

    cfg = parse_config(ScoreConfig, ["--out", "unused", *(["--data_dir", data_dir] if data_dir else [])])
    res = leave_one_out_pass(Scorer(scorer_settings(cfg)).calibration().draw_values(n))
    return {**res, "n_windows": n}


def figure(groups: dict[str, list[dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ecg2llm.core.io import atomic_path

    first = next(iter(groups.values()))[0]["bands"]
    (d0, d1), (m0, m1) = first["discriminator"], first["memorization"]
    fig, ax = plt.subplots(figsize=(9.2, 4.4))
    ax.axhspan(d0, d1, color="tab:green", alpha=0.10, lw=0)
    ax.axvspan(m0, m1, color="tab:green", alpha=0.10, lw=0)
    ax.add_patch(plt.Rectangle((m0, d0), m1 - m0, d1 - d0, color="tab:green", alpha=0.18, lw=0,
                               label="real band (both)"))
    for i, (label, fs) in enumerate(groups.items()):
        c = f"C{i % 10}"  # past ten models, the colours repeat with another marker
        mk = "os^Dv"[(i // 10) % 5]
        x = np.array([f["headline"]["memorization"] for f in fs])
        y = np.array([f["discriminator_mean"] for f in fs])
        ax.scatter(x, y, s=18, color=c, alpha=0.55, marker=mk)
        ax.errorbar(x.mean(), y.mean(), xerr=x.std(), yerr=y.std(), fmt=mk, ms=8, color=c, capsize=3,
                    label=f"{label} ({len(fs)} sets)")
    ys = [f["discriminator_mean"] for fs in groups.values() for f in fs]
    xs = [f["headline"]["memorization"] for fs in groups.values() for f in fs]
    ax.set(xlabel="memorization (near copies of training windows; band: unseen real)",
           ylabel="discriminator accuracy (mean of 5 draws)", title="Realism against copies (100 × 30 s per set)",
           xlim=(0, max(max(xs), m1) * 1.15), ylim=(min(min(ys) - 0.03, d1 - 0.1), max(ys) + 0.03))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


@run_main
def main(argv=None):
    """Parse flags, read every folder, print the table, write JSON / PNG; returns 0."""
    from ecg2llm.core.io import write_json

    a = parse_config(FrontierConfig, argv, description=__doc__)
    if not a.sets:
        raise ConfigError('give at least one --sets "label=glob" (eval/score.py output folders of one model)')
    groups: dict[str, list[dict]] = {}
    for entry in a.sets:
        label, pattern = (s.strip() for s in entry.split("=", 1))
        paths = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_dir())
        if not paths:
            raise ConfigError(f"--sets {label!r}: no folder matches {pattern!r}")
        groups[label] = [f for p in paths for f in read_rows(p, a.row)]
    summary = {label: summarize(fs) for label, fs in groups.items()}
    keys = list(next(iter(summary.values()))["headline"])
    print(f"{'model':>28} {'sets':>4} {'disc (5-draw)':>14} " + " ".join(f"{k[:15]:>15}" for k in keys)
          + f" {'HR W1':>10}  near-copy records")
    for label, s in summary.items():
        n = s["n_sets"]
        cells = [f"{s['headline'][k]['mean']:.3f}±{s['headline'][k]['sd']:.3f} {s['as_real'][k]}/{n}" for k in keys]
        recs = ", ".join(f"{r}:{c}" for r, c in list(s["near_copy_records"].items())[:4]) or "-"
        print(f"{label[:28]:>28} {n:4d} {s['discriminator_mean']['mean']:.3f}±{s['discriminator_mean']['sd']:.3f}"
              f"   " + " ".join(f"{c:>15}" for c in cells)
              + f" {s['hr_w1_bpm']['mean']:5.1f}±{s['hr_w1_bpm']['sd']:.1f}  {recs}")
    print("(each headline: mean ± sd over sets, then how many sets read it as real)")
    print("sets as real overall: " + ", ".join(f"{label} {s['as_real_overall']}/{s['n_sets']}"
                                               for label, s in summary.items()))
    ref = None
    if a.real_reference:
        ref = real_reference(a.data_dir)
        print(f"real held-out sets ({ref['n_windows']} windows, leave one draw out): as real on every headline in "
              f"{ref['passed']} of {ref['draws']} draws ({ref['rate']:.2f}); all of 5 sets: {ref['rate'] ** 5:.2f}")
    if a.figure:
        figure(groups, a.figure)
        print(f"wrote {a.figure}")
    if a.out:
        import time

        from ecg2llm.core.io import git_sha

        cmd = " ".join(["python scripts/scorecard_frontier.py", *(argv if argv is not None else sys.argv[1:])])
        date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        write_json(a.out, {"command": cmd, "git_sha": git_sha(), "date": date,
                           "config": {"sets": a.sets, "row": a.row}, "summary": summary, "real_reference": ref,
                           "sets": {label: [{k: v for k, v in f.items() if k != "bands"} for f in fs]
                                    for label, fs in groups.items()}})
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
