#!/usr/bin/env python3
"""Activator benchmarks (issue 3), on loopback, nothing asserted:

1. The activator hop vs HAProxy in the same position:
   wrk -> (sluice activator | HAProxy) -> sluice queue-proxy -> sluice-testapp,
   one worker thread each (then two), alternating runs; CPU us per request of the hop
   process (from /proc), p50/p99, RSS, ratio to HAProxy.
2. Cold-start release: a request is buffered by the activator while the replica is down;
   the replica's app then starts. Reported: time from the app listening to the buffered
   request's answer, p50/p99 over N trials, with the queue-proxy's ready push and with
   probing only (--probe-interval 50ms).

    bench/run.sh --activator [--duration 10] [--trials 50]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_bench  # noqa: E402
from proxy_bench import ROOT, Proxy, free_port, measure, pct, wait_port  # noqa: E402

SLUICE = os.path.join(ROOT, "build-bench/src/cli/sluice")
TESTAPP = os.path.join(ROOT, "build-bench/tools/testapp/sluice-testapp")
REVISION = "hello-00001"


def qp_env(cc, port, app_port, push_to=""):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVING_")}
    env.update({"CONTAINER_CONCURRENCY": str(cc), "QUEUE_SERVING_PORT": str(port),
                "QUEUE_SERVING_TLS_PORT": "8112", "USER_PORT": str(app_port),
                "REVISION_TIMEOUT_SECONDS": "300", "SERVING_LOGGING_CONFIG": "{}",
                "SERVING_LOGGING_LEVEL": "error", "SERVING_NAMESPACE": "default",
                "SERVING_CONFIGURATION": "hello", "SERVING_REVISION": REVISION,
                "SERVING_POD": "bench", "SERVING_POD_IP": "127.0.0.1",
                "SLUICE_ACTIVATORS": push_to,
                # As Knative's defaulting gives every container: TCP on the user port.
                "SERVING_READINESS_PROBE": json.dumps(
                    {"tcpSocket": {"port": app_port, "host": "127.0.0.1"}, "successThreshold": 1})})
    return env


def start_qp(app_port, push_to=""):
    port = free_port()
    argv = [SLUICE, "queue-proxy", "--admin-port", str(free_port()), "--stats-port",
            str(free_port()), "--metrics-port", str(free_port())]
    return subprocess.Popen(argv, env=qp_env(0, port, app_port, push_to),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port


def endpoints_file(endpoints):
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"revisions": [{"namespace": "default", "service": "hello", "name": REVISION,
                              "containerConcurrency": 0, "endpoints": endpoints}]}, f)
    f.close()
    return f.name


def start_activator(qp_port, threads, probe_interval="50ms"):
    port = free_port()
    argv = [SLUICE, "activator", "--port", str(port), "--metrics-port", str(free_port()),
            "--threads", str(threads), "--endpoints-file",
            endpoints_file([f"127.0.0.1:{qp_port}"]), "--probe-interval", probe_interval,
            "--log-level", os.environ.get("ACT_LOG", "error")]
    return Proxy("activator", argv, port)


def hop_bench(args):
    app_port = free_port()
    app = subprocess.Popen([TESTAPP, "--port", str(app_port)], stderr=subprocess.DEVNULL)
    assert wait_port(app_port)
    qp, qp_port = start_qp(app_port)
    assert wait_port(qp_port)
    time.sleep(0.3)
    rows = {}
    try:
        for rnd in range(args.rounds):
            for threads in (1, 2):
                order = ["activator", "haproxy"] if rnd % 2 == 0 else ["haproxy", "activator"]
                for name in order:
                    if name == "activator":
                        proxy = start_activator(qp_port, threads)
                    else:
                        proxy = proxy_bench.start_haproxy(qp_port, 0, threads)
                    # The activator routes by Host.
                    res = measure_host(proxy, args.conns, args.duration)
                    proxy.stop()
                    rows.setdefault((threads, name), []).append(res)
                    print(f"round {rnd + 1} threads {threads} {name:9} {res['rps']:8.0f} req/s "
                          f"p99 {res['p99']:6.2f} ms cpu {res['cpu_us']:6.1f} us/req "
                          f"rss {res['rss_load_mib']:5.1f} MiB errors {res['errors']}", flush=True)
    finally:
        qp.kill()
        app.kill()
    print()
    print("| threads | hop | req/s | p50 ms | p99 ms | CPU µs/req | user | kernel | vs HAProxy "
          "| RSS MiB | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for threads in (1, 2):
        base = statistics.median(r["cpu_us"] for r in rows[(threads, "haproxy")])
        for name in ("activator", "haproxy"):
            runs = rows[(threads, name)]
            cpu = statistics.median(r["cpu_us"] for r in runs)
            print(f"| {threads} | {name} | {statistics.median(r['rps'] for r in runs):.0f} | "
                  f"{statistics.median(r['p50'] for r in runs):.2f} | "
                  f"{statistics.median(r['p99'] for r in runs):.2f} | {cpu:.1f} | "
                  f"{statistics.median(r['cpu_user_us'] for r in runs):.1f} | "
                  f"{statistics.median(r['cpu_sys_us'] for r in runs):.1f} | "
                  f"{cpu / base:.2f}× | {statistics.median(r['rss_load_mib'] for r in runs):.1f} | "
                  f"{sum(r['errors'] for r in runs)} |")


def measure_host(proxy, conns, duration):
    # A Host header that names the revision (HAProxy ignores it).
    proxy_bench.WRK_EXTRA[:] = ["-H", "Host: hello.default.example.com"]
    return measure(proxy, proxy.port, conns, duration)


def log_time(path, needle):
    """Wall-clock seconds of the first log line containing needle (ms resolution)."""
    with open(path) as f:
        for line in f:
            if needle in line:
                stamp = line.split(" ", 1)[0]
                t = time.strptime(stamp.split(".")[0], "%Y-%m-%dT%H:%M:%S")
                return time.mktime(t) + int(stamp.split(".")[1]) / 1000
    return None


def cold_start(args):
    for mode in ("push", "probing only"):
        from_listen, from_ready = [], []
        for _ in range(args.trials):
            app_port = free_port()
            qp_port = free_port()
            os.environ["ACT_LOG"] = "info"
            act = start_activator(qp_port, 1, "50ms")
            push_to = f"127.0.0.1:{act.port}" if mode == "push" else ""
            env = qp_env(0, qp_port, app_port, push_to)
            env["SERVING_LOGGING_LEVEL"] = "info"
            qp_log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
            # The queue-proxy is up (its app is not): its prober polls the app every 50 ms.
            qp = subprocess.Popen(
                [SLUICE, "queue-proxy", "--admin-port", str(free_port()), "--stats-port",
                 str(free_port()), "--metrics-port", str(free_port())],
                env=env, stdout=qp_log, stderr=subprocess.STDOUT)
            wait_port(qp_port)
            req = urllib.request.Request(f"http://127.0.0.1:{act.port}/",
                                         headers={"Host": "hello.default.example.com"})
            done = {}

            def client():
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read()
                done["t"] = time.monotonic()

            th = threading.Thread(target=client)
            th.start()
            time.sleep(0.2)
            app = subprocess.Popen([TESTAPP, "--port", str(app_port)], stderr=subprocess.DEVNULL)
            wait_port(app_port, step=0.0002)
            listening = time.monotonic()
            th.join()
            from_listen.append((done["t"] - listening) * 1000)
            app.kill()
            qp.kill()
            qp.wait()
            ready = log_time(qp_log.name, "app is ready")
            healthy = log_time(act.log.name, "-> healthy")
            if ready is not None and healthy is not None:
                from_ready.append((healthy - ready) * 1000)
            act.stop()
            os.unlink(qp_log.name)

        print(f"cold-start, {mode}: app listening -> buffered request answered: "
              f"p50 {statistics.median(from_listen):.1f} ms, p99 {pct(from_listen, 0.99):.1f} ms; "
              f"queue-proxy ready -> activator releases: "
              f"p50 {statistics.median(from_ready) if from_ready else float('nan'):.1f} ms, "
              f"p99 {pct(from_ready, 0.99):.1f} ms ({len(from_listen)} trials)", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--skip-hop", action="store_true")
    ap.add_argument("--skip-cold-start", action="store_true")
    args = ap.parse_args()
    if not args.skip_hop:
        hop_bench(args)
    if not args.skip_cold_start:
        cold_start(args)


if __name__ == "__main__":
    sys.exit(main())
