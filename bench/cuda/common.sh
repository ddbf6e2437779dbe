# Shared by the GPU-machine scripts in bench/cuda (sourced, not run): logging with time limits, the
# build dependencies carried in .devdeps/, the ferrum CUDA build and the benchmark models.
# Expects ROOT (the checkout), OUT (log folder) and SUMMARY (summary file) to be set.
BUILD=${BUILD:-$ROOT/build-cuda-device}
JOBS=${JOBS:-$(nproc)}
MODELS=${MODELS:-/tmp/ferrum-models}
FERRUM=$BUILD/tools/ferrum/ferrum
mkdir -p "$OUT" "$MODELS"

note() { echo "$*" | tee -a "$SUMMARY"; }
# stage NAME LIMIT_S LOG CMD...: runs CMD with a time limit, appending to LOG, and records the result.
stage() {
  local name=$1 limit=$2 log=$3
  shift 3
  local t0=$SECONDS
  echo "== $name: $*" >>"$log"
  timeout "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  note "$name: rc=$rc in $((SECONDS - t0)) s$([ $rc -eq 124 ] && echo " (time limit $limit s)")"
  return $rc
}

machine_log() {
  {
    echo "== machine"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
    grep PRETTY_NAME /etc/os-release
    ldd --version | head -1
    nvcc --version | tail -2
    cmake --version | head -1
    python3 -c 'import numpy; print("numpy", numpy.__version__)'
    command -v compute-sanitizer pkg-config ninja
    nproc
    df -h /tmp | tail -1
  } >"$1" 2>&1
}

# Test data: $FERRUM_SHARED, else .devdata/ in the checkout when present, else ../shared.
if [ -z "${FERRUM_SHARED:-}" ] && [ -d "$ROOT/.devdata/fixtures" ]; then export FERRUM_SHARED=$ROOT/.devdata; fi
SHARED=${FERRUM_SHARED:-$ROOT/../shared}

# Build dependencies carried as .deb files go to a private prefix (unpacking into / can break the image);
# the gguf wheel (for bench/make_models.py) to a private site folder.
CMAKE_DEPS=()
if compgen -G "$ROOT/.devdeps/*.deb" >/dev/null; then
  P=/tmp/ferrum-deps
  if [ ! -d "$P/usr" ]; then
    mkdir -p "$P"
    for d in "$ROOT"/.devdeps/*.deb; do dpkg-deb -x "$d" "$P"; done
  fi
  export LD_LIBRARY_PATH=$P/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PKG_CONFIG_PATH=$P/usr/lib/x86_64-linux-gnu/pkgconfig:$P/usr/share/pkgconfig
  export PKG_CONFIG_SYSROOT_DIR=$P
  CMAKE_DEPS=(-DCMAKE_PREFIX_PATH="$P/usr" -DCMAKE_CXX_FLAGS="-isystem $P/usr/include"
              -DPKG_CONFIG_EXECUTABLE="$P/usr/bin/pkgconf")
fi
if compgen -G "$ROOT/.devdeps/gguf-*.whl" >/dev/null && ! python3 -c 'import gguf' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/ferrum-pysite "$ROOT"/.devdeps/gguf-*.whl >/dev/null 2>&1
  export PYTHONPATH=/tmp/ferrum-pysite${PYTHONPATH:+:$PYTHONPATH}
fi

# build_ferrum TARGET...: configures (once) and builds ferrum with CUDA into $BUILD.
build_ferrum() {
  if [ ! -f "$BUILD/build.ninja" ]; then
    stage configure 120 "$OUT/build.log" cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DFERRUM_CUDA=ON -DFERRUM_BUILD_BENCH=OFF -DFERRUM_SHARED_DIR="$SHARED" "${CMAKE_DEPS[@]}" ||
      { note "configure failed: see build.log"; return 1; }
  fi
  stage build 400 "$OUT/build.log" ninja -C "$BUILD" -j "$JOBS" "$@" || { note "build failed: see build.log"; return 1; }
}

# make_base NAME DTYPE (f16 or bf16): writes $MODELS/NAME-DTYPE.gguf, a random-weight model with a real
# model's shapes (bench/make_models.py; bench/make_moe_model.py, F16 only, for qwen3-moe-NNl).
make_base() {
  local name=$1 dtype=$2 f=$MODELS/$1-$2.gguf
  [ -f "$f" ] && return 0
  case $name in
    qwen3-moe-*l) stage "make_$name" 400 "$OUT/models.log" python3 "$ROOT/bench/make_moe_model.py" "$f.part" \
                    --layers "$(echo "$name" | sed "s/.*-\([0-9]*\)l$/\1/")" ;;
    *) stage "make_$name-$dtype" 400 "$OUT/models.log" python3 "$ROOT/bench/make_models.py" "$name" "$f.part" \
         --dtype "$dtype" ;;
  esac && mv "$f.part" "$f"
}

# model NAME TYPE: prints the path of model NAME in TYPE, made on first use: F16/BF16 directly,
# other types by `ferrum quantize` from the model's F16 or BF16 file.
model() {
  local name=$1 type=$2 lower src
  lower=$(echo "$type" | tr 'A-Z' 'a-z')
  local m=$MODELS/$name-$lower.gguf
  if [ ! -f "$m" ]; then
    if [ "$lower" = f16 ] || [ "$lower" = bf16 ]; then
      make_base "$name" "$lower" >&2
    else
      src=$(ls "$MODELS/$name-bf16.gguf" "$MODELS/$name-f16.gguf" 2>/dev/null | head -1)
      [ -n "$src" ] || { make_base "$name" f16 >&2; src=$MODELS/$name-f16.gguf; }
      stage "quantize_${name}_$type" 400 "$OUT/models.log" "$FERRUM" quantize "$src" "$m.part" "$type" >&2 &&
        mv "$m.part" "$m"
    fi
  fi
  echo "$m"
}
