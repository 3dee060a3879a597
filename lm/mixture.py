"""The LM v2 training corpus: several token stores, every lead, source/lead prefixes, condition dropout.

One :class:`MixedCorpus` holds, per split, one *stream* per (store entry): its codes, with inline rhythm
changes and beat labels when the LM is conditional (:func:`ecg2llm.lm.conditioning.label_events`, annotations
rescaled for augmented views), and a fixed prefix ``source:<db> lead:<lead>`` (:mod:`ecg2llm.lm.control`). A crop
is ``prefix + [rhythm in force at its start] + stream slice``; :class:`ecg2llm.lm.data.TrainBatches` prepends BOS.
It has the interface :class:`ecg2llm.lm.data.TrainBatches` and :class:`ecg2llm.lm.trainer.Trainer` use of
:class:`ecg2llm.lm.conditioning.ConditionedCorpus` (``random_crops``, ``tiles``, ``sequences``, ``counts``,
``longest``), so the trainer treats both alike.

What is scored stays what v1 scored: validation and test tiles come only from MIT-BIH's *original* MLII
signals (DS1 validation records, DS2), never from other leads, augmented views or CinC 2017; and the
n-gram baselines are fitted on DS1 MLII streams only (:meth:`sequences`), so "x the bigram" means the
same reference in every ablation whatever data the LM saw.

Training crops draw a stream with probability proportional to its number of crop positions (every
position of the mixture equally likely, as :meth:`ecg2llm.tokenizer.store.TokenStore.random_crops` does; with
``source_weights``, each database's share of crops is its weight, positions equally likely within it; with
``record_weights``, an MIT-BIH record's positions, every lead and view, count that many times), then,
in a conditional LM, apply classifier-free-guidance dropout (:func:`ecg2llm.lm.control.drop_conditions`) with the
same generator, so a batch stays a pure function of the step.
"""
from __future__ import annotations

import numpy as np

from ecg2llm.core.errors import ConfigError, StoreError
from ecg2llm.tokenizer.data import read_annotations

from .conditioning import interleave, label_events, rhythm_in_force, sample_crops
from .control import ControlSpec, drop_conditions
from .corpora import CINC_DB, CINC_RHYTHM, base_record

EVAL_LEAD = "MLII"


class MixedCorpus:
    """Streams of MIT-BIH (and optionally CinC 2017) stores with v2 control tokens.

    Parameters
    ----------
    stores : list of (TokenStore, str)
        Each store with its database name (``"mitdb"`` or ``"cinc2017"``).
    spec : ControlSpec
    train_leads : sequence of str
        Leads of MIT-BIH used for training (CinC's lead ``I`` is always used); evaluation is MLII only.
    data_dir : path or None
        Data root with MIT-BIH's ``.atr`` files (a conditional LM).
    fs, samples_per_token : float
        The tokenizer's rate and hop.
    train_sources : sequence of str
        Databases whose records are trained on (all of them by default; ``["mitdb"]`` to fine-tune).
    source_weights : dict of str to float, optional
        Share of training crops drawn from each database (normalized; e.g. ``{"mitdb": 3, "cinc2017": 1}``
        for a fine-tune that upweights MIT-BIH but keeps CinC 2017). None: in proportion to their tokens.
    exclude : set of str, optional
        CinC 2017 recordings left out of training (:func:`ecg2llm.lm.corpora.cinc2017_excluded`).
    record_weights : dict of str to float, optional
        Relative share of an MIT-BIH training record's crop positions (every lead and augmented view; unlisted
        records 1), inside its database's share: e.g. ``{"205": 0.25}`` draws record 205 a quarter as often,
        a de-duplication lever for records whose windows repeat so closely that the LM learns to copy them.
    """

    def __init__(self, stores, spec: ControlSpec, train_leads=("MLII",), data_dir=None, fs: float = 360.0,
                 samples_per_token: float = 10.0, train_sources=None, source_weights=None, exclude=None,
                 record_weights=None):
        self.spec = spec
        self.source_weights = dict(source_weights) if source_weights else None
        self.record_weights = {str(k): float(v) for k, v in (record_weights or {}).items()}
        self._scale: dict[tuple[str, int], list[float]] = {}
        self.path = ", ".join(str(s.path) for s, _ in stores)
        self.streams: dict[str, list[np.ndarray]] = {}
        self.rhythm_at: dict[str, list[np.ndarray]] = {}
        self.prefix: dict[str, list[list[int]]] = {}
        self.names: dict[str, list[tuple[str, str, str]]] = {}  # (db, record, lead)
        want = set(train_sources) if train_sources else {db for _, db in stores}
        exclude = set(exclude or ())
        self.excluded = 0
        null_r = spec.null_rhythm_id
        for store, db in stores:
            views = store.meta.get("views", {})
            labels = store.meta.get("labels", {})
            for e in store.entries():
                original = base_record(e.record) == e.record
                if e.split == "train":
                    if db not in want or (db == "mitdb" and e.lead not in train_leads):
                        continue
                    if db == CINC_DB and e.record in exclude:
                        self.excluded += 1
                        continue
                elif e.split not in ("valid", "test") or db != "mitdb" or e.lead != EVAL_LEAD or not original:
                    continue
                codes = np.asarray(store.tokens_of(e), dtype=np.int64)
                initial = null_r
                if spec.conditional and db == CINC_DB:
                    r = CINC_RHYTHM.get(labels.get(e.record, "~"))
                    initial = spec.id_of(f"rhythm:{r}") if r else null_r
                    stream = codes
                elif spec.conditional:
                    ann = read_annotations(base_record(e.record), data_dir, fs)
                    tempo = float(views.get(e.record, {}).get("tempo", 1.0))
                    if tempo != 1.0:  # the view plays the record tempo x faster: sample s -> s / tempo
                        ann.sample = np.round(ann.sample / tempo).astype(np.int64)
                    pos, ids, initial = label_events(ann, len(codes), samples_per_token, fs, spec)
                    stream = interleave(codes, pos, ids)
                else:
                    stream = codes
                self.streams.setdefault(e.split, []).append(stream)
                self.rhythm_at.setdefault(e.split, []).append(
                    rhythm_in_force(stream, initial, spec) if spec.conditional else None)
                self.prefix.setdefault(e.split, []).append(spec.prefix(db, e.lead))
                self.names.setdefault(e.split, []).append((db, e.record, e.lead))
        if self.record_weights:
            have = sorted({base_record(rec) for db, rec, _ in self.names.get("train", []) if db == "mitdb"})
            unknown = sorted(set(self.record_weights) - set(have))
            if unknown:
                raise ConfigError(f"record_weights name {unknown}, which are not MIT-BIH training records of "
                                  f"{self.path}; the training records are {have}")

    # ------------------------------------------------------------------ sizes, counts, baselines
    @property
    def n_prefix(self) -> int:
        """Tokens before the stream: source, lead, and the rhythm of a conditional LM."""
        return 3 if self.spec.conditional else 2

    def n_tokens(self, split: str = "train", db: str | None = None) -> int:
        return sum(len(s) for s, n in zip(self.streams.get(split, []), self.names.get(split, []))
                   if db is None or n[0] == db)

    def counts(self, split: str = "train") -> dict[str, int]:
        """Occurrences of each control token in ``split``: inline, plus each stream's initial rhythm."""
        ids = np.concatenate(self.streams.get(split, [np.zeros(0, np.int64)])
                             + [r[:1] for r in self.rhythm_at.get(split, []) if r is not None])
        c = np.bincount(ids[ids >= self.spec.first_id] - self.spec.first_id, minlength=self.spec.n_tokens)
        return {n: int(k) for n, k in zip(self.spec.names, c.tolist())}

    def sequences(self, split: str) -> list[np.ndarray]:
        """Streams of MIT-BIH's original MLII records of ``split``: what the n-gram baselines fit."""
        return [s for s, (db, rec, lead) in zip(self.streams.get(split, []), self.names.get(split, []))
                if db == "mitdb" and lead == EVAL_LEAD and base_record(rec) == rec]

    def longest(self, split: str) -> int:
        return max((len(s) + self.n_prefix for s in self.streams.get(split, [])), default=0)

    # ------------------------------------------------------------------ crops
    def _crop(self, split: str, r: int, s: int, length: int) -> np.ndarray:
        out = np.empty(length, np.int64)
        head = self.prefix[split][r] + ([int(self.rhythm_at[split][r][s])] if self.spec.conditional else [])
        out[:len(head)] = head
        out[len(head):] = self.streams[split][r][s:s + length - len(head)]
        return out

    def random_crops(self, length: int, n: int, split: str = "train",
                     rng: np.random.Generator | None = None) -> np.ndarray:
        """``n`` crops of ``length`` tokens (prefix + stream), shape ``(n, length)``; CFG dropout on train."""
        rng = rng if rng is not None else np.random.default_rng()
        body = length - self.n_prefix
        weighted = self.source_weights or self.record_weights
        scale = self._crop_scale(split, body) if split == "train" and weighted else None
        out = sample_crops(self.streams.get(split, []), body, n, length,
                           lambda r, s: self._crop(split, r, s, length), rng,
                           f"no stream in split {split!r} of {self.path}", scale=scale)
        if split == "train" and self.spec.conditional and self.spec.condition_dropout > 0:
            out = drop_conditions(out, self.spec, self.spec.condition_dropout, rng)
        return out

    def _crop_scale(self, split: str, body: int) -> list[float]:
        """Per-stream factors that give database ``db`` a share ``w_db / sum(w)`` of the crops and an MIT-BIH
        record its ``record_weights`` share of positions within it (computed once per split and crop length:
        :meth:`random_crops` runs every training step)."""
        key = (split, body)
        if key not in self._scale:
            self._scale[key] = self._compute_scale(split, body)
        return self._scale[key]

    def _compute_scale(self, split: str, body: int) -> list[float]:
        names, streams = self.names.get(split, []), self.streams.get(split, [])
        rw = [self.record_weights.get(base_record(rec), 1.0) if db == "mitdb" else 1.0 for db, rec, _ in names]
        if not self.source_weights:
            return rw
        dbs = sorted({db for db, _, _ in names})
        missing = [db for db in dbs if db not in self.source_weights]
        if missing:
            raise ConfigError(f"source_weights {self.source_weights} give no weight to {missing}, which "
                              f"split {split!r} trains on")
        starts = {db: sum(max(len(s) - body + 1, 0) * w for s, n, w in zip(streams, names, rw) if n[0] == db)
                  for db in dbs}
        return [self.source_weights[db] * w / starts[db] if starts[db] else 0.0
                for (db, _, _), w in zip(names, rw)]

    def tiles(self, split: str, length: int, max_crops: int = 0) -> np.ndarray:
        """Non-overlapping crops over every stream of ``split`` (an evenly spaced subset if ``max_crops``)."""
        body = length - self.n_prefix
        starts = [(r, body * k) for r, s in enumerate(self.streams.get(split, []))
                  for k in range(len(s) // body)]
        if not starts:
            raise StoreError(f"split '{split}' of {self.path} has no stream with >= {body} tokens")
        if 0 < max_crops < len(starts):
            keep = np.unique(np.linspace(0, len(starts) - 1, max_crops).round().astype(np.int64))
            starts = [starts[i] for i in keep]
        return np.stack([self._crop(split, r, s, length) for r, s in starts])


def open_corpus(cfg, tok):
    """The stores, spec and :class:`MixedCorpus` of a v2 run (``cfg.sources`` non-empty), built if missing.

    The MIT-BIH store (``cfg.store``, every lead, ``cfg.augment_views`` views) is always opened: it holds the
    validation and test records. The CinC 2017 store (``cfg.cinc_store``) is opened when ``"cinc2017"`` is
    in ``cfg.sources`` (CinC is training data only).

    Returns
    -------
    (TokenStore, MixedCorpus, ControlSpec)
        The MIT-BIH store, the corpus, and its spec (``counts`` filled from the training streams).
    """
    from .corpora import build_cinc2017_store, build_mitdb_store, cinc2017_excluded, open_or_build

    unknown = [s for s in cfg.sources if s not in ("mitdb", CINC_DB)]
    if unknown:
        raise ConfigError(f"unknown sources {unknown}; choose from ['mitdb', '{CINC_DB}']")
    mitdb = open_or_build(cfg.store, build_mitdb_store, tok, data_dir=cfg.data_dir, records=list(cfg.records),
                          leads=("all",), valid_records=list(cfg.valid_records), views=cfg.augment_views,
                          seed=cfg.seed, mix_deg=float(cfg.augment_mix_deg))
    have = mitdb.meta.get("build", {}).get("valid_records")
    if have is not None and sorted(have) != sorted(str(r) for r in cfg.valid_records):
        raise StoreError(f"token store {cfg.store} holds validation records {have}, the config asks for "
                         f"{list(cfg.valid_records)}; point --store at another folder")
    n_views = len({k.split("@a")[1] for k in mitdb.meta.get("views", {})})
    if n_views != cfg.augment_views:
        raise StoreError(f"token store {cfg.store} holds {n_views} augmented views per record, the config "
                         f"asks "
                         f"for {cfg.augment_views}; point --store at another folder (built on first use)")
    have_mix = float(mitdb.meta.get("augment_mix_deg", 0.0))
    if n_views and have_mix != float(cfg.augment_mix_deg):
        raise StoreError(f"token store {cfg.store} rotates its views' leads by up to {have_mix:g} deg, the config "
                         f"asks for augment_mix_deg {cfg.augment_mix_deg:g}; point --store at another folder "
                         "(built on first use)")
    stores = [(mitdb, "mitdb")]
    exclude: set[str] = set()
    if CINC_DB in cfg.sources:
        cinc = open_or_build(cfg.cinc_store, build_cinc2017_store, tok, data_dir=cfg.data_dir,
                             max_records=cfg.cinc_max_records)
        stores.append((cinc, CINC_DB))
        if cfg.cinc_labels or cfg.cinc_min_r_mv > 0:
            exclude = cinc2017_excluded(cinc.meta.get("labels", {}), cfg.cinc_labels, cfg.cinc_min_r_mv,
                                        data_dir=cfg.data_dir)
    spec = ControlSpec(first_id=int(tok.vocab_size) + 3, lead_s=float(cfg.condition_lead_s),
                       conditional=bool(cfg.conditioning), condition_dropout=float(cfg.condition_dropout))
    corpus = MixedCorpus(stores, spec, train_leads=list(cfg.leads), data_dir=cfg.data_dir, fs=tok.fs,
                         samples_per_token=tok.samples_per_token, train_sources=list(cfg.sources),
                         source_weights=dict(zip(cfg.sources, cfg.source_weights)) or None, exclude=exclude,
                         record_weights=cfg.record_weights)
    corpus.cinc_excluded = sorted(exclude)  # recorded in the model folder's training_data.json
    if exclude:
        print(f"cinc2017: {corpus.excluded} recordings left out of training (labels kept: "
              f"{list(cfg.cinc_labels) or 'all'}, R amplitude >= {cfg.cinc_min_r_mv} mV); "
              f"{corpus.n_tokens('train', CINC_DB):,} CinC tokens remain", flush=True)
    spec.counts = corpus.counts("train")
    return mitdb, corpus, spec
