"""A beat-aligned cache for LM v2 sampling: each beat's codes are tethered to the sequence's previous beats.

A real patient's beats repeat: in a 30-s window of DS2 the median correlation of each beat with the
window's median beat is 0.992, and a tokenizer round trip keeps it (0.991). The shipped LM v2 alone draws
each beat afresh (0.962, 10th percentile 0.644), and that is what a classifier uses to tell its ECGs from
real ones (``docs/notes/lm-v2-notebook.md``). The network is small (1.9 M parameters) and copies poorly from
its own context.

The cache gives the sampler the sequence's own previous beats, as a *cache language model* gives a word LM
its recent words (Kuhn & De Mori 1990; Grave et al. 2017). The past that matters here is beat-aligned: a
conditional LM v2 writes a ``beat:<class>`` token 0.2 s before every R peak, so ``j`` codes after the last
beat label, the codes ``j`` after each of the ``K`` previous labels are the same phase of the previous
beats. The next token is drawn from a product of experts (Hinton 2002)::

    p(c) = P_code * p_LM(c | code) * k(c)**strength / Z          for ECG codes c
    p(t) = p_LM(t)                                                for every control token t
    k(c) = sum_k decay**k * exp(-|digits(c) - digits(c_k)|**2 / (2 sigma**2)) / sum_k decay**k

``digits`` are a code's coordinates on the FSQ lattice (:mod:`ecg2llm.tokenizer.fsq`: one level per latent
channel), ``c_k`` the code of the beat ``k`` back at that phase, and ``P_code`` the LM's probability that
the next token is a code at all -- so the cache never changes *when* a beat starts (beat labels, rhythm
tokens and their hazard keep the LM's probabilities; the rhythm grammar of :mod:`ecg2llm.lm.grammar` composes
with it). The kernel only reweights codes the LM already finds plausible towards the previous beats'
codes; it never proposes a code the LM gives no mass. (A *mixture* with the cache, as Grave et al. mix,
does propose such codes, and it breaks beats: ``docs/notes/lm-v2-notebook.md``.)

It is a normalized probability model, so it has a likelihood: ``strength``, ``sigma``, ``beats`` and
``decay`` are fitted on the DS1 *validation* records' bits/token under teacher forcing
(:func:`cache_log_probs`, ``scripts/fit_beat_cache.py``) and recorded in the LM's ``config.json``
(``ecg_beat_cache``), which :func:`params_of_model` reads. Where there is no earlier beat at that phase
(the first beat, or a beat longer than the previous ones) ``p = p_LM``.

The cache is **opt-in** (``lm/generate.py --beat_cache 0.25``,
``ECGPipeline.generate(request=GenerateConfig(beat_cache=0.25))``): on the shipped LM v2 the fitted setting
lowers validation bits/token 3.848 -> 3.809 (DS2 4.205 -> 4.155), moves beat consistency and QTc into the
real band and leaves every headline metric but the discriminator as real, but the discriminator rises
0.735 -> 0.778 and the memorization ratio falls 0.98 -> 0.90
(``docs/notes/lm-v2-notebook.md``, "Beat cache"); the sampler's default stays the LM alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch

from ecg2llm.core.errors import ConfigError

CONFIG_KEY = "ecg_beat_cache"


@dataclass(frozen=True)
class BeatCacheParams:
    """The cache's strength and shape.

    Attributes
    ----------
    strength : float
        Exponent of the kernel in the product (>= 0; 0 = the LM alone).
    sigma : float
        Width of the kernel on the FSQ lattice, in levels (> 0).
    beats : int
        Previous beats the kernel is centred on (``K``).
    decay : float
        Weight of the beat ``k`` back, ``decay**k`` (``k = 0`` the last complete beat).
    max_offset : int
        Codes after a beat label the cache covers (later codes of a long beat: the LM alone).
    """

    strength: float = 0.0
    sigma: float = 1.5
    beats: int = 4
    decay: float = 0.6
    max_offset: int = 96

    def __post_init__(self):
        if not float(self.strength) >= 0.0:
            raise ConfigError(f"beat cache strength must be >= 0 (0 = off), got {self.strength}")
        if not float(self.sigma) > 0.0:
            raise ConfigError(f"beat cache sigma must be > 0 (lattice levels), got {self.sigma}")
        if int(self.beats) < 1 or int(self.max_offset) < 1:
            raise ConfigError(f"beat cache needs beats >= 1 and max_offset >= 1, got {self.beats}, {self.max_offset}")
        if not 0.0 < float(self.decay) <= 1.0:
            raise ConfigError(f"beat cache decay must be in (0, 1], got {self.decay}")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BeatCacheParams":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def params_of_model(model) -> BeatCacheParams | None:
    """The cache fitted for ``model`` (its config's ``ecg_beat_cache``), or None if none was fitted."""
    rec = getattr(getattr(model, "config", None), CONFIG_KEY, None)
    return BeatCacheParams.from_dict(rec) if isinstance(rec, dict) else None


def resolve(model, strength: float | None) -> BeatCacheParams | None:
    """The cache to sample ``model`` with: ``None`` or ``0`` = off, else that strength in the fitted shape.

    The shape (``sigma``, ``beats``, ``decay``) is the one fitted for ``model`` where its config records
    one (:func:`params_of_model`), else :class:`BeatCacheParams`' defaults. The cache is opt-in: on the
    shipped LM v2 it improves held-out bits/token and beat consistency but not the scorecard as a whole
    (``docs/notes/lm-v2-notebook.md``, "Beat cache"), so sampling does not use it unless asked.
    """
    if strength is None or float(strength) == 0.0:
        return None
    fitted = params_of_model(model)
    base = fitted.as_dict() if fitted is not None else {}
    return BeatCacheParams.from_dict({**base, "strength": float(strength)})


def lattice_kernels(levels, sigma: float, device=None) -> list[torch.Tensor]:
    """Per latent channel, ``(L_i, L_i)``: ``exp(-(a - b)**2 / (2 sigma**2))`` between its levels."""
    out = []
    for n in levels:
        v = torch.arange(int(n), dtype=torch.float32, device=device)
        out.append(torch.exp(-((v[None] - v[:, None]) ** 2) / (2.0 * float(sigma) ** 2)))
    return out


def kernel_rows(codes: torch.Tensor, levels, kernels: list[torch.Tensor]) -> torch.Tensor:
    """``codes`` ``(...,)`` in ``[0, prod(levels))`` -> ``(..., prod(levels))`` kernels centred on each.

    The index order is FSQ's (``index = sum_i digit_i * prod(levels[:i])``, :mod:`ecg2llm.tokenizer.fsq`), so the
    kernel is the outer product of the per-channel rows, built from the last channel down.
    """
    digits, base = [], 1
    for n in levels:
        digits.append((codes // base) % int(n))
        base *= int(n)
    acc = kernels[-1][digits[-1]]  # (..., L_last)
    for i in range(len(levels) - 2, -1, -1):
        acc = (acc[..., :, None] * kernels[i][digits[i]][..., None, :]).flatten(-2)
    return acc


class BeatCache:
    """The cache of one sampler: per-row beat buffers (:meth:`new_state`), :meth:`apply`, :meth:`update`.

    Parameters
    ----------
    params : BeatCacheParams
    levels : sequence of int
        The tokenizer's FSQ levels (their product is the codebook size).
    boundary_ids : sequence of int
        Tokens that start a beat (every ``beat:<class>`` and ``beat:?``).
    """

    def __init__(self, params: BeatCacheParams, levels, boundary_ids, device=None):
        self.p = params
        self.levels = [int(v) for v in levels]
        self.n_codes = 1
        for v in self.levels:
            self.n_codes *= v
        self.kernels = lattice_kernels(self.levels, params.sigma, device)
        self.boundary = torch.as_tensor(list(boundary_ids), device=device)
        self.w = torch.tensor([params.decay ** k for k in range(params.beats)], device=device)  # (K,)

    @classmethod
    def for_model(cls, model, params: BeatCacheParams, spec, device=None) -> "BeatCache":
        """The cache of a conditional LM v2 (its beat labels align the beats; its config gives the levels)."""
        if not spec.conditional:
            raise ConfigError("the beat cache aligns beats by the LM's beat labels: it needs a conditional LM "
                              "v2 (trained with `conditioning: true`); sample this one with beat_cache=0")
        levels = (getattr(model.config, "ecg_tokenizer", None) or {}).get("config", {}).get("levels")
        if not levels:
            raise ConfigError("this LM's config records no FSQ levels (config.ecg_tokenizer.config.levels): "
                              "the beat cache needs an FSQ tokenizer; sample it with beat_cache=0")
        return cls(params, levels, list(spec.beat_ids()) + [spec.null_beat_id], device)

    def new_state(self, b: int, device) -> dict:
        """Empty buffers for ``b`` rows: the current beat's codes and the ``K`` previous beats'."""
        m, k = self.p.max_offset, self.p.beats
        return {"cur": torch.zeros((b, m), dtype=torch.long, device=device),
                "cur_len": torch.zeros(b, dtype=torch.long, device=device),
                "seen": torch.zeros(b, dtype=torch.bool, device=device),  # a beat label read yet
                "prev": torch.zeros((b, k, m), dtype=torch.long, device=device),
                "prev_len": torch.zeros((b, k), dtype=torch.long, device=device)}

    def kernel(self, state: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(b, n_codes)`` kernel of the next code around the previous beats', and ``(b,)`` rows having one."""
        j = state["cur_len"]  # (b,) the next code's offset after the last label (0-based)
        ok = (state["prev_len"] > j[:, None]) & state["seen"][:, None]  # (b, K)
        w = self.w[None] * ok  # (b, K)
        has = ok.any(1)
        at = state["prev"].gather(2, j.clamp(max=self.p.max_offset - 1)[:, None, None].expand(-1, w.shape[1], 1))
        rows = kernel_rows(at.squeeze(2), self.levels, self.kernels)  # (b, K, n_codes)
        k = torch.einsum("bk,bkc->bc", w, rows) / w.sum(1, keepdim=True).clamp(min=1e-12)
        return k, has

    def apply(self, logits: torch.Tensor, state: dict, n_codes: int) -> torch.Tensor:
        """``(b, V)`` logits -> log-probabilities of the product (control tokens keep the LM's)."""
        if n_codes != self.n_codes:
            raise ConfigError(f"beat cache built for {self.n_codes} codes, the LM has {n_codes}")
        logp = torch.log_softmax(logits.float(), -1)
        if self.p.strength <= 0:
            return logp
        k, has = self.kernel(state)
        lc = logp[:, :n_codes]
        mass = torch.logsumexp(lc, 1, keepdim=True)  # (b, 1) log P(next token is a code)
        has = has & torch.isfinite(mass[:, 0])  # a grammar may have masked every code: nothing to reweight
        tethered = mass + torch.log_softmax(lc + self.p.strength * torch.log(k.clamp(min=1e-30)), -1)
        out = logp.clone()
        out[:, :n_codes] = torch.where(has[:, None], tethered, lc)
        return out

    def update(self, state: dict, tok: torch.Tensor, n_codes: int) -> None:
        """Advance by the drawn (or read) ``(b,)`` tokens, in place."""
        m = self.p.max_offset
        code = tok < n_codes
        rows = torch.nonzero(code & (state["cur_len"] < m)).squeeze(1)
        state["cur"][rows, state["cur_len"][rows]] = tok[rows]
        state["cur_len"] = state["cur_len"] + code.long()
        beat = torch.isin(tok, self.boundary)
        if bool(beat.any()):
            done = torch.where(state["seen"], state["cur_len"].clamp(max=m), torch.zeros_like(state["cur_len"]))
            shifted = torch.cat([state["cur"][:, None], state["prev"][:, :-1]], 1)  # codes before the first
            lens = torch.cat([done[:, None], state["prev_len"][:, :-1]], 1)        # label are no beat
            state["prev"] = torch.where(beat[:, None, None], shifted, state["prev"])
            state["prev_len"] = torch.where(beat[:, None], lens, state["prev_len"])
            state["cur_len"] = torch.where(beat, torch.zeros_like(state["cur_len"]), state["cur_len"])
            state["seen"] = state["seen"] | beat


def cache_log_probs(logp: torch.Tensor, ids: torch.Tensor, cache: BeatCache) -> torch.Tensor:
    """Teacher-forced log-probabilities of the LM + cache for sequences ``ids`` ``(N, L)``.

    ``logp`` ``(N, L - 1, V)`` are the LM's next-token log-probabilities (position ``t`` predicts
    ``ids[:, t + 1]``). Returns ``(N, L - 1)`` log p of each target under the product: what
    ``scripts/fit_beat_cache.py`` fits the cache to on the validation records.
    """
    n, length = ids.shape
    state = cache.new_state(n, ids.device)
    out = torch.empty((n, length - 1), dtype=torch.float32, device=ids.device)
    for t in range(length - 1):
        cache.update(state, ids[:, t], cache.n_codes)
        lp = cache.apply(logp[:, t], state, cache.n_codes)
        out[:, t] = lp.gather(1, ids[:, t + 1:t + 2]).squeeze(1)
    return out
