"""Tokenize a WFDB database into a token store (library side of ``tokenizer/tokenize_db.py``).

One process writes a one-file store. Several processes (``accelerate launch`` / ``torchrun`` of
``tokenizer/tokenize_db.py``, each calling :func:`build_store` with its :class:`ProcessGroup`) each tokenize a
contiguous run of records, balanced by length (:func:`ecg2llm.tokenizer.shards.plan_shards`), into their own shard
folder inside the main process's temporary store folder; after every shard is complete the main process
writes the global index (:func:`ecg2llm.tokenizer.shards.merge_shards`) and renames the folder into place. A
process that fails makes every process raise (its message is gathered), and nothing is renamed: the
previous store, or none, stays.
"""
from __future__ import annotations

import resource
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ecg2llm.core.distributed import ProcessGroup
from ecg2llm.core.errors import ConfigError, RecordError, StoreError
from ecg2llm.core.io import atomic_path, ensure_writable_dir, git_sha, versions

from .base import ECGTokenizer
from .data import MITDB_RECORDS, ensure_database, read_header, read_record, resolve_data_dir
from .shards import merge_shards, plan_shards, shard_name
from .splits import PACED, inter_patient_split
from .store import StoreWriter, TokenStore


@dataclass
class TokenizeConfig:
    """What to tokenize and where (``python -m ecg2llm.tokenizer.tokenize_db --help`` lists these as flags)."""

    out: str = "runs/store"              # store folder (replaced atomically if it exists)
    tokenizer: str = "default"           # tokenizer folder or "default" (the shipped one)
    data_dir: str | None = None          # data root (contains mitdb/); else $ECG2LLM_DATA or ~/.cache/ecg2llm
    db: str = "mitdb"
    records: list[str] = field(default_factory=list)   # empty = every record of the database
    leads: list[str] = field(default_factory=lambda: ["MLII"])  # lead names, or ["all"] for every lead
    valid_records: list[str] = field(default_factory=lambda: ["101", "112", "119", "208"])
    download: bool = True                # fetch missing records from PhysioNet
    overwrite: bool = True               # replace an existing store at `out`
    num_threads: int = 0                 # torch threads per process; 0 = this machine's cores / its processes
    device: str = "cpu"                  # encode on cpu, cuda (process i on cuda:<local rank i>) or auto


def split_of(record: str, valid_records) -> str:
    """``train``/``valid``/``test`` by the inter-patient split, ``excluded`` for paced and other records."""
    if record in PACED:
        return "excluded"
    return inter_patient_split(valid_records).of(record)


def build_store(cfg: TokenizeConfig, tokenizer: ECGTokenizer | None = None, progress: bool = True,
                group: ProcessGroup | None = None) -> TokenStore:
    """Tokenize every chosen (record, lead) and write the store at ``cfg.out`` atomically.

    Records that lack a requested lead are skipped and listed in ``meta.json`` under ``skipped``.

    Parameters
    ----------
    cfg : TokenizeConfig
    tokenizer : ECGTokenizer, optional
        Default: ``ECGTokenizer.from_pretrained(cfg.tokenizer)``.
    progress : bool
        A tqdm bar (on the main process only).
    group : ProcessGroup, optional
        The processes building the store together; every one of them must call this function. Default:
        this process alone (a one-file store). With several, the store is sharded, one shard per process;
        the multi-node case needs ``cfg.out`` on a file system every node sees.

    Returns
    -------
    TokenStore
        The store, opened (on every process).
    """
    group = group or ProcessGroup()
    tok = tokenizer if tokenizer is not None else ECGTokenizer.from_pretrained(cfg.tokenizer)
    if cfg.device != "cpu":
        tok.to(_device(cfg.device, group.local_rank))
    out = Path(cfg.out)
    ensure_writable_dir(out.parent)  # fail before any work, with the folder named
    if out.exists() and not cfg.overwrite:
        raise ConfigError(f"token store {out} exists; pass --overwrite true to replace it")
    root = resolve_data_dir(cfg.data_dir)
    records = [str(r) for r in cfg.records] or (list(MITDB_RECORDS) if cfg.db == "mitdb" else None)
    # the main process downloads what is missing while the others wait, then every process checks
    _agree(group, lambda: ensure_database(root, cfg.db, records, download=cfg.download, annotator=None)
           if group.is_main else None)
    db_dir = _agree(group, lambda: ensure_database(root, cfg.db, records, download=False, annotator=None))[group.rank]
    if records is None:
        from .data import _records_on_disk

        records = _records_on_disk(db_dir)
    t0 = time.perf_counter()
    split_info = inter_patient_split(cfg.valid_records).as_dict() | {"excluded": list(PACED)}
    build = {"git_sha": git_sha(), "versions": versions(), "config": asdict(cfg), "processes": group.world_size}
    with atomic_path(out) if group.is_main else nullcontext(None) as tmp:
        tmp = Path(group.broadcast(str(tmp) if tmp is not None else None))
        if group.world_size == 1:
            writer, info = _write_shard(tmp, tok, records, cfg, root, db_dir, progress, rank=0)
            if not writer.entries:
                raise RecordError(f"nothing to tokenize: no record of {records} has the lead(s) {cfg.leads}")
            writer.close({
                "db": cfg.db, "leads": cfg.leads, "skipped": info.pop("skipped"), "split": split_info,
                "build": {"seconds": round(time.perf_counter() - t0, 2), "samples": info["samples"], **build,
                          "per_process": [info]},
            })
        else:
            infos = _agree(group, lambda: _sharded_part(tmp, tok, records, cfg, root, db_dir, progress, group))
            if not sum(i["entries"] for i in infos):
                raise RecordError(f"nothing to tokenize: no record of {records} has the lead(s) {cfg.leads}")
            skipped = [s for i in infos for s in i.pop("skipped")]
            extra = {"db": cfg.db, "leads": cfg.leads, "skipped": skipped, "split": split_info,
                     "build": {"seconds": round(time.perf_counter() - t0, 2),
                               "samples": sum(i["samples"] for i in infos), **build, "per_process": infos}}
            _agree(group, lambda: merge_shards(tmp, [shard_name(i["rank"], group.world_size) for i in infos], extra)
                   if group.is_main else None)
    group.barrier()  # the main process has renamed the store into place
    return TokenStore.open(out)


def _device(spec: str, local_rank: int) -> str:
    import torch

    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda, but torch sees no GPU; use --device cpu or auto")
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    if spec.startswith("cuda:") or spec == "cpu":
        return spec
    raise ConfigError(f"--device must be cpu, cuda, cuda:N or auto, got {spec!r}")


def _agree(group: ProcessGroup, fn: Callable[[], object]) -> list:
    """Run ``fn`` on every process and gather the results; if it failed anywhere, raise everywhere.

    The failing process re-raises its own exception; the others raise a :class:`StoreError` quoting it,
    so no process is left waiting in a collective for one that has gone.
    """
    try:
        result, err, exc = fn(), None, None
    except Exception as e:  # noqa: BLE001 - every failure must reach the other processes
        result, err, exc = None, f"{type(e).__name__}: {e}", e
    gathered = group.all_gather((result, err))
    if exc is not None:
        raise exc
    failed = [(rank, e) for rank, (_, e) in enumerate(gathered) if e]
    if failed:
        rank, msg = failed[0]
        raise StoreError(f"process {rank} of {group.world_size} failed ({msg}); nothing was written")
    return [r for r, _ in gathered]


def _sharded_part(tmp: Path, tok, records: list[str], cfg: TokenizeConfig, root: Path, db_dir: Path,
                  progress: bool, group: ProcessGroup) -> dict:
    """This process's shard: its contiguous run of records, balanced by length, written and closed."""
    sizes = []
    for rec in records:
        h = read_header(rec, db_dir)
        names = list(h.sig_name or [])
        n_leads = len(names) if cfg.leads == ["all"] else sum(lead in names for lead in cfg.leads)
        sizes.append(int(h.sig_len or 0) * n_leads / float(h.fs or 1.0))  # seconds of signal to encode
    a, b = plan_shards(sizes, group.world_size)[group.rank]
    writer, info = _write_shard(tmp / shard_name(group.rank, group.world_size), tok, records[a:b], cfg, root,
                                db_dir, progress and group.is_main, rank=group.rank)
    writer.close({"db": cfg.db, "leads": cfg.leads, "skipped": info["skipped"],
                  "build": {k: v for k, v in info.items() if k != "skipped"}})
    return info


def _write_shard(folder: Path, tok, records: list[str], cfg: TokenizeConfig, root: Path, db_dir: Path,
                 progress: bool, rank: int) -> tuple[StoreWriter, dict]:
    """Tokenize ``records`` into a :class:`StoreWriter` at ``folder`` (not yet closed) and describe the work."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    writer = StoreWriter(folder, {"config": tok.config_dict(), **tok.describe()}, tok.vocab_size)
    skipped, n_samples = [], 0
    for rec in tqdm(records, desc=f"tokenizing {cfg.db}", unit="record", disable=not progress):
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
            n_samples += len(r.signal)
    info = {"rank": rank, "records": list(records), "entries": len(writer.entries), "tokens": writer.n_tokens,
            "samples": n_samples, "seconds": round(time.perf_counter() - t0, 2),
            # ru_maxrss is in KiB on Linux: the process's peak resident memory so far
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "skipped": skipped}
    return writer, info
