"""Held-out loss of the LM, summed exactly over every evaluated token across processes.

Each sequence's summed negative log-likelihood and token count are gathered with
``accelerator.gather_for_metrics``, which drops the duplicates a prepared loader adds to even out the last
batch across processes. The mean is then ``sum(nll) / sum(tokens)``: every token weighs the same. (The
transformers example repeats each batch's *mean* loss ``batch_size`` times, which mis-weights a short last
batch, and averages per-batch means.)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

LN2 = math.log(2.0)


def eval_loader(sequences: torch.Tensor, batch_size: int) -> DataLoader:
    """A fixed-order loader over ``(N, L)`` sequences (BOS first); prepare it with the accelerator."""
    return DataLoader(TensorDataset(sequences), batch_size=int(batch_size), shuffle=False)


@torch.no_grad()
def evaluate(model, loader, accelerator) -> dict[str, float]:
    """Mean next-token loss over every target of every sequence in ``loader`` (all processes).

    Returns
    -------
    dict with ``loss`` (nats/token), ``ppl``, ``bits_per_token`` and ``n_tokens``.
    """
    was_training = model.training
    model.eval()
    nll_total, tok_total = 0.0, 0
    for (x,) in loader:
        logits = model(input_ids=x).logits.float()  # (B, L, vocab)
        nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), x[:, 1:], reduction="none").sum(1)  # (B,)
        count = torch.full_like(nll, x.shape[1] - 1)
        nll, count = accelerator.gather_for_metrics((nll, count))
        nll_total += float(nll.double().sum())
        tok_total += int(count.sum())
    if was_training:
        model.train()
    loss = nll_total / max(tok_total, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "bits_per_token": loss / LN2, "n_tokens": tok_total}


def with_rates(metrics: dict[str, float], tokens_per_second: float) -> dict[str, float]:
    """Add ``bits_per_second`` (bits/token x tokens per ECG second) to an :func:`evaluate` result."""
    return {**metrics, "bits_per_second": metrics["bits_per_token"] * float(tokens_per_second)}
