#!/bin/bash
# guided teacher samples for guidance distillation (issue 39): default at guidance 3 + label guidance 1
if [ -f .venv/bin/activate ]; then source .venv/bin/activate; fi   # run from the repo root
export ECG2LLM_DATA=${ECG2LLM_DATA:-../shared/data}
set -e
n=128
python lm/generate.py --model default --label_guidance 1 --num_samples $n --seconds 120 --seed 7000 --png false --texture false --out runs/distill/syn/unconditional --num_threads 2
i=1
for c in beat:V beat:S beat:F rhythm:B; do
  python lm/generate.py --model default --condition $c --guidance 3 --label_guidance 1 --num_samples $n --seconds 120 --seed $((7000+i*100)) --png false --texture false --out runs/distill/syn/${c/:/_} --num_threads 2
  i=$((i+1))
done
echo done
