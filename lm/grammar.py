"""Rhythm grammars: the beat-class sequence a rhythm condition *means*, imposed on an LM v2's beat labels.

A conditional LM v2 writes an inline ``beat:<class>`` token 0.2 s before every R peak it draws
(:mod:`ecg2llm.lm.conditioning`), so the class of each beat it is about to draw is a token the sampler sees. Several
rhythms are *defined* by that class sequence:

============  ==============================  ==========================================
rhythm        beat classes, in order          definition (MIT-BIH rhythm notes)
============  ==============================  ==========================================
``N``         N N N ...                       normal sinus rhythm: every beat conducted
``B``         N V N V ...                     ventricular bigeminy: every other beat a PVC
``T``         N N V N N V ...                 ventricular trigeminy: every third beat a PVC
``VT``        V V V ...                       ventricular tachycardia: a run of PVCs, > 100 bpm
============  ==============================  ==========================================

The shipped LM v2 saw few of the rare rhythms (``rhythm:B`` 174 and ``rhythm:VT`` 234 notes in DS1, from
a handful of patients) and, asked for one, mostly draws sinus beats: its rhythm prefix alone does not carry
the condition through a 10-s window. A grammar constrains *which* class each drawn beat has -- at every
step the probability the model gives to "a beat starts here" (the sum over ``beat:*``) is moved onto the
class the pattern expects next -- and leaves every code of the waveform to the model: morphology, noise
and (inside the timing windows below) *when* a beat starts stay the LM's own. The LM then draws the
complex its label announces (a wide V complex after ``beat:V``), as it learned from the annotated
MIT-BIH streams.

Bigeminy, trigeminy and VT are also defined by their timing (a premature V beat, then a compensatory
pause; VT > 100 bpm), so their grammars carry an RR window per pattern beat, read off DS1's annotations
(:data:`GRAMMARS`): before the window opens no beat may start (the beat tokens are masked); once it
closes the beat must start (every code is masked); the first beat must start within one longest RR of the
start of sampling. Inside the window the LM decides. Sinus rhythm ``N``
has a wide absolute window (48-120 bpm) and a regularity one: each RR within 0.94-1.07 of the previous (DS1's 5-95 %
range, :data:`RR_RATIO`), so the rate may drift as a sinus rate does, not jump.

This is constrained decoding (the model's distribution restricted to sequences of the requested rhythm),
not something the LM learned: ``docs/notes/lm-v2-notebook.md`` reports adherence with and without it. Rhythms without a
grammar (``AFIB``, ``SVTA``...) are sampled from the rhythm prefix alone, and so is a request that also
names beat classes (``rhythm:N,beat:V``: the beats asked for win over the grammar). Switch it off with
``grammar=False`` (``lm/generate.py --grammar false``, ``ECGPipeline.generate(request=GenerateConfig(grammar=False))``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

#: Per rhythm, the cycled pattern of ``(beat class, shortest RR, longest RR)`` in seconds before that beat
#: (None: the LM's own timing), read off DS1's annotated RR in that rhythm (:func:`rr_quantiles`), rounded:
#: sinus N after N 0.50-1.22 s (1-99 %); 5-95 % for the others: bigeminy V 0.47-0.65 s, N after V
#: 0.84-1.40 s; trigeminy N after V 0.65-1.44, N after N 0.57-1.22, V 0.47-1.01 (its V coupling narrowed to
#: bigeminy's 0.45-0.65: the upper part is DS1's slow, barely premature trigeminy); VT 0.29-0.72 s (median
#: 0.51), narrowed to its faster half, 0.30-0.50 s = 120-200 bpm: > 100 bpm is in the rhythm's definition,
#: and at 0.30-0.55 s a detector that misses one generated complex in ten read half the windows below 100.
GRAMMARS: dict[str, tuple[tuple[str, float | None, float | None], ...]] = {
    "N": (("N", 0.50, 1.22),),  # DS1 (N RR between N beats, 1-99 %: 48-120 bpm)
    "B": (("N", 0.85, 1.40), ("V", 0.45, 0.65)),
    "T": (("N", 0.85, 1.40), ("N", 0.60, 1.15), ("V", 0.45, 0.65)),  # N after V, N after N, V
    "VT": (("V", 0.30, 0.50),),
}

#: Per rhythm, the range of ``RR_i / RR_{i-1}`` allowed between two successive beats (None: free). Sinus
#: rhythm changes its rate smoothly: in DS1's ``(N`` episodes, between N beats, the ratio's 5-95 % range is
#: 0.94-1.07 (:func:`successive_rr_ratio`, 36,177 beats) -- the beat-to-beat regularity the rhythm is
#: named for, which the LM alone draws in too few windows.
RR_RATIO: dict[str, tuple[float, float]] = {"N": (0.94, 1.07)}


@dataclass
class BeatGrammar:
    """A rhythm's grammar on one device: the cycled beat ids and their RR windows in codes.

    Attributes
    ----------
    pattern : torch.Tensor
        ``(P,)`` ids of the beat tokens, cycled.
    lo, hi : torch.Tensor
        ``(P,)`` shortest / longest RR before each pattern beat, in codes (0 / a huge number: no limit).
    beat_ids : torch.Tensor
        ``(5,)`` ids of every ``beat:<class>`` token.
    ratio : (float, float), optional
        Allowed ``RR_i / RR_{i-1}`` (:data:`RR_RATIO`), once two beats have been drawn.
    """

    pattern: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    beat_ids: torch.Tensor
    ratio: tuple[float, float] | None = None

    @classmethod
    def for_rhythm(cls, rhythm: str | None, spec, tokens_per_second: float, device) -> "BeatGrammar | None":
        """The grammar of ``rhythm`` for an LM with control spec ``spec`` (None: that rhythm has none)."""
        if rhythm is None or rhythm not in GRAMMARS or not spec.conditional:
            return None
        rows = GRAMMARS[rhythm]
        unseen = sorted({c for c, _, _ in rows if spec.counts and spec.counts.get(f"beat:{c}", 0) == 0})
        if unseen:
            from ecg2llm.core.errors import ConfigError

            raise ConfigError(f"the rhythm:{rhythm} grammar needs beat:{', beat:'.join(unseen)}, which this LM "
                              f"never saw in training; sample it with grammar=False (--grammar false)")
        pattern = torch.tensor([spec.id_of(f"beat:{c}") for c, _, _ in rows], device=device)
        lo = torch.tensor([0 if a is None else int(round(a * tokens_per_second)) for _, a, _ in rows],
                          device=device)
        hi = torch.tensor([2 ** 30 if b is None else max(1, int(round(b * tokens_per_second)))
                           for _, _, b in rows], device=device)
        return cls(pattern, lo, hi, torch.as_tensor(spec.beat_ids(), device=device), RR_RATIO.get(rhythm))

    def new_state(self, b: int, gen: torch.Generator, device) -> dict:
        """Per-row state: beats drawn so far (a random phase in the pattern) and codes since the last beat.

        The first beat of a sequence has no RR before it: ``since`` starts at the pattern's shortest RR, so
        it may come at once, and it must come within one longest RR of the start (``grace``): a window of
        the rhythm holds a beat in its first RR. (Before, the first beat was never forced, and an LM that
        opened in an unlabelled stream format drew a whole "rhythm:VT" window without a beat: 4 of 40.)
        """
        phase = torch.randint(0, len(self.pattern), (b,), generator=gen, device=device)
        return {"beats": phase, "since": self.lo[phase].clone(), "grace": self.lo[phase].clone(),
                "first": torch.ones(b, dtype=torch.bool, device=device),
                "last_rr": torch.zeros(b, dtype=torch.long, device=device)}  # 0: no RR drawn yet

    def apply(self, logits: torch.Tensor, state: dict, n_codes: int) -> torch.Tensor:
        """``(b, V)`` mixed logits -> the same with the beat mass on the expected class and the RR rules.

        ``n_codes``: ids below it are ECG codes (the codebook size).
        """
        out = logits.clone()
        mass = torch.logsumexp(logits[:, self.beat_ids], dim=1)  # (b,) log P(a beat starts here)
        out[:, self.beat_ids] = -float("inf")
        k = state["beats"] % len(self.pattern)  # (b,) which pattern beat comes next
        lo, hi = self.lo[k], self.hi[k]
        if self.ratio is not None:  # relative to the last RR, once there is one
            known = state["last_rr"] > 0
            rlo = torch.floor(state["last_rr"] * self.ratio[0]).long()
            rhi = torch.ceil(state["last_rr"] * self.ratio[1]).long()
            lo = torch.where(known, torch.maximum(lo, rlo), lo)
            hi = torch.where(known, torch.minimum(hi, rhi), hi)
        early = state["since"] < lo  # (b,) too soon for it: no beat yet
        mass = torch.where(early, torch.full_like(mass, -float("inf")), mass)
        out.scatter_(1, self.pattern[k][:, None], mass[:, None])
        late = state["since"] >= hi + torch.where(state["first"], state["grace"], 0)  # (b,) RR used up: beat now
        out[late, :n_codes] = -float("inf")
        return out

    def update(self, state: dict, tok: torch.Tensor, n_codes: int) -> None:
        """Advance the state by the drawn ``(b,)`` tokens (in place)."""
        is_beat = torch.isin(tok, self.beat_ids)
        state["beats"] = state["beats"] + is_beat.long()
        state["last_rr"] = torch.where(is_beat & ~state["first"], state["since"], state["last_rr"])
        state["since"] = torch.where(is_beat, torch.zeros_like(state["since"]),
                                     state["since"] + (tok < n_codes).long())
        state["first"] = state["first"] & ~is_beat


#: The longest beat-to-beat gap (s) of a labelled MIT-BIH stream that :class:`LabelGap` allows: DS1's
#: annotated RR intervals have a 99.9th percentile of 1.84 s (50,999 intervals; median 0.74 s), so 2.0 s
#: (30 bpm) cuts 0.1 % of real intervals.
MAX_LABEL_GAP_S = 2.0


@dataclass
class LabelGap:
    """Keep a labelled stream labelled: a ``beat:<class>`` token at least every ``hi`` codes.

    A conditional LM v2 learned two stream formats under one vocabulary: MIT-BIH's, a beat label before
    every R peak, and CinC 2017's, a rhythm prefix and no beat labels at all. Sampled unconditionally under
    ``source:mitdb``, the shipped ``default`` sometimes slips into the second one part-way through a
    sample (fewer than 25 labels in 30 s in 16 % of its samples), and those samples hold most of its
    noise-like, beat-inconsistent windows (``docs/notes/lm-v2-notebook.md``). This rule masks every ECG code once ``hi``
    codes have passed since the last beat label, so the next token is a beat label, its class the LM's
    choice (the null ``beat:?`` excluded). Rows whose rhythm prefix is the null ``rhythm:?`` (the
    condition-dropout format, unlabelled by design) are left alone (``active``). It has the
    :class:`BeatGrammar` interface (``new_state`` / ``apply`` / ``update``) and is used where no grammar
    is (no rhythm requested).
    """

    hi: int
    beat_ids: torch.Tensor

    @classmethod
    def for_model(cls, spec, tokens_per_second: float, device, max_gap_s: float = MAX_LABEL_GAP_S) -> "LabelGap":
        """The rule for an LM with control spec ``spec``, ``max_gap_s`` seconds at ``tokens_per_second``."""
        if not max_gap_s > 0:
            from ecg2llm.core.errors import ConfigError

            raise ConfigError(f"label_gap must be > 0 seconds (e.g. {MAX_LABEL_GAP_S}), got {max_gap_s}")
        return cls(max(1, int(round(float(max_gap_s) * tokens_per_second))),
                   torch.as_tensor(spec.beat_ids(), device=device))

    def new_state(self, active: torch.Tensor) -> dict:
        """Per-row state for the ``(b,)`` bool rows the rule applies to: codes since the last beat label."""
        return {"since": torch.zeros(active.shape[0], dtype=torch.long, device=active.device),
                "active": active.clone()}

    def apply(self, logits: torch.Tensor, state: dict, n_codes: int) -> torch.Tensor:
        """``(b, V)`` logits -> the same, with only beat labels left in active rows whose gap is used up."""
        late = state["active"] & (state["since"] >= self.hi)  # (b,)
        if not bool(late.any()):
            return logits
        only_beats = torch.full((logits.shape[1],), -float("inf"), device=logits.device)
        only_beats[self.beat_ids] = 0.0
        return torch.where(late[:, None], logits + only_beats, logits)

    def update(self, state: dict, tok: torch.Tensor, n_codes: int) -> None:
        """Advance the state by the drawn ``(b,)`` tokens (in place)."""
        is_beat = torch.isin(tok, self.beat_ids)
        state["since"] = torch.where(is_beat, torch.zeros_like(state["since"]),
                                     state["since"] + (tok < n_codes).long())


def _annotated_beats(records, data_dir):
    """Per record of ``records`` (DS1 by default): beat times (s), AAMI classes, rhythm name in force."""
    import numpy as np

    from ecg2llm.tokenizer.data import read_annotations, resolve_data_dir
    from ecg2llm.tokenizer.ecg import AAMI_CLASSES, rhythm_name
    from ecg2llm.tokenizer.splits import DS1

    fs = 360.0
    for r in (records or DS1):
        ann = read_annotations(str(r), resolve_data_dir(data_dir), fs)
        starts, names = ann.rhythms()
        s, sym = ann.beats()
        at = np.searchsorted(starts, s, side="right") - 1  # the rhythm note in force at each beat
        yield (np.asarray(s) / fs, [AAMI_CLASSES.get(c, "Q") for c in sym],
               [rhythm_name(names[j]) if j >= 0 else None for j in at])


def _quantiles(values: list, q) -> dict:
    import numpy as np

    return {"n": len(values), "quantiles": {int(p): float(np.percentile(values, p)) for p in q}}


def successive_rr_ratio(records=None, data_dir=None, rhythm: str = "N", q=(5, 50, 95)) -> dict:
    """``RR_i / RR_{i-1}`` over three successive ``N`` beats inside ``(<rhythm>`` episodes of ``records``.

    What :data:`RR_RATIO` is read from (DS1 by default); returns ``{"n", "quantiles": {q: ratio}}``.
    """
    ratios = []
    for t, y, rh in _annotated_beats(records, data_dir):
        for i in range(2, len(t)):
            if rh[i] == rh[i - 1] == rh[i - 2] == rhythm and y[i] == y[i - 1] == y[i - 2] == "N":
                ratios.append((t[i] - t[i - 1]) / (t[i - 1] - t[i - 2]))
    return _quantiles(ratios, q)


def rr_quantiles(records=None, data_dir=None, q=(1, 5, 25, 50, 75, 95, 99)) -> dict:
    """RR (s) before each annotated beat inside an ``(N``, ``(B``, ``(T`` or ``(VT`` episode of ``records``.

    Keys ``"N N"`` (N after N), ``"B V"`` (V after N), ``"B N"`` (N after V), ``"T V"``, ``"T N after N"``,
    ``"T N after V"``, ``"VT V"``; values ``{"n", "quantiles": {q: seconds}}``. :data:`GRAMMARS` is read
    from them.
    """
    got: dict[str, list] = {}
    for t, y, rh in _annotated_beats(records, data_dir):
        for i in range(2, len(t)):
            name = rh[i]
            if name != rh[i - 1] or name not in ("N", "B", "T", "VT"):
                continue
            if name == "N":
                if y[i] != "N" or y[i - 1] != "N":
                    continue
                key = "N N"
            elif name == "VT":
                key = "VT V"
            elif name == "B":
                key = "B V" if y[i] == "V" else "B N"
            else:
                key = "T V" if y[i] == "V" else ("T N after V" if y[i - 1] == "V" else "T N after N")
            got.setdefault(key, []).append(t[i] - t[i - 1])
    return {k: _quantiles(v, q) for k, v in sorted(got.items())}
