"""ecg2llm: ECG -> tokens -> GPT -> synthetic ECG. The public front door of the three stage packages.

.. code-block:: python

    from ecg2llm import ECGPipeline
    pipe = ECGPipeline.from_pretrained("default")            # shipped name, local folder or Hub id
    x = pipe.generate(num_samples=8, seconds=10, seed=0)     # (8, 3600) float32 mV at pipe.fs (360 Hz)

The stages stay where they are (``tokenizer/``, ``lm/``, ``eval/``); this package only puts one class
(:class:`ECGPipeline`) and one console command (``ecg2llm``, :mod:`ecg2llm.cli`) in front of them.
Importing it is cheap: torch and transformers load when a pipeline is first built.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ECGPipeline", "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .pipeline import ECGPipeline


def __getattr__(name: str) -> Any:
    """Lazy attributes (PEP 562): ``ECGPipeline`` and ``__version__`` are resolved on first use."""
    if name == "ECGPipeline":
        from .pipeline import ECGPipeline

        return ECGPipeline
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("ecg2llm")
        except PackageNotFoundError:  # a checkout on sys.path that was never pip-installed
            return "0+unknown"
    raise AttributeError(f"module 'ecg2llm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
