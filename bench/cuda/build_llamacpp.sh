#!/usr/bin/env bash
# llama.cpp with CUDA, for the GPU comparison (bench/cuda/compare_llamacpp.sh), from the source
# distribution of PyPI's llama-cpp-python (its vendor/llama.cpp), as issue #8 asks.
#   bash bench/cuda/build_llamacpp.sh fetch   # where PyPI is reachable: trimmed sources -> .devllama/llama-src.tar.xz
#   bash bench/cuda/build_llamacpp.sh build   # here or on the GPU machine: -> .devllama/bin/llama-bench,
#                                             #   llama-batched-bench and their ggml/llama libraries (sm_90a),
#                                             #   packed as .devllama/llama-bin.tar.xz (~42 MB) to carry
# .devllama/ is ignored by git; name it in the device run's `carry` (the trimmed sources are ~5 MB;
# the binaries, built there or here, can come back xz-compressed to be carried next time: ~5 min of 16
# cores saved; GGML_NATIVE=OFF keeps its CPU code portable between the two machines).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DIR=$ROOT/.devllama
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
mkdir -p "$DIR"
case ${1:-} in
  fetch)
    T=$(mktemp -d)
    python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary=:all: -d "$T" \
      "llama-cpp-python==$VERSION"
    tar xzf "$T"/llama_cpp_python-*.tar.gz -C "$T"
    # Only what the CUDA build of the two tools reads: no models, docs, tests or other GPU backends.
    tar cJf "$DIR/llama-src.tar.xz" -C "$T"/llama_cpp_python-*/vendor \
      --exclude=llama.cpp/models --exclude=llama.cpp/docs --exclude=llama.cpp/media --exclude=llama.cpp/gguf-py \
      --exclude=llama.cpp/tests --exclude=llama.cpp/examples --exclude=llama.cpp/tools/ui --exclude=llama.cpp/.git \
      --exclude='llama.cpp/ggml/src/ggml-'{sycl,vulkan,opencl,cann,musa,metal,webgpu,hexagon,zdnn} llama.cpp
    echo "llama-cpp-python $VERSION" >"$DIR/VERSION"
    rm -rf "$T"
    ls -la "$DIR"
    ;;
  build)
    SRC=${LLAMA_BUILD_DIR:-/tmp/llama.cpp-build}
    mkdir -p "$SRC"
    [ -f "$SRC/llama.cpp/CMakeLists.txt" ] || tar xJf "$DIR/llama-src.tar.xz" -C "$SRC"
    # Without a driver (building here for the GPU machine) executables link against the toolkit's
    # libcuda stub, found through -rpath-link; at run time the driver's libcuda.so.1 is used.
    STUB=/tmp/ferrum-cuda-stub
    mkdir -p "$STUB" && ln -sf "${CUDA_HOME:-/usr/local/cuda}/lib64/stubs/libcuda.so" "$STUB/libcuda.so.1"
    cmake -S "$SRC/llama.cpp" -B "$SRC/b" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
      -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$STUB" \
      -DCMAKE_CUDA_ARCHITECTURES=90a -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=ON -DCMAKE_BUILD_RPATH='$ORIGIN' \
      -DGGML_CUDA_NCCL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF \
      -DLLAMA_OPENSSL=OFF >/dev/null
    ninja -C "$SRC/b" -j "${JOBS:-$(nproc)}" llama-bench llama-batched-bench
    mkdir -p "$DIR/bin"
    cp -P "$SRC"/b/bin/llama-bench "$SRC"/b/bin/llama-batched-bench "$SRC"/b/bin/*.so* "$DIR/bin/"
    strip "$DIR"/bin/llama-bench "$DIR"/bin/llama-batched-bench
    (cd "$DIR" && tar cJf llama-bin.tar.xz bin VERSION)
    ls -la "$DIR/bin"
    ;;
  *) echo "usage: $0 fetch|build" >&2; exit 2 ;;
esac
