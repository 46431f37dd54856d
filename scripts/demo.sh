#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: installs, builds, and runs the example
# app (examples/hello) behind `sluice queue-proxy`, then prints what to try.
# Ctrl-C stops both. (Issue 4 turns this into `sluice run examples/hello/service.yaml`.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target sluice >/dev/null

APP_PORT=${APP_PORT:-8080}
qp=""
PORT=$APP_PORT python3 examples/hello/app.py &
app=$!
trap 'kill $app $qp 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
build/src/cli/sluice queue-proxy --port 8012 --user-port "$APP_PORT" --container-concurrency 4 \
  --drain-quiet-period 1s &
qp=$!
cat <<MSG

  Sluice queue-proxy on :8012 in front of examples/hello on :$APP_PORT. Try:

    curl -i http://127.0.0.1:8012/
    curl -i -H 'K-Network-Probe: queue' http://127.0.0.1:8012/     # readiness, as kubelet sees it
    curl -s http://127.0.0.1:9091/metrics | grep revision_request_count
    wrk -t2 -c64 -d5s http://127.0.0.1:8012/slow?ms=100   # 64 > 11 x CC=4: the excess gets 503
                                                           # (wrk: apt-get install wrk)

  Ctrl-C to stop.
MSG
wait $qp
