"""Exceptions with messages a user can act on: what was wrong, where, and what to do.

Entry points catch :class:`ECG2LLMError` and print its message on one line (no traceback unless
``--debug``), so every error raised on bad input should be one of these.
"""


class ECG2LLMError(Exception):
    """Base class of every error this project raises on bad input or bad state."""


class DataNotFoundError(ECG2LLMError, FileNotFoundError):
    """The database folder or some of its records are missing."""


class RecordError(ECG2LLMError, ValueError):
    """A WFDB record exists but cannot be used (corrupt header, truncated signal, missing lead, NaN...)."""


class TokenizerError(ECG2LLMError, ValueError):
    """Bad input to a tokenizer (ids outside the vocabulary, bad shapes) or a bad tokenizer folder."""


class StoreError(ECG2LLMError, ValueError):
    """A token store is missing, incomplete or inconsistent."""


class ConfigError(ECG2LLMError, ValueError):
    """A configuration file or command-line override is invalid."""
