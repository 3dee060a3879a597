#!/bin/bash
# Evaluate an LM v3 folder (issue 39): goal numbers (scripts/eval_lm_v3.py), condition adherence through control
# tokens + classifier-free guidance only (scripts/adherence.py, rhythm classifier + beat classifier on the .atr
# labels the model drew), and the scorecard on unconditional sets (eval/score.py).
# Usage: bash scripts/eval_lm_v3.sh <LM folder, e.g. lm/pretrained/v3> <tag> [guidance=2] [n per condition (10-s samples, as LM v2 was measured)=64] [scored sets=2]
set -euo pipefail
M=${1:?model folder}; TAG=${2:?tag}; G=${3:-2}; NC=${4:-64}; NS=${5:-2}
PY=${PY:-.venv/bin/python}; DATA=${ECG2LLM_DATA:-../shared/data}; export WANDB_MODE=disabled
SETS=""
for C in rhythm:N rhythm:AFIB rhythm:VT rhythm:B beat:V beat:S; do
  D=runs/gen/${TAG}_${C/:/_}_g${G}
  $PY lm/generate.py --model $M --num_samples $NC --seconds 10 --seed 0 --png false --condition $C --guidance $G \
      --out $D --num_threads 1
  SETS="$SETS,$C=$D"
done
$PY scripts/adherence.py --out runs/adherence/${TAG}_g${G} --data_dir "$DATA" --sets ${SETS#,} --beats true
for S in $(seq 0 $((NS - 1))); do
  $PY lm/generate.py --model $M --num_samples 100 --seconds 30 --seed $S --png false --out runs/gen/${TAG}_uncond_s$S \
      --num_threads 1
  $PY eval/score.py --synthetic runs/gen/${TAG}_uncond_s$S --out runs/eval/${TAG}_uncond_s$S --data_dir "$DATA"
done
