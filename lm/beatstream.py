"""The LM v3 corpus: per record its beat stream (label, RR, coarse per beat) under a control prefix.

Built once per tokenizer into ``cfg.store`` (a folder of ``.npy`` arrays + ``meta.json``; no pickle):

- **MIT-BIH** (inter-patient: DS1 minus the validation records for training, the validation records --
  101, 112, 119 by default -- and DS2 for scoring; paced records excluded). Each record's leads are
  encoded by the tokenizer at the reference R peaks of its ``.atr`` file, so every beat has its annotated
  AAMI class (:data:`ecg2llm.tokenizer.ecg.AAMI_CLASSES`) and the rhythm in force at it. Training uses the leads
  in ``cfg.leads`` (MLII and the second lead); validation and test are MLII only.
- **CinC 2017** (optional, training only): the tokenizer's own R peaks; every beat carries the null label
  ``beat:?`` (the recordings have no beat annotations, and labels from a classifier that also judges
  adherence would make the judge its own teacher); the recording's label gives the rhythm (``N`` ->
  ``rhythm:N``, ``A`` -> ``rhythm:AFIB``, else ``rhythm:?``).

A crop is ``source lead rhythm beat`` + whole beat units (:mod:`ecg2llm.lm.beat_layout`), starting at a beat; the
prefix rhythm is the one in force at its first beat, the ``beat:`` condition the crop's ectopy
(:func:`ecg2llm.lm.beat_layout.beat_condition`). With a rhythm slot (``BeatLayout.rhythm_slot``) each beat also
carries the rhythm in force at *it*: the store keeps units of label, RR and coarse tokens plus each beat's
rhythm name, and a crop writes the slot from them. Recordings shorter than a crop (CinC 2017: 9-61 s) are padded with
PAD, which the trainer leaves out of the loss. Classifier-free-guidance dropout replaces the rhythm and
the beat condition (independently, each with ``condition_dropout``) by their null tokens; a dropped rhythm
nulls the prefix and every beat's rhythm slot of the crop together; the per-beat labels are data, never dropped.
The interface is the one :class:`ecg2llm.lm.trainer.Trainer` uses of
:class:`ecg2llm.lm.mixture.MixedCorpus` (``random_crops``, ``tiles``, ``sequences``, ``counts``, ``longest``).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ecg2llm.core.cli import run_main
from ecg2llm.core.errors import ConfigError, StoreError
from ecg2llm.core.io import atomic_path, git_sha, write_json

from .beat_layout import N_PREFIX, BeatLayout, beat_condition
from .control import NULL_BEAT, NULL_RHYTHM, ControlSpec

if TYPE_CHECKING:
    import torch

EVAL_LEAD = "MLII"
LABEL_TOLERANCE_S = 0.1  # a detected beat takes the class of the annotation within this distance
FORMAT = "ecg2llm-beatstream-1"
FIELDS = ("units", "r", "classes", "rhythm", "detail")


@dataclass
class BeatRecord:
    """One (record, lead) of the corpus: its beats as LM units plus what the detail model and scoring need."""

    db: str
    record: str
    lead: str
    split: str
    units: np.ndarray       # (n, 2 + Kc) LM ids: label, RR, coarse (no rhythm slot: see `rhythm`)
    r: np.ndarray           # (n,) R positions at the tokenizer's fs
    classes: np.ndarray     # (n,) AAMI class of each beat, "" when unlabelled
    rhythm: np.ndarray      # (n,) rhythm name in force at each beat, "" when unknown (null)
    detail: np.ndarray      # (n, Kd) the tokenizer's detail indices
    seconds: float = 0.0    # length of the encoded signal
    beat_prefix: str = ""   # a guided sample's own beat condition (its crops' prefix); "" = from the classes


def label_beats(r: np.ndarray, ann, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """AAMI class (``""`` if none within :data:`LABEL_TOLERANCE_S`) and rhythm in force at each R position."""
    from ecg2llm.tokenizer.ecg import AAMI_CLASSES, rhythm_name

    r = np.asarray(r, np.int64)
    samp, sym = ann.beats()
    samp = np.asarray(samp, np.int64)
    classes = np.full(len(r), "", dtype="<U1")
    if len(samp) and len(r):
        j = np.clip(np.searchsorted(samp, r), 1, len(samp) - 1) if len(samp) > 1 else np.zeros(len(r), np.int64)
        if len(samp) > 1:
            j = np.where(np.abs(samp[j - 1] - r) <= np.abs(samp[j] - r), j - 1, j)
        near = np.abs(samp[j] - r) <= LABEL_TOLERANCE_S * fs
        cls = np.array([AAMI_CLASSES.get(s, "") for s in sym], dtype="<U1")
        classes[near] = cls[j[near]]
    rs, rn = ann.rhythms()
    rhythm = np.full(len(r), "", dtype="<U8")
    if len(rs):
        k = np.searchsorted(np.asarray(rs, np.int64), r, side="right") - 1
        names = np.array([rhythm_name(a) for a in rn], dtype="<U8")
        rhythm[k >= 0] = names[k[k >= 0]]
    return classes, rhythm


def encode_record(tok, layout: BeatLayout, spec: ControlSpec, x: np.ndarray, fs: float, *, db: str, record: str,
                  lead: str, split: str, ann=None, rhythm: str | None = None,
                  min_beats: int = 2) -> list[BeatRecord]:
    """Encode one lead with the beat tokenizer into :class:`BeatRecord` segments (labels from ``ann`` if given).

    With annotations the tokenizer is given the reference R peaks (so each beat has its class); without,
    it detects its own and every beat is unlabelled, under the record-level ``rhythm`` (or null). The LM
    models beats only: the tokenizer's fallback units (stretches of > 2 s without a beat) cut the record
    into segments of consecutive beats, and a segment keeps its own RR tokens (the first one counts from
    the segment start, as the tokenizer codes it). Segments of fewer than ``min_beats`` beats are left out.
    """
    peaks = None
    if ann is not None:
        samp, _ = ann.beats()
        peaks = np.asarray(samp, np.int64)
        peaks = peaks[(peaks >= 0) & (peaks < int(round(len(x) * tok.fs / float(fs))))]
    bt = tok.encode_beats(np.asarray(x, np.float32), fs, r_peaks=peaks)
    r = np.asarray(bt.r, np.int64)
    kind = np.asarray(getattr(bt, "kind", np.zeros(len(r), np.int64)))
    is_beat = kind == 0
    if ann is not None:
        classes, rhythms = label_beats(r, ann, tok.fs)
    else:
        classes = np.full(len(r), "", dtype="<U1")
        rhythms = np.full(len(r), rhythm or "", dtype="<U8")
    seconds = len(x) / float(fs)
    out = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], is_beat.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2]):  # runs of beat units [a, b)
        if b - a < min_beats:
            continue
        cls = classes[a:b]
        label_ids = np.array([spec.id_of(f"beat:{c}") if c else spec.null_beat_id for c in cls], np.int64)
        units = layout.units(label_ids, np.asarray(bt.rr)[a:b], np.asarray(bt.coarse)[a:b])
        detail = np.asarray(bt.detail, np.int64)[a:b].reshape(b - a, -1)
        dur = (r[b - 1] - r[a]) / tok.fs + float(np.median(np.diff(r[a:b])) / tok.fs)
        whole = a == 0 and b == len(r)  # one segment: the record's own length
        out.append(BeatRecord(db, record, lead, split, units, r[a:b], cls, rhythms[a:b], detail,
                              seconds if whole else dur))
    return out


# ------------------------------------------------------------------------------------------ on disk
def save_records(out, records: list[BeatRecord], meta: dict) -> None:
    """Write records as concatenated ``.npy`` arrays + an index in ``meta.json`` (atomically)."""
    with atomic_path(out) as tmp:
        tmp.mkdir()
        index, start = [], 0
        for rec in records:
            index.append({"db": rec.db, "record": rec.record, "lead": rec.lead, "split": rec.split,
                          "start": start, "n": len(rec.r), "seconds": rec.seconds})
            start += len(rec.r)
        for f in FIELDS:
            arrs = [getattr(r, f) for r in records]
            np.save(tmp / f"{f}.npy", np.concatenate(arrs) if arrs else np.zeros(0))
        write_json(tmp / "meta.json", {**meta, "format": FORMAT, "records": index})


def load_records(path) -> tuple[list[BeatRecord], dict]:
    """Read a folder written by :func:`save_records`."""
    p = Path(path)
    meta = json.loads((p / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise StoreError(f"{p} is not a beat-stream store ({FORMAT}); delete it or point --store elsewhere")
    arr = {f: np.load(p / f"{f}.npy", allow_pickle=False) for f in FIELDS}
    out = []
    for e in meta["records"]:
        s = slice(e["start"], e["start"] + e["n"])
        out.append(BeatRecord(e["db"], e["record"], e["lead"], e["split"], arr["units"][s], arr["r"][s],
                              arr["classes"][s], arr["rhythm"][s], arr["detail"][s], float(e["seconds"])))
    return out, meta


def build_beat_store(out, tok, layout: BeatLayout, spec: ControlSpec, *, data_dir=None, records=(),
                     leads=("MLII",), valid_records=("101", "112", "119"), cinc_max_records: int = 0,
                     progress: bool = True) -> None:
    """Encode MIT-BIH (training leads ``leads``; validation/test MLII) and optionally CinC 2017 into ``out``."""
    from tqdm.auto import tqdm

    from ecg2llm.tokenizer.build_store import split_of
    from ecg2llm.tokenizer.data import (
        MITDB_RECORDS,
        read_annotations,
        read_header,
        read_record,
        resample,
        resolve_data_dir,
    )

    from .corpora import CINC_DB, CINC_LEAD, CINC_RHYTHM, read_cinc2017, read_cinc2017_labels

    root = resolve_data_dir(data_dir)
    layout = layout.without_rhythm()  # stored units: label, RR, coarse; the rhythm per beat is its own array
    if getattr(tok, "texture_state", False):  # a store keeps ids only: skip measuring each recording's texture
        import copy

        tok = copy.copy(tok)
        tok.texture_state = False
    t0, recs = time.perf_counter(), []
    for rec in tqdm([str(r) for r in records] or list(MITDB_RECORDS), desc="beat-encoding mitdb",
                    unit="record", disable=not progress):
        split = split_of(rec, list(valid_records))
        if split == "excluded":
            continue
        names = list(read_header(rec, root / "mitdb").sig_name or [])
        want = [ld for ld in names if ld in leads] if split == "train" else [EVAL_LEAD]
        ann = read_annotations(rec, root, tok.fs)
        for lead in want:
            r = read_record(rec, root, lead=lead, annotations=False)
            x = r.signal if r.fs == tok.fs else resample(r.signal, r.fs, tok.fs)
            recs.extend(encode_record(tok, layout, spec, x, tok.fs, db="mitdb", record=rec, lead=lead,
                                      split=split, ann=ann))
    cinc = []
    if cinc_max_records:
        labels = read_cinc2017_labels(data_dir)
        for name in tqdm(sorted(labels)[:cinc_max_records], desc="beat-encoding cinc2017", unit="record",
                         disable=not progress):
            r = read_cinc2017(name, data_dir, fs=tok.fs)
            try:
                cinc.extend(encode_record(tok, layout, spec, r.signal, r.fs, db=CINC_DB, record=name,
                                          lead=CINC_LEAD, split="train", rhythm=CINC_RHYTHM.get(labels[name]) or ""))
            except (ValueError, RuntimeError) as e:  # a recording with no detectable beat
                print(f"cinc2017 {name}: skipped ({e})")
    save_records(out, recs + cinc, {
        "tokenizer": tokenizer_id(tok), "layout": layout.to_dict(), "leads": list(leads),
        "valid_records": [str(r) for r in valid_records], "cinc_max_records": int(cinc_max_records),
        "build": {"seconds": round(time.perf_counter() - t0, 1), "git_sha": git_sha()}})


def tokenizer_id(tok) -> str:
    """What identifies the tokenizer a store was built with (its weights hash, else its config)."""
    h = getattr(tok, "weights_hash", None)
    if h:
        return str(h)
    cfg = tok.config_dict() if hasattr(tok, "config_dict") else {}
    return json.dumps(cfg, sort_keys=True, default=str)


# ------------------------------------------------------------------------------------------ the corpus
class BeatCorpus:
    """Beat-unit crops with the v3 control prefix (see the module docstring).

    Parameters
    ----------
    records : list of BeatRecord
    spec : ControlSpec
    layout : BeatLayout
    pad_id : int
        PAD id (fills crops of recordings shorter than a crop; left out of the loss).
    beat_share : float
        Share of labelled beats of a class that makes a crop's ``beat:`` condition that class.
    source_weights : dict, optional
        Share of training crops per database (``{"mitdb": 1, "cinc2017": 1}``); None: in proportion to beats.
    focus_share : float
        Share of training crops that start inside an episode of a rare rhythm (``focus_rhythms``; a rhythm
        drawn uniformly among those the training records hold, then one of its beats), so that a prefix
        ``rhythm:VT`` is followed by VT beats often enough to be learned. Their conditions are never dropped,
        so the null-condition branch of classifier-free guidance keeps the data's own mix of rhythms.
    distill : list of BeatRecord, optional
        An LM's own guided samples (:func:`load_distill_records`), kept apart from the records: ``distill_share``
        of the training crops come from them (uniformly over their start beats), and :meth:`loss_weights`
        keeps only the tokens the guidance moved in those rows (guidance distillation). They are never counted,
        tiled or listed as training data. ``distill_dropout`` false: their conditions are never dropped, so
        the null-condition branch of classifier-free guidance never learns them.
    """

    def __init__(self, records: list[BeatRecord], spec: ControlSpec, layout: BeatLayout, pad_id: int,
                 beat_share: float = 0.1, source_weights: dict | None = None, path: str = "beat corpus",
                 focus_share: float = 0.0, focus_rhythms=(), distill: list[BeatRecord] | None = None,
                 distill_share: float = 0.0, distill_dropout: bool = True):
        self.spec, self.layout, self.pad_id, self.beat_share = spec, layout, int(pad_id), float(beat_share)
        self.distill = [r for r in (distill or []) if len(r.r) >= 2]
        self.distill_share = float(distill_share) if self.distill else 0.0
        self.distill_dropout = bool(distill_dropout)
        if distill_share > 0 and not self.distill:
            raise ConfigError(f"distill_share {distill_share} but no guided sample of >= 2 beats was given")
        self.source_weights, self.path = source_weights, str(path)
        self.focus_share, self.focus_rhythms = float(focus_share), tuple(str(r) for r in focus_rhythms)
        self.recs: dict[str, list[BeatRecord]] = {}
        for r in records:
            if r.split != "train" and (r.db != "mitdb" or r.lead != EVAL_LEAD):
                continue  # scored on MIT-BIH MLII only
            if len(r.r):
                self.recs.setdefault(r.split, []).append(r)
        if "train" not in self.recs or "valid" not in self.recs:
            raise StoreError(f"{path}: need 'train' and 'valid' records, have {sorted(self.recs)}")
        self.tpb = layout.tokens_per_beat
        self._lm_units: dict[int, np.ndarray] = {}  # id(record) -> (n, tokens_per_beat) LM units
        self.focus = self._focus_beats() if self.focus_share > 0 else {}
        if self.focus_share > 0 and not self.focus:
            raise ConfigError(f"focus_share {self.focus_share} but no training beat of {path} is in a rhythm of "
                              f"focus_rhythms {list(self.focus_rhythms)}; set focus_share: 0 or name other rhythms")

    def _focus_beats(self) -> dict[str, np.ndarray]:
        """Per focus rhythm with training beats, ``(k, 2)`` rows (index into the train records, beat index)."""
        out: dict[str, list] = {}
        for i, r in enumerate(self.recs["train"]):
            for name in self.focus_rhythms:
                b = np.flatnonzero(np.asarray(r.rhythm) == name)
                if len(b):
                    out.setdefault(name, []).append(np.stack([np.full(len(b), i), b], 1))
        return {k: np.concatenate(v) for k, v in out.items()}

    def rhythm_ids(self, r: BeatRecord) -> np.ndarray:
        """``(n,)`` id of the rhythm in force at each beat (``rhythm:?`` when unknown or not a condition)."""
        spec, null = self.spec, self.spec.id_of(NULL_RHYTHM)
        names, inv = np.unique(np.asarray(r.rhythm), return_inverse=True)
        ids = np.array([spec.id_of(f"rhythm:{n}") if n and n in spec.rhythms else null for n in names], np.int64)
        return ids[inv.reshape(-1)] if len(r.rhythm) else np.zeros(0, np.int64)

    def lm_units(self, r: BeatRecord) -> np.ndarray:
        """The record's beats as LM units (with the rhythm slot when the layout has one)."""
        if not self.layout.rhythm_slot:
            return r.units
        u = self._lm_units.get(id(r))
        if u is None:
            u = self._lm_units[id(r)] = np.concatenate([self.rhythm_ids(r)[:, None], r.units], 1)
        return u

    # ------------------------------------------------------------------ what the trainer asks
    def entries(self, split: str | None = None, lead: str | None = None) -> list[BeatRecord]:
        recs = [r for s, rs in self.recs.items() if split in (None, s) for r in rs]
        return [r for r in recs if lead in (None, r.lead)]

    @property
    def n_prefix(self) -> int:
        return N_PREFIX

    def longest(self, split: str) -> int:
        """Longest crop (tokens after BOS) a split can give: training pads short recordings, so any length."""
        if split == "train":
            return 1 << 30
        return max((N_PREFIX + len(r.r) * self.tpb for r in self.recs.get(split, [])), default=0)

    def stream(self, r: BeatRecord) -> np.ndarray:
        """The record's units flattened ([rhythm,] label, RR, coarse, beat after beat)."""
        return self.lm_units(r).reshape(-1)

    def sequences(self, split: str) -> list[np.ndarray]:
        """Prefix + stream of MIT-BIH MLII records (what the n-gram baselines fit)."""
        return [np.concatenate([self._prefix(r, 0, len(r.r), drop=None), self.stream(r)])
                for r in self.recs.get(split, []) if r.db == "mitdb" and r.lead == EVAL_LEAD]

    def counts(self, split: str = "train") -> dict[str, int]:
        """Occurrences of each control token in ``split``'s labels and first-beat rhythms."""
        names = self.spec.names
        c = dict.fromkeys(names, 0)
        for r in self.recs.get(split, []):
            ids, k = np.unique(r.units[:, 0], return_counts=True)
            for i, n in zip(ids.tolist(), k.tolist()):
                c[self.spec.name_of(i)] += int(n)
            for name, n in zip(*np.unique(r.rhythm, return_counts=True)):
                key = f"rhythm:{name}" if name else NULL_RHYTHM
                if key in c:
                    c[key] += int(n)
        return c

    def tokens_per_second(self, split: str = "valid") -> float:
        """Stream tokens per ECG second in ``split`` (bits/token x this = bits per second)."""
        recs = self.recs.get(split, [])
        return sum(len(r.r) * self.tpb for r in recs) / max(sum(r.seconds for r in recs), 1e-9)

    # ------------------------------------------------------------------ crops
    def _prefix(self, r: BeatRecord, b0: int, b1: int, drop) -> np.ndarray:
        spec = self.spec
        rh = r.rhythm[b0] if b0 < len(r.rhythm) else ""
        rhythm = spec.id_of(f"rhythm:{rh}") if rh and rh in spec.rhythms else spec.id_of(NULL_RHYTHM)
        beat = spec.id_of(r.beat_prefix or beat_condition(r.classes[b0:b1], self.beat_share))
        if drop is not None:
            rhythm = spec.id_of(NULL_RHYTHM) if drop[0] else rhythm
            beat = spec.id_of(NULL_BEAT) if drop[1] else beat
        return np.array([spec.source_id(r.db), spec.lead_id(r.lead), rhythm, beat], np.int64)

    def _crop(self, r: BeatRecord, b0: int, length: int, drop=None) -> np.ndarray:
        n_beats = -(-(length - N_PREFIX) // self.tpb)
        b1 = min(b0 + n_beats, len(r.r))
        out = np.full(length, self.pad_id, np.int64)
        units = self.lm_units(r)[b0:b1]
        if self.layout.rhythm_slot and drop is not None and drop[0]:
            units = units.copy()
            units[:, 0] = self.spec.id_of(NULL_RHYTHM)
        body = units.reshape(-1)[: length - N_PREFIX]
        out[:N_PREFIX] = self._prefix(r, b0, b1, drop)
        out[N_PREFIX:N_PREFIX + len(body)] = body
        return out

    def random_crops(self, length: int, n: int, split: str = "train",
                     rng: np.random.Generator | None = None, return_distill: bool = False):
        """``n`` crops ``(n, length)`` starting at uniformly drawn beats; CFG dropout on ``train``.

        On ``train`` with guided samples (``distill``), ``distill_share`` of the rows are replaced by crops of
        them (drawn after every other crop, so the others stay as they were); ``return_distill`` also returns
        the ``(n,)`` bool of those rows (for :meth:`loss_weights`).
        """
        rng = rng if rng is not None else np.random.default_rng()
        recs = self.recs.get(split, [])
        if not recs:
            raise StoreError(f"no records in split {split!r} of {self.path}")
        n_beats = -(-(length - N_PREFIX) // self.tpb)
        starts = np.array([max(len(r.r) - n_beats, 0) + 1 for r in recs], np.float64)
        w = starts.copy()
        if self.source_weights and split == "train":
            for db, share in self.source_weights.items():
                m = np.array([r.db == db for r in recs])
                if m.any():
                    w[m] = starts[m] / starts[m].sum() * float(share)
        which = rng.choice(len(recs), size=n, p=w / w.sum())
        p = self.spec.condition_dropout if split == "train" else 0.0
        out = np.empty((n, length), np.int64)
        for j, i in enumerate(which):
            b0 = int(rng.integers(0, starts[i]))
            drop = rng.random(2) < p if p > 0 else None
            out[j] = self._crop(recs[i], b0, length, drop)
        if split == "train" and self.focus_share > 0:  # drawn after the usual crops: those draws stay as they were
            names = sorted(self.focus)
            for j in np.flatnonzero(rng.random(n) < self.focus_share):
                rows = self.focus[names[int(rng.integers(len(names)))]]
                i, b0 = rows[int(rng.integers(len(rows)))]
                out[j] = self._crop(recs[int(i)], int(b0), length, None)
        is_distill = np.zeros(n, bool)
        if split == "train" and self.distill_share > 0:
            dstarts = np.array([max(len(r.r) - n_beats, 0) + 1 for r in self.distill], np.float64)
            for j in np.flatnonzero(rng.random(n) < self.distill_share):
                i = int(rng.choice(len(self.distill), p=dstarts / dstarts.sum()))
                b0 = int(rng.integers(0, dstarts[i]))
                drop = (rng.random(2) < p) & self.distill_dropout if p > 0 else None
                out[j], is_distill[j] = self._crop(self.distill[i], b0, length, drop), True
        return (out, is_distill) if return_distill else out

    def loss_weights(self, seqs: torch.Tensor, ectopic_weight: float = 1.0, distill_rows=None) -> torch.Tensor:
        """``(B, L)`` weight of each token of BOS-led crops ``seqs`` as a *target*: ``ectopic_weight`` for the RR
        and coarse tokens of beats labelled S, V or F, else 1 (the label token too, so no class is favoured:
        the weight depends only on what the context already holds).

        Rows marked in ``distill_rows`` (guided samples, :meth:`random_crops` ``return_distill``) keep weight 1 on
        the tokens label-contrast guidance (:class:`ecg2llm.lm.sampler.LabelContrast`) moved -- the RR and coarse
        tokens of a beat labelled S, V or F, and the RR token of the beat after it -- and 0 on every other token:
        the model learns the guided ectopic beats, not its own normal beats, labels or rhythm back."""
        import torch

        L = seqs.shape[1]
        pos = torch.arange(L)
        first = 1 + N_PREFIX  # BOS + prefix
        unit = (pos - first).clamp(min=0) // self.tpb
        slot = (pos - first).clamp(min=0) % self.tpb
        label_pos = (first + unit * self.tpb + self.layout.label_col).clamp(max=L - 1)
        labels = seqs[:, label_pos]  # (B, L): the label of the beat each position belongs to
        ectopic = torch.tensor([self.spec.id_of(f"beat:{c}") for c in ("S", "V", "F")])
        body = pos >= first
        hit = torch.isin(labels, ectopic) & body & (slot > self.layout.label_col)
        w = torch.where(hit, float(ectopic_weight), 1.0)
        if distill_rows is not None and bool(np.asarray(distill_rows).any()):
            prev_pos = (label_pos - self.tpb).clamp(min=0)
            after = torch.isin(seqs[:, prev_pos], ectopic) & (unit >= 1) & body & (slot == self.layout.label_col + 1)
            moved = (hit | after).to(w.dtype)
            rows = torch.as_tensor(np.asarray(distill_rows, bool))
            w = torch.where(rows[:, None], moved, w)
        return w

    def tiles(self, split: str, length: int, max_crops: int = 0) -> np.ndarray:
        """Non-overlapping whole crops over every record of ``split`` (an evenly spaced subset if ``max_crops``)."""
        n_beats = (length - N_PREFIX) // self.tpb
        if n_beats < 1:
            raise ConfigError(f"context_length {length + 1} holds no beat after the {N_PREFIX}-token prefix")
        starts = [(r, n_beats * k) for r in self.recs.get(split, []) for k in range(len(r.r) // n_beats)]
        if not starts:
            raise StoreError(f"split {split!r} of {self.path} has no record of >= {n_beats} beats")
        if 0 < max_crops < len(starts):
            keep = np.unique(np.linspace(0, len(starts) - 1, max_crops).round().astype(np.int64))
            starts = [starts[i] for i in keep]
        return np.stack([self._crop(r, b, length) for r, b in starts])


def ensure_beat_store(cfg, tok):
    """``(layout, spec, path)`` of an LM v3 config: its layout and control spec, and its store ``cfg.store``,
    built first when missing (MIT-BIH, plus CinC 2017 when ``cfg.sources`` names it)."""
    layout = BeatLayout.from_tokenizer(tok, rhythm_slot=bool(getattr(cfg, "rhythm_slot", False)))
    spec = ControlSpec(first_id=layout.codebook_size + 3, lead_s=0.0, conditional=True,
                       condition_dropout=float(cfg.condition_dropout))
    path = Path(cfg.store)
    if not (path / "meta.json").is_file():
        print(f"beat store {path} not found: building it", flush=True)
        n_cinc = 0
        if "cinc2017" in cfg.sources:  # cinc_max_records 0 = every recording (the config's rule), not none
            from .corpora import read_cinc2017_labels

            n_cinc = int(cfg.cinc_max_records) or len(read_cinc2017_labels(cfg.data_dir))
        build_beat_store(path, tok, layout, spec, data_dir=cfg.data_dir, records=list(cfg.records),
                         leads=list(cfg.leads), valid_records=list(cfg.valid_records), cinc_max_records=n_cinc,
                         progress=bool(getattr(cfg, "progress", True)))
    return layout, spec, path


def weak_v_beats(units: np.ndarray, rr_seconds: np.ndarray, premature: float = 0.85, pause: float = 1.05,
                 changed: float = 2 / 3) -> np.ndarray:
    """``(n,)`` bool: the beats of one recording's stored units (label, RR, coarse LM ids) that a token rule calls
    ventricular-like: premature (RR below ``premature`` x the median of the up to 5 RRs before it), followed by a
    longer RR (``pause`` x its own), and shaped unlike both neighbours (at least ``changed`` of the coarse tokens
    differ from each). It reads only tokens, never a beat classifier, so it can label CinC 2017's unlabelled beats
    (``LMTrainConfig.cinc_weak_v``) without the judge of adherence teaching the LM. On the LM's DS1 training
    records (MLII) it flags 1,796 beats, 88.5 % of them annotated V, and finds 48 % of the V beats."""
    u = np.asarray(units)
    n = len(u)
    out = np.zeros(n, bool)
    if n < 3:
        return out
    rr = np.asarray(rr_seconds, np.float64)[u[:, 1]]
    co = u[:, 2:]
    need = int(np.ceil(changed * co.shape[1] - 1e-9))
    for i in range(1, n - 1):
        local = np.median(rr[max(0, i - 5):i])
        out[i] = (rr[i] < premature * local and rr[i + 1] > pause * rr[i]
                  and (co[i] != co[i - 1]).sum() >= need and (co[i] != co[i + 1]).sum() >= need)
    return out


def label_weak_v(records: list[BeatRecord], spec: ControlSpec, rr_seconds: np.ndarray) -> tuple[list, int]:
    """CinC 2017 records with the beats :func:`weak_v_beats` flags labelled ``beat:V`` (class ``V``), every other
    record as it was; and how many beats were labelled."""
    from dataclasses import replace

    v_id, total, out = spec.id_of("beat:V"), 0, []
    for r in records:
        if r.db != "cinc2017":
            out.append(r)
            continue
        m = weak_v_beats(r.units, rr_seconds)
        if m.any():
            units, classes = r.units.copy(), np.asarray(r.classes).copy()
            units[m, 0], classes[m] = v_id, "V"
            r = replace(r, units=units, classes=classes)
            total += int(m.sum())
        out.append(r)
    return out, total


def load_distill_records(dirs, spec: ControlSpec, layout: BeatLayout, tok, rr_seconds: np.ndarray) -> list[BeatRecord]:
    """An LM's own guided samples as training records for guidance distillation (``LMTrainConfig.distill_dirs``).

    Each folder is what ``lm/generate.py`` wrote for an LM v3 (``manifest.json`` and ``beat_units.npy``: per
    sample its beats' label id, RR index and coarse indices, padded with -1; made LM units here). The samples keep
    the prefix they were generated under (``conditioning.rhythm`` / ``beat``; source and lead as the request's,
    default ``mitdb`` / ``MLII``). The folder must come from an LM v3 with this tokenizer.
    """
    out = []
    want = tokenizer_id(tok)
    lay0 = layout.without_rhythm()  # the units' layout: label, RR, coarse
    base = lay0.tokens_per_beat
    for d in dirs:
        p = Path(d)
        man, arr = p / "manifest.json", p / "beat_units.npy"
        if not man.is_file() or not arr.is_file():
            raise ConfigError(f"distill_dirs: {p} has no manifest.json and beat_units.npy; give folders written by "
                              "`python lm/generate.py --model <LM v3> --label_guidance 1 ...`")
        m = json.loads(man.read_text())
        got = (m.get("tokenizer") or {}).get("weights_hash")
        if m.get("lm_version") != 3 or got != want:
            raise ConfigError(f"distill_dirs: {p} was not generated by an LM v3 with this run's tokenizer "
                              f"(lm_version {m.get('lm_version')}, tokenizer {got}; this run's: {want})")
        units = np.load(arr, allow_pickle=False)
        if units.ndim != 3 or units.shape[2] != base:
            raise ConfigError(f"distill_dirs: {arr} has shape {units.shape}, expected (samples, beats, {base})")
        cond, conf = m.get("conditioning") or {}, m.get("config") or {}
        rhythm = cond.get("rhythm") or ""
        beat = f"beat:{cond['beat']}" if cond.get("beat") else NULL_BEAT
        spec.id_of(beat)
        source, lead = conf.get("source") or "mitdb", conf.get("lead") or "MLII"
        for i, raw in enumerate(units):
            raw = raw[(raw >= 0).all(1)].astype(np.int64)  # label id, RR index, coarse indices (not LM ids)
            if len(raw) < 2:
                continue
            u = lay0.units(raw[:, 0], raw[:, 1], raw[:, 2:])
            labels = [spec.name_of(int(x)) for x in u[:, 0]]
            classes = np.array([x.split(":", 1)[1] if x != NULL_BEAT else "" for x in labels], "<U1")
            rr_s = np.asarray(rr_seconds, np.float64)[u[:, 1]]
            r = np.round(np.cumsum(rr_s) * float(tok.fs)).astype(np.int64)
            out.append(BeatRecord(source, f"distill:{p.name}:{i:04d}", lead, "train", u, r, classes,
                                  np.full(len(u), rhythm, "<U8"), np.zeros((len(u), layout.n_detail), np.int64),
                                  float(rr_s.sum()), beat_prefix=beat))
    return out


def open_beat_corpus(cfg, tok, pad_id: int):
    """``(corpus, spec, layout)`` of an LM v3 run: the store in ``cfg.store`` (built first if missing)."""
    layout, spec, path = ensure_beat_store(cfg, tok)
    records, meta = load_records(path)
    if meta.get("tokenizer") != tokenizer_id(tok) or \
            BeatLayout.from_dict(meta.get("layout") or {"n_rr": 0}).tokenizer_sizes() != layout.tokenizer_sizes():
        raise StoreError(f"beat store {path} was built by another tokenizer or layout; delete it or point "
                         "--store elsewhere")
    if sorted(meta.get("valid_records", [])) != sorted(str(r) for r in cfg.valid_records):
        raise StoreError(f"beat store {path} holds validation records {meta.get('valid_records')}, the config "
                         f"asks for {list(cfg.valid_records)}; point --store elsewhere")
    keep = [r for r in records if r.db != "cinc2017" or "cinc2017" in cfg.sources]
    keep = [r for r in keep if r.split != "train" or r.db != "mitdb" or r.lead in cfg.leads]
    if "cinc2017" in cfg.sources and not any(r.db == "cinc2017" for r in keep):
        raise StoreError(f"sources include cinc2017 but beat store {path} holds no CinC 2017 recording (built "
                         "without it); delete the store or point --store elsewhere so it is rebuilt with CinC")
    if getattr(cfg, "cinc_weak_v", False):
        keep, n_weak = label_weak_v(keep, spec, tok.rr_seconds(np.arange(layout.n_rr)))
        print(f"cinc_weak_v: {n_weak:,} CinC 2017 beats labelled V by the token rule (lm.beatstream.weak_v_beats)",
              flush=True)
    weights = dict(zip(cfg.sources, cfg.source_weights)) if cfg.source_weights else None
    distill = []
    if getattr(cfg, "distill_dirs", None):
        if layout.rhythm_slot:
            raise ConfigError("distill_dirs with rhythm_slot: a guided sample's beat_units.npy keeps no per-beat "
                              "rhythm, so its crops cannot fill the rhythm slot; distil an LM without rhythm_slot")
        distill = load_distill_records(cfg.distill_dirs, spec, layout, tok, tok.rr_seconds(np.arange(layout.n_rr)))
        n_moved = sum(int(np.isin(r.classes, ("S", "V", "F")).sum()) for r in distill)
        print(f"distill: {len(distill):,} guided samples, {sum(len(r.r) for r in distill):,} beats ({n_moved:,} "
              f"labelled S/V/F) from {len(cfg.distill_dirs)} folders; {cfg.distill_share:.0%} of training crops",
              flush=True)
    corpus = BeatCorpus(keep, spec, layout, pad_id, beat_share=float(cfg.beat_condition_share),
                        source_weights=weights, path=str(path), focus_share=float(getattr(cfg, "focus_share", 0.0)),
                        focus_rhythms=getattr(cfg, "focus_rhythms", ()), distill=distill,
                        distill_share=float(getattr(cfg, "distill_share", 0.0)),
                        distill_dropout=bool(getattr(cfg, "distill_dropout", True)))
    if "cinc2017" in cfg.sources and int(meta.get("cinc_max_records", 0)):
        # the recordings the store was asked to encode (training_data.json lists those that gave no beat run
        # as excluded; the rule of ecg2llm.tokenizer.training_data: the first max_records sorted names)
        from .corpora import read_cinc2017_labels

        corpus.cinc_asked = sorted(read_cinc2017_labels(cfg.data_dir))[: int(meta["cinc_max_records"])]
    spec.counts = corpus.counts("train")
    return corpus, spec, layout


@run_main
def main(argv=None):
    """Build the beat store an LM v3 config names (``store``), as ``lm/train.py`` does on first use, and print
    what it holds: ``python -m ecg2llm.lm.beatstream --config configs/lm/tiny_v3.yaml --store DIR``."""
    from ecg2llm.core.config import parse_config
    from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer

    from .config import LMTrainConfig

    cfg = parse_config(LMTrainConfig, argv, description=main.__doc__)
    if not cfg.beat_stream:
        raise ConfigError("this builds LM v3 beat stores: the config needs beat_stream: true (LM v2 token stores "
                          "are built by tokenizer/tokenize_db.py)")
    _, _, path = ensure_beat_store(cfg, BeatTokenizer.from_pretrained(str(cfg.tokenizer)))
    records, meta = load_records(path)
    per = {}
    for r in records:
        key = f"{r.db} {r.split}"
        per[key] = per.get(key, 0) + len(r.r)
    print(f"beat store {path}: " + ", ".join(f"{k} {v:,} beats" for k, v in sorted(per.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
