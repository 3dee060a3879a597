#!/bin/bash
# Evaluate an LM v2 folder (docs/lm.md): unconditional scorecard, then per-rhythm adherence in three settings:
# rhythm grammar on (the default), grammar off (the rhythm prefix alone), grammar on + guidance 2.
# Usage: bash scripts/eval_lm_v2.sh <LM folder, e.g. runs/lm/v2_conditional/final> <tag> [n uncond 30-s samples=100] [n per condition=40]
# SKIP_UNCOND=1 skips the scorecard.
set -euo pipefail
M=${1:?model folder}; TAG=${2:?tag}; N=${3:-100}; NC=${4:-40}
PY=${PY:-.venv/bin/python}; DATA=${ECG2LLM_DATA:-../shared/data}; export WANDB_MODE=disabled
if [ -z "${SKIP_UNCOND:-}" ]; then
  $PY lm/generate.py --model $M --num_samples $N --seconds 30 --seed 0 --png false --out runs/gen/${TAG}_uncond
  $PY eval/score.py --synthetic runs/gen/${TAG}_uncond --out runs/eval/${TAG}_uncond --tokenizer $M/tokenizer --data_dir "$DATA"
fi
for V in "gnone_gram none true" "gnone_nogram none false" "g2_gram 2 true"; do
  set -- $V; NAME=$1; G=$2; GR=$3; SETS=""
  for R in N AFIB VT B T; do
    $PY lm/generate.py --model $M --num_samples $NC --seconds 10 --seed 0 --png false --condition rhythm:$R \
        --guidance $G --grammar $GR --out runs/gen/${TAG}_${R}_${NAME}
    SETS="$SETS,rhythm:$R=runs/gen/${TAG}_${R}_${NAME}"
  done
  $PY scripts/adherence.py --out runs/adherence/${TAG}_${NAME} --data_dir "$DATA" --sets ${SETS#,}
done
