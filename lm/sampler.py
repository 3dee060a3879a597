"""The one generation loop of LM v3, steered by a list of ``transformers`` logits processors.

:func:`generate_tokens` appends ``n_new`` tokens to a batch of prompts (BOS + control prefix, optionally a
real beginning) with a KV cache (:class:`ecg2llm.lm.kvdecode.KVDecoder`), and at each step hands the full sequence
so far and the next-token logits to a :class:`transformers.LogitsProcessorList`: every kind of steering
is one processor with one ``__call__(input_ids, scores) -> scores``, as in ``transformers.generate``:

- :class:`ClassifierFreeGuidance` -- runs the same LM on the sequence with *null* conditions (``rhythm:?``,
  ``beat:?`` in the prefix and in every per-beat rhythm slot; Ho & Salimans 2022) and returns
  ``log p_null + g (log p_cond - log p_null)``;
- :class:`LabelContrast` (opt-in, ``GenerateConfig.label_guidance``) -- for the RR and coarse tokens of a beat
  the model labelled S, V or F (and the RR after it), ``log p + s (log p - log p_N)`` with ``p_N`` the LM reading
  those labels as ``beat:N``;
- :class:`TypeMask` -- only ids of the token type due at the next position (label, RR, coarse slot j);
- temperature / top-k / top-p: ``transformers``' own ``TemperatureLogitsWarper``, ``TopKLogitsWarper``,
  ``TopPLogitsWarper`` (:func:`warpers`).

No processor writes RR intervals or beat labels: the model draws every token; a processor only reweights
(guidance) or removes ids that are not of the due type. Sequences longer than the model's context slide:
the cache is rebuilt from the control prefix plus the most recent whole beats (:class:`Branch`), the same
way in every branch, so the conditional and null branches always read the same beats. Rows that have what
they need can leave the batch (:meth:`Branch.keep_rows`, ``keep_rows`` of the processors that hold a cache;
``rows``/``batch`` of :func:`generate_tokens` keep each remaining row's draws those of the whole batch).
"""
from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .kvdecode import KVDecoder, rows_on_workers


class Branch:
    """One KV-cached view of a growing batch of sequences (the sampled branch, or guidance's null branch).

    ``logits(ids)`` returns the next-token logits after ``ids`` ``(B, L)`` (the full sequence so far), feeding
    the cache only the tokens it has not seen. When ``L`` would exceed ``max_len`` the cache is rebuilt
    from ``ids[:, :head]`` (BOS + control prefix) and the last whole units (``unit`` tokens each, aligned on
    ``head``), keeping about ``keep`` of the window, so a slide happens once every ``(1 - keep) max_len``
    tokens and never splits a beat.
    """

    def __init__(self, model, max_len: int, head: int, unit: int, keep: float = 0.75, vocab: int | None = None,
                 kv_cache: str = "float32"):
        self.model, self.max_len, self.head, self.unit = model, int(max_len), int(head), int(unit)
        self.keep, self.vocab, self.kv_cache = float(keep), vocab, kv_cache
        self.dec, self.fed, self.start = None, 0, 0  # cache, tokens of ids seen, first stream token kept

    def _rebuild(self, ids: torch.Tensor, window: tuple | None = None) -> torch.Tensor:
        L = ids.shape[1]
        body = L - self.head
        room = max(self.unit, int(self.keep * (self.max_len - self.head)) // self.unit * self.unit)
        self.start = self.head + max(0, (body - room + self.unit - 1) // self.unit * self.unit) if L > self.max_len \
            else self.head
        window_ids = torch.cat([ids[:, :self.head], ids[:, self.start:]], 1) if L > self.head else ids
        self.dec = KVDecoder(self.model, ids.shape[0], self.max_len, kv_cache=self.kv_cache)
        self.fed = L
        return self.dec.step(window_ids, self.vocab, window)

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only the cache rows ``rows`` (indices into the current rows): the others are retired."""
        if self.dec is not None:
            self.dec.keep_rows(rows)

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor, window: tuple | None = None) -> torch.Tensor:
        """Next-token logits after ``ids``: ``(B, V)``, or with ``window`` ``(lo, hi)`` only ids ``lo .. hi - 1``
        (those columns of the full logits, bit for bit; :meth:`ecg2llm.lm.kvdecode.KVDecoder.step`)."""
        L = ids.shape[1]
        if self.dec is None or self.dec.pos + (L - self.fed) > self.max_len:
            return self._rebuild(ids, window)
        new = ids[:, self.fed:]
        self.fed = L
        return self.dec.step(new, self.vocab, window)


class ClassifierFreeGuidance(LogitsProcessor):
    """``log p_null + scale (log p_cond - log p_null)`` with ``p_null`` the LM under null conditions.

    Parameters
    ----------
    model
        The LM (the same one that gives the conditional scores).
    null_prefix : torch.Tensor
        ``(B, head)`` BOS + control prefix with the conditions replaced by their null tokens.
    scale : float
        Guidance scale (1: the conditional distribution; > 1: stronger adherence; 0: unconditional).
    max_len, unit : int
        As the sampled branch's :class:`Branch` (the two slide together).
    kv_cache : str
        The null branch's cache (:class:`ecg2llm.lm.kvdecode.KVDecoder`): ``"float32"`` or ``"float16"``.
    null_slots : sequence of (offset, id)
        Unit slots that are conditions too: in the null branch the token at every ``offset`` of a unit (0 =
        its first token) is replaced by ``id`` (LM v3's per-beat rhythm slot -> ``rhythm:?``).
    """

    def __init__(self, model, null_prefix: torch.Tensor, scale: float, max_len: int, unit: int,
                 vocab: int | None = None, null_slots=(), kv_cache: str = "float32"):
        self.null_prefix, self.scale, self.unit = null_prefix, float(scale), int(unit)
        self.null_slots = tuple((int(o), int(i)) for o, i in null_slots)
        self.branch = Branch(model, max_len, null_prefix.shape[1], unit, vocab=vocab, kv_cache=kv_cache)

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only rows ``rows`` of the null branch (as the sampled branch's :meth:`Branch.keep_rows`)."""
        self.null_prefix = self.null_prefix[rows]
        self.branch.keep_rows(rows)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        h = self.null_prefix.shape[1]
        null_ids = torch.cat([self.null_prefix, input_ids[:, h:]], 1)
        for o, i in self.null_slots:
            null_ids[:, h + o::self.unit] = i
        null = torch.log_softmax(self.branch.logits(null_ids), -1)
        cond = torch.log_softmax(scores, -1)
        out = null + self.scale * (cond - null)
        return torch.where(torch.isfinite(cond), out, cond)  # ids the model rules out stay out


class LabelContrast(LogitsProcessor):
    """Label-contrast guidance (LM v3, opt-in): ``log p + scale (log p - log p_N)`` with ``p_N`` the LM reading the
    same sequence with every S, V and F beat label replaced by ``beat:N``.

    Generated ectopic beats tend to copy the coarse tokens of the normal beat before them (V beats share 36 % of
    them, real V beats 13 %), so a real-data classifier calls many of them N. This asks each token of a beat
    for what its label changes: a V beat's RR and shape, and the RR of the beat after it (the pause that follows),
    as they differ from an N beat's. Every other token (labels, normal beats) passes through untouched. Its own
    KV cache (:class:`Branch`) runs beside the sampled one (fed only where it acts, catching up in one step).
    """

    def __init__(self, model, scale: float, max_len: int, unit: int, head: int, label_col: int, ectopic_ids,
                 normal_id: int, vocab: int | None = None, kv_cache: str = "float32"):
        self.scale, self.unit, self.head, self.label_col = float(scale), int(unit), int(head), int(label_col)
        self.ectopic = torch.as_tensor(list(ectopic_ids), dtype=torch.long)
        self.normal = int(normal_id)
        self.branch = Branch(model, max_len, head, unit, vocab=vocab, kv_cache=kv_cache)

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only rows ``rows`` of the contrast branch (as :meth:`Branch.keep_rows`)."""
        self.branch.keep_rows(rows)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        L = input_ids.shape[1]
        k, slot = divmod(L - self.head, self.unit)  # the beat the next token belongs to, and its slot
        if L < self.head or slot <= self.label_col:  # the prefix, or a label is due: untouched
            return scores
        at = self.head + self.label_col
        ect = self.ectopic.to(input_ids.device)
        rows = torch.isin(input_ids[:, at + k * self.unit], ect)  # this beat is S, V or F: its RR and shape
        if k > 0 and slot == self.label_col + 1:  # and the RR of the beat after one (the pause that follows it)
            rows |= torch.isin(input_ids[:, at + (k - 1) * self.unit], ect)
        if not bool(rows.any()):
            return scores  # (the contrast branch catches up on a later call)
        ids = input_ids.clone()
        lab = ids[:, self.head + self.label_col::self.unit]  # (B, beats so far): every beat's label
        ids[:, self.head + self.label_col::self.unit] = torch.where(torch.isin(lab, ect), self.normal, lab)
        contrast = torch.log_softmax(self.branch.logits(ids), -1)
        own = torch.log_softmax(scores, -1)
        out = own + self.scale * (own - contrast)
        out = torch.where(torch.isfinite(own), out, own)  # ids the model rules out stay out
        return torch.where(rows[:, None], out, scores)


class TypeMask(LogitsProcessor):
    """Only the ids of the token type due at the next position (``table[slot_of(position)]``).

    ``table``: ``(slots, V)`` bool (:meth:`ecg2llm.lm.beat_layout.BeatLayout.allowed_table`); ``slot_of``: position
    of the next token (0 = BOS) -> row.
    """

    def __init__(self, table: torch.Tensor, slot_of):
        self.table, self.slot_of = table, slot_of
        self._off: dict = {}  # (slot, V, device) -> ids that are not of the slot's type

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.masked(input_ids, scores)

    def masked(self, input_ids: torch.Tensor, scores: torch.Tensor, first: int = 0) -> torch.Tensor:
        """``scores`` with the ids not of the due type at -inf; ``first``: ``scores`` are the ids ``first ..
        first + W - 1`` (a window, :meth:`window`)."""
        key = (self.slot_of(input_ids.shape[1]), int(first), scores.shape[-1], scores.device)
        off = self._off.get(key)
        if off is None:
            off = self._off[key] = ~self.table[key[0], key[1]: key[1] + key[2]].to(scores.device)
        return scores.masked_fill(off, float("-inf"))

    def window(self, position: int, vocab: int) -> tuple[int, int] | None:
        """``(lo, hi)``: the ids ``0 <= lo .. hi - 1 <= vocab - 1`` that hold every id allowed at sequence
        ``position``, ``lo`` a multiple of :data:`WINDOW_ALIGN` and ``hi`` too or ``vocab``; None where that is
        the whole vocabulary or where torch's softmax over the window would not give the full rows' bits
        (:func:`softmax_window_ok`)."""
        slot = self.slot_of(position)
        key = ("window", slot, int(vocab), torch.get_num_threads())
        if key not in self._off:
            row = self.table[slot, :vocab]
            ids = torch.nonzero(row).flatten()
            got = None
            if ids.numel():
                a = WINDOW_ALIGN
                got = (int(ids[0]) // a * a, min(int(vocab), -(-(int(ids[-1]) + 1) // a) * a))
                if got[1] - got[0] == int(vocab) or not softmax_window_ok(row, *got):
                    got = None
            self._off[key] = got
        return self._off[key]


#: Windows of the vocabulary (:meth:`TypeMask.window`) start at multiples of this: torch's CPU softmax of a row
#: sums it in lanes that repeat every 64 entries (this build), so a window aligned so gives the full row's
#: probabilities bit for bit (:func:`softmax_window_ok` checks it, once per window).
WINDOW_ALIGN = 64
_SOFTMAX: dict = {}


def softmax_window_ok(table_row: torch.Tensor, lo: int, hi: int) -> bool:
    """Whether ``torch.softmax`` of logits ``(B, hi - lo)`` gives, bit for bit, columns ``lo .. hi - 1`` of the
    softmax of full rows that are -inf outside the allowed ids ``table_row`` ``(V,)`` (all inside the window).
    Checked once per process, window and thread count, on random logits."""
    v = int(table_row.shape[0])
    key = (v, int(lo), int(hi), tuple(torch.nonzero(table_row).flatten().tolist()), torch.get_num_threads())
    if key not in _SOFTMAX:
        g = torch.Generator().manual_seed(2)
        ok = bool(table_row[:lo].sum() == 0 and table_row[hi:].sum() == 0)
        for scale in (0.5, 3.0, 12.0):
            x = (torch.randn(48, v, generator=g) * scale).masked_fill(~table_row, float("-inf"))
            ok &= torch.equal(torch.softmax(x, -1)[:, lo:hi], torch.softmax(x[:, lo:hi].contiguous(), -1))
        _SOFTMAX[key] = bool(ok)
    return _SOFTMAX[key]


def warpers(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> list[LogitsProcessor]:
    """``transformers``' temperature / top-k / top-p warpers for the non-default settings."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    out: list[LogitsProcessor] = []
    if float(temperature) != 1.0:
        out.append(TemperatureLogitsWarper(float(temperature)))
    if int(top_k) > 0:
        out.append(TopKLogitsWarper(int(top_k)))
    if float(top_p) < 1.0:
        out.append(TopPLogitsWarper(float(top_p)))
    return out


@torch.inference_mode()
def generate_tokens(model, prompt: torch.Tensor, n_new: int, processors: LogitsProcessorList | list,
                    generator: torch.Generator, *, max_len: int, unit: int, head: int,
                    vocab: int | None = None, branch: Branch | None = None, kv_cache: str = "float32",
                    rows: torch.Tensor | None = None, batch: int | None = None) -> torch.Tensor:
    """Append ``n_new`` sampled tokens to ``prompt`` ``(B, P)``; returns ``(B, P + n_new)``.

    Parameters
    ----------
    processors : list of LogitsProcessor
        Applied in order to the next-token logits of the sampled branch (guidance first, then masks, then
        warpers); then one token per row is drawn from the softmax with ``generator``.
    max_len, unit, head : int
        Cache length (at most the model's context), tokens per unit (beat), prefix length (BOS + control);
        see :class:`Branch`.
    vocab : int, optional
        Only the first ``vocab`` rows of the head are computed (the ids that can be drawn).
    branch : Branch, optional
        The sampled branch's cache from an earlier call on the same rows (continue where it stopped).
    kv_cache : str
        A new branch's KV cache: ``"float32"`` (the model's logits; the default) or ``"float16"`` (CPU: half
        the bytes and a compiled one-query kernel, ~1.4x faster for LM v3 at batch 128; logits move by float16
        rounding, so a seed draws other samples of the same distribution).
    rows, batch : optional
        ``prompt`` holds rows ``rows`` (sorted indices) of a batch of ``batch`` rows whose others are retired
        (:meth:`Branch.keep_rows`): the generator advances as for the whole batch, so each row draws what it
        would draw there.
    """
    from .draws import Draws

    procs = _plain(processors)
    branch = branch if branch is not None else Branch(model, max_len, head, unit, vocab=vocab, kv_cache=kv_cache)
    out = torch.empty(prompt.shape[0], prompt.shape[1] + int(n_new), dtype=torch.long, device=prompt.device)
    out[:, :prompt.shape[1]] = prompt
    v = int(vocab or model.lm_head.weight.shape[0])
    mask = procs[0] if WINDOWS and procs and isinstance(procs[0], TypeMask) \
        and all(isinstance(p, _WINDOW_SAFE) for p in procs[1:]) else None
    with Draws(generator, prompt.device) as draw, rows_on_workers(model, prompt.shape[0], prompt.device, vocab):
        # torch.multinomial's draws (lm/draws.py, faster on CPU); one-token steps on row groups (lm/kvdecode.py)
        for t in range(int(n_new)):
            ids = out[:, :prompt.shape[1] + t]
            win = mask.window(ids.shape[1], v) if mask is not None and draw.em is not None else None
            if win is None:  # every id of the vocabulary
                scores = branch.logits(ids)
                for p in procs:
                    scores = p(ids, scores)
                out[:, prompt.shape[1] + t] = draw(torch.softmax(scores.float(), -1), None, rows, batch)
            else:  # only the window of ids that holds the due type: the same probabilities there, the same draw
                scores = mask.masked(ids, branch.logits(ids, win), win[0])
                for p in procs[1:]:
                    scores = p(ids, scores)
                out[:, prompt.shape[1] + t] = draw(torch.softmax(scores.float(), -1), (win[0], v), rows, batch)
    return out


#: Whether :func:`generate_tokens` computes only the window of ids that holds the due type (when the
#: processors allow it: a :class:`TypeMask` first, then only temperature / top-k). Off: every id, as before.
WINDOWS = True


def _window_safe():
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper

    # temperature divides each logit; top-k after the type mask keeps the same ids in a window that holds every
    # allowed one (the ids outside are -inf either way)
    return (TemperatureLogitsWarper, TopKLogitsWarper)


_WINDOW_SAFE = _window_safe()


def _plain(processors) -> LogitsProcessorList | list:
    """The processors to call as ``p(ids, scores)`` in turn; a processor that takes more arguments keeps
    ``LogitsProcessorList``'s own call (which passes them on)."""
    import inspect

    procs = list(processors)
    if any(len(inspect.signature(p.__call__).parameters) > 2 for p in procs):
        return [LogitsProcessorList(procs)]
    return procs
