#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: installs what is missing, builds, and runs
# `sluice run examples/hello/service.yaml`: serverless on this machine, starting at zero
# replicas. Ctrl-C drains and stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target sluice >/dev/null
PORT=${PORT:-8080}
cat <<MSG

  Starting 'sluice run examples/hello/service.yaml' on :$PORT (metrics :9090). In another
  terminal, try:

    curl -i http://hello.default.localhost:$PORT/          # the first request starts a replica
    seq 600 | xargs -P 24 -I{} curl -s -o /dev/null \\
        http://hello.default.localhost:$PORT/slow?ms=200   # load: watch it scale out
    curl -s http://127.0.0.1:9090/metrics | grep ^autoscaler_

  Idle for ~40 s, it scales back to zero. Ctrl-C to stop.

MSG
exec build/src/cli/sluice run examples/hello/service.yaml --port "$PORT"
