#!/usr/bin/env python3
"""Knative's autoscaler against `sluice autoscaler` on the real cluster harness, in one run.

Same control plane (kube-apiserver, Knative's controller), same activator and queue-proxy
(Sluice's), same app and stand-in kubelet, same config-autoscaler; only the autoscaler
differs. For each:
  - first request at zero: the request sent to the activator -> the Deployment asked for
    a pod (a watch on the Deployment sees spec.replicas >= 1), over --pokes trials;
  - a step load on a CC=1 revision: 2 clients of 100 ms requests for --before s, then 20
    for --during s, then none for --after s: time from the step to the first new pod
    serving (Ready), replica-seconds over the whole run, failed requests;
  - the autoscaler's own CPU and RSS with --revisions PodAutoscalers registered, idle and
    under stats for 100 pods (an activator-like websocket client sending WireStatMessages
    every second).

  bench/run.sh --autoscaler [--pokes 5] [--revisions 1000]

Runs itself in a network namespace of its own (unshare -n), like the cluster tests.
"""

import argparse
import base64
import json
import os
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'cluster'))
sys.path.insert(0, os.path.join(ROOT, 'bench'))
import cluster  # noqa: E402
from cluster_bench import (cluster_bin_dir, cpu_seconds, enter_own_netns, pods,  # noqa: E402
                           print_ratio_table, rss_mb, wait)

CONFIG = {'config-autoscaler': {'stable-window': '6s', 'scale-to-zero-grace-period': '1s',
                                'scale-to-zero-pod-retention-period': '0s'}}
REV = 'step-00001'


def service(name, cc, annotations=None):
    a = {'autoscaling.knative.dev/class': 'kpa.autoscaling.knative.dev',
         'autoscaling.knative.dev/metric': 'concurrency',
         'autoscaling.knative.dev/target-burst-capacity': '-1'}
    a.update(annotations or {})
    return {'apiVersion': 'serving.knative.dev/v1', 'kind': 'Service',
            'metadata': {'name': name, 'namespace': 'default'},
            'spec': {'template': {'metadata': {'annotations': a},
                                  'spec': {'containerConcurrency': cc, 'timeoutSeconds': 300, 'containers': [{
                                      'image': cluster.TESTAPP_IMAGE, 'ports': [{'containerPort': 8080}],
                                      'readinessProbe': {'tcpSocket': {'port': 0}, 'successThreshold': 1}}]}}}}


class Load:
    """`n` clients, each sending one request at a time (keep-alive) until stop()."""

    def __init__(self, host, n, revision, path='/?delay=100'):
        self.stop_ = threading.Event()
        self.ok = self.failed = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(host, revision, path), daemon=True)
                        for _ in range(n)]
        for t in self.threads:
            t.start()

    def _client(self, host, revision, path):
        import http.client
        conn = None
        while not self.stop_.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, 8012, timeout=60)
                conn.request('GET', path, headers={'Knative-Serving-Namespace': 'default',
                                                   'Knative-Serving-Revision': revision})
                r = conn.getresponse()
                r.read()
                good = r.status == 200
            except (OSError, http.client.HTTPException):
                good, conn = False, None
            with self.lock:
                if good:
                    self.ok += 1
                else:
                    self.failed += 1

    def stop(self):
        self.stop_.set()
        for t in self.threads:
            t.join(120)


class DeploymentWatch:
    """Times when spec.replicas of a Deployment changes, from a watch (not polling)."""

    def __init__(self, r, name):
        self.events = []  # (time, spec.replicas)
        self.name = name
        ctx = ssl.create_default_context(cafile=r['ca'])
        ctx.check_hostname = False
        self.url = (r['apiserver'] + '/apis/apps/v1/namespaces/default/deployments?watch=1'
                    f'&fieldSelector=metadata.name%3D{name}')
        self.req = urllib.request.Request(self.url, headers={'Authorization': 'Bearer ' + r['token']})
        self.ctx = ctx
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                with urllib.request.urlopen(self.req, context=self.ctx, timeout=600) as resp:
                    for line in resp:
                        ev = json.loads(line)
                        self.events.append((time.time(), ev['object']['spec'].get('replicas', 0)))
            except Exception:  # noqa: BLE001 -- reconnect; the bench only reads events
                time.sleep(0.2)

    def first_at_least(self, n, after):
        for t, v in self.events:
            if t >= after and v >= n:
                return t
        return None


def _varint(n):
    out = b''
    while True:
        b = n & 0x7f
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _field(num, payload):
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def wire_stats(revisions, pods_n, concurrency):
    """WireStatMessages: `pods_n` pods' stats spread over `revisions` (Knative's wire format)."""
    msgs = b''
    for i in range(pods_n):
        rev = revisions[i % len(revisions)]
        stat = (_field(1, f'pod-{i}'.encode()) + bytes([0x11]) + struct.pack('<d', concurrency)
                + bytes([0x21]) + struct.pack('<d', concurrency * 10))
        msg = _field(1, b'bench') + _field(2, rev.encode()) + _field(3, stat)
        msgs += _field(1, msg)
    return msgs


def ws_connect(host, port):
    s = socket.create_connection((host, port), 10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f'GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
               f'Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n').encode())
    head = b''
    while b'\r\n\r\n' not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError('websocket handshake: connection closed')
        head += chunk
    if b' 101 ' not in head.split(b'\r\n')[0]:
        raise RuntimeError('websocket handshake: ' + head.split(b'\r\n')[0].decode())
    return s


def ws_send(s, payload):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack('>H', n)
                             if n < 65536 else bytes([0x80 | 127]) + struct.pack('>Q', n))
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def logged_poke_after(log, t0):
    """When `sluice autoscaler` logged its first poke for REV after t0 (epoch s): the moment
    it asks for the pod (the PATCH goes out on the same turn of its event loop)."""
    try:
        lines = open(log, errors='replace').read().splitlines()
    except OSError:
        return None
    for line in lines:
        if f'default/{REV}: first request; scaling' not in line:
            continue
        stamp = line.split(' ', 1)[0]  # 2026-12-01T23:04:23.123, local time
        try:
            at = time.mktime(time.strptime(stamp[:19], '%Y-%m-%dT%H:%M:%S')) + int(stamp[20:23]) / 1000
        except (ValueError, IndexError):
            continue
        if at >= t0 - 0.002:  # the log has milliseconds; t0 has more
            return at
    return None


def step(api, act, replicas, ready_pods, args):
    """One step load from zero: (first new pod serving after the step (s), replica-seconds,
    failed, answered, peak replicas)."""
    wait('scale to zero', lambda: replicas() == 0 and not pods(
        api, 'default', 'serving.knative.dev%2Frevision%3D' + REV, terminating=True), 300)
    samples = []  # (time, replicas)
    stop_sampling = threading.Event()

    def sample():
        while not stop_sampling.is_set():
            samples.append((time.time(), max(0, replicas())))
            time.sleep(0.2)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    small = Load(act, 2, REV)
    time.sleep(args.before)
    before = ready_pods()
    step_at = time.time()
    big = Load(act, 18, REV)
    first_new = None
    while time.time() - step_at < args.during:
        if first_new is None and ready_pods() - before:
            first_new = time.time() - step_at
        time.sleep(0.1)
    big.stop()
    small.stop()
    time.sleep(args.after)
    stop_sampling.set()
    sampler.join()
    rs = sum((t1 - t0) * v for (t0, v), (t1, _) in zip(samples, samples[1:]))
    if args.series:
        with open(args.series, 'a') as f:
            f.write(json.dumps({'step_at': step_at, 'samples': samples}) + '\n')
    return (first_new if first_new is not None else float('nan'), rs, small.failed + big.failed,
            small.ok + big.ok, max(v for _, v in samples))


def measure(autoscaler, args, bin_dir):
    d = tempfile.mkdtemp(prefix=f'sluice-autoscaler-bench-{autoscaler}-')
    h = subprocess.Popen([sys.executable, os.path.join(ROOT, 'tests/cluster/cluster.py'), 'up', '--dir', d,
                          '--bin', bin_dir, '--activator', 'sluice', '--queue-proxy', 'sluice',
                          '--autoscaler', autoscaler, '--sluice', args.sluice, '--testapp', args.testapp,
                          '--config', json.dumps(CONFIG)],
                         stdout=open(d + '.log', 'w'), stderr=subprocess.STDOUT)
    out = {}
    try:
        wait('cluster up', lambda: os.path.exists(d + '/ready') or h.poll() is not None, 300)
        if h.poll() is not None:
            raise RuntimeError(f'harness exited: see {d}.log')
        r = json.load(open(d + '/ready'))
        api = cluster.Api(r['apiserver'], r['token'], r['ca'])
        as_pid = json.load(open(d + '/autoscalers.json'))['autoscaler-0']['pid']
        api.must('POST', '/apis/serving.knative.dev/v1/namespaces/default/services', service('step', 1))
        act = pods(api, 'knative-serving', 'app%3Dactivator')[0]['status']['podIP']
        watch = DeploymentWatch(r, 'step-00001-deployment')

        def replicas():
            st, b = api.req('GET', '/apis/apps/v1/namespaces/default/deployments/step-00001-deployment')
            return b['spec'].get('replicas', -1) if st == 200 else -1

        def ready_pods():
            return {p['metadata']['name'] for p in pods(api, 'default', 'serving.knative.dev%2Frevision%3D' + REV)
                    if any(c['type'] == 'Ready' and c['status'] == 'True'
                           for c in p.get('status', {}).get('conditions', []))}

        # First request at zero -> a pod asked for.
        pokes, own = [], []
        for i in range(args.pokes):
            wait('scale to zero', lambda: replicas() == 0 and not pods(
                api, 'default', 'serving.knative.dev%2Frevision%3D' + REV, terminating=True), 300)
            time.sleep(0.5)
            t0 = time.time()
            load = Load(act, 1, REV)
            wait('a pod asked for', lambda: watch.first_at_least(1, t0) is not None, 60)
            pokes.append((watch.first_at_least(1, t0) - t0) * 1000)
            load.stop()
            logged = logged_poke_after(d + '/logs/knative-autoscaler.log', t0) if autoscaler == 'sluice' else None
            if logged is not None:
                own.append(max(0.0, (logged - t0) * 1000))
            print(f'  {autoscaler}: first request -> pod asked for {pokes[-1]:.0f} ms'
                  + (f' (its own log: decided and PATCH sent {own[-1]:.0f} ms after the request)'
                     if logged is not None else ''), file=sys.stderr, flush=True)
        if pokes:
            out['poke_p50'], out['poke_max'] = statistics.median(pokes), max(pokes)
        if own:
            out['own_poke_p50'], out['own_poke_max'] = statistics.median(own), max(own)

        firsts, rss_all, failed, ok, peak = [], [], 0, 0, 0
        for trial in range(args.steps):
            f, rsec, bad, good, top = step(api, act, replicas, ready_pods, args)
            firsts.append(f)
            rss_all.append(rsec)
            failed, ok, peak = failed + bad, ok + good, max(peak, top)
            print(f'  {autoscaler}: step {trial + 1}/{args.steps}: first new pod serving after {f:.2f} s, '
                  f'{rsec:.0f} replica-seconds, {bad} failed of {bad + good}', file=sys.stderr, flush=True)
        if firsts:
            out.update(step_first_new_s=statistics.median(firsts), replica_seconds=statistics.mean(rss_all),
                       failed=failed, ok=ok, peak=peak,
                       # The clients are closed-loop: an autoscaler that adds pods sooner gets
                       # more requests answered in the same run. This is the cost per answer.
                       rs_per_1000=sum(rss_all) / max(1, ok) * 1000)

        if not args.revisions:
            return out
        # Many revisions: PodAutoscalers alone (no pods), as the controller writes them.
        names = [f'r{i:04d}' for i in range(args.revisions)]
        for n in names:
            api.must('POST', '/apis/autoscaling.internal.knative.dev/v1alpha1/namespaces/default/podautoscalers', {
                'apiVersion': 'autoscaling.internal.knative.dev/v1alpha1', 'kind': 'PodAutoscaler',
                'metadata': {'name': n, 'namespace': 'default', 'annotations': {
                    'autoscaling.knative.dev/class': 'kpa.autoscaling.knative.dev',
                    'autoscaling.knative.dev/metric': 'concurrency'},
                    'labels': {'serving.knative.dev/revision': n}},
                'spec': {'protocolType': 'http1', 'containerConcurrency': 0,
                         'scaleTargetRef': {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': n + '-deployment'}}})
        time.sleep(args.settle)
        c0 = cpu_seconds(as_pid)
        time.sleep(args.window)
        out['idle_cpu_pct'] = (cpu_seconds(as_pid) - c0) / args.window * 100
        out['idle_rss'] = rss_mb(as_pid)
        print(f'  {autoscaler}: ' + ' '.join(
            line.split(':')[0] + '=' + line.split()[1] for line in open(f'/proc/{as_pid}/status')
            if line.startswith(('RssAnon', 'RssFile', 'Threads'))), file=sys.stderr, flush=True)
        ws = ws_connect(cluster.AUTOSCALER_IP, 8080)
        frame = wire_stats(names, 100, 1.0)
        c0 = cpu_seconds(as_pid)
        t_end = time.time() + args.window
        while time.time() < t_end:
            ws_send(ws, frame)
            time.sleep(1)
        out['stats_cpu_pct'] = (cpu_seconds(as_pid) - c0) / args.window * 100
        out['stats_rss'] = rss_mb(as_pid)
        ws.close()
        print(f'  {autoscaler}: {args.revisions} revisions: idle {out["idle_cpu_pct"]:.1f} % CPU '
              f'{out["idle_rss"]:.1f} MB; with stats {out["stats_cpu_pct"]:.1f} % {out["stats_rss"]:.1f} MB',
              file=sys.stderr, flush=True)
        return out
    finally:
        h.terminate()
        try:
            h.wait(120)
        except subprocess.TimeoutExpired:
            h.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pokes', type=int, default=5)
    ap.add_argument('--steps', type=int, default=3, help='step loads (from zero) per autoscaler')
    ap.add_argument('--before', type=float, default=20)
    ap.add_argument('--during', type=float, default=30)
    ap.add_argument('--after', type=float, default=30)
    ap.add_argument('--revisions', type=int, default=1000)
    ap.add_argument('--settle', type=float, default=20, help='seconds after registering before measuring')
    ap.add_argument('--window', type=float, default=20, help='seconds of each CPU measurement')
    ap.add_argument('--autoscalers', default='knative,sluice')
    ap.add_argument('--series', help='append each step run\'s (time, replicas) samples to this file')
    ap.add_argument('--sluice', default=os.path.join(ROOT, 'build-bench/src/cli/sluice'))
    ap.add_argument('--testapp', default=os.path.join(ROOT, 'build-bench/tools/testapp/sluice-testapp'))
    args = ap.parse_args()
    enter_own_netns()
    bin_dir = cluster_bin_dir()
    results = {}
    for a in args.autoscalers.split(','):
        print(f'== {a} autoscaler', file=sys.stderr, flush=True)
        results[a] = measure(a, args, bin_dir)
    for a, r in results.items():
        print(f'{a}: {json.dumps(r)}')
    if set(results) != {'knative', 'sluice'}:
        return
    k, s = results['knative'], results['sluice']
    print(f'\nAutoscaler benchmark: Sluice\'s activator and queue-proxy for both; step 2 -> 20 clients of 100 ms '
          f'requests on CC=1 ({args.before:.0f} s, {args.during:.0f} s, then {args.after:.0f} s idle); '
          f'{args.revisions} PodAutoscalers for the footprint\n')
    rows = [
        ('first request at zero -> pod asked for, p50 (ms)', k.get('poke_p50'), s.get('poke_p50'), '{:.0f}'),
        ('first request at zero -> pod asked for, max (ms)', k.get('poke_max'), s.get('poke_max'), '{:.0f}'),
        ('first request -> PATCH sent, from its log, p50 (ms)', None, s.get('own_poke_p50'),
         '{:.0f}'),
        ('first request -> PATCH sent, from its log, max (ms)', None, s.get('own_poke_max'),
         '{:.0f}'),
        ('step -> first new pod serving, median (s)', k.get('step_first_new_s'), s.get('step_first_new_s'), '{:.2f}'),
        ('replica-seconds per step run, mean', k.get('replica_seconds'), s.get('replica_seconds'), '{:.0f}'),
        ('replica-seconds per 1,000 requests answered', k.get('rs_per_1000'), s.get('rs_per_1000'), '{:.0f}'),
        ('requests answered per step run, mean', k.get('ok', 0) / args.steps if k.get('ok') else None,
         s.get('ok', 0) / args.steps if s.get('ok') else None, '{:.0f}'),
        ('peak replicas', k.get('peak'), s.get('peak'), '{:.0f}'),
        ('failed requests', k.get('failed'), s.get('failed'), '{:.0f}'),
        (f'autoscaler CPU, {args.revisions} revisions idle (%)', k.get('idle_cpu_pct'), s.get('idle_cpu_pct'), '{:.1f}'),
        (f'autoscaler RSS, {args.revisions} revisions idle (MB)', k.get('idle_rss'), s.get('idle_rss'), '{:.1f}'),
        ('autoscaler CPU, stats from 100 pods (%)', k.get('stats_cpu_pct'), s.get('stats_cpu_pct'), '{:.1f}'),
        ('autoscaler RSS, stats from 100 pods (MB)', k.get('stats_rss'), s.get('stats_rss'), '{:.1f}'),
    ]
    print_ratio_table(rows)


if __name__ == '__main__':
    main()
