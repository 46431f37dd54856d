#!/usr/bin/env bash
# Builds everything the proxy benchmark needs (Release sluice, the test app, Knative
# 1.18's queue-proxy from its Go module, HAProxy/nginx/wrk from Debian) and runs it.
#   bench/run.sh [--duration 10] [--rounds 2] [--conns 64,256]      queue-proxy vs peers
#   bench/run.sh --activator [--duration 10] [--trials 50]            activator hop, cold start
#   bench/run.sh --run [--trials 20]                                  sluice run: cold start, reaction
#   bench/run.sh --one-hop [--duration 10] [--rounds 3] [--trials 20] sluice run in-process vs --queue-proxy=process vs HAProxy
#   bench/run.sh --cluster [--trials 20] [--duration 10] [--conns 16] Knative's data plane vs Sluice's on the cluster harness
#   bench/run.sh --autoscaler [--pokes 5] [--revisions 1000]           Knative's autoscaler vs sluice autoscaler on the harness
#   bench/run.sh --http2 [--duration 8] [--rounds 2]                   HTTP/2 hops (h2load) vs HAProxy and nghttpx
#   bench/run.sh --cluster-http2 [--duration 8] [--conns 8]            HTTP/2 and unary gRPC: Knative's data plane vs Sluice's on the harness
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --bench
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build build-bench -j "$(nproc)" --target sluice sluice-testapp >/dev/null
if [[ ! -x bench/.bin/queue ]]; then
  # Knative Serving v0.45.x is the knative-v1.18 release line. v0.45.2 (1.18.2) is refused
  # by the module proxy this machine reaches, so fall back to v0.45.1 (1.18.1).
  for v in v0.45.2 v0.45.1; do
    if GOBIN="$PWD/bench/.bin" go install "knative.dev/serving/cmd/queue@$v" 2>/dev/null; then
      echo "built Knative queue-proxy $v" >&2
      echo "$v" > bench/.bin/queue.version
      break
    fi
  done
fi
if [[ "${1:-}" == "--http2" ]]; then
  shift
  exec python3 bench/h2_bench.py "$@"
fi
if [[ "${1:-}" == "--cluster-http2" ]]; then
  shift
  exec python3 bench/cluster_h2_bench.py "$@"
fi
if [[ "${1:-}" == "--autoscaler" ]]; then
  shift
  exec python3 bench/autoscaler_bench.py "$@"
fi
if [[ "${1:-}" == "--cluster" ]]; then
  shift
  exec python3 bench/cluster_bench.py "$@"
fi
if [[ "${1:-}" == "--one-hop" ]]; then
  shift
  exec python3 bench/one_hop_bench.py "$@"
fi
if [[ "${1:-}" == "--run" ]]; then
  shift
  exec python3 bench/run_bench.py "$@"
fi
if [[ "${1:-}" == "--activator" ]]; then
  shift
  exec python3 bench/activator_bench.py "$@"
fi
exec python3 bench/proxy_bench.py "$@"
