"""Fit tokenizer v3 (``beat``) on DS1: closed form (PCA + k-means), minutes on 2 CPU cores.

Launch (the shipped ``v3``; see ``tokenizer/pretrained/v3/README.md``)::

    python tokenizer/train.py --config configs/tokenizer/beat_v3.yaml --data_dir ../shared/data

Data (inter-patient: nothing of DS2 is read): MLII (and, with ``second_lead``, the other lead) of the DS1
training records (DS1 minus the validation records), each optionally at several ``gains``. Every signal is
split into band and baseline and its beats detected exactly as at inference; then

1. **coarse**: PCA of the R-aligned band windows, each group of coefficients quantized by its own k-means
   codebook; optionally (``coarse_pair_weight`` > 0) the codebooks of the scalar groups are re-centred
   towards the mean of each pair of neighbouring beats of one record (an invariance step: a code cell holds
   beats whose neighbours fall in it too);
2. **detail**: the residual of each cycle after the coarse decode, warped around R, PCA + k-means groups;
3. **fallback**: band segments of ``fallback_s`` (the fallback units of the training signals plus segments
   drawn at random positions), PCA + k-means groups.

The run directory gets ``run_info.json``, ``metrics.json`` (fit sizes, validation band error, repeat
figure) and ``tokenizer/`` (``config.json`` + ``model.safetensors``, plus v2's ``texture.safetensors`` and
``wander.json`` when ``extras_from`` names a folder that has them).
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecg2llm.core.io import ensure_writable_dir, write_json, write_run_info

from ..beat_codec import ProductCode, warp_cycles
from ..beat_layout import BEAT
from ..beat_tokenizer import BeatTokenizer, BeatTokenizerConfig
from ..splits import inter_patient_split


@dataclass
class TrainConfig(BeatTokenizerConfig):
    """Fit of a ``beat`` tokenizer: every field of :class:`BeatTokenizerConfig` plus the fields below."""

    tokenizer_type: str = "beat"
    output_dir: str = "runs/tokenizer/beat"
    data_dir: str | None = None
    valid_records: list[str] = field(default_factory=list)
    second_lead: bool = True
    gains: list[float] = field(default_factory=lambda: [1.0])
    max_fit: int = 60000  # vectors per k-means fit (subsampled)
    kmeans_iters: int = 25
    random_segments_per_record: int = 400
    extras_from: str | None = "v2"  # copy texture.safetensors / wander.json from this tokenizer
    valid_seconds: float = 300.0
    seed: int = 0


def kmeans(x: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; ``(n, d)`` -> ``(k, d)`` centres (duplicates if n < k)."""
    x = np.asarray(x, np.float32)
    n = len(x)
    if n <= k:
        return np.concatenate([x, x[rng.integers(0, max(n, 1), k - n)]]) if n else np.zeros((k, x.shape[1]), np.float32)
    c = np.empty((k, x.shape[1]), np.float32)
    c[0] = x[rng.integers(n)]
    d2 = ((x - c[0]) ** 2).sum(1)
    for j in range(1, k):
        p = d2 / max(d2.sum(), 1e-30)
        c[j] = x[rng.choice(n, p=p)]
        d2 = np.minimum(d2, ((x - c[j]) ** 2).sum(1))
    xn = (x ** 2).sum(1)
    for _ in range(iters):  # (n, k) distances up to ||x||^2
        assign = np.argmin((c ** 2).sum(1)[None] - 2.0 * x @ c.T, axis=1)
        cnt = np.bincount(assign, minlength=k)
        sums = np.stack([np.bincount(assign, weights=x[:, d], minlength=k) for d in range(x.shape[1])], 1)
        empty = cnt == 0
        c[~empty] = sums[~empty] / cnt[~empty, None]
        if empty.any():  # re-seed empty cells at the worst-coded points
            err = xn - 2 * (x * c[assign]).sum(1) + (c[assign] ** 2).sum(1)
            c[empty] = x[np.argsort(err)[-int(empty.sum()):]]
    return c


def fit_product_code(x: np.ndarray, groups: list[int], n_codes: int, iters: int, max_fit: int,
                     rng: np.random.Generator) -> ProductCode:
    """PCA of ``x`` (rows), first ``sum(groups)`` components, one k-means codebook per group."""
    x = np.asarray(x, np.float64)
    if len(x) > max_fit:
        x = x[rng.choice(len(x), max_fit, replace=False)]
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    p = sum(groups)
    if vt.shape[0] < p:
        raise ValueError(f"only {vt.shape[0]} components for {p} coefficients; fit on more vectors")
    basis = vt[:p]
    z = ((x - mean) @ basis.T).astype(np.float32)
    cb = np.zeros((len(groups), n_codes, max(groups)), np.float32)
    a = 0
    for j, g in enumerate(groups):
        cb[j, :, :g] = kmeans(z[:, a : a + g], n_codes, iters, rng)
        if g == 1:  # scalar codebooks sorted, so neighbouring codes are neighbouring values
            cb[j, :, 0] = np.sort(cb[j, :, 0])
        a += g
    return ProductCode(mean, basis, list(groups), cb)


def _signals(cfg: TrainConfig, records) -> list[tuple[str, np.ndarray]]:
    from ..data import read_header, read_record, resolve_data_dir

    out = []
    for r in records:
        leads = ["MLII"]
        if cfg.second_lead:
            leads += [s for s in read_header(r, resolve_data_dir(cfg.data_dir) / "mitdb").sig_name if s != "MLII"][:1]
        for lead in leads:
            x = read_record(r, cfg.data_dir, lead=lead, fs=cfg.fs, annotations=False).signal
            for g in cfg.gains:
                out.append((f"{r}:{lead}:x{g:g}", (np.asarray(x, np.float32) * float(g))))
    return out


def beat_timeline(tok: BeatTokenizer, x: np.ndarray) -> dict:
    """How ``tok`` cuts ``x`` (mV at ``tok.fs``) into units, as encoding does: the band signal and its baseline
    knots, each unit's kind, start, R and end sample, ``bandp`` (the band zero-padded to the last unit's end,
    ``total`` samples) and ``is_beat`` (the beat units)."""
    band, knots = tok.split(x)
    kind, rr = tok.plan_units(tok.detect(band), len(band))
    start, r, end = tok.timeline(kind, rr)
    total = int(max(end.max() if len(end) else 0, len(band)))
    bandp = np.zeros(total, np.float32)
    bandp[: len(band)] = band
    return {"band": band, "knots": knots, "kind": kind, "start": start, "r": r, "end": end, "bandp": bandp,
            "total": total, "is_beat": kind == BEAT}


def fit_tokenizer(cfg: TrainConfig, signals: list[tuple[str, np.ndarray]],
                  progress: bool = True) -> tuple[BeatTokenizer, dict]:
    """Fit the three product codes of a ``beat`` tokenizer on ``signals`` (name, mV at ``cfg.fs``)."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(cfg.seed)
    tcfg = BeatTokenizerConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(BeatTokenizerConfig)})
    tok = BeatTokenizer(tcfg)
    parsed, windows, fb_segs = [], [], []
    F = tok.fallback_n
    for _name, x in tqdm(signals, desc="beats", disable=not progress):
        t = beat_timeline(tok, x)
        band, bandp, kind, start, r, end, b, total = (t[k] for k in ("band", "bandp", "kind", "start", "r", "end",
                                                                       "is_beat", "total"))
        windows.append(tok.coarse_windows(band, r[b]))
        parsed.append((bandp, start[b], r[b], end[b], tok.chain_breaks(kind)))
        pos = np.concatenate([start[~b], rng.integers(0, max(len(band) - F, 1), cfg.random_segments_per_record)])
        fb_segs.append(bandp[np.minimum(pos[:, None] + np.arange(F), total - 1)])
    t0 = time.perf_counter()
    W = np.concatenate(windows)
    coarse = fit_product_code(W, cfg.coarse_groups, cfg.coarse_codes, cfg.kmeans_iters, cfg.max_fit, rng)
    tok.model.coarse.set(coarse)
    tok.reset_codes()
    res = []
    for bandp, s, r, e, brk in parsed:
        cw = coarse.decode(tok.encode_coarse(tok.coarse_windows(bandp, r), brk))
        csig = tok.place_coarse(cw, s, r, e, len(bandp))
        res.append(warp_cycles(bandp - csig, s, r, e, cfg.detail_pre, cfg.detail_post))
    detail = fit_product_code(np.concatenate(res), cfg.detail_groups, cfg.detail_codes, cfg.kmeans_iters,
                              cfg.max_fit, rng)
    tok.model.detail.set(detail)
    fallback = fit_product_code(np.concatenate(fb_segs), cfg.fallback_groups, cfg.fallback_codes,
                                cfg.kmeans_iters, cfg.max_fit, rng)
    tok.model.fallback.set(fallback)
    tok.reset_codes()
    info = {"signals": len(signals), "beats": int(len(W)), "fallback_segments": int(sum(len(s) for s in fb_segs)),
            "fit_s": time.perf_counter() - t0}
    return tok, info


def copy_extras(src: str | None, folder: Path) -> list[str]:
    """Copy v2's texture bank and wander model (outside the weights hash) into a saved v3 folder."""
    if not src:
        return []
    from ..base import PRETRAINED_DIR

    p = Path(src) if Path(src).is_dir() else PRETRAINED_DIR / src
    copied = []
    for name in ("texture.safetensors", "wander.json"):
        if (p / name).is_file():
            shutil.copyfile(p / name, folder / name)
            copied.append(name)
    return copied


def run(cfg: TrainConfig) -> Path:
    """Fit on DS1 training records, score the validation records, save ``<output_dir>/tokenizer``."""
    from ..beat_eval import band_scores, repeat_scores
    from ..evaluation import load_signals

    t0 = time.perf_counter()
    out = ensure_writable_dir(cfg.output_dir)
    write_run_info(out, dataclasses.asdict(cfg))
    split = inter_patient_split(cfg.valid_records or None)
    tok, info = fit_tokenizer(cfg, _signals(cfg, split.train))
    folder = tok.save_pretrained(out / "tokenizer")
    info["extras"] = copy_extras(cfg.extras_from, folder)
    valid = load_signals(split.valid, cfg.data_dir, fs=cfg.fs, seconds=cfg.valid_seconds)
    tok = BeatTokenizer.from_pretrained(folder)
    info["valid"] = band_scores(tok, valid)
    info["valid_repeat"] = repeat_scores(tok, split.valid, cfg.data_dir, seconds=cfg.valid_seconds, min_pairs=20)
    info["train_s"] = time.perf_counter() - t0
    write_json(out / "metrics.json", info)
    print({k: info["valid"][k] for k in ("rmse_uv", "prdn", "tokens_per_second")}, info["valid_repeat"]["repeat"])
    return folder
