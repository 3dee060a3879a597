"""Texture of tokenizer v3's decode on DS2: can a classifier tell 10-s round-trip windows from real ones?

Launch::

    python scripts/beat_texture.py --tokenizer v3 --data_dir ../shared/data --out docs/results/texture_v3.json \
        --figure docs/figures/tokenizer_v3_texture.png
    python scripts/beat_texture.py --tokenizer runs/tok/v3_bank --seconds 300 --out runs/texture_v3.json

Each DS2 record's MLII is encoded once and decoded twice: deterministic (``decode(ids, state)``) and with
texture (``decode(ids, state, texture=True, seed=i)`` for record ``i``). Scores, all with folds grouped by
record (:mod:`ecg2llm.tokenizer.texture_check`):

* ``project``: the project's texture discriminator (log Welch spectrum + slope statistics of 10-s windows,
  logistic regression; ``|accuracy - 0.5|``, goal <= 0.15; v2's texture decode: 0.231);
* ``gradient_boosting``: the same features through a gradient-boosted classifier (scikit-learn's
  ``HistGradientBoostingClassifier``): a stand-in for the independent check kept aside (a gradient-boosted
  classifier on log power spectra and slope statistics), which reads v2 at 0.45-0.49;
* the project's score on feature subsets (spectrum bands, slope statistics): what still gives it away;
* the mean log10 power spectrum of real, deterministic and texture windows (the figure), and the texture
  decode's mean offset from real per band (v2's was 0.1-0.2 log10 units low at 150-180 Hz);
* band RMSE / PRDN of both decodes (texture adds noise, so its error is larger by design).

Writes the JSON (command, git sha, date) and, with ``--figure``, a PNG of the spectra.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.core.errors import TokenizerError

BANDS_HZ = ((0, 20), (20, 45), (45, 75), (75, 100), (100, 140), (140, 181))


@dataclass
class BeatTextureConfig:
    """Fields of ``scripts/beat_texture.py`` (every field is a flag and a ``--config`` YAML key)."""

    tokenizer: str = "v3"           # a beat (v3) tokenizer with texture.safetensors: shipped name or folder
    out: str | None = None          # JSON with every score
    figure: str | None = None       # PNG: mean log spectra of real, deterministic and texture windows
    data_dir: str | None = None     # data root holding mitdb/ ($ECG2LLM_DATA otherwise)
    seconds: float = 0.0            # first seconds of each record (0: whole records)
    seed: int = 0                   # texture seed of record i: seed + i
    num_threads: int = 1            # torch CPU threads (the texture sample's STFT)
    texture_state: bool = True      # use the recording's texture state (state["texture"]); false: as before it
    records: str = "DS2"            # DS2, DS1, or a comma-separated list of MIT-BIH records
    record_line_hz: bool = True     # each recording's mains frequency (state["line_hz"]); false: the bank's
    vfine_eq: bool = True           # the 0.5-Hz EQ around mains (state["real_vfine"]); false: the decode ignores it
    seam: bool = True               # smooth the coarse windows' ends in the texture decode (tok.texture_seam)


def gradient_boosting_score(real, fake, groups, folds: int = 5, seed: int = 0) -> float:
    """``|accuracy - 0.5|`` of a gradient-boosted real-vs-decoded classifier, folds grouped by record."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from ecg2llm.tokenizer.texture_check import discriminator_score

    def boosted(seed):
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)

    return discriminator_score(real, fake, groups, folds=folds, seed=seed, classifier=boosted)["score"]


def state_bits(states: list[dict], seconds: float) -> dict:
    """Side information of the texture states (``state["texture"]``): raw bits per second (int8 levels, int16
    line amplitudes) and the zeroth-order entropy of each field's segment-to-segment differences (per column,
    pooled over records), as the baseline knots' 13.0 bit/s are counted; the per-recording line frequencies
    (``line_hz``, int32) count their raw bits in both."""
    import numpy as np

    raw = ent = 0.0
    per = {}
    for key, bits in (("levels", 8), ("real", 8), ("lines", 16), ("nyquist", 16), ("quarter", 16), ("real_fine", 8),
                      ("real_vfine", 8)):
        if any(key not in s for s in states):  # optional keys (older states lack them)
            continue
        arrs = [np.asarray(s[key]).reshape(len(s[key]), -1).astype(np.int64) for s in states]
        raw_k = sum(a.size for a in arrs) * bits
        d = np.concatenate([np.diff(np.vstack([np.zeros((1, a.shape[1]), np.int64), a]), axis=0) for a in arrs])
        e = 0.0
        for c in range(d.shape[1]):
            _, cnt = np.unique(d[:, c], return_counts=True)
            p = cnt / cnt.sum()
            e += float(-(p * np.log2(p)).sum()) * len(d)
        per[key] = {"raw_bits_per_second": raw_k / seconds, "entropy_bits_per_second": e / seconds}
        raw, ent = raw + raw_k, ent + e
    if all("line_hz" in s for s in states):  # per recording, not per segment: counted raw (int32 per line)
        raw_k = sum(np.asarray(s["line_hz"]).size for s in states) * 32
        per["line_hz"] = {"raw_bits_per_second": raw_k / seconds, "entropy_bits_per_second": raw_k / seconds}
        raw, ent = raw + raw_k, ent + raw_k
    return {"raw_bits_per_second": raw / seconds, "entropy_bits_per_second": ent / seconds, "fields": per,
            "segment_s": 10.0}


def save_figure(path, freqs, spectra: dict, score: dict) -> None:
    """Mean log10 Welch spectra (top) and each decode's offset from real (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecg2llm.core.io import atomic_path

    fig, (a, b) = plt.subplots(2, 1, figsize=(7.5, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    style = {"real": ("k", "real DS2 MLII"), "deterministic": ("tab:blue", "v3 round trip, deterministic"),
             "texture": ("tab:red", "v3 round trip, texture=True")}
    for k, v in spectra.items():
        c, label = style[k]
        if k in score:
            label += f" (discriminator {score[k]:.3f})"
        a.plot(freqs, v, color=c, lw=1.2, label=label)
        if k != "real":
            b.plot(freqs, v - spectra["real"], color=c, lw=1.2)
    a.set_ylabel("mean log10 power (mV²/Hz)")
    a.legend(fontsize=8)
    a.set_title("Tokenizer v3: 10-s DS2 windows, Welch spectra (256 samples at 360 Hz)", fontsize=10)
    b.axhline(0, color="k", lw=0.8)
    b.set_ylabel("minus real (log10)")
    b.set_xlabel("Hz")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


@run_main
def main(argv=None):
    """Parse flags (:class:`BeatTextureConfig`), score the texture on DS2, write JSON (+ figure); returns 0."""
    import numpy as np
    import torch
    from scipy.signal import welch
    from tqdm.auto import tqdm

    from ecg2llm.core.io import git_sha, write_json
    from ecg2llm.tokenizer.baseline import band_filter
    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer
    from ecg2llm.tokenizer.evaluation import load_signals
    from ecg2llm.tokenizer.splits import DS2
    from ecg2llm.tokenizer.texture_check import discriminator_score, to_windows, window_features

    a = parse_config(BeatTextureConfig, argv, description=__doc__)
    torch.set_num_threads(a.num_threads)
    tok = BeatTokenizer.from_pretrained(a.tokenizer)
    tok.texture_state = a.texture_state
    tok.texture_seam = a.seam
    import ecg2llm.tokenizer.texture_bank as texture_bank

    texture_bank.RECORD_LINE_HZ = a.record_line_hz
    texture_bank.VFINE_EQ = a.vfine_eq
    if not tok.has_texture:
        raise TokenizerError(f"{a.tokenizer} has no texture.safetensors; fit one with scripts/fit_texture.py")
    t0 = time.time()
    from ecg2llm.tokenizer.splits import DS1

    recs = {"DS2": list(DS2), "DS1": list(DS1)}.get(a.records.upper(), [r.strip() for r in a.records.split(",")])
    sigs = load_signals(recs, a.data_dir, fs=tok.fs, seconds=a.seconds or None)
    feats = {"real": [], "deterministic": [], "texture": []}
    spec = {k: [] for k in feats}
    err = {k: {"sq": 0.0, "n": 0, "prdn": []} for k in ("deterministic", "texture")}
    groups = []
    tstates, seconds = [], 0.0
    for i, x in enumerate(tqdm(sigs.values(), desc="v3 texture on DS2", unit="record")):
        ids, state = tok.encode(x, tok.fs)
        if "texture" in state:
            tstates.append(state["texture"])
        seconds += len(x) / tok.fs
        ys = {"real": x, "deterministic": tok.decode(ids, state),
              "texture": tok.decode(ids, state, texture=True, seed=a.seed + i)}
        xb = band_filter(x, tok.fs)
        for k, y in ys.items():
            w = to_windows(y, tok.fs)
            feats[k].append(window_features(w, tok.fs))
            f, p = welch(w - w.mean(1, keepdims=True), fs=tok.fs, nperseg=256, axis=1)
            spec[k].append(np.log10(p + 1e-12))
            if k != "real":
                e = xb - band_filter(y, tok.fs)
                err[k]["sq"] += float(np.sum(e.astype(np.float64) ** 2))
                err[k]["n"] += len(e)
                err[k]["prdn"].append(100 * float(np.sqrt(np.sum(e ** 2) / np.sum((xb - xb.mean()) ** 2))))
        groups.append(np.full(len(feats["real"][-1]), i))
    g = np.concatenate(groups)
    R = np.vstack(feats["real"])
    mean_spec = {k: np.vstack(v).mean(0) for k, v in spec.items()}
    out = {"command": "python scripts/beat_texture.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "git_sha": git_sha(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "tokenizer": str(a.tokenizer), "weights_hash": tok.weights_hash, "records": list(sigs),
           "seconds": a.seconds or None, "windows_per_class": int(len(R)), "seed": a.seed,
           "freqs_hz": [float(v) for v in f], "mean_log10_spectrum": {k: v.tolist() for k, v in mean_spec.items()}}
    if tstates:
        out["texture_state"] = state_bits(tstates, seconds)
        print(f"texture state: {out['texture_state']['raw_bits_per_second']:.1f} bit/s raw, "
              f"{out['texture_state']['entropy_bits_per_second']:.1f} bit/s entropy-coded")
    for k in ("deterministic", "texture"):
        F = np.vstack(feats[k])
        d = mean_spec[k] - mean_spec["real"]
        band = {f"spectrum {lo}-{hi} Hz": np.flatnonzero((f >= lo) & (f < hi)) for lo, hi in BANDS_HZ}
        sub = {name: discriminator_score(R[:, i], F[:, i], g)["score"] for name, i in band.items()}
        sub["slope statistics"] = discriminator_score(R[:, len(f):], F[:, len(f):], g)["score"]
        out[k] = {"project": discriminator_score(R, F, g), "gradient_boosting": gradient_boosting_score(R, F, g),
                  "project_by_feature_subset": sub,
                  "band_rmse_uv": 1000 * float(np.sqrt(err[k]["sq"] / max(err[k]["n"], 1))),
                  "band_prdn": float(np.mean(err[k]["prdn"])),
                  "log10_offset_by_band": {f"{lo}-{hi} Hz": float(d[(f >= lo) & (f < hi)].mean())
                                           for lo, hi in BANDS_HZ}}
        print(f"{k:13s} project disc {out[k]['project']['score']:.3f}  gradient boosting "
              f"{out[k]['gradient_boosting']:.3f}  band RMSE {out[k]['band_rmse_uv']:.1f} uV  "
              f"PRDN {out[k]['band_prdn']:.2f} %")
    out["elapsed_s"] = time.time() - t0
    if a.out:
        write_json(a.out, out)
    if a.figure:
        save_figure(a.figure, f, mean_spec, {k: out[k]["project"]["score"] for k in ("deterministic", "texture")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
