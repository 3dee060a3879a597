"""Within-window headlines: is each window, on its own, something a real patient produces?

Why set-level distances rate a many-patient mix "better". The set-level headlines (embedding Fréchet distance,
the clinical groups) compare the *distribution over windows* of a set with a reference of 22 DS2 patients. A
real band draw holds out 4-8 patients: its windows cluster around those few patients, so its distribution is
narrower than the reference and sits at a distance set by which patients were drawn (rhythm spans
[0.207, 0.836], morphology [0.199, 0.892] at n = 300). A generator that draws a new virtual patient for every
window spreads its windows over the reference's whole range and lands *closer* to the 22-patient mixture than
any real 4-8-patient group does: "better" than real, or "as real" inside a wide band, whatever each window looks
like. A window whose beats come from several patients, or a rhythm no patient has, is averaged away.

A within-window measurement cannot be gamed that way: mixing patients *across* windows does not change what
each window holds. Beat consistency (median Pearson r of each beat's QRS-T with the window's median beat,
:mod:`ecg2llm.eval.scorecard.clinical`) is read per window and its distribution over a set's windows judged against
the same
leave-patients-out band draws as every headline, at two points of its lower tail (each a share of windows, so
a band draw's value is the same share over its real windows of unseen patients):

* ``beat_consistency`` -- the share of windows whose consistency is below the band pool's 1st percentile
  (or undefined: fewer than two whole beats): beats that do not repeat at all, noise-like windows.
* ``beat_consistency_q20`` -- the share below the pool's 20th percentile: beats that repeat less well than a
  real patient's, e.g. beats of several patients within one window.

Both are "higher = further from real", like every headline; thresholds come from the whole band pool (unseen
patients only), once, and are reported (``window_thresholds``).

RR statistics. Per-window RR CV, RMSSD, alternation and the successive-difference ratio are reported as
quantiles (``window_quantiles``) but not judged: measured on 2,500 pool windows against planted sets (300
windows each), a "share outside the pool's central 99 %" read 0.04 on clean unseen windows against a band of
[0.00, 0.05] and 0.00 on RR jitter of +-40 ms: 10-s windows of real patients (atrial fibrillation, ectopy)
span every value such jitter produces, so no per-window RR rule separated them (``docs/scorecard.md``).
The set-level ``rhythm`` headline (W1 of the same per-window statistics) stays.
"""

from __future__ import annotations

import numpy as np

#: Within-window headline metrics and what they measure.
WINDOW_HEADLINE: dict[str, str] = {
    "beat_consistency": "share of windows whose beats do not repeat (consistency below 99 % of unseen-patient "
                        "windows)",
    "beat_consistency_q20": "share of windows whose beats repeat less than 80 % of unseen-patient windows' do "
                            "(e.g. beats of several patients in one window)",
}
#: pool quantile of each within-window headline's consistency threshold
CONSISTENCY_Q: dict[str, float] = {"beat_consistency": 0.01, "beat_consistency_q20": 0.20}
RR_KEYS = ("rr_cv", "rmssd_ms", "rr_alt", "rr_sd_ratio")
#: per-window quantiles reported beside the shares (``window_quantiles``)
REPORT_Q = (0.1, 0.5)


def _col(phys: dict, key: str, idx=None) -> np.ndarray:
    v = np.asarray(phys[f"c_{key}"], np.float64)
    return v if idx is None else v[idx]


class WindowJudge:
    """Thresholds of the within-window headlines, fitted on the band pool's windows.

    Parameters
    ----------
    thresholds : dict
        ``{headline: consistency threshold}``: a window below it (or undefined) counts for that headline.
    """

    def __init__(self, thresholds: dict[str, float]):
        self.thresholds = {k: float(v) for k, v in thresholds.items()}

    @classmethod
    def fit(cls, pool_phys: dict, quantiles: dict[str, float] | None = None) -> "WindowJudge":
        """Thresholds from the band pool's per-window beat consistency (``Features.phys``)."""
        bc = _col(pool_phys, "beat_consistency")
        if not np.isfinite(bc).any():
            raise ValueError("the band pool has no window with a defined beat consistency: cannot fit the "
                             "within-window thresholds (is the pool empty?)")
        q = quantiles or CONSISTENCY_Q
        return cls({k: float(np.nanquantile(bc, v)) for k, v in q.items()})

    def flags(self, phys: dict, idx=None) -> dict[str, np.ndarray]:
        """Per window, whether each within-window headline counts it (NaN consistency counts)."""
        bc = _col(phys, "beat_consistency", idx)
        return {k: ~(bc >= t) for k, t in self.thresholds.items()}

    def shares(self, phys: dict, idx=None) -> dict[str, float]:
        """Each within-window headline's value: the share of counted windows."""
        return {k: float(np.mean(v)) if len(v) else float("nan") for k, v in self.flags(phys, idx).items()}

    def quantiles(self, phys: dict) -> dict[str, dict[str, float | None]]:
        """Per-window quantiles of the measures behind the shares (for the report; not judged)."""
        out = {}
        for k in ("beat_consistency", *RR_KEYS):
            v = _col(phys, k)
            v = v[np.isfinite(v)]
            out[k] = {f"q{int(q * 100)}": (float(np.quantile(v, q)) if len(v) else None) for q in REPORT_Q}
        return out

    def describe(self) -> dict:
        return {"consistency_thresholds": self.thresholds, "pool_quantiles": dict(CONSISTENCY_Q)}
