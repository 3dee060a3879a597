#!/bin/bash
# guided teacher samples for guidance distillation (issue 39): the continued LM v3 (`default`, lm/pretrained/v3) at
# guidance 3 + label guidance 1 -> runs/distill/syn (and, filtered, runs/distill/syn_bc): v3-conditional's recipe step
exec bash scripts/lm_v3_teacher.sh "$@"
