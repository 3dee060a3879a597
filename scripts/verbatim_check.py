"""Does the LM replay its training tokens? Verbatim n-gram overlap of generated windows with MIT-BIH DS1.

Launch::

    python scripts/verbatim_check.py --synthetic runs/gen/v2d_s0,runs/gen/v2d_s1 \\
        --scored runs/eval/v2d_s0,runs/eval/v2d_s1 --data_dir ../shared/data --out runs/verbatim/v2d.json

Per 10-s window of each synthetic folder (its ``tokens.npy``, written by ``lm/generate.py``), the share of
its n-token runs that also occur in the LM's training streams: the MIT-BIH training records (DS1 minus the
validation records, every lead), tokenized with the folder's tokenizer (:mod:`ecg2llm.eval.scorecard.verbatim`). The
same
figure on random 10-s windows of DS2 MLII -- patients no LM saw -- is the reference row: what chance and
the tokenizer's common codes (flat line, baseline) give.

With ``--scored`` (the ``eval/score.py`` output folders of the same sets, in the same order) each set is
split into the scorecard's near copies (the memorization headline: embedding distance) and the rest, which
says whether the windows the scorecard calls copies are token replays or look-alikes.

Prints one row per set and n; ``--out`` writes them as JSON (atomic).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError


@dataclass
class VerbatimConfig:
    """Fields of ``scripts/verbatim_check.py``."""

    synthetic: list[str] = field(default_factory=list)  # synthetic folders with tokens.npy, comma list
    scored: list[str] = field(default_factory=list)     # eval/score.py folders of the same sets (optional)
    tokenizer: str | None = None        # tokenizer folder (default: <model_dir>/tokenizer from the manifest)
    data_dir: str | None = None         # data root holding mitdb/
    n: list[int] = field(default_factory=lambda: [12, 16, 24])  # n-gram lengths in tokens
    window_s: float = 10.0              # window length (the scorecard's)
    real_windows: int = 300             # random DS2 MLII windows in the reference row (0: none)
    seed: int = 0
    out: str | None = None              # JSON with every row

    def __post_init__(self):
        if self.scored and len(self.scored) != len(self.synthetic):
            raise ConfigError(f"--scored has {len(self.scored)} folders for {len(self.synthetic)} --synthetic "
                              f"folders; give one per set, in the same order")
        if not self.n or min(self.n) < 1:
            raise ConfigError(f"--n needs n-gram lengths >= 1, got {self.n}")
        if self.window_s <= 0 or self.real_windows < 0:
            raise ConfigError("--window_s must be > 0 and --real_windows >= 0")


def _tokens_and_tokenizer(folder: Path, override: str | None):
    """``(tokens (samples, T), tokenizer folder)`` of one synthetic folder, with clear errors."""
    import json

    import numpy as np

    man_p, tok_p = folder / "manifest.json", folder / "tokens.npy"
    for p in (man_p, tok_p):
        if not p.is_file():
            raise ConfigError(f"{folder} has no {p.name}: give folders written by lm/generate.py "
                              f"(they hold the sampled ids in tokens.npy)")
    man = json.loads(man_p.read_text())
    tok_dir = Path(override) if override else Path(man.get("model_dir", "")) / "tokenizer"
    if not (tok_dir / "config.json").is_file():
        raise ConfigError(f"no tokenizer at {tok_dir} (from {'--tokenizer' if override else man_p}): pass "
                          f"--tokenizer <the LM's tokenizer folder>, e.g. lm/pretrained/v2/tokenizer")
    want = (man.get("tokenizer") or {}).get("weights_hash")
    return np.load(tok_p), tok_dir, want


def _near_copies(scored: Path) -> set[str]:
    import json

    p = scored / "metrics.json"
    if not p.is_file():
        raise ConfigError(f"{scored} has no metrics.json: give eval/score.py output folders to --scored")
    nc = json.loads(p.read_text())["rows"]["synthetic"].get("near_copies") or {}
    return {w["window"] for w in nc.get("windows", [])}


@run_main
def main(argv=None):
    """Parse flags, index the training n-grams, measure every set, print the table, write JSON; returns 0."""
    import numpy as np

    from ecg2llm.core.io import write_json
    from ecg2llm.eval.scorecard.verbatim import NgramIndex, record_streams, summarize, window_coverage
    from ecg2llm.tokenizer import ECGTokenizer
    from ecg2llm.tokenizer.splits import DS2

    a = parse_config(VerbatimConfig, argv, description=__doc__)
    if not a.synthetic:
        raise ConfigError("give at least one --synthetic folder (lm/generate.py output)")
    sets = {Path(d).name: _tokens_and_tokenizer(Path(d), a.tokenizer) for d in a.synthetic}
    tok_dirs = {str(t[1]) for t in sets.values()}
    hashes = {t[2] for t in sets.values()}
    if len(hashes) > 1:
        raise ConfigError(f"the folders were generated with different tokenizers ({len(hashes)} weight hashes); "
                          f"check one tokenizer's sets at a time")
    tok = ECGTokenizer.from_pretrained(sorted(tok_dirs)[0])
    want = next(iter(hashes))
    if want and tok.weights_hash and want != tok.weights_hash:
        raise ConfigError(f"tokenizer {sorted(tok_dirs)[0]} is not the one the folders were generated with "
                          f"(weights hash {tok.weights_hash[:12]} vs {want[:12]}); pass the right --tokenizer")
    window = int(round(a.window_s * tok.tokens_per_second))
    streams = record_streams(tok, a.data_dir)
    indexes = {n: NgramIndex(streams, n) for n in a.n}
    rows = {}
    if a.real_windows:
        rng = np.random.default_rng(a.seed)
        real = record_streams(tok, a.data_dir, records=DS2, leads=("MLII",))  # one stream per record, DS2 order
        picks = []
        for _ in range(a.real_windows):
            ids = real[rng.integers(len(DS2))]
            s = rng.integers(0, len(ids) - window)
            picks.append(ids[s:s + window])
        rows["real DS2 MLII"] = {n: summarize(window_coverage(np.stack(picks), indexes[n], window)) for n in a.n}
    for i, (name, (ids, _, _)) in enumerate(sets.items()):
        rows[name] = {}
        copies = _near_copies(Path(a.scored[i])) if a.scored else None
        for n in a.n:
            cov = window_coverage(ids, indexes[n], window)
            row = summarize(cov)
            if copies is not None:
                is_copy = np.array([[f"sample_{s:03d}#{k}" in copies for k in range(cov.shape[1])]
                                    for s in range(cov.shape[0])])
                row["near_copies"] = summarize(cov[is_copy])
                row["others"] = summarize(cov[~is_copy])
            rows[name][n] = row
    print(f"training streams: {len(streams)} (record, lead) pairs, {sum(map(len, streams)):,} tokens; "
          f"windows of {window} tokens ({a.window_s:g} s)")
    print(f"{'set':>24} {'n':>3} {'windows':>7} {'any run':>8} {'mean cov.':>9} {'max cov.':>8}  near copies: any run")
    for name, by_n in rows.items():
        for n, r in by_n.items():
            nc = r.get("near_copies")
            extra = f"  {nc['share_any']:.3f} of {nc['n_windows']}" if nc and nc["n_windows"] else ""
            print(f"{name[:24]:>24} {n:3d} {r['n_windows']:7d} {r['share_any']:8.3f} {r['mean_coverage']:9.4f} "
                  f"{r['max_coverage']:8.3f}{extra}")
    if a.out:
        write_json(a.out, {"config": {k: getattr(a, k) for k in ("synthetic", "scored", "n", "window_s",
                                                                  "real_windows", "seed")},
                           "tokenizer": sorted(tok_dirs)[0], "window_tokens": window,
                           "training_tokens": int(sum(map(len, streams))),
                           "rows": {k: {str(n): r for n, r in v.items()} for k, v in rows.items()}})
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
