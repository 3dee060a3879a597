"""Why a real-data classifier disagrees with generated beat labels: timing and shape per class, real vs synthetic.

Launch (from the repo root; the committed result, after ``scripts/tstr.py`` wrote the LM v3 sets)::

    python scripts/tstr_beat_timing.py --sets beat:S=runs/tstr_syn_v3/beat_S,beat:V=runs/tstr_syn_v3/beat_V,\
beat:F=runs/tstr_syn_v3/beat_F,unconditional=runs/tstr_syn_v3/unconditional --out docs/results/tstr_v3_beat_timing.json

Beats are cut as the TSTR study cuts them (:mod:`ecg2llm.eval.beats`: real DS1 and DS2 from the reference
annotations, synthetic sets from their ``.atr``). Per LM v3 set, the share of drawn beats with the null label.
Per set and class: how many beats, their share of the set,
the median previous and next RR over the local mean RR (a premature beat: previous < 1, a compensatory pause:
next > 1), the share with previous RR < 0.85 of the local mean, and the share whose shape (the 0.7-s cut
window, median removed) correlates better with real DS1's mean beat of that class than with DS1's mean N beat
(for N: with N rather than V). Writes one JSON with command, git sha, date and load.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config


@dataclass
class TimingConfig:
    """Fields of ``scripts/tstr_beat_timing.py`` (every field is a flag)."""

    out: str = "docs/results/tstr_v3_beat_timing.json"
    sets: str = ""                      # name=folder,... of generated sets (WFDB records with .atr)
    data_dir: str | None = None
    premature: float = 0.85             # previous RR / local mean below this counts as premature


def _corr(x, t):
    import numpy as np

    xc = x - x.mean(1, keepdims=True)
    tc = t - t.mean()
    return (xc @ tc) / (np.linalg.norm(xc, axis=1) * np.linalg.norm(tc) + 1e-9)


def summarize(beats, templates: dict, premature: float) -> dict:
    """Per class of ``beats``: n, share, median RR ratios, premature share, shape closer to its class template."""
    import numpy as np

    from ecg2llm.eval.beats import CLASSES

    out = {}
    for i, c in enumerate(CLASSES):
        m = beats.y == i
        if not m.any():
            continue
        rr = beats.rr[m]
        other = "V" if c == "N" else "N"
        own = _corr(beats.x[m], templates[c]) if c in templates else None
        closer = (float((own > _corr(beats.x[m], templates[other])).mean()) if own is not None else None)
        out[c] = {"n": int(m.sum()), "share": float(m.mean()),
                  "prev_over_local_median": float(np.nanmedian(rr[:, 2])),
                  "next_over_local_median": float(np.nanmedian(rr[:, 3])),
                  "premature_share": float(np.nanmean(rr[:, 2] < premature)),
                  f"shape_closer_to_{c}_than_{other}": closer}
    return out


def _null_share(folder, manifest: dict) -> dict | None:
    """LM v3 sets: of all beats the model drew (``beat_units.npy``, past the record's end too), how many carry
    the null label ``beat:?`` (no ``.atr`` annotation, so never cut); None for other sets."""
    import json
    from pathlib import Path

    import numpy as np

    from ecg2llm.lm.control import ControlSpec

    units, conf = folder / "beat_units.npy", Path(str(manifest.get("model_dir", ""))) / "config.json"
    if not (units.is_file() and conf.is_file()):
        return None
    null = ControlSpec.from_dict(json.loads(conf.read_text())["ecg_conditioning"]).null_beat_id
    lab = np.load(units)[:, :, 0]
    lab = lab[lab >= 0]
    return {"drawn_beats": int(lab.size), "null_labelled": int((lab == null).sum()),
            "share": float((lab == null).mean()) if lab.size else 0.0}


@run_main
def main(argv=None):
    """Cut the beats, summarize each set, write the JSON."""
    cfg = parse_config(TimingConfig, argv, description=__doc__)
    import json
    import os
    import shlex
    from datetime import datetime, timezone
    from pathlib import Path

    from ecg2llm.core.errors import ConfigError
    from ecg2llm.core.io import git_sha, write_json
    from ecg2llm.eval.beats import CLASSES, real_beats, synthetic_beats
    from ecg2llm.tokenizer.splits import DS1, DS2

    sha, load = git_sha(), os.getloadavg()
    sets = {}
    for item in filter(None, cfg.sets.split(",")):
        name, _, folder = item.partition("=")
        if not folder or not Path(folder).is_dir():
            raise ConfigError(f"--sets: {item!r} is not name=folder with an existing folder")
        sets[name] = folder
    ds1 = real_beats(list(DS1), cfg.data_dir, source="real DS1")
    templates = {c: ds1.x[ds1.y == i].mean(0) for i, c in enumerate(CLASSES) if (ds1.y == i).any()}
    rows = {"real DS1": summarize(ds1, templates, cfg.premature),
            "real DS2": summarize(real_beats(list(DS2), cfg.data_dir, source="real DS2"), templates, cfg.premature)}
    for name, folder in sets.items():
        rows[f"synthetic {name}"] = summarize(synthetic_beats(folder, source=name), templates, cfg.premature)
        manifest = Path(folder) / "manifest.json"
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            rows[f"synthetic {name}"]["_generation"] = {k: m.get("config", {}).get(k) for k in
                                                        ("model", "condition", "guidance", "seed", "num_samples",
                                                         "seconds", "temperature")}
            rows[f"synthetic {name}"]["_null_label"] = _null_share(Path(folder), m)
    args = list(sys.argv[1:] if argv is None else argv)
    result = {"sets": rows, "premature_threshold": cfg.premature,
              "templates": "real DS1 mean beat per class (0.7-s windows, median removed)",
              "command": "python scripts/tstr_beat_timing.py " + shlex.join(args), "git_sha": sha,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "load": {"loadavg_start": [round(x, 2) for x in load], "cpus": os.cpu_count()}}
    write_json(cfg.out, result)
    for name, r in rows.items():
        cells = "; ".join(f"{c}: n {v['n']}, prev/local {v['prev_over_local_median']:.2f}, next/local "
                          f"{v['next_over_local_median']:.2f}, premature {v['premature_share']:.2f}"
                          for c, v in r.items() if not c.startswith("_"))
        print(f"{name}: {cells}")
    print(f"wrote {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
