"""The scorecard: one folder of synthetic ECGs scored against held-out real patients.

:class:`~ecg2llm.eval.scorecard.scorer.Scorer` (one real reference, one frozen embedding), the metrics
(:mod:`~ecg2llm.eval.scorecard.metrics`), the clinical measurements, the headline verdicts judged against the
spread of real unseen patients (:mod:`~ecg2llm.eval.scorecard.headline`), the reference rows
(:mod:`~ecg2llm.eval.scorecard.references`) and the report. The entry point is ``eval/score.py``
(``ecg2llm score``; ``ecg2llm.score(folder)`` in Python).
"""
