#!/usr/bin/env python3
"""Side-by-side proxy benchmark on loopback (issue 2's table).

Runs wrk against the same upstream (sluice-testapp) directly and through each proxy:
sluice queue-proxy, Knative 1.18's own queue-proxy, HAProxy and nginx (one thread /
one worker each), alternating the order every round so drift hits all alike. For each
run it reads the proxy's CPU time from /proc (utime+stime) and its RSS, and prints
requests/s, p50/p99 latency, CPU microseconds per request and RSS, with each proxy's
CPU per request as a ratio to HAProxy's and to Knative's.

    bench/run.sh [--duration 10] [--rounds 2] [--conns 64,256]

On a shared 2-core machine wrk, the upstream and the proxy compete for the cores:
compare CPU per request, not requests per second. Nothing here is asserted; it prints.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15.0, step=0.0005):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(step)
    return False


def pct(values, q):
    """The q-quantile of values (nearest rank); nan when empty."""
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def cpu_ticks(pid):
    """(user, kernel) clock ticks the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except OSError:
                return
            self.stop.wait(0.1)


def parse_wrk(out):
    def dur(text):
        m = re.match(r"([\d.]+)(us|ms|s)", text)
        v, u = float(m.group(1)), m.group(2)
        return v / 1000 if u == "us" else v if u == "ms" else v * 1000

    res = {"requests": int(re.search(r"(\d+) requests in", out).group(1))}
    res["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    res["p50"] = dur(re.search(r"\s50%\s+(\S+)", out).group(1))
    res["p99"] = dur(re.search(r"\s99%\s+(\S+)", out).group(1))
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["errors"] = (int(errs.group(1)) if errs else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return res


class Proxy:
    """A started proxy process: name, pid, port."""

    def __init__(self, name, argv, port, env=None, cwd=None, ready_probe=None):
        self.name, self.port = name, port
        self.tmp = tempfile.mkdtemp(prefix=f"bench-{name}-")
        self.log = open(os.path.join(self.tmp, "log"), "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd or self.tmp, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        if not wait_port(port):
            raise RuntimeError(f"{name} did not listen on {port}: see {self.log.name}")
        self.listen_ms = (time.monotonic() - t0) * 1000
        if ready_probe:
            ready_probe()
        time.sleep(0.3)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_sluice(up, cc):
    port = free_port()
    argv = [os.path.join(ROOT, "build-bench/src/cli/sluice"), "queue-proxy", "--port", str(port),
            "--user-port", str(up), "--admin-port", str(free_port()), "--stats-port",
            str(free_port()), "--metrics-port", str(free_port()), "--container-concurrency",
            str(cc), "--threads", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVING_")}
    return Proxy("sluice", argv, port, env=env)


def start_knative(up, cc, knative_bin):
    port = free_port()
    env = dict(os.environ)
    env.update({
        "CONTAINER_CONCURRENCY": str(cc), "QUEUE_SERVING_PORT": str(port),
        "QUEUE_SERVING_TLS_PORT": str(free_port()), "USER_PORT": str(up),
        "REVISION_TIMEOUT_SECONDS": "300",
        "SERVING_LOGGING_CONFIG": json.dumps({"level": "error", "encoding": "json",
                                              "outputPaths": ["stdout"],
                                              "errorOutputPaths": ["stderr"]}),
        "SERVING_LOGGING_LEVEL": "error", "SERVING_NAMESPACE": "default",
        "SERVING_CONFIGURATION": "bench", "SERVING_REVISION": "bench-00001",
        "SERVING_POD": "bench-pod", "SERVING_POD_IP": "127.0.0.1", "SERVING_SERVICE": "bench",
        "SERVING_READINESS_PROBE": json.dumps({"tcpSocket": {"port": up, "host": "127.0.0.1"},
                                               "successThreshold": 1}),
        "SERVING_REQUEST_METRICS_BACKEND": "prometheus", "METRICS_DOMAIN": "knative.dev/internal/serving",
        "SYSTEM_NAMESPACE": "knative-serving", "GOMAXPROCS": "1",
    })
    return Proxy("knative-qp", [knative_bin], port, env=env)


def start_haproxy(up, cc, threads=1):
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="bench-haproxy-cfg-")
    cfg = os.path.join(tmp, "haproxy.cfg")
    maxconn = f" maxconn {cc}" if cc else ""
    with open(cfg, "w") as f:
        f.write(f"""global
    nbthread {threads}
    # HAProxy needs 2 descriptors per connection plus spares under the 20000 file limit.
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 300s
    timeout queue 300s
    http-reuse always
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server app 127.0.0.1:{up}{maxconn}
""")
    return Proxy("haproxy", ["haproxy", "-f", cfg, "-db"], port)


def start_nginx(up, cc):
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="bench-nginx-cfg-")
    os.makedirs(os.path.join(tmp, "logs"), exist_ok=True)
    cfg = os.path.join(tmp, "nginx.conf")
    with open(cfg, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
master_process off;
error_log {tmp}/logs/error.log error;
pid {tmp}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp};
    proxy_temp_path {tmp};
    upstream app {{ server 127.0.0.1:{up}; keepalive 512; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
""")
    return Proxy("nginx", ["nginx", "-p", tmp, "-c", cfg], port)


# Extra wrk arguments, e.g. a Host header for the activator benchmark.
WRK_EXTRA = []


def run_wrk(port, conns, duration, path="/"):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", *WRK_EXTRA,
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         timeout=duration + 60).stdout
    return parse_wrk(out)


def measure(proxy, port, conns, duration):
    pid = proxy.pid if proxy else None
    idle = rss_kib(pid) if pid else 0  # started and ready, before any traffic
    run_wrk(port, conns, 1)  # warm-up: pools filled, caches hot
    sampler = RssSampler(pid) if pid else None
    if sampler:
        sampler.start()
    before = cpu_ticks(pid) if pid else (0, 0)
    res = run_wrk(port, conns, duration)
    after = cpu_ticks(pid) if pid else (0, 0)
    if sampler:
        sampler.stop.set()
        sampler.join()
    per_request = 1e6 / CLK_TCK / max(res["requests"], 1)
    # User and kernel time apart: on loopback most of a proxy's CPU is the kernel's TCP path.
    res["cpu_user_us"] = (after[0] - before[0]) * per_request
    res["cpu_sys_us"] = (after[1] - before[1]) * per_request
    res["cpu_us"] = res["cpu_user_us"] + res["cpu_sys_us"]
    res["rss_idle_mib"] = idle / 1024
    res["rss_load_mib"] = (sampler.peak / 1024) if sampler else 0
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--conns", default="64,256")
    ap.add_argument("--knative", default=os.path.join(ROOT, "bench/.bin/queue"))
    ap.add_argument("--json", help="also write raw results here")
    args = ap.parse_args()
    conns_list = [int(c) for c in args.conns.split(",")]

    up = free_port()
    app = subprocess.Popen([os.path.join(ROOT, "build-bench/tools/testapp/sluice-testapp"),
                            "--port", str(up)], stderr=subprocess.DEVNULL)
    assert wait_port(up), "test app did not start"

    starters = {"direct": None, "sluice": start_sluice, "knative-qp": None, "haproxy": start_haproxy,
                "nginx": start_nginx}
    have_knative = os.access(args.knative, os.X_OK)
    if have_knative:
        starters["knative-qp"] = lambda u, cc: start_knative(u, cc, args.knative)
    else:
        del starters["knative-qp"]
        print(f"(Knative queue-proxy not found at {args.knative}; run bench/run.sh to build it)")

    # Scenarios: (label, conns, cc). CC=8 compares the concurrency-limited paths.
    scenarios = [(f"c{c}", c, 0) for c in conns_list] + [("c64 cc8", 64, 8)]
    results = {}  # (scenario, proxy) -> list of runs
    listen = {}
    try:
        for rnd in range(args.rounds):
            names = list(starters)
            names = names[rnd % len(names):] + names[:rnd % len(names)]  # alternate order
            for label, conns, cc in scenarios:
                for name in names:
                    if cc and name in ("direct", "nginx"):
                        continue  # nginx has no per-server concurrency queue; direct has no limit
                    proxy = starters[name](up, cc) if starters[name] else None
                    if proxy:
                        listen.setdefault(name, []).append(proxy.listen_ms)
                    port = proxy.port if proxy else up
                    try:
                        res = measure(proxy, port, conns, args.duration)
                    finally:
                        if proxy:
                            proxy.stop()
                    results.setdefault((label, name), []).append(res)
                    print(f"round {rnd + 1} {label:8} {name:10} {res['rps']:9.0f} req/s "
                          f"p99 {res['p99']:7.2f} ms cpu {res['cpu_us']:6.1f} us/req "
                          f"rss {res['rss_load_mib']:5.1f} MiB errors {res['errors']}", flush=True)
    finally:
        app.kill()

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    print()
    print(f"| scenario | proxy | req/s | p50 ms | p99 ms | CPU µs/req | vs HAProxy | vs Knative | "
          f"RSS idle MiB | RSS load MiB | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, conns, cc in scenarios:
        base_h = results.get((label, "haproxy"))
        base_k = results.get((label, "knative-qp"))
        for name in starters:
            runs = results.get((label, name))
            if not runs:
                continue
            cpu = med(runs, "cpu_us")
            vs_h = f"{cpu / med(base_h, 'cpu_us'):.2f}×" if base_h and name != "direct" else "–"
            vs_k = f"{cpu / med(base_k, 'cpu_us'):.2f}×" if base_k and name != "direct" else "–"
            print(f"| {label} | {name} | {med(runs, 'rps'):.0f} | {med(runs, 'p50'):.2f} | "
                  f"{med(runs, 'p99'):.2f} | {cpu:.1f} | {vs_h} | {vs_k} | "
                  f"{med(runs, 'rss_idle_mib'):.1f} | {med(runs, 'rss_load_mib'):.1f} | "
                  f"{sum(r['errors'] for r in runs)} |")
    print()
    for name, ms in listen.items():
        print(f"time to listening, {name}: median {statistics.median(ms):.1f} ms over {len(ms)} starts")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{k[0]}|{k[1]}": v for k, v in results.items()}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
