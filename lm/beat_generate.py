"""LM v3 generation: beat stream (GPT) -> detail tokens (:mod:`ecg2llm.lm.beat_detail`) -> tokenizer v3 decode -> mV.

The request is :class:`ecg2llm.lm.synthesize.GenerateConfig` (the one request object of ``lm/generate.py``,
:meth:`ecg2llm.ECGPipeline.generate` and this loop; v3 reads ``num_samples``, ``seconds``, ``seed``,
``temperature``/``top_k``/``top_p``, ``batch_size``, ``condition``, ``guidance``, ``source``, ``lead``,
``texture``, ``detail``, and ``kv_cache``: ``"float16"`` opts in to the faster float16 KV cache, other draws;
``"auto"``/``"float32"`` keep the float32 one). :class:`BeatLM` works out the model's control spec, layout and
type masks once per loaded model; :meth:`BeatLM.synthesize` builds the processor list (classifier-free guidance when a
condition and ``guidance`` are given, the type mask, the warpers) and runs :func:`ecg2llm.lm.sampler.generate_tokens`.

Conditions are control tokens only: ``rhythm:<r>`` and ``beat:<c>`` set the prefix (the other one stays
null); with a per-beat rhythm slot (``BeatLayout.rhythm_slot``) ``rhythm:<r>`` is also every beat's rhythm
slot, a control token written from the request like the prefix (the type mask allows only it there).
With no condition at all, ``rhythm_slot="sample"`` lets the model draw the prefix rhythm and beat tokens and
every rhythm slot (the training prior: rhythms and episodes as in the data); ``"null"`` holds the prefix
conditions and the slots at ``rhythm:?`` / ``beat:?`` (the guidance-null distribution); the model's default is
``config.ecg_stream["unconditional_rhythm"]``. ``guidance`` g mixes in
the branch with null prefix conditions and null rhythm slots. Nothing writes a label or an RR interval: the
model draws every beat's label, RR and coarse tokens; generated beats keep the labels the model drew
(``beat:?`` ones get no annotation). The v2 sampler rules (grammar, beat cache, label gap, lead guidance)
do not exist here and are refused if asked for. One opt-in processor exists: ``label_guidance`` s
(:class:`ecg2llm.lm.sampler.LabelContrast`) pushes the RR and coarse tokens of the beats the model labelled S, V
or F (and the RR after them) away from what the same sequence with N labels predicts; it writes no label and
no RR, and measurements are reported with and without it (``docs/lm.md``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ecg2llm.core.errors import ConfigError
from ecg2llm.tokenizer.ecg import BeatLabels

from .beat_layout import N_PREFIX, spec_of_model
from .control import NULL_BEAT, NULL_RHYTHM
from .sampler import Branch, ClassifierFreeGuidance, LabelContrast, TypeMask, generate_tokens, warpers

MIN_RR_S = 0.25  # shortest RR the tokenizer codes: bounds the beats a sample of `seconds` can need
CHUNK_RR_S = 0.8  # draw_beats' first chunk holds the beats `seconds` (+ 1 s) need at this mean RR


@dataclass
class BeatSamples:
    """Drawn beats of ``K`` samples (rows padded to the longest with -1 / ``""``)."""

    labels: list          # per sample: (n,) AAMI class or "" (null) per beat
    rr: list              # per sample: (n,) RR token indices
    coarse: list          # per sample: (n, Kc)
    detail: list          # per sample: (n, Kd)
    rhythm: list          # per sample: the rhythm condition (or None)
    beat_rhythm: list = None  # per sample: (n,) rhythm slot of each beat ("" null), or None (no rhythm slot)


RHYTHM_SLOT_MODES = ("sample", "null")


class BeatLM:
    """A loaded LM v3 with its tokenizer and detail model; the spec, layout and masks are computed here once.

    ``rhythm_slot``: what an unconditional request puts in the per-beat rhythm slot (``"sample"``: the model
    draws it; ``"null"``: ``rhythm:?``); None: the model's ``config.ecg_stream["unconditional_rhythm"]``.
    """

    def __init__(self, model, tok, detail=None, rhythm_slot: str | None = None):
        got = spec_of_model(model)
        if got is None:
            raise ConfigError("not an LM v3 (its config has no ecg_stream of kind 'beats')")
        self.model, self.tok, self.detail = model, tok, detail
        self.spec, self.layout = got
        self.vocab = self.spec.first_id + self.spec.n_tokens
        self.table = self.layout.allowed_table(self.spec, self.vocab)
        mode = rhythm_slot or model.config.ecg_stream.get("unconditional_rhythm", "sample")
        if mode not in RHYTHM_SLOT_MODES:
            raise ConfigError(f"rhythm_slot must be one of {RHYTHM_SLOT_MODES}, got {mode!r}")
        self.rhythm_slot = mode
        self.bos = int(model.config.bos_token_id)
        self.context = int(model.config.max_position_embeddings)
        self.timing = {"beat_stream_s": 0.0, "detail_s": 0.0, "decode_s": 0.0}  # seconds spent, summed over calls

    @classmethod
    def from_folder(cls, folder, device="cpu", tokenizer=None):
        from .model import load_lm

        model, path = load_lm(folder, device)
        return cls.of_loaded(model, path, tokenizer)

    @classmethod
    def of_loaded(cls, model, folder, tokenizer=None):
        """A :class:`BeatLM` of an LM v3 already loaded from ``folder``: its tokenizer copy (or ``tokenizer``, a
        name or folder) and its detail head."""
        from pathlib import Path

        from .beat_detail import load_detail
        from .beat_train import load_beat_tokenizer
        from .model import TOKENIZER_SUBDIR

        detail = load_detail(folder)
        if detail is None:
            import warnings

            from .beat_detail import SUBDIR

            warnings.warn(f"ecg2llm: {folder} has no detail head ({SUBDIR}/): its beats decode from their coarse "
                          f"tokens alone, smoother than real ones. Train one with python -m ecg2llm.lm.beat_detail "
                          f"--lm {folder} --store <its beat store>", stacklevel=2)
        return cls(model, load_beat_tokenizer(tokenizer or (Path(folder) / TOKENIZER_SUBDIR)), detail)

    # ------------------------------------------------------------------ requests
    def check(self, req) -> tuple[str | None, str | None]:
        """The requested (rhythm, beat class) from ``req.condition``, refusing v2-only settings."""
        if req.beat_cache or req.label_gap or req.lead_guidance is not None or req.contrast_lead is not None:
            raise ConfigError("LM v3 has no sampler rules: beat_cache, label_gap, lead_guidance and contrast_lead "
                              "are LM v2 settings; leave them unset (conditions act through the control tokens "
                              "and --guidance)")
        if req.prompt_record is not None:
            raise ConfigError("LM v3 does not continue prompts yet: leave --prompt_record unset")
        rhythm, beats = self.spec.parse_conditions(list(req.condition))
        if len(beats) > 1:
            raise ConfigError(f"LM v3 takes one beat condition, got {beats}")
        if req.guidance is not None and not (rhythm or beats):
            raise ConfigError(f"guidance={req.guidance} needs a condition (e.g. rhythm:AFIB or beat:V)")
        self.spec.source_id(req.source or "mitdb")
        self.spec.lead_id(req.lead or "MLII")
        return rhythm, (beats[0] if beats else None)

    def prefix(self, n: int, source: str, lead: str, rhythm: str | None, beat: str | None) -> torch.Tensor:
        s = self.spec
        row = [self.bos, s.source_id(source), s.lead_id(lead),
               s.id_of(f"rhythm:{rhythm}") if rhythm else s.id_of(NULL_RHYTHM),
               s.id_of(f"beat:{beat}") if beat else s.id_of(NULL_BEAT)]
        return torch.tensor([row] * n, dtype=torch.long, device=self.model.device)  # (n, 1 + N_PREFIX)

    def draws_prefix(self, rhythm, beat) -> bool:
        """Whether an unconditional request lets the model draw the prefix conditions (mode ``"sample"``)."""
        return bool(self.layout.rhythm_slot and self.rhythm_slot == "sample" and rhythm is None and beat is None)

    def mask_table(self, rhythm: str | None) -> torch.Tensor:
        """The type table of a request: the rhythm slot allows only the requested rhythm (the condition written
        from the request), or ``rhythm:?`` in mode ``"null"``, or any rhythm (the model draws it)."""
        if not self.layout.rhythm_slot or (rhythm is None and self.rhythm_slot == "sample"):
            return self.table
        t = self.table.clone()
        t[N_PREFIX] = False
        t[N_PREFIX, self.spec.id_of(f"rhythm:{rhythm}") if rhythm else self.spec.id_of(NULL_RHYTHM)] = True
        return t

    def processors(self, req, n: int, rhythm, beat) -> list:
        procs = []
        if req.guidance is not None and float(req.guidance) != 1.0:
            null = self.prefix(n, req.source or "mitdb", req.lead or "MLII", None, None)
            slots = [(0, self.spec.id_of(NULL_RHYTHM))] if self.layout.rhythm_slot else []
            procs.append(ClassifierFreeGuidance(self.model, null, float(req.guidance), self.max_len(req.seconds),
                                                self.layout.tokens_per_beat, vocab=self.vocab, null_slots=slots,
                                                kv_cache=kv_cache_of(req, self.model.device)))
        if req.label_guidance:  # opt-in: S/V/F beats contrasted with the same sequence under N labels
            procs.append(LabelContrast(self.model, float(req.label_guidance), self.max_len(req.seconds),
                                       self.layout.tokens_per_beat, 1 + N_PREFIX, self.layout.label_col,
                                       [self.spec.id_of(f"beat:{c}") for c in ("S", "V", "F")],
                                       self.spec.id_of("beat:N"), vocab=self.vocab,
                                       kv_cache=kv_cache_of(req, self.model.device)))
        procs.append(TypeMask(self.mask_table(rhythm), self.layout.slot_of))
        return procs + warpers(req.temperature, req.top_k, req.top_p)

    def max_len(self, seconds: float) -> int:
        need = 1 + N_PREFIX + (int(np.ceil(seconds / MIN_RR_S)) + 2) * self.layout.tokens_per_beat
        return min(self.context, need)

    # ------------------------------------------------------------------ sampling
    def draw_beats(self, ids, seconds: float, procs, gen, max_len: int, cache: dict, retire: bool = False):
        """Append beats to ``ids`` ``(B, L)`` in chunks until every row's new beats (those after ``ids``) have RR
        intervals summing to ``seconds``; chunks start at the beats a mean RR of ``CHUNK_RR_S`` needs, and never more
        than ``ceil(seconds / MIN_RR_S) + 2`` beats are drawn. ``cache`` keeps the KV cache between calls.

        With ``retire`` (and processors that allow it: :func:`retirable`), a row stops being computed once it has
        every beat its decode and detail tokens read (:meth:`_has_its_beats`); its later beats are copies of its
        last one, and the second value returned, ``(B,)`` beats
        actually drawn per row, says where they start. The chunks, the generator's stream and every draw of the
        rows still drawn are those of the whole batch, so the samples are the same as without ``retire`` up to
        each row's drawn beats. Returns ``(ids, drawn per row)`` (``drawn`` None without ``retire``)."""
        tpb, start = self.layout.tokens_per_beat, ids.shape[1]
        rr_s = torch.as_tensor(self.tok.rr_seconds(np.arange(self.layout.n_rr)), dtype=torch.float64)
        limit = int(np.ceil(seconds / MIN_RR_S)) + 2
        b = ids.shape[0]
        retire = bool(retire and RETIRE and retirable(procs))
        active = torch.arange(b)  # rows still drawn
        n_drawn = torch.zeros(b, dtype=torch.long)
        drawn = 0
        while drawn < limit:
            k = max(4, min(limit - drawn, int(np.ceil((seconds + 1) / CHUNK_RR_S)) - drawn))
            if len(active) == b:
                ids = _continue(self, ids, k * tpb, procs, gen, max_len, cache)
            else:
                got = _continue(self, ids[active], k * tpb, procs, gen, max_len, cache, rows=active, batch=b)
                tail = ids[:, -tpb:].repeat(1, k)  # retired rows: their last beat, repeated
                tail[active] = got[:, -k * tpb:]
                ids = torch.cat([ids, tail], 1)
            n_drawn[active] += k
            drawn += k
            rr = ids[:, start:].reshape(b, -1, tpb)[:, :, self.layout.label_col + 1].cpu()  # (B, beats) RR ids
            if bool((rr_s[rr].sum(1) >= seconds).all()):
                break
            if retire:
                rr_np = rr.numpy()
                keep = active[[not self._has_its_beats(rr_np[i], seconds, int(n_drawn[i])) for i in active.tolist()]]
                if 0 < len(keep) < len(active):
                    rel = torch.nonzero(torch.isin(active, keep)).flatten()
                    for p in procs:
                        if hasattr(p, "keep_rows"):
                            p.keep_rows(rel)
                    cache["branch"].keep_rows(rel)
                    active = keep
        return ids, (n_drawn if retire else None)

    def _has_its_beats(self, rr: np.ndarray, seconds: float, n_drawn: int) -> bool:
        """Whether a row with RR tokens ``rr`` (its ``n_drawn`` drawn beats first) needs no more beats: the decode
        uses the beats up to the first whose cycle starts at the end (:func:`ecg2llm.lm.beat_tokens.last_visible`),
        and the detail head reads the coarse tokens of ``window`` beats after a beat and the RR tokens of one more
        (:class:`ecg2llm.lm.beat_detail.DetailHead`)."""
        from .beat_tokens import last_visible

        i = last_visible(self.tok, rr[:n_drawn], int(round(seconds * self.tok.fs)))
        reach = int(self.detail.cfg.window) + 1 if self.detail is not None else 0
        return i is not None and n_drawn >= i + 1 + reach

    def sample_beats(self, req, n: int, seed: int) -> BeatSamples:
        """Draw beats of ``n`` samples until each covers ``req.seconds`` (RR sum), as :class:`BeatSamples`."""
        t0 = time.perf_counter()
        rhythm, beat = self.check(req)
        tpb = self.layout.tokens_per_beat
        gen = torch.Generator(device=self.model.device).manual_seed(int(seed))
        prompt = self.prefix(n, req.source or "mitdb", req.lead or "MLII", rhythm, beat)
        ids = prompt
        procs = self.processors(req, n, rhythm, beat)
        max_len = self.max_len(req.seconds)
        branch_cache: dict = {"kv_cache": kv_cache_of(req, self.model.device)}
        if self.draws_prefix(rhythm, beat):  # the model draws the prefix rhythm and beat tokens (its prior)
            ids = _continue(self, prompt[:, :1 + N_PREFIX - 2], 2, procs, gen, max_len, branch_cache)
        ids, n_drawn = self.draw_beats(ids, req.seconds, procs, gen, max_len, branch_cache, retire=True)
        units = ids[:, 1 + N_PREFIX:].reshape(n, -1, tpb).cpu().numpy()
        lab, rr, coarse = self.layout.split_units(units)
        beat_rhythm = [None] * n
        if self.layout.rhythm_slot:
            name = {self.spec.first_id + k: nm for k, nm in enumerate(self.spec.names)}
            beat_rhythm = [np.array([name[int(i)].split(":", 1)[1] if name[int(i)] != NULL_RHYTHM else ""
                                     for i in u[:, 0]]) for u in units]
        names = [self.spec.name_of(int(i)) for i in range(self.spec.first_id, self.spec.first_id + 5)]
        cls = np.where((lab >= self.spec.first_id) & (lab < self.spec.first_id + 5),
                       np.array([nm.split(":")[1] for nm in names])[np.clip(lab - self.spec.first_id, 0, 4)], "")
        t1 = time.perf_counter()
        det = self.detail.predict(rr, coarse, mode=req.detail, seed=seed) \
            if self.detail is not None else np.zeros((*rr.shape, self.layout.n_detail), np.int64)
        self.timing["beat_stream_s"] += t1 - t0
        self.timing["detail_s"] += time.perf_counter() - t1
        if n_drawn is None:
            return BeatSamples(list(cls), list(rr), list(coarse), list(det), [rhythm] * n, beat_rhythm)
        m = n_drawn.tolist()  # retired rows: only the beats they drew (the rest repeat their last one)
        return BeatSamples([c[:k] for c, k in zip(cls, m)], [r[:k] for r, k in zip(rr, m)],
                           [c[:k] for c, k in zip(coarse, m)], [d[:k] for d, k in zip(det, m)], [rhythm] * n,
                           [b if b is None else b[:k] for b, k in zip(beat_rhythm, m)])

    def decode(self, s: BeatSamples, seconds: float, *, texture: bool = False, seeds=None):
        """Signals ``(K, round(seconds fs))`` in mV and per sample its :class:`BeatLabels`.

        With ``texture`` the tokenizer adds its texture sample (seed ``seeds[i]``) and, where it has them, a
        state drawn by ``tok.sample_state`` (seed :func:`ecg2llm.lm.decode_options.wander_seed` of it): a
        baseline from its wander model, as LM v2 does, and a texture state from its texture prior
        (:mod:`ecg2llm.tokenizer.texture_prior`), which the texture sample then renders.
        """
        from .beat_tokens import decode_beats
        from .decode_options import wander_seed

        t0 = time.perf_counter()
        n_out = int(round(seconds * self.tok.fs))
        drawn = getattr(self.tok, "has_wander_model", False) or getattr(self.tok, "has_texture_prior", False)
        sig, ann = [], []
        for i in range(len(s.rr)):
            sd = None if seeds is None else seeds[i]
            state = self.tok.sample_state(n_out, seed=wander_seed(sd)) if texture and sd is not None and drawn else None
            x, r = decode_beats(self.tok, s.rr[i], s.coarse[i], s.detail[i], n_out, texture=texture, seed=sd,
                                state=state)
            keep = r < n_out  # (r: the beats decoded, up to the first past the end)
            labels = np.asarray(s.labels[i])[:len(r)]
            lab = [c for c, k in zip(labels, keep) if k and c]
            ann.append(BeatLabels(beat_sample=r[keep][[bool(c) for c in labels[keep]]], beat_class=lab,
                                  rhythm_sample=np.zeros(1 if s.rhythm[i] else 0, np.int64),
                                  rhythm=[s.rhythm[i]] if s.rhythm[i] else []))
            sig.append(x)
        self.timing["decode_s"] += time.perf_counter() - t0
        return np.stack(sig).astype(np.float32), ann

    def synthesize(self, req, progress: bool = False):
        """Sample and decode ``req.num_samples`` ECGs (batches of ``req.batch_size``, batch ``b`` seeded
        ``req.seed + b``): returns ``(signals (K, T) mV, annotations, BeatSamples, seconds_spent)``."""
        from tqdm.auto import tqdm

        from .decode_options import resolve_texture, texture_seed

        t0 = time.perf_counter()
        self.check(req)
        texture = resolve_texture(self.tok, req.texture)
        sig, ann, parts = [], [], []
        starts = list(range(0, req.num_samples, req.batch_size))
        for b, a in enumerate(tqdm(starts, desc="sampling beats", unit="batch", disable=not progress)):
            n = min(req.batch_size, req.num_samples - a)
            s = self.sample_beats(req, n, req.seed + b)
            seeds = [texture_seed(req.seed, a + i) for i in range(n)]
            x, an = self.decode(s, req.seconds, texture=texture, seeds=seeds)
            sig.append(x)
            ann.extend(an)
            parts.append(s)
        merged = BeatSamples(*[sum((getattr(p, f) for p in parts), []) for f in
                               ("labels", "rr", "coarse", "detail", "rhythm", "beat_rhythm")])
        return np.concatenate(sig), ann, merged, time.perf_counter() - t0


def kv_cache_of(req, device="cpu") -> str:
    """LM v3's KV cache for a request: ``"float16"`` only when asked for by name (``kv_cache="float16"``: CPU, a
    compiled kernel, ~1.4x faster at batch 128, other draws of the same distribution); ``"auto"`` and
    ``"float32"`` keep the float32 cache, whose logits are the model's (the same draws as ever)."""
    from .kvdecode import resolve_kv_cache

    choice = getattr(req, "kv_cache", "auto") or "auto"
    if choice != "float16":
        return "float32"
    return resolve_kv_cache("float16", device)  # refuses a GPU, and a machine where torch.compile fails


#: Whether :meth:`BeatLM.draw_beats` may retire rows that have their beats (``sample_beats``); off: every row is
#: computed until the last one has its beats, as before 0.3.3 (the same samples, slower).
RETIRE = True


def retirable(procs) -> bool:
    """Whether rows can be retired under ``procs``: each one acts row by row and either keeps no per-row state
    (the type mask, temperature, top-k, top-p) or can drop rows (``keep_rows``: classifier-free guidance)."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    stateless = (TypeMask, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)
    return all(isinstance(p, stateless) or hasattr(p, "keep_rows") for p in procs)


def _continue(blm: BeatLM, ids, n_new, procs, gen, max_len, cache, rows=None, batch=None):
    """:func:`generate_tokens` continued chunk by chunk with the same caches (kept in ``cache``)."""
    from transformers import LogitsProcessorList

    if "branch" not in cache:
        cache["branch"] = Branch(blm.model, max_len, 1 + N_PREFIX, blm.layout.tokens_per_beat, vocab=blm.vocab,
                                 kv_cache=cache.get("kv_cache", "float32"))
    return generate_tokens(blm.model, ids, n_new, LogitsProcessorList(procs), gen, max_len=max_len,
                           unit=blm.layout.tokens_per_beat, head=1 + N_PREFIX, vocab=blm.vocab,
                           branch=cache["branch"], rows=rows, batch=batch)


def generate_beats(cfg, model, folder, device: str) -> dict:
    """``lm/generate.py`` for an LM v3: sample, decode and write an ECG folder; returns the manifest."""
    from pathlib import Path

    from ecg2llm.core.io import git_sha, sha256_file, versions
    from ecg2llm.tokenizer.ecg import write_annotations
    from ecg2llm.tokenizer.folder import write_folder

    from .decode_options import resolve_texture

    t0 = time.perf_counter()
    blm = BeatLM.of_loaded(model, folder, cfg.tokenizer)
    tok = blm.tok

    texture = resolve_texture(tok, cfg.texture)  # None: on where the tokenizer has a texture model (as v2)
    signals, ann, s, t_gen = blm.synthesize(cfg, progress=True)
    lead = cfg.lead or "MLII"

    def per_sample(tmp, name: str, i: int, x):
        write_annotations(tmp, name, ann[i], tok.fs)
        info = {"atr": f"{name}.atr", **ann[i].summary()}
        if cfg.png:
            from .plots import save_record_png

            save_record_png(tmp / f"{name}.png", x, tok.fs, title=f"{name} (synthetic)")
            info["png"] = f"{name}.png"
        return info

    from dataclasses import asdict

    rhythm, beat = blm.check(cfg)
    extra = {
        "generator": "ecg2llm LM v3 (beats)", "config": asdict(cfg), "model_dir": str(folder),
        "model_sha256": sha256_file(Path(folder) / "model.safetensors"), "lm_version": 3,
        "tokenizer": {k: model.config.ecg_tokenizer.get(k) for k in ("fs", "weights_hash", "kind")},
        "conditioning": {"conditions": list(cfg.condition), "rhythm": rhythm, "beat": beat,
                         "guidance": cfg.guidance, "label_guidance": cfg.label_guidance,
                         "sampler": "ecg2llm.lm.sampler.generate_tokens",
                         "kv_cache": kv_cache_of(cfg, blm.model.device),
                         "beats_per_class": _class_totals(ann)},
        "detail": {"mode": cfg.detail if blm.detail is not None else "none (zeros: the LM has no detail head)"},
        "texture": {"on": texture},
        "timing": {"sampling_and_decoding_s": t_gen, "total_s": None, "device": device,
                   "ecg_seconds_per_second": cfg.num_samples * cfg.seconds / t_gen},
        "git_sha": git_sha(), "versions": versions(),
    }
    comment = f"synthetic ECG generated by ecg2llm (LM v3 {Path(folder).name}), seed {cfg.seed}; not a recording"
    beats_per_sample = max(len(r) for r in s.rr)
    tokens = np.full((len(s.rr), beats_per_sample, 2 + blm.layout.n_coarse), -1, np.int32)
    for i in range(len(s.rr)):
        n = len(s.rr[i])
        tokens[i, :n, 0] = [blm.spec.id_of(f"beat:{c}") if c else blm.spec.null_beat_id for c in s.labels[i]]
        tokens[i, :n, 1], tokens[i, :n, 2:] = s.rr[i], s.coarse[i]
    extra["timing"]["total_s"] = time.perf_counter() - t0
    return write_folder(Path(cfg.out), signals, tok.fs, lead=lead, comments=[comment], per_sample=per_sample,
                        extra=extra, arrays={"beat_units": tokens})


def _class_totals(ann) -> dict:
    tot: dict[str, int] = {}
    for a in ann:
        for c in a.beat_class:
            tot[c] = tot.get(c, 0) + 1
    return tot
