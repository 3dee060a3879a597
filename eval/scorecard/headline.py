"""Headline verdicts: a handful of metrics, each judged against the spread of *real unseen patients*.

A metric value alone does not say whether a set is good: rFED 1.18 for real patients of the validation
records and 0.66 for a tiny GPT ranks the GPT above real ECGs. So every headline metric comes with a
``real_band``: the range of that metric for real windows of patients the reference does not hold, at the
same number of windows, against the same reference (leave-patients-out resampling):

* the band pool is every non-overlapping 10-s MLII window of ``band_records``: the fixed pool of
  :mod:`ecg2llm.eval.scorecard.pool` (DS2 + 101, 112, 119, records no shipped LM trains on) minus any record the
  scored LM's
  ``training_data.json`` lists (excluded and reported in :meth:`Calibration.describe`);
* draw ``b`` holds out ``h`` random pool patients (``h`` uniform in ``holdout_patients``); the reference
  ``R_b`` is the DS2 reference minus those patients' windows and the real candidate is ``n`` random windows
  of the held-out patients that are not reference windows;
* the band is the ``[min, max]`` of the metric over the draws (``band_quantiles``), and a scored set's
  value is its mean over the same ``R_b`` (so value and band use identical references).

Verdicts (every headline metric is "higher = further from real"): ``worse`` above the band, ``better``
below it (closer to the reference than unseen real patients come: not a fault in itself, but worth a
look), else ``as_real``. The overall ``verdict`` is ``worse`` when any headline metric is ``worse``.

Headline metrics (:data:`HEADLINE`): the embedding Fréchet distance; four clinical groups of
:mod:`ecg2llm.eval.scorecard.clinical` (each the mean, over its measurements, of the Wasserstein-1 distance to the
reference divided by the reference's spread, plus the difference in the share of windows where the
measurement is undefined); a patient-grouped discriminator against the generator's training patients (the
mean of ``disc_spread_draws`` draws, for the set and for each band draw); the near-copy rate against every
window the LM trained on (:mod:`ecg2llm.eval.scorecard.metrics.memorization_index`); and the within-window headlines of
:mod:`ecg2llm.eval.scorecard.window_metrics` (beat consistency judged per window, which a many-patient mix cannot game).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import wasserstein_distance

from ..data import real_windows
from .clinical import FEATURES, GROUPS
from .features import FEATURE_VERSION, PSD_BANDS, QUANTILES, cache_key
from .metrics.discriminative import parallel_map
from .metrics.fidelity import frechet_from_stats, reference_stats
from .pool import POOL_VALID, check_pool
from .references import tokenizer_roundtrip_windows
from .window_metrics import WINDOW_HEADLINE, WindowJudge

HEADLINE: dict[str, str] = {
    "embedding": "Fréchet distance of the frozen ECG embedding to the real reference: overall look",
    "rhythm": "heart rate, RR variability (CV, RMSSD), RR alternation and beat count vs real (std-scaled W1)",
    "intervals": "PR, QRS duration, QTc (neurokit2 delineation of the median beat), P-wave presence vs real",
    "morphology": "beat-to-beat consistency within a window, R and T amplitude vs real",
    "texture": "noise floor above 40 Hz and baseline wander below 0.5 Hz vs real",
    "discriminator": "accuracy of a real-(LM training patients)-vs-set classifier, patient-grouped 3-fold CV",
    "memorization": "share of windows closer (embedding) to an LM training window than 99 % of unseen real",
    **WINDOW_HEADLINE,
}
#: Added to the headline when a tokenizer is given (``eval/score.py --tokenizer``).
LM_ONLY = {
    "discriminator_lm": "the discriminator against the tokenizer round trip of real windows: the LM's faults",
}
UNDEFINED_CAP = 10.0  # distance of a measurement the set never produces


@dataclass
class CalibrationSettings:
    """How the real bands are drawn (see the module docstring)."""

    # band_records default: the fixed pool (ecg2llm.eval.scorecard.pool) minus what the LM saw
    band_records: tuple[str, ...] | None = None
    lm_train_records: tuple[str, ...] | None = None  # default: the LM's MIT-BIH records (training_data), else
    #                                                 the training records minus the pool's validation records
    # training_data: the scored LM's training_data.json (ecg2llm.eval.scorecard.pool); None: another generator
    training_data: dict | None = None
    training_data_source: str | None = None  # where it was read (reported)
    draws: int = 40
    holdout_patients: tuple[int, int] = (4, 8)
    band_quantiles: tuple[float, float] = (0.0, 1.0)
    disc_draws: int = 24
    disc_max_n: int = 300
    disc_real_n: int = 300
    disc_clusters: int = 3  # the set's windows form 3 k-means groups, one per fold
    disc_folds: int = 3
    disc_spread_draws: int = 5  # the discriminator is the mean of this many draws, for the set and each band draw
    memo_align: str = "beat"  # copy search: "beat" = beat-aligned segments, any offset ("grid": 10-s windows
    #                            at memo_stride_s, the search before the shift-invariant index)
    memo_stride_s: float = 2.5
    memo_anchors: int = 2      # a window is searched from its first this many anchors (beat alignment)
    copy_quantile: float = 0.01
    pool_per_record: int | None = None  # cap band-pool windows per record (small test setups only)
    seed: int = 0


def _w1(a: np.ndarray, b: np.ndarray) -> float:
    return float(wasserstein_distance(a, b))


def feature_distances(ref: np.ndarray, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per clinical measurement: W1 of the finite values / ``scale`` + |undefined share difference|.

    Parameters
    ----------
    ref, x : np.ndarray
        ``(N, F)`` and ``(M, F)`` measurements (NaN = undefined).
    scale : np.ndarray
        ``(F,)`` spread of each measurement in the full reference.
    """
    out = np.empty(ref.shape[1])
    for j in range(ref.shape[1]):
        a, b = ref[:, j], x[:, j]
        fa, fb = np.isfinite(a), np.isfinite(b)
        if not fb.any() or not fa.any():
            out[j] = 0.0 if fa.any() == fb.any() else UNDEFINED_CAP
            continue
        out[j] = _w1(a[fa], b[fb]) / scale[j] + abs(fa.mean() - fb.mean())
    return out


def verdict(value: float | None, band: tuple[float, float]) -> str:
    """``worse`` above the band, ``better`` below, ``as_real`` inside (higher = further from real)."""
    if value is None or not np.isfinite(value):
        return "worse"
    lo, hi = band
    return "worse" if value > hi else "better" if value < lo else "as_real"


def overall(headline: dict[str, dict]) -> str:
    """``worse`` if any headline metric is worse, else ``as_real`` (``n/a`` entries do not count)."""
    return "worse" if any(h["verdict"] == "worse" for h in headline.values()) else "as_real"


class Calibration:
    """Band pool, leave-patients-out draws, memorization pool and discriminator reference of a scorer.

    Parameters
    ----------
    scorer : ecg2llm.eval.scorecard.scorer.Scorer
        Supplies the reference, the feature cache and the embedding.
    settings : CalibrationSettings, optional
    """

    def __init__(self, scorer, settings: CalibrationSettings | None = None):
        self.scorer = sc = scorer
        self.settings = s = settings or CalibrationSettings()
        root, win = sc.data_dir, sc.settings.window_s
        ref_recs, train_recs = tuple(sc.settings.reference_records), tuple(sc.settings.train_records)
        # the fixed pool: DS2 + the validation records no shipped LM trains on
        # (ecg2llm.eval.scorecard.pool.BAND_POOL), minus any
        # record the scored LM's training_data.json lists (excluded and reported, never silent)
        fixed = ref_recs + tuple(r for r in POOL_VALID if r in train_recs and r not in ref_recs)
        self.pool_check = check_pool(s.training_data, s.training_data_source, pool=fixed)
        if s.band_records is None:
            s.band_records = self.pool_check.records
        if s.lm_train_records is None:  # what the LM trained on (its file), else DS1 minus the pool's records
            seen = tuple(str(r) for r in (s.training_data or {}).get("mitdb", {}).get("records", []))
            lm = (tuple(r for r in train_recs if r in seen) if seen
                  else tuple(r for r in train_recs if r not in POOL_VALID))
            s.lm_train_records = lm or train_recs
        self.pool = real_windows(s.band_records, root, window_s=win, source="band pool (unseen patients)")
        if s.pool_per_record:
            keep = np.concatenate([np.flatnonzero(self.pool.records == r)[: s.pool_per_record]
                                   for r in sorted(set(self.pool.records.tolist()))])
            self.pool = self.pool.subset(np.sort(keep))
        sc._log(f"band pool: {len(self.pool)} windows of {len(set(self.pool.records))} unseen patients")
        self.pool_f = sc.features(self.pool)
        ref = sc.reference
        taken = set(zip(ref.records.tolist(), ref.starts.tolist(), strict=True))
        self.pool_free = np.array(
            [(r, st) not in taken for r, st in zip(self.pool.records.tolist(), self.pool.starts.tolist())]
        )
        self.ref_emb = sc.ref_features.emb
        self.ref_clin = sc.ref_features.clinical()
        lo, hi = np.nanpercentile(self.ref_clin, [1, 99], axis=0)
        self.scale = np.array(
            [np.nanstd(np.clip(self.ref_clin[:, j], lo[j], hi[j])) for j in range(len(FEATURES))]
        )
        self.scale = np.where(np.isfinite(self.scale) & (self.scale > 1e-9), self.scale, 1.0)
        rng = np.random.default_rng(s.seed)
        patients = np.array(sorted(set(self.pool.records.tolist())))
        self.draws = []
        if len(patients) < 2:
            from ecg2llm.core.errors import ConfigError

            raise ConfigError(f"real bands need at least 2 band-pool patients, got {list(patients)}")
        for _ in range(s.draws):
            for _try in range(20):  # keep at least 10 reference windows (or a third of them) in R_b
                h = int(rng.integers(s.holdout_patients[0], s.holdout_patients[1] + 1))
                held = rng.choice(patients, max(1, min(h, len(patients) - 1)), replace=False)
                mask = ~np.isin(ref.records, held)
                has_pool = (np.isin(self.pool.records, held) & self.pool_free).any()
                if mask.sum() >= min(10, len(ref) // 3) and has_pool:
                    break
            self.draws.append((held, mask))
        self._memo()
        self.window = WindowJudge.fit(self.pool_f.phys)
        self._disc_real()
        self._bands: dict[int, dict] = {}
        self.lm_only: dict | None = None

    # ------------------------------------------------------------------------------ building blocks
    def _memo(self) -> None:
        """The copy search: an exact 1-NN index over every training segment the LM saw (every MIT-BIH record and
        lead, every CinC 2017 recording of its ``training_data.json``; without one: MLII of ``lm_train_records``),
        beat-aligned so that a copy at any offset is found, and the copy threshold from the band pool's
        distances to it (the same search)."""
        from .metrics.memorization_index import TrainingIndex

        sc, s = self.scorer, self.settings
        spec = s.training_data or {
            "format": 1, "mitdb": {"records": list(s.lm_train_records), "leads": ["MLII"], "augment_views": 0},
            "validation_records": [], "cinc2017": {"used": False}, "stages": [],
            "written_by": "eval/scorecard/headline.py fallback: no training_data.json, MLII of the LM training records"}
        self.index = TrainingIndex.build(spec, sc.embedder, sc.data_dir, window_s=sc.settings.window_s,
                                         stride_s=s.memo_stride_s, cache_dir=sc.cache, progress=sc.verbose,
                                         log=sc._log, align=s.memo_align)
        self.memo_names = self.index.names  # "<corpus>:<recording>[:<lead>]@<start sample>" of each window
        d, _ = self.nearest(self.pool.x, self.pool.fs)
        self.pool_nn = d
        self.copy_threshold = float(np.quantile(d, s.copy_quantile))

    def nearest(self, windows: np.ndarray, fs: float = 360.0) -> tuple[np.ndarray, np.ndarray]:
        """Distance to, and index of, each window's nearest LM-training segment (:attr:`index`, searched from
        the window's beats), cached per window bytes under the scorer's cache folder."""
        sc, s = self.scorer, self.settings
        x = np.ascontiguousarray(windows, np.float32)
        path = None
        if sc.cache is not None and self.index.key:
            key = cache_key("memo-query-v1", self.index.key, s.memo_anchors, float(fs), x.shape, x.tobytes())
            path = sc.cache / "memo" / f"{key}.npz"
            if path.is_file():
                with np.load(path, allow_pickle=False) as z:
                    return z["d"], z["i"]
        d, i = self.index.query_windows(x, sc.embedder, fs=fs, max_anchors=s.memo_anchors)
        if path is not None:
            from ecg2llm.core.io import atomic_path

            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, d=d, i=i)
        return d, i

    def _disc_real(self) -> None:
        sc, s = self.scorer, self.settings
        ws = real_windows(
            s.lm_train_records, sc.data_dir, n=s.disc_real_n, seed=s.seed + 7, window_s=sc.settings.window_s
        )
        self.disc_real = (self._disc_x(sc.features(ws)), ws.records)

    @staticmethod
    def _disc_x(f) -> np.ndarray:
        """Discriminator input: log band powers, amplitude quantiles, R-peak statistics and the clinical
        measurements. Not the embedding: it was trained to tell patients apart, and with it the classifier
        recognised unseen real patients (validation records: 0.82 accuracy, above every real draw) instead
        of learning what makes a set unreal."""
        p = np.stack([f.phys[k].astype(np.float64) for k in ("n_beats", "hr_bpm", "sdnn_ms", "rmssd_ms",
                                                              "r_amp_mv")], axis=1)
        return np.concatenate([f.spectral, p, f.clinical()], axis=1)

    @staticmethod
    def disc_groups() -> dict[str, np.ndarray]:
        """Column indices of :meth:`_disc_x` per feature group: the spectrum's band powers and amplitude
        quantiles, the R-peak statistics, and each clinical group (:data:`ecg2llm.eval.scorecard.clinical.GROUPS`)."""
        nb, nq, npk = len(PSD_BANDS) - 1, len(QUANTILES), 5
        out = {"band powers": np.arange(nb), "amplitude quantiles": nb + np.arange(nq),
               "R-peak statistics": nb + nq + np.arange(npk)}
        start = nb + nq + npk
        for g, keys in GROUPS.items():
            out[f"clinical {g}"] = np.array([start + FEATURES.index(k) for k in keys])
        return out

    def explain(self, feats, seed: int = 0) -> dict[str, float]:
        """The discriminator's accuracy with one feature group alone (:meth:`disc_groups`; same folds and
        windows as :meth:`discriminate`): which group gives the set away (0.5 = cannot tell, 1 = always)."""
        groups = self.disc_groups()
        return dict(zip(groups, self._discriminate(feats, seed, None, list(groups.values())), strict=True))

    def disc_mean(self, feats, seed: int = 0, real=None) -> list[float]:
        """The discriminator over ``disc_spread_draws`` (at least 1) draws of windows, clusters and folds (seeds
        ``seed``, ``seed + 1``, ...): the headline value and each band draw are the mean of these."""
        k = max(1, int(self.settings.disc_spread_draws))
        return [self.discriminate(feats, seed=seed + i, real=real) for i in range(k)]

    def discriminate(self, feats, seed: int = 0, real=None) -> float:
        """Patient-grouped cross-validated accuracy of real-LM-training-patients vs ``feats`` windows.

        The real side's folds hold whole patients; the set's windows are grouped by k-means clusters of
        their embedding (3 clusters, 3 folds: each fold tests on one whole cluster), so windows of one (real
        or generated) "patient" mostly stay in one fold and the classifier must find what separates the set
        from real ECGs in general, not recognise patients. Measured on 300 validation-record windows: with 5
        clusters and 5 folds clean real windows scored 0.79 against a real band of [0.34, 0.73] (patients
        split across clusters leak identity); with 3 and 3, 0.63 against [0.39, 0.74].
        """
        return self._discriminate(feats, seed, real, [None])[0]

    def _discriminate(self, feats, seed: int, real, column_sets: list) -> list[float]:
        """:meth:`discriminate`'s accuracy for each column subset (None = all columns) on one draw of windows,
        clusters and folds: the subsets differ only in the columns the classifier is fitted on."""
        from sklearn.cluster import KMeans
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.model_selection import StratifiedGroupKFold
        from threadpoolctl import threadpool_limits

        s = self.settings
        rng = np.random.default_rng(seed)
        xr, gr = real if real is not None else self.disc_real
        xf = self._disc_x(feats)
        n = min(len(xr), len(xf), s.disc_max_n)
        ir = rng.choice(len(xr), n, replace=False)
        jf = rng.choice(len(xf), n, replace=False)
        k = int(min(s.disc_clusters, max(2, n // 10)))
        with threadpool_limits(limits=1):
            cl = KMeans(k, n_init=2, random_state=seed).fit_predict(feats.emb[jf].astype(np.float64))
        x = np.concatenate([xr[ir], xf[jf]])
        y = np.r_[np.zeros(n, int), np.ones(n, int)]
        groups = np.r_[[f"r{g}" for g in gr[ir]], [f"c{c}" for c in cl]]
        jobs = [(tr, te, i, cols) for tr, te in StratifiedGroupKFold(s.disc_folds, shuffle=True,
                                                                      random_state=seed).split(x, y, groups)
                for i, cols in enumerate(column_sets)]

        def fit(job):
            tr, te, i, cols = job
            xc = x if cols is None else x[:, cols]
            clf = HistGradientBoostingClassifier(
                max_iter=60, max_leaf_nodes=15, min_samples_leaf=int(min(20, max(2, len(tr) // 16))),
                early_stopping=False, random_state=seed,
            )
            clf.fit(xc[tr], y[tr])
            return i, int((clf.predict(xc[te]) == y[te]).sum())

        correct = [0] * len(column_sets)
        with threadpool_limits(limits=1, user_api="openmp"):
            for i, c in parallel_map(fit, jobs):
                correct[i] += c
        return [c / len(y) for c in correct]

    def distances(self, emb: np.ndarray, clin: np.ndarray, draw: int, emb_stats=None) -> np.ndarray:
        """``[embedding FD, per-measurement distances...]`` of one set against draw ``draw``'s reference.
        ``emb_stats``: ``(mean, covariance)`` of ``emb`` when the caller compares it with every draw."""
        m = self.draws[draw][1]
        if not hasattr(self, "_ref_stats"):  # each draw's reference mean, covariance root, trace: once
            self._ref_stats: dict[int, tuple] = {}
        if draw not in self._ref_stats:
            self._ref_stats[draw] = reference_stats(self.ref_emb[m])
        if emb_stats is None:
            e = np.asarray(emb, np.float64)
            emb_stats = (e.mean(0), np.cov(e, rowvar=False))
        fd = frechet_from_stats(self._ref_stats[draw], emb_stats)
        return np.r_[fd, feature_distances(self.ref_clin[m], clin, self.scale)]

    def _aggregate(self, d: np.ndarray) -> dict[str, float]:
        out = {"embedding": float(d[0])}
        per = dict(zip(FEATURES, d[1:], strict=True))
        for g, keys in GROUPS.items():
            out[g] = float(np.mean([per[k] for k in keys]))
        out.update({f"clin_{k}": float(v) for k, v in per.items()})
        return out

    # ------------------------------------------------------------------------------ bands and values
    def band(self, n: int) -> dict[str, tuple[float, float]]:
        """Real bands of every headline (and per-measurement) metric at ``n`` windows (cached on disk)."""
        if n in self._bands:
            return self._bands[n]
        sc, s = self.scorer, self.settings
        key = _band_key(sc, s, n)
        path = sc.cache / f"bands_{key}.json" if sc.cache else None
        if path is not None and path.is_file():
            self._bands[n] = {k: tuple(v) for k, v in json.loads(path.read_text()).items()}
            return self._bands[n]
        vals = self.draw_values_cached(n)
        q0, q1 = s.band_quantiles
        bands = {k: (float(np.quantile(v, q0)), float(np.quantile(v, q1))) for k, v in vals.items()}
        if path is not None:
            from ecg2llm.core.io import write_json

            write_json(path, {k: list(v) for k, v in bands.items()})
        sc._log(f"real bands at n={n}: {len(self.draws)} leave-patients-out draws")
        self._bands[n] = bands
        return bands

    def draw_values_cached(self, n: int) -> dict[str, list[float]]:
        """:meth:`draw_values`, computed once per ``n`` in this process (the band and a leave-one-out check
        read the same draws)."""
        if not hasattr(self, "_draw_vals"):
            self._draw_vals: dict[int, dict] = {}
        if n not in self._draw_vals:
            self._draw_vals[n] = self.draw_values(n)
        return self._draw_vals[n]

    def draw_values(self, n: int) -> dict[str, list[float]]:
        """Every band metric on each leave-patients-out draw of ``n`` real windows, in draw order.

        The band is a quantile range of these values (:meth:`band`); the discriminator has ``disc_draws``
        values, every other metric one per draw. Not cached (a few minutes: the discriminator draws).
        """
        s = self.settings
        rng = np.random.default_rng(s.seed + 11)
        clin = self.pool_f.clinical()
        vals: dict[str, list[float]] = {}
        for b, (held, _) in enumerate(self.draws):
            idx = self._draw_pool(held, n, rng)
            agg = self._aggregate(self.distances(self.pool_f.emb[idx], clin[idx], b))
            agg["memorization"] = float((self.pool_nn[idx] < self.copy_threshold).mean())
            agg.update(self.window.shares(self.pool_f.phys, idx))
            for k, v in agg.items():
                vals.setdefault(k, []).append(v)
        nd = min(n, s.disc_max_n)
        for b, (held, _) in enumerate(self.draws[: s.disc_draws]):
            idx = self._draw_pool(held, nd, rng)
            vals.setdefault("discriminator", []).append(
                float(np.mean(self.disc_mean(self.pool_f.subset(idx), seed=1000 * (b + 1)))))
        return vals

    def _draw_pool(self, held: np.ndarray, n: int, rng) -> np.ndarray:
        cand = np.flatnonzero(np.isin(self.pool.records, held) & self.pool_free)
        return np.sort(rng.choice(cand, n, replace=n > len(cand)))

    def values(self, feats, memorization: bool = True, nearest=None, disc=None,
               windows=None) -> dict[str, float]:
        """A set's headline (and per-measurement) values: the mean over the draws' references.
        ``nearest``: :meth:`nearest` of the set's windows if the caller has it already (else ``windows``, the
        ``(N, T)`` windows at 360 Hz, are searched); ``disc``: its :meth:`disc_mean` draws likewise."""
        from threadpoolctl import threadpool_limits

        clin = feats.clinical()
        e = np.asarray(feats.emb, np.float64)
        stats = (e.mean(0), np.cov(e, rowvar=False))  # the set's side of every draw's Fréchet distance
        with threadpool_limits(limits=1, user_api="blas"):  # 64 x 64 algebra: threads only spin on a busy machine
            d = np.mean([self.distances(feats.emb, clin, b, stats) for b in range(len(self.draws))], axis=0)
        out = self._aggregate(d)
        if memorization:
            nn, _ = nearest if nearest is not None else self.nearest(_need(windows))
            out["memorization"] = float((nn < self.copy_threshold).mean())
        out.update(self.window.shares(feats.phys))
        out["discriminator"] = float(np.mean(disc if disc is not None else self.disc_mean(feats)))
        if self.lm_only is not None:
            out["discriminator_lm"] = float(np.mean(self.disc_mean(feats, real=self.lm_only["real"])))
        return out

    def near_copies(self, feats, names=None, nearest=None, windows=None) -> dict:
        """The windows the memorization headline counts, and the LM-training windows they sit next to.

        ``{"n", "by_record": {record: count}, "windows": [{"window", "train_window", "distance"}]}``, nearest
        first: a privacy audit names which training patients a generator reproduces (record numbers and
        sample offsets only, never header data). ``names``: the set's window names (index otherwise);
        ``nearest`` as in :meth:`values`.
        """
        nn, idx = nearest if nearest is not None else self.nearest(_need(windows))
        hit = np.flatnonzero(nn < self.copy_threshold)
        hit = hit[np.argsort(nn[hit])]
        rows = [{"window": names[i] if names is not None else int(i), "train_window": self.memo_names[idx[i]],
                 "distance": round(float(nn[i]), 4)} for i in hit]
        by: dict[str, int] = {}
        for r in rows:
            rec = r["train_window"].split("@")[0]
            by[rec] = by.get(rec, 0) + 1
        return {"n": len(rows), "threshold": round(float(self.copy_threshold), 4),
                "by_record": dict(sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))), "windows": rows}

    def headline(self, feats, memorization: bool = True, names=None, windows=None) -> dict:
        """``{"headline": {metric: {value, real_band, verdict}}, "verdict", "clinical": {...}}``.

        ``windows``: the set's ``(N, T)`` windows at 360 Hz (the copy search reads the waveform, from its
        beats; required unless ``memorization=False``). ``memorization=False`` (a set drawn from the training
        records themselves, e.g. the real-DS1 row) reports memorization as None, outside the verdict.
        """
        nearest = self.nearest(_need(windows)) if memorization else None  # shared by both
        disc = self.disc_mean(feats)
        vals = self.values(feats, memorization, nearest=nearest, disc=disc)
        bands = self.band(len(feats))
        entry = {
            k: {"value": v, "real_band": list(bands[k]), "verdict": verdict(v, bands[k])}
            for k, v in vals.items()
            if k in bands
        }
        head = {k: entry[k] for k in HEADLINE if k in entry}
        if self.lm_only is not None:
            b = self.lm_band(len(feats))
            v = vals["discriminator_lm"]
            head["discriminator_lm"] = {"value": v, "real_band": list(b), "verdict": verdict(v, b)}
        clinical = {k[5:]: e for k, e in entry.items() if k.startswith("clin_")}
        if not memorization:
            head["memorization"] = {"value": None, "real_band": list(bands["memorization"]), "verdict": "n/a"}
        order = [*HEADLINE, *LM_ONLY]
        head = {k: head[k] for k in order if k in head}
        out = {"headline": head, "verdict": overall(head), "clinical": clinical}
        if memorization:
            out["near_copies"] = self.near_copies(feats, names, nearest=nearest)
        if "discriminator" in head:  # what the discriminator reads: each feature group alone, same folds
            out["discriminator_groups"] = self.explain(feats, seed=0)
            out["discriminator_draws"] = self.draw_spread(feats, disc)
        out["window_quantiles"] = self.window.quantiles(feats.phys)
        return out

    def draw_spread(self, feats, draws: list[float] | None = None) -> dict:
        """The discriminator's draws (:meth:`disc_mean`; seeds 0, 1, ...): ``{"values", "mean", "sd", "min",
        "max"}``. The verdict reads their mean, as each band draw reads the mean of as many draws: one draw has
        an sd of ~0.02-0.04 for a set of 300 windows (``docs/scorecard.md``)."""
        v = list(draws) if draws is not None else self.disc_mean(feats)
        return {"values": [float(x) for x in v], "mean": float(np.mean(v)), "sd": float(np.std(v)),
                "min": float(np.min(v)), "max": float(np.max(v))}

    # ------------------------------------------------------------------------------ LM-only variant
    def add_tokenizer(self, tokenizer, per_patient: int = 40, texture: bool = False) -> None:
        """Add ``discriminator_lm``: the discriminator with the tokenizer round trip of the real windows as
        its real side, so what the tokenizer itself removes (noise texture above its band) is no fault.
        ``texture``: round trips decoded with the tokenizer's texture model, for sets generated with it
        (a texture-decoded set against plain round trips would be told apart by the texture alone).

        Its band: round trips of unseen-patient draws (``per_patient`` pool windows per patient, at most
        ``disc_max_n`` per draw, ``disc_draws`` draws) against the round trip of the LM-training windows.
        """
        sc, s = self.scorer, self.settings
        ws = real_windows(
            s.lm_train_records, sc.data_dir, n=s.disc_real_n, seed=s.seed + 7, window_s=sc.settings.window_s
        )
        rt_real = tokenizer_roundtrip_windows(tokenizer, ws, texture=texture, seed=s.seed + 31)
        real = (self._disc_x(sc.features(rt_real)), ws.records)
        rng = np.random.default_rng(s.seed + 23)
        keep = np.concatenate([
            rng.permutation(np.flatnonzero((self.pool.records == r) & self.pool_free))[:per_patient]
            for r in sorted(set(self.pool.records.tolist()))
        ])
        sub = self.pool.subset(np.sort(keep))
        rt_f = sc.features(tokenizer_roundtrip_windows(tokenizer, sub, texture=texture, seed=s.seed + 37))
        self.lm_only = {"real": real, "pool": (sub.records, rt_f), "bands": {}}
        sc._log(f"LM-only discriminator: {len(sub)} unseen-patient windows through the tokenizer"
                f"{' (texture decode)' if texture else ''}")

    def lm_band(self, n: int) -> tuple[float, float]:
        """Real band of ``discriminator_lm`` at ``n`` windows."""
        lo = self.lm_only
        if n not in lo["bands"]:
            s = self.settings
            recs, f = lo["pool"]
            rng = np.random.default_rng(s.seed + 29)
            nd, vals = min(n, s.disc_max_n), []
            for b, (held, _) in enumerate(self.draws[: s.disc_draws]):
                cand = np.flatnonzero(np.isin(recs, held))
                idx = np.sort(rng.choice(cand, nd, replace=nd > len(cand)))
                vals.append(float(np.mean(self.disc_mean(f.subset(idx), seed=1000 * (b + 1), real=lo["real"]))))
            q0, q1 = s.band_quantiles
            lo["bands"][n] = (float(np.quantile(vals, q0)), float(np.quantile(vals, q1)))
        return lo["bands"][n]

    def describe(self) -> dict:
        s = asdict(self.settings)
        return {
            **s,
            "band_pool_windows": len(self.pool),
            "copy_threshold": self.copy_threshold,
            "memo_pool_windows": len(self.index),
            "memo_index": self.index.describe(),
            "pool": self.pool_check.describe(),
            "window_thresholds": self.window.describe(),
            "meanings": HEADLINE,
        }


def _need(windows) -> np.ndarray:
    if windows is None:
        raise ValueError("the memorization headline searches the set's windows from their beats: pass windows= "
                         "(the (N, T) windows at 360 Hz the features were computed on)")
    return windows


def _band_key(scorer, s: CalibrationSettings, n: int) -> str:
    return cache_key(
        "bands-v3",
        FEATURE_VERSION,
        scorer.data_dir,
        scorer.embedder.weights_hash,
        scorer.reference.names,
        {k: v for k, v in asdict(s).items() if k != "training_data_source"},  # where it was read: not a setting
        n,
    )


def leave_one_out_pass(vals: dict[str, list[float]], keys=tuple(HEADLINE)) -> dict:
    """How often a held-out *real* set reads "as real" on every headline: each real draw in turn is judged
    against the band of the other draws (``worse`` = above their maximum, the verdict's rule for a
    ``[min, max]`` band; "better" passes, as it does for a scored set).

    Parameters
    ----------
    vals : dict
        :meth:`Calibration.draw_values`: per metric, one value per draw.
    keys : sequence of str
        Headline metrics judged (default: every :data:`HEADLINE` metric in ``vals``). The draws judged are
        those every metric has (the discriminator's first ``disc_draws``); each against all other draws of
        each metric, as its band is built.

    Returns
    -------
    dict
        ``passed`` and ``draws`` (counts), ``rate``, ``worse`` (per metric, draws above the others' band),
        ``failed`` (each failing draw and the metrics it fails), ``draws_per_metric`` and
        ``expected_rate_if_independent``: the product over metrics of ``1 - 1 / N_k`` (a draw judged against the
        ``N_k - 1`` others holds their new maximum with probability ``1 / N_k``), what exchangeable real draws
        pass when no two metrics are correlated.
    """
    keys = [k for k in keys if k in vals]
    if not keys:
        raise ValueError("no headline metric in vals")
    d = min(len(vals[k]) for k in keys)
    if d < 3:
        raise ValueError(f"need at least 3 draws of every headline metric, got {d}")
    worse = np.zeros((d, len(keys)), bool)
    for j, k in enumerate(keys):
        v = np.asarray(vals[k], np.float64)  # the band of the others: every other draw of this metric
        for i in range(d):
            worse[i, j] = v[i] > np.delete(v, i).max()
    passed = int((~worse.any(axis=1)).sum())
    failed = [{"draw": int(i), "metrics": [k for j, k in enumerate(keys) if worse[i, j]]}
              for i in range(d) if worse[i].any()]
    # a [min, max] band of N exchangeable draws is left by a new draw on one metric with probability 1 / (N + 1):
    # the all-pass rate expected of a real set when the metrics are independent (the worst case)
    expected = float(np.prod([1.0 - 1.0 / len(vals[k]) for k in keys]))
    return {"passed": passed, "draws": int(d), "rate": passed / d,
            "worse": {k: int(worse[:, j].sum()) for j, k in enumerate(keys)}, "failed": failed,
            "draws_per_metric": {k: len(vals[k]) for k in keys}, "expected_rate_if_independent": expected}
