"""Generate synthetic ECGs with a trained LM: WFDB records in mV, .npy, PNG and manifest.json.

Launch (from the repo root)::

    python lm/generate.py --model default --num-samples 8 --seconds 10 --out runs/gen --seed 0
    python lm/generate.py --model runs/lm/tiny/final --num-samples 64 --seconds 30 --top-p 0.95 --out runs/gen
    python lm/generate.py --model default --prompt-record 100 --prompt-seconds 5 --seconds 10 \
        --data_dir ../shared/data --out runs/gen_prompted

Unconditional samples start from BOS; ``--prompt-record ID --prompt-seconds P`` continues the first P
seconds (from ``--prompt-start``) of a real record instead, and the written signal holds the prefix then
the continuation. The tokenizer is rebuilt from the LM's config (its copy in ``<model>/tokenizer``, or
``--tokenizer``) and refused if its config or weights hash differ from the ones the LM was trained with.
The same seed and batch size give identical output. Every field of :class:`ecg2llm.lm.synthesize.GenerateConfig`
is a flag.

LM v2 (trained with ``configs/lm/v2_*.yaml``: source/lead tokens, condition dropout)::

    python lm/generate.py --model runs/lm/v2_conditional/final --condition rhythm:N --guidance 2 \
        --source mitdb --lead MLII --num-samples 8 --seconds 10 --out runs/gen_guided

``--guidance G`` is the classifier-free guidance scale (unset: the conditional branch alone; 1: the same
samples; > 1: stronger adherence to ``--condition``); LMs without control tokens refuse it, and ``--source`` /
``--lead``.
A tokenizer v2 with a texture model decodes with texture by default (noise, mains, fine detail, seeded
per sample from ``--seed``); ``--texture false`` writes the clean ECG band. The manifest records both.
``--label_gap 2.0`` (LM v2, no rhythm requested) keeps every sample's beat labels coming (a beat label at
least every 2 s, ``ecg2llm.lm.grammar.LabelGap``), so every generated beat gets an ``.atr`` annotation.
"""
import sys

from ecg2llm.core.cli import run_main
from ecg2llm.core.config import parse_config
from ecg2llm.lm.synthesize import GenerateConfig


@run_main
def main(argv=None):
    """Parse flags into :class:`GenerateConfig`, generate, print a one-line summary."""
    from ecg2llm.lm.synthesize import generate

    cfg = parse_config(GenerateConfig, argv, description=__doc__)
    m = generate(cfg)
    t = m["timing"]
    print(f"{len(m['samples'])} synthetic ECGs x {cfg.seconds:g} s at {m['fs']:g} Hz written to {cfg.out} "
          f"({t['ecg_seconds_per_second']:.1f} ECG-s/s on {t['device']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
