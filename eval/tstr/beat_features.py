"""Inter-patient beat features: RR timing normalised per patient, and beat morphology next to the patient's own.

The features of the published inter-patient classifiers on MIT-BIH (de Chazal et al. 2004, IEEE TBME 51(7);
Mondéjar-Guerra et al. 2019, BSPC 47; Niu et al. 2020, IEEE JBHI 24(5)), computed from a :class:`BeatSet`:

* **RR**: previous, next, local (mean of the ~10 intervals around the beat, :mod:`ecg2llm.eval.beats`), each over
  the patient's RR (median previous-RR over the patient's beats), over the local mean, and next / previous
  (the compensatory pause of a premature beat). Absolute seconds only in the ``"rr_raw"`` ablation. Dividing by the
  patient's own rhythm is what lets a classifier trained on other patients recognise "premature *for this
  patient*" (a 232-style bradycardic record's S beats have longer RR than another patient's N beats).
* **Morphology** (mV, R peak at sample ``BEFORE``): the beat low-pass filtered and sampled every 8 samples
  (22 ms); QRS amplitudes, width proxies and slopes; P-wave and T-wave window statistics.
* **Morphology against the patient**: correlation of the beat (whole window, QRS, P window) with the
  patient's median beat, R amplitude and QRS width over the patient's medians, RMS distance to the median
  beat, and the beat minus the median beat sampled every 16 samples.

* **Rhythm context** (``+rhythm`` sets; :func:`ecg2llm.eval.beats.rhythm_features`): prematurity against the
  median of the neighbouring intervals (the beat's own left out) and the irregularity of that context, with
  their products, so a linear model can call "premature in a *regular* rhythm" (an S beat) apart from
  "early in atrial fibrillation" (an N beat conducted early).

* **Patient-average RR** (``+avg``): previous, next and local RR over the patient's **mean** RR and over
  the mean RR of the 5 minutes around the beat (:func:`ecg2llm.eval.beats.reference_features`) -- the averages of
  de Chazal et al. and Mondéjar-Guerra et al., which long pauses raise (the median does not).
* **Slower reference** (``+slower``): previous RR over the median of the neighbouring intervals clearly
  longer than it, and their share (:func:`ecg2llm.eval.beats.reference_features`): a reference no beat as early as
  this one enters.
* **P wave and QRS against the patient** (``+pwave``, :func:`pwave_block`): a supraventricular beat has a
  normal QRS but an early or different P wave; only patient-relative values (no mV), so 22 training
  patients are not told apart by their amplitudes.

A "patient" is a beat's ``group``: a MIT-BIH record, or one generated sequence for synthetic beats, so
synthetic beats are normalised within their own sequence exactly as real ones within their record. The
patient statistics use no labels, only the beats of that group; compute them on the whole set
(:func:`with_features`) before taking class subsets, or a subset's statistics would differ.
"""
from __future__ import annotations

import functools

import numpy as np

from ..beats import AFTER, BEFORE, FS, REFERENCE_NAMES, RHYTHM_NAMES, BeatSet

R = BEFORE                      # R-peak index in a beat
QRS = (R - 36, R + 36)          # +-100 ms around R
P_WIN = (R - 83, R - 22)        # 230 .. 60 ms before R: the P wave at normal PR intervals
T_WIN = (R + 54, R + 166)       # 150 .. 460 ms after R: ST segment and T wave
DOWNSAMPLE = 8                  # morphology samples every 8 samples (22 ms)
DIFF_DOWNSAMPLE = 16            # beat-minus-patient-median every 16 samples (44 ms)


def _smooth(x: np.ndarray, k: int = 5) -> np.ndarray:
    """Moving average over ``k`` samples along the last axis (edges reflected)."""
    pad = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(k // 2, k // 2)], mode="reflect")
    c = np.cumsum(pad, axis=-1, dtype=np.float64)
    c = np.concatenate([np.zeros(c.shape[:-1] + (1,)), c], axis=-1)
    return ((c[..., k:] - c[..., :-k]) / k).astype(np.float32)


def _rowcorr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with each row of ``b`` (same shape)."""
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1)) + 1e-9
    return ((a * b).sum(1) / den).astype(np.float32)


def _qrs_width(x: np.ndarray) -> np.ndarray:
    """Samples within the QRS window where |x| exceeds half the window's peak |x| (width proxy, s)."""
    q = np.abs(x[:, QRS[0]:QRS[1]])
    return ((q > 0.5 * q.max(1, keepdims=True)).sum(1) / FS).astype(np.float32)


#: RR features without the patient (seconds and beat-to-neighbour ratios): the ``"rr_raw"`` ablation.
RR_RAW = ("rr_pre", "rr_post", "rr_local", "rr_pre/local", "rr_post/local", "rr_post/pre")
#: RR features the classifier sees: every interval over the patient's RR, and the beat-to-neighbour ratios.
#: No absolute seconds and no patient constant: with 22 training patients a per-patient constant (the
#: patient RR itself) names the patient, and trees learn patients instead of prematurity (DS1 CV,
#: ``docs/tstr.md``).
RR_NORMALISED = ("rr_pre/patient", "rr_post/patient", "rr_local/patient", "rr_(post-pre)/patient",
                 "rr_pre/local", "rr_post/local", "rr_post/pre")


def rr_block(beats: BeatSet) -> tuple[np.ndarray, list[str]]:
    """RR features ``(N, 14)`` and their names; patient RR = median previous-RR of the beat's group (the
    ``*_mean`` columns: over the group's mean previous-RR instead, the ``+avg`` sets).

    The median, as de Chazal et al. and Mondéjar-Guerra et al. use a rhythm average that premature beats
    and their compensatory pauses do not move: a mean over all beats is pulled down by a patient's
    ectopic runs, so that patient's premature beats look less premature.
    """
    pre, post = beats.rr[:, 0].astype(np.float64), beats.rr[:, 1].astype(np.float64)
    local = pre / np.where(beats.rr[:, 2] > 0, beats.rr[:, 2], np.nan)  # (N,) pre / (pre / local)
    avg = group_median(pre, beats.group)
    mean = group_mean(pre, beats.group)
    cols = [pre, post, local, avg, pre / avg, post / avg, local / avg, pre / local, post / local, post / pre,
            (post - pre) / avg, pre / mean, post / mean, local / mean]
    names = ["rr_pre", "rr_post", "rr_local", "rr_patient", "rr_pre/patient", "rr_post/patient",
             "rr_local/patient", "rr_pre/local", "rr_post/local", "rr_post/pre", "rr_(post-pre)/patient",
             "rr_pre/patient_mean", "rr_post/patient_mean", "rr_local/patient_mean"]
    return np.stack(cols, 1).astype(np.float32), names


def rhythm_block(beats: BeatSet) -> tuple[np.ndarray, list[str]]:
    """Rhythm-context features ``(N, len(RHYTHM_NAMES))`` (``beats.rhythm``; NaN when the set has none)."""
    if beats.rhythm is None:
        return np.full((len(beats), len(RHYTHM_NAMES)), np.nan, np.float32), list(RHYTHM_NAMES)
    return np.asarray(beats.rhythm, np.float32), list(RHYTHM_NAMES)


#: the ``+avg`` columns: intervals over the patient's mean RR (:func:`rr_block`) and over the 5-min average
AVG_RR = ("rr_pre/patient_mean", "rr_post/patient_mean", "rr_local/patient_mean", "ref_pre/avg5min",
          "ref_post/avg5min", "ref_local/avg5min")
#: the ``+slower`` columns (:func:`ecg2llm.eval.beats.reference_features`)
SLOWER_RR = ("ref_pre/slower_median", "ref_slower_share")


def reference_block(beats: BeatSet) -> tuple[np.ndarray, list[str]]:
    """Reference-rhythm ratios ``(N, len(REFERENCE_NAMES))`` (``beats.reference``; NaN when the set has none)."""
    if beats.reference is None:
        return np.full((len(beats), len(REFERENCE_NAMES)), np.nan, np.float32), list(REFERENCE_NAMES)
    return np.asarray(beats.reference, np.float32), list(REFERENCE_NAMES)


def pwave_block(beats: BeatSet) -> tuple[np.ndarray, list[str]]:
    """P-wave and QRS features against the patient's median beat, patient-relative only (no mV, no seconds of
    the patient's own): QRS correlation and width over the patient's, RMS distance over the patient's QRS
    range, P-window correlation, spread and range over the patient's, and the P peak's shift (s) from the
    patient's median P peak (an ectopic atrial focus changes the P wave and the PR interval)."""
    x = _smooth(beats.x.astype(np.float32))
    med = group_median_beat(x, beats.group)
    q, mq = x[:, QRS[0]:QRS[1]], med[:, QRS[0]:QRS[1]]
    p, mp = x[:, P_WIN[0]:P_WIN[1]], med[:, P_WIN[0]:P_WIN[1]]
    feats = {
        "pw_qrs_corr": _rowcorr(q, mq),
        "pw_qrs_width/patient": _qrs_width(x) / np.maximum(_qrs_width(med), 1 / FS),
        "pw_rms/patient_qrs": np.sqrt(((x - med) ** 2).mean(1)) / (np.ptp(mq, 1) + 1e-3),
        "pw_p_corr": _rowcorr(p, mp),
        "pw_p_std/patient": p.std(1) / (mp.std(1) + 1e-3),
        "pw_p_range/patient": np.ptp(p, 1) / (np.ptp(mp, 1) + 1e-3),
        "pw_p_peak_shift": (p.argmax(1) - mp.argmax(1)) / FS,
    }
    return np.stack([np.asarray(v, np.float32) for v in feats.values()], 1), list(feats)


def group_mean(v: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Each element's group mean of ``v`` (NaN ignored)."""
    _, inv = np.unique(np.asarray(group, dtype=str), return_inverse=True)
    ok = np.isfinite(v)
    s = np.bincount(inv, weights=np.where(ok, v, 0.0))
    n = np.bincount(inv, weights=ok.astype(np.float64))
    return (s / np.maximum(n, 1))[inv]


def group_median(v: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Each element's group median of ``v`` (NaN ignored; NaN for a group without a finite value)."""
    keys, inv = np.unique(np.asarray(group, dtype=str), return_inverse=True)
    out = np.full(len(v), np.nan)
    for k in range(len(keys)):
        m = inv == k
        ok = m & np.isfinite(v)
        if ok.any():
            out[m] = np.median(v[ok])
    return out


def group_median_beat(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """``(N, T)``: the median beat of each beat's group."""
    keys, inv = np.unique(np.asarray(group, dtype=str), return_inverse=True)
    out = np.empty_like(x)
    for k in range(len(keys)):
        m = inv == k
        out[m] = np.median(x[m], axis=0)
    return out


def morphology_block(beats: BeatSet) -> tuple[np.ndarray, list[str]]:
    """Morphology features of the beat alone and against its patient's median beat."""
    x = _smooth(beats.x.astype(np.float32))  # (N, 256)
    med = group_median_beat(x, beats.group)  # (N, 256)
    q = x[:, QRS[0]:QRS[1]]
    p = x[:, P_WIN[0]:P_WIN[1]]
    t = x[:, T_WIN[0]:T_WIN[1]]
    slope = np.diff(q, axis=1) * FS  # (N, 71) mV/s
    r_amp = x[:, R]
    width = _qrs_width(x)
    med_r = med[:, R]
    med_width = _qrs_width(med)
    feats = {
        "r_amp": r_amp, "qrs_max": q.max(1), "qrs_min": q.min(1), "qrs_ptp": np.ptp(q, 1), "qrs_width": width,
        "qrs_abs_area": np.abs(q).mean(1), "qrs_slope_max": slope.max(1), "qrs_slope_min": slope.min(1),
        "qrs_argmin": (q.argmin(1) - (R - QRS[0])) / FS,
        "p_max": p.max(1), "p_min": p.min(1), "p_mean": p.mean(1), "p_std": p.std(1),
        "p_argmax": (p.argmax(1) - (R - P_WIN[0])) / FS,
        "t_max": t.max(1), "t_min": t.min(1), "t_mean": t.mean(1), "t_argmax": t.argmax(1) / FS,
        "corr_patient": _rowcorr(x, med), "corr_patient_qrs": _rowcorr(q, med[:, QRS[0]:QRS[1]]),
        "corr_patient_p": _rowcorr(p, med[:, P_WIN[0]:P_WIN[1]]),
        "rms_to_patient": np.sqrt(((x - med) ** 2).mean(1)),
        "r_amp/patient": r_amp / np.where(np.abs(med_r) > 1e-3, med_r, 1e-3),
        "qrs_width/patient": width / np.maximum(med_width, 1 / FS),
        "p_std/patient": p.std(1) / (med[:, P_WIN[0]:P_WIN[1]].std(1) + 1e-3),
    }
    names = list(feats)
    cols = [np.asarray(v, np.float32) for v in feats.values()]
    ds = x[:, ::DOWNSAMPLE]  # (N, 32)
    dd = (x - med)[:, ::DIFF_DOWNSAMPLE]  # (N, 16)
    names += [f"beat_{i * DOWNSAMPLE}" for i in range(ds.shape[1])]
    names += [f"beat-patient_{i * DIFF_DOWNSAMPLE}" for i in range(dd.shape[1])]
    return np.concatenate([np.stack(cols, 1), ds, dd], 1).astype(np.float32), names


#: Morphology features of the compact set (``"rr+compact"``): QRS shape and the beat against its patient.
COMPACT_MORPH = ("qrs_width", "qrs_width/patient", "r_amp/patient", "corr_patient", "corr_patient_qrs",
                 "corr_patient_p", "rms_to_patient", "p_std/patient", "qrs_ptp", "qrs_slope_max",
                 "qrs_slope_min", "p_std", "t_max", "t_min")
#: Named feature subsets (selected by cross-validation on DS1, :mod:`ecg2llm.eval.tstr.strong_classifier`).
FEATURE_SETS = ("rr_raw", "rr", "rr+compact", "rr+patient", "rr+morph", "rr+morph+patient", "rr+rhythm",
                "rr+rhythm+compact", "rr+rhythm+patient", "rr+rhythm+morph+patient",
                # third pass (SVEB): patient-average RR, the slower-beats reference, P wave / QRS vs the patient
                "rr+avg", "rr+slower", "rr+avg+slower", "rr+pwave", "rr+avg+pwave", "rr+avg+slower+pwave",
                "rr+rhythm+avg", "rr+rhythm+slower", "rr+rhythm+avg+slower", "rr+rhythm+pwave", "rr+rhythm+avg+pwave",
                "rr+rhythm+avg+slower+pwave",
                # fourth pass (SVEB): mean references only (de Chazal et al. 2004's average RR), no median
                "rr_mean", "rr_mean+irregularity", "rr_mean+irregularity+pwave")


#: ``rr_mean`` sets: every interval over a **mean** reference (the patient's mean RR, the 5-min mean, the local
#: mean of the 10 intervals around the beat; de Chazal et al. 2004), no median. A median of a record in which
#: premature beats are the majority (ectopic atrial runs) is a premature interval, so its S beats look on time
#: against it; long pauses raise a mean, and a run of premature beats moves it only by its share.
RR_MEAN = ("rr_pre/patient_mean", "rr_post/patient_mean", "rr_local/patient_mean", "ref_pre/avg5min",
           "ref_post/avg5min", "ref_local/avg5min", "rr_pre/local", "rr_post/local", "rr_post/pre")
#: the ``+irregularity`` columns: how irregular the neighbouring intervals are (ratios, no reference interval)
IRREGULARITY = ("ctx_irregularity", "ctx_mad", "ctx_irregular_share")


def _mean_features(beats: BeatSet, feature_set: str) -> tuple[np.ndarray, list[str]]:
    """The ``rr_mean`` family: :data:`RR_MEAN`, then :data:`IRREGULARITY`, then :func:`pwave_block`."""
    full, names = rr_block(beats)
    ref, ref_names = reference_block(beats)
    h, h_names = rhythm_block(beats)
    full, names = np.concatenate([full, ref, h], 1), names + ref_names + h_names
    want = RR_MEAN + (IRREGULARITY if "+irregularity" in feature_set else ())
    out, out_names = full[:, [names.index(n) for n in want]], list(want)
    if feature_set.endswith("+pwave"):
        pw, pw_names = pwave_block(beats)
        out, out_names = np.concatenate([out, pw], 1), out_names + pw_names
    return out, out_names


def beat_features(beats: BeatSet, feature_set: str = "rr+morph+patient") -> tuple[np.ndarray, list[str]]:
    """Feature matrix ``(N, F)`` float32 (NaN allowed: trees route it, linear models impute) and the names.

    Parameters
    ----------
    beats : BeatSet
        Beats with their ``group`` (patient or generated sequence); patient statistics come from the beats
        of each group in ``beats``, so pass the whole set, not a class subset.
    feature_set : str
        ``"rr_raw"``: RR in seconds and beat-to-neighbour ratios, no patient; ``"rr"``: RR normalised per
        patient (:data:`RR_NORMALISED`); ``"rr+compact"``: plus :data:`COMPACT_MORPH`; ``"rr+patient"``:
        plus all morphology against the patient's median beat; ``"rr+morph"``: plus the beat's own
        morphology; ``"rr+morph+patient"``: plus both. ``"rr+rhythm..."``: the same with the rhythm context
        (:func:`rhythm_block`) after the RR features; ``+avg`` (:data:`AVG_RR`), ``+slower``
        (:data:`SLOWER_RR`) and ``+pwave`` (:func:`pwave_block`) add their columns in that order after them.
    """
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set must be one of {FEATURE_SETS}, got {feature_set!r}")
    if not len(beats):
        return np.zeros((0, 0), np.float32), []
    if feature_set.startswith("rr_mean"):
        return _mean_features(beats, feature_set)
    rr, rr_names = rr_block(beats)
    keep = [rr_names.index(n) for n in (RR_RAW if feature_set == "rr_raw" else RR_NORMALISED)]
    rr, rr_names = rr[:, keep], [rr_names[i] for i in keep]
    if feature_set.startswith("rr+rhythm"):
        h, h_names = rhythm_block(beats)
        rr, rr_names = np.concatenate([rr, h], 1), rr_names + h_names
        feature_set = feature_set.replace("+rhythm", "")
    if "+avg" in feature_set or "+slower" in feature_set:
        full, full_names = rr_block(beats)
        ref, ref_names = reference_block(beats)
        full, full_names = np.concatenate([full, ref], 1), full_names + ref_names
        want = (AVG_RR if "+avg" in feature_set else ()) + (SLOWER_RR if "+slower" in feature_set else ())
        cols = [full_names.index(n) for n in want]
        rr, rr_names = np.concatenate([rr, full[:, cols]], 1), rr_names + list(want)
        feature_set = feature_set.replace("+avg", "").replace("+slower", "")
    if feature_set == "rr+pwave":
        pw, pw_names = pwave_block(beats)
        return np.concatenate([rr, pw], 1), rr_names + pw_names
    if feature_set in ("rr_raw", "rr"):
        return rr, rr_names
    morph, m_names = morphology_block(beats)
    if feature_set == "rr+compact":
        keep = [m_names.index(n) for n in COMPACT_MORPH]
    elif feature_set in ("rr+morph", "rr+patient"):  # the beat alone, or only relative to its patient
        keep = [i for i, n in enumerate(m_names) if ("patient" in n) == (feature_set == "rr+patient")]
    else:
        keep = list(range(len(m_names)))
    return np.concatenate([rr, morph[:, keep]], 1), rr_names + [m_names[i] for i in keep]


@functools.lru_cache(maxsize=None)
def feature_names(feature_set: str) -> tuple[str, ...]:
    """The column names :func:`beat_features` returns for ``feature_set`` (from a two-beat dummy set)."""
    dummy = BeatSet(np.zeros((2, BEFORE + AFTER), np.float32), np.ones((2, 4), np.float32),
                    np.zeros(2, np.int64), np.array(["d", "d"], dtype=object))
    return tuple(beat_features(dummy, feature_set)[1])


def with_features(beats: BeatSet, feature_set: str = "rr+morph+patient", *more: str) -> BeatSet:
    """``beats`` with ``features`` computed on the whole set, so class subsets keep their patient statistics.

    ``more`` feature sets add their columns not already in ``feature_set`` (e.g. a two-stage model's linear
    set), so one stored matrix serves both stages; ``meta["feature_set"]`` is then the names joined by ``|``.
    """
    f, names = beat_features(beats, feature_set)
    for extra in more:
        g, g_names = beat_features(beats, extra)
        new = [i for i, n in enumerate(g_names) if n not in names]
        if new and len(beats):
            f, names = np.concatenate([f, g[:, new]], 1), names + [g_names[i] for i in new]
    out = beats.subset(np.arange(len(beats)))
    out.features = f
    out.meta["feature_names"] = names
    out.meta["feature_set"] = "|".join((feature_set,) + tuple(m for m in more if m != feature_set))
    return out
