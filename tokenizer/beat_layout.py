"""The flat token stream of tokenizer v3 (``beat``) and its per-beat view.

The stream is a sequence of *units* in time order. A unit is a cardiac cycle (a beat) or a fallback
segment (a fixed stretch where no beat was found)::

    beat unit:      RR  C1 .. C{Kc}  D1 .. D{Kd}      (1 + Kc + Kd tokens)
    fallback unit:  FB  F1 .. F{Kf}                   (1 + Kf tokens)

Every token type and position has its own id range, so the type of any id is known from its value:

=============  =====================================  ===========================================
token          ids                                    meaning
=============  =====================================  ===========================================
RR             ``[0, rr_size)``                       interval ending at this beat (RRScale)
C_j            ``coarse_offset + j * coarse_size + v`` coarse code ``v`` of position ``j``
D_j            ``detail_offset + j * detail_size + v`` detail code ``v`` of position ``j``
FB             ``fallback_marker``                    a fallback segment starts
F_j            ``fallback_offset + j * fallback_size + v`` fallback code ``v`` of position ``j``
=============  =====================================  ===========================================
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ecg2llm.core.errors import TokenizerError

BEAT, FALLBACK = 0, 1
KIND_NAMES = ("beat", "fallback")


@dataclass(frozen=True)
class BeatLayout:
    """Id ranges of the flat stream (module docstring)."""

    rr_size: int
    n_coarse: int
    coarse_size: int
    n_detail: int
    detail_size: int
    n_fallback: int
    fallback_size: int
    beat_unit: list = field(default_factory=list)
    fallback_unit: list = field(default_factory=list)

    def __post_init__(self):
        object.__setattr__(self, "beat_unit", ["rr"] + [f"c{j + 1}" for j in range(self.n_coarse)]
                           + [f"d{j + 1}" for j in range(self.n_detail)])
        object.__setattr__(self, "fallback_unit", ["fb"] + [f"f{j + 1}" for j in range(self.n_fallback)])

    @property
    def rr_offset(self) -> int:
        return 0

    @property
    def coarse_offset(self) -> int:
        return self.rr_size

    @property
    def detail_offset(self) -> int:
        return self.coarse_offset + self.n_coarse * self.coarse_size

    @property
    def fallback_marker(self) -> int:
        return self.detail_offset + self.n_detail * self.detail_size

    @property
    def fallback_offset(self) -> int:
        return self.fallback_marker + 1

    @property
    def vocab_size(self) -> int:
        return self.fallback_offset + self.n_fallback * self.fallback_size

    @property
    def tokens_per_beat(self) -> int:
        return 1 + self.n_coarse + self.n_detail

    @property
    def tokens_per_fallback(self) -> int:
        return 1 + self.n_fallback

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(rr_offset=self.rr_offset, coarse_offset=self.coarse_offset, detail_offset=self.detail_offset,
                 fallback_marker=self.fallback_marker, fallback_offset=self.fallback_offset,
                 vocab_size=self.vocab_size, tokens_per_beat=self.tokens_per_beat,
                 tokens_per_fallback=self.tokens_per_fallback)
        return d

    # ------------------------------------------------------------------ ids of one kind
    def coarse_ids(self, codes: np.ndarray) -> np.ndarray:
        return self.coarse_offset + np.arange(self.n_coarse) * self.coarse_size + np.asarray(codes, np.int64)

    def detail_ids(self, codes: np.ndarray) -> np.ndarray:
        return self.detail_offset + np.arange(self.n_detail) * self.detail_size + np.asarray(codes, np.int64)

    def fallback_ids(self, codes: np.ndarray) -> np.ndarray:
        return self.fallback_offset + np.arange(self.n_fallback) * self.fallback_size + np.asarray(codes, np.int64)

    def token_type(self, ids: np.ndarray) -> np.ndarray:
        """Per id: 0 RR, 1 coarse, 2 detail, 3 fallback marker, 4 fallback code."""
        ids = np.asarray(ids, np.int64)
        edges = np.array([self.coarse_offset, self.detail_offset, self.fallback_marker, self.fallback_offset])
        return np.searchsorted(edges, ids, side="right")

    def position(self, ids: np.ndarray) -> np.ndarray:
        """Per id: its position within its unit (0 for RR and FB, j + 1 for C_j/D_j/F_j... see unit lists)."""
        ids = np.asarray(ids, np.int64)
        t = self.token_type(ids)
        pos = np.zeros(len(ids), np.int64)
        c, d, f = t == 1, t == 2, t == 4
        pos[c] = 1 + (ids[c] - self.coarse_offset) // self.coarse_size
        pos[d] = 1 + self.n_coarse + (ids[d] - self.detail_offset) // self.detail_size
        pos[f] = 1 + (ids[f] - self.fallback_offset) // self.fallback_size
        return pos


@dataclass
class BeatTokens:
    """Per-unit view of a v3 token stream (``encode_beats``); rows of fallback units hold -1 in the beat
    fields (``rr``, ``coarse``, ``detail``) and beat units -1 in ``fallback``.

    Attributes
    ----------
    r : (units,) int64
        Decoded R position of each beat (samples at ``tok.fs``); a fallback unit's start.
    rr : (units,) int64
        RR token of each beat: the interval ending at beat ``i`` (from the previous R, or from the segment
        start / the end of a fallback stretch).
    coarse : (units, Kc) int64
    detail : (units, Kd) int64
    fallback : (units, Kf) int64
    kind : (units,) int8
        0 beat, 1 fallback segment.
    start, end : (units,) int64
        The stretch ``[start, end)`` each unit codes (samples at ``tok.fs``).
    state : dict or None
        ``{"n_samples", "baseline"}`` as tokenizer v2, plus ``"texture"`` (the recording's noise levels and
        spectral lines, :meth:`ecg2llm.tokenizer.texture_bank.TextureBank.analyse`) when the tokenizer has a
        texture bank; only ``decode(..., texture=True)`` reads it; and ``"gain"`` (int8 level ``k`` per
        segment of ``gain_segment_s``: the units of that segment were coded at ``2^(-k/2)`` times the band)
        where the encoder's gain search chose one (:meth:`ecg2llm.tokenizer.beat_tokenizer.BeatTokenizer.choose_gains`).
    ids : (tokens,) int64
        The flat stream.
    """

    r: np.ndarray
    rr: np.ndarray
    coarse: np.ndarray
    detail: np.ndarray
    fallback: np.ndarray
    kind: np.ndarray
    start: np.ndarray | None = None
    end: np.ndarray | None = None
    state: dict | None = None
    ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def n_beats(self) -> int:
        return int(np.sum(self.kind == BEAT))


def assemble_ids(layout: BeatLayout, kind, rr, coarse, detail, fallback) -> np.ndarray:
    """Flat stream of units (the inverse of :func:`parse_ids`); vectorized over units."""
    kind = np.asarray(kind)
    bad = np.flatnonzero((kind != BEAT) & (kind != FALLBACK))
    if len(bad):
        raise TokenizerError(f"unit {int(bad[0])} has kind {kind[bad[0]]}; 0 (beat) and 1 (fallback) exist")
    b = kind == BEAT
    lens = np.where(b, layout.tokens_per_beat, layout.tokens_per_fallback)
    offs = np.cumsum(lens) - lens
    out = np.empty(int(lens.sum()), np.int64)
    if b.any():
        rows = np.concatenate([np.asarray(rr, np.int64)[b, None], layout.coarse_ids(np.asarray(coarse)[b]),
                               layout.detail_ids(np.asarray(detail)[b])], axis=1)  # (nb, tokens_per_beat)
        out[offs[b, None] + np.arange(layout.tokens_per_beat)] = rows
    if (~b).any():
        nf = int((~b).sum())
        rows = np.concatenate([np.full((nf, 1), layout.fallback_marker, np.int64),
                               layout.fallback_ids(np.asarray(fallback)[~b])], axis=1)
        out[offs[~b, None] + np.arange(layout.tokens_per_fallback)] = rows
    return out


def parse_ids(layout: BeatLayout, ids: np.ndarray, partial: str = "drop") -> BeatTokens:
    """Split a flat stream into units; ``partial``: what to do with an incomplete last unit
    (``"drop"`` it, or ``"error"``). A token of the wrong type inside a unit always raises.

    RR tokens and the fallback marker never occur inside a unit, so every one of them starts a unit: the
    units are found at once and then checked against the layout.
    """
    ids = np.asarray(ids, np.int64)
    types = layout.token_type(ids)
    n_tb, n_tf = layout.tokens_per_beat, layout.tokens_per_fallback
    starts = np.flatnonzero((types == 0) | (types == 3))
    if len(ids) and (len(starts) == 0 or starts[0] != 0):
        raise TokenizerError(f"token {int(ids[0])} at position 0 starts a unit but is not an RR token or the "
                             f"fallback marker ({layout.fallback_marker}); is the stream cut mid-unit?")
    lens = np.where(types[starts] == 0, n_tb, n_tf)
    gap = np.flatnonzero(starts[1:] != starts[:-1] + lens[:-1])
    if len(gap):
        i = int(starts[gap[0]])
        j = int(starts[gap[0] + 1])
        unit = layout.beat_unit if lens[gap[0]] == n_tb else layout.fallback_unit
        raise TokenizerError(f"token {int(ids[j])} at position {j} is not a valid {unit[j - i]} token (the unit "
                             f"starting at {i} has {lens[gap[0]]} tokens)")
    if len(starts) and starts[-1] + lens[-1] < len(ids):
        j = int(starts[-1] + lens[-1])
        raise TokenizerError(f"token {int(ids[j])} at position {j} starts a unit but is not an RR token or the "
                             f"fallback marker ({layout.fallback_marker})")
    if len(starts) and starts[-1] + lens[-1] > len(ids):
        if partial != "drop":
            raise TokenizerError(f"the stream ends inside a unit: {len(ids) - int(starts[-1])} of its "
                                 f"{int(lens[-1])} tokens at position {int(starts[-1])}")
        starts, lens = starts[:-1], lens[:-1]
    b = lens == n_tb
    m = len(starts)
    kind = np.where(b, BEAT, FALLBACK).astype(np.int8)
    rr = np.full(m, -1, np.int64)
    coarse = np.full((m, layout.n_coarse), -1, np.int64)
    detail = np.full((m, layout.n_detail), -1, np.int64)
    fallback = np.full((m, layout.n_fallback), -1, np.int64)
    pos = layout.position(ids)
    for sel, n, want_t in ((b, n_tb, [0] + [1] * layout.n_coarse + [2] * layout.n_detail),
                           (~b, n_tf, [3] + [4] * layout.n_fallback)):
        if not sel.any():
            continue
        idx = starts[sel, None] + np.arange(n)  # (units, n)
        bad = (types[idx] != np.asarray(want_t)) | (pos[idx] != np.arange(n))
        if bad.any():
            u, j = np.argwhere(bad)[0]
            unit = layout.beat_unit if n == n_tb else layout.fallback_unit
            raise TokenizerError(f"token {int(ids[idx[u, j]])} at position {int(idx[u, j])} is not a valid "
                                 f"{unit[j]} token")
        v = ids[idx]
        if n == n_tb:
            rr[sel] = v[:, 0]
            coarse[sel] = (v[:, 1 : 1 + layout.n_coarse] - layout.coarse_offset) % layout.coarse_size
            detail[sel] = (v[:, 1 + layout.n_coarse :] - layout.detail_offset) % layout.detail_size
        else:
            fallback[sel] = (v[:, 1:] - layout.fallback_offset) % layout.fallback_size
    return BeatTokens(r=np.zeros(m, np.int64), rr=rr, coarse=coarse, detail=detail, fallback=fallback, kind=kind,
                      ids=ids[: int(starts[-1] + lens[-1])] if m else ids[:0])
