#!/bin/bash
# The teacher of `v3-conditional` (configs/lm/v3_distill_bc.yaml, guidance distillation; docs/lm.md): `default`
# (configs/lm/v3_continue.yaml's run, = lm/pretrained/v3) writes 128 label-guided samples x 120 s (guidance 3,
# --label_guidance 1, texture off) unconditionally and under beat:V, beat:S, beat:F and rhythm:B to runs/distill/syn
# (about 13 minutes on 2 cores); scripts/filter_teacher.py then keeps in runs/distill/syn_bc the samples with no 30-s
# window whose beats do not repeat (beat consistency below the real band pool's 1st percentile, 0.714).
#
#   bash scripts/lm_v3_teacher.sh [TEACHER]    # TEACHER: default runs/lm/v3_continue/final (or lm/pretrained/v3)
# Run from the repository root.
set -e
if [ -f .venv/bin/activate ]; then source .venv/bin/activate; fi
export ECG2LLM_DATA=${ECG2LLM_DATA:-../shared/data}
M=${1:-runs/lm/v3_continue/final}
if [ ! -f "$M/config.json" ]; then
  echo "lm_v3_teacher.sh: no LM at $M; train it first: accelerate launch lm/train.py --config configs/lm/v3_continue.yaml" >&2
  exit 2
fi
n=128
python lm/generate.py --model "$M" --label_guidance 1 --num_samples $n --seconds 120 --seed 7000 --png false \
  --texture false --out runs/distill/syn/unconditional --num_threads 2
i=1
for c in beat:V beat:S beat:F rhythm:B; do
  python lm/generate.py --model "$M" --condition $c --guidance 3 --label_guidance 1 --num_samples $n --seconds 120 \
    --seed $((7000+i*100)) --png false --texture false --out runs/distill/syn/${c/:/_} --num_threads 2
  i=$((i+1))
done
python scripts/filter_teacher.py --src runs/distill/syn --out runs/distill/syn_bc --min_consistency 0.714
