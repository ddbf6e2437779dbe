#!/usr/bin/env bash
# Run on a Debian/Ubuntu machine with network access before bench/cuda/run_device.sh: the GPU
# machine can reach no package registry, so the build dependencies travel with the working tree.
# Downloads the Debian packages (unpacked there into a private prefix, never into /) and the gguf
# wheel (for bench/make_models.py) into .devdeps/, which git ignores; name it in the run's `carry`.
# libcpp-httplib.pc requires the openssl, zlib and brotli .pc files; their runtime libraries other
# than brotli are on any CUDA image.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .devdeps
cd .devdeps
rm -f ./*.deb ./*.whl
apt-get download nlohmann-json3-dev libfmt-dev libfmt9 libcli11-dev libpcre2-dev libpcre2-8-0 libutf8proc-dev \
  libutf8proc2 libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1 libssl-dev zlib1g-dev \
  libgtest-dev libgmock-dev pkgconf pkgconf-bin libpkgconf3
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d . gguf==0.19.0
ls -la
