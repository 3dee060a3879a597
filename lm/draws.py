"""``torch.multinomial(probs, 1, generator=g)`` on CPU, the same draws, ~10x faster for LM v3's masked rows.

On CPU, ``torch.multinomial`` with one sample draws ``q ~ Exp(1)`` for every entry of ``probs`` and returns
``argmax(probs / q)`` (the Gumbel-max trick in exponential form). Its exponentials come one at a time
from the generator's Mersenne Twister under a lock (~40 ns each): at batch 128 and a 850-id vocabulary that
is ~4 ms per sampled token, as long as a layer of the LM. :class:`ExactMultinomial` makes the same draws
from the same generator state with numpy's MT19937 (the same engine, the same seeding), and computes the
exponentials only where ``probs > 0`` (after LM v3's type mask, 6-8 of 850 ids in most slots); the others
only advance the stream, as they do in torch. The result and the generator's state afterwards are those of
``torch.multinomial`` bit for bit:

- torch's exponential for a float32 tensor is ``float32(-log1p(-u))`` with ``u`` the 53 low bits of
  ``(r1 << 32) | r2`` over 2^53 (``r1``, ``r2`` two consecutive 32-bit outputs); numpy's ``log1p`` can differ
  from the C library's (SIMD) by an ulp of the double, so values within 16 double ulps of a float32
  rounding boundary are recomputed with ``math.log1p`` (the C library's, as torch);
- ``u == 0`` (probability 2^-53 per entry) would make torch compute ``0 / 0`` for a zero-probability entry:
  such a step is handed to ``torch.multinomial`` itself, after restoring the generator.

:func:`exact_multinomial_ok` checks all of this once per process against ``torch.multinomial`` on random
rows; where it fails (another torch, another generator layout) :func:`draw` is ``torch.multinomial``.
"""
from __future__ import annotations

import math
import struct

import numpy as np
import torch

_N = 624  # Mersenne Twister state words
_MASK53 = np.uint64((1 << 53) - 1)
_STATE_BYTES = 5056  # CPUGeneratorImplState: int64 seed, int left, int seeded, uint64 next, uint64[624], normals


class ExactMultinomial:
    """Draws of ``torch.multinomial(p, 1, generator=gen)`` for a CPU ``gen``; :meth:`close` hands the state back.

    While open, draw only through this object (``gen`` itself is stale until :meth:`close`).
    """

    def __init__(self, gen: torch.Generator):
        st = gen.get_state().numpy()
        if st.size != _STATE_BYTES:
            raise RuntimeError(f"unknown CPU generator state layout ({st.size} bytes)")
        self.gen, self.head = gen, st.copy()
        left, _ = struct.unpack_from("<ii", st, 8)
        (nxt,) = struct.unpack_from("<Q", st, 16)
        key = np.frombuffer(st[24:24 + 8 * _N].tobytes(), np.uint64).astype(np.uint32)
        self.bg = np.random.MT19937()
        self.bg.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": _N if left == 1 else int(nxt)}}

    def close(self) -> None:
        """Write the stream's position back into the torch generator."""
        s = self.bg.state["state"]
        pos = int(s["pos"])
        st = self.head.copy()
        struct.pack_into("<i", st, 8, _N + 1 - pos)  # torch: left = 625 - next (left 1 <=> a twist is due)
        struct.pack_into("<Q", st, 16, pos)
        st[24:24 + 8 * _N] = np.frombuffer(np.asarray(s["key"], np.uint64).tobytes(), np.uint8)
        self.gen.set_state(torch.from_numpy(st))
        self.head = st

    def draw(self, probs: torch.Tensor, window: tuple | None = None, rows=None, batch: int | None = None
             ) -> torch.Tensor:
        """``torch.multinomial(probs, 1, generator)[:, 0]`` for ``probs`` ``(B, V)`` float32 (rows sum to ~1).

        ``window`` ``(lo, V)``: ``probs`` ``(B, W)`` are columns ``lo .. lo + W - 1`` of rows of ``V`` whose other
        entries are 0; the draw (an id in ``0 .. V - 1``) and the stream afterwards are those of the full rows.
        ``rows`` (with ``batch``): ``probs`` are rows ``rows`` (sorted indices) of a batch of ``batch`` rows whose
        others are no longer drawn; the stream advances as for the whole batch, so the drawn rows get the draws
        they would get in it (:func:`full_rows`)."""
        p = probs.detach().numpy()
        if not np.isfinite(p).all() or (p < 0).any():
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        b, w = p.shape
        first, v = (0, w) if window is None else (int(window[0]), int(window[1]))
        if first < 0 or first + w > v:
            raise ValueError(f"window {window} does not hold {w} columns")
        n_rows = b if rows is None else int(batch)
        saved = self.bg.state
        raw = self.bg.random_raw(2 * n_rows * v)  # (2 B V,) uint64 holding 32-bit outputs: (r1, r2) per entry
        lo = raw[1::2]
        if not lo.all():  # an entry with r2 == 0 might be u == 0: let torch do this step itself
            zero = ((raw[0::2] << np.uint64(32)) | lo) & _MASK53
            if not zero.all():
                self.bg.state = saved
                self.close()
                full = probs if window is None else torch.zeros(b, v, dtype=probs.dtype).index_copy_(
                    1, torch.arange(first, first + w), probs)
                if rows is None:
                    out = torch.multinomial(full, 1, generator=self.gen)[:, 0]
                else:
                    out = torch.multinomial(full_rows(full, rows, n_rows), 1, generator=self.gen)[rows, 0]
                self.__init__(self.gen)
                return out
        nz = np.flatnonzero(p.reshape(-1) > 0)
        if nz.size == 0:
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        row = nz // w if rows is None else np.asarray(rows, np.int64)[nz // w]  # each entry's row in the batch
        at = row * v + first + nz % w  # the entries' places in the full rows
        bits = ((raw[2 * at] << np.uint64(32)) | raw[2 * at + 1]) & _MASK53
        u = bits.astype(np.float64) * (1.0 / (1 << 53))
        e = -np.log1p(-u)  # torch: static_cast<float>(-1.0 / lambda * log1p(-u)), lambda = 1
        q = e.astype(np.float32)
        # where numpy's log1p might round to another float32 than the C library's: recompute those exactly
        q64 = q.astype(np.float64)
        side = np.nextafter(q, np.where(e < q64, -np.inf, np.inf).astype(np.float32)).astype(np.float64)
        near = np.flatnonzero(np.abs(e - q64) > np.abs(side - q64) * 0.5 - 16 * np.spacing(e))
        for i in near:
            q[i] = np.float32(-math.log1p(-float(u[i])))
        r = np.zeros(b * w, np.float32)
        r[nz] = p.reshape(-1)[nz] / q
        # every row has an entry > 0 (p > 0, q finite): its argmax is never a zero outside the window
        return torch.from_numpy(r.reshape(b, w).argmax(1) + first)


_OK: dict = {}


def exact_multinomial_ok() -> bool:
    """Whether :class:`ExactMultinomial` reproduces ``torch.multinomial`` here (checked once per process)."""
    if "ok" not in _OK:
        try:
            ok = True
            for seed in (0, 1, 2):
                g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
                torch.rand(seed * 311, generator=g1), torch.rand(seed * 311, generator=g2)  # mid-stream
                em = ExactMultinomial(g2)
                for t in range(4):
                    s = torch.randn(16, 97, generator=torch.Generator().manual_seed(10 * seed + t)) * 4
                    s[:, ::3] = float("-inf")
                    p = torch.softmax(s, -1)
                    ok &= torch.equal(torch.multinomial(p, 1, generator=g1)[:, 0], em.draw(p))
                em.close()
                ok &= torch.equal(torch.rand(700, generator=g1), torch.rand(700, generator=g2))
            _OK["ok"] = bool(ok)
        except Exception:  # noqa: BLE001 - any surprise: use torch.multinomial
            _OK["ok"] = False
    return _OK["ok"]


class Draws:
    """One token per row from ``probs`` with ``gen``, as ``torch.multinomial(probs, 1, generator=gen)``; use as a
    context manager (the generator is up to date on exit)."""

    def __init__(self, gen: torch.Generator, device):
        fast = torch.device(device).type == "cpu" and gen.device.type == "cpu" and exact_multinomial_ok()
        self.gen, self.em = gen, (ExactMultinomial(gen) if fast else None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.em is not None:
            self.em.close()
        return False

    def __call__(self, probs: torch.Tensor, window: tuple | None = None, rows=None,
                 batch: int | None = None) -> torch.Tensor:
        """A draw per row of ``probs`` ``(B, V)``, or with ``window`` ``(lo, V)`` of ``probs`` ``(B, W)``, columns
        ``lo .. lo + W - 1`` of rows of ``V`` that are 0 elsewhere (the id drawn is in ``0 .. V - 1``).
        ``rows``, ``batch``: ``probs`` are those rows of a batch of ``batch``; each gets the draw it would get
        there, and the generator advances as for the whole batch."""
        if window is not None and self.em is None:
            full = torch.zeros(probs.shape[0], int(window[1]), dtype=probs.dtype, device=probs.device)
            full[:, int(window[0]):int(window[0]) + probs.shape[1]] = probs
            probs = full
        if self.em is None:
            if rows is None:
                return torch.multinomial(probs, 1, generator=self.gen)[:, 0]
            rows = torch.as_tensor(rows, dtype=torch.long, device=probs.device)
            return torch.multinomial(full_rows(probs, rows, int(batch)), 1, generator=self.gen)[rows, 0]
        return self.em.draw(probs.float(), window, rows, batch).to(probs.device)


def full_rows(probs: torch.Tensor, rows, batch: int) -> torch.Tensor:
    """``(batch, V)`` probabilities: ``probs`` at ``rows``, and a one-hot row everywhere else (rows no longer
    drawn; ``torch.multinomial`` on CPU draws one exponential per entry whatever the values, so the stream and
    the kept rows' draws are those of the whole batch)."""
    full = torch.zeros(int(batch), probs.shape[1], dtype=probs.dtype, device=probs.device)
    full[:, 0] = 1
    full[torch.as_tensor(rows, dtype=torch.long, device=probs.device)] = probs
    return full
