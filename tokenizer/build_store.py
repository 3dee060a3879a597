"""Tokenize a WFDB database into a token store (library side of ``tokenizer/tokenize.py``)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .base import ECGTokenizer
from .data import MITDB_RECORDS, ensure_database, read_header, read_record, resolve_data_dir
from .errors import ConfigError, RecordError
from .splits import PACED, inter_patient_split
from .store import StoreWriter, TokenStore
from .utils.io import atomic_path, ensure_writable_dir, git_sha, versions


@dataclass
class TokenizeConfig:
    """What to tokenize and where (``python -m tokenizer.tokenize --help`` lists these as flags)."""

    out: str = "runs/store"              # store folder (replaced atomically if it exists)
    tokenizer: str = "default"           # tokenizer folder or "default" (the shipped one)
    data_dir: str | None = None          # data root (contains mitdb/); else $ECG2LLM_DATA or ~/.cache/ecg2llm
    db: str = "mitdb"
    records: list[str] = field(default_factory=list)   # empty = every record of the database
    leads: list[str] = field(default_factory=lambda: ["MLII"])  # lead names, or ["all"] for every lead
    valid_records: list[str] = field(default_factory=lambda: ["101", "112", "119", "208"])
    download: bool = True                # fetch missing records from PhysioNet
    overwrite: bool = True               # replace an existing store at `out`


def split_of(record: str, valid_records) -> str:
    """``train``/``valid``/``test`` by the inter-patient split, ``excluded`` for paced and other records."""
    if record in PACED:
        return "excluded"
    return inter_patient_split(valid_records).of(record)


def build_store(cfg: TokenizeConfig, tokenizer: ECGTokenizer | None = None, progress: bool = True) -> TokenStore:
    """Tokenize every chosen (record, lead) and write the store at ``cfg.out`` atomically.

    Records that lack a requested lead are skipped and listed in ``meta.json`` under ``skipped``.
    """
    from tqdm.auto import tqdm

    tok = tokenizer if tokenizer is not None else ECGTokenizer.from_pretrained(cfg.tokenizer)
    out = Path(cfg.out)
    ensure_writable_dir(out.parent)  # fail before any work, with the folder named
    if out.exists() and not cfg.overwrite:
        raise ConfigError(f"token store {out} exists; pass --overwrite true to replace it")
    root = resolve_data_dir(cfg.data_dir)
    records = [str(r) for r in cfg.records] or (list(MITDB_RECORDS) if cfg.db == "mitdb" else None)
    db_dir = ensure_database(root, cfg.db, records, download=cfg.download, annotator=None)
    if records is None:
        from .data import _records_on_disk

        records = _records_on_disk(db_dir)
    t0 = time.perf_counter()
    skipped = []
    n_samples_total = 0
    with atomic_path(out) as tmp:
        writer = StoreWriter(tmp, {"config": tok.config_dict(), **tok.describe()}, tok.vocab_size)
        bar = tqdm(records, desc=f"tokenizing {cfg.db}", unit="record", disable=not progress)
        for rec in bar:
            names = list(read_header(rec, db_dir).sig_name or [])
            leads = names if cfg.leads == ["all"] else list(cfg.leads)
            for lead in leads:
                if lead not in names:
                    skipped.append({"record": rec, "lead": lead, "reason": f"no such lead (has {names})"})
                    continue
                r = read_record(rec, root, lead=lead, annotations=False, db=cfg.db)
                ids, state = tok.encode(r.signal, r.fs)
                n = int(round(len(r.signal) * tok.fs / r.fs))
                writer.add(rec, lead, split_of(rec, cfg.valid_records), ids, state, n)
                n_samples_total += len(r.signal)
        if not writer.entries:
            raise RecordError(f"nothing to tokenize: no record of {records} has the lead(s) {cfg.leads}")
        writer.close({
            "db": cfg.db, "leads": cfg.leads, "skipped": skipped,
            "split": inter_patient_split(cfg.valid_records).as_dict() | {"excluded": list(PACED)},
            "build": {"seconds": round(time.perf_counter() - t0, 2), "samples": n_samples_total,
                      "git_sha": git_sha(), "versions": versions(), "config": asdict(cfg)},
        })
    return TokenStore.open(out)
