"""LM v3 goals that need no scorecard run: beat consistency, regular rhythm, heart rate, bits, speed.

Launch::

    python scripts/eval_lm_v3.py --model lm/pretrained/v3 --data_dir ../shared/data \\
        --out docs/results/lm_v3.json --n 100 --seconds 30

Generated: ``--n`` unconditional samples of ``--seconds`` (``source:mitdb lead:MLII``, null conditions; with a
per-beat rhythm slot ``--rhythm_slot`` says whether the model draws it, ``sample``, or it is held at
``rhythm:?``, ``null``; empty: the model's own default).
Real: ``--n`` random ``--seconds`` MLII windows of DS2 (seed ``--seed``). On both, per 30-s window the
scorecard's ``beat_consistency`` (:func:`ecg2llm.eval.scorecard.clinical.clinical_features`: median Pearson r of each
beat's
QRS-T with the window's median beat, neurokit2 R peaks) and heart rate; per 10-s window the regular share
(RR CV < 0.1, wfdb XQRS, :mod:`ecg2llm.lm.rhythm_check`). Bits: the LM's negative log-likelihood per beat (the
label, RR and coarse tokens of each beat after the control prefix) and per ECG second, on whole-context
tiles of the validation records and of DS2 (with a rhythm slot: the beat's label, RR and coarse
tokens given the real rhythm slots, ``bits_per_beat``, and the rhythm slots' own bits beside it). Speed: ECG
seconds per second at batch ``--bench_batch`` x ``--seconds`` (beat stream + detail + decode), on this machine's
CPU threads.
"""
import json
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import torch

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import ConfigError


@dataclass
class EvalLMv3Config:
    """Fields of ``scripts/eval_lm_v3.py``."""

    model: str = "lm/pretrained/v3"
    store: str = "runs/store/beats_v3b"  # the beat store (validation and DS2 tiles)
    data_dir: str | None = None
    out: str | None = None  # the results JSON (required)
    n: int = 100
    seconds: float = 30.0
    seed: int = 0
    temperature: float = 1.0
    detail: str = "mean"
    texture: bool = False
    bench_batch: int = 128
    threads: int = 0
    bits: bool = True  # false: skip the bits per beat (validation and DS2 tiles)
    rhythm_slot: str = ""  # sample | null: the unconditional rhythm slot (empty: the model's default)


def real_windows(data_dir, n: int, seconds: float, seed: int) -> np.ndarray:
    from ecg2llm.tokenizer.data import read_record
    from ecg2llm.tokenizer.splits import DS2

    rng = np.random.default_rng(seed)
    sig = {r: read_record(r, data_dir, lead="MLII", annotations=False).signal for r in DS2}
    out = []
    for _ in range(n):
        r = DS2[int(rng.integers(len(DS2)))]
        x = sig[r]
        a = int(rng.integers(0, len(x) - int(seconds * 360)))
        out.append(x[a:a + int(seconds * 360)])
    return np.stack(out).astype(np.float32)


def window_stats(x: np.ndarray, fs: float) -> dict:
    from ecg2llm.eval.scorecard.clinical import clinical_features
    from ecg2llm.lm.rhythm_check import rhythm_stats

    f = clinical_features(x, fs)
    bc, hr = f["beat_consistency"], f["hr_bpm"]
    n10 = int(10 * fs)
    tens = np.stack([w[i:i + n10] for w in x for i in range(0, x.shape[1] - n10 + 1, n10)])
    rs = rhythm_stats(list(tens), fs)
    cv = np.asarray(rs["cv"], float)
    return {"n_windows": int(len(x)), "beat_consistency_median": float(np.nanmedian(bc)),
            "beat_consistency_q10": float(np.nanpercentile(bc, 10)), "hr_median_bpm": float(np.nanmedian(hr)),
            "regular_share_10s_xqrs": float(np.mean(np.where(np.isfinite(cv), cv < 0.1, False))),
            "n_10s_windows": int(len(tens))}


@torch.inference_mode()
def bits(blm, corpus, split: str, length: int) -> dict:
    """NLL per beat (its label, RR and Kc coarse tokens) and per ECG second over whole-context tiles of ``split``;
    with a rhythm slot its tokens are given (the real rhythm at each beat) and their own bits reported apart."""
    from ecg2llm.lm.beat_layout import N_PREFIX

    tiles = torch.as_tensor(corpus.tiles(split, length - 1))
    x = torch.cat([torch.full((len(tiles), 1), blm.bos), tiles], 1)
    tpb, lay = blm.layout.tokens_per_beat, blm.layout
    nll, nll_rhythm, beats = 0.0, 0.0, 0
    for i in range(0, len(x), 8):
        b = x[i:i + 8]
        lg = blm.model(input_ids=b).logits[:, :-1].float()
        t = torch.nn.functional.cross_entropy(lg.transpose(1, 2), b[:, 1:], reduction="none")  # (B, L-1)
        body = t[:, N_PREFIX:]  # targets from the first beat's first token on
        n_b = body.shape[1] // tpb
        body = body[:, :n_b * tpb].reshape(len(b), n_b, tpb)
        nll += float(body[:, :, lay.label_col:].sum())
        nll_rhythm += float(body[:, :, :lay.label_col].sum())
        beats += len(b) * n_b
    per_beat = nll / beats / math.log(2)
    recs = corpus.entries(split)
    beats_per_s = sum(len(r.r) for r in recs) / sum(r.seconds for r in recs)
    out = {"bits_per_beat": per_beat, "bits_per_second": per_beat * beats_per_s, "beats": beats,
           "beats_per_second": beats_per_s, "tiles": int(len(tiles)),
           "bits_per_token": per_beat / (tpb - lay.label_col)}
    if lay.rhythm_slot:
        out["rhythm_slot_bits_per_beat"] = nll_rhythm / beats / math.log(2)
    return out


@run_main
def main(argv=None):
    """Measure and write the JSON (command, git sha, date included)."""
    from ecg2llm.core.io import git_sha, write_json
    from ecg2llm.lm.beat_generate import BeatLM
    from ecg2llm.lm.beatstream import BeatCorpus, load_records
    from ecg2llm.lm.synthesize import GenerateConfig

    a = parse_config(EvalLMv3Config, argv, description=__doc__)
    if not a.out:
        raise ConfigError("--out is required: the results JSON to write, e.g. docs/results/lm_v3.json")
    from ecg2llm.lm.model import resolve_model_dir

    resolve_model_dir(a.model)  # a shipped name (default, v3...) or a folder; one clear error otherwise
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.rhythm_slot not in ("", "sample", "null"):
        raise ConfigError(f"--rhythm_slot must be sample, null or empty (the model's default), got {a.rhythm_slot!r}")
    blm = BeatLM.from_folder(a.model)
    if a.rhythm_slot:
        blm.rhythm_slot = a.rhythm_slot
    texture = bool(a.texture)
    res = {"command": "python scripts/eval_lm_v3.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "git_sha": git_sha(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "model": str(a.model), "torch_threads": torch.get_num_threads(),
           "rhythm_slot": blm.rhythm_slot if blm.layout.rhythm_slot else None}
    req = GenerateConfig(num_samples=a.n, seconds=a.seconds, seed=a.seed, batch_size=min(a.n, 128),
                         temperature=a.temperature, detail=a.detail, texture=texture)
    x, ann, s, dt = blm.synthesize(req)
    res["generated"] = {**window_stats(x, blm.tok.fs), "temperature": a.temperature, "detail": a.detail,
                        "texture": texture, "seconds_spent": dt,
                        "label_shares": _label_shares(s.labels)}
    if blm.layout.rhythm_slot and s.beat_rhythm[0] is not None:
        res["generated"]["rhythm_slot_shares"] = _label_shares(s.beat_rhythm)
    res["real_ds2"] = window_stats(real_windows(a.data_dir, a.n, a.seconds, a.seed), 360.0)
    g, r = res["generated"], res["real_ds2"]
    res["goals"] = {
        "beat_consistency_median": _goal(g["beat_consistency_median"], r["beat_consistency_median"], 0.01),
        "beat_consistency_q10": _goal(g["beat_consistency_q10"], r["beat_consistency_q10"], 0.05),
        "regular_share_10s": _goal(g["regular_share_10s_xqrs"], r["regular_share_10s_xqrs"], 0.10),
        "hr_median_bpm": _goal(g["hr_median_bpm"], r["hr_median_bpm"], 5.0)}
    if a.bits:
        records, meta = load_records(a.store)
        corpus = BeatCorpus(records, blm.spec, blm.layout, blm.model.config.pad_token_id)
        res["bits"] = {s_: bits(blm, corpus, s_, blm.context) for s_ in ("valid", "test")}
    if a.bench_batch:
        bench = GenerateConfig(num_samples=a.bench_batch, seconds=a.seconds, seed=1, batch_size=a.bench_batch,
                               detail=a.detail, texture=texture)
        t0 = time.perf_counter()
        blm.synthesize(bench)
        el = time.perf_counter() - t0
        res["speed"] = {"batch": a.bench_batch, "seconds": a.seconds, "wall_s": el,
                        "ecg_seconds_per_second": a.bench_batch * a.seconds / el, "threads": torch.get_num_threads(),
                        "includes": "beat stream + detail head + tokenizer decode"}
    write_json(a.out, res)
    print(json.dumps({k: res[k] for k in ("goals",)}, indent=1))
    return 0


def _goal(value, real, tol) -> dict:
    return {"generated": value, "real": real, "tolerance": tol, "met": bool(abs(value - real) <= tol)}


def _label_shares(labels) -> dict:
    flat = np.concatenate([np.asarray(v) for v in labels])
    names, k = np.unique(flat, return_counts=True)
    return {(str(n) or "?"): float(c / len(flat)) for n, c in zip(names, k)}


if __name__ == "__main__":
    sys.exit(main())
