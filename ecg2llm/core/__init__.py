"""core: errors, config parsing, CLI helpers, save/load and Hub helpers, distributed helpers.

The wiring every stage imports (``ecg2llm.tokenizer``, ``ecg2llm.lm``, ``ecg2llm.eval`` and the facade), kept
apart from the stages so that no stage reaches into another's internals for plumbing:

* :mod:`ecg2llm.core.errors` -- the exceptions with actionable messages (:class:`ECG2LLMError` and kin);
* :mod:`ecg2llm.core.config` -- YAML + ``--key value`` overrides into dataclasses (:func:`parse_config`);
* :mod:`ecg2llm.core.cli` -- ``run_main``: one ``error:`` line and exit code 2 on bad input;
* :mod:`ecg2llm.core.io` -- atomic writes, run metadata (git sha, versions);
* :mod:`ecg2llm.core.hub` -- safetensors + JSON folders, local or on the Hugging Face Hub;
* :mod:`ecg2llm.core.distributed` -- multi-process launch helpers.

Importing it is cheap and imports no stage package (``tests/test_layering.py`` checks both).
"""
