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

from .errors import TokenizerError

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
        ``{"n_samples", "baseline"}`` as tokenizer v2.
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
    """Flat stream of units (the inverse of :func:`parse_ids`)."""
    kind = np.asarray(kind)
    parts = []
    for i, k in enumerate(kind):
        if k == BEAT:
            parts.append(np.concatenate([[int(rr[i])], layout.coarse_ids(coarse[i]), layout.detail_ids(detail[i])]))
        elif k == FALLBACK:
            parts.append(np.concatenate([[layout.fallback_marker], layout.fallback_ids(fallback[i])]))
        else:
            raise TokenizerError(f"unit {i} has kind {k}; 0 (beat) and 1 (fallback) exist")
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def parse_ids(layout: BeatLayout, ids: np.ndarray, partial: str = "drop") -> BeatTokens:
    """Split a flat stream into units; ``partial``: what to do with an incomplete last unit
    (``"drop"`` it, or ``"error"``). A token of the wrong type inside a unit always raises."""
    ids = np.asarray(ids, np.int64)
    types, pos = layout.token_type(ids), layout.position(ids)
    n_tb, n_tf = layout.tokens_per_beat, layout.tokens_per_fallback
    want_b = np.concatenate([[0], np.ones(layout.n_coarse, int), 2 * np.ones(layout.n_detail, int)])
    want_f = np.concatenate([[3], 4 * np.ones(layout.n_fallback, int)])
    kinds, rr, co, de, fb = [], [], [], [], []
    i = 0
    while i < len(ids):
        if types[i] == 0:
            n, want = n_tb, want_b
        elif types[i] == 3:
            n, want = n_tf, want_f
        else:
            raise TokenizerError(f"token {int(ids[i])} at position {i} starts a unit but is not an RR token or "
                                 f"the fallback marker ({layout.fallback_marker}); is the stream cut mid-unit?")
        seg_t, seg_p = types[i : i + n], pos[i : i + n]
        if len(seg_t) < n:
            if partial == "drop":
                break
            raise TokenizerError(f"the stream ends inside a unit: {len(seg_t)} of its {n} tokens at position {i}")
        bad = np.flatnonzero((seg_t != want) | (seg_p != np.arange(n)))
        if len(bad):
            j = int(bad[0])
            raise TokenizerError(f"token {int(ids[i + j])} at position {i + j} is not a valid "
                                 f"{(layout.beat_unit if n == n_tb else layout.fallback_unit)[j]} token")
        seg = ids[i : i + n]
        if n == n_tb:
            kinds.append(BEAT)
            rr.append(int(seg[0]))
            co.append((seg[1 : 1 + layout.n_coarse] - layout.coarse_offset) % layout.coarse_size)
            de.append((seg[1 + layout.n_coarse :] - layout.detail_offset) % layout.detail_size)
            fb.append(np.full(layout.n_fallback, -1))
        else:
            kinds.append(FALLBACK)
            rr.append(-1)
            co.append(np.full(layout.n_coarse, -1))
            de.append(np.full(layout.n_detail, -1))
            fb.append((seg[1:] - layout.fallback_offset) % layout.fallback_size)
        i += n

    def stack(rows, k):
        return np.asarray(rows, np.int64).reshape(len(rows), k)

    return BeatTokens(r=np.zeros(len(kinds), np.int64), rr=np.asarray(rr, np.int64),
                      coarse=stack(co, layout.n_coarse), detail=stack(de, layout.n_detail),
                      fallback=stack(fb, layout.n_fallback), kind=np.asarray(kinds, np.int8), ids=ids)
