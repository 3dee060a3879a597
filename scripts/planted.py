"""Score every planted-defect set (eval/scorecard/planted.py) and write which headline metric flags which defect.

Launch::

    python scripts/planted.py --out runs/planted --data_dir ../shared/data
    python scripts/planted.py --out runs/planted --n 300 --n_real 500 --records 101,112,119,208
    python scripts/planted.py --config my_planted.yaml     # the same fields as YAML keys

Every field of :class:`ecg2llm.eval.scorecard.scorer.ScoreSettings` (the scorer's reference: ``--n_real``,
``--cache_dir``,
``--embedding``, ...) is a flag too: :class:`PlantedConfig` extends it rather than copying its fields.

Writes ``planted.json`` (every row: headline values, bands, verdicts, plus rFED / disc_score for
comparison) and ``planted.md`` (the defect x metric matrix). Each set goes through
:meth:`ecg2llm.eval.scorecard.scorer.Scorer.score_windows`, exactly what ``eval/score.py`` runs on a synthetic folder.
"""

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import config_to_dict, parse_config
from ecg2llm.core.io import (
    ensure_writable_dir,
    git_sha,
    write_json,
    write_run_info,
    write_text,
)
from ecg2llm.eval.scorecard.scorer import ScoreSettings

MARK = {"as_real": "as real", "worse": "**WORSE**", "better": "better"}


def matrix_markdown(rows: dict[str, dict], defects: dict[str, str]) -> str:
    """The defect x headline-metric table (value, and the verdict against the real band)."""
    from ecg2llm.eval.scorecard.headline import HEADLINE

    keys = list(HEADLINE)
    head = ["set", *keys, "verdict", "rFED (old)", "disc (old)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        h = r["headline"]
        cells = [f"{h[k]['value']:.3g} {MARK[h[k]['verdict']]}" for k in keys]
        lines.append(
            f"| {name}: {defects.get(name, '')} | " + " | ".join(cells)
            + f" | {MARK[r['verdict']]} | {r['rfed']:.2f} | {r['disc_score']:.3f} |"
        )
    bands = rows[next(iter(rows))]["headline"]
    lines.append(
        "| real band (n = {}) | ".format(rows[next(iter(rows))]["n_windows"])
        + " | ".join(f"[{bands[k]['real_band'][0]:.3g}, {bands[k]['real_band'][1]:.3g}]" for k in keys)
        + " | | | |"
    )
    return "\n".join(lines)


@dataclass
class PlantedConfig(ScoreSettings):
    """Fields of ``scripts/planted.py``: the scorer's :class:`ecg2llm.eval.scorecard.scorer.ScoreSettings` (reused, with
    headline verdicts on) plus the planted sets. Every field is a flag and a ``--config`` YAML key."""

    out: str = "runs/planted"       # folder for planted.json and planted.md
    n: int = 300                    # windows per planted set
    records: list[str] = dataclasses.field(default_factory=list)  # held-out records cut (default: 101, 112, 119)
    defects: list[str] = dataclasses.field(default_factory=list)  # defects to plant (default: all)
    headline: bool = True           # headline verdicts against real bands (what the matrix reads)
    training_data: str | None = "default"  # whose training data the copy search and pool check use (a shipped
    #                                        LM name, a model folder or its training_data.json)


@run_main
def main(argv=None):
    """Build the planted sets, score them, write ``planted.json`` and ``planted.md``. Returns 0."""
    a = parse_config(PlantedConfig, argv, description=__doc__)

    from ecg2llm.eval.scorecard.planted import DEFECTS, INVARIANT, PlantedDefects
    from ecg2llm.eval.scorecard.pool import POOL_VALID, cinc_recordings
    from ecg2llm.eval.scorecard.scorer import Scorer

    t0 = time.time()
    records = list(a.records) or list(POOL_VALID)  # unseen by every shipped LM (208 is not: eval/scorecard/pool.py)
    defects = list(a.defects) or list(DEFECTS)
    unknown = [d for d in defects if d not in DEFECTS]
    if unknown:
        from ecg2llm.core.errors import ConfigError

        raise ConfigError(f"--defects: unknown defect(s) {unknown}; choose from {', '.join(DEFECTS)}")
    out = ensure_writable_dir(a.out)
    write_run_info(out, config_to_dict(a))  # the resolved config (defaults < YAML < flags)
    settings = {f.name: getattr(a, f.name) for f in dataclasses.fields(ScoreSettings)}
    scorer = Scorer(ScoreSettings(**settings))
    spec = scorer.calibration().settings.training_data  # the copies are of what the scored LM trained on
    cinc = cinc_recordings(spec, scorer.data_dir) if spec else None
    planted = PlantedDefects(records, n=a.n, data_dir=scorer.data_dir, seed=a.seed, cinc_records=cinc)
    rows = {}
    for d in defects:
        row = scorer.score_windows(d, planted.make(d))
        rows[d] = {k: row[k] for k in ("n_windows", "headline", "verdict", "clinical", "rfed", "disc_score",
                                       "disc_score_ds1", "memorization_ratio", "near_copy_rate")}
    from ecg2llm.eval.scorecard.headline import leave_one_out_pass

    # the yardstick of "clean as real": each real band draw judged against the others' band, every headline
    cal = scorer.calibration()
    real_ref = leave_one_out_pass(cal.draw_values_cached(a.n))
    real_ref["values"] = cal.draw_values_cached(a.n)  # every headline on every real draw, in draw order
    real_ref["held_out"] = [[str(r) for r in held] for held, _ in cal.draws]  # the patients each draw held out
    table = matrix_markdown(rows, DEFECTS)
    caught = {d: [k for k, h in r["headline"].items() if h["verdict"] == "worse"] for d, r in rows.items()}
    result = {
        "rows": rows,
        "caught_by": caught,
        "missed": [d for d, c in caught.items() if not c and d not in INVARIANT],
        "real_reference": real_ref,
        "records": records,
        "n": a.n,
        "calibration": scorer.calibration().describe(),
        "defects": {d: DEFECTS[d] for d in defects},
        "git_sha": git_sha(),
        "command": " ".join(["python scripts/planted.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(time.time() - t0, 1),
    }
    write_json(Path(out) / "planted.json", result)
    write_text(Path(out) / "planted.md", "# Planted defects vs headline metrics\n\n" + table + "\n")
    print(table)
    print(f"[planted] wrote {out}/planted.json and planted.md in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
