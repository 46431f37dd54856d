#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is missing, checks
# formatting and project rules, builds (-Werror), runs every test (unit and end-to-end)
# under ASan+UBSan and under TSan, then again in a normal build with ctest.
#   scripts/test.sh            everything (what CI runs)
#   SLUICE_SKIP_SANITIZERS=1 SLUICE_SKIP_FUZZ=1 scripts/test.sh   quick local loop
# The cluster tests (ctest -L cluster) need root (network namespaces) and Go (the
# control plane is built from Go modules by scripts/cluster-build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)

scripts/install-deps.sh

echo "== format and rules"
if ! clang-format --dry-run --Werror $(git ls-files 'src/*.cc' 'src/*.h' 'tests/*.cc' 'tests/*.h' 'tools/*.cc' 'bench/*.cc') 2>/tmp/sluice-format.log; then
  head -20 /tmp/sluice-format.log
  echo "formatting differs from .clang-format: run clang-format -i on the files above" >&2
  exit 1
fi
# Logic takes time and randomness from core/ (TimeSource, Random); tests never sleep.
if grep -rn -E 'std::chrono::(steady|system|high_resolution)_clock::now\(|std::random_device|[^a-z_]rand\(\)|sleep_for\(' src | grep -v '^src/core/'; then
  echo "src/ outside core/ reads a clock, randomness or sleeps directly" >&2
  exit 1
fi
if grep -rn -E 'sleep_for\(|usleep\(|[^_]sleep\(' tests/unit; then
  echo "unit tests must not sleep: use ManualTimeSource" >&2
  exit 1
fi

# The cluster tests' control plane (kube-apiserver, etcd, Knative), built once from Go
# modules and cached outside the repo (~12-15 minutes the first time, instant after).
echo "== cluster binaries"
SLUICE_CLUSTER_BIN=$(scripts/cluster-build.sh)
export SLUICE_CLUSTER_BIN

# h2spec, the HTTP/2 conformance suite (a Go module), for the HTTP/2 end-to-end tests;
# built once into the same cache.
h2spec_dir=${SLUICE_H2SPEC_CACHE:-$HOME/.cache/sluice/h2spec-v2.2.1}
if [[ ! -x "$h2spec_dir/h2spec" ]]; then
  echo "== h2spec (one-time build)"
  GOBIN="$h2spec_dir" GOTOOLCHAIN=local GOFLAGS=-modcacherw PATH=$PATH:/usr/local/go/bin \
    go install 'github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible'
fi
export SLUICE_H2SPEC="$h2spec_dir/h2spec"

build_tree() {  # dir, extra cmake args...
  local dir=$1
  shift
  cmake -S "$root" -B "$dir" -G Ninja -DSLUICE_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

if [[ -z "${SLUICE_SKIP_SANITIZERS:-}" ]]; then
  # Unit and end-to-end: the real binaries under ASan+UBSan find what only shutdown,
  # signals and real sockets exercise.
  echo "== unit and end-to-end tests under ASan+UBSan"
  build_tree build-asan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=address,undefined
  # Every failure is shown whole (which test, and its output): no tail.
  # The cluster scenarios run Sluice's pods under the sanitizers too (a report in any
  # pod's log fails the test); Knative's own data plane is tested once, below.
  (cd build-asan && ctest -j "$jobs" --output-on-failure --progress -E 'KnativeDataPlane|/knative( |$)')
  echo "== unit and end-to-end tests under TSan"
  build_tree build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_SANITIZE=thread
  # Unit and end-to-end only: a CI run must stay under an hour on two cores, and the
  # cluster scenarios already ran Sluice under ASan+UBSan.
  (cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest -j "$jobs" --output-on-failure --progress -LE cluster)
fi

if [[ -z "${SLUICE_SKIP_FUZZ:-}" ]]; then
  # libFuzzer over every parser: kept corpora and past crash inputs, then a minute each.
  echo "== fuzzing"
  # 30 s of new inputs per target keeps a first run (with the cluster build) under an
  # hour on two cores; `scripts/fuzz.sh TARGET SECONDS` fuzzes longer.
  SLUICE_FUZZ_SECONDS=${SLUICE_FUZZ_SECONDS:-30} scripts/fuzz.sh
fi

echo "== all tests"
build_tree build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cd build
if [[ -z "${SLUICE_SKIP_SANITIZERS:-}" ]]; then
  # Sluice's own cluster scenarios already ran above under ASan+UBSan (about six minutes
  # on two cores): here, everything else, including Knative's data plane on the cluster.
  ctest -j "$jobs" --output-on-failure -E 'SluiceAutoscaler|/sluice( |$)'
else
  ctest -j "$jobs" --output-on-failure
fi
