#!/usr/bin/env python3
"""`sluice run` benchmarks (issue 4), on loopback, nothing asserted:

1. Cold-start overhead: a fresh `sluice run` at zero replicas gets one request; the
   time to its answer minus the app's own start-to-listening time (measured alone, same
   app, same machine), p50/p99 over N trials. Apps: sluice-testapp (C++, starts in about
   a millisecond) and examples/hello (Python).
2. Reaction to a 10x step: 2 clients for 8 s, then 20; reported: time from the step to
   the first new replica serving and to the scale decision's replicas all ready.

    bench/run.sh --run [--trials 20]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import ROOT, free_port, pct, wait_port  # noqa: E402

SLUICE = os.path.join(ROOT, "build-bench/src/cli/sluice")
TESTAPP = os.path.join(ROOT, "build-bench/tools/testapp/sluice-testapp")
HELLO = os.path.join(ROOT, "examples/hello/app.py")


def service_yaml(command, annotations=""):
    args = ", ".join(f'"{c}"' for c in command)
    return (f"apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: bench\n"
            f"spec:\n  template:\n    metadata:\n      annotations:\n"
            f"        autoscaling.knative.dev/window: \"6s\"\n{annotations}"
            f"    spec:\n      containerConcurrency: 1\n      containers:\n"
            f"        - command: [{args}]\n")


def get(port, path="/", timeout=30):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Host": "bench.default.localhost"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        r.read()
        return r.status


def app_start_ms(command, trials):
    """The app alone: from exec to accepting connections."""
    out = []
    for _ in range(trials):
        port = free_port()
        env = dict(os.environ, PORT=str(port))
        t0 = time.monotonic()
        p = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        ok = wait_port(port, timeout=10, step=0.0002)
        out.append((time.monotonic() - t0) * 1000)
        p.kill()
        p.wait()
        if not ok:
            raise SystemExit(f"{command} did not listen")
    return out


def cold_start(command, trials, label):
    alone = app_start_ms(command, trials)
    total = []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "service.yaml")
        with open(path, "w") as f:
            f.write(service_yaml(command))
        for _ in range(trials):
            port, mport = free_port(), free_port()
            p = subprocess.Popen([SLUICE, "run", path, "--port", str(port), "--metrics-port",
                                  str(mport), "--log-level", "warn"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_port(port, timeout=10)
                time.sleep(0.2)  # settle: the runtime is idle at zero replicas
                t0 = time.monotonic()
                status = get(port)
                total.append((time.monotonic() - t0) * 1000)
                assert status == 200, status
            finally:
                p.send_signal(2)
                p.wait(timeout=20)
    a50, t50 = statistics.median(alone), statistics.median(total)
    over = [t - a50 for t in total]
    print(f"| {label} | {a50:.1f} | {pct(alone, 0.99):.1f} | {t50:.1f} | {pct(total, 0.99):.1f} "
          f"| {statistics.median(over):.1f} | {pct(over, 0.99):.1f} | {trials} |", flush=True)


def reaction(duration_low=8.0, duration_high=12.0):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "service.yaml")
        with open(path, "w") as f:
            f.write(service_yaml([TESTAPP], "        autoscaling.knative.dev/max-scale: \"40\"\n"))
        port, mport = free_port(), free_port()
        log = open(os.path.join(d, "log"), "w+")
        p = subprocess.Popen([SLUICE, "run", path, "--port", str(port), "--metrics-port",
                              str(mport)], stdout=log, stderr=subprocess.STDOUT)
        errors = [0]
        stop = [False]

        def client():
            while not stop[0]:
                try:
                    get(port, "/?delay=100")
                except Exception:
                    errors[0] += 1

        try:
            wait_port(port, timeout=10)
            threads = [threading.Thread(target=client) for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(duration_low)
            step_at = time.monotonic()
            step_wall = time.time()
            more = [threading.Thread(target=client) for _ in range(18)]
            for t in more:
                t.start()
            time.sleep(duration_high)
            stop[0] = True
            for t in threads + more:
                t.join()
        finally:
            p.send_signal(2)
            p.wait(timeout=30)
        log.seek(0)
        lines = log.read().splitlines()
    # Log lines start with HH:MM:SS.mmm (local time of the same clock as step_wall).
    def t_of(line):
        h, m, s = line[:12].split(":")
        lt = time.localtime(step_wall)
        base = time.mktime(lt[:3] + (0, 0, 0) + lt[6:])
        return base + int(h) * 3600 + int(m) * 60 + float(s)
    decisions = [l for l in lines if " → " in l and t_of(l) >= step_wall - 0.001]
    readies = [t_of(l) for l in lines if " ready in " in l and t_of(l) >= step_wall]
    first_decision = (t_of(decisions[0]) - step_wall) * 1000 if decisions else float("nan")
    first_ready = (min(readies) - step_wall) * 1000 if readies else float("nan")
    last_ready = (max(readies) - step_wall) * 1000 if readies else float("nan")
    print(f"reaction to 2 → 20 clients: first scale decision after {first_decision:.0f} ms, "
          f"first new replica ready after {first_ready:.0f} ms, last after {last_ready:.0f} ms "
          f"({len(readies)} new replicas; {decisions[0][13:] if decisions else '-'}); "
          f"client errors {errors[0]}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    print("| app | app alone p50 ms | p99 | first answer from zero p50 ms | p99 | "
          "overhead p50 ms | p99 | trials |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    cold_start([TESTAPP], args.trials, "sluice-testapp (C++)")
    cold_start(["python3", HELLO], args.trials, "examples/hello (Python)")
    reaction()


if __name__ == "__main__":
    sys.exit(main())
