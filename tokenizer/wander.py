"""Baseline (wander) model: sample realistic baseline knot series for ECGs an LM generated.

An LM generates ids only, so ``decode(ids, None)`` is the ECG band: flat below ~0.5 Hz, unlike any real
recording. :class:`WanderModel` samples the missing half of the tokenizer v2 state - the baseline knots of
:mod:`ecg2llm.tokenizer.baseline` (one every ``knot_s`` = 0.5 s) - so that ``decode(ids, tok.sample_state(n, seed))``
carries a realistic baseline.

Model (a heteroscedastic Gaussian AR process of the knot series, plus a DC offset)::

    knots[k] = dc + w[k],   w[k] = sum_j a_j w[k - j] + sigma[k] * e[k],   e ~ N(0, 1)
    log sigma = mu + r + s[segment(k)]    (r ~ N(0, tau_record^2) per signal;
                                          s an AR(1) over ``segment_knots``-knot segments, sd tau_segment)
    dc ~ N(dc_mean, dc_std^2)

Why this and nothing richer: what the scorecard scores is the RMS below 0.5 Hz of (mean-removed) 10-s
windows, and its *spread* across windows and records. A stationary Gaussian AR(p) fixes the shape of the
knot spectrum (p = 4 already matches the pooled autocorrelation: higher orders change the coefficients
by < 0.02), and the two log-normal scale effects give what one Gaussian cannot - quiet records beside
restless ones (``tau_record``) and restless minutes within a record (``tau_segment``, ``rho_segment``).
The DC offset only matters for the full signal (every metric high-passes) but is cheap and honest: its mean
and spread are those of the training records' median knots.

Fit (closed form, :func:`fit_wander`): Yule-Walker on the knot autocorrelation averaged over records (each
demeaned and scaled to unit variance, so one restless record does not set the shape); the AR residual's
log standard deviation per segment gives ``mu``, the between-record spread ``tau_record``, the within-record
spread ``tau_segment`` and the lag-1 correlation ``rho_segment``. Then one calibration: ``mu`` is shifted
so that the median wander (:func:`wander_log_rms`) of seeded samples equals that of the training records'
baseline (a few hundredths of a decade; the log-std mean and the median of a log-RMS are not quite the same
statistic). Fitted on MIT-BIH DS1 training records only (``scripts/fit_wander.py``), never DS2.

The fitted numbers live in a small JSON file (``wander.json``) beside the tokenizer weights: not a tensor,
so not in the weights hash that saved LMs and token stores check.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from ecg2llm.core.errors import TokenizerError

WANDER_FILE = "wander.json"
_BURN_IN = 200  # knots run before the returned ones, so a sample starts in the stationary regime


def wander_log_rms(windows: np.ndarray, fs: float) -> np.ndarray:
    """log10 RMS below 0.5 Hz (mV) of ``(N, T)`` windows: the ``wander`` feature of ``eval/scorecard/clinical.py``.

    Same definition (window mean removed, zero-phase 2nd-order Butterworth low-pass at 0.5 Hz); restated
    here because ``tokenizer`` must not import ``eval`` (data flows one way). ``tests/test_wander.py``
    checks that the two agree.
    """
    from scipy.signal import butter, sosfiltfilt

    x = np.asarray(windows, np.float64)
    x = x - x.mean(1, keepdims=True)
    lf = sosfiltfilt(butter(2, 0.5, btype="low", fs=float(fs), output="sos"), x, axis=-1)
    return np.log10(np.sqrt((lf**2).mean(1)) + 1e-6)


@dataclass
class WanderModel:
    """Fitted parameters of the baseline model (see the module docstring); JSON in, JSON out."""

    knot_s: float                       # seconds between knots (must equal the tokenizer's)
    ar: list[float]                     # AR coefficients a_1..a_p of the demeaned knot series
    mu: float                           # mean log innovation sd (ln mV)
    tau_record: float                   # sd of the per-signal log-scale effect
    tau_segment: float                  # sd of the per-segment log-scale effect
    rho_segment: float                  # lag-1 correlation of the segment effect
    segment_knots: int = 20             # knots per segment (10 s at 2 knots/s)
    dc_mean_mv: float = 0.0             # DC offset: mean of the records' median knot
    dc_std_mv: float = 0.0              # ... and its spread
    step_mv: float = 0.002              # sampled knots are rounded to this step, as encoded ones are
    fit: dict = field(default_factory=dict)  # provenance: records, knots, calibration, wall time

    def __post_init__(self):
        p = np.asarray(self.ar, np.float64)
        if p.ndim != 1 or not np.isfinite(p).all():
            raise TokenizerError(f"wander model: ar must be a list of finite numbers, got {self.ar!r}")
        if len(p) and np.abs(np.roots(np.r_[1.0, -p])).max() >= 1.0:
            raise TokenizerError("wander model: the AR coefficients are not stationary (a root on or "
                                 "outside the unit circle)")
        if not (self.knot_s > 0 and self.segment_knots >= 1 and self.step_mv >= 0 and self.tau_record >= 0
                and self.tau_segment >= 0 and self.dc_std_mv >= 0 and -1 < self.rho_segment < 1):
            raise TokenizerError(f"wander model: invalid parameters {asdict(self)}")

    # ----------------------------------------------------------------- I/O
    def to_json(self) -> str:
        return json.dumps({"model": "ar_lognormal_scale", **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = WANDER_FILE) -> "WanderModel":
        """Parse :meth:`to_json`'s output; one clear error for a malformed file."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise TokenizerError(f"{source} is not valid JSON: {e}") from None
        if not isinstance(d, dict) or d.pop("model", None) != "ar_lognormal_scale":
            raise TokenizerError(f"{source} is not a wander model file (expected model 'ar_lognormal_scale')")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise TokenizerError(f"{source} has unknown fields {unknown}")
        try:
            return cls(**d)
        except TypeError as e:
            raise TokenizerError(f"{source}: {e}") from None

    # ----------------------------------------------------------------- sampling
    def sample(self, n_knots: int, seed: int | None = None, dc: bool = True) -> np.ndarray:
        """``(n_knots,)`` float32 knots in mV; the same ``seed`` gives the same knots.

        ``dc=False`` leaves out the DC offset (a zero-mean baseline).
        """
        from scipy.signal import lfilter

        n = int(n_knots)
        if n < 1:
            raise TokenizerError(f"n_knots must be >= 1, got {n_knots}")
        rng = np.random.default_rng(seed)
        seg_n = -(-(n + _BURN_IN) // self.segment_knots) + 1
        s = np.empty(seg_n)
        s[0] = rng.standard_normal() * self.tau_segment
        innov = self.tau_segment * math.sqrt(1.0 - self.rho_segment**2)
        for i in range(1, seg_n):  # AR(1) segment effect, stationary sd tau_segment
            s[i] = self.rho_segment * s[i - 1] + innov * rng.standard_normal()
        log_sigma = self.mu + self.tau_record * rng.standard_normal() + s  # (segments,)
        pos = np.arange(n + _BURN_IN) / self.segment_knots  # knot -> segment coordinate
        sigma = np.exp(np.interp(pos, np.arange(seg_n), log_sigma))  # (n + burn,)
        e = rng.standard_normal(n + _BURN_IN) * sigma
        w = lfilter([1.0], np.r_[1.0, -np.asarray(self.ar, np.float64)], e)[_BURN_IN:]  # (n,)
        offset = self.dc_mean_mv + self.dc_std_mv * rng.standard_normal()
        k = w + (offset if dc else 0.0)
        if self.step_mv > 0:
            k = np.round(k / self.step_mv) * self.step_mv
        lim = 32767 * (self.step_mv or 0.002)
        return np.clip(k, -lim, lim).astype(np.float32)


def _yule_walker(series: Sequence[np.ndarray], order: int) -> np.ndarray:
    """AR coefficients from the autocorrelation averaged over unit-variance, demeaned series."""
    from scipy.linalg import solve_toeplitz

    ac = np.zeros(order + 1)
    for k in series:
        z = (k - k.mean()) / max(k.std(), 1e-9)
        ac += np.array([np.mean(z[: len(z) - lag] * z[lag:]) for lag in range(order + 1)])
    ac /= len(series)
    return solve_toeplitz(ac[:order], ac[1:])


def fit_wander(knot_series: Sequence[np.ndarray], knot_s: float, fs: float, hop: int, *, order: int = 4,
               segment_knots: int = 20, step_mv: float = 0.002, calibrate: bool = True,
               calib_samples: int = 200, calib_knots: int = 720, method: str = "linear") -> WanderModel:
    """Fit :class:`WanderModel` to the baseline knots of real recordings (see the module docstring).

    Parameters
    ----------
    knot_series : sequence of 1-D arrays
        Knots (mV) of whole recordings, as :func:`ecg2llm.tokenizer.baseline.estimate_knots_np` gives them.
    knot_s, fs, hop : float, float, int
        Knot spacing in seconds, the tokenizer's rate and samples between knots (for the calibration).
    order : int
        AR order.
    segment_knots : int
        Knots per segment of the scale effect (20 = 10 s).
    calibrate : bool
        Shift ``mu`` so the median 10-s wander of samples matches the records' (seeds 0..calib_samples-1).
    method : str
        Knot interpolation of the tokenizer (``baseline_interp``), used by the calibration.
    """
    from scipy.signal import lfilter

    from .baseline import interpolate_knots_np

    series = [np.asarray(k, np.float64) for k in knot_series if len(k) >= max(4 * order, 2 * segment_knots)]
    if len(series) < 2:
        raise TokenizerError(f"fit_wander needs at least 2 recordings of >= {2 * segment_knots} knots")
    ar = _yule_walker(series, order)
    a_poly = np.r_[1.0, -ar]
    per_rec, within, rhos, dcs = [], [], [], []
    for k in series:
        dcs.append(float(np.median(k)))
        e = lfilter(a_poly, [1.0], k - k.mean())[order:]  # AR residuals (innovations)
        m = len(e) // segment_knots
        ls = np.log(e[: m * segment_knots].reshape(m, segment_knots).std(1) + 1e-6)  # (segments,)
        per_rec.append(ls.mean())
        within.append(ls - ls.mean())
        if m > 2:
            rhos.append(float(np.corrcoef(ls[:-1], ls[1:])[0, 1]))
    within_all = np.concatenate(within)
    model = WanderModel(
        knot_s=float(knot_s), ar=[float(v) for v in ar], mu=float(np.mean(per_rec)),
        tau_record=float(np.std(per_rec)), tau_segment=float(within_all.std()),
        rho_segment=float(np.clip(np.mean(rhos) if rhos else 0.0, 0.0, 0.99)), segment_knots=int(segment_knots),
        dc_mean_mv=float(np.mean(dcs)), dc_std_mv=float(np.std(dcs)), step_mv=float(step_mv),
    )
    win = int(round(10.0 * fs))  # 10-s windows, as the scorecard cuts them

    def median_wander(knot_list):
        ws = []
        for k in knot_list:
            b = interpolate_knots_np(k, hop, len(k) * hop, method)
            m = len(b) // win
            if m:
                ws.append(wander_log_rms(b[: m * win].reshape(m, win), fs))
        return float(np.median(np.concatenate(ws)))

    real_med = median_wander(series)
    shift = 0.0
    if calibrate:
        for _ in range(2):  # the shift is nearly exact in one step (log RMS moves 1:1 with mu / ln 10)
            model.mu += shift
            sim_med = median_wander([model.sample(calib_knots, seed=i, dc=False) for i in range(calib_samples)])
            shift = (real_med - sim_med) * math.log(10.0)
        model.mu += shift
    model.fit = {"recordings": len(series), "knots": int(sum(len(k) for k in series)), "order": int(order),
                 "real_median_wander_10s": real_med, "calibrated": bool(calibrate)}
    return model
