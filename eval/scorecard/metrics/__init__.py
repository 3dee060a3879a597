"""Metrics of stage 3, each with its direction and a one-line definition (used by reports and metrics.json).

``METRICS`` maps a ``metrics.json`` key to ``(direction, definition)``; direction is ``"lower"``,
``"higher"`` or ``"target"`` (closest to a stated value is best).
"""

from .discriminative import discriminative_score
from .fidelity import frechet_distance, median_bandwidth, mmd_rbf, prdc
from .forecast import crps_ensemble, forecast_metrics, naive_beat_ensemble, naive_last_beat, naive_mean
from .memorization import memorization_metrics, nearest_distances
from .physiology import beat_features, detect_rpeaks, physiology_metrics

METRICS: dict[str, tuple[str, str]] = {
    "fed": (
        "lower",
        "Fréchet ECG distance: Fréchet distance between Gaussians fitted to the embeddings of "
        "the set and of the real DS2 reference",
    ),
    "rfed": (
        "lower",
        "FED / FED(real DS1 vs real DS2) at the same number of windows; 1 = as close as other real patients",
    ),
    "mmd": (
        "lower",
        "unbiased squared MMD of the embeddings, RBF kernel, median-heuristic bandwidth; ~0 "
        "(can be slightly negative) = same distribution",
    ),
    "precision": ("higher", "fraction of set windows inside the k=5-NN ball of some real window (fidelity)"),
    "recall": ("higher", "fraction of real windows inside the k=5-NN ball of some set window (diversity)"),
    "density": (
        "target",
        "mean count of real k=5-NN balls holding a set window, / k; 1 for matching distributions",
    ),
    "coverage": ("higher", "fraction of real windows whose k=5-NN ball holds at least one set window"),
    "valid_rhythm_rate": (
        "higher",
        "fraction of windows with >= 3 detected R-peaks and a heart rate of 30-220 bpm (neurokit2)",
    ),
    "hr_w1_bpm": (
        "lower",
        "Wasserstein-1 distance (bpm) between heart-rate distributions of valid windows "
        "and of the real reference",
    ),
    "sdnn_w1_ms": ("lower", "Wasserstein-1 distance (ms) between per-window SDNN distributions"),
    "rmssd_w1_ms": ("lower", "Wasserstein-1 distance (ms) between per-window RMSSD distributions"),
    "r_amp_w1_mv": ("lower", "Wasserstein-1 distance (mV) between median R-peak amplitudes"),
    "beat_corr": (
        "higher",
        "mean over windows of the best Pearson r between the median beat and any real median beat",
    ),
    "disc_score": (
        "lower",
        "|accuracy - 0.5| of a real-vs-set gradient-boosted classifier under 5-fold "
        "cross-validation (balanced classes)",
    ),
    "disc_score_ds1": (
        "lower",
        "the same discriminative score against real DS1 windows (the generator's training "
        "patients) instead of DS2; real DS1 vs DS2 differ by patient, so this is the one a "
        "DS1-trained generator can bring near 0",
    ),
    "memorization_ratio": (
        "higher",
        "median distance to the nearest DS1 training window (embedding) of the "
        "set / of held-out real DS2 windows; ~1 = no copying, << 1 = copies",
    ),
    "near_copy_rate": (
        "lower",
        "fraction of set windows closer to DS1 than the 1st percentile of held-out "
        "real DS2 windows (~0.01 when nothing is copied)",
    ),
    "forecast_crps": (
        "lower",
        "CRPS (mV) of K sampled 5-s continuations of a 5-s real DS2 prefix, "
        "E|X-y| - E|X-X'|/2, averaged over samples and tasks",
    ),
    "forecast_mae_median": ("lower", "MAE (mV) of the pointwise median of the K sampled continuations"),
    "naive_last_beat_mae": ("lower", "MAE (= CRPS) (mV) of repeating the prefix's last RR cycle"),
    "naive_mean_mae": ("lower", "MAE (= CRPS) (mV) of predicting the prefix mean"),
    "naive_ensemble_crps": (
        "lower",
        "CRPS (mV) of 16 continuations repeating the last beat with RR intervals resampled from the prefix",
    ),
}

__all__ = [
    "METRICS",
    "beat_features",
    "crps_ensemble",
    "detect_rpeaks",
    "discriminative_score",
    "forecast_metrics",
    "frechet_distance",
    "median_bandwidth",
    "memorization_metrics",
    "mmd_rbf",
    "naive_beat_ensemble",
    "naive_last_beat",
    "naive_mean",
    "nearest_distances",
    "physiology_metrics",
    "prdc",
]
