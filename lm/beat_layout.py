"""The LM v3 vocabulary and stream layout: one heartbeat = one fixed-length unit of tokens.

An LM v3 reads the beat tokens of :class:`ecg2llm.tokenizer.beat_tokenizer.BeatTokenizer` (tokenizer v3), not its
flat stream: per beat its class label, its RR interval and its ``Kc`` coarse morphology tokens. The detail
tokens are not in the stream; :mod:`ecg2llm.lm.beat_detail` produces them from coarse tokens and neighbours (the
semantic -> acoustic split of AudioLM, for beats). A training or generated sequence is::

    BOS source:<db> lead:<lead> rhythm:<r> beat:<c> | [rhythm] label rr c_0 ... c_{Kc-1} | [rhythm] label rr ... | ...
    \\_____________ control prefix (5) _____________/ \\_______ one beat (2 + Kc [+ 1]) _______/

With :attr:`BeatLayout.rhythm_slot` every beat opens with a **rhythm slot**: the rhythm in force at that beat
(``rhythm:<r>``, the MIT-BIH rhythm annotation; CinC 2017: the recording's label; ``rhythm:?`` when unknown),
so a short episode (a VT run, bigeminy) is marked where it happens, not only at a crop's first beat. At
generation under ``rhythm:X`` the slot is a control token written from the request, like the prefix.

LM ids (``V`` = :attr:`BeatLayout.codebook_size`)::

    0 .. n_rr - 1                      RR tokens (the tokenizer's RR bins, in order)
    n_rr + j * n_coarse_levels + k     coarse slot j, level k (each slot its own range)
    V, V + 1, V + 2                    PAD, BOS, EOS (:func:`ecg2llm.lm.model.special_ids`)
    V + 3 ..                           control tokens (:class:`ecg2llm.lm.control.ControlSpec` names: beat:N ... beat:Q,
                                       rhythm:*, beat:?, rhythm:?, source:*, lead:*)

The per-beat label reuses the ``beat:<class>`` control ids (``beat:?`` for CinC 2017 beats, which have no
annotation, and for the tokenizer's fallback units); the prefix ``beat:<c>`` token is the crop's
*ectopy condition* (:func:`beat_condition`). Because every unit has the same length and every crop starts
at a unit boundary, the type of the next token is a pure function of its position: :meth:`BeatLayout.allowed`
gives the ids allowed at each position, which training never needs and the sampler applies as a mask
(:class:`ecg2llm.lm.sampler.TypeMask`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from ecg2llm.core.errors import ConfigError

from .control import NULL_BEAT, NULL_RHYTHM, ControlSpec

#: Control tokens of the prefix after BOS, in order.
PREFIX = ("source", "lead", "rhythm", "beat")
N_PREFIX = len(PREFIX)  # tokens between BOS and the first beat
STREAM_KIND = "beats"  # config.ecg_stream["kind"] of an LM v3


@dataclass(frozen=True)
class BeatLayout:
    """Sizes of an LM v3's beat unit and its id ranges (saved as ``config.ecg_stream``).

    Attributes
    ----------
    n_rr : int
        RR tokens of the tokenizer.
    n_coarse : int
        Coarse tokens per beat (``Kc``).
    n_coarse_levels : int
        Values of one coarse token.
    n_detail, n_detail_levels : int
        Detail tokens per beat (``Kd``) and values of one (for :mod:`ecg2llm.lm.beat_detail`; not in the LM stream).
    rhythm_slot : bool
        Whether each beat opens with its rhythm token (LM v3 trained on the refit tokenizer v3 onwards).
    """

    n_rr: int
    n_coarse: int
    n_coarse_levels: int
    n_detail: int = 0
    n_detail_levels: int = 0
    kind: str = STREAM_KIND
    rhythm_slot: bool = False

    def __post_init__(self):
        for name in ("n_rr", "n_coarse", "n_coarse_levels"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"BeatLayout.{name} must be >= 1, got {getattr(self, name)}")

    # ------------------------------------------------------------------ sizes and ranges
    @property
    def codebook_size(self) -> int:
        """ECG ids of the LM (RR + coarse); PAD/BOS/EOS and control tokens follow."""
        return self.n_rr + self.n_coarse * self.n_coarse_levels

    @property
    def tokens_per_beat(self) -> int:
        return 2 + self.n_coarse + int(self.rhythm_slot)

    @property
    def label_col(self) -> int:
        """Column of the beat label in a unit (after the rhythm slot, if any); RR and coarse follow it."""
        return int(self.rhythm_slot)

    def without_rhythm(self) -> "BeatLayout":
        """The same sizes with no rhythm slot: the layout of a beat store's ``units`` (label, RR, coarse)."""
        return replace(self, rhythm_slot=False)

    def tokenizer_sizes(self) -> dict:
        """The sizes that come from the tokenizer (what a beat store must match)."""
        return {k: getattr(self, k) for k in ("n_rr", "n_coarse", "n_coarse_levels", "n_detail", "n_detail_levels")}

    def coarse_offset(self, j: int) -> int:
        return self.n_rr + int(j) * self.n_coarse_levels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BeatLayout":
        return cls(**{k: d[k] for k in ("n_rr", "n_coarse", "n_coarse_levels", "n_detail", "n_detail_levels",
                                        "kind", "rhythm_slot") if k in d})

    @classmethod
    def from_tokenizer(cls, tok, rhythm_slot: bool = False) -> "BeatLayout":
        """Sizes from a tokenizer v3's ``layout`` (:class:`ecg2llm.tokenizer.beat_layout.BeatLayout`: ``rr_size``,
        ``n_coarse``, ``coarse_size``, ``n_detail``, ``detail_size``), never hard-coded."""
        lay = getattr(tok, "layout", None)
        if lay is None:
            raise ConfigError(f"{type(tok).__name__} has no `layout`: an LM v3 needs a beat tokenizer "
                              "(tokenizer v3, ecg2llm.tokenizer.beat_tokenizer.BeatTokenizer)")
        try:
            return cls(n_rr=int(lay.rr_size), n_coarse=int(lay.n_coarse), n_coarse_levels=int(lay.coarse_size),
                       n_detail=int(lay.n_detail), n_detail_levels=int(lay.detail_size), rhythm_slot=bool(rhythm_slot))
        except AttributeError as e:
            raise ConfigError(f"tokenizer layout {lay!r} is not a tokenizer v3 layout ({e})") from None

    # ------------------------------------------------------------------ units <-> tokenizer arrays
    def units(self, labels: np.ndarray, rr: np.ndarray, coarse: np.ndarray, rhythms=None) -> np.ndarray:
        """``(n,)`` label ids, ``(n,)`` RR indices and ``(n, Kc)`` coarse indices -> ``(n, tokens_per_beat)`` LM ids
        (with :attr:`rhythm_slot`, ``rhythms``: ``(n,)`` rhythm ids, required)."""
        rr = np.asarray(rr, np.int64)
        coarse = np.asarray(coarse, np.int64).reshape(len(rr), self.n_coarse)
        if rr.size and (rr.min() < 0 or rr.max() >= self.n_rr):
            raise ConfigError(f"RR token out of range [0, {self.n_rr}): {rr.min()}..{rr.max()}")
        if coarse.size and (coarse.min() < 0 or coarse.max() >= self.n_coarse_levels):
            raise ConfigError(f"coarse token out of range [0, {self.n_coarse_levels}): {coarse.min()}..{coarse.max()}")
        if self.rhythm_slot and rhythms is None:
            raise ConfigError("this layout has a rhythm slot: pass `rhythms` (one rhythm id per beat)")
        out = np.empty((len(rr), self.tokens_per_beat), np.int64)
        a = self.label_col
        if self.rhythm_slot:
            out[:, 0] = np.asarray(rhythms, np.int64)
        out[:, a] = np.asarray(labels, np.int64)
        out[:, a + 1] = rr
        out[:, a + 2:] = coarse + self.coarse_offset(0) + self.n_coarse_levels * np.arange(self.n_coarse)[None]
        return out

    def split_units(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inverse of :meth:`units`: ``(..., tokens_per_beat)`` LM ids -> label ids, RR indices, coarse indices
        (the rhythm slot, if any, is column 0: ``units[..., 0]``)."""
        u = np.asarray(units, np.int64)
        a = self.label_col
        coarse = u[..., a + 2:] - self.coarse_offset(0) - self.n_coarse_levels * np.arange(self.n_coarse)
        return u[..., a], u[..., a + 1], coarse

    # ------------------------------------------------------------------ type masks
    def allowed_table(self, spec: ControlSpec, vocab_size: int) -> torch.Tensor:
        """``(N_PREFIX + tokens_per_beat, vocab_size)`` bool: ids allowed at each prefix slot, then each unit slot.

        Row ``i < N_PREFIX`` is prefix slot ``i`` (source, lead, rhythm, beat; a prefix is given, never drawn,
        but a prompt-free sampler could draw it); row ``N_PREFIX + s`` is unit slot ``s`` ([rhythm,] label,
        RR, coarse j).
        """
        t = torch.zeros(N_PREFIX + self.tokens_per_beat, vocab_size, dtype=torch.bool)
        t[0, [spec.id_of(f"source:{s}") for s in spec.sources]] = True
        t[1, [spec.id_of(f"lead:{ld}") for ld in spec.leads]] = True
        rhythms = list(spec.rhythm_ids()) + [spec.id_of(NULL_RHYTHM)]
        t[2, rhythms] = True
        labels = list(spec.beat_ids()) + [spec.id_of(NULL_BEAT)]
        t[3, labels] = True
        a = N_PREFIX + self.label_col
        if self.rhythm_slot:
            t[N_PREFIX, rhythms] = True
        t[a, labels] = True
        t[a + 1, : self.n_rr] = True
        for j in range(self.n_coarse):
            o = self.coarse_offset(j)
            t[a + 2 + j, o:o + self.n_coarse_levels] = True
        return t

    def slot_of(self, position: int) -> int:
        """Row of :meth:`allowed_table` for the token at sequence ``position`` (0 = BOS, 1 = source...)."""
        p = int(position) - 1
        if p < 0:
            raise ValueError("position 0 is BOS, never drawn")
        return p if p < N_PREFIX else N_PREFIX + (p - N_PREFIX) % self.tokens_per_beat


def beat_condition(classes: np.ndarray, share: float = 0.1) -> str:
    """The prefix ectopy condition of a crop from its beats' AAMI classes (``""`` = unlabelled beat).

    ``beat:V`` when at least ``share`` of the labelled beats are V; else ``beat:S``, ``beat:F``, ``beat:Q``
    in that order by the same rule; else ``beat:N``; ``beat:?`` when no beat is labelled (CinC 2017). The
    model learns what a window with many V (S...) beats looks like, and a request ``beat:V`` asks for one.
    """
    c = np.asarray(classes)
    lab = c[c != ""]
    if lab.size == 0:
        return NULL_BEAT
    for k in ("V", "S", "F", "Q"):
        if float(np.mean(lab == k)) >= share:
            return f"beat:{k}"
    return "beat:N"


def spec_of_model(model_or_config) -> tuple[ControlSpec, BeatLayout] | None:
    """``(ControlSpec, BeatLayout)`` of an LM v3 (``config.ecg_stream["kind"] == "beats"``), else None."""
    cfg = getattr(model_or_config, "config", model_or_config)
    stream = getattr(cfg, "ecg_stream", None)
    if not isinstance(stream, dict) or stream.get("kind") != STREAM_KIND:
        return None
    return ControlSpec.from_dict(cfg.ecg_conditioning), BeatLayout.from_dict(stream)


def is_beat_lm(model_or_config) -> bool:
    """Whether a loaded LM (or its config) is an LM v3 over beats."""
    cfg = getattr(model_or_config, "config", model_or_config)
    stream = getattr(cfg, "ecg_stream", None)
    return isinstance(stream, dict) and stream.get("kind") == STREAM_KIND
