#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each: first over its kept
# corpus and crash inputs (regressions: any failure stops here), then for
# SLUICE_FUZZ_SECONDS (default 60) of new inputs. New corpus entries go to a scratch
# directory, not into the repository; a crash input is printed and kept under build-fuzz/.
#   scripts/fuzz.sh                 every target
#   scripts/fuzz.sh request 600     one target, ten minutes
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${2:-${SLUICE_FUZZ_SECONDS:-60}}
targets=(request duration probe endpoints service trace)
if [[ -n "${1:-}" ]]; then targets=("$1"); fi

CXX=clang++ cmake -S "$root" -B build-fuzz -G Ninja -DSLUICE_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
mkdir -p build-fuzz
cmake --build build-fuzz -j "$(nproc)"
for t in "${targets[@]}"; do
  bin=build-fuzz/tests/fuzz/fuzz_$t
  kept=tests/fuzz/corpus/$t
  scratch=$(mktemp -d)
  echo "== fuzz $t: kept inputs, then ${seconds}s"
  # Regressions: every kept input (corpus and past crashes) must still pass.
  if ! "$bin" -runs=0 "$kept" > "build-fuzz/regress-$t.log" 2>&1; then
    cat "build-fuzz/regress-$t.log"
    echo "fuzz $t: a kept input fails (above)" >&2
    exit 1
  fi
  tail -1 "build-fuzz/regress-$t.log"
  mkdir -p build-fuzz/crashes/$t
  if ! "$bin" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="build-fuzz/crashes/$t/" -print_final_stats=0 "$scratch" "$kept" \
      > "build-fuzz/fuzz-$t.log" 2>&1; then
    cat "build-fuzz/fuzz-$t.log" | tail -60
    echo "fuzz $t found a failing input (kept under build-fuzz/crashes/$t/; add it to $kept)" >&2
    rm -rf "$scratch"
    exit 1
  fi
  tail -1 "build-fuzz/fuzz-$t.log"
  rm -rf "$scratch"
done
