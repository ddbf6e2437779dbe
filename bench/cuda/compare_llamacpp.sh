#!/usr/bin/env bash
# ferrum against llama.cpp's CUDA backend on one GPU, same GGUF files, one run (issue #8's table):
# single-stream decode (tg128) and 512-token prefill (pp512) through `ferrum bench --backend cuda` and
# `llama-bench`, then batched decoding at 1/8/32/64 sequences through `ferrum bench --parallel` and
# `llama-batched-bench` (256 prompt + 128 generated tokens a sequence). Models are random-weight
# files with real shapes (bench/make_models.py, bench/make_moe_model.py), quantized by ferrum; both
# engines read the same files. Logs and summary.txt go to $OUT (default ./cuda-logs/compare).
#
# Needs what run_device.sh needs, plus llama.cpp: .devllama/llama-bin.tar.xz (built there by an earlier
# run and brought back) or .devllama/llama-src.tar.xz (built first, ~6 min on 16 cores); see
# bench/cuda/build_llamacpp.sh. TESTS=1 also runs the CUDA tests. With the device tool:
#   bench/cuda/fetch_deps.sh && bash bench/cuda/build_llamacpp.sh fetch
#   run: bash bench/cuda/compare_llamacpp.sh   carry: [".devdeps", ".devllama"]
# The script can be run again on the same machine: built binaries and models are reused. The default
# set takes ~45 GB of disk in $MODELS (the 8B model in BF16, Q8_0 and Q4_K_M; 8 Qwen3-30B-A3B layers).
# MODEL_SET overrides the list of NAME:TYPE pairs; BATCHED_MODEL the batched-decoding model; DEPTHS (e.g.
# 0,4096,16384) the tokens already in the cache before pp and tg (llama-bench -d; default 0).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/cuda-logs/compare}
SUMMARY=$OUT/summary.txt
mkdir -p "$OUT"
: >>"$SUMMARY"
source "$ROOT/bench/cuda/common.sh"
machine_log "$OUT/env.log"
LLAMA=${LLAMA_BIN:-$ROOT/.devllama/bin}
note "llama.cpp: $(cat "$ROOT/.devllama/VERSION" 2>/dev/null || echo unknown)"

# The float models are written while the two builds run (the first type named for a model decides
# whether its base is F16 or BF16).
SET=${MODEL_SET:-llama-3.1-8b:BF16 llama-3.1-8b:Q4_K_M llama-3.1-8b:Q8_0 qwen3-moe-8l:Q4_K_M qwen3-0.6b:Q4_K_M}
(
  seen=" "
  for spec in $SET; do
    name=${spec%%:*} t=$(echo "${spec##*:}" | tr 'A-Z' 'a-z')
    [[ $seen == *" $name "* ]] && continue
    seen+="$name "
    case $t in f16 | bf16) make_base "$name" "$t" ;; *) make_base "$name" f16 ;; esac
  done
) &
GEN=$!
LLAMA_BUILD=
if [ ! -x "$LLAMA/llama-bench" ] && [ -f "$ROOT/.devllama/llama-bin.tar.xz" ]; then
  tar xJf "$ROOT/.devllama/llama-bin.tar.xz" -C "$ROOT/.devllama"
fi
[ -x "$LLAMA/llama-bench" ] || {
  stage build_llamacpp 540 "$OUT/llama-build.log" bash bench/cuda/build_llamacpp.sh build &
  LLAMA_BUILD=$!
}
if [ -n "${TESTS:-}" ]; then
  build_ferrum ferrum test_backend_cuda test_models scheduler_test
else
  [ -x "$FERRUM" ] || build_ferrum ferrum
fi
wait $GEN
# TESTS=1: `ctest -L cuda` and compute-sanitizer over the op contract (as run_device.sh) while the
# quantized models are made.
if [ -n "${TESTS:-}" ]; then
  (for spec in $SET; do model "${spec%%:*}" "${spec##*:}" >/dev/null; done) &
  QUANT=$!
  stage ctest_cuda 240 "$OUT/ctest.log" ctest --test-dir "$BUILD" -L cuda -j 4 --output-on-failure --timeout 240
  grep -E "tests passed|tests failed|\(Failed\)" "$OUT/ctest.log" | tee -a "$SUMMARY"
  stage memcheck 90 "$OUT/memcheck.log" compute-sanitizer --tool memcheck --error-exitcode 99 --leak-check no \
    "$BUILD/tests/backend/test_backend_cuda" --gtest_filter="*RmsNorm*:*Rope*:*Attention*:*MatmulGroup*:CudaBackendTest.*"
  grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/memcheck.log" | tail -3 | tee -a "$SUMMARY"
  wait $QUANT
fi
# Kernel profiles (PROFILE="NAME:TYPE:pp|tg ...") need no llama.cpp: they run while it builds.
for p in ${PROFILE:-}; do
  m=$(model "${p%%:*}" "$(echo "$p" | cut -d: -f2)")
  stage "profile_${p//:/_}" 200 "$OUT/profile.log" bash bench/cuda/profile_kernels.sh "$FERRUM" "$m" "${p##*:}" \
    "$OUT/profile_${p//:/_}.txt"
done
[ -z "$LLAMA_BUILD" ] || wait $LLAMA_BUILD
[ -x "$FERRUM" ] && [ -x "$LLAMA/llama-bench" ] || { note "a build failed"; exit 1; }

REPS=${REPS:-3}
BACKEND=${BACKEND:-cuda}
BATCHED=${BATCHED_MODEL:-llama-3.1-8b:Q4_K_M}
for spec in $SET; do
  name=${spec%%:*}
  m=$(model "$name" "${spec##*:}")
  [ -f "$m" ] || continue
  base=$(basename "$m" .gguf)
  stage "llama-bench_$base" 240 "$OUT/llama-bench_$base.log" "$LLAMA/llama-bench" -m "$m" -ngl 99 -p 512 -n 128 \
    -d "${DEPTHS:-0}" -r "$REPS" -o md && grep -E "^\| .*(pp512|tg128)" "$OUT/llama-bench_$base.log" | sed 's/$/ llama.cpp/' | tee -a "$SUMMARY"
  stage "ferrum_$base" 240 "$OUT/ferrum_$base.log" "$FERRUM" bench -m "$m" --backend "$BACKEND" -p 512 -n 128 \
    -d "${DEPTHS:-0}" -r "$REPS" && grep -E "^\| .*(pp512|tg128)" "$OUT/ferrum_$base.log" | sed 's/$/ ferrum/' | tee -a "$SUMMARY"
  if [ "$spec" = "$BATCHED" ]; then
    stage "llama-batched-bench_$base" 300 "$OUT/llama-batched-bench_$base.log" "$LLAMA/llama-batched-bench" -m "$m" \
      -ngl 99 -c 32768 -npp 256 -ntg 128 -npl 1,8,32,64 &&
      grep -E "^\| +256 \|" "$OUT/llama-batched-bench_$base.log" | sed 's/$/ llama.cpp/' | tee -a "$SUMMARY"
    stage "ferrum_batched_$base" 300 "$OUT/ferrum_batched_$base.log" "$FERRUM" bench -m "$m" --backend "$BACKEND" \
      -p 256 -n 128 -r 1 --parallel 1,8,32,64 &&
      grep -E "^\| .* (pp256|tg128) " "$OUT/ferrum_batched_$base.log" | sed 's/$/ ferrum/' | tee -a "$SUMMARY"
  fi
done
note "done"
