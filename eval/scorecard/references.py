"""Reference rows, scored by the same code as the synthetic set so that every number has a yardstick.

* ``real DS1`` -- real windows of the training patients against the DS2 reference: the ceiling a
  perfect generator of new patients would reach (rFED = 1 by construction, disc near 0).
* ``ECGSYN`` -- the classic dynamical-model simulator (McSharry et al. 2003, ``neurokit2.ecg_simulate``
  with ``method="ecgsyn"``) at 360 Hz, one 10-s window per draw, heart rates drawn from the DS1 windows'
  detected heart rates: a well-known non-learned baseline.
* ``tokenizer round trip`` -- held-out real DS2 windows passed through ``decode(encode(x))`` of a
  tokenizer: the ceiling of any LM that uses that tokenizer (:func:`tokenizer_roundtrip_row`).
* anything else -- e.g. a bigram-token sampler (the floor): build its windows and call
  :func:`score_windows`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ecg2llm.core.io import atomic_path

from ..data import FS, WindowSet, real_windows
from .features import cache_key

if TYPE_CHECKING:  # annotations only: the scorer imports this module (through headline), not the reverse
    from .scorer import Scorer

REFERENCE_ROWS = ("ds1", "ecgsyn")
ROW_NAMES = {"ds1": "real DS1 (ceiling)", "ecgsyn": "ECGSYN (neurokit2)"}


def score_windows(
    scorer: Scorer, name: str, windows: WindowSet | np.ndarray, fs: float = FS, memorization: bool = True
) -> dict:
    """Generic hook: score any ``(N, T)`` set of windows in mV as a report row named ``name``.

    This is how the LM-dependent rows are added (bigram-token sampler, a second LM...): produce 10-s
    windows at 360 Hz in mV, then ``score_windows(scorer, "bigram sampler", x)``; the row appears in the
    report built from ``scorer`` afterwards. See :meth:`ecg2llm.eval.scorecard.scorer.Scorer.score_windows`.
    """
    return scorer.score_windows(name, windows, fs=fs, memorization=memorization)


def ds1_windows(scorer: Scorer, n: int) -> WindowSet:
    """``n`` random 10-s windows of the training records (seeded like the reference)."""
    s = scorer.settings
    return real_windows(
        s.train_records,
        scorer.data_dir,
        n=n,
        seed=s.seed + 2,
        window_s=s.window_s,
        exclude=scorer.train_reference()[0],
        source="real DS1 (training patients)",
    )


def ds1_row(scorer: Scorer, n: int = 200) -> dict:
    """Real DS1 vs the DS2 reference: the ceiling row (memorization is undefined: these *are* DS1)."""
    return scorer.score_windows(ROW_NAMES["ds1"], ds1_windows(scorer, n), memorization=False)


def ecgsyn_windows(
    n: int,
    heart_rates: Sequence[float],
    seed: int = 0,
    fs: float = FS,
    window_s: float = 10.0,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> WindowSet:
    """``n`` ECGSYN windows, heart rates drawn (with replacement, seeded) from ``heart_rates``.

    Each window is simulated 2 s longer than needed and the first 2 s dropped, so the model's start-up
    transient is not scored. Cached as ``.npz`` under ``cache_dir`` (ECGSYN takes ~0.1 s per window).
    """
    import warnings

    import neurokit2 as nk
    from tqdm.auto import tqdm

    hr_pool = np.asarray([h for h in heart_rates if np.isfinite(h)], np.float64)
    if not len(hr_pool):
        raise ValueError("ecgsyn_windows needs at least one finite heart rate to draw from")
    rng = np.random.default_rng(seed)
    hrs = rng.choice(hr_pool, size=n, replace=True)
    win, lead_in = int(round(window_s * fs)), 2.0
    path = None
    if cache_dir is not None:
        path = (
            Path(cache_dir)
            / f"ecgsyn_{cache_key(nk.__version__, n, seed, fs, window_s, hrs.round(6).tolist())}.npz"
        )
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                x = z["x"]
            return _ecgsyn_set(x, hrs, fs)
    out = []
    for i, hr in enumerate(tqdm(hrs, desc="ECGSYN", disable=not progress, leave=False)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sig = nk.ecg_simulate(
                duration=window_s + lead_in + 1.0,
                sampling_rate=fs,
                heart_rate=float(hr),
                method="ecgsyn",
                random_state=seed * 100003 + i,
            )
        s0 = int(round(lead_in * fs))
        out.append(np.asarray(sig, np.float32)[s0 : s0 + win])
    x = np.stack(out)
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, x=x)
    return _ecgsyn_set(x, hrs, fs)


def _ecgsyn_set(x: np.ndarray, hrs: np.ndarray, fs: float) -> WindowSet:
    return WindowSet(
        x=x,
        fs=fs,
        names=[f"ecgsyn_{i:04d}" for i in range(len(x))],
        source="ECGSYN (neurokit2)",
        meta={"heart_rates": hrs.tolist()},
    )


def ds1_heart_rates(scorer: Scorer, n: int = 500) -> np.ndarray:
    """Detected heart rates of valid DS1 windows: the distribution ECGSYN's rates are drawn from."""
    feats = scorer.features(ds1_windows(scorer, n))
    return feats.phys["hr_bpm"][feats.phys["valid"]]


def ecgsyn_row(scorer: Scorer, n: int = 200) -> dict:
    """ECGSYN windows with DS1-matched heart rates, scored like any generator."""
    hr = ds1_heart_rates(scorer, max(n, 200))
    ws = ecgsyn_windows(n, hr, seed=scorer.settings.seed, cache_dir=scorer.cache, progress=scorer.verbose)
    return scorer.score_windows(ROW_NAMES["ecgsyn"], ws)


def tokenizer_roundtrip_windows(tokenizer, windows: WindowSet, texture: bool = False, seed: int = 0) -> WindowSet:
    """``decode(encode(x))`` of each window with an :class:`tokenizer.ECGTokenizer` (cut/padded to length).

    ``texture=True`` decodes with the tokenizer's texture model (window ``i`` seeded ``seed + i``), as
    generated ECGs are decoded by default on tokenizer v2: the like-for-like real side for them. A recording's
    own texture state (tokenizer v3's ``state["texture"]``: its mains lines and noise floor) is dropped, so the
    texture is the bank's draw, as for generated ECGs.
    """
    if getattr(tokenizer, "texture_state", False):  # generated ECGs carry no recorded texture: like for like
        import copy

        tokenizer = copy.copy(tokenizer)
        tokenizer.texture_state = False  # (and encode skips measuring it)
    out = []
    for i, x in enumerate(windows.x):
        ids, state = tokenizer.encode(x, windows.fs)
        if texture:
            y = np.asarray(tokenizer.decode(ids, state, texture=True, seed=seed + i), np.float32)
        else:
            y = np.asarray(tokenizer.decode(ids, state), np.float32)
        if tokenizer.fs != windows.fs:
            from ecg2llm.tokenizer.data import resample

            y = resample(y, tokenizer.fs, windows.fs).astype(np.float32)
        n = windows.x.shape[1]
        out.append(y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)), mode="edge"))
    return WindowSet(
        x=np.stack(out),
        fs=windows.fs,
        names=windows.names,
        records=windows.records,
        starts=windows.starts,
        source=f"{windows.source} through {tokenizer.tokenizer_type} tokenizer",
    )


def tokenizer_roundtrip_row(scorer: Scorer, tokenizer, n: int = 200, name: str | None = None,
                            texture: bool = False) -> dict:
    """Held-out DS2 windows (disjoint from the reference) through a tokenizer and back: its ceiling row.

    Parameters
    ----------
    tokenizer : tokenizer.ECGTokenizer or path
        A loaded tokenizer or a folder for ``ECGTokenizer.from_pretrained``.
    texture : bool
        Decode with the tokenizer's texture model (tokenizer v2), as generated ECGs are decoded by default:
        the best a generator on these tokens can score, decoded the same way (window ``i`` seeded ``i``).
    """
    if isinstance(tokenizer, (str, Path)):
        from ecg2llm.tokenizer import ECGTokenizer

        tokenizer = ECGTokenizer.from_pretrained(tokenizer)
    if texture and not getattr(tokenizer, "has_texture", False):
        from ecg2llm.core.errors import ConfigError

        raise ConfigError(f"texture=True needs a tokenizer with a texture model; {tokenizer.tokenizer_type} has none")
    t = time.time()
    ws = tokenizer_roundtrip_windows(tokenizer, scorer.heldout_real(n), texture=texture)
    d = tokenizer.describe()
    name = name or (f"tokenizer round trip ({d['tokenizer_type']}, {d['tokens_per_second']:.0f} tok/s"
                    f"{', texture decode' if texture else ''})")
    row = scorer.score_windows(name, ws)
    row["tokenizer"] = {
        k: d[k] for k in ("tokenizer_type", "tokens_per_second", "bits_per_second", "weights_hash")
    }
    row["tokenizer"]["texture"] = bool(texture)
    row["seconds"] = round(time.time() - t, 2)
    return row


def reference_rows(scorer: Scorer, which: Sequence[str] = REFERENCE_ROWS, n: int = 200) -> dict[str, dict]:
    """Score the named reference rows (``"ds1"``, ``"ecgsyn"``); returns ``{row name: metrics}``."""
    makers = {"ds1": ds1_row, "ecgsyn": ecgsyn_row}
    unknown = [w for w in which if w not in makers]
    if unknown:
        from ecg2llm.core.errors import ConfigError

        raise ConfigError(
            f"unknown reference row(s) {unknown}; choose from {sorted(makers)}, 'all' or 'none'"
        )
    rows = {}
    for w in which:
        row = makers[w](scorer, n)
        rows[row["name"]] = row
    return rows
