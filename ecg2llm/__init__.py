"""ecg2llm: ECG -> tokens -> GPT -> synthetic ECG. The public front door of the three stage packages.

.. code-block:: python

    import ecg2llm
    from ecg2llm import ECGPipeline
    pipe = ECGPipeline.from_pretrained("default")            # shipped name, local folder or Hub id
    x = pipe.generate(num_samples=8, seconds=10, seed=0)     # (8, 3600) float32 mV at pipe.fs (360 Hz)

    result = ecg2llm.score("runs/gen")                        # the verdicts `ecg2llm score` prints

One installed name: the stage folders of the checkout (``tokenizer/``, ``lm/``, ``eval/``) import as
``ecg2llm.tokenizer``, ``ecg2llm.lm`` and ``ecg2llm.eval``; the plumbing they share is :mod:`ecg2llm.core`.
In front of them: one class (:class:`ECGPipeline`), one function (:func:`score`) and one console command
(``ecg2llm``, :mod:`ecg2llm.cli`). Importing this package is cheap: no stage, torch or transformers loads
until a pipeline is built or a folder scored.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ECGPipeline", "ScoreResult", "score", "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .pipeline import ECGPipeline
    from .scoring import ScoreResult, score


def __getattr__(name: str) -> Any:
    """Lazy attributes (PEP 562): ``ECGPipeline`` and ``__version__`` are resolved on first use."""
    if name == "ECGPipeline":
        from .pipeline import ECGPipeline

        return ECGPipeline
    if name in ("score", "ScoreResult"):
        from . import scoring

        return getattr(scoring, name)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("ecg2llm")
        except PackageNotFoundError:  # a checkout on sys.path that was never pip-installed
            return "0+unknown"
    raise AttributeError(f"module 'ecg2llm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
