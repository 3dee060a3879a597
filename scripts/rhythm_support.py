"""How much of each rhythm the LM can learn from: episodes of each MIT-BIH rhythm in the training records and in DS2.

Launch (from the repo root)::

    python scripts/rhythm_support.py --data_dir ../shared/data --out docs/results/rhythm_support.json

A rhythm condition (``rhythm:VT``) is learned from the crops of the LM's training records whose first beat lies in
an episode of that rhythm, and a 10-s request asks for 10 s of it. This counts, from the reference annotations
(``.atr`` rhythm marks, each episode running to the next mark or the record's end), per rhythm and per record set:
episodes, their beats and seconds, the median and longest episode, the records that hold them, and ``windows_10s``:
how many whole, non-overlapping 10-s windows fit inside the episodes (what a 10-s request could be shown). Record
sets: the LM v3 training records (DS1 minus the validation records 101, 112 and 119), the validation records, and
DS2 (the test). CinC 2017 has no rhythm annotations beyond its recording-level labels (N, AF, other, noisy) and
adds no VT or bigeminy. Writes one JSON file and prints a table.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError

#: Validation records of the shipped LM v3 (never trained on; ``configs/lm/v3_continue.yaml``).
LM_VALID = ("101", "112", "119")


@dataclass
class RhythmSupportConfig:
    """Fields of ``scripts/rhythm_support.py`` (every field is a flag)."""

    data_dir: str | None = None  # the folder that holds mitdb/
    out: str = "runs/rhythm_support.json"
    rhythms: list[str] = field(default_factory=lambda: ["N", "AFIB", "VT", "B", "T", "SVTA", "AFL", "IVR"])
    records: list[str] = field(default_factory=list)  # one set "records" of these instead of train / valid / DS2


def episodes(sample: np.ndarray, notes: list[str], n_samples: int) -> list[tuple[str, int, int]]:
    """``(rhythm name, start, end)`` of every episode: from each rhythm mark to the next one or ``n_samples``."""
    from ecg2llm.tokenizer.ecg import rhythm_name

    order = np.argsort(sample, kind="stable")
    s = np.asarray(sample, np.int64)[order]
    names = [rhythm_name(notes[i]) for i in order]
    ends = np.r_[s[1:], n_samples]
    return [(n, int(a), int(b)) for n, a, b in zip(names, s, ends) if b > a]


def support(records, data_dir, rhythms, window_s: float = 10.0) -> dict:
    """Per rhythm: episodes, beats, seconds, median / longest episode (s and beats), records, whole 10-s windows."""
    from ecg2llm.tokenizer.data import read_annotations, read_header, resolve_data_dir

    db_dir = resolve_data_dir(data_dir) / "mitdb"
    acc = {r: {"durations_s": [], "beats": [], "records": set()} for r in rhythms}
    for rec in records:
        h = read_header(rec, db_dir)
        ann = read_annotations(rec, data_dir)
        beat_s, _ = ann.beats()
        s, notes = ann.rhythms()
        for name, a, b in episodes(s, notes, int(h.sig_len)):
            if name not in acc:
                continue
            acc[name]["durations_s"].append((b - a) / float(h.fs))
            acc[name]["beats"].append(int(((beat_s >= a) & (beat_s < b)).sum()))
            acc[name]["records"].add(str(rec))
    out = {}
    for name, v in acc.items():
        d, n = np.asarray(v["durations_s"]), np.asarray(v["beats"])
        out[name] = {"episodes": int(len(d)), "beats": int(n.sum()), "seconds": round(float(d.sum()), 1),
                     "median_episode_s": round(float(np.median(d)), 1) if len(d) else None,
                     "median_episode_beats": float(np.median(n)) if len(n) else None,
                     "longest_episode_s": round(float(d.max()), 1) if len(d) else None,
                     "longest_episode_beats": int(n.max()) if len(n) else None,
                     "windows_10s": int(np.floor(d / window_s).sum()) if len(d) else 0,
                     "records": sorted(v["records"])}
    return out


@run_main
def main(argv=None) -> int:
    """Count rhythm episodes per record set (see the module docstring); writes ``--out``."""
    from ecg2llm.core.io import git_sha, write_json
    from ecg2llm.tokenizer.ecg import RHYTHMS
    from ecg2llm.tokenizer.splits import DS1, DS2

    a = parse_config(RhythmSupportConfig, argv, description=__doc__)
    unknown = [r for r in a.rhythms if r not in RHYTHMS]
    if unknown:
        raise ConfigError(f"--rhythms: {unknown} are not MIT-BIH rhythm names; choose from {list(RHYTHMS)}")
    t0 = time.time()
    if a.records:
        sets = {"records": [str(r) for r in a.records]}
    else:
        sets = {"LM training records (DS1 minus 101, 112, 119)": [r for r in DS1 if r not in LM_VALID],
                "LM validation records (101, 112, 119)": list(LM_VALID), "DS2 (test)": list(DS2)}
    result = {"sets": {name: {"records": recs, "rhythms": support(recs, a.data_dir, a.rhythms)}
                       for name, recs in sets.items()}}
    result.update({"command": " ".join(["python scripts/rhythm_support.py", *(sys.argv[1:] if argv is None else argv)]),
                   "git_sha": git_sha(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "seconds": round(time.time() - t0, 1),
                   "note": "episodes from the .atr rhythm marks (each to the next mark or the record's end); "
                           "windows_10s = whole non-overlapping 10-s windows inside the episodes"})
    write_json(a.out, result)
    for name, v in result["sets"].items():
        print(f"\n{name}\n| rhythm | episodes | beats | seconds | median episode | longest | 10-s windows | records |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for r, s in v["rhythms"].items():
            if s["episodes"]:
                median = f"{s['median_episode_s']} s ({s['median_episode_beats']:g} beats)"
                longest = f"{s['longest_episode_s']} s ({s['longest_episode_beats']} beats)"
                print(f"| {r} | {s['episodes']} | {s['beats']} | {s['seconds']} | {median} | {longest} | "
                      f"{s['windows_10s']} | {', '.join(s['records'])} |")
    print(f"[rhythm_support] wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
