"""The LM v2 control vocabulary: source and lead tokens, and null conditions for classifier-free guidance.

A v2 sequence starts with a fixed prefix of control tokens after BOS::

    BOS source:mitdb lead:MLII [rhythm:N] code code [beat:N] code ...      (conditional, MIT-BIH)
    BOS source:cinc2017 lead:I [rhythm:AFIB] code code code ...             (conditional, CinC 2017: no beats)
    BOS source:mitdb lead:V1 code code code ...                             (unconditional)

- ``source:<db>`` says which database (device, population) a sequence comes from, so one LM pretrained on
  several can be asked for MIT-BIH-like (``source:mitdb``) or handheld-like (``source:cinc2017``) ECG.
- ``lead:<name>`` says which lead the codes are (both MIT-BIH leads are trained on).
- ``rhythm:?`` and ``beat:?`` are the *null* conditions of classifier-free guidance (Ho & Salimans 2022):
  in training a sequence's rhythm and beat labels are replaced by them with probability
  ``condition_dropout`` (:func:`drop_conditions`), so the same network also models ECG without its
  conditions; at sampling :mod:`ecg2llm.lm.guidance` runs both branches and extrapolates their logits. CinC 2017
  records labelled "other rhythm" or "noisy" carry ``rhythm:?`` too (their rhythm is not one name).

:class:`ControlSpec` extends :class:`ecg2llm.lm.conditioning.ConditionSpec` by appending these names *after* the
existing ``beat:*`` and ``rhythm:*`` tokens, so every id the shipped conditional LM uses keeps its value,
and a v1 reader (``ConditionSpec.from_dict``) of a v2 config still sees the first 21 tokens correctly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ecg2llm.core.errors import ConfigError

from .conditioning import ConditionSpec, spec_memo

#: Databases a v2 LM knows, in token order.
SOURCES: tuple[str, ...] = ("mitdb", "cinc2017")
#: Lead names of MIT-BIH (MLII, V1, V2, V4, V5) and the CinC 2017 handheld lead (lead I equivalent).
LEADS: tuple[str, ...] = ("MLII", "V1", "V2", "V4", "V5", "I")
NULL_BEAT, NULL_RHYTHM = "beat:?", "rhythm:?"


@dataclass
class ControlSpec(ConditionSpec):
    """:class:`ConditionSpec` plus null conditions, ``source:*`` and ``lead:*`` tokens (ids after them).

    Attributes
    ----------
    sources, leads : list of str
        The source and lead vocabulary (fixed, :data:`SOURCES`, :data:`LEADS`).
    conditional : bool
        Whether rhythm and beat tokens are in the training streams (False: an unconditional LM that only
        reads the source/lead prefix).
    condition_dropout : float
        Probability with which a training sequence had its conditions replaced by the null ones.
    """

    sources: list[str] = field(default_factory=lambda: list(SOURCES))
    leads: list[str] = field(default_factory=lambda: list(LEADS))
    conditional: bool = True
    condition_dropout: float = 0.0

    @property
    def names(self) -> list[str]:
        """v1 names (``beat:N`` ... ``rhythm:other``), then ``beat:?``, ``rhythm:?``, sources, leads."""
        return (super().names + [NULL_BEAT, NULL_RHYTHM] + [f"source:{s}" for s in self.sources]
                + [f"lead:{ld}" for ld in self.leads])

    @property
    def n_tokens(self) -> int:
        return len(self.names)

    @property
    def null_beat_id(self) -> int:
        return self.id_of(NULL_BEAT)

    @property
    def null_rhythm_id(self) -> int:
        return self.id_of(NULL_RHYTHM)

    def source_id(self, source: str) -> int:
        if source not in self.sources:
            raise ConfigError(f"unknown source {source!r}; this LM knows {', '.join(self.sources)}")
        return self.id_of(f"source:{source}")

    def lead_id(self, lead: str) -> int:
        if lead not in self.leads:
            raise ConfigError(f"unknown lead {lead!r}; this LM knows {', '.join(self.leads)}")
        return self.id_of(f"lead:{lead}")

    def prefix(self, source: str, lead: str) -> list[int]:
        """Ids of ``source:<source> lead:<lead>``, the first tokens after BOS."""
        return [self.source_id(source), self.lead_id(lead)]

    def to_null(self, ids: np.ndarray) -> np.ndarray:
        """Every ``beat:<class>`` -> ``beat:?``, ``rhythm:<name>`` -> ``rhythm:?`` (a copy; any int array)."""
        ids = np.array(ids, dtype=np.int64, copy=True)
        ids[np.isin(ids, self.beat_ids())] = self.null_beat_id
        ids[np.isin(ids, self.rhythm_ids())] = self.null_rhythm_id
        return ids

    def parse_conditions(self, conditions):
        """As :meth:`ConditionSpec.parse_conditions`, refusing null, source and lead names."""
        for raw in conditions:
            c = str(raw).strip()
            if c.partition(":")[0] in ("source", "lead") or c.endswith("?"):
                raise ConfigError(f"{raw!r} is not a condition: give source and lead as their own arguments, "
                                  f"and leave a condition out instead of asking for its null token")
        return super().parse_conditions(conditions)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["version"] = 2
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ControlSpec":
        keys = ("first_id", "lead_s", "beat_classes", "rhythms", "counts", "sources", "leads", "conditional",
                "condition_dropout")
        return cls(**{k: d[k] for k in keys if k in d})

    @classmethod
    def of_model(cls, model_or_config) -> "ControlSpec | None":
        """The spec of a v2 LM (its ``ecg_conditioning`` has ``version: 2``), else None; worked out once per
        loaded model (:func:`ecg2llm.lm.conditioning.spec_memo`)."""
        return spec_memo(cls, model_or_config,
                         lambda d: cls.from_dict(d) if isinstance(d, dict) and d.get("version") == 2 else None)


def drop_conditions(crops: np.ndarray, spec: ControlSpec, p: float, rng: np.random.Generator) -> np.ndarray:
    """Classifier-free-guidance dropout: with probability ``p`` per row, every rhythm and beat token -> null.

    One Bernoulli draw per sequence (not per token): a dropped sequence is exactly what the unconditional
    branch reads at sampling time, a kept one exactly the conditional branch (the scheme of Ho & Salimans
    2022). Source and lead tokens are never dropped.

    Parameters
    ----------
    crops : np.ndarray of int64, shape (N, L)
    spec : ControlSpec
    p : float
        Dropout probability in ``[0, 1]``.
    rng : np.random.Generator

    Returns
    -------
    np.ndarray, shape (N, L)
        A copy with the dropped rows nulled.
    """
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"condition_dropout must be in [0, 1], got {p}")
    out = np.array(crops, dtype=np.int64, copy=True)
    if p > 0:
        rows = rng.random(out.shape[0]) < p  # (N,)
        if rows.any():
            out[rows] = spec.to_null(out[rows])
    return out
