"""Fit the beat cache of a conditional LM v2 on its validation records; record it in the LM's config.

The beat cache (:mod:`ecg2llm.lm.beatcache`) is a product of the LM with a kernel around the previous beats' codes;
it is a normalized model, so each setting has a held-out likelihood. This script scores every setting of
the grid by teacher-forced bits/token on the DS1 *validation* records (MLII tiles of the LM's context, the
ones ``lm/train.py`` early-stops on), picks the lowest, reports the same on DS2 (the test split; never used
to choose), and with ``--write true`` records the choice in ``<model>/config.json`` as ``ecg_beat_cache``,
whose shape generation uses when asked for the cache (``lm/generate.py --beat_cache <strength>``)::

    python scripts/fit_beat_cache.py --model lm/pretrained/v2 --data_dir ../shared/data \\
        --out runs/beat_cache/fit.json --write true                                  # ~6 min on 2 cores

Data: the token store of ``--lm_config`` (built on first use, ~45 s), MLII of the validation records only.
"""
from __future__ import annotations

import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError
from ecg2llm.core.io import write_json


@dataclass
class FitBeatCacheConfig:
    """Fields of ``scripts/fit_beat_cache.py`` (every field is a flag and a ``--config`` YAML key)."""

    model: str = "lm/pretrained/v2"     # conditional LM v2 folder (or a shipped name)
    lm_config: str = "configs/lm/v2_conditional_ft.yaml"  # LM training config naming its store and records
    store: str | None = None                 # override the config's token store
    data_dir: str | None = None              # data root ($ECG2LLM_DATA otherwise)
    strengths: list[float] = field(default_factory=lambda: [0.15, 0.25, 0.35, 0.5])
    sigmas: list[float] = field(default_factory=lambda: [1.0, 1.25, 1.5, 2.0])
    beats: list[int] = field(default_factory=lambda: [4])
    decays: list[float] = field(default_factory=lambda: [0.6])
    tiles: int = 128                         # validation tiles scored (evenly spaced; 0 = all)
    test_tiles: int = 128                    # DS2 tiles the chosen setting is reported on (0 = skip)
    batch: int = 128                         # tiles per forward pass (the cache runs on a whole batch at once)
    num_threads: int = 2
    out: str = "runs/beat_cache/fit.json"
    write: bool = False                      # record the chosen setting in <model>/config.json
    also: list[str] = field(default_factory=list)  # other LM folders with the same weights to record it in


def _score(lm, tiles, caches, batch: int):
    """Summed nats and token counts of the LM alone and with each of ``caches`` on ``tiles`` ``(N, L)``."""
    import torch
    from tqdm.auto import tqdm

    from ecg2llm.lm.beatcache import cache_log_probs

    bos = int(lm.config.bos_token_id)
    x_all = torch.from_numpy(tiles)
    alone, nats, count = 0.0, [0.0] * len(caches), 0
    for i in tqdm(range(0, len(x_all), batch), desc="tiles", unit="batch"):
        x = torch.cat([torch.full((min(batch, len(x_all) - i), 1), bos), x_all[i:i + batch]], 1)
        with torch.inference_mode():
            logp = torch.log_softmax(lm(input_ids=x).logits.float(), -1)[:, :-1]  # (b, L-1, V)
        alone -= float(logp.gather(2, x[:, 1:, None]).sum())
        count += x[:, 1:].numel()
        for j, cache in enumerate(caches):
            nats[j] -= float(cache_log_probs(logp, x, cache).sum())
    return alone, nats, count


@run_main
def main(argv=None):
    """Parse flags (:class:`FitBeatCacheConfig`), score the grid, write the report (and the config)."""
    import torch

    from ecg2llm.lm.beatcache import CONFIG_KEY, BeatCache, BeatCacheParams
    from ecg2llm.lm.config import LMTrainConfig
    from ecg2llm.lm.control import ControlSpec
    from ecg2llm.lm.mixture import open_corpus
    from ecg2llm.lm.model import load_lm, load_tokenizer_for, resolve_model_dir

    a = parse_config(FitBeatCacheConfig, argv, description=__doc__)
    torch.set_num_threads(max(1, a.num_threads))
    t0 = time.time()
    lm, folder = load_lm(a.model)
    spec = ControlSpec.of_model(lm)
    if spec is None or not spec.conditional:
        raise ConfigError(f"{folder} is not a conditional LM v2: the beat cache aligns beats by its beat labels")
    settings = [BeatCacheParams(strength=s, sigma=g, beats=k, decay=d)
                for s, g, k, d in itertools.product(a.strengths, a.sigmas, a.beats, a.decays)]
    caches = [BeatCache.for_model(lm, p, spec) for p in settings]  # refuses an LM without FSQ levels
    tok = load_tokenizer_for(lm.config, folder)
    over = ["--config", a.lm_config] + (["--data_dir", a.data_dir] if a.data_dir else []) + \
        (["--store", a.store] if a.store else [])
    cfg = parse_config(LMTrainConfig, over)
    _, corpus, _ = open_corpus(cfg, tok)
    length = int(lm.config.max_position_embeddings) - 1
    valid = corpus.tiles("valid", length, max_crops=a.tiles)
    alone, nats, n = _score(lm, valid, caches, a.batch)
    rows = [{**p.as_dict(), "valid_bits_per_token": v / n / math.log(2)} for p, v in zip(settings, nats)]
    best = min(range(len(rows)), key=lambda i: rows[i]["valid_bits_per_token"])
    report = {"model": str(folder), "valid_records": list(cfg.valid_records), "valid_tiles": len(valid),
              "tile_tokens": length + 1, "valid_bits_per_token_lm_alone": alone / n / math.log(2),
              "rows": rows, "chosen": rows[best], "chosen_by": "lowest validation bits/token"}
    if a.test_tiles:
        test = corpus.tiles("test", length, max_crops=a.test_tiles)
        t_alone, t_nats, tn = _score(lm, test, [caches[best]], a.batch)
        report.update(test_tiles=len(test), test_bits_per_token_lm_alone=t_alone / tn / math.log(2),
                      test_bits_per_token=t_nats[0] / tn / math.log(2))
    report["wall_seconds"] = round(time.time() - t0, 1)
    write_json(a.out, report)
    print(f"validation bits/token: LM alone {report['valid_bits_per_token_lm_alone']:.4f}, with the cache "
          f"{rows[best]['valid_bits_per_token']:.4f} (strength {settings[best].strength}, sigma "
          f"{settings[best].sigma}, beats {settings[best].beats}, decay {settings[best].decay})")
    if a.test_tiles:
        print(f"DS2 bits/token: LM alone {report['test_bits_per_token_lm_alone']:.4f}, with the cache "
              f"{report['test_bits_per_token']:.4f}")
    if a.write:
        from ecg2llm.core.io import sha256_file

        entry = {**settings[best].as_dict(), "fitted": {
            k: report[k] for k in ("valid_records", "valid_tiles", "valid_bits_per_token_lm_alone",
                                   "test_bits_per_token_lm_alone", "test_bits_per_token") if k in report}
            | {"valid_bits_per_token": rows[best]["valid_bits_per_token"], "by": "scripts/fit_beat_cache.py"}}
        weights = sha256_file(Path(folder) / "model.safetensors")
        targets = [Path(folder)] + [resolve_model_dir(f) for f in a.also]
        for t in targets[1:]:
            if sha256_file(t / "model.safetensors") != weights:
                raise ConfigError(f"{t} holds other weights than {folder}: the fitted cache is not its own")
        for t in targets:
            path = t / "config.json"
            write_json(path, {**json.loads(path.read_text()), CONFIG_KEY: entry})
            print(f"recorded {CONFIG_KEY} in {path}")
    print(f"report: {a.out} ({report['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
