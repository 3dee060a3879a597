"""``training_data.json``: what an LM folder was trained on, written by training into every saved model folder.

The scorecard reads it (:mod:`ecg2llm.eval.scorecard.pool`) to keep the patients the LM saw out of its real bands and
to search
copies in every training recording the LM saw. The file is small and explicit::

    {
      "format": 1,
      "mitdb": {"records": ["106", ...], "leads": ["MLII", "V1", ...], "augment_views": 2},
      "validation_records": ["101", "112", "119"],
      "cinc2017": {"used": true, "rule": "...", "max_records": 0, "labels": [], "min_r_mv": 0.0,
                   "excluded": []},
      "stages": ["runs/lm/v2b_conditional_pre", ...],
      "written_by": "lm/train.py"
    }

* ``mitdb.records``: every MIT-BIH record whose signal the LM trained on (any lead, any augmented view);
  ``mitdb.leads``: the lead names it trained on (a record contributes the ones it has).
* ``cinc2017``: ``used`` false when the CinC 2017 corpus was not in the mixture; else the rule that selects
  its recordings: the first ``max_records`` (0 = all) of the sorted REFERENCE.csv names, minus ``excluded``
  (recordings left out by ``cinc_labels`` / ``cinc_min_r_mv``, listed by id at training time).
* A fine-tune (``init_from``) inherits its parent's training data: the file is the union of every stage.
"""

from __future__ import annotations

import json
from pathlib import Path

FILENAME = "training_data.json"
FORMAT = 1
CINC_RULE = ("the first max_records (0 = all) recordings of the sorted CinC 2017 REFERENCE.csv names, "
             "minus the listed excluded ids")


def _mitdb_train_records(valid_records) -> list[str]:
    from ecg2llm.tokenizer.build_store import split_of
    from ecg2llm.tokenizer.splits import DS1

    return [r for r in DS1 if split_of(r, list(valid_records)) == "train"]


def _present(records, data_dir) -> list[str]:
    """The records a store built from ``data_dir`` can hold (a record missing there was never tokenized);
    all of them when the data folder cannot be found (the spec then lists what the config asks for)."""
    try:
        from ecg2llm.tokenizer.data import resolve_data_dir

        db = resolve_data_dir(data_dir) / "mitdb"
    except Exception:  # noqa: BLE001 - no data folder here: keep the config's list
        return list(records)
    if not db.is_dir():
        return list(records)
    return [r for r in records if (db / f"{r}.hea").is_file()]


def spec_of_config(cfg, cinc_excluded=(), stage: str | None = None, records=None) -> dict:
    """The training data of one run of ``cfg`` (an :class:`ecg2llm.lm.config.LMConfig` or anything with its fields).

    Parameters
    ----------
    cfg : LMConfig-like
        Reads ``records``, ``leads``, ``valid_records``, ``sources``, ``augment_views``, ``cinc_max_records``,
        ``cinc_labels``, ``cinc_min_r_mv``.
    cinc_excluded : iterable of str
        CinC recordings the run left out (:func:`ecg2llm.lm.corpora.cinc2017_excluded`).
    stage : str, optional
        Name of the run (its output folder), recorded under ``stages``.
    records : iterable of str, optional
        The MIT-BIH records of the store's training split, as training read them (``lm/trainer.py``); default:
        the inter-patient training records the config selects that the data folder holds.
    """
    valid = [str(r) for r in cfg.valid_records]
    recs = _mitdb_train_records(valid)
    if getattr(cfg, "records", None):
        recs = [r for r in recs if r in {str(x) for x in cfg.records}]
    recs = _present(recs, getattr(cfg, "data_dir", None)) if records is None else sorted({str(r) for r in records})
    sources = list(getattr(cfg, "sources", []) or [])
    use_mitdb = not sources or "mitdb" in sources
    use_cinc = "cinc2017" in sources
    return {
        "format": FORMAT,
        "mitdb": {"records": recs if use_mitdb else [], "leads": [str(x) for x in cfg.leads] if use_mitdb else [],
                  "augment_views": int(getattr(cfg, "augment_views", 0) or 0)},
        "validation_records": valid,
        "cinc2017": {"used": use_cinc, "rule": CINC_RULE if use_cinc else None,
                     "max_records": int(getattr(cfg, "cinc_max_records", 0) or 0),
                     "labels": list(getattr(cfg, "cinc_labels", []) or []),
                     "min_r_mv": float(getattr(cfg, "cinc_min_r_mv", 0.0) or 0.0),
                     "excluded": sorted(str(x) for x in cinc_excluded) if use_cinc else []},
        "stages": [stage] if stage else [],
        "written_by": "lm/train.py",
    }


def merge(parent: dict | None, child: dict) -> dict:
    """Union of two stages' training data (a fine-tune saw its parent's data too).

    MIT-BIH records and leads are unions; the validation records are the child's (what it early-stopped on)
    and, if they differ from the parent's, the parent's training records stay counted as seen. CinC 2017: used
    if either used it; a recording counts as seen if either stage kept it (excluded = the intersection, and
    ``max_records`` the larger, 0 meaning all).
    """
    if not parent:
        return child
    out = json.loads(json.dumps(child))
    pm, cm = parent.get("mitdb", {}), child.get("mitdb", {})
    out["mitdb"]["records"] = sorted(set(pm.get("records", [])) | set(cm.get("records", [])), key=str)
    out["mitdb"]["leads"] = sorted(set(pm.get("leads", [])) | set(cm.get("leads", [])))
    out["mitdb"]["augment_views"] = max(int(pm.get("augment_views", 0)), int(cm.get("augment_views", 0)))
    pc, cc = parent.get("cinc2017", {}), child.get("cinc2017", {})
    if pc.get("used") or cc.get("used"):
        both = [c for c in (pc, cc) if c.get("used")]
        mx = [int(c.get("max_records", 0)) for c in both]
        out["cinc2017"] = {
            "used": True, "rule": CINC_RULE, "max_records": 0 if 0 in mx else max(mx),
            "labels": sorted(set().union(*[set(c.get("labels", [])) for c in both])) if all(
                c.get("labels") for c in both) else [],
            "min_r_mv": min(float(c.get("min_r_mv", 0.0)) for c in both),
            "excluded": sorted(set.intersection(*[set(c.get("excluded", [])) for c in both])),
        }
    out["stages"] = [*parent.get("stages", []), *child.get("stages", [])]
    return out


def read(folder) -> dict | None:
    """``training_data.json`` of a model folder, or None when it has none (another generator's folder)."""
    path = Path(folder) / FILENAME
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        from ecg2llm.core.errors import ConfigError

        raise ConfigError(f"{path} is not valid JSON ({e}); rewrite it with scripts/training_data.py") from None
    if spec.get("format") != FORMAT or "mitdb" not in spec:
        from ecg2llm.core.errors import ConfigError

        raise ConfigError(f"{path}: unknown training-data format {spec.get('format')!r} (expected {FORMAT})")
    return spec


def write(folder, spec: dict) -> Path:
    """Write ``spec`` as ``<folder>/training_data.json`` (atomically)."""
    from ecg2llm.core.io import write_json

    path = Path(folder) / FILENAME
    write_json(path, spec)
    return path


def run_spec(cfg, cinc_excluded=(), stage: str | None = None, records=None) -> dict:
    """What a training run of ``cfg`` writes: its own data merged with its ``init_from`` parent's file (if any)."""
    parent = read(cfg.init_from) if getattr(cfg, "init_from", None) else None
    return merge(parent, spec_of_config(cfg, cinc_excluded, stage, records))
