"""What :class:`ecg2llm.lm.trainer.Trainer` does differently for an LM v3 (``beat_stream: true``), in one place.

The loop itself is the shared one (Accelerate, checkpoints, evaluation, trackers); this module loads the
beat tokenizer, opens the beat corpus (:mod:`ecg2llm.lm.beatstream`), describes the tokenizer to the LM config,
marks the model as a beat LM (``config.ecg_stream``: its :class:`ecg2llm.lm.beat_layout.BeatLayout`;
``config.ecg_conditioning`` with ``version: 3``) and writes ``training_data.json`` beside the weights.
"""
from __future__ import annotations

from ecg2llm.core.errors import ConfigError, TokenizerError


def load_beat_tokenizer(name):
    """A tokenizer v3 by shipped name (``"v3"``) or folder."""
    try:
        from ecg2llm.tokenizer.beat_tokenizer import BeatTokenizer
    except ImportError as e:
        raise TokenizerError(f"an LM v3 needs the beat tokenizer (tokenizer/beat_tokenizer.py, tokenizer v3), "
                             f"which is not installed here ({e})") from None
    return BeatTokenizer.from_pretrained(str(name))


def tokenizer_record(tok, corpus, source: str) -> dict:
    """The LM config's ``ecg_tokenizer`` entry for a beat tokenizer (JSON only)."""
    from .beat_layout import BeatLayout
    from .beatstream import tokenizer_id

    layout = BeatLayout.from_tokenizer(tok)
    cfg = tok.config_dict() if hasattr(tok, "config_dict") else {}
    return {"config": cfg, "weights_hash": tokenizer_id(tok), "codebook_size": layout.codebook_size,
            "fs": float(tok.fs), "samples_per_token": float(tok.fs) / corpus.tokens_per_second("valid"),
            "tokens_per_second": corpus.tokens_per_second("valid"), "needs_state": False,
            "kind": "beats", "source": source}


def mark_model(model, layout, spec, unconditional_rhythm: str = "sample") -> None:
    """Record the beat layout (and, with a rhythm slot, what an unconditional request puts there) and the v3
    control spec in the model's config."""
    model.config.ecg_stream = layout.to_dict()
    if layout.rhythm_slot:
        model.config.ecg_stream["unconditional_rhythm"] = str(unconditional_rhythm)
    model.config.ecg_conditioning = {**spec.to_dict(), "version": 3}
    model.config.ecg_leads = ["MLII", "V1", "V2", "V4", "V5", "I"]


def training_data(cfg, corpus, stage: str | None = None) -> dict:
    """``training_data.json`` (format 1, :mod:`ecg2llm.tokenizer.training_data`): what the LM was trained on.

    The same schema every LM folder carries, so the scorecard's band pool and copy search read a v3 LM like a
    v2 one. CinC 2017 follows the schema's rule (the first ``cinc_max_records`` sorted names, minus
    ``excluded``): a recording among them with fewer than two detected beats never entered the beat stream and is
    listed as excluded. Beat counts per split are kept as an extra key.
    """
    from ecg2llm.tokenizer import training_data as td

    train = corpus.entries("train")
    cinc = sorted({r.record for r in train if r.db == "cinc2017"})
    spec = {
        "format": td.FORMAT,
        "mitdb": {"records": sorted({r.record for r in train if r.db == "mitdb"}),
                  "leads": sorted({r.lead for r in train if r.db == "mitdb"}), "augment_views": 0},
        "validation_records": sorted(str(r) for r in cfg.valid_records),
        "cinc2017": {"used": False},
        "stages": [stage] if stage else [],
        "written_by": "lm/train.py (beat_stream)",
        "beats": {s: int(sum(len(r.r) for r in corpus.entries(s))) for s in ("train", "valid", "test")},
    }
    if getattr(cfg, "distill_dirs", None):  # the LM's own guided samples: no recording of anyone
        spec["distill"] = {"dirs": [str(d) for d in cfg.distill_dirs], "share": float(cfg.distill_share),
                           "samples": len(corpus.distill), "beats": int(sum(len(r.r) for r in corpus.distill))}
    if cinc:
        n = int(cfg.cinc_max_records)
        asked = sorted(getattr(corpus, "cinc_asked", None) or cinc)[: n or None]
        spec["cinc2017"] = {"used": True, "rule": td.CINC_RULE, "max_records": n, "labels": [], "min_r_mv": 0.0,
                            "excluded": sorted(set(asked) - set(cinc))}
    return td.merge(td.read(cfg.init_from) if getattr(cfg, "init_from", None) else None, spec)


def check_config(cfg) -> None:
    if cfg.unconditional_rhythm not in ("sample", "null"):
        raise ConfigError(f"unconditional_rhythm must be 'sample' or 'null', got {cfg.unconditional_rhythm!r}")
    bad = [s for s in cfg.sources if s not in ("mitdb", "cinc2017")]
    if bad or (cfg.sources and "mitdb" not in cfg.sources):
        raise ConfigError(f"beat_stream sources must be [mitdb] or [mitdb, cinc2017], got {cfg.sources}")
