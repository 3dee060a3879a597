#!/bin/bash
# Evaluate an LM v2 folder (docs/lm.md): unconditional scorecard, per-rhythm adherence with guidance none and 2.
# Usage: bash scripts/eval_lm_v2.sh <LM folder, e.g. runs/lm/v2_conditional/final> <tag> [n uncond 30-s samples=100] [n per condition=40]
set -euo pipefail
M=${1:?model folder}; TAG=${2:?tag}; N=${3:-100}; NC=${4:-40}
PY=${PY:-.venv/bin/python}; DATA=${ECG2LLM_DATA:-../shared/data}; export WANDB_MODE=disabled
$PY lm/generate.py --model $M --num_samples $N --seconds 30 --seed 0 --png false --out runs/gen/${TAG}_uncond
$PY eval/score.py --synthetic runs/gen/${TAG}_uncond --out runs/eval/${TAG}_uncond --tokenizer $M/tokenizer --data_dir "$DATA"
SETS=""
for G in none 2; do for R in N AFIB VT B T; do
  $PY lm/generate.py --model $M --num_samples $NC --seconds 10 --seed 0 --png false --condition rhythm:$R --guidance $G --out runs/gen/${TAG}_${R}_g$G
  SETS="$SETS,rhythm:$R=runs/gen/${TAG}_${R}_g$G"
done
$PY scripts/adherence.py --out runs/adherence/${TAG}_g$G --data_dir "$DATA" --sets ${SETS#,}
SETS=""; done
