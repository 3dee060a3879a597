"""Pretrain-then-fine-tune: start a training run from the weights of a saved LM (``init_from``).

``lm/train.py --init_from runs/lm/pretrain/final`` builds the model of the current config, then copies
every weight of the saved LM into it. Only the weights move: the optimizer, the step and the learning-rate
schedule start fresh (a new run with its own warm-up), which is the usual recipe for fine-tuning on a
smaller corpus (here: CinC 2017 + MIT-BIH pretraining, then MIT-BIH DS1). The context length may differ
(RoPE has no position table); everything that fixes the meaning of a token or the shape of a weight must
match, and a mismatch is refused with the field named.
"""
from __future__ import annotations

import json

from ecg2llm.core.errors import ConfigError

#: Config fields that must agree between the saved LM and the new one.
_SAME = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
         "num_key_value_heads", "tie_word_embeddings")


def init_from_pretrained(model, folder) -> dict:
    """Load the weights of the LM saved in ``folder`` (or a run directory) into ``model``, in place.

    Parameters
    ----------
    model : transformers.LlamaForCausalLM
        A freshly built model (:func:`ecg2llm.lm.model.build_model`).
    folder : path
        ``<output_dir>/final`` of an earlier run, a run directory, or a shipped name.

    Returns
    -------
    dict
        ``{"from": folder, "tensors": n}``.

    Raises
    ------
    ConfigError
        If the shapes, the tokenizer (weights hash) or the control vocabulary differ.
    """
    from safetensors.torch import load_file

    from .model import resolve_model_dir

    src = resolve_model_dir(folder)
    saved = json.loads((src / "config.json").read_text())
    new = model.config
    for k in _SAME:
        if saved.get(k) != getattr(new, k, None):
            raise ConfigError(f"init_from {src}: {k} is {saved.get(k)} there but {getattr(new, k, None)} "
                              f"in this "
                              f"config; fine-tuning needs the same model shape")
    h_old = (saved.get("ecg_tokenizer") or {}).get("weights_hash")
    h_new = (getattr(new, "ecg_tokenizer", None) or {}).get("weights_hash")
    if h_old != h_new:
        raise ConfigError(f"init_from {src}: trained with tokenizer {str(h_old)[:12]}…, this run uses "
                          f"{str(h_new)[:12]}…: its token ids mean something else")
    names_old = _control_names(saved.get("ecg_conditioning"))
    names_new = _control_names(getattr(new, "ecg_conditioning", None))
    if names_old != names_new:
        raise ConfigError(f"init_from {src}: control vocabulary differs ({len(names_old)} vs "
                          f"{len(names_new)} "
                          f"tokens); pretrain and fine-tune with the same `sources` layout")
    sd = load_file(str(src / "model.safetensors"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or any("lm_head" not in k for k in missing):  # lm_head is tied to the embeddings
        raise ConfigError(f"init_from {src}: weights do not fit: missing {missing}, unexpected {unexpected}")
    return {"from": str(src), "tensors": len(sd)}


def _control_names(d) -> list[str]:
    if not isinstance(d, dict) or not d:
        return []
    if d.get("version") == 2:
        from .control import ControlSpec

        return ControlSpec.from_dict(d).names
    from .conditioning import ConditionSpec

    return ConditionSpec.from_dict(d).names
