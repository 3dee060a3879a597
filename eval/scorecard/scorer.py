"""The scoring core: one real reference, one frozen embedding, any number of window sets scored alike.

.. code-block:: python

    from ecg2llm.eval.scorecard.scorer import Scorer, ScoreSettings
    scorer = Scorer(ScoreSettings(data_dir="../shared/data"))   # DS2 reference, DS1 training pool
    row = scorer.score_windows("my generator", windows_mv)        # (N, 3600) at 360 Hz -> metrics dict

Every row of a report -- the synthetic set, real DS1 (the ceiling), ECGSYN, a tokenizer round trip, a
bigram sampler -- goes through :meth:`Scorer.score_windows`, so the rows differ only in their windows.

Caching: features (embedding, R-peaks, spectra) are cached per window set under ``cache_dir``, keyed by
a SHA-256 of the window bytes, the sampling rate and the embedding's weights hash; the DS1 training-pool
embeddings are cached per data folder and settings. A second scoring run with the same reference reads
them back in about a second. Delete the folder to start afresh.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg2llm.tokenizer.data import resolve_data_dir
from ecg2llm.tokenizer.splits import DS1, DS2

from ..data import FS, WINDOW_S, WindowSet, real_windows
from .embedding import Embedder
from .features import FEATURE_VERSION, Features, cache_key, compute_features
from .headline import Calibration, CalibrationSettings
from .metrics import (
    discriminative_score,
    frechet_distance,
    memorization_metrics,
    mmd_rbf,
    nearest_distances,
    physiology_metrics,
    prdc,
)

#: Bump when feature definitions change, so stale caches are not read.


@dataclass
class ScoreSettings:
    """What the real reference is and how rows are scored (the reference part of ``ScoreConfig``)."""

    data_dir: str | None = None
    reference_records: tuple[str, ...] = DS2
    train_records: tuple[str, ...] = DS1
    n_real: int = 500
    seed: int = 0
    window_s: float = WINDOW_S
    memo_stride_s: float = 5.0
    k: int = 5
    disc_splits: int = 5
    disc_repeats: int = 1
    fed_ceiling_draws: int = 5
    cache_dir: str | None = "runs/cache/eval"
    embedding: str | None = None
    headline: bool = False  # headline verdicts against real bands (eval/scorecard/headline.py; on in eval/score.py)
    calibration: dict | None = None  # CalibrationSettings overrides (band records, draws...)
    # the scored LM's training data (eval/scorecard/pool.py): a model folder, its training_data.json, or a folder
    # generated
    # by lm/generate.py (its manifest names the model); none found = full band pool, MLII copy search, a note
    training_data: str | None = None


@dataclass
class ScoredSet:
    """A scored window set, kept for the report's figures."""

    name: str
    windows: WindowSet
    features: Features
    row: dict


class Scorer:
    """Holds the real reference (DS2 windows + features), the DS1 training pool and the embedding.

    Parameters
    ----------
    settings : ScoreSettings
    embedder : Embedder, optional
        Default: :meth:`Embedder.from_pretrained` of ``settings.embedding`` (the committed network).
    verbose : bool
        Print one line per expensive step.
    reference : WindowSet, optional
        A ready-made real reference (e.g. only the DS2 windows holding ventricular beats, for scoring a
        class-conditional set) instead of ``settings.n_real`` random windows of ``reference_records``.
    """

    def __init__(
        self,
        settings: ScoreSettings | None = None,
        embedder: Embedder | None = None,
        verbose: bool = True,
        reference: WindowSet | None = None,
    ):
        self.settings = s = settings or ScoreSettings()
        self.verbose = verbose
        self.embedder = embedder or Embedder.from_pretrained(s.embedding)
        self.data_dir = str(resolve_data_dir(s.data_dir).resolve())
        self.cache = Path(s.cache_dir) if s.cache_dir else None
        self.sets: dict[str, ScoredSet] = {}
        self._pool: dict[str, np.ndarray] | None = None
        self._train_ref: tuple[WindowSet, Features] | None = None
        self._ceiling: dict[int, float] = {}
        self._calibration = None
        t = time.time()
        self.reference = reference if reference is not None else real_windows(
            s.reference_records,
            self.data_dir,
            n=s.n_real,
            seed=s.seed,
            window_s=s.window_s,
            source="real DS2 (reference)",
        )
        self.ref_features = self.features(self.reference)
        self._log(
            f"reference: {len(self.reference)} windows of {','.join(s.reference_records[:3])}... "
            f"({time.time() - t:.1f} s)"
        )

    # ----------------------------------------------------------------------------------- plumbing
    def _log(self, msg: str) -> None:
        if self.verbose:
            print(f"[eval] {msg}", flush=True)

    def features(self, ws: WindowSet) -> Features:
        """Features of a window set, from the cache when the same windows were seen before."""
        key = cache_key(FEATURE_VERSION, ws.fs, self.embedder.weights_hash, np.ascontiguousarray(ws.x).tobytes())
        path = self.cache / "features" / f"{key}.npz" if self.cache else None
        if path is not None and path.is_file():
            return Features.load(path)
        feats = compute_features(ws.x, ws.fs, self.embedder)
        if path is not None:
            feats.save(path)
        return feats

    def train_pool(self) -> dict[str, np.ndarray]:
        """Embeddings of every DS1 window (``window_s`` long, ``memo_stride_s`` hop).

        Returns ``{"emb": (P, D), "records": (P,), "starts": (P,)}``.
        """
        if self._pool is not None:
            return self._pool
        s = self.settings
        key = cache_key(
            FEATURE_VERSION,
            self.data_dir,
            list(s.train_records),
            s.window_s,
            s.memo_stride_s,
            self.embedder.weights_hash,
        )
        path = self.cache / f"train_pool_{key}.npz" if self.cache else None
        if path is not None and path.is_file():
            with np.load(path, allow_pickle=False) as z:
                self._pool = {k: z[k] for k in z.files}
            return self._pool
        t = time.time()
        ws = real_windows(s.train_records, self.data_dir, window_s=s.window_s, stride_s=s.memo_stride_s)
        self._pool = {"emb": self.embedder.embed(ws.x, ws.fs), "records": ws.records, "starts": ws.starts}
        if path is not None:
            from ecg2llm.core.io import atomic_path

            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **self._pool)
        self._log(f"DS1 training pool: {len(ws)} windows embedded ({time.time() - t:.1f} s)")
        return self._pool

    def train_reference(self) -> tuple[WindowSet, Features]:
        """``n_real`` random DS1 windows and their features: the real side of ``disc_score_ds1``."""
        if self._train_ref is None:
            s = self.settings
            ws = real_windows(
                s.train_records,
                self.data_dir,
                n=s.n_real,
                seed=s.seed + 3,
                window_s=s.window_s,
                source="real DS1 (discriminator reference)",
            )
            self._train_ref = (ws, self.features(ws))
        return self._train_ref

    def heldout_real(self, n: int, seed: int | None = None, records=None) -> WindowSet:
        """Real windows (DS2 by default) disjoint from the reference: a "perfect generator", or the input
        of a tokenizer round trip, that does not share windows with what it is compared to."""
        s = self.settings
        return real_windows(
            records or s.reference_records,
            self.data_dir,
            n=n,
            seed=s.seed + 1 if seed is None else seed,
            window_s=s.window_s,
            exclude=self.reference,
            source="held-out real DS2",
        )

    def fed_ceiling(self, n: int) -> float:
        """Mean FED between ``n`` random DS1 windows and the DS2 reference (``fed_ceiling_draws`` draws).

        FED is biased upwards at small ``n``, so the rFED denominator is taken at the set's own size.
        """
        n = int(min(n, len(self.train_pool()["emb"])))
        if n not in self._ceiling:
            rng = np.random.default_rng(self.settings.seed)
            emb = self.train_pool()["emb"]
            vals = [
                frechet_distance(self.ref_features.emb, emb[rng.choice(len(emb), n, replace=False)])
                for _ in range(self.settings.fed_ceiling_draws)
            ]
            self._ceiling[n] = float(np.mean(vals))
        return self._ceiling[n]

    def calibration(self):
        """The real bands of the headline metrics (:class:`ecg2llm.eval.scorecard.headline.Calibration`), built once."""
        if self._calibration is None:
            t = time.time()
            cs = CalibrationSettings(**(self.settings.calibration or {}))
            if cs.training_data is None and self.settings.training_data:
                from .pool import find_training_data

                cs.training_data, cs.training_data_source = find_training_data(self.settings.training_data)
            self._calibration = Calibration(self, cs)
            self._log(f"calibration ready ({time.time() - t:.1f} s)")
        return self._calibration

    # ----------------------------------------------------------------------------------- scoring
    def score_windows(
        self, name: str, windows: WindowSet | np.ndarray, fs: float = FS, memorization: bool = True
    ) -> dict:
        """Score one window set against the real reference; the row is also kept for the report.

        Parameters
        ----------
        name : str
            Row name in the report (``"synthetic"``, ``"tokenizer round trip"``, ``"bigram sampler"``...).
        windows : WindowSet or np.ndarray
            ``(N, T)`` windows in mV; resampled to 360 Hz if ``fs`` differs; ``T`` must be ``window_s``.
        fs : float
            Sampling rate of a bare array.
        memorization : bool
            Compute the DS1 nearest-neighbour metrics (off for sets drawn from DS1 itself).

        Returns
        -------
        dict
            Every key of :data:`ecg2llm.eval.scorecard.metrics.METRICS` except the forecast ones (None where undefined),
            plus ``n_windows``, ``fed_real_ceiling`` and ``seconds``.
        """
        t = time.time()
        ws = windows if isinstance(windows, WindowSet) else _as_windowset(windows, fs, name)
        if ws.fs != FS:
            from ecg2llm.tokenizer.data import resample

            ws = dataclasses.replace(
                ws, x=np.stack([resample(w, ws.fs, FS) for w in ws.x]).astype(np.float32), fs=FS
            )
        want = int(round(self.settings.window_s * FS))
        if ws.x.shape[1] != want:
            from ..data import SyntheticDataError

            raise SyntheticDataError(
                f"row {name!r}: windows have {ws.x.shape[1]} samples, expected {want} "
                f"({self.settings.window_s:g} s at {FS:g} Hz)"
            )
        if len(ws) < self.settings.k + 1:
            from ..data import SyntheticDataError

            raise SyntheticDataError(
                f"row {name!r}: {len(ws)} windows; at least {self.settings.k + 1} are needed"
            )
        feats = self.features(ws)
        ref = self.ref_features
        row: dict = {"name": name, "n_windows": len(ws)}
        row["fed"] = frechet_distance(ref.emb, feats.emb)
        row["fed_real_ceiling"] = self.fed_ceiling(len(ws))
        row["rfed"] = row["fed"] / row["fed_real_ceiling"]
        row["mmd"] = mmd_rbf(ref.emb, feats.emb)
        row.update(prdc(ref.emb, feats.emb, k=self.settings.k))
        row.update(physiology_metrics(ref.phys, feats.phys))
        disc = dict(
            n_splits=self.settings.disc_splits, n_repeats=self.settings.disc_repeats, seed=self.settings.seed
        )
        row.update(discriminative_score(ref.discriminator_features(), feats.discriminator_features(), **disc))
        # DS1 and DS2 are different patients: real DS1 vs DS2 windows are told apart at ~90 % accuracy, so a
        # perfect DS1-trained generator cannot reach a low disc_score against DS2; against DS1 it can
        ds1_feats = self.train_reference()[1]
        row["disc_score_ds1"] = discriminative_score(
            ds1_feats.discriminator_features(), feats.discriminator_features(), **disc
        )["disc_score"]
        if memorization:
            pool = self.train_pool()["emb"]
            d_fake, _ = nearest_distances(feats.emb, pool)
            d_ref = self._ref_to_pool()
            row.update(memorization_metrics(d_fake, d_ref))
        else:
            row.update({"memorization_ratio": None, "near_copy_rate": None})
        if self.settings.headline:
            row.update(self.calibration().headline(feats, memorization=memorization, names=list(ws.names),
                                                   windows=ws.x))
        row["seconds"] = round(time.time() - t, 2)
        self.sets[name] = ScoredSet(name, ws, feats, row)
        self._log(
            f"scored {name!r}: {len(ws)} windows, FED {row['fed']:.2f} (rFED {row['rfed']:.2f}), "
            f"disc {row['disc_score']:.3f}, verdict {row.get('verdict', 'n/a')} ({row['seconds']:.1f} s)"
        )
        return row

    def _ref_to_pool(self) -> np.ndarray:
        if not hasattr(self, "_ref_d"):
            self._ref_d, _ = nearest_distances(self.ref_features.emb, self.train_pool()["emb"])
        return self._ref_d

    def describe(self) -> dict:
        """Settings, reference and embedding identity, for ``metrics.json``."""
        s = dataclasses.asdict(self.settings)
        s["reference_records"], s["train_records"] = list(s["reference_records"]), list(s["train_records"])
        return {
            "settings": s,
            "data_dir": self.data_dir,
            "n_reference_windows": len(self.reference),
            "embedding": self.embedder.describe(),
        }


def _as_windowset(x: np.ndarray, fs: float, name: str) -> WindowSet:
    x = np.asarray(x, np.float32)
    if x.ndim != 2:
        from ..data import SyntheticDataError

        raise SyntheticDataError(f"row {name!r}: expected (N, T) windows, got shape {x.shape}")
    return WindowSet(x=x, fs=float(fs), names=[f"{name}_{i}" for i in range(len(x))], source=name)
