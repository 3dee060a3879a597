"""Score a folder of synthetic ECGs against real MIT-BIH windows; write metrics.json and report.md/.html.

Launch::

    python eval/score.py --synthetic runs/gen/samples --out runs/eval/my_run
    python eval/score.py --synthetic DIR --out DIR --forecast runs/gen/fc --tokenizer runs/tok/x/tokenizer
    python eval/score.py --out runs/eval/references            # reference rows only, no synthetic set
    python eval/score.py --config configs/eval/score.yaml --synthetic DIR --out DIR --references none

The real reference is ``--n_real`` random 10-s MLII windows of DS2 (seed ``--seed``). The scored LM's
``training_data.json`` (``--training_data`` a model folder or the file; default: the model a generated folder's
manifest names) decides the headline's band pool (the fixed pool minus what the LM saw, reported) and where
copies are searched (every window it trained on: :mod:`ecg2llm.eval.scorecard.pool`,
:mod:`ecg2llm.eval.scorecard.metrics.memorization_index`).
``--references all`` (default) adds the real-DS1 ceiling and ECGSYN rows, ``none`` skips them, ``ds1`` or
``ecgsyn`` picks one. ``--extra_rows name=DIR,name2=DIR2`` scores more folders (same format as
``--synthetic``) as extra rows; ``--tokenizer DIR`` adds the round trip of held-out DS2 windows through that
tokenizer. ``--forecast DIR`` scores a ``forecast.npz`` (format: ``tokenizer/forecasts.py``); without it only
the naive forecast baselines are reported.
Metric definitions and directions: ``eval/scorecard/metrics/__init__.py`` and the report itself.
"""

import dataclasses
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError
from ecg2llm.core.io import ensure_writable_dir, git_sha, versions, write_json
from ecg2llm.eval.scorecard.scorer import ScoreSettings

REQUIRED_KEYS = (
    "fed",
    "rfed",
    "mmd",
    "precision",
    "recall",
    "density",
    "coverage",
    "valid_rhythm_rate",
    "hr_w1_bpm",
    "disc_score",
    "memorization_ratio",
    "forecast_crps",
)


@dataclass
class ScoreConfig(ScoreSettings):
    """Options of ``eval/score.py`` (``configs/eval/score.yaml``): every field of the scorer's
    :class:`ecg2llm.eval.scorecard.scorer.ScoreSettings` (inherited, not copied: ``data_dir``, ``n_real``, ``seed``,
    ``reference_records`` (default DS2), ``train_records`` (default DS1), ``memo_stride_s``, ``disc_splits``,
    ``cache_dir``, ``embedding``, ...) plus what to score and how to report it."""

    synthetic: str | None = None  # folder written by lm/generate.py (manifest.json, .npy or WFDB)
    out: str = "runs/eval"
    n_ref_rows: int = 200  # windows in each reference row (DS1, ECGSYN, tokenizer round trip)
    fs: float | None = None  # sampling rate of bare .npy folders (default 360)
    short: str = "error"  # samples shorter than 10 s: error | skip
    prompted: str = "exclude"  # prompted samples: exclude | continuation | include
    max_synthetic: int | None = None  # score a seeded random subset of at most this many windows
    references: str = "all"  # all | none | comma list of ds1,ecgsyn
    extra_rows: list[str] = field(default_factory=list)  # name=DIR pairs scored like --synthetic
    tokenizer: str | None = None  # tokenizer folder: adds its DS2 round-trip row
    texture_row: bool = True  # with a texture tokenizer, also its round trip decoded with texture (as generated)
    forecast: str | None = None  # folder or file with forecast.npz
    n_forecast_tasks: int = 64  # tasks for the naive baselines when no --forecast is given
    headline: bool = True  # headline verdicts against real bands (eval/scorecard/headline.py)
    band_draws: int = 40  # leave-patients-out draws of the real bands (calibration's "draws")


def _parse_rows(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for it in items:
        if "=" not in it:
            raise ConfigError(f"--extra_rows entries are name=DIR, got {it!r}")
        name, d = it.split("=", 1)
        out.append((name.strip(), d.strip()))
    return out


def _which_references(spec: str) -> list[str]:
    from ecg2llm.eval.scorecard.references import REFERENCE_ROWS

    spec = (spec or "none").strip().lower()
    if spec == "all":
        return list(REFERENCE_ROWS)
    if spec in ("none", ""):
        return []
    return [s.strip() for s in spec.split(",") if s.strip()]


def scorer_settings(cfg: ScoreConfig) -> ScoreSettings:
    """The :class:`~ecg2llm.eval.scorecard.scorer.ScoreSettings` a run of ``cfg`` scores with (its calibration's
    ``draws`` from
    ``band_draws``): the one place a scorer is configured from this entry point's flags."""
    settings = ScoreSettings(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(ScoreSettings)})
    settings.calibration = {"draws": cfg.band_draws, **(cfg.calibration or {})}
    if settings.training_data is None and cfg.synthetic:  # the LM a generated folder's manifest names
        settings.training_data = cfg.synthetic
    return settings


def run(cfg: ScoreConfig, command: str = "") -> dict:
    """Score everything ``cfg`` asks for, write ``metrics.json`` and the report; return the metrics."""
    import numpy as np

    from ecg2llm.eval.data import load_synthetic
    from ecg2llm.eval.scorecard.metrics import METRICS
    from ecg2llm.eval.scorecard.metrics.forecast import baseline_metrics, forecast_metrics
    from ecg2llm.eval.scorecard.references import reference_rows, tokenizer_roundtrip_row
    from ecg2llm.eval.scorecard.report import write_report
    from ecg2llm.eval.scorecard.scorer import Scorer
    from ecg2llm.tokenizer.forecasts import load_forecasts, make_forecast_tasks

    t0 = time.time()
    which = _which_references(cfg.references)
    extra = _parse_rows(cfg.extra_rows)
    synth = None
    if cfg.synthetic:  # read (and reject) the synthetic folder before the slower reference work
        synth = load_synthetic(cfg.synthetic, fs=cfg.fs, short=cfg.short, prompted=cfg.prompted)
        if cfg.max_synthetic and len(synth) > cfg.max_synthetic:
            keep = np.sort(
                np.random.default_rng(cfg.seed).choice(len(synth), cfg.max_synthetic, replace=False)
            )
            synth = synth.subset(keep)
    forecast = load_forecasts(cfg.forecast) if cfg.forecast else None
    out = ensure_writable_dir(cfg.out)

    settings = scorer_settings(cfg)
    scorer = Scorer(settings)
    tok = None
    if cfg.tokenizer:
        from ecg2llm.tokenizer import ECGTokenizer

        tok = ECGTokenizer.from_pretrained(cfg.tokenizer)
    if cfg.headline and tok is not None:  # the LM-only discriminator needs the tokenizer's round trip
        # a set decoded with the texture model is compared with texture-decoded round trips (like for like)
        scorer.calibration().add_tokenizer(tok, texture=_texture_decoded(cfg.synthetic, tok))
    rows: dict[str, dict] = {}
    primary = None
    if synth is not None:
        primary = "synthetic"
        rows[primary] = scorer.score_windows(primary, synth)
    for name, d in extra:
        rows[name] = scorer.score_windows(
            name, load_synthetic(d, fs=cfg.fs, short=cfg.short, prompted=cfg.prompted)
        )
    rows.update(reference_rows(scorer, which, n=cfg.n_ref_rows))
    if tok is not None:
        row = tokenizer_roundtrip_row(scorer, tok, n=cfg.n_ref_rows)
        rows[row["name"]] = row
        if cfg.texture_row and getattr(tok, "has_texture", False):  # decoded as generated ECGs are: their ceiling
            row = tokenizer_roundtrip_row(scorer, tok, n=cfg.n_ref_rows, texture=True)
            rows[row["name"]] = row

    if forecast is not None:
        fm = forecast_metrics(
            forecast["prefix"], forecast["truth"], forecast["samples"], float(forecast["fs"])
        )
        f_rows = {
            "model samples": {
                "forecast_crps": fm["forecast_crps"],
                "forecast_mae_median": fm["forecast_mae_median"],
                "forecast_n_tasks": fm["forecast_n_tasks"],
                "forecast_k": fm["forecast_k"],
            }
        }
        base = fm
        n_tasks = fm["forecast_n_tasks"]
    else:
        tasks = make_forecast_tasks(
            scorer.data_dir, records=settings.reference_records, n=cfg.n_forecast_tasks, seed=cfg.seed
        )
        base = baseline_metrics(tasks["prefix"], tasks["truth"], float(tasks["fs"]))
        f_rows, n_tasks = {}, len(tasks["prefix"])
    for key, label in (
        ("naive_last_beat_mae", "naive: repeat last beat"),
        ("naive_mean_mae", "naive: prefix mean"),
    ):
        f_rows[label] = {
            "forecast_crps": base[key],
            "forecast_mae_median": base[key],
            "forecast_n_tasks": n_tasks,
        }
    f_rows["naive: last beat, resampled RR (K=16)"] = {
        "forecast_crps": base["naive_ensemble_crps"],
        "forecast_mae_median": base["naive_ensemble_mae_median"],
        "forecast_n_tasks": n_tasks,
    }

    top = rows.get(primary, {}) if primary else {}
    metrics = {k: top.get(k) for k in REQUIRED_KEYS if k != "forecast_crps"}
    metrics["forecast_crps"] = f_rows["model samples"]["forecast_crps"] if forecast is not None else None
    metrics.update({k: v for k, v in top.items() if k not in metrics and k != "name"})
    metrics.update(
        {
            "primary_row": primary,
            "synthetic_dir": cfg.synthetic,
            "synthetic": ({"n_windows": len(synth), **synth.meta} if synth is not None else None),
            "embedding_weights_hash": scorer.embedder.weights_hash,
            "rows": rows,
            "forecast_rows": f_rows,
            "forecast_file": cfg.forecast,
            "naive_last_beat_mae": base["naive_last_beat_mae"],
            "naive_mean_mae": base["naive_mean_mae"],
            "naive_ensemble_crps": base["naive_ensemble_crps"],
            "reference": scorer.describe(),
            "calibration": scorer.calibration().describe() if settings.headline else None,
            "definitions": {k: {"better": d, "definition": t} for k, (d, t) in METRICS.items()},
            "config": asdict(cfg),
            "git_sha": git_sha(),
            "versions": versions(),
            "command": command,
        }
    )
    metrics["seconds"] = round(time.time() - t0, 1)
    write_json(Path(out) / "metrics.json", metrics)
    write_report(out, metrics, scorer, forecast=forecast, command=command)
    print(f"[eval] wrote {Path(out) / 'metrics.json'} and report.md in {metrics['seconds']:.1f} s")
    return metrics


def _texture_decoded(folder, tok) -> bool:
    """Whether a generated folder's samples were decoded with a texture model (``texture_seed`` set)."""
    if not folder or not getattr(tok, "has_texture", False):
        return False
    from ecg2llm.tokenizer.folder import read_manifest

    manifest = read_manifest(folder)  # None for plain WFDB records: no texture info
    return bool(manifest) and any(smp.get("texture_seed") is not None for smp in manifest.get("samples", []))


SUMMARY_KEYS = ("rfed", "mmd", "disc_score", "valid_rhythm_rate", "hr_w1_bpm", "memorization_ratio")


def summary_lines(metrics: dict) -> list[str]:
    """The lines ``eval/score.py`` prints after scoring: the headline verdicts, then the key metrics.

    Empty when no synthetic set was scored (reference rows only); the verdict line only with headline bands.
    """
    lines = []
    if metrics["primary_row"] and metrics.get("headline"):
        lines.append(f"verdict: {metrics['verdict']}  " + "  ".join(
            f"{k}={h['value']:.3g} ({h['verdict']}, real {h['real_band'][0]:.3g}-{h['real_band'][1]:.3g})"
            for k, h in metrics["headline"].items()))
    if metrics["primary_row"]:
        lines.append("  ".join(
            f"{k}={metrics[k]:.3g}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}" for k in SUMMARY_KEYS))
    return lines


@run_main
def main(argv=None):
    """Parse options (``--config`` YAML + flags), score, write the report. Returns 0 on success."""
    args = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_config(ScoreConfig, args, description=__doc__)
    metrics = run(cfg, command=" ".join(["python eval/score.py", *args]))
    for line in summary_lines(metrics):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
