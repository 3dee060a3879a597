"""Planted-defect sets: real held-out ECG windows given one known flaw each, to test the scorecard itself.

A scorecard that cannot see a fault cannot make a generator fix it. Each set here is built from real 10-s
MLII windows of patients no generator trained on (by default the validation records), with one defect:

=================  =====================================================================================
``clean``          the windows unchanged: must come out "as real" on every headline metric
``morph_swap``     every beat replaced by another patient's beat, time-warped onto the original R peaks
                   (beat shape of patient B at the RR sequence of patient A)
``rr_jitter``      every RR interval scaled by an independent factor in [0.75, 1.25] (beats time-warped)
``lowpass``        over-smoothing: 4th-order zero-phase Butterworth low-pass at 12 Hz
``train_copy``     exact copies of LM training windows (DS1 training records, random offsets)
``time_reverse``   the window played backwards (P wave after the QRS)
``amplitude_half`` the signal scaled by 0.5
``too_clean``      baseline wander and noise removed (0.5-40 Hz band-pass)
``beat_drop``      one beat in four removed (replaced by a straight line): pauses
``white_noise``    white noise of 0.1 mV RMS added
``polarity_flip``  the signal negated (a reversed lead)
``beat_clone``     one real beat of the window tiled at its median RR (no beat-to-beat variation at all)
``mains_60hz``     a 60 Hz sinusoid of 0.1 mV amplitude added (random phase per window)
``time_stretch``   the record played 25 % slower (a sampling-rate mix-up: heart rate down, waves wider)
``clipping``       each window clipped to its own 5th-95th percentile range (a saturated recorder)
``shuffle_1s``     the window's ten 1-s segments in random order (discontinuities, broken rhythm)
``dc_offset``      1.5 mV added to every sample: an invariance check, must stay "as real" like ``clean``
``beat_mix``       within each window, every beat from a different pool patient (time-warped onto the
                   window's own R peaks): one window, several patients (what a many-patient mix does per beat)
``rr_jitter_40ms`` every RR interval moved by an independent +-40 ms (uniform), beats themselves unchanged
``copy_208``       exact copies of MIT-BIH record 208 (MLII), which the v2 LMs trained on and the band pool held
``cinc_copy``      exact copies of CinC 2017 training recordings (resampled to 360 Hz, a 10-s window each)
``copy_offgrid``   exact copies cut half a 2.5-s hop off the grid (1.25 s + k x 2.5 s), half from record 208 (MLII
                   or V1), half from CinC 2017 training recordings: the worst case of a copy search on a fixed hop
=================  =====================================================================================

Beat-level edits go through :func:`warp_beats`, a piecewise-linear time warp that maps every output
sample to the source signal at the same phase of the corresponding cardiac cycle (R peaks aligned, cycle
boundaries at 40 % / 60 % of the RR interval before / after each R peak), so the result is continuous and
has exactly the requested R-peak times. R peaks come from the MIT-BIH reference annotations.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

from ecg2llm.tokenizer.data import read_record, resolve_data_dir
from ecg2llm.tokenizer.splits import DEFAULT_VALID, inter_patient_split

from ..data import FS, WINDOW_S, WindowSet, real_windows

DEFECTS: dict[str, str] = {
    "clean": "real unseen-patient windows, unchanged",
    "morph_swap": "beat morphology of another patient at unchanged RR",
    "rr_jitter": "RR intervals jittered +-25 %",
    "lowpass": "over-smoothed (12 Hz low-pass)",
    "train_copy": "exact copies of LM training windows",
    "time_reverse": "time-reversed",
    "amplitude_half": "amplitude x 0.5",
    "too_clean": "baseline wander and noise removed (0.5-40 Hz)",
    "beat_drop": "one beat in four dropped",
    "white_noise": "white noise 0.1 mV RMS added",
    # a second family, kinds a generator or a pipeline bug produces (added after the first ten were fixed)
    "polarity_flip": "polarity inverted (lead reversed)",
    "beat_clone": "one real beat repeated at a constant RR (copy-paste generator)",
    "mains_60hz": "60 Hz mains interference of 0.1 mV amplitude added",
    "time_stretch": "played 25 % slower (a rate mix-up: 288 Hz read as 360 Hz)",
    "clipping": "clipped at the 5th and 95th percentile of each window (saturated recorder)",
    "shuffle_1s": "the window's ten 1-s segments in random order",
    "dc_offset": "a 1.5 mV DC offset added",
    # scorecard v3 (issue 38): defects that set-level distances or a partial copy search could miss
    "beat_mix": "each beat of a window from a different patient (several patients within one window)",
    "rr_jitter_40ms": "every RR interval moved by +-40 ms, beats unchanged",
    "copy_208": "exact copies of MIT-BIH record 208 (a v2 training record the band pool used to hold)",
    "cinc_copy": "exact copies of CinC 2017 training recordings",
    "copy_offgrid": "exact copies of 208 and CinC 2017 training recordings, cut 1.25 s off a 2.5-s grid",
}
#: the hop of the grid ``copy_offgrid`` is cut off (the copy search's hop before it became beat-aligned)
GRID_HOP_S = 2.5
#: sets that must stay "as real": unchanged windows, and a change that carries no information about the heart
INVARIANT = frozenset({"clean", "dc_offset"})
#: seed index of each defect: the first ten keep the indices they had when they were the whole table
_SEED_INDEX = {d: i for i, d in enumerate(sorted(list(DEFECTS)[:10]))}
_SEED_INDEX.update({d: 100 + i for i, d in enumerate(list(DEFECTS)[10:])})  # new defects: new indices
SEGMENT_S = 20.0  # source material read per window for the time warps (more beats than any window uses)


@functools.lru_cache(maxsize=64)
def _record(record: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    rec = read_record(record, data_dir, lead="MLII", fs=FS, annotations=True)
    peaks, _ = rec.annotations.beats()
    return rec.signal.astype(np.float64), np.asarray(peaks, np.int64)


def _extend(peaks: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Peaks padded with virtual ones (median RR) so that ``[lo, hi]`` is covered by whole cycles."""
    p = np.asarray(peaks, np.float64)
    rr = float(np.median(np.diff(p))) if len(p) >= 2 else FS
    pre = np.arange(p[0] - rr, lo - 2 * rr, -rr)[::-1]
    post = np.arange(p[-1] + rr, hi + 2 * rr, rr)
    return np.r_[pre, p, post]


def warp_beats(src: np.ndarray, src_peaks: np.ndarray, out_peaks: np.ndarray, length: int,
               first_src_beat: int = 0) -> np.ndarray:
    """Signal of ``length`` samples whose beat ``k`` is source beat ``first_src_beat + k`` time-warped.

    Parameters
    ----------
    src : np.ndarray
        Source signal (mV).
    src_peaks : np.ndarray
        Sorted R-peak samples of ``src`` (at least 2).
    out_peaks : np.ndarray
        Sorted R-peak samples wanted in the output (may lie outside ``[0, length)``; at least 2).
    length : int
        Output length in samples.
    first_src_beat : int
        Index into ``src_peaks`` of the beat that becomes the first output peak.

    Returns
    -------
    np.ndarray
        ``(length,)``: R peaks exactly at ``out_peaks``; each sample at phase ``phi`` of its output cycle is
        the source at the same phase of the paired source cycle (linear interpolation).
    """
    op = _extend(out_peaks, 0, length)
    k0 = int(np.searchsorted(op, out_peaks[0]))  # index of the first real output peak in op
    sp = np.asarray(src_peaks, np.float64)
    rr = float(np.median(np.diff(sp)))
    m = first_src_beat  # op[k0 + j] is paired with source beat m + j; virtual beats beyond either end
    before, after = max(0, k0 - m), max(0, (len(op) - k0) - (len(sp) - m))
    sp = np.r_[sp[0] - rr * np.arange(before, 0, -1), sp, sp[-1] + rr * np.arange(1, after + 1)]
    sp = sp[m + before - k0 : m + before - k0 + len(op)]
    t = np.arange(length, dtype=np.float64)
    # cycle k spans [op[k] - 0.4 (op[k]-op[k-1]), op[k] + 0.6 (op[k+1]-op[k])): the nearest-peak phase
    bnd = op[:-1] + 0.6 * np.diff(op)  # boundary after peak k
    k = np.clip(np.searchsorted(bnd, t, side="right"), 1, len(op) - 2)
    after = t >= op[k]
    nxt = np.where(after, k + 1, k - 1)
    frac = (t - op[k]) / np.abs(op[nxt] - op[k])
    src_t = sp[k] + frac * np.abs(sp[nxt] - sp[k])
    return np.interp(src_t, np.arange(len(src)), src)


def _offgrid_start(rng, last: int) -> int | None:
    """A start sample half a grid hop off the :data:`GRID_HOP_S` grid (1.25 s + k x 2.5 s), at most ``last``."""
    hop = int(round(GRID_HOP_S * FS))
    k_max = (last - hop // 2) // hop
    if k_max < 0:
        return None
    return int(rng.integers(0, k_max + 1)) * hop + hop // 2


def _butter(x: np.ndarray, hz, btype: str, order: int = 4) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    return sosfiltfilt(butter(order, hz, btype=btype, fs=FS, output="sos"), x, axis=-1)


class PlantedDefects:
    """Builds every set of :data:`DEFECTS` from the same real windows.

    Parameters
    ----------
    records : sequence of str
        Held-out records the windows come from (default: the validation records).
    n : int
        Windows per set.
    data_dir : path, optional
    seed : int
    train_records : sequence of str
        LM training records, the source of ``train_copy`` (default: DS1 minus validation).
    cinc_records : sequence of str, optional
        CinC 2017 recordings the LM trained on, the source of ``cinc_copy`` and ``copy_offgrid``
        (:func:`ecg2llm.eval.scorecard.pool.cinc_recordings` of its ``training_data.json``; default: every
        recording of the challenge's training set).
    """

    def __init__(self, records: Sequence[str] = DEFAULT_VALID, n: int = 300, data_dir=None, seed: int = 0,
                 train_records: Sequence[str] | None = None, cinc_records: Sequence[str] | None = None):
        self.root = str(resolve_data_dir(data_dir))
        self.cinc_records = list(cinc_records) if cinc_records else None
        self.records = tuple(str(r) for r in records)
        self.train_records = tuple(train_records or inter_patient_split().train)
        self.seed, self.n = seed, n
        # windows whose 20-s source segment fits in the record
        ws = real_windows(self.records, self.root, window_s=WINDOW_S, source="planted base")
        lengths = np.array([len(_record(r, self.root)[0]) for r in ws.records])
        fits = ws.starts + int(SEGMENT_S * FS) <= lengths
        ws = ws.subset(np.flatnonzero(fits))
        rng = np.random.default_rng(seed)
        self.base = ws.subset(np.sort(rng.choice(len(ws), min(n, len(ws)), replace=False)))
        self.win = self.base.x.shape[1]

    def _segment(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Window ``i``'s 20-s source segment, its R peaks, and the peaks inside the window itself."""
        sig, peaks = _record(str(self.base.records[i]), self.root)
        s0 = int(self.base.starts[i])
        seg = sig[s0 : s0 + int(SEGMENT_S * FS)]
        p = peaks[(peaks >= s0) & (peaks < s0 + len(seg))] - s0
        return seg, p, p[p < self.win]

    def make(self, defect: str) -> WindowSet:
        """The set with ``defect`` (a key of :data:`DEFECTS`)."""
        if defect not in DEFECTS:
            raise ValueError(f"unknown defect {defect!r}; choose from {sorted(DEFECTS)}")
        x = self.base.x.astype(np.float64)
        rng = np.random.default_rng(self.seed + 1000 + _SEED_INDEX[defect])
        fn: dict[str, Callable[[], np.ndarray]] = {
            "clean": lambda: x,
            "morph_swap": lambda: self._morph_swap(rng),
            "rr_jitter": lambda: self._rr_jitter(rng),
            "lowpass": lambda: _butter(x, 12.0, "low"),
            "train_copy": lambda: self._train_copy(rng),
            "time_reverse": lambda: x[:, ::-1],
            "amplitude_half": lambda: 0.5 * x,
            "too_clean": lambda: _butter(x, (0.5, 40.0), "band", order=2),
            "beat_drop": lambda: self._beat_drop(rng),
            "white_noise": lambda: x + 0.1 * rng.standard_normal(x.shape),
            "polarity_flip": lambda: -x,
            "beat_clone": lambda: self._beat_clone(),
            "mains_60hz": lambda: x + 0.1 * np.sin(2 * np.pi * 60.0 * np.arange(x.shape[1]) / FS
                                                    + rng.uniform(0, 2 * np.pi, (len(x), 1))),
            "time_stretch": lambda: self._time_stretch(1.25),
            "clipping": lambda: np.clip(x, np.percentile(x, 5, axis=1, keepdims=True),
                                        np.percentile(x, 95, axis=1, keepdims=True)),
            "shuffle_1s": lambda: np.stack([np.concatenate([row[k * int(FS): (k + 1) * int(FS)]
                                                                 for k in rng.permutation(int(WINDOW_S))])
                                                 for row in x]),
            "dc_offset": lambda: x + 1.5,
            "beat_mix": lambda: self._beat_mix(rng),
            "rr_jitter_40ms": lambda: self._rr_jitter_ms(rng, 40.0),
            "copy_208": lambda: self._record_copy(rng, "208"),
            "cinc_copy": lambda: self._cinc_copy(rng),
            "copy_offgrid": lambda: self._copy_offgrid(rng),
        }
        out = np.ascontiguousarray(fn[defect](), dtype=np.float32)
        return WindowSet(x=out, fs=FS, names=[f"{defect}_{i:04d}" for i in range(len(out))],
                         records=self.base.records, starts=self.base.starts,
                         source=f"planted: {DEFECTS[defect]}",
                         meta={"defect": defect})

    def _morph_swap(self, rng) -> np.ndarray:
        out = []
        recs = self.base.records
        for i in range(len(self.base)):
            _, _, p_a = self._segment(i)
            others = np.flatnonzero(recs != recs[i])
            j = int(rng.choice(others)) if len(others) else i
            seg_b, p_b, _ = self._segment(j)
            if len(p_a) < 2 or len(p_b) < 2:
                out.append(self.base.x[i])
                continue
            out.append(warp_beats(seg_b, p_b, p_a, self.win, first_src_beat=1))
        return np.stack(out)

    def _rr_jitter(self, rng) -> np.ndarray:
        out = []
        for i in range(len(self.base)):
            seg, p, p_in = self._segment(i)
            if len(p_in) < 2:
                out.append(self.base.x[i])
                continue
            rr = np.diff(p).astype(np.float64) * rng.uniform(0.75, 1.25, len(p) - 1)
            want = p[0] + np.r_[0.0, np.cumsum(rr)]
            out.append(warp_beats(seg, p, want[want < self.win + 2 * FS], self.win))
        return np.stack(out)

    def _beat_mix(self, rng) -> np.ndarray:
        """Beat ``k`` of window ``i`` is a beat of a randomly drawn other window (another patient where the set
        has one), warped onto window ``i``'s own R peaks: the rhythm is the window's, each beat someone else's."""
        out = []
        recs = self.base.records
        segs = [self._segment(j) for j in range(len(self.base))]
        for i in range(len(self.base)):
            _, _, p_a = segs[i]
            if len(p_a) < 2:
                out.append(self.base.x[i])
                continue
            others = np.flatnonzero(recs != recs[i])
            others = others if len(others) else np.arange(len(self.base))
            y = np.zeros(self.win)
            op = _extend(p_a, 0, self.win)
            bnd = np.r_[0, (op[:-1] + 0.6 * np.diff(op)).clip(0, self.win), self.win].astype(int)
            for k in range(len(op)):  # cycle k of the output spans [bnd[k], bnd[k + 1])
                a, b = bnd[k], bnd[k + 1]
                if b <= a:
                    continue
                seg_b, p_b, _ = segs[int(rng.choice(others))]
                if len(p_b) < 2:
                    continue
                w = warp_beats(seg_b, p_b, p_a, self.win, first_src_beat=1)
                y[a:b] = w[a:b] - np.median(w)  # each patient's beat on a common baseline
            out.append(y - np.median(y) + np.median(self.base.x[i]))
        return np.stack(out)

    def _rr_jitter_ms(self, rng, ms: float) -> np.ndarray:
        """Each RR interval plus an independent uniform +-``ms``; every beat keeps its own shape (warped)."""
        out = []
        for i in range(len(self.base)):
            seg, p, p_in = self._segment(i)
            if len(p_in) < 2:
                out.append(self.base.x[i])
                continue
            rr = np.diff(p).astype(np.float64) + rng.uniform(-ms, ms, len(p) - 1) * FS / 1000.0
            want = p[0] + np.r_[0.0, np.cumsum(np.maximum(rr, 0.2 * FS))]
            out.append(warp_beats(seg, p, want[want < self.win + 2 * FS], self.win))
        return np.stack(out)

    def _record_copy(self, rng, record: str) -> np.ndarray:
        """Exact 10-s windows of ``record`` (MLII) at random offsets."""
        sig, _ = _record(record, self.root)
        s = rng.integers(0, len(sig) - self.win, len(self.base))
        return np.stack([sig[int(a): int(a) + self.win] for a in s])

    def _cinc_names(self) -> list[str]:
        if self.cinc_records:
            return sorted(self.cinc_records)
        from ecg2llm.tokenizer.cinc2017 import cinc2017_labels as read_cinc2017_labels

        return sorted(read_cinc2017_labels(self.root))

    def _cinc_copy(self, rng, offgrid: bool = False, n: int | None = None) -> np.ndarray:
        """Exact 10-s windows (at 360 Hz, as the LMs' stores resample them) of random CinC 2017 training
        recordings, at random offsets (``offgrid``: 1.25 s + k x 2.5 s)."""
        from ecg2llm.tokenizer.cinc2017 import read_cinc2017

        names = self._cinc_names()
        out = []
        while len(out) < (len(self.base) if n is None else n):
            sig = read_cinc2017(str(rng.choice(names)), self.root, fs=FS)
            if len(sig) <= self.win:
                continue
            a = _offgrid_start(rng, len(sig) - self.win) if offgrid else int(rng.integers(0, len(sig) - self.win))
            if a is None:
                continue
            out.append(np.asarray(sig[a: a + self.win], np.float64))
        return np.stack(out)

    def _copy_offgrid(self, rng) -> np.ndarray:
        """Half the set: record 208 (MLII or V1, both trained on) at 1.25 s + k x 2.5 s; half: CinC 2017
        training recordings at such offsets."""
        from ecg2llm.tokenizer.data import read_record

        n208 = len(self.base) // 2
        sigs = {lead: read_record("208", self.root, lead=lead, fs=FS, annotations=False).signal
                for lead in ("MLII", "V1")}
        a208 = []
        for _ in range(n208):
            sig = sigs[str(rng.choice(list(sigs)))]
            a = _offgrid_start(rng, len(sig) - self.win)
            a208.append(np.asarray(sig[a: a + self.win], np.float64))
        cinc = self._cinc_copy(rng, offgrid=True, n=len(self.base) - n208)
        return np.concatenate([np.stack(a208).reshape(-1, self.win), cinc])

    def _train_copy(self, rng) -> np.ndarray:
        out = []
        for _ in range(len(self.base)):
            sig, _ = _record(str(rng.choice(self.train_records)), self.root)
            s = int(rng.integers(0, len(sig) - self.win))
            out.append(sig[s : s + self.win])
        return np.stack(out)

    def _beat_drop(self, rng) -> np.ndarray:
        out = []
        for i in range(len(self.base)):
            y = self.base.x[i].astype(np.float64).copy()
            _, _, p = self._segment(i)
            for r in p[rng.permutation(len(p))[: max(1, len(p) // 4)]]:
                a, b = max(0, int(r - 0.25 * FS)), min(self.win - 1, int(r + 0.45 * FS))
                y[a : b + 1] = np.linspace(y[a], y[b], b - a + 1)
            out.append(y)
        return np.stack(out)

    def _beat_clone(self) -> np.ndarray:
        """The window's second beat (R-centred cycle) tiled at its median RR: zero beat-to-beat variation."""
        out = []
        for i in range(len(self.base)):
            seg, p, _ = self._segment(i)
            if len(p) < 3:
                out.append(self.base.x[i])
                continue
            rr = int(np.median(np.diff(p)))
            a = int(p[1]) - int(0.4 * rr)
            beat = seg[a : a + rr]
            if len(beat) < rr:
                out.append(self.base.x[i])
                continue
            out.append(np.tile(beat, self.win // rr + 2)[int(0.6 * rr) : int(0.6 * rr) + self.win])
        return np.stack(out)

    def _time_stretch(self, factor: float) -> np.ndarray:
        """Each window's source played ``factor`` times slower (linear interpolation from the record)."""
        out = []
        for i in range(len(self.base)):
            seg, _, _ = self._segment(i)
            t = np.arange(self.win) / factor
            out.append(np.interp(t, np.arange(len(seg)), seg))
        return np.stack(out)

    def all(self) -> dict[str, WindowSet]:
        """Every planted set, ``{defect: WindowSet}``."""
        return {d: self.make(d) for d in DEFECTS}
