#!/usr/bin/env bash
# GPU time per kernel of ferrum's prefill or decode steps, under Nsight Compute (one metric, so each
# kernel replays once): the place to look first when a model is slower than it should be.
#   bash bench/cuda/profile_kernels.sh FERRUM MODEL pp|tg|tgN OUTFILE
# pp: two 512-token prefills (warm-up and measured); tg: four single-token decode steps run op by op
# (--no-step-graphs); tgN (e.g. tg32): four decode steps of N sequences, op by op. OUTFILE gets ncu's per-kernel summary (invocations, average/min/max duration in ns).
set -uo pipefail
FERRUM=$1 MODEL=$2 MODE=$3 OUTFILE=$4
NCU=${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}
case $MODE in
  pp) ARGS=(-p 512 -n 0 -r 1) ;;
  tg) ARGS=(-p 0 -n 2 -r 1 --no-step-graphs) ;;
  tg[0-9]*) ARGS=(-p 0 -n 2 -r 1 --no-step-graphs --parallel "${MODE#tg}") ;;
  *) echo "mode: pp, tg or tgN" >&2; exit 2 ;;
esac
"$NCU" --metrics gpu__time_duration.sum --print-summary per-kernel --clock-control none \
  "$FERRUM" bench -m "$MODEL" --backend cuda "${ARGS[@]}" >"$OUTFILE" 2>&1
