"""The fixed band pool and the scored LM's training data: which real patients may calibrate a verdict.

The real bands of :mod:`ecg2llm.eval.scorecard.headline` are drawn from patients the scored generator never saw. One
fixed pool
keeps models comparable: :data:`BAND_POOL` = DS2 (22 patients) plus the validation records 101, 112, 119 —
records **no shipped LM trains on** (``lm/pretrained/*/training_data.json``: ``v1`` holds out 208 as well,
the v2 LMs train on 208, so 208 is not in the pool).

At score time the pool is checked against the scored LM's ``training_data.json`` (written by ``lm/train.py``
into every model folder, :mod:`ecg2llm.tokenizer.training_data`): a pool record the LM saw is excluded from the bands
and
reported (``metrics.json`` ``calibration.pool``, and the report), never silently kept. A folder from another
generator has no such file: it is scored against the full pool, with a note saying so.

:func:`training_windows_spec` lists what the memorization search must cover: every MIT-BIH record and lead,
and every CinC 2017 recording (by the file's rule), the LM saw.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ecg2llm.tokenizer.splits import DS1, DS2

#: Records no shipped LM trains on: DS2 and the validation records every shipped LM holds out.
POOL_VALID: tuple[str, ...] = ("101", "112", "119")
BAND_POOL: tuple[str, ...] = tuple(DS2) + POOL_VALID
#: What the scorer assumes an LM without ``training_data.json`` trained on, for the memorization search only
#: (the bands keep the full pool): DS1 minus the pool's validation records, MLII, no CinC 2017.
FALLBACK_TRAINING = {
    "format": 1,
    "mitdb": {"records": [r for r in DS1 if r not in POOL_VALID], "leads": ["MLII"], "augment_views": 0},
    "validation_records": list(POOL_VALID),
    "cinc2017": {"used": False, "rule": None, "max_records": 0, "labels": [], "min_r_mv": 0.0, "excluded": []},
    "stages": [],
    "written_by": "eval/scorecard/pool.py fallback (no training_data.json)",
}


@dataclass
class PoolCheck:
    """The band pool used for one scored LM, and why it differs from :data:`BAND_POOL` (if it does)."""

    records: tuple[str, ...]
    excluded: list[str] = field(default_factory=list)  # pool records the scored LM trained on
    training_data: dict | None = None                  # the LM's training_data.json (None: none found)
    source: str | None = None                          # where it was read from
    note: str = ""

    def describe(self) -> dict:
        return {"records": list(self.records), "fixed_pool": list(BAND_POOL), "excluded": self.excluded,
                "training_data_source": self.source, "note": self.note}


def find_training_data(path) -> tuple[dict | None, str | None]:
    """``training_data.json`` for ``path``: a model folder, the JSON file itself, or a generated folder whose
    ``manifest.json`` names the model it was sampled from (``model`` / ``model_dir``). ``(None, None)`` if none."""
    from ecg2llm.tokenizer.training_data import FILENAME, read

    if path is None:
        return None, None
    p = Path(path)
    if not p.exists() and resolve_model(str(path)).is_dir():  # a shipped model's name ("default")
        p = resolve_model(str(path))
    if p.is_file() and p.name.endswith(".json") and p.name != "manifest.json":
        spec = read(p.parent) if p.name == FILENAME else json.loads(p.read_text())
        return spec, str(p)
    if p.is_dir():
        spec = read(p)
        if spec is not None:
            return spec, str(p / FILENAME)
        man = p / "manifest.json"
        if man.is_file():
            m = json.loads(man.read_text())
            for k in ("model_dir", "model_path", "model"):
                v = m.get(k) or (m.get("config") or {}).get(k)
                if isinstance(v, str):
                    spec, src = find_training_data(resolve_model(v))
                    if spec is not None:
                        return spec, src
    return None, None


def resolve_model(name: str) -> Path:
    """A model folder from a shipped name (``default``) or a path."""
    p = Path(name)
    if p.is_dir():
        return p
    # eval/scorecard/pool.py -> the package root (ecg2llm/, or the repo in an editable install), whose lm/ holds
    # the shipped folders (parents[1] was eval/ itself: "default" was never found, and the copy search fell back
    # to MLII of the MIT-BIH training records); shipped names go through lm/pretrained/aliases.json
    from ecg2llm.core.hub import shipped_name

    root = Path(__file__).resolve().parents[2] / "lm" / "pretrained"
    return root / shipped_name(name, root)


def check_pool(training_data: dict | None, source: str | None = None, pool=BAND_POOL) -> PoolCheck:
    """The pool minus every record the LM trained on (any lead), with a note of what was excluded and why."""
    pool = tuple(str(r) for r in pool)
    if training_data is None:
        return PoolCheck(pool, [], None, None,
                         "no training_data.json for the scored set (another generator, or an LM folder saved "
                         "before lm/train.py wrote one): bands use the full fixed pool, unchecked")
    seen = {str(r) for r in training_data.get("mitdb", {}).get("records", [])}
    excluded = [r for r in pool if r in seen]
    keep = tuple(r for r in pool if r not in seen)
    note = (f"pool records the scored LM trained on, excluded from the bands: {', '.join(excluded)}"
            if excluded else "every pool record is unseen by the scored LM")
    return PoolCheck(keep, excluded, training_data, source, note)


def cinc_recordings(spec: dict, data_dir=None) -> list[str]:
    """The CinC 2017 recording ids the LM trained on, by the file's rule (empty when it used none)."""
    c = spec.get("cinc2017") or {}
    if not c.get("used"):
        return []
    from ecg2llm.tokenizer.cinc2017 import cinc2017_labels as read_cinc2017_labels

    names = sorted(read_cinc2017_labels(data_dir))[: int(c.get("max_records", 0)) or None]
    labels = set(c.get("labels") or [])
    if labels:
        lab = read_cinc2017_labels(data_dir)
        names = [n for n in names if lab[n] in labels]
    excluded = set(c.get("excluded") or [])
    return [n for n in names if n not in excluded]


def spec_key(spec: dict) -> str:
    """A short hash of the parts of a training-data spec that decide which recordings it covers."""
    c = spec.get("cinc2017") or {}
    part = {"mitdb": {k: spec.get("mitdb", {}).get(k) for k in ("records", "leads")},
            "cinc": {k: c.get(k) for k in ("used", "max_records", "labels", "excluded")}}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]
