"""``ecg2llm.score(folder)``: the scorecard from Python, the verdicts ``ecg2llm score`` prints.

.. code-block:: python

    import ecg2llm
    result = ecg2llm.score("runs/gen", out="runs/eval/gen")       # the same run as `ecg2llm score`
    result.verdict            # "as_real" or "worse": the overall headline verdict (None without bands)
    result.headline["rfed"]   # {"value": ..., "verdict": ..., "real_band": [lo, hi], ...}
    print(result)             # the lines the command prints

It runs :func:`ecg2llm.eval.score.run` (one scoring path for the command and this function) and writes
``metrics.json`` and the report into ``out`` (a temporary folder, deleted afterwards, when ``out`` is None).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ScoreResult:
    """What scoring a folder found (the verdicts ``ecg2llm score`` prints, plus the whole ``metrics.json``).

    Attributes
    ----------
    verdict : str or None
        Overall headline verdict (``metrics.json`` ``verdict``); None when headline bands were off.
    headline : dict
        Per headline metric: ``value``, ``verdict`` and ``real_band`` (the spread of real unseen patients).
    summary : dict
        The key metrics the command prints (``rfed``, ``mmd``, ``disc_score``, ``valid_rhythm_rate``,
        ``hr_w1_bpm``, ``memorization_ratio``); None where undefined.
    out : pathlib.Path or None
        Folder holding ``metrics.json`` and ``report.md``; None when scored into a temporary folder.
    metrics : dict
        The full ``metrics.json`` content (every row, the references, the calibration, the config).
    """

    verdict: str | None
    headline: dict[str, dict]
    summary: dict[str, Any]
    out: Path | None
    metrics: dict = field(repr=False)

    def __str__(self) -> str:
        from ecg2llm.eval.score import summary_lines

        return "\n".join(summary_lines(self.metrics))


def score(folder: str | Path, *, out: str | Path | None = None, **kwargs: Any) -> ScoreResult:
    """Score a folder of synthetic ECGs against held-out real MIT-BIH patients.

    Parameters
    ----------
    folder : str or Path
        A synthetic folder (``manifest.json`` + ``.npy``, bare ``.npy`` or WFDB records), as written by
        ``ecg2llm generate`` / ``ECGPipeline``.
    out : str or Path, optional
        Where ``metrics.json`` and ``report.md``/``.html`` go; default: a temporary folder, removed on return.
    **kwargs
        Any option of ``ecg2llm score`` by its field name (:class:`ecg2llm.eval.score.ScoreConfig`, e.g.
        ``data_dir=``, ``n_real=``, ``references="none"``, ``tokenizer=``); values are cast and checked as
        the command's flags are.

    Returns
    -------
    ScoreResult
        The verdicts and key metrics the command prints, and the full metrics.

    Raises
    ------
    ecg2llm.core.errors.ConfigError
        An unknown option (the message lists the valid ones) or a bad value.
    ecg2llm.core.errors.ECG2LLMError
        A missing or unreadable folder, or missing real data.
    """
    from ecg2llm.core.config import config_from_dict
    from ecg2llm.eval.score import SUMMARY_KEYS, ScoreConfig, run

    values = {"synthetic": str(folder), **kwargs}

    def _run(where: str) -> dict:
        cfg = config_from_dict(ScoreConfig, {**values, "out": where}, source="ecg2llm.score()")
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
        return run(cfg, command=f"ecg2llm.score({shown})")

    if out is None:
        with tempfile.TemporaryDirectory(prefix="ecg2llm_score_") as tmp:
            metrics = _run(tmp)
    else:
        metrics = _run(str(out))
    return ScoreResult(
        verdict=metrics.get("verdict"),
        headline=dict(metrics.get("headline") or {}),
        summary={k: metrics.get(k) for k in SUMMARY_KEYS},
        out=None if out is None else Path(out),
        metrics=metrics,
    )


__all__ = ["ScoreResult", "score"]
