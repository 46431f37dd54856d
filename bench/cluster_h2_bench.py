#!/usr/bin/env python3
"""HTTP/2 and unary gRPC through Knative's activator + queue-proxy against Sluice's, on the
real cluster harness, in one run (issue 11's "≤ 1/4 of Knative's CPU per stream").

Same control plane (kube-apiserver, Knative's controller and autoscaler), same apps, same
stand-in kubelet; only the activator and queue-proxy images differ. Two Knative Services,
each with its first container port named h2c (Knative's rule for HTTP/2 to the app), one
pod each (min-scale = max-scale = 1), containerConcurrency 0:
  - h2:   nghttpd serving a small file over h2c; h2load GETs it;
  - grpc: tests/e2e/grpc_app.py (python3-grpcio); h2load POSTs one unary call
          /echo.Echo/Say per stream (a gRPC-framed "ping", content-type application/grpc).
h2load goes to the activator's h2c port 8013 with Knative's routing headers, at 1 and
100 streams per connection on --conns connections. For each load: requests/s, p50/p99
(h2load's --log-file), CPU microseconds per stream of the activator and of the
queue-proxy (/proc/<pid>/stat) and their RSS after it.

  bench/run.sh --cluster-http2 [--duration 8] [--conns 8]

Runs itself in a network namespace of its own (unshare -n), like the cluster tests.
Nothing is asserted; it prints. On a 2-core machine the load generator, the app and both
hops share the cores: compare CPU per stream, not requests per second.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_bench as cb  # noqa: E402
import h2_bench  # noqa: E402

ROOT = cb.ROOT
NGHTTPD = '/usr/sbin/nghttpd'  # Debian's nghttp2-server (scripts/install-deps.sh --bench)
LOADS = [('h2', 1), ('h2', 100), ('grpc', 1), ('grpc', 100)]


def service(name, command):
    return {'apiVersion': 'serving.knative.dev/v1', 'kind': 'Service',
            'metadata': {'name': name, 'namespace': 'default'},
            'spec': {'template': {'metadata': {'annotations': {
                # Knative's webhook would default the class; the harness runs none.
                'autoscaling.knative.dev/class': 'kpa.autoscaling.knative.dev',
                'autoscaling.knative.dev/metric': 'concurrency',
                # The activator stays in the path (as the Knative side of the harness needs).
                'autoscaling.knative.dev/target-burst-capacity': '-1',
                'autoscaling.knative.dev/min-scale': '1', 'autoscaling.knative.dev/max-scale': '1'}},
                'spec': {'containerConcurrency': 0, 'timeoutSeconds': 300, 'containers': [{
                    'image': cb.cluster.TESTAPP_IMAGE, 'command': command,
                    'ports': [{'containerPort': 8080, 'name': 'h2c'}],
                    'readinessProbe': {'tcpSocket': {'port': 0}, 'successThreshold': 1}}]}}}}


def check_grpc_ok(url, headers, body):
    """h2load counts any HTTP 200 as a success, and a failed gRPC call is a 200 too: one call
    by curl must end with grpc-status 0 and echo the message."""
    cmd = ['curl', '-sS', '--http2-prior-knowledge', '-m', '10', '-D', '-', '--raw', '--data-binary', '@' + body,
           '-o', '-', url]
    for h in headers:
        cmd += ['-H', h]
    out = subprocess.run(cmd, capture_output=True, timeout=20).stdout
    if b'grpc-status: 0' not in out or b'ping' not in out:
        raise RuntimeError(f'a unary call through {url} did not succeed: {out[:500]!r}')


def measure(plane, args, bin_dir):
    h, d, api = cb.start_harness(plane, args, bin_dir)
    try:
        www = tempfile.mkdtemp(prefix='bench-h2-www-')
        with open(os.path.join(www, 'index.html'), 'w') as f:
            f.write('hello from nghttpd over h2c\n')
        body = os.path.join(www, 'ping.grpc')
        with open(body, 'wb') as f:
            f.write(b'\x00\x00\x00\x00\x04ping')
        api.must('POST', '/apis/serving.knative.dev/v1/namespaces/default/services',
                 service('h2', [NGHTTPD, '--no-tls', '-n', '1', '-d', www, '8080']))
        api.must('POST', '/apis/serving.knative.dev/v1/namespaces/default/services',
                 service('grpc', ['/usr/bin/python3', os.path.join(ROOT, 'tests/e2e/grpc_app.py')]))
        for rev in ('h2-00001', 'grpc-00001'):
            cb.wait(f'revision {rev} ready', lambda rev=rev: cb._ready(api, rev), 240)
        act = cb.pods(api, 'knative-serving', 'app%3Dactivator')[0]
        ip = act['status']['podIP']
        act_pid = cb.pids(d, 'knative-serving', act['metadata']['name'])['activator']
        out = {}
        for kind, streams in LOADS:
            rev = f'{kind}-00001'
            pod = cb.pods(api, 'default', f'serving.knative.dev%2Frevision%3D{rev}')[0]['metadata']['name']
            qp_pid = cb.pids(d, 'default', pod)['queue-proxy']
            headers = ['Knative-Serving-Namespace: default', f'Knative-Serving-Revision: {rev}']
            if kind == 'grpc':
                headers += ['content-type: application/grpc', 'te: trailers']
                url, data = f'http://{ip}:8013/echo.Echo/Say', body
            else:
                url, data = f'http://{ip}:8013/index.html', None

            def load(seconds):
                return h2_bench.run_h2load(0, args.conns, streams, seconds, f'{kind}.default.svc.cluster.local',
                                           url=url, headers=headers, data=data)

            warm = load(2)  # connections, pools and caches warm; also: does the path work at all
            if not warm['requests']:
                raise RuntimeError(f'{plane} {kind}: no request succeeded through {url}')
            if kind == 'grpc':
                check_grpc_ok(url, headers, body)
            c0 = {'activator': cb.cpu_seconds(act_pid), 'queue-proxy': cb.cpu_seconds(qp_pid)}
            r = load(args.duration)
            c1 = {'activator': cb.cpu_seconds(act_pid), 'queue-proxy': cb.cpu_seconds(qp_pid)}
            r['cpu_us'] = {k: (c1[k] - c0[k]) * 1e6 / max(1, r['requests']) for k in c0}
            r['rss'] = {'activator': cb.rss_mb(act_pid), 'queue-proxy': cb.rss_mb(qp_pid)}
            print(f'  {plane} {kind} -m {streams}: {json.dumps(r)}', file=sys.stderr, flush=True)
            out[(kind, streams)] = r
        return out
    finally:
        cb.stop_harness(h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--duration', type=int, default=8)
    ap.add_argument('--conns', type=int, default=8)
    ap.add_argument('--planes', default='knative,sluice', help='which data planes, in order (default both)')
    ap.add_argument('--sluice', default=os.path.join(ROOT, 'build-bench/src/cli/sluice'))
    ap.add_argument('--testapp', default=os.path.join(ROOT, 'build-bench/tools/testapp/sluice-testapp'))
    args = ap.parse_args()
    for tool in (NGHTTPD, '/usr/bin/h2load'):
        if not os.access(tool, os.X_OK):
            sys.exit(f'{tool} is missing: run scripts/install-deps.sh --bench (or bench/run.sh --cluster-http2)')
    cb.enter_own_netns()
    bin_dir = cb.cluster_bin_dir()
    results = {}
    for plane in args.planes.split(','):
        print(f'== {plane} data plane', file=sys.stderr, flush=True)
        results[plane] = measure(plane, args, bin_dir)
    planes = list(results)
    print(f'\nHTTP/2 on the cluster harness: h2load -c {args.conns} -D {args.duration}s to the activator\'s '
          'h2c port 8013, one pod per service (same control plane, apps and kubelet); CPU per stream of '
          'each hop\n')
    print('| load | streams/conn | data plane | req/s | p50 ms | p99 ms | activator µs/stream | '
          'queue-proxy µs/stream | both µs/stream | vs Knative | activator RSS MB | queue-proxy RSS MB | '
          'errors |')
    print('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for key in LOADS:
        base = results['knative'][key] if 'knative' in results else None
        for plane in planes:
            r = results[plane][key]
            both = r['cpu_us']['activator'] + r['cpu_us']['queue-proxy']
            ratio = ''
            if base and plane != 'knative':
                ratio = f"{both / (base['cpu_us']['activator'] + base['cpu_us']['queue-proxy']):.2f}×"
            print(f"| {'HTTP/2 GET' if key[0] == 'h2' else 'unary gRPC'} | {key[1]} | {plane} | {r['rps']:.0f} | "
                  f"{r['p50']:.2f} | {r['p99']:.2f} | {r['cpu_us']['activator']:.1f} | "
                  f"{r['cpu_us']['queue-proxy']:.1f} | {both:.1f} | {ratio} | {r['rss']['activator']:.1f} | "
                  f"{r['rss']['queue-proxy']:.1f} | {r['errors']} |")


if __name__ == '__main__':
    main()
