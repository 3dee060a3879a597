#!/bin/bash
# guided samples of the first distilled student (runs/lm/v3_distill), for the second round (issue 39)
if [ -f .venv/bin/activate ]; then source .venv/bin/activate; fi   # run from the repo root
export ECG2LLM_DATA=${ECG2LLM_DATA:-../shared/data}
set -e
n=128
python lm/generate.py --model runs/lm/v3_distill/final --label_guidance 1 --num_samples $n --seconds 120 --seed 8000 --png false --texture false --out runs/distill/syn2/unconditional --num_threads 2
i=1
for c in beat:V beat:S beat:F rhythm:B; do
  python lm/generate.py --model runs/lm/v3_distill/final --condition $c --guidance 3 --label_guidance 1 --num_samples $n --seconds 120 --seed $((8000+i*100)) --png false --texture false --out runs/distill/syn2/${c/:/_} --num_threads 2
  i=$((i+1))
done
echo done
