#!/usr/bin/env bash
# Builds ferrum with CUDA on a GPU machine and checks it there: `ctest -L cuda` (the op contract on
# "cuda", the CUDA-only tests, the model fixtures with FERRUM_BACKEND=cuda), compute-sanitizer
# memcheck over the op-contract test, then `ferrum bench --backend cuda` on a Qwen3-0.6B-shaped
# random model (F16 and $QUANTS, default Q4_K_M Q8_0). Every stage has a time limit; logs go to $OUT (default
# ./cuda-logs): summary.txt, env.log, build.log, ctest.log, memcheck.log, bench.log.
#
# The machine needs nvcc, cuBLAS, CMake, ninja and python3 with numpy (the CUDA image has them).
# Missing Debian build dependencies and the gguf wheel come from .devdeps/ (bench/cuda/fetch_deps.sh,
# run beforehand where a registry is reachable), unpacked into a private prefix. Test data:
# $FERRUM_SHARED, else .devdata/ in the checkout when present, else ../shared.
# With the device tool (nothing but the checkout travels):
#   bench/cuda/fetch_deps.sh && ln -sfn /work/shared .devdata
#   run: bash bench/cuda/run_device.sh   carry: [".devdeps", ".devdata/fixtures", ".devdata/models"]
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/cuda-logs}
SUMMARY=$OUT/summary.txt
mkdir -p "$OUT"
: >"$SUMMARY"
source "$ROOT/bench/cuda/common.sh"
machine_log "$OUT/env.log"
note "shared test data: $SHARED"
build_ferrum ferrum test_backend_cuda test_models scheduler_test || exit 1

stage ctest_cuda 180 "$OUT/ctest.log" ctest --test-dir "$BUILD" -L cuda -j 4 --output-on-failure --timeout 240
grep -E "tests passed|tests failed" "$OUT/ctest.log" | tee -a "$SUMMARY"

stage memcheck 150 "$OUT/memcheck.log" compute-sanitizer --tool memcheck --error-exitcode 99 --leak-check no \
  "$BUILD/tests/backend/test_backend_cuda" --gtest_filter="Backends/*"
grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck.log" | tail -3 | tee -a "$SUMMARY"

# Benchmarks: a random model with Qwen3-0.6B's shapes, quantized by ferrum itself.
for q in F16 ${QUANTS:-Q4_K_M Q8_0}; do model qwen3-0.6b "$q" >/dev/null; done
# Decode steps replayed as CUDA graphs (the default) and op by op (--no-step-graphs), one after the other.
for m in "$MODELS"/qwen3-0.6b-{f16,q4_k_m,q8_0}.gguf; do
  [ -f "$m" ] || continue
  for g in "" --no-step-graphs; do
    stage "bench_$(basename "$m" .gguf)${g:+_op_by_op}" 120 "$OUT/bench.log" "$FERRUM" bench -m "$m" --backend cuda \
      -p 512 -n 128 -r "${REPS:-3}" $g
    grep -E "^\| qwen" "$OUT/bench.log" | tail -2 | sed "s/\$/ ${g:-graphs}/" | tee -a "$SUMMARY"
  done
done
# Batched decoding through the server: concurrent streams of 256 prompt / 128 output tokens
# (SERVE_LEVELS= skips it).
if [ -n "${SERVE_LEVELS-1,8,32,64}" ] && [ -f "$MODELS/qwen3-0.6b-q4_k_m.gguf" ]; then
  PORT=18778
  "$FERRUM" serve -m "$MODELS/qwen3-0.6b-q4_k_m.gguf" --backend cuda --port $PORT --max-num-seqs 64 --ctx-size 512 \
    --no-log-requests >"$OUT/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 60); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 1; done
  stage serve_load 200 "$OUT/serve_load.log" python3 "$ROOT/bench/serve_load.py" --url "http://127.0.0.1:$PORT" \
    -c "${SERVE_LEVELS:-1,8,32,64}" --input-len 256 --output-len 128 --level-seconds "${SERVE_SECONDS:-15}"
  kill -INT $SERVER; wait $SERVER
  grep -E "^ *[0-9]+ " "$OUT/serve_load.log" | tee -a "$SUMMARY"
fi
note "done"
