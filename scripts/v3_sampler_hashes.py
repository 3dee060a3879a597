"""Hashes of what LM v3 draws for a fixed set of requests: the before/after check of a sampler speed-up.

Launch (from the repo root)::

    python scripts/v3_sampler_hashes.py --out runs/v3_hashes_new.json            # this checkout
    git stash; python scripts/v3_sampler_hashes.py --out runs/v3_hashes_old.json; git stash pop   # (or another
    python scripts/v3_sampler_hashes.py --compare runs/v3_hashes_old.json,runs/v3_hashes_new.json  # worktree)

For each request (unconditional batch 128 x 30 s, classifier-free guidance under ``rhythm:AFIB`` and
``beat:V``, temperature / top-k / top-p, the ``sample``, ``persist`` and ``argmax`` detail modes, several
batches, the ``null`` rhythm slot, a 170-s sample that slides the KV cache) it records the SHA-256 of the
drawn beats (labels, RR, coarse, detail, rhythm slots), of the signals in mV and of the annotations, with the
seconds it took. Two runs agree bit for bit when every hash agrees. Uses only ``BeatLM.from_folder`` and
``BeatLM.synthesize``, which every LM v3 checkout has.

Row retirement (0.3.3) on and off: the same ECGs, while a retired row holds fewer beats past the signal's end::

    python scripts/v3_sampler_hashes.py --retire false --out runs/v3_hashes_noretire.json
    python scripts/v3_sampler_hashes.py --out runs/v3_hashes_retire.json
    python scripts/v3_sampler_hashes.py --compare runs/v3_hashes_noretire.json,runs/v3_hashes_retire.json \
        --fields signals,annotations
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError


def _digest(arrays) -> str:
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes() if a.dtype != object else repr(a.tolist()).encode())
    return h.hexdigest()


def requests(big: bool = True):
    """``(name, rhythm_slot mode, GenerateConfig)`` of the checked requests."""
    from ecg2llm.lm.request import GenerateConfig as G

    out = [
        ("afib_guidance2", None, G(num_samples=12, seconds=10, batch_size=12, seed=3, condition=["rhythm:AFIB"],
                                   guidance=2.0)),
        ("warpers_detail_sample", None, G(num_samples=8, seconds=10, batch_size=8, seed=5, temperature=0.9,
                                          top_p=0.95, top_k=50, detail="sample")),
        ("beatV_guidance_persist_clean", None, G(num_samples=6, seconds=8, batch_size=6, seed=7,
                                                 condition=["beat:V"], guidance=1.5, detail="persist",
                                                 texture=False)),
        ("null_slot_three_batches", "null", G(num_samples=10, seconds=6, batch_size=4, seed=11, detail="argmax")),
        ("vt_V1_no_guidance", None, G(num_samples=5, seconds=12, batch_size=5, seed=13, condition=["rhythm:VT"],
                                      lead="V1")),
        ("long_170s_slides", None, G(num_samples=3, seconds=170, batch_size=3, seed=2)),
    ]
    if big:
        out.append(("batch128_30s", None, G(num_samples=128, seconds=30, batch_size=128, seed=0)))
    return out


def run(model: str, big: bool, retire: bool = True) -> dict:
    import subprocess

    import torch

    import ecg2llm.lm.beat_generate as bg
    from ecg2llm.lm.beat_generate import BeatLM
    from ecg2llm.lm.model import resolve_model_dir

    bg.RETIRE = bool(retire)

    blm = BeatLM.from_folder(resolve_model_dir(model))
    res = {}
    for name, slot, req in requests(big):
        m = BeatLM(blm.model, blm.tok, blm.detail, rhythm_slot=slot) if slot else blm
        t0 = time.perf_counter()
        x, ann, s, _ = m.synthesize(req)
        beats = [*s.labels, *s.rr, *s.coarse, *s.detail, *[b for b in s.beat_rhythm if b is not None]]
        res[name] = {"beats": _digest(beats), "signals": _digest([x]),
                     "annotations": _digest([a for an in ann for a in (an.beat_sample, list(an.beat_class))]),
                     "seconds": round(time.perf_counter() - t0, 2)}
        print(name, res[name], flush=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"command": " ".join(["python", "scripts/v3_sampler_hashes.py", *sys.argv[1:]]), "git_sha": sha,
            "model": model, "torch_threads": torch.get_num_threads(), "retire": bool(retire), "requests": res}


FIELDS = ("beats", "signals", "annotations")


def compare(a: dict, b: dict, fields=FIELDS) -> list[str]:
    """Names of the requests whose hashes of ``fields`` differ (or that one file lacks)."""
    ra, rb = a["requests"], b["requests"]
    return [k for k in sorted(set(ra) | set(rb))
            if k not in ra or k not in rb or any(ra[k][f] != rb[k][f] for f in fields)]


@dataclass
class HashesConfig:
    """Fields of ``scripts/v3_sampler_hashes.py`` (every field is a flag)."""

    out: str | None = None  # write the hashes here (JSON)
    model: str = "default"  # LM v3: shipped name or folder
    small: bool = False  # leave out the batch 128 x 30 s request
    compare: list[str] = field(default_factory=list)  # two hash files (A,B): exit 1 if they differ
    fields: list[str] = field(default_factory=lambda: list(FIELDS))  # what --compare compares (signals,annotations:
    #                                      the ECGs; a retired row holds fewer beats than a row drawn to the end)
    retire: bool = True  # rows that have their beats stop being computed (ecg2llm.lm.beat_generate.RETIRE)


@run_main
def main(argv=None) -> int:
    """Hash this checkout's draws into ``--out``, or ``--compare A,B`` two such files."""
    a = parse_config(HashesConfig, argv, description=__doc__)
    if a.compare:
        if len(a.compare) != 2:
            raise ConfigError(f"--compare takes two hash files (A,B), got {len(a.compare)}: {a.compare}")
        missing = [p for p in a.compare if not Path(p).is_file()]
        if missing:
            raise ConfigError(f"--compare: no hash file at {', '.join(missing)}; write one with --out first")
        unknown = [f for f in a.fields if f not in FIELDS]
        if unknown or not a.fields:
            raise ConfigError(f"--fields must name some of {list(FIELDS)}, got {a.fields}")
        x, y = (json.loads(Path(p).read_text()) for p in a.compare)
        bad = compare(x, y, a.fields)
        print("identical" if not bad else f"differ: {', '.join(bad)}")
        return 1 if bad else 0
    if not a.out:
        raise ConfigError("give --out FILE (hash this checkout's draws) or --compare A,B (compare two hash files)")
    from ecg2llm.core.io import write_json

    write_json(a.out, run(a.model, not a.small, a.retire))
    return 0


if __name__ == "__main__":
    sys.exit(main())
