"""Tokenizer v3 (``beat``): beats as words - one unit of tokens per cardiac cycle.

.. code-block:: python

    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer
    tok = BeatTokenizer.from_pretrained("v3")          # or ECGTokenizer.from_pretrained("v3")
    bt = tok.encode_beats(signal_mv, fs)               # BeatTokens: r, rr, coarse, detail, kind, state, ids
    band = tok.decode_beats(bt)                        # == tok.decode(bt.ids): the ECG band in mV at tok.fs
    full = tok.decode_beats(bt, bt.state)              # + the baseline (the whole signal)
    ids, state = tok.encode(signal_mv, fs)             # the flat stream an LM reads (tok.layout documents it)
    beats = tok.decode_coarse(bt.coarse[bt.kind == 0]) # (n, window) coarse-only beat windows in mV

Encode (signal resampled to ``fs``):

1. **Baseline** as tokenizer v2 (:mod:`ecg2llm.tokenizer.baseline`: median knots at 2 Hz refined on the residual,
   quantized to 2 µV) into ``state["baseline"]``; the tokens code the band ``x - baseline`` in absolute mV.
2. **Beats**: :func:`ecg2llm.tokenizer.beat_codec.detect_r_peaks` (or given ``r_peaks``).
3. **Units** in time order: a beat whose R is within ``gap_max_s`` of the previous R becomes a beat
   unit; otherwise the previous beat's cycle ends ``post_s`` after its R and **fallback units** (segments
   of ``fallback_s``) cover the stretch until the next R is within ``fallback_s`` (the same at the segment
   start and after the last beat). RR tokens: :class:`ecg2llm.tokenizer.beat_codec.RRScale` with error feedback
   (decoded R positions never drift).
4. **Cycles**: consecutive beats meet at ``R - min(pre_s, RR / 2)``, so the cycles partition the signal
   (no overlap, no gap). A beat after a fallback (or at the start) starts at the cursor.
5. **Coarse** tokens: the R-aligned window ``[-pre_s, +post_s)`` of the band, product code
   (``coarse.*`` tensors: PCA + per-coefficient codebooks), fitted on DS1 beats.
6. **Detail** tokens: what coarse leaves over the whole cycle (the coarse window clipped to the cycle,
   subtracted), warped around R to a fixed ``detail_pre + detail_post`` samples
   (:func:`ecg2llm.tokenizer.beat_codec.warp_cycles`), product code ``detail.*``.
7. **Fallback** tokens: each segment's band samples, product code ``fallback.*``.
8. **Segment gains** (``gain_segment_s`` > 0; the shipped v3: 10 s): where a segment's units leave more than
   ``gain_flag_uv`` RMS of residual (excursions beyond the codes' reach, e.g. motion artifacts of several mV),
   the encoder codes that segment's units again at ``2^(-k/2)`` times the band and keeps the level with the
   least error if it saves ``gain_margin`` of it (:meth:`BeatTokenizer.choose_gains`); the levels go into
   ``state["gain"]`` and decode divides them out. Ids alone (what an LM generates) decode at gain 1; a
   signal with no such segment gets exactly the ids it got without the search.

Decode inverts each step; cycles and segments are placed on the timeline the RR tokens define, so ids
alone decode to the band in mV (what an LM generates); ``state`` adds the baseline and cuts the padding
of the last unit. ``texture=True`` adds a texture bank sample (``texture.safetensors``, v2's method fitted on
v3's round trip) when the folder has one. With a texture bank, encode also measures the recording's texture
into ``state["texture"]`` (per 10 s: noise power per band and per STFT bin above 45 Hz, finer around mains, the
mains lines' complex amplitudes at the recording's own mains frequency;
:meth:`ecg2llm.tokenizer.texture_bank.TextureBank.analyse`), and the texture decode of those ids
reproduces them instead of drawing a training recording's, on the band with the coarse windows' seams
smoothed (:meth:`BeatTokenizer.seam_correction`; ``tok.texture_state = False``: as before; about half the encode
speed with it). Generated ids have no such state and get the bank's draw.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecg2llm.core.errors import TokenizerError

from .base import ECGTokenizer, register_tokenizer
from .baseline import INTERPOLATIONS, estimate_knots_np, interpolate_knots_np, knot_hop, n_knots
from .beat_codec import ProductCode, RRScale, detect_r_peaks, one_blas_thread, unwarp_cycles, warp_cycles
from .beat_layout import BEAT, FALLBACK, BeatLayout, BeatTokens, assemble_ids, parse_ids
from .texture_bank import TEXTURE_FILE, TextureBank
from .texture_prior import PRIOR_FILE, TexturePrior
from .wander import WANDER_FILE, WanderModel

SEAM_SMOOTH_S = 0.05  # width of the smooth step that replaces a coarse window's hard end (texture decode)


@dataclass
class BeatTokenizerConfig:
    """Config of :class:`BeatTokenizer` (timing, code sizes, baseline as v2, texture analysis as v2)."""

    fs: float = 360.0
    detector: str = "neurokit"  # neurokit2 ecg_findpeaks method (compared in docs/results/beat_repeat.json)
    refine_s: float = 0.05  # R moved to the largest |x - median| within +-refine_s
    refractory_s: float = 0.2  # closer detections merged
    pre_s: float = 0.25  # coarse window [-pre_s, +post_s) around R
    post_s: float = 0.45
    rr_exact_max: int = 250  # RR scale: exact samples up to this, then geometric
    rr_ratio: float = 1.004
    rr_max_s: float = 6.0
    gap_max_s: float = 2.0  # longer RR: fallback units in between
    fallback_s: float = 0.5  # fallback segment length
    coarse_groups: list[int] = field(default_factory=lambda: [1] * 6)
    coarse_codes: int = 8
    coarse_switch_uv: float = 0.0  # sticky coarse codes: a change must save this RMS error over the window
    detail_pre: int = 90  # warped cycle: samples before R
    detail_post: int = 270  # and from R on
    detail_groups: list[int] = field(default_factory=lambda: [2] * 8 + [4] * 4 + [8] * 4)
    detail_codes: int = 256
    fallback_groups: list[int] = field(default_factory=lambda: [2] * 8 + [4] * 4 + [8] * 4)
    fallback_codes: int = 256
    baseline_knot_s: float = 0.5
    baseline_step_mv: float = 0.002
    baseline_iterations: int = 3
    baseline_interp: str = "linear"
    baseline_min_correction_mv: float = 0.1
    texture_n_fft: int = 120
    texture_hop: int = 60
    texture_adc_step_mv: float = 0.005
    # segment gains (encode side, in ``state["gain"]``; 0 = off): where a segment's unit residual exceeds
    # gain_flag_uv RMS, the encoder codes the band x 2^(-k/2) (k < gain_levels) if that saves gain_margin of it
    gain_segment_s: float = 0.0
    gain_levels: int = 5
    gain_flag_uv: float = 40.0
    gain_margin: float = 0.2

    def __post_init__(self):
        for name in ("coarse_groups", "detail_groups", "fallback_groups"):
            g = [int(v) for v in getattr(self, name)]
            if not g or min(g) < 1:
                raise TokenizerError(f"{name} must be a non-empty list of positive group sizes, got {g}")
            setattr(self, name, g)
        for name in ("coarse_codes", "detail_codes", "fallback_codes"):
            if int(getattr(self, name)) < 2:
                raise TokenizerError(f"{name} must be >= 2, got {getattr(self, name)}")
        if not 0 < self.fallback_s <= self.gap_max_s <= self.rr_max_s:
            raise TokenizerError("need 0 < fallback_s <= gap_max_s <= rr_max_s")
        if self.post_s + self.fallback_s > self.gap_max_s:
            raise TokenizerError("need post_s + fallback_s <= gap_max_s")
        if self.baseline_interp not in INTERPOLATIONS:
            raise TokenizerError(f"baseline_interp must be one of {INTERPOLATIONS}")
        if self.gain_segment_s < 0 or int(self.gain_levels) < 1 or not 0 <= self.gain_margin < 1:
            raise TokenizerError("need gain_segment_s >= 0 (0: off), gain_levels >= 1, 0 <= gain_margin < 1")


class _Code(nn.Module):
    """Buffers of one :class:`ProductCode` (saved in ``model.safetensors``)."""

    def __init__(self, dim: int, groups: list[int], n_codes: int):
        super().__init__()
        self.groups = list(groups)
        for k, shape in ProductCode.shapes(dim, groups, n_codes).items():
            self.register_buffer(k, torch.zeros(shape))

    def code(self) -> ProductCode:
        return ProductCode(self.mean.numpy(), self.basis.numpy(), self.groups, self.codebooks.numpy())

    def set(self, pc: ProductCode) -> None:
        for k in ("mean", "basis", "codebooks"):
            getattr(self, k).copy_(torch.from_numpy(np.asarray(getattr(pc, k), np.float32)))


class BeatModel(nn.Module):
    def __init__(self, cfg: BeatTokenizerConfig):
        super().__init__()
        fs = float(cfg.fs)
        win = int(round(cfg.pre_s * fs)) + int(round(cfg.post_s * fs))
        self.coarse = _Code(win, cfg.coarse_groups, cfg.coarse_codes)
        self.detail = _Code(int(cfg.detail_pre) + int(cfg.detail_post), cfg.detail_groups, cfg.detail_codes)
        self.fallback = _Code(int(round(cfg.fallback_s * fs)), cfg.fallback_groups, cfg.fallback_codes)


@register_tokenizer("beat")
class BeatTokenizer(ECGTokenizer):
    """Beat-synchronous tokenizer (module docstring)."""

    config_class = BeatTokenizerConfig

    def __init__(self, config: BeatTokenizerConfig):
        super().__init__(config)
        self.model = BeatModel(config)
        c = config
        self.rr_scale = RRScale(float(c.fs), int(c.rr_exact_max), float(c.rr_ratio), float(c.rr_max_s))
        self.layout = BeatLayout(self.rr_scale.size, len(c.coarse_groups), int(c.coarse_codes),
                                 len(c.detail_groups), int(c.detail_codes), len(c.fallback_groups),
                                 int(c.fallback_codes))
        self.pre_n, self.post_n = int(round(c.pre_s * self.fs)), int(round(c.post_s * self.fs))
        self.fallback_n = int(round(c.fallback_s * self.fs))
        self.gain_segment_n = int(round(c.gain_segment_s * self.fs))
        self.gap_max_n = int(round(c.gap_max_s * self.fs))
        self.wander_model: WanderModel | None = None
        self.texture_bank: TextureBank | None = None
        self.texture_prior: TexturePrior | None = None  # texture states for generated ids (sample_state)
        # encode measures the recording's texture (noise levels, mains) into state["texture"] and the texture
        # decode uses it (TextureBank.analyse); False: the texture decode draws a training recording's, as before
        self.texture_state = True
        # with a measured texture state, the texture decode smooths the coarse windows' ends (seam_correction)
        self.texture_seam = True
        self._codes: dict | None = None

    # ----------------------------------------------------------------- properties
    @property
    def vocab_size(self) -> int:
        return self.layout.vocab_size

    @property
    def samples_per_token(self) -> float:
        """Nominal: a beat unit per second (60 bpm); the real rate depends on the heart rate."""
        return self.fs / self.layout.tokens_per_beat

    @property
    def window(self) -> int:
        """Samples of a coarse beat window (``pre_s + post_s``)."""
        return self.pre_n + self.post_n

    @property
    def hop(self) -> int:
        return knot_hop(self.fs, self.config.baseline_knot_s)

    @property
    def has_wander_model(self) -> bool:
        return self.wander_model is not None

    @property
    def has_texture(self) -> bool:
        return self.texture_bank is not None

    @property
    def has_texture_prior(self) -> bool:
        """True when :meth:`sample_state` also draws a texture state (``texture_prior.safetensors``)."""
        return self.texture_prior is not None and self.texture_bank is not None

    def codes(self) -> dict[str, ProductCode]:
        """The three product codes as numpy (cached; :meth:`reset_codes` after changing the buffers)."""
        if self._codes is None:
            self._codes = {k: getattr(self.model, k).code() for k in ("coarse", "detail", "fallback")}
        return self._codes

    def reset_codes(self) -> None:
        self._codes = None

    def describe(self) -> dict:
        d = super().describe()
        d["layout"] = self.layout.as_dict()
        return d

    # ----------------------------------------------------------------- helpers of the beat API
    def rr_seconds(self, rr_tokens) -> np.ndarray:
        """RR token ids -> intervals in seconds."""
        return self.rr_scale.samples(rr_tokens) / self.fs

    def decode_coarse(self, coarse) -> np.ndarray:
        """``(n, Kc)`` coarse codes -> ``(n, window)`` float32 beat windows in mV (R at index ``pre_n``)."""
        coarse = np.asarray(coarse, np.int64).reshape(-1, self.layout.n_coarse)
        if coarse.size and (coarse.min() < 0 or coarse.max() >= self.layout.coarse_size):
            raise TokenizerError(f"coarse codes must lie in [0, {self.layout.coarse_size})")
        return self.codes()["coarse"].decode(coarse).astype(np.float32)

    def ids_to_beats(self, ids, partial: str = "drop") -> BeatTokens:
        """The flat stream -> :class:`BeatTokens` (no state); ``r``, ``start``, ``end`` from the RR tokens."""
        bt = parse_ids(self.layout, self.check_ids(ids), partial=partial)
        bt.start, bt.r, bt.end = self.timeline(bt.kind, bt.rr)
        return bt

    def beats_to_ids(self, bt: BeatTokens) -> np.ndarray:
        return assemble_ids(self.layout, bt.kind, bt.rr, bt.coarse, bt.detail, bt.fallback)

    def timeline(self, kind: np.ndarray, rr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start, r, end) of each unit from the kinds and RR tokens (module docstring, steps 3-4)."""
        m = len(kind)
        start, r, end = np.zeros(m, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int64)
        rr_n = np.zeros(m, np.int64)
        beats = np.asarray(kind) == BEAT
        rr_n[beats] = self.rr_scale.samples(np.asarray(rr)[beats])
        cursor, prev = 0, -1  # prev: index of the previous unit if it is a beat
        for i in range(m):
            if kind[i] == BEAT:
                if prev >= 0:
                    ri = r[prev] + rr_n[i]
                    b = ri - min(self.pre_n, int(rr_n[i]) // 2)
                    end[prev], start[i] = b, b
                else:
                    ri = cursor + rr_n[i]
                    start[i] = cursor
                r[i], prev = ri, i
            else:
                if prev >= 0:
                    cursor = end[prev] = r[prev] + self.post_n
                start[i] = r[i] = cursor
                cursor = end[i] = cursor + self.fallback_n
                prev = -1
        if prev >= 0:
            end[prev] = r[prev] + self.post_n
        return start, r, end

    # ----------------------------------------------------------------- encode
    def plan_units(self, r_true: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Kinds and RR tokens of the units covering ``n`` samples with beats at ``r_true`` (step 3)."""
        import bisect

        kinds, toks = [], []
        c = self.rr_scale.centers.tolist()
        cursor, prev = 0, None  # prev: decoded R of the previous unit when it is a beat

        def beat(anchor, ri):
            d = ri - anchor
            t = min(max(bisect.bisect_left(c, d), 1), len(c) - 1)
            t = t - 1 if d - c[t - 1] <= c[t] - d else t  # nearest (ties down), as RRScale.quantize
            kinds.append(BEAT)
            toks.append(t)
            return anchor + int(c[t])

        for ri in np.asarray(r_true, np.int64).tolist():
            if prev is not None and ri - prev <= self.gap_max_n:
                prev = beat(prev, ri)
                continue
            if prev is not None:
                cursor = prev + self.post_n
            while ri - cursor > self.fallback_n:
                kinds.append(FALLBACK)
                toks.append(-1)
                cursor += self.fallback_n
            prev = beat(cursor, ri)
        if prev is not None:
            cursor = prev + self.post_n
        while cursor < n:
            kinds.append(FALLBACK)
            toks.append(-1)
            cursor += self.fallback_n
        return np.asarray(kinds, np.int8), np.asarray(toks, np.int64)

    def coarse_windows(self, band: np.ndarray, r: np.ndarray) -> np.ndarray:
        """``(n, window)`` R-aligned windows of ``band`` (zeros outside the signal)."""
        idx = np.asarray(r, np.int64)[:, None] + np.arange(-self.pre_n, self.post_n)  # (n, W)
        ok = (idx >= 0) & (idx < len(band))
        return np.where(ok, np.asarray(band, np.float32)[np.clip(idx, 0, len(band) - 1)], 0).astype(np.float32)

    def place_coarse(self, windows: np.ndarray, start, r, end, n_samples: int) -> np.ndarray:
        """The coarse windows placed at their R, each clipped to its cycle ``[start, end)``."""
        out = np.zeros(n_samples, np.float32)
        r = np.asarray(r, np.int64)
        lo = np.maximum(np.asarray(start, np.int64), r - self.pre_n)
        hi = np.minimum(np.minimum(np.asarray(end, np.int64), r + self.post_n), n_samples)
        lens = np.maximum(hi - lo, 0)
        if lens.sum() == 0:
            return out
        cyc = np.repeat(np.arange(len(r)), lens)
        t = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(lo, lens)
        out[t] = windows[cyc, t - r[cyc] + self.pre_n]
        return out

    @staticmethod
    def chain_breaks(kind: np.ndarray) -> np.ndarray:
        """Per beat unit: True where the unit before it is not a beat (a new chain of sticky codes)."""
        kb = np.flatnonzero(np.asarray(kind) == BEAT)
        brk = np.ones(len(kb), bool)
        brk[1:] = np.diff(kb) != 1
        return brk

    def encode_coarse(self, windows: np.ndarray, breaks: np.ndarray | None = None) -> np.ndarray:
        """Coarse codes of consecutive beat windows: the nearest codes, or with ``coarse_switch_uv`` > 0 the
        sticky codes (:meth:`ecg2llm.tokenizer.beat_codec.ProductCode.encode_sticky`): a code changes from one beat to
        the next only where that lowers the window's squared error by more than ``window * switch_uv^2``,
        so a patient's repeated beat keeps its code through noise."""
        sw = self.window * (float(self.config.coarse_switch_uv) / 1000.0) ** 2
        return self.codes()["coarse"].encode_sticky(windows, sw, breaks)

    def estimate_baseline(self, x: np.ndarray) -> np.ndarray:
        c = self.config
        return estimate_knots_np(np.asarray(x, np.float32), self.hop, c.baseline_step_mv, int(c.baseline_iterations),
                                 c.baseline_interp, float(c.baseline_min_correction_mv))

    def interpolate_baseline(self, knots: np.ndarray, n_samples: int) -> np.ndarray:
        return interpolate_knots_np(knots, self.hop, n_samples, self.config.baseline_interp)

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x`` (mV at fs) -> (band, baseline knots) as tokenizer v2."""
        knots = self.estimate_baseline(x)
        if float(np.abs(knots).max()) > 32767 * self.config.baseline_step_mv:
            raise TokenizerError(f"baseline reaches {float(np.abs(knots).max()):.1f} mV, beyond what int16 knots "
                                 f"hold; is the signal in mV (not µV or ADC units)?")
        return np.asarray(x, np.float32) - self.interpolate_baseline(knots, len(x)), knots

    def detect(self, band: np.ndarray) -> np.ndarray:
        c = self.config
        return detect_r_peaks(band, self.fs, c.detector, c.refine_s, c.refractory_s)

    def encode_beats(self, x, fs: float, r_peaks=None) -> BeatTokens:
        """Tokenize a 1-D ECG into units (see :class:`ecg2llm.tokenizer.beat_layout.BeatTokens`).

        Parameters
        ----------
        x : array-like (samples,)
            One lead in mV.
        fs : float
            Its rate in Hz (resampled to ``tok.fs``).
        r_peaks : array of int, optional
            R positions (samples at ``fs``) to use instead of the detector (e.g. annotations).
        """
        x = self._check_signal(x, fs)
        if float(fs) != self.fs:
            from .data import resample

            x = resample(x, float(fs), self.fs).astype(np.float32)
        band, knots = self.split(x)
        n = len(band)
        if r_peaks is None:
            r_true = self.detect(band)
        else:
            rp = np.asarray(r_peaks)
            if rp.ndim != 1 or (rp.size and not np.issubdtype(rp.dtype, np.number)):
                raise TokenizerError(f"r_peaks must be a 1-D array of sample indices, got shape {rp.shape}")
            r_true = np.unique(np.round(rp.astype(np.float64) * self.fs / float(fs)).astype(np.int64))
            if r_true.size and (r_true[0] < 0 or r_true[-1] >= n):
                raise TokenizerError(f"r_peaks must lie within the signal [0, {n}) (at tok.fs), got "
                                     f"{int(r_true[0])}..{int(r_true[-1])}")
        kind, rr = self.plan_units(r_true, n)
        start, r, end = self.timeline(kind, rr)
        total = int(max(end.max() if len(end) else 0, n))
        bandp = np.zeros(total, np.float32)
        bandp[:n] = band
        coarse, detail, fallback = self.code_units(bandp, kind, start, r, end)
        state = {"n_samples": n, "baseline": knots}
        y = None  # the units' decode in mV, when the gain search made it
        if self.gain_segment_n > 0 and len(kind):
            levels, coded, y = self.choose_gains(bandp, n, kind, start, r, end, (coarse, detail, fallback))
            if levels is not None:
                coarse, detail, fallback = coded
                state["gain"] = levels
        ids = assemble_ids(self.layout, kind, rr, coarse, detail, fallback)
        bt = BeatTokens(r=r, rr=rr, coarse=coarse, detail=detail, fallback=fallback, kind=kind, start=start,
                        end=end, state=state, ids=ids)
        if self.texture_bank is not None and self.texture_state:
            if y is None:
                with one_blas_thread():
                    y = self.decode_band_units(bt, seam=self.texture_seam)
            elif self.texture_seam:  # the gain search's decode + the texture decode's smoothed seams, in mV
                c = self.seam_correction(kind, start, r, end, coarse, len(y))
                y = y + c / self._per_sample(self.unit_gains(kind, start, r, state.get("gain")), start, end, len(y))
            y = y[:n]
            y = np.pad(y, (0, n - len(y)))
            state["texture"] = self.texture_bank.analyse(y, band - y)
            if self.texture_seam:
                state["texture"]["seam"] = np.ones(1, np.int8)
        return bt

    def code_units(self, bandp: np.ndarray, kind, start, r, end, rows=None):
        """Codes of the units (all, or the unit indices ``rows``) of the band ``bandp`` (zero-padded to the
        timeline's end) -> ``(coarse, detail, fallback)`` arrays of ``len(rows)`` rows, -1 where a field does
        not apply. Sticky coarse chains break where the unit before is not a beat (or not among ``rows``)."""
        L = self.layout
        m = len(kind)
        rows = np.arange(m) if rows is None else np.asarray(rows, np.int64)
        coarse = np.full((len(rows), L.n_coarse), -1, np.int64)
        detail = np.full((len(rows), L.n_detail), -1, np.int64)
        fallback = np.full((len(rows), L.n_fallback), -1, np.int64)
        codes = self.codes()
        total = len(bandp)
        b = np.asarray(kind)[rows] == BEAT
        if b.any():
            rb = rows[b]
            if len(rows) == m:
                brk = self.chain_breaks(kind)
            else:
                member = np.zeros(m, bool)
                member[rows] = True
                p = np.maximum(rb - 1, 0)
                brk = ~((rb > 0) & (np.asarray(kind)[p] == BEAT) & member[p])
            coarse[b] = self.encode_coarse(self.coarse_windows(bandp, r[rb]), brk)
            csig = self.place_coarse(codes["coarse"].decode(coarse[b]), start[rb], r[rb], end[rb], total)
            w = warp_cycles(bandp - csig, start[rb], r[rb], end[rb], self.config.detail_pre, self.config.detail_post)
            detail[b] = codes["detail"].encode(w)
        f = ~b
        if f.any():
            seg = bandp[np.minimum(start[rows[f], None] + np.arange(self.fallback_n), total - 1)]
            fallback[f] = codes["fallback"].encode(seg)
        return coarse, detail, fallback

    # ----------------------------------------------------------------- segment gains
    def unit_gains(self, kind, start, r, levels) -> np.ndarray:
        """Per unit: the gain its codes were made at (``2^(-k/2)``, ``k = levels[segment]``; the segment of a
        beat is the one holding its R, of a fallback unit the one holding its start); ones without levels."""
        kind = np.asarray(kind)
        if levels is None or len(kind) == 0:
            return np.ones(len(kind), np.float32)
        lv = np.asarray(levels, np.int64).reshape(-1)
        if lv.size == 0 or lv.min() < 0 or lv.max() >= int(self.config.gain_levels) or self.gain_segment_n < 1:
            raise TokenizerError(f"state['gain'] must hold levels in [0, {int(self.config.gain_levels)}) and the "
                                 f"tokenizer gain_segment_s > 0; got {lv.size} levels with gain_segment_s="
                                 f"{self.config.gain_segment_s}")
        pos = np.where(kind == BEAT, np.asarray(r, np.int64), np.asarray(start, np.int64))
        seg = np.clip(pos // self.gain_segment_n, 0, lv.size - 1)
        return (2.0 ** (-lv[seg] / 2.0)).astype(np.float32)

    @staticmethod
    def _spans(start, end, total: int) -> tuple[np.ndarray, np.ndarray]:
        """(sample indices of the units' stretches ``[start, end)`` clipped to ``total``, their lengths)."""
        start = np.asarray(start, np.int64)
        lens = np.maximum(np.minimum(np.asarray(end, np.int64), total) - start, 0)
        return np.repeat(start - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum())), lens

    def _per_sample(self, values, start, end, total: int) -> np.ndarray:
        """Per-unit values spread over each unit's samples ``[start, end)`` (ones elsewhere)."""
        out = np.ones(total, np.float32)
        t, lens = self._spans(start, end, total)
        out[t] = np.repeat(np.asarray(values, np.float32), lens)
        return out

    def _unit_energy(self, res: np.ndarray, start, end) -> np.ndarray:
        c = np.concatenate([[0.0], np.cumsum(np.asarray(res, np.float64) ** 2)])
        n = len(res)
        return c[np.clip(end, 0, n)] - c[np.clip(start, 0, n)]

    def choose_gains(self, bandp: np.ndarray, n: int, kind, start, r, end, coded):
        """Segment gains by analysis-by-synthesis -> ``(levels or None, codes, units' decode in mV)``.

        Segments of ``gain_segment_s`` whose units leave more than ``gain_flag_uv`` RMS of residual (large
        excursions the codes cannot reach, e.g. motion artifacts) are coded again at each gain
        ``2^(-k/2)``, ``0 < k < gain_levels``, the decode divided by it; a segment keeps the level of the least
        squared error if it saves ``gain_margin`` of gain 1's. The chosen levels go into ``state["gain"]``
        (one int8 per segment); None where every segment stays at gain 1. The units of a segment set to a gain
        keep the codes of its search pass (their sticky coarse chain starts afresh there), every other unit
        the codes of the first pass: the ids outside the chosen segments are exactly those without the search.
        """
        c = self.config
        seg_n = self.gain_segment_n
        n_seg = -(-n // seg_n)
        total = len(bandp)
        kind = np.asarray(kind)
        with one_blas_thread():
            y0 = self.units_band(kind, start, r, end, *coded, total)
        useg = np.minimum(np.where(kind == BEAT, r, start) // seg_n, n_seg - 1)
        e0 = self._unit_energy(bandp[:n] - y0[:n], start, end)
        cnt = np.bincount(useg, np.clip(np.minimum(end, n) - start, 0, None), n_seg)
        E0 = np.bincount(useg, e0, n_seg)
        flag = E0 > cnt * (float(c.gain_flag_uv) / 1000.0) ** 2
        if not flag.any() or int(c.gain_levels) < 2:
            return None, coded, y0
        rows = np.flatnonzero(flag[useg])
        best, lv = E0.copy(), np.zeros(n_seg, np.int8)
        passes = {}
        for k in range(1, int(c.gain_levels)):
            g = 2.0 ** (-k / 2.0)
            gu = np.ones(len(kind), np.float32)
            gu[rows] = g
            gs = self._per_sample(gu, start, end, total)
            with one_blas_thread():  # few rows: a second BLAS thread only spins (their ids are new ones anyway)
                sub = self.code_units(bandp * gs, kind, start, r, end, rows)
                yk = self.units_band(kind, start, r, end, *sub, total, rows=rows) / gs
            ek = self._unit_energy(bandp[:n] - yk[:n], start[rows], end[rows])
            Ek = np.bincount(useg[rows], ek, n_seg)
            better = flag & (Ek < best)
            best[better], lv[better] = Ek[better], k
            passes[k] = (sub, yk)
        lv[best >= (1.0 - float(c.gain_margin)) * E0] = 0
        if not lv.any():
            return None, coded, y0
        out, y = [a.copy() for a in coded], y0.copy()
        for k, (sub, yk) in passes.items():
            sel = lv[useg[rows]] == k  # rows of the segments set to level k
            if sel.any():
                u = rows[sel]
                for a, b in zip(out, sub):
                    a[u] = b[sel]
                t, _ = self._spans(start[u], end[u], total)
                y[t] = yk[t]
        return lv, tuple(out), y

    def _encode(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        bt = self.encode_beats(x, self.fs)
        return bt.ids, bt.state

    # ----------------------------------------------------------------- decode
    def units_band(self, kind, start, r, end, coarse, detail, fallback, total: int, coarse_only: bool = False,
                   rows=None) -> np.ndarray:
        """The band (in the codes' scale) of units with the given codes on the timeline ``(start, r, end)``;
        with ``rows``, the code arrays hold those units only (others decode to zero)."""
        y = np.zeros(total, np.float32)
        rows = np.arange(len(kind)) if rows is None else np.asarray(rows, np.int64)
        codes = self.codes()
        b = np.asarray(kind)[rows] == BEAT
        if b.any():
            rb = rows[b]
            y += self.place_coarse(codes["coarse"].decode(coarse[b]), start[rb], r[rb], end[rb], total)
            if not coarse_only:
                w = codes["detail"].decode(detail[b])
                y += unwarp_cycles(w, start[rb], r[rb], end[rb], self.config.detail_pre, self.config.detail_post,
                                   total)
        f = ~b
        if f.any() and not coarse_only:
            seg = codes["fallback"].decode(fallback[f])  # (nf, F)
            idx = start[rows[f], None] + np.arange(self.fallback_n)
            y[idx] = seg
        return y

    def decode_band_units(self, bt: BeatTokens, coarse_only: bool = False, state: dict | None = None,
                          seam: bool = False) -> np.ndarray:
        """The band (mV) of parsed units on their timeline (length: end of the last unit); the segment gains of
        ``state`` (default ``bt.state``; none: the codes' scale, what ids alone give) divided out; ``seam`` smooths
        the coarse windows' ends (:meth:`seam_correction`; the texture decode of a measured state)."""
        start, r, end = self.timeline(bt.kind, bt.rr)
        total = int(end.max()) if len(end) else 0
        y = self.units_band(bt.kind, start, r, end, bt.coarse, bt.detail, bt.fallback, total, coarse_only)
        if seam and not coarse_only:
            y += self.seam_correction(bt.kind, start, r, end, bt.coarse, total)
        levels = (state if state is not None else (bt.state or {})).get("gain")
        if levels is not None:
            y /= self._per_sample(self.unit_gains(bt.kind, start, r, levels), start, end, total)
        return y

    def decode(self, ids, state: dict | None = None, *, texture: bool = False, seed: int | None = None,
               coarse_only: bool = False) -> np.ndarray:
        """Ids (+ state) -> 1-D float32 mV at ``fs`` (as tokenizer v2; an incomplete last unit is dropped).

        ``coarse_only`` decodes the beats from their coarse tokens alone (detail and fallback units zero).
        """
        bt = parse_ids(self.layout, self.check_ids(ids), partial="drop")
        ts = (state or {}).get("texture") if texture and self.texture_state else None
        seam = ts is not None and bool(np.asarray(ts.get("seam", 0)).any())  # measured with smoothed seams
        with one_blas_thread():
            y = self.decode_band_units(bt, coarse_only, state, seam=seam)
        return self._finish(y, state, texture, seed)

    def seam_correction(self, kind, start, r, end, coarse, total: int) -> np.ndarray:
        """What turns each coarse window's hard end into a smooth one (codes' scale, length ``total``).

        A coarse window ``[R - pre, R + post)`` that ends (or starts) inside its cycle leaves a step there, its
        edge value, which the detail tokens replace only by a smooth step: the decode keeps the step's high
        frequencies, a click whose high-band power is 4-6 times the record's mean (records 113, 231). The
        correction swaps the hard step for a raised-cosine one :data:`SEAM_SMOOTH_S` wide, centred on the edge
        (zero mean, nothing changes outside the ramp). Used by the texture decode of measured states only: the
        deterministic decode stays what the ids alone give.
        """
        out = np.zeros(total, np.float32)
        h = int(round(SEAM_SMOOTH_S * self.fs / 2))
        kb = np.flatnonzero(np.asarray(kind) == BEAT)
        if h < 1 or not len(kb) or total == 0:
            return out
        w = self.codes()["coarse"].decode(coarse[kb])  # (n, window)
        s, rr, e = (np.asarray(v, np.int64)[kb] for v in (start, r, end))
        e = np.minimum(e, total)
        tt = np.arange(-h, h)
        corr = ((tt >= 0) - (0.5 - 0.5 * np.cos(np.pi * (tt + h + 0.5) / (2 * h)))).astype(np.float32)  # u - s
        for edge, val, sign in ((rr + self.post_n, w[:, -1], 1.0), (rr - self.pre_n, w[:, 0], -1.0)):
            ok = (edge - h >= np.maximum(s, 0)) & (edge + h <= e) & (edge > s) & (edge < e)
            if ok.any():
                np.add.at(out, (edge[ok, None] + tt).ravel(), (sign * val[ok, None] * corr).ravel())
        return out

    def decode_beats(self, bt: BeatTokens, state: dict | None = None, *, texture: bool = False,
                     seed: int | None = None, coarse_only: bool = False) -> np.ndarray:
        """Inverse of :meth:`encode_beats`: decode from the unit fields (``kind, rr, coarse, detail,
        fallback``); ``state`` (e.g. ``bt.state``) adds the baseline, else the band is returned."""
        for k in ("kind", "rr", "coarse", "detail", "fallback"):
            if getattr(bt, k, None) is None:
                raise TokenizerError(f"decode_beats needs the field {k!r}")
        return self.decode(self.beats_to_ids(bt), state, texture=texture, seed=seed, coarse_only=coarse_only)

    def _finish(self, y: np.ndarray, state, texture: bool, seed) -> np.ndarray:
        if texture:
            if self.texture_bank is None:
                raise TokenizerError("this tokenizer has no texture.safetensors; decode with texture=False")
            y = y + self.texture_bank.sample(y, seed, (state or {}).get("texture") if self.texture_state else None)
        if state is not None:
            n = int(state.get("n_samples", len(y)))
            if n < 0:
                raise TokenizerError(f"state has n_samples={n}")
            y = np.concatenate([y, np.zeros(max(n - len(y), 0), np.float32)])[:n]
            if state.get("baseline") is not None:
                knots = np.asarray(state["baseline"], np.float32).reshape(-1)
                if len(knots) != n_knots(n, self.hop):
                    raise TokenizerError(f"state has {len(knots)} baseline knots, {n_knots(n, self.hop)} expected "
                                         f"for {n} samples; is the state from another signal?")
                y = y + self.interpolate_baseline(knots, n)
        q = float(self.config.texture_adc_step_mv)
        if texture and q > 0:
            y = np.round(np.asarray(y, np.float64) / q) * q
        return np.asarray(y, np.float32)

    # ----------------------------------------------------------------- state sampling, side files
    def sample_state(self, n_samples: int, seed: int | None = None) -> dict:
        """A state for generated ids: a baseline drawn from ``wander.json`` (as tokenizer v2) and, where the
        folder has ``texture_prior.safetensors`` (and :attr:`texture_state` is on), a texture state drawn from
        it (:mod:`ecg2llm.tokenizer.texture_prior`), which ``decode(..., texture=True)`` then renders."""
        if self.wander_model is None and not self.has_texture_prior:
            raise TokenizerError("this tokenizer has neither wander.json nor texture_prior.safetensors; decode "
                                 "generated ids with state=None")
        n_samples = int(n_samples)
        if n_samples < 1:
            raise TokenizerError(f"n_samples must be >= 1, got {n_samples}")
        out: dict = {"n_samples": n_samples}
        if self.wander_model is not None:
            out["baseline"] = self.wander_model.sample(n_knots(n_samples, self.hop), seed)
        if self.has_texture_prior and self.texture_state:
            ts = None if seed is None else int(np.random.SeedSequence([int(seed), 0x7E57]).generate_state(1)[0])
            out["texture"] = self.texture_prior.sample(n_samples, ts)
        return out

    def _extra_files(self) -> dict[str, str | bytes]:
        out: dict[str, str | bytes] = {}
        if self.wander_model is not None:
            out[WANDER_FILE] = self.wander_model.to_json()
        if self.texture_bank is not None:
            out[TEXTURE_FILE] = self.texture_bank.to_bytes()
        if self.texture_prior is not None:
            out[PRIOR_FILE] = self.texture_prior.to_bytes()
        return out

    def load_extras(self, folder) -> "BeatTokenizer":
        t = Path(folder) / TEXTURE_FILE
        if t.is_file():
            self.texture_bank = TextureBank.from_file(t, n_fft=int(self.config.texture_n_fft),
                                                      hop=int(self.config.texture_hop), fs=float(self.fs))
            self.texture_bank.adc_step_mv = float(self.config.texture_adc_step_mv)
        f = Path(folder) / WANDER_FILE
        if f.is_file():
            self.wander_model = WanderModel.from_json(f.read_text(), source=str(f))
        p = Path(folder) / PRIOR_FILE
        if p.is_file():
            self.texture_prior = TexturePrior.from_file(p, fs=float(self.fs))
        self.reset_codes()
        return self

    @classmethod
    def from_pretrained(cls, path="v3") -> "BeatTokenizer":
        tok = ECGTokenizer.from_pretrained(path)
        if not isinstance(tok, BeatTokenizer):
            raise TokenizerError(f"{path!r} holds a {tok.tokenizer_type!r} tokenizer, not a beat (v3) tokenizer")
        return tok
