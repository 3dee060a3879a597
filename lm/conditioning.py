"""Control tokens from the MIT-BIH annotations: a rhythm prefix and a label token before every beat.

A conditional LM reads the same ECG codes as an unconditional one, with two kinds of extra tokens:

- **rhythm tokens** ``rhythm:N``, ``rhythm:AFIB``, ... (the ``.atr`` rhythm notes ``(N``, ``(AFIB``...). Every
  training sequence starts ``BOS <rhythm in force at the crop start>``: the prefix that sets the rhythm at
  generation time. A rhythm change inside a crop appears inline, where the annotation is.
- **beat tokens** ``beat:N``, ``beat:S``, ``beat:V``, ``beat:F``, ``beat:Q`` (AAMI EC57 classes of the beat
  symbols, :data:`ecg2llm.tokenizer.ecg.AAMI_CLASSES`), inserted ``lead_s`` seconds (0.2 s) *before* each annotated
  R peak: the model names the beat before it draws its P wave and QRS, so a requested class shapes the
  whole beat, and premature classes (S, V) are emitted early in the RR interval, where the data put them.

Why inline beat labels and not only a prefix: every generated beat then carries its class by construction
(the label the model emitted, or was steered to), which is what a train-on-synthetic classifier needs;
the generated WFDB records get a ``.atr`` file with those labels. A requested beat class is a logit bias
(``strength``, log-odds added to that beat token at every step) rather than a substitution, so the model
still chooses *when* the beat comes; a requested rhythm is the prefix, with every other rhythm token masked.

Stream layout of one record (``V`` codes; ids of the control tokens follow PAD/BOS/EOS, see
:func:`ecg2llm.lm.model.special_ids`)::

    ... code code [beat:N] code code code code code code code(R) ... [rhythm:AFIB] code ... [beat:N] code ...

The vocabulary of control tokens is fixed (:data:`RHYTHMS` x :data:`BEAT_CLASSES`) so LMs trained on
different record sets share ids; how often each appeared in training is saved in the LM's config
(``ecg_conditioning["counts"]``) and conditions never seen in training are refused at generation.
"""
from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from ecg2llm.core.errors import ConfigError
from ecg2llm.tokenizer.data import read_annotations
from ecg2llm.tokenizer.ecg import (
    AAMI_CLASSES,
    BEAT_CLASSES,
    REFRACTORY_S,
    RHYTHMS,
    BeatLabels,
    refine_peaks,
    rhythm_name,
)

_SPECS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # loaded model -> {spec class: spec or None}


def spec_memo(cls, model_or_config, build):
    """``build(config.ecg_conditioning)``, memoized per loaded model and spec class.

    A model's control vocabulary is fixed once it is loaded (``config.ecg_conditioning``), so the spec is
    parsed once per model object (a weak reference: the memo never keeps a model alive) and parsed again
    only if ``config.ecg_conditioning`` is replaced by another object. A bare config (no ``.config``) is
    parsed on every call. The returned spec is shared: treat it as read-only.
    """
    cfg = getattr(model_or_config, "config", None)
    if cfg is None:
        return build(getattr(model_or_config, "ecg_conditioning", None))
    d = getattr(cfg, "ecg_conditioning", None)
    try:
        memo = _SPECS.setdefault(model_or_config, {})
    except TypeError:  # not weak-referenceable: parse every time
        return build(d)
    if cls not in memo or memo[cls][0] is not d:
        memo[cls] = (d, build(d))
    return memo[cls][1]


@dataclass
class ConditionSpec:
    """The control-token vocabulary of a conditional LM (saved as ``config.ecg_conditioning``).

    Attributes
    ----------
    first_id : int
        Id of the first control token (``codebook_size + 3``: after the codes and PAD/BOS/EOS).
    lead_s : float
        Seconds between a beat token and the R peak it labels.
    counts : dict
        Occurrences of each control token in the training stream (``{"beat:V": 2741, ...}``).
    """

    first_id: int
    lead_s: float = 0.2
    beat_classes: list[str] = field(default_factory=lambda: list(BEAT_CLASSES))
    rhythms: list[str] = field(default_factory=lambda: list(RHYTHMS))
    counts: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Token names in id order: ``beat:N`` ... ``beat:Q``, ``rhythm:N`` ... ``rhythm:other``."""
        return [f"beat:{c}" for c in self.beat_classes] + [f"rhythm:{r}" for r in self.rhythms]

    @property
    def n_tokens(self) -> int:
        return len(self.beat_classes) + len(self.rhythms)

    def id_of(self, name: str) -> int:
        try:
            return self.first_id + self.names.index(name)
        except ValueError:
            raise ConfigError(f"unknown control token {name!r}; known: {', '.join(self.names)}") from None

    def name_of(self, token_id: int) -> str:
        return self.names[int(token_id) - self.first_id]

    def beat_ids(self) -> np.ndarray:
        return self.first_id + np.arange(len(self.beat_classes))

    def rhythm_ids(self) -> np.ndarray:
        return self.first_id + len(self.beat_classes) + np.arange(len(self.rhythms))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ConditionSpec":
        return cls(**{k: d[k] for k in ("first_id", "lead_s", "beat_classes", "rhythms", "counts") if k in d})

    @classmethod
    def of_model(cls, model_or_config) -> "ConditionSpec | None":
        """The spec of a loaded LM (or its config), or None for an unconditional LM.

        Worked out once per loaded model (:func:`spec_memo`): later calls on the same model object return
        the same spec object, so a caller may ask again instead of threading it through every signature.
        """
        return spec_memo(cls, model_or_config, lambda d: cls.from_dict(d) if isinstance(d, dict) and d else None)

    # --------------------------------------------------------------------------- user conditions
    def parse_conditions(self, conditions: Sequence[str]) -> tuple[str | None, list[str]]:
        """``["rhythm:AFIB", "beat:V"]`` -> (rhythm or None, beat classes), checked against this LM.

        Raises
        ------
        ConfigError
            Naming the unknown or never-trained condition and listing the ones this LM knows (with counts).
        """
        rhythm, beats = None, []
        if self.counts:
            trained = [n for n in self.names if self.counts.get(n, 0) > 0 and n != "rhythm:other"]
            known = "(training occurrences): " + ", ".join(f"{n} ({self.counts[n]})" for n in trained)
        else:  # an LM saved without counts: every name of the vocabulary
            known = ": " + ", ".join(n for n in self.names if n != "rhythm:other")
        for raw in conditions:
            c = str(raw).strip()
            if not c:
                continue
            if ":" not in c:  # bare "V" or "AFIB": a beat class if it is one, else a rhythm
                c = f"beat:{c}" if c in self.beat_classes else f"rhythm:{c.lstrip('(')}"
            kind, _, value = c.partition(":")
            name = f"{kind}:{value.lstrip('(')}"
            if name not in self.names or name == "rhythm:other":
                raise ConfigError(f"unknown condition {raw!r}; this LM knows {known}")
            if self.counts and self.counts.get(name, 0) == 0:
                raise ConfigError(
                    f"condition {raw!r} never occurred in this LM's training data; choose one of {known}"
                )
            if kind == "rhythm":
                if rhythm is not None and rhythm != value:
                    raise ConfigError(f"two rhythms requested ({rhythm}, {value}); give at most one")
                rhythm = value.lstrip("(")
            elif value not in beats:
                beats.append(value)
        return rhythm, beats


# ------------------------------------------------------------------------------------------- streams
def label_events(ann, n_codes: int, samples_per_token: float, fs: float, spec: ConditionSpec,
                 offset: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Control tokens of one record: where they go (code index) and their ids.

    Parameters
    ----------
    ann : ecg2llm.tokenizer.data.Annotations
        The record's annotations, sample indices at the tokenizer's ``fs``.
    n_codes : int
        Codes of the record (or of the excerpt starting at sample ``offset``).
    samples_per_token : float
    fs : float
        Sampling rate of the annotation sample indices (the tokenizer's).
    spec : ConditionSpec
    offset : int
        First sample of the excerpt; events before it only set the initial rhythm.

    Returns
    -------
    positions : np.ndarray of int64
        Code index each control token is inserted before, sorted (rhythm before beat at a tie).
    ids : np.ndarray of int64
    initial_rhythm : int
        Id of the rhythm in force at the first code (``rhythm:other`` if no note precedes it).
    """
    lead = int(round(spec.lead_s * fs))
    pos, ids, prio = [], [], []
    initial = spec.id_of("rhythm:other")
    rs, rn = ann.rhythms()
    seen = False
    for s, note in zip(rs.tolist(), rn):
        rid = spec.id_of(f"rhythm:{rhythm_name(note)}")
        k = int((s - offset) // samples_per_token)
        if k <= 0 or not seen:  # a record's first note (at its first beat) holds from its start
            initial, seen = rid, True
            continue
        if k < n_codes:
            pos.append(k), ids.append(rid), prio.append(0)
    bs, bsym = ann.beats()
    for s, sym in zip(bs.tolist(), bsym):
        cls = AAMI_CLASSES.get(sym)
        if cls is None:  # unclassifiable beats ("?", "B" isolated bundle branch...): no label, no token
            continue
        k = int(max(0, s - lead - offset) // samples_per_token)
        if s - offset < 0 or k >= n_codes:
            continue
        pos.append(k), ids.append(spec.id_of(f"beat:{cls}")), prio.append(1)
    if not pos:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), initial
    order = np.lexsort((np.asarray(prio), np.asarray(pos)))
    return np.asarray(pos, np.int64)[order], np.asarray(ids, np.int64)[order], initial


def interleave(codes: np.ndarray, positions: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Insert control ``ids`` before the codes at ``positions`` (sorted): one int64 stream."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.insert(codes, np.asarray(positions, np.int64), np.asarray(ids, np.int64))


def split_stream(stream: np.ndarray, spec: ConditionSpec) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Inverse of :func:`interleave`: the codes, and ``(code index, token name)`` of every control token."""
    stream = np.asarray(stream, dtype=np.int64)
    is_ctrl = stream >= spec.first_id
    code_idx = np.cumsum(~is_ctrl) - (~is_ctrl)  # index of the next code at each position
    events = [(int(code_idx[i]), spec.name_of(stream[i])) for i in np.flatnonzero(is_ctrl)]
    return stream[~is_ctrl], events


def rhythm_in_force(stream: np.ndarray, initial: int, spec: ConditionSpec) -> np.ndarray:
    """For each stream position, the id of the rhythm in force there (the last rhythm token at or before it)."""
    stream = np.asarray(stream, dtype=np.int64)
    rid = spec.rhythm_ids()
    is_r = np.isin(stream, rid)
    last = np.maximum.accumulate(np.where(is_r, np.arange(len(stream)), -1))
    return np.where(last >= 0, stream[np.maximum(last, 0)], initial).astype(np.int64)



def sample_crops(streams, body: int, n: int, length: int, crop, rng: np.random.Generator,
                 where: str, scale=None) -> np.ndarray:
    """``n`` random crops ``(n, length)``, uniform over every start of a ``body``-token window in ``streams``.

    ``crop(r, s)`` returns the row for stream ``r`` starting at ``s`` (prefix tokens included); streams
    shorter than ``body`` are skipped, and none long enough raises a :class:`StoreError` naming ``where``.
    ``scale`` (one factor per stream) multiplies each stream's share of starts: a weighted mixture.
    """
    from ecg2llm.core.errors import StoreError

    cand = [i for i, s in enumerate(streams) if len(s) >= body]
    if not cand:
        raise StoreError(f"{where} has >= {body} stream tokens")
    weights = np.array([len(streams[i]) - body + 1 for i in cand], dtype=np.float64)
    if scale is not None:
        weights *= np.asarray([scale[i] for i in cand], dtype=np.float64)
    which = rng.choice(len(cand), size=n, p=weights / weights.sum())
    out = np.empty((n, length), dtype=np.int64)
    for j, w in enumerate(which):
        r = cand[w]
        out[j] = crop(r, int(rng.integers(0, len(streams[r]) - body + 1)))
    return out

class ConditionedCorpus:
    """The records of a token store with their control tokens, cut like :mod:`ecg2llm.lm.data` cuts plain codes.

    Every crop is ``<rhythm in force at its start>`` followed by ``length - 1`` consecutive stream tokens of
    one record; :class:`ecg2llm.lm.data.TrainBatches` prepends BOS. ``random_crops`` draws exactly like
    :meth:`ecg2llm.tokenizer.store.TokenStore.random_crops` (every valid start equally likely), ``tiles`` like
    :func:`ecg2llm.lm.data.tile_crops` (fixed, non-overlapping), so the two kinds of LM are trained and scored alike.

    Parameters
    ----------
    store : ecg2llm.tokenizer.store.TokenStore
    spec : ConditionSpec
    data_dir : path or None
        Data root with the ``.atr`` files of the store's records.
    fs, samples_per_token : float
        The tokenizer's rate and hop.
    lead : str
    """

    def __init__(self, store, spec: ConditionSpec, data_dir, fs: float, samples_per_token: float,
                 lead: str = "MLII"):
        self.path, self.spec = store.path, spec
        self.streams: dict[str, list[np.ndarray]] = {}
        self.rhythm_at: dict[str, list[np.ndarray]] = {}
        self.records: dict[str, list[str]] = {}
        for e in store.entries(lead=lead):
            codes = np.asarray(store.tokens_of(e), dtype=np.int64)
            ann = read_annotations(e.record, data_dir, fs)
            pos, ids, initial = label_events(ann, len(codes), samples_per_token, fs, spec)
            stream = interleave(codes, pos, ids)
            self.streams.setdefault(e.split, []).append(stream)
            self.rhythm_at.setdefault(e.split, []).append(rhythm_in_force(stream, initial, spec))
            self.records.setdefault(e.split, []).append(e.record)

    def counts(self, split: str = "train") -> dict[str, int]:
        """Occurrences of each control token in ``split`` (plus the rhythm prefixes' possible values)."""
        ids = np.concatenate(self.streams.get(split, [np.zeros(0, np.int64)]))
        c = np.bincount(ids[ids >= self.spec.first_id] - self.spec.first_id, minlength=self.spec.n_tokens)
        return {n: int(k) for n, k in zip(self.spec.names, c.tolist())}

    def sequences(self, split: str) -> list[np.ndarray]:
        """Whole streams of the split's records (for the n-gram baselines)."""
        return list(self.streams.get(split, []))

    def longest(self, split: str) -> int:
        return max((len(s) + 1 for s in self.streams.get(split, [])), default=0)

    def _crop(self, split: str, r: int, s: int, length: int) -> np.ndarray:
        out = np.empty(length, np.int64)
        out[0] = self.rhythm_at[split][r][s]
        out[1:] = self.streams[split][r][s:s + length - 1]
        return out

    def random_crops(self, length: int, n: int, split: str = "train",
                     rng: np.random.Generator | None = None) -> np.ndarray:
        """``n`` crops of ``length`` tokens (rhythm prefix + stream), shape ``(n, length)``."""
        rng = rng if rng is not None else np.random.default_rng()
        return sample_crops(self.streams.get(split, []), length - 1, n, length,
                            lambda r, s: self._crop(split, r, s, length), rng,
                            f"no record in split {split!r} of {self.path}")

    def tiles(self, split: str, length: int, max_crops: int = 0) -> np.ndarray:
        """Non-overlapping crops over every record of ``split`` (an evenly spaced subset if ``max_crops``)."""
        from ecg2llm.core.errors import StoreError

        body = length - 1
        starts = [(r, body * k) for r, s in enumerate(self.streams.get(split, [])) for k in range(len(s) // body)]
        if not starts:
            raise StoreError(f"split '{split}' of {self.path} has no record with >= {body} stream tokens")
        if 0 < max_crops < len(starts):
            keep = np.unique(np.linspace(0, len(starts) - 1, max_crops).round().astype(np.int64))
            starts = [starts[i] for i in keep]
        return np.stack([self._crop(split, r, s, length) for r, s in starts])


def events_to_annotations(events, prefix_rhythm: str | None, x: np.ndarray, fs: float, samples_per_token: float,
                          lead_s: float) -> BeatLabels:
    """Control-token events ``(code index, name)`` of a generated sequence -> annotations of its signal ``x``.

    A beat token at code ``k`` labels the R peak ``lead_s`` later: expected at sample
    ``(k + 1/2) * samples_per_token + lead_s * fs``, then moved to the signal's peak within 80 ms
    (:func:`refine_peaks`). Beats whose peak would fall past the end are dropped.
    """
    rs, rn = ([0], [prefix_rhythm]) if prefix_rhythm is not None else ([], [])
    approx, cls = [], []
    for k, name in events:
        kind, _, value = name.partition(":")
        if kind == "rhythm":
            rs.append(int(round(k * samples_per_token))), rn.append(value)
        else:
            a = int(round((k + 0.5) * samples_per_token + lead_s * fs))
            if a < len(x):
                approx.append(a), cls.append(value)
    peaks = refine_peaks(x, np.asarray(approx, np.int64), fs) if approx else np.zeros(0, np.int64)
    # two labels on one peak (the model emitted beat tokens a few codes apart): keep the first, as no real
    # beat follows another within a 150 ms refractory period
    keep, last = [], -(10 ** 9)
    for i in np.argsort(peaks, kind="stable"):
        if peaks[i] - last >= REFRACTORY_S * fs:
            keep.append(i)
            last = peaks[i]
    keep = sorted(keep)
    return BeatLabels(peaks[keep], [cls[i] for i in keep], np.asarray(rs, np.int64), rn,
                      dropped=len(cls) - len(keep))
