#!/usr/bin/env bash
# Installs the Debian 12 packages that Sluice's build, tests and benchmarks need.
# Idempotent: packages already present are not fetched again, so a second run is fast.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --bench  also the benchmark peers (wrk, haproxy, nginx, Go toolchain check)
set -euo pipefail

build_pkgs=(
  cmake ninja-build g++ pkg-config git curl ca-certificates python3 python3-websockets python3-yaml
  iproute2 util-linux openssl libssl-dev
  libboost1.81-dev libprotobuf-dev protobuf-compiler prometheus-cpp-dev nlohmann-json3-dev
  libyaml-dev libcli11-dev libspdlog-dev libfmt-dev libxxhash-dev libgtest-dev libgmock-dev
  libbenchmark-dev clang clang-format libclang-rt-14-dev buildah
  libnghttp2-dev nghttp2-client python3-grpcio python3-h2
)
bench_pkgs=(wrk haproxy nginx procps nghttp2-proxy nghttp2-server)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--bench" ]]; then want+=("${bench_pkgs[@]}"); fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
