"""The ECG language model: a Llama-style decoder built from scratch, and how it names its vocabulary.

Why Llama-style (``LlamaConfig`` + ``LlamaForCausalLM``) rather than GPT-2:

- **RoPE instead of a learned position table.** GPT-2 has ``n_positions`` learned embeddings and cannot
  address position ``n_positions``; with rotary embeddings nothing in the weights depends on the absolute
  position, and :mod:`ecg2llm.lm.sampling` slides a window over long generations without a table to run off.
- **SDPA attention, RMSNorm, SwiGLU**: the modern recipe (nanochat, Llama, Chronos-Bolt's T5 aside)
  trains faster per FLOP at small scale and runs on PyTorch's fused attention kernels on CPU and GPU.
- transformers 5's GPT-2 defaults its special ids to 50256, outside any ECG vocabulary (a trap listed in
  HOUSE-STYLE); with Llama we set every special id ourselves anyway.

Vocabulary layout (``V`` = the ECG tokenizer's vocabulary size)::

    0 .. V-1   ECG codes, exactly the tokenizer's ids
    V          PAD   (never trained on: crops are full length)
    V + 1      BOS   (first token of every training sequence and every generation)
    V + 2      EOS   (reserved; crops never end a record, so it is not trained)
    V + 3 ..   control tokens of a conditional LM (``rhythm:AFIB``, ``beat:V``...; :mod:`ecg2llm.lm.conditioning`)
    ...        padding rows up to a multiple of ``vocab_multiple`` (64): matmul-friendly shapes on GPU
               (nanoGPT pads 50257 to 50304 for the same reason). Generation masks every id >= V.

The LM's ``config.json`` carries the tokenizer (``config.ecg_tokenizer``: its config dict, weights hash
and rates) as a plain JSON dict, so a saved LM can rebuild, and refuse a mismatched, tokenizer
(chronos ``config.chronos_config``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ecg2llm.core.errors import ConfigError, TokenizerError

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
TOKENIZER_SUBDIR = "tokenizer"  # a copy of the ECG tokenizer inside every saved LM folder
#: LMs shipped in ``lm/pretrained/<name>`` and the config each was trained with. ``v3`` is LM v3 (a GPT over
#: heartbeats on tokenizer v3, :mod:`ecg2llm.lm.beatstream`; its detail head in ``detail/``), also loaded as
#: ``default``; ``v3-conditional`` is ``v3`` fine-tuned on its own label-guided ectopic beats (guidance
#: distillation: V, S and AFIB followed better by the model alone, beats a little less consistent);
#: ``conditional`` is ``v2-conditional`` (``lm/pretrained/aliases.json``). ``v2`` (LM v2d) and
#: ``v2-conditional`` (LM v2, requested rhythms and beats through sampler rules) are the tokenizer-v2 LMs. The
#: tokenizer-v1 LMs ``v1`` / ``v1-conditional`` are retired: git tag ``v1-models`` keeps them (CHANGELOG.md).
SHIPPED = {"v3": "configs/lm/v3_continue.yaml", "v3-conditional": "configs/lm/v3_distill_bc.yaml",
           "v2": "configs/lm/v2d_default_ft.yaml", "v2-conditional": "configs/lm/v2_conditional_ft.yaml"}
#: shipped names retired from ``lm/pretrained/``, and the git tag that still holds each folder
RETIRED = {"v1": "v1-models", "v1-conditional": "v1-models"}


def special_ids(codebook_size: int) -> dict[str, int]:
    """PAD/BOS/EOS ids placed right after the ``codebook_size`` ECG codes."""
    v = int(codebook_size)
    return {"pad_token_id": v, "bos_token_id": v + 1, "eos_token_id": v + 2}


def padded_vocab_size(codebook_size: int, multiple: int = 64, extra: int = 0) -> int:
    """``codebook_size + 3`` special ids ``+ extra`` control tokens, rounded up to a multiple of ``multiple``."""
    n = int(codebook_size) + 3 + int(extra)
    m = max(1, int(multiple))
    return int(math.ceil(n / m) * m)


def tokenizer_record(tok) -> dict[str, Any]:
    """What an LM stores about its tokenizer: config dict, weights hash, rates (all JSON)."""
    d = tok.describe()
    return {
        "config": tok.config_dict(), "weights_hash": tok.weights_hash,
        "codebook_size": int(tok.vocab_size), "fs": float(tok.fs),
        "samples_per_token": float(d["samples_per_token"]), "tokens_per_second": float(d["tokens_per_second"]),
        "needs_state": bool(getattr(tok, "needs_state", False)),
    }


def build_model(cfg, tok_record: dict[str, Any], conditioning=None):
    """A freshly initialized ``LlamaForCausalLM`` for the tokenizer described by ``tok_record``.

    Parameters
    ----------
    cfg : ecg2llm.lm.config.LMTrainConfig
        Model fields: ``n_layer``, ``n_head``, ``n_kv_head``, ``d_model``, ``d_ff``, ``context_length``,
        ``rope_theta``, ``attention_dropout``, ``tie_embeddings``, ``vocab_multiple``, ``init_std``.
    tok_record : dict
        :func:`tokenizer_record` of the ECG tokenizer.
    conditioning : ecg2llm.lm.conditioning.ConditionSpec, optional
        Control tokens of a conditional LM (ids from ``codebook_size + 3``), saved as
        ``config.ecg_conditioning``.

    Returns
    -------
    transformers.LlamaForCausalLM
    """
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    v = int(tok_record["codebook_size"])
    ids = special_ids(v)
    if cfg.d_model % cfg.n_head:
        raise ConfigError(f"d_model ({cfg.d_model}) must be a multiple of n_head ({cfg.n_head})")
    n_kv = int(cfg.n_kv_head or cfg.n_head)
    if cfg.n_head % n_kv:
        raise ConfigError(f"n_head ({cfg.n_head}) must be a multiple of n_kv_head ({n_kv})")
    # SwiGLU with 8/3 * d hidden units has the parameter count of a 4d GELU MLP (Llama, Shazeer 2020),
    # rounded to 64 for matmul-friendly shapes.
    d_ff = int(cfg.d_ff or 64 * math.ceil(8 * cfg.d_model / 3 / 64))
    config = LlamaConfig(
        vocab_size=padded_vocab_size(v, cfg.vocab_multiple, conditioning.n_tokens if conditioning else 0),
        hidden_size=int(cfg.d_model), intermediate_size=d_ff, num_hidden_layers=int(cfg.n_layer),
        num_attention_heads=int(cfg.n_head), num_key_value_heads=n_kv,
        max_position_embeddings=int(cfg.context_length),
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
        attention_dropout=float(cfg.attention_dropout), initializer_range=float(cfg.init_std),
        tie_word_embeddings=bool(cfg.tie_embeddings), use_cache=True, **ids,
    )
    config.ecg_tokenizer = dict(tok_record)
    config.ecg_codebook_size = v
    config.ecg_leads = list(getattr(cfg, "leads", ["MLII"]))
    if conditioning is not None:
        if conditioning.first_id != ids["eos_token_id"] + 1:
            raise ConfigError(f"control tokens must start at {ids['eos_token_id'] + 1}, got {conditioning.first_id}")
        config.ecg_conditioning = conditioning.to_dict()
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(**ids, do_sample=True)
    return model


def num_parameters(model, exclude_embeddings: bool = False) -> int:
    """Parameter count (tied weights counted once); optionally without the token embedding table."""
    seen, n = set(), 0
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if exclude_embeddings and "embed_tokens" in name:
            continue
        n += p.numel()
    return n


def resolve_model_dir(model: str | Path) -> Path:
    """A shipped LM by name -- ``"default"`` = ``"conditional"`` = ``"v3"`` (LM v3 on tokenizer v3), ``"v2"`` /
    ``"v2-conditional"`` (LM v2d / LM v2 on tokenizer v2) in ``lm/pretrained/`` --, a local folder (or the run
    directory holding ``final/``), or a Hugging Face Hub id (:func:`ecg2llm.core.hub.resolve_folder`, the one
    loader every model folder goes through). A retired name (:data:`RETIRED`, the tokenizer-v1 LMs) is refused
    with the git command that restores it."""
    from ecg2llm.core.hub import resolve_folder, shipped_name

    p = Path(model)
    if str(model) in RETIRED and not p.exists() and not (PRETRAINED_DIR / str(model) / "config.json").is_file():
        raise ConfigError(
            f"the LM {model!r} (tokenizer v1) is no longer shipped; restore it from the git tag that keeps it: "
            f"`git checkout {RETIRED[str(model)]} -- lm/pretrained/{model}` (CHANGELOG.md)")
    name = shipped_name(model, PRETRAINED_DIR) if not p.exists() else str(model)
    if name in SHIPPED and not p.exists() and not (PRETRAINED_DIR / name / "config.json").is_file():
        raise ConfigError(
            f"the shipped LM {model!r} is not installed at {PRETRAINED_DIR / name}; train it with "
            f"`accelerate launch lm/train.py --config {SHIPPED[name]}` and pass --model <output_dir>/final"
        )
    if (p / "final" / "config.json").is_file() and not (p / "config.json").is_file():
        p = p / "final"  # accept a run directory as well as its final/ folder
    return resolve_folder(p if p.exists() else model, PRETRAINED_DIR, what="LM", error=ConfigError,
                          hint="Use <output_dir>/final of lm/train.py")


def load_lm(model: str | Path, device: str | torch.device = "cpu"):
    """Load a saved ECG LM in float32 (transformers 5 would keep a bf16 checkpoint in bf16: ``dtype="auto"``).

    Returns
    -------
    (model, folder) : (transformers.LlamaForCausalLM, pathlib.Path)
    """
    from transformers import AutoModelForCausalLM

    folder = resolve_model_dir(model)
    cfg = json.loads((folder / "config.json").read_text())
    if "ecg_tokenizer" not in cfg:
        raise ConfigError(f"{folder}/config.json has no 'ecg_tokenizer' entry: it was not saved by lm/train.py")
    lm = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).to(device).eval()
    return lm, folder


def load_tokenizer_for(lm_config, folder: Path | None = None, tokenizer: str | Path | None = None):
    """Rebuild the ECG tokenizer an LM was trained with, refusing one whose config or weights differ.

    Lookup order: ``tokenizer`` if given; else the copy in ``<folder>/tokenizer``; else the tokenizer the
    LM's config names (``ecg_tokenizer["source"]``, e.g. ``"default"``). The architecture is rebuilt from
    the LM's own record of the tokenizer config and the weights are loaded from the folder found; the
    weights hash must equal the one recorded at training time.

    Raises
    ------
    TokenizerError
        If no tokenizer is found or it is not the one the LM was trained with.
    """
    from safetensors.torch import load_file

    from ecg2llm.tokenizer.base import ECGTokenizer

    rec = getattr(lm_config, "ecg_tokenizer", None)
    if not isinstance(rec, dict) or "config" not in rec:
        raise TokenizerError("this LM's config carries no ECG tokenizer record (config.ecg_tokenizer)")
    from ecg2llm.core.hub import resolve_folder
    from ecg2llm.tokenizer.base import PRETRAINED_DIR as TOK_PRETRAINED

    if tokenizer is not None:
        name = tokenizer
    elif folder is not None and (Path(folder) / TOKENIZER_SUBDIR / "config.json").is_file():
        name = Path(folder) / TOKENIZER_SUBDIR
    else:
        name = rec.get("source") or "default"
    # a shipped name ("default", "v3"), a folder, or a Hub id
    where = resolve_folder(name, TOK_PRETRAINED, what="tokenizer", error=TokenizerError,
                           required=("model.safetensors",),
                           hint="pass --tokenizer <folder> (the one this LM was trained with)")
    saved_cfg = json.loads((where / "config.json").read_text()) if (where / "config.json").is_file() else {}
    saved_cfg.pop("weights_hash", None)
    tok = ECGTokenizer.from_config(rec["config"])
    # Compare the configs as loaded (dataclass defaults filled in), so that a field added to a tokenizer
    # config later (e.g. fsq2's baseline estimator fields) does not make a re-saved copy look different.
    if saved_cfg and (saved_cfg.get("tokenizer_type") != rec["config"].get("tokenizer_type")
                      or ECGTokenizer.from_config(saved_cfg).config_dict() != tok.config_dict()):
        raise TokenizerError(
            f"tokenizer at {where} has config {saved_cfg}, but the LM was trained with {rec['config']}; "
            f"pass the matching tokenizer with --tokenizer"
        )
    try:
        tok.model.load_state_dict(load_file(str(where / "model.safetensors")), strict=True)
    except Exception as e:  # noqa: BLE001 - shape mismatches, corrupt files
        raise TokenizerError(f"tokenizer weights at {where} do not fit the LM's tokenizer config: {e}") from None
    tok.model.eval()
    tok.load_extras(where)  # optional side files (tokenizer v2's wander.json); not in the weights hash
    if tok.weights_hash != rec.get("weights_hash"):
        raise TokenizerError(
            f"tokenizer at {where} has weights hash {tok.weights_hash[:12]}…, but the LM was trained with "
            f"{str(rec.get('weights_hash'))[:12]}…: its tokens would mean something else; pass the matching "
            f"tokenizer with --tokenizer"
        )
    return tok
