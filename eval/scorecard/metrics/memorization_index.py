"""A nearest-neighbour index over the embeddings of **every** 10-s window the scored LM trained on.

The memorization headline (:mod:`ecg2llm.eval.scorecard.headline`) counts windows closer to a training window than 99
% of unseen
real windows are. Which training windows: all that the LM saw (its ``training_data.json``,
:mod:`ecg2llm.eval.scorecard.pool`):

* every MIT-BIH record and every lead of it the LM trained on (not only MLII), 10-s windows at a
  ``stride_s`` hop (2.5 s: a copy at any offset is at most 1.25 s from an indexed window);
* every CinC 2017 recording in its corpus (300 Hz, resampled to 360 Hz like the training stores; recordings
  shorter than a window are edge-padded to it), at the same hop.

For the shipped v2 LMs that is ~27 k MIT-BIH and ~80 k CinC windows, 64-d float32 (~27 MB).

Search: exact Euclidean 1-NN with :class:`sklearn.neighbors.NearestNeighbors` (``algorithm="brute"``,
blocked matrix products). Why exact and not an approximate index (faiss, pynndescent): at ~10^5 x 64 an exact
query of 1,000 windows is a ~7 GFLOP matrix product (well under a second on 2 cores), so approximation buys
nothing here, and an ANN's missed neighbours would *under*-count copies, the one error a privacy check must not
make. sklearn is already a dependency (no new package). Beyond ~10^7 windows an IVF index would be the next step.

Cache: the embeddings as ``safetensors`` plus a JSON sidecar (window names, the spec), under the scorer's cache
folder, keyed by the training-data spec (:func:`ecg2llm.eval.scorecard.pool.spec_key`), window, hop and the
embedding's weights
hash. No pickle.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

FS = 360.0


def _windows(sig: np.ndarray, win: int, hop: int) -> np.ndarray:
    """``(K, win)`` windows at a ``hop`` of a 1-D signal; one edge-padded window when it is shorter."""
    x = np.asarray(sig, np.float32)
    x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
    if len(x) < win:
        return np.pad(x, (0, win - len(x)), mode="edge")[None] if len(x) else np.zeros((0, win), np.float32)
    starts = np.arange(0, len(x) - win + 1, hop)
    return np.lib.stride_tricks.sliding_window_view(x, win)[starts]


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
    """Embeddings of every training window of one LM and an exact 1-NN search over them.

    Parameters
    ----------
    emb : np.ndarray
        ``(P, D)`` float32 embeddings.
    names : list of str
        ``"<corpus>:<recording>[:<lead>]@<start sample at 360 Hz>"`` of each row.
    spec : dict
        The training data they cover.
    """

    def __init__(self, emb: np.ndarray, names: list[str], spec: dict):
        from sklearn.neighbors import NearestNeighbors

        if len(emb) != len(names) or not len(emb):
            raise ValueError(f"a training index needs one name per embedding and at least one row, got "
                             f"{len(emb)} embeddings and {len(names)} names")
        self.emb = np.ascontiguousarray(emb, np.float32)
        self.names, self.spec = list(names), spec
        self.nn = NearestNeighbors(n_neighbors=1, algorithm="brute", metric="euclidean").fit(self.emb)

    def __len__(self) -> int:
        return len(self.emb)

    def query(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance to, and index of, each row's nearest training window: ``(Q,)``, ``(Q,)``."""
        from threadpoolctl import threadpool_limits

        q = np.ascontiguousarray(emb, np.float32)
        if not len(q):
            return np.zeros(0), np.zeros(0, np.int64)
        with threadpool_limits(limits=2):
            d, i = self.nn.kneighbors(q, n_neighbors=1, return_distance=True)
        return d[:, 0].astype(np.float64), i[:, 0].astype(np.int64)

    def by_corpus(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.names:
            c = n.split(":", 1)[0]
            out[c] = out.get(c, 0) + 1
        return out

    def describe(self) -> dict:
        m = self.spec.get("mitdb") or {}
        return {"windows": len(self), "by_corpus": self.by_corpus(), "mitdb_records": list(m.get("records", [])),
                "mitdb_leads": list(m.get("leads", [])),
                "cinc2017": bool((self.spec.get("cinc2017") or {}).get("used")),
                "search": "exact 1-NN, sklearn NearestNeighbors(algorithm='brute')"}

    # ----------------------------------------------------------------------------- building and caching
    @classmethod
    def build(cls, spec: dict, embedder, data_dir=None, window_s: float = 10.0, stride_s: float = 2.5,
              cache_dir=None, batch_windows: int = 4096, progress: bool = True, log=print) -> "TrainingIndex":
        """Embed every training window of ``spec`` (or read them from ``cache_dir``)."""
        from ecg2llm.eval.scorecard.pool import spec_key

        key = f"{spec_key(spec)}_{window_s:g}_{stride_s:g}_{embedder.weights_hash[:12]}"
        base = Path(cache_dir) / f"train_index_{key}" if cache_dir else None
        if base is not None and base.with_suffix(".safetensors").is_file() and base.with_suffix(".json").is_file():
            from safetensors.numpy import load_file

            meta = json.loads(base.with_suffix(".json").read_text())
            return cls(load_file(str(base.with_suffix(".safetensors")))["emb"], meta["names"], meta["spec"])
        from tqdm.auto import tqdm

        t = time.time()
        win, hop = int(round(window_s * FS)), int(round(stride_s * FS))
        embs, names, buf, buf_names = [], [], [], []

        def flush():
            if buf:
                embs.append(embedder.embed(np.concatenate(buf), FS).astype(np.float32))
                names.extend(buf_names)
                buf.clear()
                buf_names.clear()

        sources = training_sources(spec, data_dir)
        for name, load in tqdm(sources, desc="training-window index", unit="signal", disable=not progress):
            w = _windows(load(), win, hop)
            buf.append(np.array(w, np.float32))
            buf_names.extend(f"{name}@{k * hop}" for k in range(len(w)))
            if len(buf_names) >= batch_windows:
                flush()
        flush()
        if not names:
            from ecg2llm.core.errors import ConfigError

            raise ConfigError("the training-data spec names no training signal: nothing to search copies in")
        idx = cls(np.concatenate(embs), names, spec)
        if base is not None:
            from safetensors.numpy import save_file

            from ecg2llm.core.io import atomic_path, write_json

            base.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(base.with_suffix(".safetensors")) as tmp:
                save_file({"emb": idx.emb}, str(tmp))
            write_json(base.with_suffix(".json"), {"names": names, "spec": spec, "window_s": window_s,
                                                   "stride_s": stride_s, "weights_hash": embedder.weights_hash})
        log(f"training-window index: {len(idx)} windows {idx.by_corpus()} embedded ({time.time() - t:.0f} s)")
        return idx
