#!/usr/bin/env python3
"""HTTP/2 proxy benchmark on loopback (issue 11): h2load through each proxy to one h2c
upstream (nghttpd serving a small file), side by side in one run:

  direct          h2load -> nghttpd (the upstream alone, for reference)
  sluice-qp       h2load -> sluice queue-proxy --app-protocol h2c -> nghttpd
  sluice-chain    h2load -> sluice activator -> sluice queue-proxy -> nghttpd (both hops
                  h2c; the activator's endpoints file says "protocol": "h2c")
  haproxy         h2load -> HAProxy (bind proto h2, server proto h2) -> nghttpd
  nghttpx         h2load -> nghttpx (frontend no-tls, backend proto=h2) -> nghttpd

Each proxy runs one thread / one worker. For every run it reads the proxies' CPU time
from /proc (utime+stime, all processes of the hop), their peak RSS, and per-request
latency from h2load's --log-file, and prints requests/s, p50/p99, CPU microseconds per
stream and RSS, with CPU per stream as a ratio to HAProxy's. Loads: 1 and 100 streams
per connection (-m), on 8 connections.

    bench/run.sh --http2 [--duration 8] [--rounds 2]

Nothing is asserted; it prints. On a 2-core machine h2load, the upstream and the proxy
share the cores: compare CPU per stream, not requests per second.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_bench as pb  # noqa: E402

ROOT = pb.ROOT
SLUICE = os.path.abspath(os.environ.get("SLUICE_BENCH_BIN", os.path.join(ROOT, "build-bench/src/cli/sluice")))


def start_upstream():
    port = pb.free_port()
    www = tempfile.mkdtemp(prefix="bench-h2-www-")
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("hello from nghttpd over h2c\n")
    return pb.Proxy("nghttpd", ["nghttpd", "--no-tls", "-d", www, "-n", "1", str(port)], port)


def qp_argv(port, up):
    return [SLUICE, "queue-proxy", "--port", str(port), "--user-port", str(up), "--admin-port",
            str(pb.free_port()), "--stats-port", str(pb.free_port()), "--metrics-port",
            str(pb.free_port()), "--threads", "1", "--app-protocol", "h2c"]


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith("SERVING_") and k != "SLUICE_APP_PROTOCOL"}


def start_sluice_qp(up):
    port = pb.free_port()
    return [pb.Proxy("sluice-qp", qp_argv(port, up), port, env=clean_env())]


def start_sluice_chain(up):
    qp_port = pb.free_port()
    # The activator checks that a pod's probe answer names its revision: a pod's identity.
    env = clean_env()
    env.update({"SERVING_NAMESPACE": "default", "SERVING_CONFIGURATION": "bench",
                "SERVING_REVISION": "bench-00001", "SERVING_POD": "bench-pod",
                "SERVING_POD_IP": "127.0.0.1", "SERVING_LOGGING_CONFIG": "{}",
                "SERVING_LOGGING_LEVEL": "warn", "CONTAINER_CONCURRENCY": "0",
                "REVISION_TIMEOUT_SECONDS": "300", "QUEUE_SERVING_TLS_PORT": "8112"})
    qp = pb.Proxy("sluice-chain-qp", qp_argv(qp_port, up), qp_port, env=env)
    tmp = tempfile.mkdtemp(prefix="bench-h2-act-")
    eps = os.path.join(tmp, "endpoints.json")
    with open(eps, "w") as f:
        json.dump({"revisions": [{"namespace": "default", "service": "bench",
                                  "name": "bench-00001", "containerConcurrency": 0,
                                  "protocol": "h2c",
                                  "endpoints": [f"127.0.0.1:{qp_port}"]}]}, f)
    port = pb.free_port()
    act = pb.Proxy("sluice-chain", [SLUICE, "activator", "--port", str(port), "--metrics-port",
                                    str(pb.free_port()), "--endpoints-file", eps, "--threads", "1"],
                   port)
    # Until the activator has probed the pod healthy, requests would wait.
    for _ in range(200):
        r = subprocess.run(["curl", "-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}",
                            "--http2-prior-knowledge", "-H", "Host: bench.default.example.com",
                            f"http://127.0.0.1:{port}/index.html"], capture_output=True, text=True)
        if r.stdout == "200":
            break
        time.sleep(0.05)
    return [act, qp]


def start_haproxy(up):
    port = pb.free_port()
    tmp = tempfile.mkdtemp(prefix="bench-h2-haproxy-")
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(f"""global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 300s
    http-reuse always
frontend fe
    bind 127.0.0.1:{port} proto h2
    default_backend be
backend be
    server app 127.0.0.1:{up} proto h2
""")
    return [pb.Proxy("haproxy", ["haproxy", "-f", cfg, "-db"], port)]


def start_nghttpx(up):
    port = pb.free_port()
    return [pb.Proxy("nghttpx", ["nghttpx", "--conf=/dev/null", f"--frontend=127.0.0.1,{port};no-tls",
                                 f"--backend=127.0.0.1,{up};;proto=h2", "--workers=1",
                                 "--single-thread", "--no-via", "--no-server-rewrite",
                                 "--errorlog-file=/dev/null", "--accesslog-file=/dev/null"],
                     port)]


def run_h2load(port, conns, streams, duration, host, url=None, headers=(), data=None):
    """h2load for `duration` s; `url` (default: index.html on 127.0.0.1:port), more
    `headers` ("name: value"), `data` a file to POST as each request's body."""
    log = tempfile.mktemp(prefix="bench-h2load-")
    cmd = ["h2load", "-c", str(conns), "-m", str(streams), "-D", str(duration), "-t", "1",
           f"--log-file={log}", "-H", f"host: {host}"]
    for h in headers:
        cmd += ["-H", h]
    if data:
        cmd += ["-d", data]
    cmd.append(url or f"http://127.0.0.1:{port}/index.html")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    lat, errors = [], 0
    with open(log) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1000.0)
                if not parts[1].startswith("2"):
                    errors += 1
    os.unlink(log)
    done = 0
    for line in out.splitlines():
        if line.startswith("requests:"):
            done = int(line.split(",")[2].split()[0])  # "N done"
            errors += int(line.split(",")[4].split()[0]) + int(line.split(",")[5].split()[0])
    return {"requests": done, "rps": done / duration, "p50": pb.pct(lat, 0.5),
            "p99": pb.pct(lat, 0.99), "errors": errors}


def family(pid):
    """pid and its descendants (nghttpx runs its worker as a child process)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def measure(name, procs, port, conns, streams, duration):
    pids = [q for p in procs for q in family(p.pid)]
    before = [pb.cpu_ticks(p) for p in pids]
    samplers = [pb.RssSampler(p) for p in pids]
    for s in samplers:
        s.start()
    host = "bench.default.example.com"
    r = run_h2load(port, conns, streams, duration, host)
    for s in samplers:
        s.stop.set()
        s.join()
    after = [pb.cpu_ticks(p) for p in pids]
    ticks = sum(a[0] + a[1] - b[0] - b[1] for a, b in zip(after, before))
    r["cpu_us"] = ticks * 1e6 / pb.CLK_TCK / max(1, r["requests"])
    r["rss_mib"] = sum(s.peak for s in samplers) / 1024.0
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--conns", type=int, default=8)
    a = ap.parse_args()
    up = start_upstream()
    starters = {"sluice-qp": start_sluice_qp, "sluice-chain": start_sluice_chain,
                "haproxy": start_haproxy, "nghttpx": start_nghttpx}
    results = {}
    try:
        for rnd in range(a.rounds):
            names = list(starters) if rnd % 2 == 0 else list(reversed(list(starters)))
            for streams in (1, 100):
                d = measure("direct", [up], up.port, a.conns, streams, a.duration)
                results.setdefault(("direct", streams), []).append(d)
                for name in names:
                    procs = starters[name](up.port)
                    try:
                        results.setdefault((name, streams), []).append(
                            measure(name, procs, procs[0].port, a.conns, streams, a.duration))
                    finally:
                        for p in procs:
                            p.stop()
    finally:
        up.stop()

    def med(name, streams, key):
        vals = [r[key] for r in results[(name, streams)]]
        return sorted(vals)[len(vals) // 2]

    print(f"\nh2load -c {a.conns} -D {a.duration}s, median of {a.rounds} round(s); CPU is the "
          "proxy's own (both Sluice processes for sluice-chain); direct: nghttpd's\n")
    print("| streams/conn | hop | req/s | p50 ms | p99 ms | CPU µs/stream | vs HAProxy | RSS MiB |"
          " errors |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for streams in (1, 100):
        base = med("haproxy", streams, "cpu_us")
        for name in ["direct"] + list(starters):
            cpu = med(name, streams, "cpu_us")
            ratio = "" if name == "direct" else f"{cpu / base:.2f}×"
            print(f"| {streams} | {name} | {med(name, streams, 'rps'):.0f} | "
                  f"{med(name, streams, 'p50'):.2f} | {med(name, streams, 'p99'):.2f} | "
                  f"{cpu:.1f} | {ratio} | {med(name, streams, 'rss_mib'):.1f} | "
                  f"{sum(r['errors'] for r in results[(name, streams)])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
