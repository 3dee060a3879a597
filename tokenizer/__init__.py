"""Stage 1 of ecg2llm: ECG data, tokenizers (ECG in mV <-> integer tokens), and the token store.

>>> from ecg2llm.tokenizer import ECGTokenizer
>>> tok = ECGTokenizer.from_pretrained("default")        # doctest: +SKIP
>>> ids, state = tok.encode(signal_mv, fs)               # doctest: +SKIP
>>> x_hat = tok.decode(ids, state)                       # doctest: +SKIP
"""
from ecg2llm.core.errors import ConfigError, DataNotFoundError, ECG2LLMError, RecordError, StoreError, TokenizerError

from .base import ECGTokenizer, register_tokenizer
from .data import ECGRecord, ensure_database, read_record, resolve_data_dir
from .seed_tokenizer import SeedTokenizer, SeedTokenizerConfig
from .splits import DS1, DS2, PACED, inter_patient_split

__all__ = [
    "ECGTokenizer", "register_tokenizer", "SeedTokenizer", "SeedTokenizerConfig", "ECGRecord",
    "read_record", "ensure_database", "resolve_data_dir", "DS1", "DS2", "PACED", "inter_patient_split",
    "ECG2LLMError", "DataNotFoundError", "RecordError", "TokenizerError", "StoreError", "ConfigError",
]
