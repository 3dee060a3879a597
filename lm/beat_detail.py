"""LM v3's second level: each beat's detail tokens from its coarse tokens, RR and neighbouring beats.

AudioLM splits generation into semantic tokens (what is said) and acoustic tokens (how it sounds); LM v3's
GPT draws each beat's label, RR and coarse tokens, and this small non-autoregressive head fills in the
tokenizer v3's ``Kd`` detail tokens of every beat at once: an MLP over the embeddings of the coarse tokens
of beats ``i - w .. i + w`` and the RR tokens around them, one softmax per detail slot. It is trained on
the LM's own beat store (DS1 training records; validation records for early stopping) in about a minute.

How detail is produced at sampling (``GenerateConfig.detail``) was chosen by measurement
(``docs/results/lm_v3_detail.json``): ``"mean"`` (the code nearest the expected codeword, the default),
``"argmax"`` (each slot's most likely value), ``"sample"`` (a draw from the head's distribution) or
``"persist"``.

Command::

    python -m ecg2llm.lm.beat_detail --lm runs/lm/v3/final --store runs/store/beats_v3 [--steps 1500]
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ecg2llm.core.cli import run_main
from ecg2llm.core.errors import ConfigError

SUBDIR = "detail"
MODES = ("argmax", "sample", "mean", "persist")


@dataclass
class DetailConfig:
    n_rr: int
    n_coarse: int
    n_coarse_levels: int
    n_detail: int
    n_detail_levels: int
    window: int = 2          # neighbours on each side
    d_embed: int = 32
    d_hidden: int = 256
    codebook_dim: int = 0    # > 0: the tokenizer's detail codebooks (G, L, codebook_dim) ride along ("mean" mode)


class DetailHead(nn.Module):
    """``(B, n, Kc)`` coarse + ``(B, n)`` RR indices -> ``(B, n, Kd, n_detail_levels)`` logits."""

    def __init__(self, cfg: DetailConfig):
        super().__init__()
        self.cfg = cfg
        self.coarse = nn.Embedding(cfg.n_coarse * cfg.n_coarse_levels + 1, cfg.d_embed)  # last row: no beat
        self.rr = nn.Embedding(cfg.n_rr + 1, cfg.d_embed)
        span = 2 * cfg.window + 1
        d_in = span * cfg.n_coarse * cfg.d_embed + (span + 1) * cfg.d_embed
        if cfg.codebook_dim:  # the tokenizer's detail codebooks, for the "mean" mode
            self.register_buffer("codebooks", torch.zeros(cfg.n_detail, cfg.n_detail_levels, cfg.codebook_dim))
        self.mlp = nn.Sequential(nn.Linear(d_in, cfg.d_hidden), nn.GELU(), nn.Linear(cfg.d_hidden, cfg.d_hidden),
                                 nn.GELU(), nn.Linear(cfg.d_hidden, cfg.n_detail * cfg.n_detail_levels))

    def forward(self, rr: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        b, n = rr.shape
        w = c.window
        ci = coarse + c.n_coarse_levels * torch.arange(c.n_coarse, device=coarse.device)  # (B, n, Kc)
        ci = nn.functional.pad(ci, (0, 0, w, w), value=c.n_coarse * c.n_coarse_levels)  # (B, n + 2w, Kc)
        ri = nn.functional.pad(rr, (w, w + 1), value=c.n_rr)  # (B, n + 2w + 1)
        ce = self.coarse(ci).unfold(1, 2 * w + 1, 1)  # (B, n, Kc, d, span)
        re = self.rr(ri).unfold(1, 2 * w + 2, 1)  # (B, n, d, span + 1)
        x = torch.cat([ce.reshape(b, n, -1), re.reshape(b, n, -1)], -1)
        return self.mlp(x).view(b, n, c.n_detail, c.n_detail_levels)

    @torch.inference_mode()
    def predict(self, rr: np.ndarray, coarse: np.ndarray, mode: str = "argmax", seed: int = 0) -> np.ndarray:
        """Detail indices ``(B, n, Kd)`` for ``(B, n)`` RR and ``(B, n, Kc)`` coarse indices.

        ``argmax``: each slot's most likely code; ``mean``: the code nearest the expected codeword (least
        squared error); ``sample``: a draw per beat; ``persist``: a draw per distinct coarse spelling of a
        sample, which every later beat with the same coarse tokens reuses (real detail is 25-64 % a
        per-record component, ``docs/results/lm_v3_detail.json``).
        """
        if mode not in MODES:
            raise ConfigError(f"detail mode must be one of {MODES}, got {mode!r}")
        dev = next(self.parameters()).device
        logits = self(torch.as_tensor(np.asarray(rr), device=dev).long(),
                      torch.as_tensor(np.asarray(coarse), device=dev).long())
        if mode == "argmax":
            return logits.argmax(-1).cpu().numpy()
        if mode == "mean":  # the code nearest the expected codeword: least squared error in expectation
            if not self.cfg.codebook_dim:
                raise ConfigError("detail mode 'mean' needs a head saved with the tokenizer's codebooks")
            p = torch.softmax(logits.float(), -1)  # (B, n, G, L)
            e = torch.einsum("bngl,gld->bngd", p, self.codebooks)  # (B, n, G, dim)
            # argmin_l |c_l - e|^2 = argmin_l (|c_l|^2 - 2 c_l . e): no (B, n, G, L, dim) tensor (1024 codes x 128
            # samples x 40 beats would be 3 GB)
            d = (self.codebooks ** 2).sum(-1) - 2 * torch.einsum("bngd,gld->bngl", e, self.codebooks)
            return d.argmin(-1).cpu().numpy()
        g = torch.Generator(device=dev).manual_seed(int(seed) + 0xDE7)
        p = torch.softmax(logits.float(), -1).reshape(-1, logits.shape[-1])
        out = torch.multinomial(p, 1, generator=g).view(logits.shape[:-1]).cpu().numpy()
        if mode == "persist":  # one draw per distinct coarse spelling within a sample, reused by its repeats
            co = np.asarray(coarse)
            for b in range(co.shape[0]):
                _, first, inv = np.unique(co[b], axis=0, return_index=True, return_inverse=True)
                out[b] = out[b][first[inv.reshape(-1)]]
        return out


def save_detail(head: DetailHead, folder, metrics: dict | None = None) -> None:
    from safetensors.torch import save_file

    from ecg2llm.core.io import atomic_path, write_json

    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(tmp / "model.safetensors"))
        write_json(tmp / "config.json", asdict(head.cfg))
        if metrics:
            write_json(tmp / "metrics.json", metrics)


def load_detail(lm_folder) -> DetailHead | None:
    """The detail head saved in ``<lm_folder>/detail``, or None if the LM has none."""
    from safetensors.torch import load_file

    p = Path(lm_folder) / SUBDIR
    if not (p / "config.json").is_file():
        return None
    head = DetailHead(DetailConfig(**json.loads((p / "config.json").read_text())))
    head.load_state_dict(load_file(str(p / "model.safetensors")))
    return head.eval()


# ------------------------------------------------------------------------------------------ training
def _windows(records, n: int, rng, count: int):
    """``count`` random runs of ``n`` consecutive beats: (rr, coarse, detail) arrays."""
    recs = [r for r in records if len(r.r) >= n]
    w = np.array([len(r.r) - n + 1 for r in recs], np.float64)
    which = rng.choice(len(recs), size=count, p=w / w.sum())
    rr, co, de = [], [], []
    for i in which:
        r = recs[i]
        s = int(rng.integers(0, len(r.r) - n + 1))
        rr.append(r.units[s:s + n, 1])
        co.append(r.units[s:s + n, 2:])
        de.append(r.detail[s:s + n])
    return np.stack(rr), np.stack(co), np.stack(de)


def evaluate(head: DetailHead, records, layout, n: int = 64) -> dict:
    """Detail accuracy and bits per beat on whole records (tiles of ``n`` beats), argmax and sampled."""
    tot = {"nll": 0.0, "correct": 0, "count": 0, "beats": 0}
    for r in records:
        for s in range(0, len(r.r) - n + 1, n):
            rr = torch.as_tensor(r.units[s:s + n, 1])[None]
            co = torch.as_tensor(layout.split_units(r.units[s:s + n])[2])[None]
            de = torch.as_tensor(r.detail[s:s + n])[None]
            with torch.inference_mode():
                lg = head(rr, co)
            tot["nll"] += float(nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), de.reshape(-1),
                                                            reduction="sum"))
            tot["correct"] += int((lg.argmax(-1) == de).sum())
            tot["count"] += de.numel()
            tot["beats"] += n
    return {"accuracy": tot["correct"] / max(tot["count"], 1),
            "bits_per_token": tot["nll"] / max(tot["count"], 1) / math.log(2),
            "bits_per_beat": tot["nll"] / max(tot["beats"], 1) / math.log(2), "beats": tot["beats"]}


def train_detail(records, layout, steps: int = 1500, batch: int = 32, n: int = 64, lr: float = 2e-3,
                 seed: int = 0, progress: bool = True, codebooks: np.ndarray | None = None,
                 **cfg_kw) -> DetailHead:
    """Fit a :class:`DetailHead` on ``records`` (their coarse units from the LM layout, their detail);
    ``codebooks``: the tokenizer's detail codebooks ``(G, L, dim)``, kept in the head for the "mean" mode."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    dim = 0 if codebooks is None else int(np.asarray(codebooks).shape[-1])
    head = DetailHead(DetailConfig(layout.n_rr, layout.n_coarse, layout.n_coarse_levels, layout.n_detail,
                                   layout.n_detail_levels, codebook_dim=dim, **cfg_kw))
    if codebooks is not None:
        head.codebooks.copy_(torch.as_tensor(np.asarray(codebooks, np.float32)))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    for step in tqdm(range(steps), desc="detail head", disable=not progress):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        rr, co, de = _windows(records, n, rng, batch)
        co = layout.split_units(np.concatenate([np.zeros((*rr.shape, 2), np.int64), co], -1))[2]
        lg = head(torch.as_tensor(rr), torch.as_tensor(co))
        loss = nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), torch.as_tensor(de).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return head.eval()


@run_main
def main(argv=None):
    """Train the detail head of an LM v3 on its beat store and save it into ``<lm>/detail``."""
    from .beat_layout import BeatLayout
    from .beatstream import load_records

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lm", required=True, help="LM v3 folder (<run>/final); the head goes to <lm>/detail")
    ap.add_argument("--store", required=True, help="the beat store the LM was trained on")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", default="true", choices=("true", "false"))
    a = ap.parse_args(argv)
    from .beat_train import load_beat_tokenizer
    from .model import TOKENIZER_SUBDIR

    if not (Path(a.lm) / TOKENIZER_SUBDIR / "config.json").is_file():
        raise ConfigError(f"--lm {a.lm}: no LM v3 folder with its tokenizer (expected {TOKENIZER_SUBDIR}/config.json "
                          "inside); pass the run's final/ folder")
    tok = load_beat_tokenizer(Path(a.lm) / TOKENIZER_SUBDIR)  # its detail codebooks ride along ("mean" mode)
    records, meta = load_records(a.store)
    layout = BeatLayout.from_dict(meta["layout"])
    train = [r for r in records if r.split == "train" and r.db == "mitdb"]
    valid = [r for r in records if r.split == "valid"]
    head = train_detail(train, layout, steps=a.steps, seed=a.seed, progress=a.progress == "true",
                        codebooks=tok.codes()["detail"].codebooks)
    m = {"valid": evaluate(head, valid, layout), "train_records": sorted({r.record for r in train}),
         "steps": a.steps, "command": "python -m ecg2llm.lm.beat_detail " + " ".join(argv or [])}
    save_detail(head, Path(a.lm) / SUBDIR, m)
    print(json.dumps(m["valid"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
