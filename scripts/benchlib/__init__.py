"""Stages and report of ``scripts/bench.py`` (a folder, not ``scripts/*.py``: these are not entry points)."""
