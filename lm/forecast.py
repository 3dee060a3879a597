"""Probabilistic ECG forecasting with a trained LM: real DS2 prefixes -> K sampled continuations.

Launch (from the repo root)::

    python lm/forecast.py --model runs/lm/tiny/final --out runs/forecast --data_dir ../shared/data
    python eval/score.py --synthetic runs/gen --forecast runs/forecast --out runs/eval

Each task is a random 10-s MLII window of a held-out (DS2 by default) record, drawn by
:func:`ecg2llm.tokenizer.forecasts.make_forecast_tasks` (the same draw ``eval/score.py`` uses for its naive
baselines when given no forecast file, same seed ⇒ same tasks). The first ``prefix_s`` seconds are
tokenized with the LM's own tokenizer, the LM samples ``k`` continuations of ``horizon_s`` seconds, and
the tokenizer decodes prefix + continuation together (so the contextual decoder sees the real prefix at
the seam); the part after the prefix is the forecast. Output: ``forecast.npz`` (``prefix``, ``truth``,
``samples (N, K, H)``, ``fs``, ``records``, ``starts``; written atomically) and ``forecast.json``
(settings, model, timing). Every field of :class:`ForecastConfig` is a flag.
"""
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError


@dataclass
class ForecastConfig:
    """Fields of ``lm/forecast.py`` (``python lm/forecast.py --help`` lists them as flags)."""

    model: str = "default"            # LM folder (<run>/final) or a shipped LM name (LM v3 or v2)
    out: str = "runs/forecast"
    data_dir: str | None = None       # data root holding mitdb/ ($ECG2LLM_DATA otherwise)
    records: list[str] = field(default_factory=list)  # records the tasks come from; empty = DS2
    n_tasks: int = 64
    k: int = 16                       # sampled continuations per task
    prefix_s: float = 5.0
    horizon_s: float = 5.0
    seed: int = 0                     # task draw and sampling
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    device: str = "auto"              # auto | cpu | cuda
    num_threads: int = 0              # torch CPU threads; 0 = library default

    def __post_init__(self):
        for name in ("n_tasks", "k"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.prefix_s > 0 and self.horizon_s > 0):
            raise ConfigError(f"prefix_s and horizon_s must be > 0, got {self.prefix_s}, {self.horizon_s}")


def forecast(cfg: ForecastConfig) -> dict:
    """Sample ``cfg.k`` continuations for each task, write ``forecast.npz`` + ``forecast.json``; return the latter."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from ecg2llm.core.io import ensure_writable_dir, git_sha, sha256_file, versions, write_json
    from ecg2llm.lm.beat_forecast import forecast_beats
    from ecg2llm.lm.beat_layout import spec_of_model
    from ecg2llm.lm.control import ControlSpec
    from ecg2llm.lm.model import load_lm, load_tokenizer_for
    from ecg2llm.lm.request import GenerateConfig
    from ecg2llm.lm.sampling import SamplingParams, check_stateless, sample_tokens
    from ecg2llm.lm.synthesize import synthesize
    from ecg2llm.tokenizer.data import resolve_data_dir
    from ecg2llm.tokenizer.forecasts import make_forecast_tasks, save_forecasts

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    out = ensure_writable_dir(cfg.out)
    model, folder = load_lm(cfg.model, device)
    blm = None
    if spec_of_model(model) is not None:  # an LM v3 continues the prefix's beats (ecg2llm.lm.beat_forecast)
        from ecg2llm.lm.beat_generate import BeatLM

        blm = BeatLM.of_loaded(model, folder)
        tok = blm.tok
    else:
        tok = load_tokenizer_for(model.config, folder)
        check_stateless(tok)
    params = SamplingParams(cfg.temperature, cfg.top_k, cfg.top_p)
    v2 = blm is None and ControlSpec.of_model(model) is not None

    tasks = make_forecast_tasks(resolve_data_dir(cfg.data_dir), records=cfg.records or None, n=cfg.n_tasks,
                                seed=cfg.seed, prefix_s=cfg.prefix_s, horizon_s=cfg.horizon_s, fs=tok.fs)
    prefix, truth = tasks["prefix"], tasks["truth"]
    p, h = prefix.shape[1], truth.shape[1]
    samples = np.empty((len(prefix), cfg.k, h), np.float32)
    t0 = time.perf_counter()
    for i in tqdm(range(len(prefix)), desc="forecast", unit="task"):
        if blm is not None:
            req = GenerateConfig(num_samples=cfg.k, seconds=h / tok.fs, seed=cfg.seed * 100003 + i,
                                 temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, batch_size=cfg.k,
                                 texture=False)
            samples[i] = forecast_beats(blm, prefix[i], req)[:, :h]
            continue
        n_new = int(np.ceil(h / tok.samples_per_token)) + 1
        ids, _ = tok.encode(prefix[i], tok.fs)
        if v2:  # an LM v2 continues the prompt as a stream with its control tokens (ecg2llm.lm.synthesize)
            req = GenerateConfig(num_samples=cfg.k, seconds=(n_new - 0.5) / tok.tokens_per_second,
                                 seed=cfg.seed * 100003 + i, temperature=cfg.temperature, top_k=cfg.top_k,
                                 top_p=cfg.top_p, batch_size=cfg.k, texture=False)
            syn = synthesize(model, tok, req, prompt=ids, progress=False)
            samples[i] = syn.signals[:, p : p + h]
            continue
        new = sample_tokens(model, cfg.k, n_new, prompt=ids, params=params, batch_size=cfg.k,
                            seed=cfg.seed * 100003 + i)  # (K, n_new)
        for j in range(cfg.k):
            x = tok.decode(np.concatenate([ids, new[j]]), None)
            samples[i, j] = x[p : p + h]
    wall = time.perf_counter() - t0

    save_forecasts(out, prefix, truth, samples, tok.fs, records=tasks["records"], starts=tasks["starts"])
    info = {
        "config": asdict(cfg), "model_dir": str(folder),
        "model_sha256": sha256_file(Path(folder) / "model.safetensors"),
        "tokenizer_weights_hash": getattr(tok, "weights_hash", None), "fs": tok.fs, "units": "mV",
        "lm_version": 3 if blm is not None else None,
        "n_tasks": int(len(prefix)), "k": cfg.k, "prefix_samples": int(p), "horizon_samples": int(h),
        "timing": {"seconds": wall, "device": device,
                   "ecg_seconds_per_second": len(prefix) * cfg.k * cfg.horizon_s / wall},
        "git_sha": git_sha(), "versions": versions(),
    }
    write_json(out / "forecast.json", info)
    return info


@run_main
def main(argv=None):
    """Parse flags into :class:`ForecastConfig`, forecast, print a one-line summary."""
    cfg = parse_config(ForecastConfig, argv, description=__doc__)
    info = forecast(cfg)
    print(f"{info['n_tasks']} tasks x {cfg.k} continuations of {cfg.horizon_s:g} s -> {cfg.out}/forecast.npz; "
          f"score them (CRPS, median-path MAE, naive baselines) with: ecg2llm score --forecast {cfg.out} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
