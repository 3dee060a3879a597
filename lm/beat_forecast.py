"""LM v3 continuations of a real ECG (probabilistic forecasting over heartbeats).

The prefix is encoded by the LM's tokenizer v3 into beats (:meth:`BeatTokenizer.encode_beats`); its last run
of beats (those after the last fallback unit before its last beat: the tokenizer codes the stretches before
the first and after the last beat, and any > 2 s without a beat, as fallback units) becomes the prompt -- each as the
LM reads a beat: a null class label (``beat:?``: a real prefix carries no annotation, as CinC 2017 beats in
training), its RR token and its coarse tokens -- under a null control prefix (``rhythm:?``, ``beat:?``). The
LM draws the next beats; the detail head gives their detail tokens (the prefix keeps its real ones); the
whole run of beats is decoded at once, so the first drawn beat joins the real last beat without a seam, and
the samples after the prefix's last sample are returned (the clean band, no texture, as LM v2's forecast).
Nothing writes an RR interval or a label: the continuation is the model's.
"""
from __future__ import annotations

import numpy as np
import torch

from ecg2llm.core.errors import ConfigError

from .beat_layout import N_PREFIX
from .beat_tokens import beat_positions, decode_beats

__all__ = ["forecast_beats", "prompt_beats"]


def prompt_beats(blm, x: np.ndarray, max_beats: int):
    """The beats of ``x`` (mV at ``blm.tok.fs``) an LM v3 is prompted with, and their true R positions.

    Returns
    -------
    (rr, coarse, detail, r) : (n,), (n, Kc), (n, Kd), (n,) int64
        The last ``<= max_beats`` beats of the prefix's last run of beats.
    """
    bt = blm.tok.encode_beats(np.asarray(x, np.float32), blm.tok.fs)
    kind = np.asarray(bt.kind)
    beats = np.flatnonzero(kind == 0)
    if beats.size == 0:
        raise ConfigError(
            f"no heartbeat found in the prefix ({len(x) / blm.tok.fs:.1f} s given): LM v3 continues beats; give "
            "a few seconds of ECG with visible QRS complexes")
    last = int(beats[-1])  # the stretch after the last beat (a fallback unit) is what the LM continues over
    fb = np.flatnonzero(kind[:last] != 0)
    first = int(fb[-1]) + 1 if fb.size else 0
    idx = np.arange(first, last + 1)[-int(max_beats):]
    return (np.asarray(bt.rr)[idx].astype(np.int64), np.asarray(bt.coarse)[idx].astype(np.int64),
            np.asarray(bt.detail)[idx].astype(np.int64), np.asarray(bt.r)[idx].astype(np.int64))


@torch.inference_mode()
def forecast_beats(blm, x: np.ndarray, req, *, progress: bool = False) -> np.ndarray:
    """``req.num_samples`` continuations of ``x`` (mV at ``blm.tok.fs``), ``(K, round(req.seconds fs))`` mV.

    ``req`` is a :class:`ecg2llm.lm.synthesize.GenerateConfig` (``num_samples``, ``seconds``, ``seed``,
    ``temperature``/``top_k``/``top_p``, ``batch_size``, ``source``, ``lead``, ``detail``); conditions and
    guidance do not apply (the prefix is the condition). Batch ``b`` is seeded ``req.seed + b``.
    """
    from tqdm.auto import tqdm

    if req.condition or req.guidance is not None:
        raise ConfigError("a forecast continues its prefix: leave condition and guidance unset")
    blm.check(req)
    fs, tpb = float(blm.tok.fs), blm.layout.tokens_per_beat
    horizon = int(round(req.seconds * fs))
    n_ctx_beats = max(1, (blm.context - 1 - N_PREFIX) // tpb)
    rr_p, co_p, de_p, r_p = prompt_beats(blm, x, max_beats=n_ctx_beats)
    tail_s = (len(x) - int(r_p[-1])) / fs  # from the last real R to the end of the prefix
    need_s = tail_s + req.seconds  # RR sum the drawn beats must cover
    null_label = blm.spec.null_beat_id
    rhythms = np.full(len(rr_p), blm.spec.null_rhythm_id) if blm.layout.rhythm_slot else None  # unknown rhythm
    units = blm.layout.units(np.full(len(rr_p), null_label), rr_p, co_p, rhythms=rhythms)  # (n, tpb)
    out = []
    starts = list(range(0, req.num_samples, req.batch_size))
    for b, a in enumerate(tqdm(starts, desc="forecasting beats", unit="batch", disable=not progress)):
        n = min(req.batch_size, req.num_samples - a)
        gen = torch.Generator(device=blm.model.device).manual_seed(int(req.seed) + b)
        head = blm.prefix(n, req.source or "mitdb", req.lead or "MLII", None, None)
        body = torch.as_tensor(units.reshape(1, -1), device=head.device).expand(n, -1)
        ids = torch.cat([head, body], 1)
        procs = blm.processors(req, n, None, None)  # the type mask and the request's warpers (no guidance)
        ids, _ = blm.draw_beats(ids, need_s, procs, gen, blm.context, {})
        rows = ids[:, 1 + N_PREFIX:].reshape(n, -1, tpb).cpu().numpy()
        _, rr, coarse = blm.layout.split_units(rows)
        if blm.detail is not None:
            det = blm.detail.predict(rr, coarse, mode=req.detail, seed=int(req.seed) + b)
        else:
            det = np.zeros((*rr.shape, blm.layout.n_detail), np.int64)
        det[:, : len(rr_p)] = de_p  # the prefix keeps its real detail
        for i in range(n):
            # decoded R positions start at 0; shift them onto the prefix's clock at its last real beat
            r_dec = beat_positions(blm.tok, rr[i])
            end = len(x) - (int(r_p[-1]) - int(r_dec[len(rr_p) - 1]))  # the prefix's end on the decoded clock
            y, _ = decode_beats(blm.tok, rr[i], coarse[i], det[i], max(end, 0) + horizon)
            out.append(y[max(end, 0): max(end, 0) + horizon])
    return np.stack(out).astype(np.float32)
