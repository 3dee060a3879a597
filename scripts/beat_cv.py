"""Choose the TSTR beat classifier on DS1 alone: patient-grouped cross-validation of a small grid.

Launch (from the repo root)::

    python scripts/beat_cv.py --out runs/beat_cv --data_dir ../shared/data

Cuts the labelled MLII beats of the training records (default DS1; DS2 is never read), computes the
inter-patient features (:mod:`ecg2llm.eval.tstr.beat_features`) and scores every configuration of
:data:`ecg2llm.eval.tstr.strong_classifier.CV_GRID` by GroupKFold cross-validation grouped by record
(:func:`ecg2llm.eval.tstr.strong_classifier.cross_validate`): each record's
beats are predicted by a model trained on the other folds' records. Writes ``cv.json`` (pooled out-of-fold
macro-F1, per-class Se/PPV/F1, per-fold macro-F1, confusion matrices) and ``cv.md`` (the table), and names
the configuration with the highest pooled macro-F1 among the rows ``--choose`` allows (default
``mean_reference``: N/S stages on mean references only,
:func:`ecg2llm.eval.tstr.strong_classifier.mean_reference_only`; the
best of all rows is named too): the defaults of :class:`ecg2llm.eval.tstr.strong_classifier.StrongConfig` were set to
it.
A stage shared by several rows (the V/F trees of every two-stage row) is fitted once per fold; ``--config``
with an ``only:`` list runs some rows (their names contain commas). The first 16 rows took ~9 min on one busy
CPU core; the 72 rows of the third SVEB pass 18 min in four runs (``docs/notes/tstr-notebook.md``).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import config_to_dict, parse_config
from ecg2llm.eval.tstr.strong_classifier import CV_GRID, BeatCVConfig


def markdown(cv: dict) -> str:
    """The CV table (pooled out-of-fold scores on the training records)."""
    from ecg2llm.eval.beats import CLASSES

    lines = [f"Patient-grouped {cv['n_splits']}-fold CV on {len(cv['records'])} training records "
             f"(folds: {'; '.join(' '.join(f) for f in cv['folds'])}); pooled out-of-fold predictions.", "",
             ("| config | macro-F1 | " + " | ".join(f"Se {c} | PPV {c} | F1 {c}" for c in CLASSES)
              + " | fold macro-F1 (min-max) |"), "|---|---|" + "---|---|---|" * len(CLASSES) + "---|"]
    for name, r in cv["results"].items():
        cells = [f"{r['macro_f1']:.3f}"]
        for c in CLASSES:
            cells += [f"{r['per_class'][c][k]:.2f}" for k in ("se", "ppv", "f1")]
        f = r["fold_macro_f1"]
        best = " (best of all rows)" if name == cv.get("best_any") else ""
        mark = " **(chosen)**" if name == cv["chosen"] else best
        lines.append(f"| {name}{mark} | " + " | ".join(cells) + f" | {min(f):.2f}-{max(f):.2f} |")
    return "\n".join(lines) + "\n"


@run_main
def main(argv=None):
    """Parse flags, cut the training beats, cross-validate the grid, write ``cv.json`` and ``cv.md``."""
    from dataclasses import replace

    from ecg2llm.core.errors import ConfigError
    from ecg2llm.core.io import atomic_path, ensure_writable_dir, write_json, write_run_info
    from ecg2llm.eval.beats import real_beats
    from ecg2llm.eval.tstr.strong_classifier import StrongConfig, cross_validate, mean_reference_only
    from ecg2llm.tokenizer.data import ensure_database
    from ecg2llm.tokenizer.splits import DS1, DS2

    cfg = parse_config(BeatCVConfig, argv, description=__doc__)
    records = list(cfg.records) or list(DS1)
    if set(records) & set(DS2):
        raise ConfigError(f"--records must not include DS2 records ({sorted(set(records) & set(DS2))}): "
                          "the classifier is chosen without the test patients")
    unknown = set(cfg.only) - set(CV_GRID)
    if cfg.choose not in ("mean_reference", "any"):
        raise ConfigError(f"--choose must be 'mean_reference' or 'any', got {cfg.choose!r}")
    if unknown:
        raise ConfigError(f"--only {sorted(unknown)}: not in the grid; choose from {list(CV_GRID)}")
    ensure_database(cfg.data_dir, records=records, download=cfg.download)
    out = ensure_writable_dir(cfg.out)
    write_run_info(out, config_to_dict(cfg))
    beats = real_beats(records, cfg.data_dir, source="training records")
    base = StrongConfig(max_iter=cfg.max_iter)
    grid = {k: replace(base, **v) for k, v in CV_GRID.items() if not cfg.only or k in cfg.only}
    cv = cross_validate(beats, grid, n_splits=cfg.n_splits)
    cv["records"] = records
    cv["beats"] = beats.counts()
    eligible = [k for k in cv["results"] if cfg.choose == "any" or mean_reference_only(CV_GRID[k])]
    if not eligible:
        raise ConfigError(f"--choose {cfg.choose}: none of the rows run can be chosen; add a mean-reference "
                          "row (FOURTH_PASS_NS) to --only, or pass --choose any")
    cv["choose"] = cfg.choose
    cv["eligible"] = eligible
    cv["best_any"] = max(cv["results"], key=lambda k: cv["results"][k]["macro_f1"])
    cv["chosen"] = max(eligible, key=lambda k: cv["results"][k]["macro_f1"])
    write_json(out / "cv.json", cv)
    with atomic_path(out / "cv.md") as tmp:
        Path(tmp).write_text(markdown(cv))
    print(f"chosen: {cv['chosen']} (pooled out-of-fold macro-F1 {cv['results'][cv['chosen']]['macro_f1']:.3f}); "
          f"table {out / 'cv.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
