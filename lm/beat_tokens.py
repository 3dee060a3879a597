"""Generated beats -> the tokenizer v3's ``BeatTokens`` -> millivolts (the one place LM v3 builds them).

A generated sample has no R positions of its own: beat ``i``'s R peak is the sum of the RR intervals of
beats ``0..i`` (``rr[i]`` is the interval *ending* at beat ``i``, the tokenizer's convention), so the first
R peak lies ``rr[0]`` seconds into the signal.
"""
from __future__ import annotations

import sys

import numpy as np


def beat_positions(tok, rr: np.ndarray) -> np.ndarray:
    """R positions (samples at ``tok.fs``) of beats with RR tokens ``rr``, as the tokenizer decodes them."""
    rr = np.asarray(rr, np.int64)
    if hasattr(tok, "timeline"):
        return np.asarray(tok.timeline(np.zeros(len(rr), np.int8), rr)[1], np.int64)
    sec = np.asarray(tok.rr_seconds(rr), np.float64)
    return np.round(np.cumsum(sec) * tok.fs).astype(np.int64)


def last_visible(tok, rr, n_samples: int) -> int | None:
    """Index of the first beat whose cycle starts at or after sample ``n_samples`` (``R - pre_s >= n_samples``),
    or None when no beat does or the tokenizer has no ``config.pre_s``. Decoding the beats up to and including it
    gives every sample before ``n_samples`` (the beat before it needs it to know where its cycle ends) and nothing
    after it can reach them."""
    pre = getattr(getattr(tok, "config", None), "pre_s", None)
    if pre is None or not len(rr):
        return None
    r = beat_positions(tok, rr)
    i = int(np.searchsorted(r - float(pre) * float(tok.fs), int(n_samples), side="left"))
    return i if i < len(r) else None


def visible_beats(tok, rr, coarse, detail, n_samples: int):
    """``rr``, ``coarse``, ``detail`` of the beats that make the first ``n_samples`` samples: up to and including
    :func:`last_visible` (every beat when it is None)."""
    i = last_visible(tok, rr, n_samples)
    return (rr, coarse, detail) if i is None else (rr[:i + 1], coarse[:i + 1], detail[:i + 1])


def make_beat_tokens(tok, rr, coarse, detail, n_samples: int):
    """A ``BeatTokens`` of the tokenizer's own module for generated beats (every unit a beat), and R positions."""
    cls = sys.modules[type(tok).__module__].BeatTokens
    rr = np.asarray(rr, np.int64)
    n = len(rr)
    kind = np.zeros(n, np.int8)
    r = beat_positions(tok, rr)
    n_fb = int(getattr(tok.layout, "n_fallback", 0))
    bt = cls(**_fields(cls, r=r, rr=rr, coarse=np.asarray(coarse, np.int64), detail=np.asarray(detail, np.int64),
                       fallback=np.full((n, n_fb), -1, np.int64), kind=kind, state={"n_samples": int(n_samples)}))
    return bt, np.asarray(r, np.int64)


def _fields(cls, **kw):
    import dataclasses

    if dataclasses.is_dataclass(cls):
        names = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in kw.items() if k in names}
    return kw


def decode_beats(tok, rr, coarse, detail, n_samples: int, *, texture: bool = False, seed=None, state=None):
    """``(signal (n_samples,) mV, R positions)`` of one generated sample (``state``: e.g. a sampled baseline).

    Only the beats up to the first one whose cycle starts at the end are decoded (:func:`visible_beats`): the
    texture is rendered over the decoded length, so beats past it would change it (and the sampler need not draw
    them, :meth:`ecg2llm.lm.beat_generate.BeatLM.draw_beats`)."""
    rr, coarse, detail = visible_beats(tok, rr, coarse, detail, n_samples)
    bt, r = make_beat_tokens(tok, rr, coarse, detail, n_samples)
    x = np.asarray(tok.decode_beats(bt, state, texture=texture, seed=seed), np.float32)
    if len(x) < n_samples:
        x = np.pad(x, (0, n_samples - len(x)), mode="edge" if len(x) else "constant")
    return x[:n_samples], r
