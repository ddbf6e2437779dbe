#!/usr/bin/env bash
# The whole test suite, as CI runs it: warnings-as-errors build + every test, an ASan/UBSan build
# of the unit tests, and a short libFuzzer run over the file readers.
# Needs the dependencies of scripts/install-deps.sh. FERRUM_SHARED overrides ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}

echo "== build (ci preset: -Werror)"
cmake --preset ci >/dev/null
cmake --build --preset ci -j "$JOBS"
echo "== tests"
ctest --preset ci -j "$JOBS"

echo "== ASan + UBSan unit tests"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$JOBS"
ASAN_OPTIONS=detect_leaks=1 ctest --preset asan -j "$JOBS" -LE python

echo "== fuzz the GGUF and safetensors readers (${FUZZ_SECONDS}s each)"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$JOBS" --target fuzz_gguf fuzz_safetensors
for t in gguf safetensors; do
  corpus=$(mktemp -d)
  ./build-fuzz/fuzz/fuzz_$t -max_total_time="$FUZZ_SECONDS" -max_len=4096 -print_final_stats=0 \
    "$corpus" fuzz/corpus/$t 2>&1 | tail -n 1
  rm -rf "$corpus"
done
echo "== all tests passed"
