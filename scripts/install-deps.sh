#!/usr/bin/env bash
# Installs everything ferrum needs to build and test, from Debian packages and PyPI only.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PKGS=(build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev libomp-dev
      nlohmann-json3-dev libfmt-dev libcli11-dev libpcre2-dev libcpp-httplib-dev libutf8proc-dev
      libgtest-dev libgmock-dev libbenchmark-dev python3 python3-pip)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# Reference libraries for tests and benchmarks (never used by the product itself).
REQ="$(dirname "$0")/../tests/requirements.txt"
python3 -m pip install -q --disable-pip-version-check -r "$REQ" 2>/dev/null ||
  python3 -m pip install -q --disable-pip-version-check --break-system-packages -r "$REQ"
