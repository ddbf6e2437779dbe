#!/usr/bin/env bash
# Where a GPU serving step spends its time: builds ferrum with CUDA (as run_device.sh does), starts
# `ferrum serve --backend cuda` under Nsight Systems on a Qwen3-0.6B-shaped Q4_K_M model, drives it
# with bench/serve_load.py at one concurrency (default 64), and writes the CUDA kernel / API / memcpy
# summaries to $OUT (default ./cuda-logs/profile). Needs Nsight Systems on the GPU machine; same carry as
# run_device.sh. Usage: bash bench/cuda/profile_serve.sh [CONCURRENCY]
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/cuda-logs/profile}
BUILD=${BUILD:-$ROOT/build-cuda-device}
MODELS=${MODELS:-/tmp/ferrum-models}
CONC=${1:-64}
mkdir -p "$OUT" "$MODELS"
# nsys from PATH, else the copy some images ship inside Nsight Compute (on the lent H200 image that copy
# has no importer: it writes only serve.qdstrm and the stats step finds nothing).
NSYS_BIN=${NSYS_BIN:-$(command -v nsys || ls /opt/nvidia/nsight-*/*/host/target-linux-x64/nsys 2>/dev/null | head -1)}
[ -n "$NSYS_BIN" ] || { echo "nsys not found" | tee "$OUT/summary.txt"; exit 1; }
M=$MODELS/qwen3-0.6b-q4_k_m.gguf
# run_device.sh builds ferrum, checks it and makes the model (its logs go to $OUT/device).
if [ ! -x "$BUILD/tools/ferrum/ferrum" ] || [ ! -f "$M" ]; then
  OUT=$OUT/device BUILD=$BUILD MODELS=$MODELS timeout 500 bash bench/cuda/run_device.sh >/dev/null 2>&1
fi
FERRUM=$BUILD/tools/ferrum/ferrum
PORT=18777
"$NSYS_BIN" profile -o "$OUT/serve" --force-overwrite true --trace cuda,osrt --sample none \
  "$FERRUM" serve -m "$M" --backend cuda --port $PORT --max-num-seqs "$CONC" --ctx-size 512 --no-log-requests \
  >"$OUT/server.log" 2>&1 &
NSYS=$!
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 1; done
timeout 120 python3 bench/serve_load.py --url "http://127.0.0.1:$PORT" -c "$CONC" --input-len 256 --output-len 128 \
  --level-seconds 20 >"$OUT/load.txt" 2>&1
pkill -INT -f "ferrum serve -m $M" ; wait $NSYS
"$NSYS_BIN" stats --report cuda_gpu_kern_sum,cuda_api_sum,cuda_gpu_mem_time_sum --format csv -o "$OUT/stats" "$OUT/serve.nsys-rep" \
  >/dev/null 2>&1
cat "$OUT/load.txt" | tail -3 | tee "$OUT/summary.txt"
for f in "$OUT"/stats_*.csv; do echo "== $f"; head -15 "$f"; done | tee -a "$OUT/summary.txt"
