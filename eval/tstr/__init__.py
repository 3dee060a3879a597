"""The TSTR study: train a beat classifier on synthetic beats, test it on real DS2 patients.

:mod:`~ecg2llm.eval.tstr.study` (the arms), :mod:`~ecg2llm.eval.tstr.strong_classifier` and
:mod:`~ecg2llm.eval.tstr.beat_features` (the inter-patient tree classifier and its features),
:mod:`~ecg2llm.eval.tstr.report` (``tstr.json`` / ``tstr.md``). Launched by ``python scripts/tstr.py``
(``ecg2llm tstr``). The beats and the CNN beat classifier it shares with condition adherence live one level up
(:mod:`ecg2llm.eval.beats`, :mod:`ecg2llm.eval.beat_classifier`).
"""
