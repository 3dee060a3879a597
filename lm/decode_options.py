"""Decode options shared by the LM v2 and LM v3 samplers: the texture setting and each sample's decode seeds.

Both :mod:`ecg2llm.lm.synthesize` (v2) and :mod:`ecg2llm.lm.beat_generate` (v3) decode generated tokens with
the tokenizer's texture and baseline models; the seeds below make a sample's decode reproducible from the
manifest alone, whichever sampler produced it.
"""
from __future__ import annotations

import numpy as np

from ecg2llm.core.errors import ConfigError


def has_texture(tok) -> bool:
    """Whether ``tok`` can decode with texture (tokenizer v2 with a fitted texture model)."""
    return bool(getattr(tok, "has_texture", False))


def resolve_texture(tok, texture: bool | None) -> bool:
    """The texture setting to decode with: ``None`` -> on exactly when the tokenizer has a texture model.

    Raises
    ------
    ConfigError
        ``texture=True`` for a tokenizer without texture (tokenizer v1, or v2 never fitted).
    """
    if texture is None:
        return has_texture(tok)
    if not isinstance(texture, (bool, np.bool_)):
        raise ConfigError(f"texture must be True, False or None (automatic), got {texture!r}")
    if texture and not has_texture(tok):
        raise ConfigError(f"texture=True needs a tokenizer v2 with a fitted texture model; this LM's "
                          f"{getattr(tok, 'tokenizer_type', type(tok).__name__)!r} tokenizer has none: "
                          f"leave texture unset (or false)")
    return bool(texture)


def texture_seed(seed: int, i: int) -> int:
    """Seed of sample ``i``'s texture decode when the sampling seed is ``seed``.

    A hash of ``(seed, i)`` (``numpy.random.SeedSequence``), so it does not depend on the batch size and is
    not the seed of any sampling batch (those use ``seed + batch index``). Recorded per sample in the
    manifest (``texture_seed``): ``tok.decode(ids, texture=True, seed=texture_seed(seed, i))`` redoes it.

    Parameters
    ----------
    seed : int
        The sampling seed (``--seed``).
    i : int
        Index of the sample in the call.

    Returns
    -------
    int
        A seed in ``[0, 2**32)``.
    """
    return int(np.random.SeedSequence([int(seed) % 2 ** 63, int(i), 0x7E47]).generate_state(1)[0])


def wander_seed(texture_seed_i: int) -> int:
    """Seed of a sample's baseline (wander) draw, from its texture seed (:func:`texture_seed`).

    ``tok.sample_state(n, seed=wander_seed(texture_seed(seed, i)))`` redoes sample ``i``'s baseline.
    """
    return int(np.random.SeedSequence([int(texture_seed_i), 0xBA5E]).generate_state(1)[0])
