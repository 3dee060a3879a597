"""A nearest-neighbour index over the embeddings of **every** training segment the scored LM saw, aligned at beats.

The memorization headline (:mod:`ecg2llm.eval.scorecard.headline`) counts windows closer to a training segment
than 99 % of unseen real windows are. Which training data: all that the LM saw (its ``training_data.json``,
:mod:`ecg2llm.eval.scorecard.pool`): every MIT-BIH record and every lead of it the LM trained on (not only MLII),
and every CinC 2017 recording in its corpus (300 Hz, resampled to 360 Hz like the training stores).

**Shift-invariant search: beat-aligned segments.** A generator (or a planted copy) can reproduce a training
record from any sample, not from the 2.5-s grid an index of 10-s windows would hold; an off-grid copy sits up
to 1.25 s from the nearest grid window, and with a grid index 74 % of exact off-grid copies escaped the
1 % copy threshold (``docs/results/planted.json`` before this change: ``train_copy`` 0.26). So both sides are
cut at **anchors**, samples fixed by the signal itself rather than by where a window starts:

* an anchor is a strict local maximum, within +-``NMS_S`` (0.5 s), of the slope energy
  ``e = sum over 0.1 s of (x[t+1] - x[t-1])^2``: in an ECG, the QRS complex of a beat (one anchor per beat at
  regular rates up to 120 bpm; a beat within 0.5 s of a larger one is none: 135 anchors for 207 beats of
  record 208's first two minutes). The rule reads only the signal within ~0.6 s of the anchor, so a
  window cut anywhere from a training signal has, away from its edges, **exactly** the training signal's
  anchors (no detector state, no window-level threshold);
* a segment is the ``SEGMENT_S`` (5 s) of signal from ``PRE_S`` (0.25 s) before an anchor. The index holds
  the segment of every anchor of every training signal; a 10-s query window is searched from each of its
  first ``max_anchors`` (2) anchors whose segment fits in it (an anchor in ``[0.6 s, 5.25 s]``), and its
  distance is the smallest. A copy of training signal at any offset therefore meets its own source segment:
  distance 0. Why 5 s and not the whole window: a segment must fit after an anchor inside the window, and the
  embedding's cost (the cold start embeds ~3 x 10^5 segments) grows with its length; 5 s is half a window, so
  a window that repeats half a window of a training signal is a copy too.

The embedding is the frozen scorecard network (fully convolutional, global pooling: it takes 5-s input as
it takes 10-s input). For ``default`` (LM v2d) the index holds ~10^5 MIT-BIH and ~2.4 x 10^5 CinC segments,
64-d float32.

Search: exact Euclidean 1-NN (blocked float32 products with a running minimum, :func:`nearest`). Why exact
and not an approximate index (faiss, pynndescent): at ~3 x 10^5 x 64 an exact query of 2,000 segments is a ~4 x 10^10
multiply-add product (seconds on 2 cores), so approximation buys little here, and an ANN's missed neighbours
would *under*-count copies, the one error a privacy check must not make. Beyond ~10^7 segments an IVF index
would be the next step.

Cache: the embeddings as ``safetensors`` plus a JSON sidecar (segment names, the spec), under the scorer's
cache folder, keyed by the training-data spec (:func:`ecg2llm.eval.scorecard.pool.spec_key`), the alignment
and segment settings and the embedding's weights hash. No pickle. ``align="grid"`` keeps the earlier search
(10-s windows at a ``stride_s`` hop, queried with the whole window), for comparison.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

FS = 360.0
SEGMENT_S = 5.0   # segment length (s): an anchor in the first 5.25 s of a 10-s window leaves room for it
PRE_S = 0.25      # the segment starts this long before its anchor (the P wave of the anchor's beat)
NMS_S = 0.5       # an anchor is the strict maximum of the slope energy within +- this
ENERGY_S = 0.1    # slope energy summed over this window (a QRS is ~0.1 s)
ALIGNS = ("beat", "grid")


def slope_energy(x: np.ndarray, fs: float = FS) -> tuple[np.ndarray, int]:
    """``(e, offset)``: ``e[k]`` = sum of squared central differences over ``ENERGY_S``, centred on sample
    ``k + offset``. Each value is summed from its own samples only (no running sum), so a copy of a signal has
    bit-identical values at the same samples wherever it was cut."""
    x = np.asarray(x, np.float64)
    w = max(1, int(round(ENERGY_S * fs)))
    if len(x) < w + 2:
        return np.zeros(0), 0
    d = x[2:] - x[:-2]
    e = np.lib.stride_tricks.sliding_window_view(d * d, w).sum(axis=1)
    return e, 1 + w // 2


def anchors(x: np.ndarray, fs: float = FS) -> np.ndarray:
    """Anchor samples of a 1-D signal: strict local maxima of :func:`slope_energy` within +-``NMS_S``
    (a plateau counts once, at its first sample), only where the whole +-``NMS_S`` neighbourhood lies inside
    the signal (so the rule never reads past an edge, and a cut window's anchors equal the source's)."""
    e, off = slope_energy(x, fs)
    r = int(round(NMS_S * fs))
    if len(e) < 2 * r + 1:
        return np.zeros(0, np.int64)
    from scipy.ndimage import maximum_filter1d

    m = maximum_filter1d(e, size=r, mode="constant", cval=-np.inf)  # m[i] = max e[i - r // 2 : i - r // 2 + r]
    k = np.arange(r, len(e) - r)
    left = m[k - r + r // 2]              # max e[k - r : k]
    right = m[k + 1 + r // 2]             # max e[k + 1 : k + r + 1]
    ek = e[k]
    keep = (ek > left) & (ek >= right) & (ek > 0)
    return (k[keep] + off).astype(np.int64)


def _segment_starts(sig_len: int, anchor: np.ndarray, fs: float = FS) -> np.ndarray:
    pre, seg = int(round(PRE_S * fs)), int(round(SEGMENT_S * fs))
    s = anchor - pre
    return s[(s >= 0) & (s + seg <= sig_len)]


def query_segments(windows: np.ndarray, fs: float = FS, max_anchors: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The beat-aligned segments a set of windows is searched with.

    Returns ``(segments (M, SEGMENT_S * fs), owner (M,))``: up to ``max_anchors`` segments per window (its first
    anchors whose segment fits), and which window each belongs to. A window without such an anchor (flat, or no
    beat in its first 5.25 s) is searched with its first ``SEGMENT_S`` instead (not aligned: reported as such by
    :meth:`TrainingIndex.query_windows`).
    """
    x = np.asarray(windows, np.float32)
    seg = int(round(SEGMENT_S * fs))
    if x.ndim != 2 or x.shape[1] < seg:
        raise ValueError(f"query windows must be (N, T) with T >= {seg} samples ({SEGMENT_S:g} s at {fs:g} Hz), "
                         f"got shape {x.shape}")
    segs, owner = [], []
    for i, w in enumerate(x):
        st = _segment_starts(len(w), anchors(w, fs), fs)[:max_anchors]
        if not len(st):
            st = np.zeros(1, np.int64)
        for s in st:
            segs.append(w[int(s): int(s) + seg])
            owner.append(i)
    if not segs:
        return np.zeros((0, seg), np.float32), np.zeros(0, np.int64)
    return np.stack(segs), np.asarray(owner, np.int64)


def _grid_windows(sig: np.ndarray, win: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """``(K, win)`` windows at a ``hop`` of a 1-D signal and their starts; one edge-padded window when shorter."""
    x = np.asarray(sig, np.float32)
    x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
    if len(x) < win:
        if not len(x):
            return np.zeros((0, win), np.float32), np.zeros(0, np.int64)
        return np.pad(x, (0, win - len(x)), mode="edge")[None], np.zeros(1, np.int64)
    starts = np.arange(0, len(x) - win + 1, hop)
    return np.lib.stride_tricks.sliding_window_view(x, win)[starts], starts


def _beat_segments(sig: np.ndarray, fs: float = FS) -> tuple[np.ndarray, np.ndarray]:
    """Every anchor-aligned ``SEGMENT_S`` segment of a training signal and its start; a signal shorter than a
    segment gives one edge-padded segment from sample 0."""
    x = np.asarray(sig, np.float32)
    x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
    seg = int(round(SEGMENT_S * fs))
    if len(x) < seg:
        return _grid_windows(x, seg, seg)
    starts = _segment_starts(len(x), anchors(x, fs), fs)
    return np.lib.stride_tricks.sliding_window_view(x, seg)[starts], starts


def nearest(index: np.ndarray, q: np.ndarray, block: int = 1024, chunk: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean 1-NN of each row of ``q`` among the rows of ``index``: ``(distance, row)``.

    ``|x|^2 - 2 q.x`` (the ranking of ``|q - x|^2`` for each query) in float32, over ``block`` queries x
    ``chunk`` index rows at a time with a running minimum, so each product stays in cache (4x faster than one
    ``block x len(index)`` product per block, measured on 2,000 queries x 343,821 rows); ties keep the first row.
    The winner's distance is recomputed exactly in float64, so a copy reads 0, not float32 rounding of a large
    sum.
    """
    q = np.ascontiguousarray(q, np.float32)
    x = np.ascontiguousarray(index, np.float32)
    xx = np.einsum("ij,ij->i", x, x)
    d_out = np.empty(len(q))
    i_out = np.empty(len(q), np.int64)
    for a in range(0, len(q), block):
        qb = q[a: a + block]
        best = np.full(len(qb), np.inf, np.float32)
        arg = np.zeros(len(qb), np.int64)
        rows = np.arange(len(qb))
        for b in range(0, len(x), chunk):
            s = qb @ x[b: b + chunk].T
            s *= -2.0
            s += xx[b: b + chunk]
            j = np.argmin(s, axis=1)
            v = s[rows, j]
            upd = v < best
            best[upd], arg[upd] = v[upd], j[upd] + b
        i_out[a: a + len(qb)] = arg
        diff = qb.astype(np.float64) - x[arg].astype(np.float64)
        d_out[a: a + len(qb)] = np.sqrt((diff * diff).sum(axis=1))
    return d_out, i_out


def training_sources(spec: dict, data_dir=None) -> list[tuple[str, callable]]:
    """``[(name, loader)]`` of every training signal of ``spec``: ``loader()`` gives it in mV at 360 Hz."""
    from ecg2llm.eval.scorecard.pool import cinc_recordings
    from ecg2llm.tokenizer.data import read_header, read_record, resolve_data_dir

    root = resolve_data_dir(data_dir)
    out = []
    m = spec.get("mitdb") or {}
    leads = set(m.get("leads") or [])
    for rec in m.get("records", []):
        names = list(read_header(str(rec), root / "mitdb").sig_name or [])
        for lead in names:
            if leads and lead not in leads:
                continue
            out.append((f"mitdb:{rec}:{lead}",
                        lambda rec=rec, lead=lead: read_record(str(rec), root, lead=lead, fs=FS,
                                                               annotations=False).signal))
    if (spec.get("cinc2017") or {}).get("used"):
        from ecg2llm.tokenizer.cinc2017 import read_cinc2017

        for n in cinc_recordings(spec, root):
            out.append((f"cinc2017:{n}", lambda n=n: read_cinc2017(n, root, fs=FS)))
    return out


class TrainingIndex:
    """Embeddings of every training segment (or grid window) of one LM and an exact 1-NN search over them.

    Parameters
    ----------
    emb : np.ndarray
        ``(P, D)`` float32 embeddings.
    names : list of str
        ``"<corpus>:<recording>[:<lead>]@<start sample at 360 Hz>"`` of each row.
    spec : dict
        The training data they cover.
    align : str
        ``"beat"``: anchor-aligned ``SEGMENT_S`` segments (shift-invariant); ``"grid"``: whole windows at a hop.
    """

    def __init__(self, emb: np.ndarray, names: list[str], spec: dict, align: str = "beat"):
        if len(emb) != len(names) or not len(emb):
            raise ValueError(f"a training index needs one name per embedding and at least one row, got "
                             f"{len(emb)} embeddings and {len(names)} names")
        if align not in ALIGNS:
            raise ValueError(f"align must be one of {ALIGNS}, got {align!r}")
        self.emb = np.ascontiguousarray(emb, np.float32)
        self.names, self.spec, self.align = list(names), spec, align
        self.key = ""  # the cache key it was built or read under (build sets it)

    def __len__(self) -> int:
        return len(self.emb)

    def query(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance to, and index of, each embedding's nearest training row: ``(Q,)``, ``(Q,)``."""
        from threadpoolctl import threadpool_limits

        if not len(emb):
            return np.zeros(0), np.zeros(0, np.int64)
        with threadpool_limits(limits=2, user_api="blas"):
            return nearest(self.emb, emb)

    def query_windows(self, windows: np.ndarray, embedder, fs: float = FS,
                      max_anchors: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Distance to, and index of, each 10-s window's nearest training row, searched as the index was built
        (``beat``: from each of the window's first ``max_anchors`` anchors, the smallest distance; ``grid``: the
        whole window). ``windows``: ``(N, T)`` mV at ``fs`` (resampled to 360 Hz)."""
        x = np.asarray(windows, np.float32)
        if not len(x):
            return np.zeros(0), np.zeros(0, np.int64)
        if float(fs) != FS:
            from ecg2llm.tokenizer.data import resample

            x = np.stack([resample(w, float(fs), FS) for w in x]).astype(np.float32)
        if self.align == "grid":
            return self.query(embedder.embed(x, FS))
        segs, owner = query_segments(x, FS, max_anchors)
        d, j = self.query(embedder.embed(segs, FS, any_length=True))
        best_d = np.full(len(x), np.inf)
        best_j = np.zeros(len(x), np.int64)
        for k in np.argsort(d, kind="stable")[::-1]:  # the smallest distance of each window is written last
            best_d[owner[k]], best_j[owner[k]] = d[k], j[k]
        return best_d, best_j

    def by_corpus(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.names:
            c = n.split(":", 1)[0]
            out[c] = out.get(c, 0) + 1
        return out

    def describe(self) -> dict:
        m = self.spec.get("mitdb") or {}
        search = ("exact 1-NN of beat-aligned segments (an anchor at every QRS; a window searched from its "
                  f"first anchors): {SEGMENT_S:g}-s segments from {PRE_S:g} s before each anchor"
                  if self.align == "beat" else "exact 1-NN of whole windows on a fixed hop (not shift-invariant)")
        return {"windows": len(self), "by_corpus": self.by_corpus(), "mitdb_records": list(m.get("records", [])),
                "mitdb_leads": list(m.get("leads", [])), "align": self.align,
                "cinc2017": bool((self.spec.get("cinc2017") or {}).get("used")), "search": search}

    # ----------------------------------------------------------------------------- building and caching
    @classmethod
    def build(cls, spec: dict, embedder, data_dir=None, window_s: float = 10.0, stride_s: float = 2.5,
              cache_dir=None, batch_windows: int = 4096, progress: bool = True, log=print,
              align: str = "beat") -> "TrainingIndex":
        """Embed every training segment of ``spec`` (or read them from ``cache_dir``). ``window_s`` and
        ``stride_s`` are the grid's (``align="grid"``); the beat index's segments are :data:`SEGMENT_S`."""
        from ecg2llm.eval.scorecard.pool import spec_key

        if align not in ALIGNS:
            raise ValueError(f"align must be one of {ALIGNS}, got {align!r}")
        shape = (f"{window_s:g}_{stride_s:g}" if align == "grid"
                 else f"beat{SEGMENT_S:g}_{PRE_S:g}_{NMS_S:g}_{ENERGY_S:g}")
        key = f"{spec_key(spec)}_{shape}_{embedder.weights_hash[:12]}"
        base = Path(cache_dir) / f"train_index_{key}" if cache_dir else None
        if base is not None and base.with_suffix(".safetensors").is_file() and base.with_suffix(".json").is_file():
            from safetensors.numpy import load_file

            meta = json.loads(base.with_suffix(".json").read_text())
            idx = cls(load_file(str(base.with_suffix(".safetensors")))["emb"], meta["names"], meta["spec"],
                      meta.get("align", "grid"))
            idx.key = key
            return idx
        from tqdm.auto import tqdm

        t = time.time()
        win, hop = int(round(window_s * FS)), int(round(stride_s * FS))
        embs, names, buf, buf_names = [], [], [], []

        def flush():
            if buf:
                embs.append(embedder.embed(np.concatenate(buf), FS, any_length=True).astype(np.float32))
                names.extend(buf_names)
                buf.clear()
                buf_names.clear()

        sources = training_sources(spec, data_dir)
        for name, load in tqdm(sources, desc=f"training index ({align})", unit="signal", disable=not progress):
            w, starts = _grid_windows(load(), win, hop) if align == "grid" else _beat_segments(load(), FS)
            if not len(w):
                continue
            buf.append(np.array(w, np.float32))
            buf_names.extend(f"{name}@{int(s)}" for s in starts)
            if len(buf_names) >= batch_windows:
                flush()
        flush()
        if not names:
            from ecg2llm.core.errors import ConfigError

            raise ConfigError("the training-data spec names no training signal: nothing to search copies in")
        idx = cls(np.concatenate(embs), names, spec, align)
        idx.key = key
        if base is not None:
            from safetensors.numpy import save_file

            from ecg2llm.core.io import atomic_path, write_json

            base.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(base.with_suffix(".safetensors")) as tmp:
                save_file({"emb": idx.emb}, str(tmp))
            write_json(base.with_suffix(".json"), {"names": names, "spec": spec, "align": align,
                                                   "window_s": window_s, "stride_s": stride_s,
                                                   "segment_s": SEGMENT_S, "pre_s": PRE_S,
                                                   "weights_hash": embedder.weights_hash})
        log(f"training index: {len(idx)} {'segments' if align == 'beat' else 'windows'} {idx.by_corpus()} "
            f"embedded ({time.time() - t:.0f} s)")
        return idx
