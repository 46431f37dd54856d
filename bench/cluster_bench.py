#!/usr/bin/env python3
"""Knative's data plane against Sluice's on the real cluster harness, in one run.

Same control plane (kube-apiserver, Knative's controller and autoscaler), same app, same
stand-in kubelet; only the activator and queue-proxy images differ. For each:
  - cold start from zero: request sent -> answer, p50/p99 over --trials, each after the
    autoscaler took the revision to zero and its last pod is gone (drained and deleted);
  - CPU microseconds per request of the activator and of the queue-proxy under the same
    load (wrk, --conns connections for --duration seconds, through the activator to one
    warm pod), from /proc/<pid>/stat;
  - RSS of each after the load.

  bench/run.sh --cluster [--trials 20] [--duration 10] [--conns 16]

Runs itself in a network namespace of its own (unshare -n), like the cluster tests.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import signal
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'cluster'))
import cluster  # noqa: E402

FAST = {'config-autoscaler': {'stable-window': '6s', 'scale-to-zero-grace-period': '1s',
                              'scale-to-zero-pod-retention-period': '0s'}}
HEADERS = {'Knative-Serving-Namespace': 'default', 'Knative-Serving-Revision': 'hello-00001'}


def cpu_seconds(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    tick = os.sysconf('SC_CLK_TCK')
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime


def rss_mb(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return 0.0


def pods(api, ns, selector, terminating=False):
    st, b = api.req('GET', f'/api/v1/namespaces/{ns}/pods?labelSelector={selector}')
    return [p for p in b.get('items', []) if st == 200 and (terminating or 'deletionTimestamp' not in p['metadata'])]


def pids(d, ns, pod):
    with open(f'{d}/pods/{ns}_{pod}/pids.json') as f:
        return json.load(f)['pids']


def request(url, timeout=120):
    import urllib.request
    r = urllib.request.Request(url, headers=HEADERS)
    with urllib.request.urlopen(r, timeout=timeout) as resp:
        return resp.status, resp.read()


def wait(what, fn, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if fn():
            return True
        time.sleep(0.2)
    raise RuntimeError(f'{what}: not within {timeout} s')


def replicas(api):
    st, b = api.req('GET', '/apis/apps/v1/namespaces/default/deployments/hello-00001-deployment')
    return b['spec'].get('replicas', -1) if st == 200 else -1


def start_harness(plane, args, bin_dir):
    """The cluster harness with `plane`'s activator and queue-proxy images, once it is up:
    (its process, its directory, an Api client). Stop it with stop_harness, by pid."""
    d = tempfile.mkdtemp(prefix=f'sluice-cluster-bench-{plane}-')
    h = subprocess.Popen([sys.executable, os.path.join(ROOT, 'tests/cluster/cluster.py'), 'up', '--dir', d,
                          '--bin', bin_dir, '--activator', plane, '--queue-proxy', plane,
                          '--sluice', args.sluice, '--testapp', args.testapp, '--config', json.dumps(FAST)],
                         stdout=open(d + '.log', 'w'), stderr=subprocess.STDOUT)
    try:
        wait('cluster up', lambda: os.path.exists(d + '/ready') or h.poll() is not None, 300)
        if h.poll() is not None:
            raise RuntimeError(f'harness exited: see {d}.log')
    except BaseException:
        stop_harness(h)
        raise
    r = json.load(open(d + '/ready'))
    return h, d, cluster.Api(r['apiserver'], r['token'], r['ca'])


def stop_harness(h):
    h.terminate()
    try:
        h.wait(120)
    except subprocess.TimeoutExpired:
        h.kill()


def measure(plane, args, bin_dir):
    HEADERS['Knative-Serving-Revision'] = 'hello-00001'
    h, d, api = start_harness(plane, args, bin_dir)
    try:
        svc = {'apiVersion': 'serving.knative.dev/v1', 'kind': 'Service',
               'metadata': {'name': 'hello', 'namespace': 'default'},
               'spec': {'template': {'metadata': {'annotations': {
                   'autoscaling.knative.dev/class': 'kpa.autoscaling.knative.dev',
                   'autoscaling.knative.dev/metric': 'concurrency',
                   'autoscaling.knative.dev/target-burst-capacity': '-1'}},
                   'spec': {'containerConcurrency': 0, 'timeoutSeconds': 300, 'containers': [{
                       'image': cluster.TESTAPP_IMAGE, 'ports': [{'containerPort': 8080}],
                       'readinessProbe': {'tcpSocket': {'port': 0}, 'successThreshold': 1}}]}}}}
        api.must('POST', '/apis/serving.knative.dev/v1/namespaces/default/services', svc)
        act = pods(api, 'knative-serving', 'app%3Dactivator')[0]
        url = f'http://{act["status"]["podIP"]}:8012/'
        wait('first answer', lambda: _ok(url), 180)

        cold, share = [], []
        for i in range(args.trials):
            # A true cold start: no pod at all, not even one still draining.
            wait('scale to zero', lambda: replicas(api) == 0 and not pods(
                api, 'default', 'serving.knative.dev%2Frevision%3Dhello-00001', terminating=True), 300)
            t0 = time.time()
            st, _ = request(url)
            t1 = time.time()
            cold.append((t1 - t0) * 1000)
            if st != 200:
                raise RuntimeError(f'cold request {i}: {st}')
            # The data plane's share: from the kubelet starting the new pod's containers
            # to the answer (the rest is the autoscaler, the controllers and the kubelet).
            new = pods(api, 'default', 'serving.knative.dev%2Frevision%3Dhello-00001')
            started = [_started(d, p['metadata']['name']) for p in new]
            started = [x for x in started if x and x >= t0]
            if started:
                share.append((t1 - min(started)) * 1000)
            print(f'  {plane}: cold start {i + 1}/{args.trials}: {cold[-1]:.0f} ms'
                  f' (containers started -> answer {share[-1] if share else 0:.0f} ms)', file=sys.stderr, flush=True)

        # Steady state: one warm pod held by min-scale, the same load through each.
        api.must('PATCH', '/apis/serving.knative.dev/v1/namespaces/default/services/hello', {
            'spec': {'template': {'metadata': {'annotations': {'autoscaling.knative.dev/min-scale': '1',
                                                               'autoscaling.knative.dev/max-scale': '1'}}}}},
            ctype='application/merge-patch+json')
        wait('revision 2 ready', lambda: _ready(api, 'hello-00002'), 180)
        HEADERS['Knative-Serving-Revision'] = 'hello-00002'
        wait('answer from revision 2', lambda: _ok(url), 60)
        pod = pods(api, 'default', 'serving.knative.dev%2Frevision%3Dhello-00002')[0]['metadata']['name']
        qp_pid = pids(d, 'default', pod)['queue-proxy']
        act_pid = pids(d, 'knative-serving', act['metadata']['name'])['activator']
        subprocess.run(['wrk', '-t2', f'-c{args.conns}', '-d3s', *_wrk_headers(), url], capture_output=True)
        c0 = {'activator': cpu_seconds(act_pid), 'queue-proxy': cpu_seconds(qp_pid)}
        out = subprocess.run(['wrk', '-t2', f'-c{args.conns}', f'-d{args.duration}s', *_wrk_headers(), url],
                             capture_output=True, text=True).stdout
        c1 = {'activator': cpu_seconds(act_pid), 'queue-proxy': cpu_seconds(qp_pid)}
        m = re.search(r'(\d+) requests in', out)
        n = int(m.group(1)) if m else 0
        non2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
        errors = re.search(r'Socket errors: (.*)', out)
        rps = re.search(r'Requests/sec:\s+([\d.]+)', out)
        return {
            'cold_p50': statistics.median(cold), 'cold_p99': _p99(cold),
            'share_p50': statistics.median(share) if share else 0.0, 'share_p99': _p99(share) if share else 0.0,
            'rps': float(rps.group(1)) if rps else 0.0, 'requests': n,
            'bad': int(non2xx.group(1)) if non2xx else 0, 'socket_errors': errors.group(1) if errors else '',
            'cpu_us': {k: (c1[k] - c0[k]) * 1e6 / max(1, n) for k in c0},
            'rss': {'activator': rss_mb(act_pid), 'queue-proxy': rss_mb(qp_pid)},
        }
    finally:
        stop_harness(h)


def _started(d, pod):
    try:
        with open(f'{d}/pods/default_{pod}/pids.json') as f:
            return json.load(f).get('started')
    except (OSError, ValueError):
        return None


def _wrk_headers():
    out = []
    for k, v in HEADERS.items():
        out += ['-H', f'{k}: {v}']
    return out


def _ok(url):
    try:
        return request(url, timeout=10)[0] == 200
    except OSError:
        return False


def _ready(api, rev):
    st, b = api.req('GET', f'/apis/serving.knative.dev/v1/namespaces/default/revisions/{rev}')
    return st == 200 and any(c['type'] == 'Ready' and c['status'] == 'True'
                             for c in b.get('status', {}).get('conditions', []))


def _p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def enter_own_netns():
    """Re-executes this script under `unshare -n` (once), then refuses to go on unless the
    namespace is a fresh one of its own: the load and the probes go to 10.244.x.y pod
    addresses. SIGTERM/SIGINT unwind through `finally`, which stops harnesses by pid."""
    if os.environ.get('SLUICE_BENCH_NETNS') != '1':
        os.environ['SLUICE_BENCH_NETNS'] = '1'
        os.execvp('unshare', ['unshare', '-n', '--', sys.executable, *sys.argv])
    cluster.refuse_unless_own_netns()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def cluster_bin_dir():
    """The control plane's binaries (scripts/cluster-build.sh builds them once)."""
    return subprocess.run([os.path.join(ROOT, 'scripts/cluster-build.sh')], capture_output=True,
                          text=True, check=True).stdout.strip().splitlines()[-1]


def print_ratio_table(rows):
    """rows: (name, Knative's value, Sluice's value, format)."""
    print('| | Knative 1.18 | Sluice | Sluice / Knative |')
    print('|---|---|---|---|')
    for name, kv, sv, fmt in rows:  # None: not measured for that one
        ratio = f'{sv / kv:.2f}' if kv and sv is not None else '-'
        shown = ['-' if v is None else fmt.format(v) for v in (kv, sv)]
        print(f'| {name} | {shown[0]} | {shown[1]} | {ratio} |')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--trials', type=int, default=20)
    ap.add_argument('--duration', type=int, default=10)
    ap.add_argument('--conns', type=int, default=16)
    ap.add_argument('--planes', default='knative,sluice', help='which data planes, in order (default both)')
    ap.add_argument('--sluice', default=os.path.join(ROOT, 'build-bench/src/cli/sluice'))
    ap.add_argument('--testapp', default=os.path.join(ROOT, 'build-bench/tools/testapp/sluice-testapp'))
    args = ap.parse_args()
    enter_own_netns()
    bin_dir = cluster_bin_dir()
    results = {}
    for plane in args.planes.split(','):
        print(f'== {plane} data plane', file=sys.stderr, flush=True)
        results[plane] = measure(plane, args, bin_dir)
    for plane, r in results.items():
        print(f'{plane}: {json.dumps(r)}')
    if set(results) != {'knative', 'sluice'}:
        return
    k, s = results['knative'], results['sluice']
    print(f'\nCluster benchmark: {args.trials} cold starts each; wrk -c{args.conns} for {args.duration} s through '
          'the activator to one warm pod (same control plane, app and kubelet)\n')
    rows = [
        ('cold start p50 (ms)', k['cold_p50'], s['cold_p50'], '{:.0f}'),
        ('cold start p99 (ms)', k['cold_p99'], s['cold_p99'], '{:.0f}'),
        ('cold start, containers started -> answer, p50 (ms)', k['share_p50'], s['share_p50'], '{:.0f}'),
        ('cold start, containers started -> answer, p99 (ms)', k['share_p99'], s['share_p99'], '{:.0f}'),
        ('throughput (req/s)', k['rps'], s['rps'], '{:.0f}'),
        ('activator CPU per request (us)', k['cpu_us']['activator'], s['cpu_us']['activator'], '{:.1f}'),
        ('queue-proxy CPU per request (us)', k['cpu_us']['queue-proxy'], s['cpu_us']['queue-proxy'], '{:.1f}'),
        ('activator RSS (MB)', k['rss']['activator'], s['rss']['activator'], '{:.1f}'),
        ('queue-proxy RSS (MB)', k['rss']['queue-proxy'], s['rss']['queue-proxy'], '{:.1f}'),
    ]
    print_ratio_table(rows)
    for plane, r in results.items():
        if r['bad'] or r['socket_errors']:
            print(f'{plane}: {r["bad"]} non-2xx, socket errors: {r["socket_errors"]}')


if __name__ == '__main__':
    main()
