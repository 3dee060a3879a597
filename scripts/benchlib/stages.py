"""The stages of ``scripts/bench.py``: each measures one part of the pipeline and returns table rows.

A stage is ``fn(opts) -> {"rows": [...], "details": {...}}``; ``opts`` holds the parsed flags of
``scripts/bench.py`` plus ``device``. Each runs in its own child process (``scripts/bench.py --child``), so
its peak memory is that process's own. A row is ``{"metric", "value", "unit", "target", "met"}`` where
``target`` is text such as ``">= 5"`` (or None) and ``met`` a bool (or None without a target);
``ecg_s_per_s`` in a row is the seconds of single-lead ECG the stage handles per wall-clock second, which
the scaling table turns into hours per hour of ECG.
"""

from __future__ import annotations

import cProfile
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
FS = 360.0  # MIT-BIH sampling rate, Hz
QUICK_RECORDS = ["100", "101", "103", "105"]  # the tokenize-all stage in --quick mode


def row(metric: str, value: float, unit: str, target: float | None = None, higher: bool = True, **extra) -> dict:
    """One table row; ``met`` compares ``value`` with ``target`` (>= when ``higher``, else <=)."""
    met = None if target is None else (value >= target if higher else value <= target)
    tgt = None if target is None else f"{'>=' if higher else '<='} {target:g}"
    return {"metric": metric, "value": float(value), "unit": unit, "target": tgt, "met": met, **extra}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------- tokenizer
def bench_tokenizer_device(tok, signals: list[np.ndarray], device: str, repeats: int) -> dict:
    """Encode and decode every signal whole, ``repeats`` passes after one warm-up pass (wall and CPU time)."""
    if hasattr(tok, "to"):
        tok.to(device)
    total = sum(len(x) for x in signals)
    ids = [tok.encode(x, tok.fs) for x in signals]  # warm-up (allocator, kernels), and ids for decode
    for i, s in ids:
        tok.decode(i, s)
    enc_wall, dec_wall, enc_cpu, dec_cpu = [], [], [], []
    for _ in range(repeats):
        sync(device)
        w0, c0 = time.perf_counter(), time.process_time()
        ids = [tok.encode(x, tok.fs) for x in signals]
        sync(device)
        w1, c1 = time.perf_counter(), time.process_time()
        for i, s in ids:
            tok.decode(i, s)
        sync(device)
        w2, c2 = time.perf_counter(), time.process_time()
        enc_wall.append(w1 - w0)
        dec_wall.append(w2 - w1)
        enc_cpu.append(c1 - c0)
        dec_cpu.append(c2 - c1)
    return {
        "device": device,
        "samples": total,
        "repeats": repeats,
        "encode_samples_per_s": total / min(enc_wall),
        "decode_samples_per_s": total / min(dec_wall),
        "encode_samples_per_s_median": total / statistics.median(enc_wall),
        "decode_samples_per_s_median": total / statistics.median(dec_wall),
        # CPU seconds of this process: what the code costs without the wait for a busy core
        "encode_samples_per_cpu_s": total / max(min(enc_cpu), 1e-9),
        "decode_samples_per_cpu_s": total / max(min(dec_cpu), 1e-9),
        "encode_wall_s": enc_wall,
        "decode_wall_s": dec_wall,
    }


def stage_tokenizer(o: dict) -> dict:
    """Encode/decode throughput of the tokenizer over DS2 MLII (whole records; first 60 s with --quick), and of
    the round trip (encode then decode; target >= 1 M samples/s for the beat tokenizer v3 on CPU)."""
    from ecg2llm.tokenizer.base import ECGTokenizer
    from ecg2llm.tokenizer.evaluation import load_signals
    from ecg2llm.tokenizer.splits import DS2

    tok = ECGTokenizer.from_pretrained(o["tokenizer"])
    signals = list(load_signals(DS2, o["data_dir"], fs=tok.fs, seconds=60 if o["quick"] else None).values())
    r = bench_tokenizer_device(tok, signals, o["device"], 1 if o["quick"] else 3)
    target = 5e6 if o["device"] == "cpu" else None
    rows = [
        row(
            f"{what} ({len(signals)} DS2 records)",
            r[f"{what}_samples_per_s"] / 1e6,
            "M samples/s",
            None if target is None else target / 1e6,
            ecg_s_per_s=r[f"{what}_samples_per_s"] / tok.fs,
            scale=f"tokenizer {what} only" if what == "encode" else None,
        )
        for what in ("encode", "decode")
    ]
    # the round trip (tokenizer v3's goal: >= 1 M samples/s on 2 CPU cores, beat detection included)
    both = r["samples"] / (r["samples"] / r["encode_samples_per_s"] + r["samples"] / r["decode_samples_per_s"])
    r["encode_decode_samples_per_s"] = both
    r["encode_decode_samples_per_cpu_s"] = r["samples"] / (r["samples"] / r["encode_samples_per_cpu_s"]
                                                           + r["samples"] / r["decode_samples_per_cpu_s"])
    beat = getattr(tok, "tokenizer_type", "") == "beat" and o["device"] == "cpu"
    rows.append(row(f"encode + decode ({len(signals)} DS2 records)", both / 1e6, "M samples/s",
                    1.0 if beat else None, ecg_s_per_s=both / tok.fs,
                    cpu_m_samples_per_s=r["encode_decode_samples_per_cpu_s"] / 1e6))
    return {"rows": rows, "details": {**r, "tokenizer": o["tokenizer"], **tok.describe()}}


# ---------------------------------------------------------------------------------------------- tokenize all
def _tokenize(records: list[str], processes: int, out: Path, o: dict) -> dict:
    """Run ``tokenizer/tokenize_db.py`` over ``records``' leads with ``processes`` processes; wall time, meta."""
    script = str(REPO / "tokenizer" / "tokenize_db.py")
    args = [
        "--out",
        str(out),
        "--leads",
        "all",
        "--records",
        ",".join(records),
        "--download",
        "false",
        "--tokenizer",
        o["tokenizer"],
    ] + (["--data_dir", o["data_dir"]] if o["data_dir"] else [])
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cmd = (launch if processes > 1 else [sys.executable]) + [script, *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd[-12:])} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    meta = json.loads((out / "meta.json").read_text())
    procs = meta["build"]["per_process"]
    return {
        "processes": processes,
        "wall_s": wall,
        "build_s": meta["build"]["seconds"],
        "samples": meta["build"]["samples"],
        "tokens": meta["n_tokens"],
        "entries": sum(p["entries"] for p in procs),
        "peak_rss_mb_sum": sum(p["peak_rss_mb"] for p in procs),
        "per_process": procs,
        "command": " ".join(["python" if processes == 1 else "torchrun"] + cmd[-len(args) - 1 :]),
    }


def stage_tokenize_all(o: dict) -> dict:
    """All 48 records x every lead into one store, sharded over the machine's cores (and, in full mode,
    once more in one process, to show the speed-up and check the two stores are identical)."""
    from ecg2llm.core.distributed import available_cores
    from ecg2llm.tokenizer.data import MITDB_RECORDS
    from ecg2llm.tokenizer.store import TokenStore

    records = QUICK_RECORDS if o["quick"] else list(MITDB_RECORDS)
    n = int(o["processes"] or available_cores())
    runs = [n] + ([1] if n > 1 and not o["quick"] else [])
    with tempfile.TemporaryDirectory(prefix="bench_tokenize_") as tmp:
        res = [_tokenize(records, k, Path(tmp) / f"store_{k}", o) for k in runs]
        identical = None
        if len(res) > 1:
            a, b = (TokenStore.open(Path(tmp) / f"store_{k}") for k in runs)
            identical = bool(
                np.array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
                and [e.__dict__ for e in a.entries()] == [e.__dict__ for e in b.entries()]
            )
    rows = []
    for r in res:
        what = f"{len(records)} records x {r['entries'] // len(records)} leads, {r['processes']} process(es)"
        full = not o["quick"] and r["processes"] == n
        rows.append(
            row(
                f"tokenize {what}: wall time",
                r["wall_s"],
                "s",
                30.0 if full else None,
                higher=False,
                ecg_s_per_s=r["samples"] / FS / r["wall_s"],
                scale=f"tokenize into a store, {r['processes']} process(es)" if r["processes"] == n else None,
            )
        )
        rows.append(
            row(
                f"tokenize {what}: peak memory, sum over processes",
                r["peak_rss_mb_sum"],
                "MB",
                1024.0 if full else None,
                higher=False,
            )
        )
    return {"rows": rows, "details": {"runs": res, "identical_1_vs_n_processes": identical, "records": records}}


# ---------------------------------------------------------------------------------------------- token store
def stage_store(o: dict) -> dict:
    """Token-store write and random-crop read throughput, one-file and 2-shard layouts (random ids)."""
    from ecg2llm.tokenizer.shards import merge_shards, shard_name
    from ecg2llm.tokenizer.store import StoreWriter, TokenStore

    n_total = 2_000_000 if o["quick"] else 40_000_000
    per_entry = 65_000  # one 30-min record at 36 tokens/s
    k = max(2, n_total // per_entry)
    ids = np.random.default_rng(0).integers(0, 4096, per_entry, dtype=np.int64)
    meta = {"config": {"tokenizer_type": "bench"}, "weights_hash": "bench"}
    res, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        for layout, shards in (("one file", 1), ("2 shards", 2)):
            folder = Path(tmp) / f"s{shards}"
            t0 = time.perf_counter()
            names = [shard_name(s, shards) for s in range(shards)] if shards > 1 else ["."]
            for s, name in enumerate(names):
                w = StoreWriter(folder / name, meta, 4096)
                for i in range(s * k // shards, (s + 1) * k // shards):
                    w.add(str(i), "MLII", "train", ids, None, per_entry * 10)
                w.close()
            if shards > 1:
                merge_shards(folder, names)
            write_s = time.perf_counter() - t0
            store = TokenStore.open(folder)
            rng = np.random.default_rng(1)
            batches, batch, length = (50 if o["quick"] else 500), 64, 256
            store.random_crops(length, batch, rng=rng)  # warm-up
            t0 = time.perf_counter()
            for _ in range(batches):
                store.random_crops(length, batch, rng=rng)
            read_s = time.perf_counter() - t0
            res[layout] = {
                "tokens": store.n_tokens(),
                "write_s": write_s,
                "read_tokens": batches * batch * length,
                "read_s": read_s,
                "tokens_type": type(store.tokens).__name__,
            }
            rows.append(
                row(
                    f"store write ({layout}, {store.n_tokens() / 1e6:.0f} M tokens)",
                    store.n_tokens() / write_s / 1e6,
                    "M tokens/s",
                    ecg_s_per_s=store.n_tokens() / 36 / write_s,
                )
            )
            rows.append(
                row(
                    f"store random-crop read ({layout}, {batch} x {length})",
                    batches * batch * length / read_s / 1e6,
                    "M tokens/s",
                )
            )
    return {"rows": rows, "details": {**res, "note": "page cache warm: the store was just written"}}


# ---------------------------------------------------------------------------------------------- LM training
#: Dense bf16 peak TFLOP/s by GPU name (vendor data sheets), for MFU; --peak_tflops overrides.
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def peak_tflops(o: dict) -> float | None:
    if o.get("peak_tflops"):
        return float(o["peak_tflops"])
    name = torch.cuda.get_device_name()
    for key, v in PEAK_BF16_TFLOPS.items():  # "H100 PCIe" is tested before "H100"
        if key in name:
            return v
    return None


def bench_train(config: str, device: str, steps: int, warmup: int, compile_: bool, batch_size: int | None) -> dict:
    """Tokens/s of AdamW steps of the config's model (built as ``lm/train.py`` builds it) on random tokens.

    bf16 autocast on CUDA, and on CPU when the config asks for it (``mixed_precision: bf16``, as
    ``lm/train.py`` runs it: CPU autocast, fp32 weights and optimizer state). FLOPs per token:
    ``6 N + 12 L d T`` (N non-embedding parameters plus the LM head, L layers, d width, T context; PaLM
    appendix B).
    """
    from ecg2llm.core.config import config_from_dict, load_yaml
    from ecg2llm.lm.config import LMTrainConfig
    from ecg2llm.lm.model import build_model, num_parameters, tokenizer_record
    from ecg2llm.tokenizer.base import ECGTokenizer

    cfg = config_from_dict(LMTrainConfig, load_yaml(config))
    tok = ECGTokenizer.from_pretrained(cfg.tokenizer)
    model = build_model(cfg, {**tokenizer_record(tok), "source": cfg.tokenizer}).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.startswith("cuda"))
    step_model = torch.compile(model) if compile_ else model
    b, t = int(batch_size or cfg.batch_size), cfg.context_length
    ids = torch.randint(0, tok.vocab_size, (b, t), generator=torch.Generator().manual_seed(0)).to(device)  # (B, T)
    cuda = device.startswith("cuda")
    cpu_bf16 = not cuda and cfg.mixed_precision == "bf16"
    amp = torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda or cpu_bf16)

    def one_step():
        with amp:
            loss = step_model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):  # compilation, allocator, kernel selection
        one_step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    sync(device)
    wall = time.perf_counter() - t0
    tok_s = steps * b * t / wall
    n_non_emb = num_parameters(model, exclude_embeddings=True)
    head = model.config.vocab_size * cfg.d_model  # the tied LM head still costs its matmul
    flops_per_token = 6 * (n_non_emb + head) + 12 * cfg.n_layer * cfg.d_model * t
    return {
        "config": config,
        "device": device,
        "batch_size": b,
        "context_length": t,
        "steps": steps,
        "n_params": num_parameters(model),
        "n_params_non_embedding": n_non_emb,
        "attention": getattr(model.config, "_attn_implementation", None),
        "precision": "bf16 autocast" if cuda or cpu_bf16 else "fp32",
        "compile": compile_,
        "tokens_per_second": tok_s,
        "seconds_per_step": wall / steps,
        "flops_per_token": flops_per_token,
        "achieved_tflops": tok_s * flops_per_token / 1e12,
        "tokens_per_ecg_second": tok.tokens_per_second,
    }


def stage_train(o: dict) -> dict:
    """LM training tokens/s: ``tiny`` on CPU; on CUDA the >= 50 M-parameter config (bf16, compiled) and MFU."""
    cuda = o["device"].startswith("cuda")
    config = o["train_config"] or str(REPO / "configs" / "lm" / ("base.yaml" if cuda else "tiny.yaml"))
    steps, warmup = (3, 1) if o["quick"] else (30 if cuda else 20, 5 if cuda else 3)
    r = bench_train(
        config,
        o["device"],
        steps,
        warmup,
        compile_=cuda and not o["no_compile"],
        batch_size=4 if o["quick"] and not cuda else None,
    )
    name = Path(config).stem
    rows = [
        row(
            f"train {name} ({r['n_params'] / 1e6:.1f} M params, {r['batch_size']} x {r['context_length']}, "
            f"{r['precision']})",
            r["tokens_per_second"] / 1e3,
            "k tokens/s",
            ecg_s_per_s=r["tokens_per_second"] / r["tokens_per_ecg_second"],
            scale=f"train {name}, one epoch",
        )
    ]
    if cuda:
        peak = peak_tflops(o)
        r["gpu"], r["peak_tflops"] = torch.cuda.get_device_name(), peak
        if peak:
            r["mfu"] = r["achieved_tflops"] / peak
            big = r["n_params"] >= 50e6
            rows.append(
                row(
                    f"train {name}: MFU (peak {peak:g} TFLOP/s bf16{'' if big else ', < 50 M params'})",
                    100 * r["mfu"],
                    "%",
                    40.0 if big else None,
                )
            )
    else:
        rows.append(row(f"train {name}: achieved", r["achieved_tflops"] * 1e3, "GFLOP/s"))
    return {"rows": rows, "details": r}


# ---------------------------------------------------------------------------------------------- generation
def _shown(folder) -> str:
    """A model folder as a result file records it: relative to the repository when inside it (no machine paths)."""
    p = Path(folder).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(folder)


def bench_generate(model_dir: str, device: str, batch: int, seconds: float, repeats: int,
                   lead_guidance: float | None = None, beat_cache: float = 0.0, kv_cache: str = "auto") -> dict:
    """ECG-seconds generated per wall-clock second through :func:`ecg2llm.lm.synthesize.synthesize`, the one path
    ``lm/generate.py`` and the pipeline take (v1: static KV cache; LM v2: control prefix and inline labels;
    tokenizer v2: texture decode on), sampled and decoded to mV; ``lead_guidance`` / ``beat_cache`` as the
    flags of ``lm/generate.py`` (LM v2 only); ``kv_cache`` likewise (``auto``: float16 on CPU where it compiles)."""
    from ecg2llm.lm.beat_layout import is_beat_lm
    from ecg2llm.lm.model import load_lm, load_tokenizer_for
    from ecg2llm.lm.synthesize import synthesize

    model, folder = load_lm(model_dir, device)
    if is_beat_lm(model):  # LM v3: beat stream + detail head + tokenizer v3 decode
        if lead_guidance or beat_cache:
            from ecg2llm.core.errors import ConfigError

            raise ConfigError("LM v3 has no sampler rules: time it without --lead_guidance / --beat_cache")
        return bench_generate_beats(model, folder, device, batch, seconds, repeats, kv_cache=kv_cache)
    tok = load_tokenizer_for(model.config, folder)
    if hasattr(tok, "to"):
        tok.to(device)
    n_tok = int(np.ceil(seconds * tok.tokens_per_second))
    from ecg2llm.lm.control import ControlSpec
    from ecg2llm.lm.request import GenerateConfig

    extra = {k: v for k, v in (("lead_guidance", lead_guidance), ("beat_cache", beat_cache)) if v}
    if ControlSpec.of_model(model) is not None:  # LM v2 (ecg2llm.lm.guidance): its KV cache
        extra["kv_cache"] = kv_cache
    req = GenerateConfig(num_samples=batch, seconds=seconds, batch_size=batch, **extra)  # what the record names
    synthesize(model, tok, replace(req, seconds=0.5), progress=False)  # warm-up (allocations)
    times = []
    for r in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        synthesize(model, tok, replace(req, seed=r), progress=False)
        sync(device)
        times.append(time.perf_counter() - t0)
    return {
        "model": _shown(folder),
        "device": device,
        "batch": batch,
        "seconds_per_sample": seconds,
        "tokens_per_sample": n_tok,
        "context_length": int(model.config.max_position_embeddings),
        "n_params": sum(p.numel() for p in model.parameters()),
        "wall_seconds": times,
        "ecg_seconds_per_second": batch * seconds / min(times),
        "ecg_seconds_per_second_median": batch * seconds / float(np.median(times)),
        "tokens_per_second": batch * n_tok / min(times),
        "sampling": extra,
    }


def bench_generate_beats(model, folder, device: str, batch: int, seconds: float, repeats: int,
                         kv_cache: str = "auto") -> dict:
    """ECG-seconds per second of an LM v3 as ``lm/generate.py`` and :meth:`ecg2llm.ECGPipeline.generate` run it:
    :meth:`ecg2llm.lm.beat_generate.BeatLM.synthesize` (beat stream through the one sampler loop, detail tokens
    from the detail head, tokenizer v3 decode to mV with texture and a sampled baseline where the tokenizer
    has them), ``batch`` samples of ``seconds`` in one batch; the time of each part is in the details.
    ``kv_cache="float16"``: LM v3's opt-in float16 KV cache (other draws); otherwise its float32 cache."""
    from ecg2llm.lm.beat_generate import BeatLM, kv_cache_of
    from ecg2llm.lm.request import GenerateConfig

    t0 = time.perf_counter()
    blm = BeatLM.of_loaded(model, folder)
    load_s = time.perf_counter() - t0
    req = GenerateConfig(num_samples=batch, seconds=seconds, batch_size=batch, kv_cache=kv_cache)  # users' defaults
    blm.synthesize(replace(req, seconds=0.5))  # warm-up (allocations)
    times, parts, beats = [], [], []
    for r in range(repeats):
        blm.timing = dict.fromkeys(blm.timing, 0.0)
        sync(device)
        t0 = time.perf_counter()
        _, _, s, _ = blm.synthesize(replace(req, seed=r))
        sync(device)
        times.append(time.perf_counter() - t0)
        parts.append(dict(blm.timing))
        beats.append(max(len(x) for x in s.rr))
    best = int(np.argmin(times))
    tpb = blm.layout.tokens_per_beat
    return {
        "model": _shown(folder),
        "device": device,
        "lm_version": 3,
        "batch": batch,
        "seconds_per_sample": seconds,
        "beats_drawn_per_sample": beats,  # every row of a batch draws as many beats as the row that needs most
        "tokens_per_beat": tpb,
        "tokens_per_sample": int(beats[best] * tpb),
        "context_length": int(model.config.max_position_embeddings),
        "n_params": sum(p.numel() for p in model.parameters()),
        "detail_head_params": sum(p.numel() for p in blm.detail.parameters()) if blm.detail is not None else 0,
        "setup_s": load_s,
        "wall_seconds": times,
        "parts_s": parts,  # per repeat: beat stream (the sampler loop), detail head, decode to mV
        "ecg_seconds_per_second": batch * seconds / min(times),
        "ecg_seconds_per_second_median": batch * seconds / float(np.median(times)),
        "tokens_per_second": batch * beats[best] * tpb / min(times),
        "sampling": {"detail": req.detail, "texture": req.texture, "kv_cache": kv_cache_of(req, device)},
    }


def random_init_lm(config: str, folder: Path) -> Path:
    """Save an untrained LM of ``config`` (with its tokenizer copy) to time generation at that size."""
    from ecg2llm.core.config import config_from_dict, load_yaml
    from ecg2llm.lm.config import LMTrainConfig
    from ecg2llm.lm.model import TOKENIZER_SUBDIR, build_model, tokenizer_record
    from ecg2llm.tokenizer.base import ECGTokenizer

    cfg = config_from_dict(LMTrainConfig, load_yaml(config))
    tok = ECGTokenizer.from_pretrained(cfg.tokenizer)
    torch.manual_seed(0)
    build_model(cfg, {**tokenizer_record(tok), "source": cfg.tokenizer}).save_pretrained(str(folder))
    tok.save_pretrained(folder / TOKENIZER_SUBDIR)
    return folder


def stage_generate(o: dict) -> dict:
    """Generation speed at several batch sizes: ``--model`` (``v2`` unless given; ``default`` is LM v3), and on
    CUDA an untrained ``small``. Targets on 2 CPU cores: LM v3 >= 500 ECG-s/s at batch 128 x 30 s (beat stream +
    detail + decode); the LMs before it >= 100 at their best batch."""
    cuda = o["device"].startswith("cuda")
    batches = o["gen_batches"] or ([1, 8] if o["quick"] else ([1, 64, 256, 1024] if cuda else [1, 16, 64, 128, 256]))
    seconds, repeats = (2.0, 1) if o["quick"] else (30.0, 2)
    # the targets are stated for full-size batches of 30-s samples: a --quick run (batch 8 x 2 s) is not judged
    full = not o["quick"]
    extra = {k: o.get(k) for k in ("lead_guidance", "beat_cache") if o.get(k)}
    name = Path(str(o["model"])).name + "".join(f", {k} {v:g}" for k, v in extra.items())
    kv = o.get("kv_cache") or "auto"
    if kv != "auto":
        name += f", kv_cache {kv}"
    # the 100 ECG-s/s target is stated for plain sampling; lead guidance / the beat cache are timed, not judged
    models = [(name, o["model"], 100.0 if not cuda and full and not extra else None)]
    rows, res = [], []
    with tempfile.TemporaryDirectory(prefix="bench_gen_") as tmp:
        if cuda:
            small = random_init_lm(str(REPO / "configs" / "lm" / "small.yaml"), Path(tmp) / "small")
            models.append(("small (untrained)", str(small), 10_000.0 if full else None))
        for name, path, target in models:
            kw = {**extra, "kv_cache": kv} if path == o["model"] else {}
            rs = [bench_generate(path, o["device"], b, seconds, repeats, **kw) for b in batches]
            res.extend({"name": name, **r} for r in rs)
            v3 = rs[0].get("lm_version") == 3
            if v3:  # LM v3: the goal is stated at batch 128 x 30 s, beat stream + detail + decode
                name += " (LM v3: beats + detail + decode)"
            for r in rs:
                # (the goal is judged on the default float32 cache; --kv_cache float16 is an opt-in, other draws)
                goal = 500.0 if v3 and target is not None and r["batch"] == 128 and kv != "float16" else None
                rows.append(
                    row(
                        f"generate {name}, batch {r['batch']} x {seconds:g} s",
                        r["ecg_seconds_per_second"],
                        "ECG-s/s",
                        goal,
                        ecg_s_per_s=r["ecg_seconds_per_second"],
                    )
                )
            best = max(rs, key=lambda r: r["ecg_seconds_per_second"])
            rows.append(
                row(
                    f"generate {name}: best batch ({best['batch']})",
                    best["ecg_seconds_per_second"],
                    "ECG-s/s",
                    None if v3 else target,
                    ecg_s_per_s=best["ecg_seconds_per_second"],
                    scale=f"generate {name}",
                )
            )
    return {"rows": rows, "details": {"runs": res}}


# ---------------------------------------------------------------------------------------------- scoring
def stage_score(o: dict) -> dict:
    """Seconds to score synthetic 10-s windows (the tokenizer round trip of held-out DS2 windows) against
    the DS2 reference with every stage-3 metric; the reference and DS1-pool setup is timed apart."""
    from ecg2llm.eval.scorecard.references import tokenizer_roundtrip_windows
    from ecg2llm.eval.scorecard.scorer import Scorer, ScoreSettings
    from ecg2llm.tokenizer.base import ECGTokenizer
    from ecg2llm.tokenizer.splits import DS1, DS2

    n, n_real = (48, 48) if o["quick"] else (1000, 500)
    ref_records, train_records = (DS2[:4], DS1[:2]) if o["quick"] else (DS2, DS1)
    import contextlib

    warm = bool(o.get("score_cache"))
    ctx = contextlib.nullcontext(o["score_cache"]) if warm else tempfile.TemporaryDirectory(prefix="bench_score_")
    with ctx as tmp:  # a fresh cache (nothing precomputed: the setup row is the cold start) unless --score_cache
        t0 = time.perf_counter()
        settings = ScoreSettings(
            data_dir=o["data_dir"],
            reference_records=tuple(ref_records),
            train_records=tuple(train_records),
            n_real=n_real,
            cache_dir=tmp,
            headline=True,
            # the shipped LM's training data: the copy search covers every window it saw (both leads of 19
            # MIT-BIH records, 8,528 CinC 2017 recordings; scorecard v3), built in the timed cold start
            training_data=None if o["quick"] else "default",
        )
        if o["quick"]:  # a small band pool: the quick run checks the plumbing, not the speed
            settings.calibration = {"draws": 8, "disc_draws": 3, "pool_per_record": 12}
        scorer = Scorer(settings, verbose=False)
        scorer.train_pool()
        scorer.train_reference()
        windows = tokenizer_roundtrip_windows(ECGTokenizer.from_pretrained(o["tokenizer"]), scorer.heldout_real(n))
        if settings.headline:  # real bands depend on the reference and n only: reference setup, timed apart
            scorer.calibration().band(len(windows))
        setup_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory(prefix="bench_score_fresh_") as fresh:
            # the scored set's features and copy-search distances are computed, never read back from the cache
            # (a warm cache holds them after the first run); the reference, pool, index and bands stay loaded
            scorer.cache = Path(fresh)
            prof = cProfile.Profile() if o.get("score_profile") else None
            t0 = time.perf_counter()
            if prof is not None:
                prof.enable()
            scored = scorer.score_windows("bench", windows)
            score_s = time.perf_counter() - t0
            if prof is not None:
                prof.disable()
        top = _profile_top(prof, 15) if prof is not None else None
    per_1000 = score_s * 1000 / len(windows.x)
    window_s = windows.x.shape[1] / windows.fs
    rows = [
        row(
            f"score {len(windows.x)} synthetic windows (reference {n_real} DS2 windows)"
            + (" (under cProfile)" if o.get("score_profile") else ""),
            per_1000,
            "s per 1,000 windows",
            ecg_s_per_s=1000 * window_s / per_1000,
            scale="score synthetic ECG",
        ),
        row(f"score: {'setup with a warm cache' if warm else 'cold start'} (reference, band pool, training-window "
            f"index, bands; {len(train_records)} DS1 records)", setup_s, "s"),
    ]
    return {
        "rows": rows,
        "details": {
            "n_windows": len(windows.x),
            "window_s": window_s,
            "score_s": score_s,
            "setup_s": setup_s,
            "rfed": scored.get("rfed"),
            "memo_index_windows": len(scorer.calibration().index) if settings.headline else None,
            "profile_top_cumulative_s": top,  # cProfile of the scoring call: where the time goes
        },
    }


def _profile_top(prof, k: int) -> list[dict]:
    """The ``k`` functions of a cProfile run with the most cumulative time (seconds, calls), for the result file."""
    import pstats

    st = pstats.Stats(prof)
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][3])[:k]
    return [{"function": f"{Path(fn).name}:{line}({name})", "cumulative_s": round(ct, 2), "calls": int(nc)}
            for (fn, line, name), (_, nc, _, ct, _) in rows]


STAGES = {
    "tokenizer": stage_tokenizer,
    "tokenize_all": stage_tokenize_all,
    "store": stage_store,
    "train": stage_train,
    "generate": stage_generate,
    "score": stage_score,
}
#: Stages that also run on CUDA when a GPU is present (the others are CPU work by design).
CUDA_STAGES = ("tokenizer", "train", "generate")
