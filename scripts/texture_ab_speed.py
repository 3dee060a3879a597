"""A/B speed of the texture state's code: encode (which runs ``TextureBank.analyse``) and encode + texture decode,
with tokenizer/texture_bank.py of a git revision (A) against the working tree's (B), interleaved in one process so
both see the same load (the load averages are written beside the numbers).

Launch::

    python scripts/texture_ab_speed.py --old_rev 9b93536 --out docs/results/texture_v3_state2_speed_ab.json
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config


@dataclass
class TextureABConfig:
    """Fields of ``scripts/texture_ab_speed.py`` (every field is a flag)."""

    old_rev: str = "9b93536"           # git revision whose tokenizer/texture_bank.py is A
    tokenizer: str = "v3"
    records: str = "100,103,210,233"   # MIT-BIH records (DS2 by default)
    seconds: float = 600.0             # first seconds of each record
    repeats: int = 3
    out: str | None = None


@run_main
def main(argv=None):
    """Time A and B alternately; print and write the medians (M samples/s); returns 0."""
    import importlib.util
    import os
    import subprocess
    import tempfile
    import time

    import numpy as np
    import torch

    from ecg2llm.core.io import git_sha, write_json
    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer
    from ecg2llm.tokenizer.evaluation import load_signals

    a = parse_config(TextureABConfig, argv, description=__doc__)
    torch.set_num_threads(1)
    shown = subprocess.run(["git", "show", f"{a.old_rev}:tokenizer/texture_bank.py"], capture_output=True, text=True)
    if shown.returncode != 0:
        from ecg2llm.core.errors import ConfigError

        raise ConfigError(f"--old_rev {a.old_rev}: git has no tokenizer/texture_bank.py at that revision "
                          f"({shown.stderr.strip().splitlines()[-1] if shown.stderr.strip() else 'git failed'})")
    src = shown.stdout.replace("from .texture import", "from ecg2llm.tokenizer.texture import")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("texture_bank_a", f.name)
    old = importlib.util.module_from_spec(spec)
    sys.modules["texture_bank_a"] = old
    spec.loader.exec_module(old)
    os.unlink(f.name)
    tok = BeatTokenizer.from_pretrained(a.tokenizer)
    sigs = list(load_signals([r.strip() for r in a.records.split(",")], None, fs=tok.fs, seconds=a.seconds).values())
    new = tok.texture_bank
    keys = ("W", "calib", "chol_frame", "levels", "recordings", "line_hz", "line_amp", "n_fft", "hop", "fs",
            "line_gain", "adc_step_mv")
    banks = {"A": old.TextureBank(**{k: getattr(new, k) for k in keys}), "B": new}
    n = sum(len(x) for x in sigs)
    res = {k: {"encode": [], "encode_texture_decode": []} for k in banks}
    load0 = os.getloadavg()
    for _ in range(a.repeats):
        for name, bank in banks.items():
            tok.texture_bank = bank
            t0 = time.perf_counter()
            coded = [tok.encode(x, tok.fs) for x in sigs]
            t1 = time.perf_counter()
            for i, (ids, st) in enumerate(coded):
                tok.decode(ids, st, texture=True, seed=i)
            t2 = time.perf_counter()
            res[name]["encode"].append(n / (t1 - t0) / 1e6)
            res[name]["encode_texture_decode"].append(n / (t2 - t0) / 1e6)
    med = {k: {m: float(np.median(v)) for m, v in d.items()} for k, d in res.items()}
    out = {"command": "python scripts/texture_ab_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "git_sha": git_sha(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "old_rev": a.old_rev,
           "samples": n, "torch_threads": 1, "cpu_count": os.cpu_count(), "load_average_before": list(load0),
           "load_average_after": list(os.getloadavg()), "m_samples_per_s_median": med, "m_samples_per_s": res,
           "b_over_a": {m: med["B"][m] / med["A"][m] for m in med["A"]}}
    print(med, "load", load0)
    if a.out:
        write_json(a.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
