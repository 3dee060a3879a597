"""Texture decode v2: noise levels resampled from real recordings, and spectral lines as tones.

The first texture model (:mod:`ecg2llm.tokenizer.texture`) draws each 10-s segment's noise level from a Gaussian
and paints mains interference as band noise of its 3-Hz STFT bins. On DS1 cross-validation a plain
spectral classifier still told its output from real ECGs at |accuracy - 0.5| = 0.38: real noise levels are
skewed across windows (many quiet, a few loud: a Gaussian in log power gets both tails wrong), and mains is
a *line* (60 Hz and its harmonics, 1 Hz wide at most), which 3-Hz band noise smears into the neighbouring
bins. This model keeps what worked (the residual's log power regressed on the decode's, frame by frame)
and replaces those two parts:

* **Segment levels from a bank.** The 10-s segment effects of the fit (the residual's mean log power per
  bin after the regression, one row per segment of a training recording) are kept, in recording order. A
  sample picks a training recording and a starting segment (from ``seed``) and walks its consecutive
  segments, interpolating between them: noise levels, their skew and their drift within a recording are
  those of a real one. Per-frame scatter stays Gaussian (its covariance from the fit).
* **Spectral lines as tones.** :func:`detect_lines` finds the narrow peaks of the training residuals'
  mean log spectrum (0.1-Hz Welch, ``>= line_min_ratio`` above a 6-Hz running median, refined to 0.01 Hz).
  On MIT-BIH DS1 it finds 60.0, 120.0 and 149.9 Hz and nothing else. Each line's amplitude is fitted per
  10-s segment by least squares and stored beside the segment's levels; a sample adds each line as a tone
  with that amplitude (interpolated between segments), a random phase and a frequency jitter of 0.02 Hz sd.
  The tones are subtracted from the residual before its spectrum is modelled, so nothing is counted twice.

Then, as before, a per-bin calibration on the training signals makes the mean 10-s log power of
decode + sample (rounded to the ADC step) equal to the real signals'.

The fitted tensors live in ``texture.safetensors`` beside the tokenizer weights. Like ``wander.json`` it is
outside the weights hash: texture changes what a decode sounds like, never what a token means, so a refit
leaves every token store and LM valid. Where the file exists it replaces the in-weights texture model.

.. code-block:: python

    from ecg2llm.tokenizer.texture_bank import fit_texture_bank
    bank = fit_texture_bank(tok, ds1_training_mlii)       # closed form, ~1 min on 2 cores
    tok.texture_bank = bank; tok.save_pretrained(folder)  # writes texture.safetensors

Command: ``python scripts/fit_texture.py --tokenizer default --out runs/tok/v2_bank``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ecg2llm.core.errors import TokenizerError

from .texture import EULER_GAMMA, SEGMENT_S, _psd_sqrt, _segment_log_power, _stft, log_power

TEXTURE_FILE = "texture.safetensors"
FORMAT = "ecg2llm-texture-bank-v1"
LINE_JITTER_HZ = 0.02
LINE_BLOCK_S = 1.0  # coherent lines: block of the decode's line amplitude
# Texture state (``state["texture"]``, measured at encode): per 10-s segment, the residual's mean power in
# these bands (Hz; log power in natural-log steps of STATE_LEVEL_STEP from STATE_LEVEL_OFFSET, int8) and each
# spectral line's complex amplitude (int16, STATE_LINE_STEP_MV steps).
STATE_BANDS_HZ = (0, 6, 12, 21, 30, 42, 54, 66, 78, 93, 108, 126, 144, 165, 181)
STATE_LEVEL_STEP = 0.1
STATE_LEVEL_OFFSET = -10.0
STATE_LINE_STEP_MV = 0.001
EQ_MIN_HZ = 45.0  # the texture-state decode turns the decode down where it is louder than the recording above this
EQ_MAX_GAIN = 4.0  # ... and up where it is quieter (power gain at most this)
# the lines' skirts (texture-state decode): line (Hz) -> width (Hz) of the narrow-band noise rendered around it
LINE_SKIRT_HZ = {120.0: 0.4}
# fine EQ around mains (texture state's optional ``real_fine``): STFT of FINE_N_FFT samples (1.5 Hz at 360 Hz),
# hop FINE_N_FFT / 2, the recording's power per bin in FINE_BANDS_HZ per 10 s
FINE_N_FFT = 240
FINE_BANDS_HZ = ((48.0, 72.0), (165.0, 180.0))  # around mains; next to fs / 2
FINE_EQ = True  # False: the decode ignores real_fine (ablation)
# the finest EQ (texture state's optional ``real_vfine``), after the fine one: STFT of VFINE_N_FFT samples (0.5 Hz
# at 360 Hz, 2-s frames), the recording's power per bin in VFINE_BANDS_HZ per 10 s. It resolves what the 1.5-Hz
# bins cannot: the decode switches its share of mains on and off with each beat (the detail tokens code the
# cycle's residual, mains included), which puts lines at mains +- the heart rate
VFINE_N_FFT = 720
VFINE_BANDS_HZ = ((54.0, 66.0),)
VFINE_EQ = True  # False: the decode ignores real_vfine (ablation)
# the recording's own mains frequency (texture state's optional ``line_hz``): MIT-BIH's tape playback put mains at
# 59.95-60.02 Hz depending on the record, while the bank's line is one frequency for all. Refined on the recording
# where its line stands at least RECORD_LINE_MIN_DB above the spectrum around it (the largest of ~1,000 noise-only
# grid cells of a 30-min record reaches about 10 dB above their median); its harmonics follow
RECORD_LINE_HZ = True  # False: analyse keeps the bank's frequencies (ablation)
RECORD_LINE_MIN_DB = 12.0
RECORD_LINE_SEARCH_HZ = 0.3  # search +- this around the bank's mains line
STATE_LINE_HZ_STEP = 0.001  # state["line_hz"]: int32 in steps of this (Hz)
QUARTER = True  # False: the decode ignores quarter (ablation)


@dataclass
class TextureBank:
    """Fitted tensors of the texture decode v2 (shapes: ``nb = n_fft // 2 + 1`` bins, ``S`` segments)."""

    W: torch.Tensor              # (nb + 1, nb) float32: residual log power ~ [decode log power, 1] @ W
    calib: torch.Tensor          # (nb,) float32: per-bin log offset (calibration)
    chol_frame: torch.Tensor     # (nb, nb) float32: square root of the per-frame covariance
    levels: torch.Tensor         # (S, nb) float16: 10-s segment effects, training recordings in order
    recordings: torch.Tensor     # (R, 2) int64: first segment and segment count of each recording
    line_hz: torch.Tensor        # (L,) float64: spectral lines (Hz)
    line_amp: torch.Tensor       # (S, L) float32: each segment's line amplitude (mV)
    n_fft: int
    hop: int
    fs: float
    line_gain: torch.Tensor | None = None  # (L, 2) float32: complex gain (re, im) of the lines the decode carries
    adc_step_mv: float = 0.005  # the decode's ADC grid (texture-state decode: what rounding adds is left out)

    # ------------------------------------------------------------------ sampling
    # ------------------------------------------------------------------ texture state (per-record side information)
    def _state_bands(self) -> np.ndarray:
        """Band index of each STFT bin (:data:`STATE_BANDS_HZ`)."""
        f = np.arange(self.calib.shape[0]) * self.fs / self.n_fft
        return np.clip(np.searchsorted(np.asarray(STATE_BANDS_HZ, float), f, side="right") - 1, 0,
                       len(STATE_BANDS_HZ) - 2)

    @torch.no_grad()
    def analyse(self, y: np.ndarray, residual: np.ndarray) -> dict:
        """The texture state of one recording: what the decoder cannot know from the ids, per 10-s segment.

        ``y`` is the band decode and ``residual`` the real band minus it (same length). Returns

        * ``lines`` ``(segments, L, 2)`` int16: each spectral line's complex amplitude (real, imaginary;
          :data:`STATE_LINE_STEP_MV` steps) in the residual at the segment centres, phase referred to the
          recording's first sample (:func:`_hat_amplitudes`);
        * ``levels`` ``(segments, bands)`` int8: the power the texture must add to the decode in each band of
          :data:`STATE_BANDS_HZ`: the real band's mean STFT power (the residual's lines removed; units of
          :func:`ecg2llm.tokenizer.texture.log_power`) minus the decode's, at least 5 % of the residual's, the
          lines' bins left out;
        * ``real`` ``(segments, bins)`` int8: the real band's mean power per STFT bin from :data:`EQ_MIN_HZ` up;

        and three optional keys (added later: states without them, e.g. the texture prior's draws, decode as
        before):

        * ``nyquist`` ``(segments,)`` int16: the amplitude of the component at fs / 2 (a real ``(-1)^n``
          sequence; mains' third harmonic lands there at 360 Hz) in the residual after the lines;
        * ``quarter`` ``(segments, 2)`` int16: the complex amplitude of the line at fs / 4, as ``lines``;
        * ``real_fine`` ``(segments, fine bins)`` int8: as ``real`` per bin of a :data:`FINE_N_FFT` STFT in
          :data:`FINE_BANDS_HZ` (around mains, next to fs / 2), the fs / 2 and fs / 4 components included.

        and, since the third round, two more optional keys:

        * ``line_hz`` ``(L,)`` int32: each line's frequency in this recording (:data:`STATE_LINE_HZ_STEP` steps;
          :meth:`record_line_hz`), at which ``lines`` was fitted and at which the decode renders it (without the
          key: the bank's :attr:`line_hz`);
        * ``real_vfine`` ``(segments, bins)`` int8: as ``real_fine`` per 0.5-Hz bin of a :data:`VFINE_N_FFT` STFT in
          :data:`VFINE_BANDS_HZ` (omitted for signals of at most half a frame).

        Powers are logs in steps of :data:`STATE_LEVEL_STEP` from :data:`STATE_LEVEL_OFFSET`. :meth:`sample`
        with this state reproduces the recording's mains and noise levels instead of drawing a training
        recording's.
        """
        n = len(y)
        seg_n = int(round(SEGMENT_S * self.fs))
        k = max(1, math.ceil(n / seg_n))
        r = np.asarray(residual, np.float64)
        lines = self.record_line_hz(np.asarray(y, np.float64) + r) if RECORD_LINE_HZ else self.line_hz.tolist()
        line_hz = np.round(np.asarray(lines, np.float64) / STATE_LINE_HZ_STEP).astype(np.int32)
        lines = (line_hz * STATE_LINE_HZ_STEP).tolist()  # fitted where the decode renders them: a 0.4-mHz slip
        # turns the phase by 4 rad over 30 min, and the tone then cancels the decode's own share of the line
        amp, tone = _fit_lines(r, self.fs, lines, seg_n, k)
        q = np.round(amp / STATE_LINE_STEP_MV)
        lines_q = np.clip(np.stack([q.real, q.imag], -1), -32767, 32767).astype(np.int16)
        # the component at fs / 2: real, and cos^2 of it averages to 1 (not 1/2 as _fit_lines assumes)
        a_x = _fit_lines(r - tone, self.fs, [0.5 * self.fs, 0.25 * self.fs], seg_n, k)[0]
        nyq = np.clip(np.round(0.5 * a_x[:, 0].real / STATE_LINE_STEP_MV), -32767, 32767).astype(np.int16)
        a_qu = a_x[:, 1]  # the line at fs / 4 (90 Hz)
        quarter = np.clip(np.round(np.stack([a_qu.real, a_qu.imag], -1) / STATE_LINE_STEP_MV), -32767,
                          32767).astype(np.int16)
        eqb = self._eq_bins()
        levels = np.full((k, len(STATE_BANDS_HZ) - 1), -127, np.int8)
        real = np.full((k, len(eqb)), -127, np.int8)
        if n < self.n_fft:
            return {"levels": levels, "real": real, "lines": lines_q, "nyquist": nyq, "quarter": quarter,
                    "line_hz": line_hz}
        seg = max(1, int(round(SEGMENT_S * self.fs / self.hop)))
        win2 = float(torch.hann_window(self.n_fft, periodic=True).pow(2).sum())
        nbands = len(STATE_BANDS_HZ) - 1
        onehot = np.zeros((self.calib.shape[0], nbands))
        band = self._state_bands()
        onehot[np.arange(len(band)), band] = 1.0
        onehot[self._line_bins()] = 0.0  # what is left of a line is no noise
        per_band = onehot / np.maximum(onehot.sum(0), 1)[None]

        def seg_power(v):  # (k, nb) mean STFT power per segment (log_power's units)
            pw = (_stft(torch.from_numpy(np.asarray(v, np.float32)), self.n_fft, self.hop).abs() ** 2).T.numpy()
            starts = np.arange(0, len(pw), seg)[:k]
            sums = np.add.reduceat(pw.astype(np.float64), starts, axis=0)
            if len(starts) < k:  # fewer frames than segments: hold the last
                sums = sums[np.minimum(np.arange(k), len(starts) - 1)]
            cnt = np.diff(np.r_[starts, len(pw)])[np.minimum(np.arange(k), len(starts) - 1)]
            return sums / cnt[:, None] / win2

        yy = np.asarray(y, np.float64)
        p_x, p_y, p_r = seg_power(yy + r - tone), seg_power(yy), seg_power(r - tone)
        lv = np.log(np.maximum((p_x - p_y) @ per_band, 0.05 * (p_r @ per_band)) + 1e-12)
        levels = np.clip(np.round((lv - STATE_LEVEL_OFFSET) / STATE_LEVEL_STEP), -127, 127).astype(np.int8)
        real = np.clip(np.round((np.log(p_x[:, eqb] + 1e-12) - STATE_LEVEL_OFFSET) / STATE_LEVEL_STEP), -127,
                       127).astype(np.int8)
        fb = self._fine_bins()
        pf = _segment_power(yy + r - tone, FINE_N_FFT, FINE_N_FFT // 2, self.fs, k)[:, fb]
        real_fine = np.clip(np.round((np.log(pf + 1e-12) - STATE_LEVEL_OFFSET) / STATE_LEVEL_STEP), -127,
                            127).astype(np.int8)
        out = {"levels": levels, "real": real, "lines": lines_q, "nyquist": nyq, "quarter": quarter,
               "real_fine": real_fine, "line_hz": line_hz}
        if n > VFINE_N_FFT // 2:  # (the STFT's reflect padding needs more samples than half a frame)
            vb = self._fine_bins(VFINE_N_FFT, VFINE_BANDS_HZ)
            pv = _segment_power(yy + r - tone, VFINE_N_FFT, VFINE_N_FFT // 2, self.fs, k)[:, vb]
            out["real_vfine"] = np.clip(np.round((np.log(pv + 1e-12) - STATE_LEVEL_OFFSET) / STATE_LEVEL_STEP),
                                        -127, 127).astype(np.int8)
        return out

    def record_line_hz(self, x: np.ndarray) -> list[float]:
        """The bank's lines at the recording's own mains frequency.

        The mains line (the bank's line between 45 and 65 Hz) is searched within :data:`RECORD_LINE_SEARCH_HZ`
        of the bank's frequency, on ``x`` shifted down by it and averaged to 10 samples/s (a zoom spectrum,
        0.001-Hz grid: milliseconds on a 30-min record). Where the peak stands at least
        :data:`RECORD_LINE_MIN_DB` above the median of the spectrum within 4 Hz, that line and its harmonics
        move to it; other lines, short recordings (< 10 s) and recordings without a clear line keep the bank's.
        """
        lines = self.line_hz.tolist()
        base = [f for f in lines if 45.0 <= f <= 65.0]
        if not base or len(x) < SEGMENT_S * self.fs:
            return lines
        f0 = base[0]
        peak, snr = _zoom_peak(x, self.fs, f0, (f0 - RECORD_LINE_SEARCH_HZ, f0 + RECORD_LINE_SEARCH_HZ),
                               (f0 - 4.0, f0 + 4.0))
        if snr < RECORD_LINE_MIN_DB:
            return lines
        scale = peak / f0
        out = []
        for f in lines:
            h = f / f0
            out.append(f * scale if round(h) >= 1 and abs(h - round(h)) < 0.01 else f)
        return out

    def _fine_bins(self, n_fft: int = FINE_N_FFT, bands=FINE_BANDS_HZ) -> np.ndarray:
        """Bins of the ``n_fft`` STFT (:data:`FINE_N_FFT`) in ``bands`` (:data:`FINE_BANDS_HZ`)."""
        f = np.arange(n_fft // 2 + 1) * self.fs / n_fft
        return np.flatnonzero(np.any([(f >= lo) & (f <= hi) for lo, hi in bands], axis=0))

    def _fine_eq(self, y: np.ndarray, r: np.ndarray, real_fine, k: int, n_fft: int = FINE_N_FFT,
                 bands=FINE_BANDS_HZ) -> np.ndarray:
        """Turn decode + noise ``y + r`` to the recording's power per :data:`FINE_N_FFT` bin around mains (per
        10-s segment, gain at most :data:`EQ_MAX_GAIN` up); returns the new ``r``."""
        n = len(r)
        nf, hop = n_fft, n_fft // 2
        rf = np.asarray(real_fine, np.float64)[np.minimum(np.arange(k), len(real_fine) - 1)]
        q = float(self.adc_step_mv)
        target = np.exp(rf * STATE_LEVEL_STEP + STATE_LEVEL_OFFSET)
        target = np.maximum(target - q * q / 12.0, 0.1 * target) * (rf > -127)
        win = torch.hann_window(nf, periodic=True)
        z = torch.from_numpy((np.asarray(y, np.float64) + r).astype(np.float32))
        zs = _stft(z, nf, hop)  # (nb, F)
        fb = torch.from_numpy(self._fine_bins(n_fft, bands))
        seg = max(1, int(round(SEGMENT_S * self.fs / hop)))
        sid = torch.minimum(torch.arange(zs.shape[1]) // seg, torch.tensor(k - 1))
        zp = zs[fb].abs().pow(2).double() / win.pow(2).sum()
        have = torch.zeros(k, len(fb), dtype=torch.float64).index_add_(0, sid, zp.T)
        have = have / torch.bincount(sid, minlength=k).clamp(min=1)[:, None]
        eq = torch.sqrt((torch.from_numpy(target) / have.clamp(min=1e-30)).clamp(max=EQ_MAX_GAIN))
        eq = torch.where(torch.from_numpy(target) > 0, eq, torch.ones_like(eq))
        gb = torch.ones(zs.shape[0], zs.shape[1], dtype=zs.real.dtype)
        gb[fb] = eq[sid].T.to(zs.real.dtype)
        z2 = torch.istft(zs * gb, nf, hop, window=win, center=True, length=n)
        return z2.double().numpy() - np.asarray(y, np.float64)

    def _eq_bins(self) -> np.ndarray:
        """STFT bins from :data:`EQ_MIN_HZ` up."""
        f = np.arange(self.calib.shape[0]) * self.fs / self.n_fft
        return np.flatnonzero(f >= EQ_MIN_HZ)

    def _line_bins(self) -> list[int]:
        """Interior STFT bins nearest to each spectral line."""
        nb = self.calib.shape[0]
        b = [int(round(f * self.n_fft / self.fs)) for f in self.line_hz.tolist()]
        return sorted({v for v in b if 0 < v < nb - 1})

    def _sample_state(self, y: np.ndarray, mu: torch.Tensor, n: int, ts: dict, g: torch.Generator) -> np.ndarray:
        """The texture-state sample: the bank's noise (regression on the decode, the mean segment effect,
        per-frame scatter), scaled in each 10-s segment and band to the recording's measured power, minus
        what rounding to the ADC grid adds; decode + noise turned to the recording's power per 3-Hz bin from
        :data:`EQ_MIN_HZ` up, the line bins' shortfall first filled by narrow-band noise around the line
        (:data:`LINE_SKIRT_HZ`); the fs / 2 and fs / 4 components (optional keys) added, then decode + noise turned
        to ``real_fine`` per 1.5-Hz bin in :data:`FINE_BANDS_HZ` (optional key), then to ``real_vfine`` per 0.5-Hz
        bin in :data:`VFINE_BANDS_HZ` (optional key); then the lines as tones, at ``line_hz`` (optional key)."""
        n_frames, nb = mu.shape
        seg = max(1, int(round(SEGMENT_S * self.fs / self.hop)))
        u = self.levels.float().mean(0)[None]  # (1, nb)
        e = torch.randn(n_frames, nb, generator=g) @ self.chol_frame.T
        lvl = mu + u + e
        nb_ = lvl.shape[1]
        for b in self._line_bins():  # the noise floor under a line and its two neighbours (which the regression
            if 2 <= b <= nb_ - 3:  # lifts where the decode carries the line): interpolated from the bins beyond
                for d, wt in ((-1, 0.25), (0, 0.5), (1, 0.75)):
                    lvl[:, b + d] = (1 - wt) * lvl[:, b - 2] + wt * lvl[:, b + 2]
            else:
                lvl[:, b] = 0.5 * (lvl[:, b - 1] + lvl[:, b + 1])
        win = torch.hann_window(self.n_fft, periodic=True)
        spec = _stft(torch.randn(n, generator=g), self.n_fft, self.hop) * torch.exp(0.5 * lvl).T  # (nb, F)
        pw = spec.abs().pow(2).double() / win.pow(2).sum()  # (nb, F), log_power's units
        band = torch.from_numpy(self._state_bands())
        nbands = len(STATE_BANDS_HZ) - 1
        lv = np.asarray(ts["levels"], np.float64)
        k = int(math.ceil(n_frames / seg))
        lv = lv[np.minimum(np.arange(k), len(lv) - 1)]  # (k, bands), held past the last segment
        target = np.exp(lv * STATE_LEVEL_STEP + STATE_LEVEL_OFFSET) * (lv > -127)
        q = float(self.adc_step_mv)
        target = np.maximum(target - q * q / 12.0, 0.1 * target)  # the rounding adds white noise of q^2/12
        sid = torch.minimum(torch.arange(n_frames) // seg, torch.tensor(k - 1))
        have = torch.zeros(k, nbands, dtype=torch.float64)
        have.index_put_((sid[None, :].expand(nb, -1), band[:, None].expand(-1, n_frames)), pw, accumulate=True)
        cnt = torch.bincount(sid, minlength=k)[:, None] * torch.bincount(band, minlength=nbands)[None, :]
        have = have / cnt.clamp(min=1)
        gain = torch.sqrt(torch.from_numpy(target) / have.clamp(min=1e-30))  # (k, bands)
        spec = spec * gain[sid][:, band].T.to(spec.real.dtype)
        r = torch.istft(spec, self.n_fft, self.hop, window=win, center=True, length=n).numpy().astype(np.float64)
        seg_n = int(round(SEGMENT_S * self.fs))
        extra = None  # the optional keys' tones: the components at fs / 2 and fs / 4
        if ts.get("nyquist") is not None and len(ts["nyquist"]):
            extra = _hat_tone(np.asarray(ts["nyquist"], np.float64) * STATE_LINE_STEP_MV, n, self.fs, 0.5 * self.fs,
                              seg_n)
        if QUARTER and ts.get("quarter") is not None and len(ts["quarter"]):
            aq = np.asarray(ts["quarter"], np.float64) * STATE_LINE_STEP_MV
            tq = _hat_tone(aq[:, 0] + 1j * aq[:, 1], n, self.fs, 0.25 * self.fs, seg_n)
            extra = tq if extra is None else extra + tq
        if "real" in ts:  # where decode + noise is louder than the recording (the decode's own artifacts, e.g.
            # codewords that carry mains-like content), turn the sum down to the recording's power per bin
            rl = np.asarray(ts["real"], np.float64)[np.minimum(np.arange(k), len(ts["real"]) - 1)]
            p_real = np.exp(rl * STATE_LEVEL_STEP + STATE_LEVEL_OFFSET)  # (k, eq bins)
            p_real = torch.from_numpy(np.maximum(p_real - q * q / 12.0, 0.1 * p_real))  # rounding adds q^2/12
            z = torch.from_numpy((np.asarray(y, np.float64) + r).astype(np.float32))
            zs = _stft(z, self.n_fft, self.hop)  # (nb, F)
            eb = torch.from_numpy(self._eq_bins())
            if LINE_SKIRT_HZ and len(self.line_hz) and "nyquist" in ts:  # what the recording has at a line's bin
                # beyond decode + noise is the line's own slow wobble (its skirt): rendered as narrow-band noise
                # around the line. Measured states only (analyse writes "nyquist"): a state drawn from the texture
                # prior for generated ids keeps the decode its scorecard was measured with (lm/pretrained/v3)
                add = self._line_skirts(zs, eb, p_real, sid, k, n, g)
                if add is not None:
                    r = r + add
                    z = torch.from_numpy((np.asarray(y, np.float64) + r).astype(np.float32))
                    zs = _stft(z, self.n_fft, self.hop)
            if extra is not None:  # what those components bring to each bin is the recording's, not the EQ's
                tp = _stft(torch.from_numpy(extra.astype(np.float32)), self.n_fft, self.hop)[eb].abs().pow(2).double()
                tp = torch.zeros(k, len(eb), dtype=torch.float64).index_add_(0, sid, tp.T / win.pow(2).sum())
                tp = tp / torch.bincount(sid, minlength=k).clamp(min=1)[:, None]
                p_real = torch.maximum(p_real - tp, 0.1 * p_real)
            zp = zs[eb].abs().pow(2).double() / win.pow(2).sum()  # (eq bins, F)
            have = torch.zeros(k, len(eb), dtype=torch.float64).index_add_(0, sid, zp.T)
            have = have / torch.bincount(sid, minlength=k).clamp(min=1)[:, None]
            eq = torch.sqrt((p_real / have.clamp(min=1e-30)).clamp(max=EQ_MAX_GAIN))  # (k, eq bins)
            if float((eq - 1).abs().max()) > 0:
                gb = torch.ones(nb, n_frames, dtype=zs.real.dtype)
                gb[eb] = eq[sid].T.to(zs.real.dtype)
                z2 = torch.istft(zs * gb, self.n_fft, self.hop, window=win, center=True, length=n)
                r = z2.double().numpy() - np.asarray(y, np.float64)
        if extra is not None:  # (real_fine counts them: they go through the fine EQ)
            r += extra
        if FINE_EQ and ts.get("real_fine") is not None and len(ts["real_fine"]):
            r = self._fine_eq(np.asarray(y, np.float64), r, ts["real_fine"], k)
        if VFINE_EQ and ts.get("real_vfine") is not None and len(ts["real_vfine"]) and n > VFINE_N_FFT // 2:
            r = self._fine_eq(np.asarray(y, np.float64), r, ts["real_vfine"], k, VFINE_N_FFT, VFINE_BANDS_HZ)
        a = np.asarray(ts["lines"], np.float64) * STATE_LINE_STEP_MV
        a = a[..., 0] + 1j * a[..., 1]  # (S, L)
        hz = self.line_hz.tolist()
        if ts.get("line_hz") is not None and len(ts["line_hz"]) == len(hz):  # the recording's own (optional key)
            hz = (np.asarray(ts["line_hz"], np.float64) * STATE_LINE_HZ_STEP).tolist()
        for j, f in enumerate(hz[: a.shape[1]]):
            r += _hat_tone(a[:, j], n, self.fs, f, seg_n)
        return r.astype(np.float32)

    def _line_skirts(self, zs, eb, p_real, sid, k, n, g) -> np.ndarray | None:
        """Narrow-band noise (:data:`LINE_SKIRT_HZ` wide) around each line whose STFT bin is quieter in ``zs``
        than in the recording (``p_real``, per segment and EQ bin), scaled per segment to the difference."""
        win2 = float(torch.hann_window(self.n_fft, periodic=True).pow(2).sum())
        eb_l = eb.tolist()
        cnt = torch.bincount(sid, minlength=k).clamp(min=1)[:, None].double()
        seg_n = int(round(SEGMENT_S * self.fs))
        centres = (np.arange(k) + 0.5) * seg_n
        out = np.zeros(n)
        for f in self.line_hz.tolist():
            b = int(round(f * self.n_fft / self.fs))
            width = next((w for lf, w in LINE_SKIRT_HZ.items() if abs(lf - f) < 0.5), 0.0)
            if b not in eb_l or width <= 0:
                continue
            j = eb_l.index(b)
            zp = zs[b].abs().pow(2).double() / win2  # (F,)
            have = torch.zeros(k, dtype=torch.float64).index_add_(0, sid, zp) / cnt[:, 0]
            deficit = (p_real[:, j] - have).clamp(min=0).numpy()
            if not deficit.any():
                continue
            spec = torch.complex(torch.randn(n, generator=g, dtype=torch.float64),
                                 torch.randn(n, generator=g, dtype=torch.float64))
            fr = torch.fft.fftfreq(n, 1 / self.fs, dtype=torch.float64)
            c = torch.fft.ifft(spec * (fr.abs() <= 0.5 * width)).numpy()
            u = np.real(c * np.exp(2j * np.pi * f * np.arange(n) / self.fs))
            up = _stft(torch.from_numpy(u.astype(np.float32)), self.n_fft, self.hop)[b].abs().pow(2).double() / win2
            got = (torch.zeros(k, dtype=torch.float64).index_add_(0, sid, up) / cnt[:, 0]).numpy()
            gain = np.sqrt(deficit / np.maximum(got, 1e-30))
            out += u * (np.interp(np.arange(n), centres, gain) if k > 1 else gain[0])
        return out

    @torch.no_grad()
    def sample(self, y: np.ndarray, seed: int | None, texture_state: dict | None = None) -> np.ndarray:
        """One texture sample for the band decode ``y`` (1-D mV at ``fs``): same length, float32 mV.

        With ``texture_state`` (:meth:`analyse` of the recording the ids came from: ``state["texture"]``),
        the segment levels and the lines are the recording's own instead of a training recording's."""
        n = len(y)
        if n < self.n_fft:
            return np.zeros(n, np.float32)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        rng = np.random.default_rng(int(seed))
        g = torch.Generator().manual_seed(int(seed))
        feat = log_power(torch.from_numpy(np.asarray(y, np.float32)), self.n_fft, self.hop)  # (F, nb)
        feat = torch.cat([feat, torch.ones_like(feat[:, :1])], dim=1)
        mu = feat @ self.W + self.calib  # (F, nb)
        n_frames, nb = mu.shape
        seg = max(1, int(round(SEGMENT_S * self.fs / self.hop)))  # frames per segment
        n_seg = n_frames // seg + 2
        first, count = (int(v) for v in self.recordings[rng.integers(len(self.recordings))])
        idx = first + (int(rng.integers(count)) + np.arange(n_seg)) % count  # consecutive segments
        u = self.levels[torch.from_numpy(idx)].float()  # (n_seg, nb)
        ts = texture_state if texture_state is not None and len(texture_state.get("levels", ())) else None
        if ts is not None:
            return self._sample_state(y, mu, n, ts, g)
        pos = torch.arange(n_frames, dtype=torch.float32) / seg
        i0 = pos.floor().long()
        w = (pos - i0)[:, None]
        u = u[i0] * (1 - w) + u[i0 + 1] * w  # (F, nb)
        e = torch.randn(n_frames, nb, generator=g) @ self.chol_frame.T  # (F, nb)
        spec = _stft(torch.randn(n, generator=g), self.n_fft, self.hop) * torch.exp(0.5 * (mu + u + e)).T
        win = torch.hann_window(self.n_fft, periodic=True)
        r = torch.istft(spec, self.n_fft, self.hop, window=win, center=True, length=n).numpy().astype(np.float64)
        if len(self.line_hz) and self.line_gain is not None:  # the decode's own lines, scaled (coherent)
            g = self.line_gain.double().numpy()
            r += coherent_line_tones(np.asarray(y, np.float64), self.fs, self.line_hz.tolist(), g[:, 0] + 1j * g[:, 1])
        if len(self.line_hz):
            t = np.arange(n) / self.fs
            ps = np.arange(n) / (SEGMENT_S * self.fs)
            j0 = np.floor(ps).astype(int)
            wj = ps - j0
            amp = self.line_amp.numpy()[idx]  # (n_seg, L)
            for j, f in enumerate(self.line_hz.tolist()):
                a = amp[j0, j] * (1 - wj) + amp[j0 + 1, j] * wj
                f_j = f + rng.normal(0.0, LINE_JITTER_HZ)
                r += a * np.cos(2 * np.pi * f_j * t + rng.uniform(0, 2 * np.pi))
        return r.astype(np.float32)

    # ------------------------------------------------------------------ file format
    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        tensors = {"W": self.W, "calib": self.calib, "chol_frame": self.chol_frame, "levels": self.levels,
                   "recordings": self.recordings, "line_hz": self.line_hz, "line_amp": self.line_amp}
        if self.line_gain is not None:
            tensors["line_gain"] = self.line_gain
        meta = {"format": FORMAT, "n_fft": str(self.n_fft), "hop": str(self.hop), "fs": repr(float(self.fs))}
        return save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta)

    @classmethod
    def from_file(cls, path, *, n_fft: int, hop: int, fs: float) -> "TextureBank":
        """Read ``texture.safetensors``; the analysis settings must be the tokenizer's."""
        from ecg2llm.core.io import read_safetensors

        t, meta = read_safetensors(path, TokenizerError, "texture file",
                                   "refit it with scripts/fit_texture.py or delete it")
        if meta.get("format") != FORMAT:
            raise TokenizerError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
        got = (int(meta["n_fft"]), int(meta["hop"]), float(meta["fs"]))
        if got != (int(n_fft), int(hop), float(fs)):
            raise TokenizerError(f"{path} was fitted with n_fft, hop, fs = {got}, but this tokenizer analyses "
                                 f"texture with {(int(n_fft), int(hop), float(fs))}; refit it")
        missing = {"W", "calib", "chol_frame", "levels", "recordings", "line_hz", "line_amp"} - set(t)
        if missing:
            raise TokenizerError(f"{path} lacks tensors {sorted(missing)}")
        return cls(**t, n_fft=got[0], hop=got[1], fs=got[2])  # line_gain: optional (files before it lack it)


def _zoom_peak(x: np.ndarray, fs: float, centre: float, search: tuple[float, float],
               floor: tuple[float, float]) -> tuple[float, float]:
    """The strongest frequency of ``x`` in ``search`` (Hz) and its height in dB above the median of the spectrum
    in ``floor`` (Hz; both within 5 Hz of ``centre``): ``x`` shifted down by ``centre``, averaged to 10 samples/s,
    Hann window, spectrum on a :data:`STATE_LINE_HZ_STEP` grid. ``(centre, -inf)`` for under 1.6 s of signal."""
    x = np.asarray(x, np.float64)
    dec = max(1, int(round(fs / 10.0)))
    m = len(x) // dec
    if m < 16:
        return centre, -math.inf
    w = 2 * np.pi * centre / fs  # per block: exp(-i w dec b) * sum_j x[b, j] exp(-i w j)
    z = ((x[: m * dec] - x.mean()).reshape(m, dec) @ np.exp(-1j * w * np.arange(dec))) / dec
    z = z * np.exp(-1j * w * dec * np.arange(m)) * np.hanning(m)
    fd = fs / dec
    nfft = 1 << int(math.ceil(math.log2(max(4 * m, fd / STATE_LINE_HZ_STEP))))
    spec = np.abs(np.fft.fft(z, nfft))
    f = centre + np.fft.fftfreq(nfft, 1.0 / fd)
    near = np.flatnonzero((f >= search[0]) & (f <= search[1]))
    j = near[np.argmax(spec[near])]
    fl = np.median(spec[(f >= floor[0]) & (f <= floor[1])])
    if not fl > 0 or not spec[j] > 0:
        return centre, -math.inf
    return float(f[j]), 20 * math.log10(spec[j] / fl)


def _segment_power(v: np.ndarray, n_fft: int, hop: int, fs: float, k: int) -> np.ndarray:
    """``(k, n_fft // 2 + 1)`` mean STFT power of ``v`` per 10-s segment (:func:`log_power`'s units; frames
    by their centre, the last segment holding any tail)."""
    win2 = float(torch.hann_window(n_fft, periodic=True).pow(2).sum())
    pw = (_stft(torch.from_numpy(np.asarray(v, np.float32)), n_fft, hop).abs() ** 2).T.double()
    seg = max(1, int(round(SEGMENT_S * fs / hop)))
    sid = torch.clamp(torch.arange(len(pw)) // seg, max=k - 1)
    sums = torch.zeros(k, pw.shape[1], dtype=torch.float64).index_add_(0, sid, pw).numpy()
    cnt = np.bincount(sid.numpy(), minlength=k)[:, None]
    out = sums / np.maximum(cnt, 1) / win2
    if (cnt[:, 0] == 0).any():  # fewer frames than segments: hold the last filled one
        last = np.maximum.accumulate(np.where(cnt[:, 0] > 0, np.arange(k), 0))
        out = out[last]
    return out


# ---------------------------------------------------------------------- lines of the texture state
def _hat_weights(n: int, seg_n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the segment centre at or before it (``i``, clipped to ``[0, k - 2]``) and the weight ``w`` of
    the next one (linear interpolation between the centres of ``k`` segments, flat beyond the ends)."""
    pos = np.arange(n) - 0.5 * seg_n
    i = np.clip(np.floor(pos / seg_n).astype(np.int64), 0, max(k - 2, 0))
    w = np.clip(pos / seg_n - i, 0.0, 1.0) if k > 1 else np.zeros(n)
    return i, w


def _phasor(f: float, fs: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``cos, sin`` of ``2 pi f t / fs`` for ``t < n`` (phase taken modulo one cycle in float64); a line
    whose cycle is a whole number of samples up to 12 (60, 90, 120, 180 Hz at 360 Hz) tiles one cycle."""
    for p in range(1, 13):
        if abs(f * p / fs - round(f * p / fs)) < 1e-9:
            ph = (2 * np.pi) * ((f / fs * np.arange(p, dtype=np.float64)) % 1.0).astype(np.float32)
            reps = -(-n // p)
            return np.tile(np.cos(ph), reps)[:n], np.tile(np.sin(ph), reps)[:n]
    ph = (2 * np.pi) * ((f / fs * np.arange(n, dtype=np.float64)) % 1.0).astype(np.float32)
    return np.cos(ph), np.sin(ph)


def _fit_lines(r: np.ndarray, fs: float, lines: list[float], seg_n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_hat_amplitudes` of every line, ``(k, L)`` complex, and the sum of their tones (:func:`_hat_tone`),
    with the interpolation weights and each line's phasor computed once (float32 phasors of the phase taken
    modulo one cycle in float64)."""
    from scipy.linalg import solve_banded

    n = len(r)
    amp = np.zeros((k, len(lines)), np.complex128)
    tone = np.zeros(n)
    if not lines or n == 0:
        return amp, tone
    r = np.asarray(r, np.float64)
    i, w = _hat_weights(n, seg_n, k)
    w0, w1 = 1 - w, w
    if k > 1:
        diag = (np.bincount(i, w0 ** 2, k + 1) + np.bincount(i + 1, w1 ** 2, k + 1))[:k] + 1e-9
        off = np.bincount(i, w0 * w1, k)[: k - 1]
        ab = np.zeros((3, k))
        ab[0, 1:], ab[1], ab[2, :-1] = off, diag, off
    for j, f in enumerate(lines):
        c, sn = _phasor(f, fs, n)
        zr, zi = 2 * r * c, -2 * r * sn  # z = 2 r exp(-i phase)
        if k == 1:
            a = np.array([zr.mean() + 1j * zi.mean()])
        else:
            rhs = (np.bincount(i, w0 * zr, k + 1) + np.bincount(i + 1, w1 * zr, k + 1)
                   + 1j * (np.bincount(i, w0 * zi, k + 1) + np.bincount(i + 1, w1 * zi, k + 1)))[:k]
            a = solve_banded((1, 1), ab, rhs)
        amp[:, j] = a
        if k == 1:
            tone += a[0].real * c - a[0].imag * sn
        else:
            ar, ai = a.real[i] * w0 + a.real[i + 1] * w1, a.imag[i] * w0 + a.imag[i + 1] * w1
            tone += ar * c - ai * sn
    return amp, tone


def _hat_amplitudes(r: np.ndarray, fs: float, f: float, seg_n: int, k: int) -> np.ndarray:
    """Complex amplitudes ``a`` (one per segment centre) of the ``f``-Hz line of ``r`` under the model
    ``Re(sum_s a_s hat_s(t) exp(2 pi i f t))`` (hats: linear interpolation between the centres), by least
    squares on the demodulated signal (a tridiagonal system)."""
    from scipy.linalg import solve_banded

    n = len(r)
    ph = (-2 * np.pi * f / fs) * np.arange(n)
    z = 2 * np.asarray(r, np.float64) * (np.cos(ph) + 1j * np.sin(ph))
    if k == 1:
        return np.array([z.mean()])
    i, w = _hat_weights(n, seg_n, k)
    rhs = (np.bincount(i, (1 - w) * z.real, k + 1) + np.bincount(i + 1, w * z.real, k + 1)
           + 1j * (np.bincount(i, (1 - w) * z.imag, k + 1) + np.bincount(i + 1, w * z.imag, k + 1)))[:k]
    diag = (np.bincount(i, (1 - w) ** 2, k + 1) + np.bincount(i + 1, w ** 2, k + 1))[:k] + 1e-9
    off = np.bincount(i, (1 - w) * w, k)[: k - 1]
    ab = np.zeros((3, k))
    ab[0, 1:], ab[1], ab[2, :-1] = off, diag, off
    return solve_banded((1, 1), ab, rhs)


def _hat_tone(a: np.ndarray, n: int, fs: float, f: float, seg_n: int) -> np.ndarray:
    """The tone of :func:`_hat_amplitudes`' model (amplitudes interpolated between segment centres)."""
    pos = np.arange(n)
    centres = (np.arange(len(a)) + 0.5) * seg_n
    aj = np.interp(pos, centres, a.real) + 1j * np.interp(pos, centres, a.imag)
    return np.real(aj * np.exp(2j * np.pi * f * pos / fs))


# ---------------------------------------------------------------------- fitting
def detect_lines(residuals: list[np.ndarray], fs: float, min_ratio: float = 2.0, min_hz: float = 20.0,
                 max_lines: int = 8) -> list[float]:
    """Narrow spectral lines of a set of residual signals (Hz, refined to 0.01 Hz), strongest first.

    A line is a peak of the mean (over signals) log Welch spectrum at 0.1 Hz resolution at least
    ``min_ratio`` times the 6-Hz running median around it, above ``min_hz`` (below it the ECG's own
    harmonics are dense).
    """
    from scipy.signal import find_peaks, medfilt, welch

    nper = int(round(10 * fs))
    logs = [np.log(welch(r, fs=fs, nperseg=nper)[1] + 1e-14) for r in residuals if len(r) >= nper]
    if not logs:
        return []
    freqs = np.fft.rfftfreq(nper, 1 / fs)
    mean = np.mean(logs, axis=0)
    excess = mean - medfilt(mean, 61)
    peaks, _ = find_peaks(excess, height=math.log(min_ratio))
    peaks = [int(p) for p in peaks if freqs[p] >= min_hz and freqs[p] < fs / 2 - 0.5]
    peaks = sorted(peaks, key=lambda p: -excess[p])[:max_lines]
    out = []
    for p in peaks:  # refine: the frequency of largest least-squares amplitude within +-0.1 Hz
        grid = freqs[p] + np.arange(-0.1, 0.1001, 0.01)
        power = np.zeros(len(grid))
        for r in residuals:
            seg = np.asarray(r[: int(300 * fs)], np.float64)
            t = np.arange(len(seg)) / fs
            power += [abs(np.mean(seg * np.exp(-2j * np.pi * f * t))) ** 2 for f in grid]
        out.append(round(float(grid[int(np.argmax(power))]), 2))
    return out


def _block_amplitudes(y: np.ndarray, fs: float, f: float) -> tuple[np.ndarray, np.ndarray]:
    """Complex amplitude ``A`` of the ``f``-Hz component of ``y`` per :data:`LINE_BLOCK_S` block (``y`` is
    about ``Re(A exp(2 pi i f t))`` there) and the blocks' centres (samples)."""
    b = int(round(LINE_BLOCK_S * fs))
    k = len(y) // b
    t = np.arange(k * b) / fs
    a = 2 * (np.asarray(y[: k * b], np.float64) * np.exp(-2j * np.pi * f * t)).reshape(k, b).mean(1)
    return a, (np.arange(k) + 0.5) * b


def coherent_line_tones(y: np.ndarray, fs: float, lines: list[float], gains: np.ndarray) -> np.ndarray:
    """The lines ``y`` already carries, each times its complex gain: per line, ``Re(g A(t) exp(2 pi i f t))``
    with ``A`` the component's amplitude per 1-s block of ``y``, linearly interpolated between blocks.

    Tokenizer v3's decode keeps about half of a recording's mains line, in phase; the residual's line is
    then mostly ``g`` times the decoded one (``g`` about 0.78 at 60 Hz on DS1), a property of the recording
    that a random bank tone cannot have.
    """
    n = len(y)
    out = np.zeros(n)
    pos = np.arange(n)
    for f, g in zip(lines, np.asarray(gains)):
        a, c = _block_amplitudes(y, fs, f)
        if len(a) == 0:
            continue
        ai = np.interp(pos, c, a.real) + 1j * np.interp(pos, c, a.imag)
        out += np.real(g * ai * np.exp(2j * np.pi * f * pos / fs))
    return out


def fit_line_gains(pairs: list[tuple[np.ndarray, np.ndarray]], fs: float, lines: list[float]) -> np.ndarray:
    """Least-squares complex gain per line of the residual's block amplitudes on the decode's, over
    ``pairs`` of (band decode, residual)."""
    gains = []
    for f in lines:
        num = den = 0.0
        for y, r in pairs:
            ay, _ = _block_amplitudes(y, fs, f)
            ar, _ = _block_amplitudes(r, fs, f)
            num = num + np.sum(np.conj(ay) * ar)
            den = den + np.sum(np.abs(ay) ** 2)
        gains.append(num / den if den > 0 else 0.0)
    return np.asarray(gains, np.complex128)


def _line_amplitudes(r: np.ndarray, fs: float, lines: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per 10-s segment least-squares amplitude of each line: ``(segments, L)`` mV, and the fitted tones."""
    n = len(r)
    seg = int(round(SEGMENT_S * fs))
    k = max(1, math.ceil(n / seg))
    amp = np.zeros((k, len(lines)))
    tone = np.zeros(n)
    t = np.arange(n) / fs
    for s in range(k):
        sl = slice(s * seg, min(n, (s + 1) * seg))
        for j, f in enumerate(lines):
            e = np.exp(-2j * np.pi * f * t[sl])
            a = 2 * np.mean(r[sl] * e)
            amp[s, j] = abs(a)
            tone[sl] += np.real(a * np.conj(e))
    return amp, tone


def fit_texture_bank(tok, signals: list[np.ndarray], ridge: float = 1.0, calib_signals: int = 18,
                     line_min_ratio: float = 2.0, progress: bool = True,
                     coherent_lines: bool = False) -> tuple[TextureBank, dict]:
    """Fit a :class:`TextureBank` for ``tok`` (``fsq2`` or ``beat``) on training signals (mV at ``tok.fs``).

    Returns the bank and fit statistics (lines found, segments, frames, R^2 of the log-power regression).
    Signals shorter than 10 s are skipped. ``coherent_lines``: first fit each line's complex gain on the
    line the band decode carries (:func:`coherent_line_tones`; tokenizer v3) and model the rest as before.
    """
    from tqdm.auto import tqdm

    fs, hop, n_fft = float(tok.fs), int(tok.config.texture_hop), int(tok.config.texture_n_fft)
    nb = n_fft // 2 + 1
    seg = max(1, int(round(SEGMENT_S * fs / hop)))
    signals = [np.asarray(x, np.float32) for x in signals if len(x) >= SEGMENT_S * fs]
    if not signals:
        raise TokenizerError("texture fit needs at least one training signal of 10 s or more")
    decoded = []
    for x in tqdm(signals, desc="texture: decode training signals", disable=not progress):
        ids, state = tok.encode(x, tok.fs)
        full = tok.decode(ids, state)
        band = tok.decode(ids)[: len(x)]
        decoded.append((band, (x - full).astype(np.float64), (x - (full - band)).astype(np.float32)))
    lines = detect_lines([r for _, r, _ in decoded], fs, min_ratio=line_min_ratio)
    gains = None
    if coherent_lines and lines:
        gains = fit_line_gains([(b, r) for b, r, _ in decoded], fs, lines)
        decoded = [(b, r - coherent_line_tones(b, fs, lines, gains), t) for b, r, t in decoded]
    feats, targets, seg_ids, amps, recs = [], [], [], [], []
    first = 0
    for band, r, _ in decoded:
        amp, tone = _line_amplitudes(r, fs, lines)
        fy = log_power(torch.from_numpy(band), n_fft, hop)
        fr = log_power(torch.from_numpy((r - tone).astype(np.float32)), n_fft, hop)
        s = torch.arange(len(fy)) // seg
        n_here = int(s.max()) + 1
        feats.append(fy)
        targets.append(fr)
        seg_ids.append(first + s)
        amps.append(amp[:n_here] if len(amp) >= n_here else np.pad(amp, ((0, n_here - len(amp)), (0, 0)), "edge"))
        recs.append((first, n_here))
        first += n_here
    X = torch.cat(feats).double()
    X = torch.cat([X, torch.ones_like(X[:, :1])], dim=1)  # (N, nb + 1)
    Y = torch.cat(targets).double()  # (N, nb)
    S = torch.cat(seg_ids)
    reg = ridge * torch.eye(X.shape[1], dtype=torch.float64)
    reg[-1, -1] = 0
    W = torch.linalg.solve(X.T @ X + reg, X.T @ Y)
    res = Y - X @ W
    counts = torch.bincount(S, minlength=first).double()[:, None]
    levels = torch.zeros(first, nb, dtype=torch.float64).index_add_(0, S, res) / counts
    within = res - levels[S]
    cov_f = within.T @ within / len(within) - (math.pi ** 2 / 6) * torch.eye(nb, dtype=torch.float64)
    bank = TextureBank(
        W=W.float(), calib=torch.full((nb,), EULER_GAMMA, dtype=torch.float32),
        chol_frame=_psd_sqrt(cov_f).float(), levels=levels.half(),
        recordings=torch.tensor(recs, dtype=torch.int64).reshape(-1, 2),
        line_hz=torch.tensor(lines, dtype=torch.float64),
        line_amp=torch.from_numpy(np.concatenate(amps).astype(np.float32)).reshape(first, len(lines)),
        n_fft=n_fft, hop=hop, fs=fs,
        line_gain=None if gains is None else torch.tensor(np.stack([gains.real, gains.imag], 1), dtype=torch.float32))
    steps = _calibrate(bank, [(b, t) for b, _, t in decoded[:calib_signals]],
                       float(getattr(tok.config, "texture_adc_step_mv", 0.0)), seg)
    line_gains = None if gains is None else [[float(g.real), float(g.imag)] for g in gains]
    stats = {"lines_hz": lines, "line_gains": line_gains, "segments": int(first), "recordings": len(recs),
             "frames": int(len(X)),
             "r2_log_power": float(1 - res.var() / Y.var()), "calibration_mean_abs_step": steps}
    return bank, stats


def _calibrate(bank: TextureBank, pairs: list[tuple[np.ndarray, np.ndarray]], q: float, seg: int,
               iterations: int = 3) -> list[float]:
    """Move ``bank.calib`` so that decode + sample (on the ADC grid) has the real band's mean 10-s log power.

    ``pairs``: (band decode, real signal minus its baseline). ``P_out = P_other + P_tex`` per bin, so moving
    ``log P_out`` by ``d`` needs ``P_tex`` times ``1 + (e^d - 1) / share`` (share = texture's part of P_out).
    """
    def digitize(v: np.ndarray) -> np.ndarray:
        return (np.round(v / q) * q).astype(np.float32) if q > 0 else v.astype(np.float32)

    nb, n_fft, hop = bank.calib.shape[0], bank.n_fft, bank.hop
    mean_steps = []
    for _ in range(iterations):
        d_log = torch.zeros(nb, dtype=torch.float64)
        share = torch.zeros(nb, dtype=torch.float64)
        for i, (band, target) in enumerate(pairs):
            s = bank.sample(band, seed=20_000 + i)
            out = digitize(band + s)
            d_log += (_segment_log_power(target, n_fft, hop, seg) - _segment_log_power(out, n_fft, hop, seg)).mean(0)
            ps = log_power(torch.from_numpy(s), n_fft, hop).exp().double().mean(0)
            po = log_power(torch.from_numpy(out), n_fft, hop).exp().double().mean(0)
            share += ps / po
        d_log, share = d_log / len(pairs), share / len(pairs)
        step = torch.log((1 + (torch.exp(d_log) - 1) / share.clamp(min=1e-3)).clamp(min=0.05)).clamp(-2, 2)
        bank.calib = bank.calib + step.float()
        mean_steps.append(float(d_log.abs().mean()))
    return mean_steps
