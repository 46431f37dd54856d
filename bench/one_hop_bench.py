#!/usr/bin/env python3
"""`sluice run` in one hop (issue 13), on loopback, nothing asserted. Side by side in one run:

    wrk → sluice run (in-process, the default) → app
    wrk → sluice run --queue-proxy=process → sluice queue-proxy → app
    wrk → HAProxy → the same app

1. Steady load (wrk, one replica of the C++ test app kept warm, containerConcurrency 0):
   CPU µs per request of every Sluice process together (sluice and its queue-proxy
   processes; never the app, never wrk), p50/p99. Setups alternate in order round by
   round; medians over rounds. wrk and the proxies share the machine's cores, so compare
   CPU per request, not requests per second.
2. Memory: RSS of Sluice's processes with 1 and with 11 idle replicas; the difference / 10
   is what one more idle replica costs Sluice (the app's own memory is not counted).
3. Cold start: a fresh `sluice run` at zero replicas gets one request; its answer time
   minus the app's own exec-to-listening time (measured alone), p50/p99 over N trials.

    bench/run.sh --one-hop [--duration 10] [--rounds 3] [--conns 64] [--trials 20]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_bench  # noqa: E402
from proxy_bench import CLK_TCK, free_port, pct, rss_kib, run_wrk, wait_port  # noqa: E402
from run_bench import SLUICE, TESTAPP, app_start_ms, get  # noqa: E402

LAYOUTS = {"sluice run (in-process)": "in-process",
           "sluice run --queue-proxy=process": "process"}


def service_yaml(min_scale, max_scale, cc=0):
    scale = ""
    if min_scale:
        scale += f"        autoscaling.knative.dev/min-scale: \"{min_scale}\"\n"
    if max_scale:
        scale += f"        autoscaling.knative.dev/max-scale: \"{max_scale}\"\n"
    return (f"apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: bench\n"
            f"spec:\n  template:\n    metadata:\n      annotations:\n"
            f"        autoscaling.knative.dev/window: \"6s\"\n{scale}"
            f"    spec:\n      containerConcurrency: {cc}\n      containers:\n"
            f"        - command: [\"{TESTAPP}\"]\n")


def children(pid):
    out = subprocess.run(["pgrep", "-a", "-P", str(pid)], capture_output=True, text=True).stdout
    return [(int(line.split()[0]), line) for line in out.splitlines() if line.strip()]


class SluiceRun:
    """A `sluice run` of the bench service; its Sluice processes (itself and any
    queue-proxy children) are what is measured."""

    def __init__(self, layout, min_scale, max_scale, cc=0):
        self.tmp = tempfile.mkdtemp(prefix="bench-one-hop-")
        path = os.path.join(self.tmp, "service.yaml")
        with open(path, "w") as f:
            f.write(service_yaml(min_scale, max_scale, cc))
        self.port, self.mport = free_port(), free_port()
        self.log = open(os.path.join(self.tmp, "log"), "w+")
        self.proc = subprocess.Popen([SLUICE, "run", path, "--port", str(self.port),
                                      "--metrics-port", str(self.mport), "--queue-proxy", layout],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.name = layout
        self.pid = self.proc.pid
        if not wait_port(self.port, timeout=15):
            raise RuntimeError(f"sluice run did not listen: see {self.log.name}")
        want = f"replica bench-00001-{min_scale} ready" if min_scale else None
        deadline = time.monotonic() + 30
        while want and time.monotonic() < deadline:
            self.log.seek(0)
            if want in self.log.read():
                break
            time.sleep(0.05)
        time.sleep(1.0)  # settle: probes and stats running, nothing starting

    def sluice_pids(self):
        return [self.pid] + [p for p, line in children(self.pid) if "queue-proxy" in line]

    def stop(self):
        self.proc.send_signal(2)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def ticks(pids):
    """(user, kernel) clock ticks of these processes together."""
    user = kernel = 0
    for pid in pids:
        try:
            u, k = proxy_bench.cpu_ticks(pid)
            user, kernel = user + u, kernel + k
        except OSError:
            pass
    return user, kernel


def load(port, pids, conns, duration):
    run_wrk(port, conns, 1)  # warm-up: pools filled, caches hot
    before = ticks(pids)
    res = run_wrk(port, conns, duration)
    after = ticks(pids)
    per_request = 1e6 / CLK_TCK / max(res["requests"], 1)
    res["user_us"] = (after[0] - before[0]) * per_request
    res["kernel_us"] = (after[1] - before[1]) * per_request
    res["cpu_us"] = res["user_us"] + res["kernel_us"]
    return res


def steady(args):
    rows = {name: [] for name in list(LAYOUTS) + ["HAProxy 2.6 (one hop)"]}
    app_port = free_port()
    app = subprocess.Popen([TESTAPP], env=dict(os.environ, PORT=str(app_port)),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(app_port)
    try:
        for rnd in range(args.rounds):
            order = list(rows)
            if rnd % 2:
                order.reverse()
            for name in order:
                if name in LAYOUTS:
                    s = SluiceRun(LAYOUTS[name], 1, 1)
                    proxy_bench.WRK_EXTRA[:] = ["-H", "Host: bench.default.localhost"]
                    try:
                        res = load(s.port, s.sluice_pids(), args.conns, args.duration)
                    finally:
                        s.stop()
                else:
                    h = proxy_bench.start_haproxy(app_port, 0, 1)
                    proxy_bench.WRK_EXTRA[:] = []
                    try:
                        res = load(h.port, [h.pid], args.conns, args.duration)
                    finally:
                        h.stop()
                rows[name].append(res)
                print(f"  round {rnd + 1} {name:34s} {res['rps']:9.0f} req/s  p50 "
                      f"{res['p50']:6.2f} ms  p99 {res['p99']:6.2f} ms  cpu "
                      f"{res['cpu_us']:5.1f} µs/req  errors {res['errors']}", flush=True)
    finally:
        app.kill()
        app.wait()
    base = statistics.median(r["cpu_us"] for r in rows["HAProxy 2.6 (one hop)"])
    print(f"\nSteady load: wrk -c{args.conns}, {args.duration} s × {args.rounds} rounds "
          "(medians), one warm replica of sluice-testapp")
    print("| path | req/s | p50 ms | p99 ms | CPU µs/req (Sluice or HAProxy) | user | kernel "
          "| × HAProxy | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in rows.items():
        cpu = statistics.median(r["cpu_us"] for r in runs)
        print(f"| {name} | {statistics.median(r['rps'] for r in runs):.0f} | "
              f"{statistics.median(r['p50'] for r in runs):.2f} | "
              f"{statistics.median(r['p99'] for r in runs):.2f} | {cpu:.1f} | "
              f"{statistics.median(r['user_us'] for r in runs):.1f} | "
              f"{statistics.median(r['kernel_us'] for r in runs):.1f} | "
              f"{cpu / base:.2f}× | {sum(r['errors'] for r in runs)} |", flush=True)


def memory():
    print("\nMemory: RSS of Sluice's processes (sluice + queue-proxies), idle replicas")
    print("| layout | 1 replica MiB | 11 replicas MiB | per extra idle replica KiB |")
    print("|---|---:|---:|---:|")
    for name, layout in LAYOUTS.items():
        rss = {}
        for n in (1, 11):
            s = SluiceRun(layout, n, n)
            try:
                time.sleep(2)
                rss[n] = sum(rss_kib(p) for p in s.sluice_pids())
            finally:
                s.stop()
        print(f"| {name} | {rss[1] / 1024:.1f} | {rss[11] / 1024:.1f} | "
              f"{(rss[11] - rss[1]) / 10:.0f} |", flush=True)


def cold_start(trials):
    alone = app_start_ms([TESTAPP], trials)
    a50 = statistics.median(alone)
    print(f"\nCold start: first answer from zero, minus the app's own start "
          f"(sluice-testapp alone: p50 {a50:.2f} ms, p99 {pct(alone, 0.99):.2f} ms), "
          f"{trials} trials")
    print("| layout | first answer p50 ms | p99 | overhead p50 ms | p99 |")
    print("|---|---:|---:|---:|---:|")
    release = {}
    for name, layout in LAYOUTS.items():
        total, release[name] = [], []
        for _ in range(trials):
            s = SluiceRun(layout, 0, 1, cc=1)
            try:
                t0 = time.monotonic()
                status = get(s.port)
                answered = time.time()
                total.append((time.monotonic() - t0) * 1000)
                assert status == 200, status
                s.log.seek(0)
                lines = s.log.read().splitlines()
                ready = [l for l in lines if "app is ready" in l]
                healthy = [l for l in lines if "pending -> healthy" in l]
                if ready and healthy:
                    release[name].append(((log_time(healthy[0], answered) -
                                           log_time(ready[0], answered)) * 1000,
                                          (answered - log_time(ready[0], answered)) * 1000))
            finally:
                s.stop()
        over = [t - a50 for t in total]
        print(f"| {name} | {statistics.median(total):.2f} | {pct(total, 0.99):.2f} | "
              f"{statistics.median(over):.2f} | {pct(over, 0.99):.2f} |", flush=True)
    print("\nFrom the app seen ready to the activator releasing the request (log lines, 1 ms "
          "resolution), and to the client's answer:")
    for name, pairs in release.items():
        if not pairs:  # a queue-proxy process logs at warn level: no "app is ready" line
            print(f"- {name}: not in the log", flush=True)
            continue
        released, answered = [p[0] for p in pairs], [p[1] for p in pairs]
        print(f"- {name}: released p50 {statistics.median(released):.1f} ms, p99 "
              f"{pct(released, 0.99):.1f} ms; answered p50 {statistics.median(answered):.1f} "
              f"ms, p99 {pct(answered, 0.99):.1f} ms", flush=True)


def log_time(line, near):
    """The wall time of a log line stamped HH:MM:SS.mmm (local time), on the day of `near`."""
    h, m, sec = line[:12].split(":")
    day = time.localtime(near)
    midnight = time.mktime(day[:3] + (0, 0, 0) + day[6:])
    return midnight + int(h) * 3600 + int(m) * 60 + float(sec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--only", choices=["steady", "memory", "cold"], help="one part only")
    args = ap.parse_args()
    if args.only in (None, "steady"):
        steady(args)
    if args.only in (None, "memory"):
        memory()
    if args.only in (None, "cold"):
        cold_start(args.trials)


if __name__ == "__main__":
    sys.exit(main())
