#!/usr/bin/env python3
"""Totals of `sluice simulate`'s results.csv split by the Azure 2019 trace's Trigger column.

usage: bench/sim-by-trigger.py invocations_per_function_md.anon.dNN.csv results.csv

A service is owner/app, as `sluice simulate` names it; an app whose functions have
several triggers is counted under the first one listed.
"""
import collections
import csv
import sys

trace, results = sys.argv[1], sys.argv[2]
trigger = {}
with open(trace, newline="") as f:
    for row in csv.reader(f):
        if row and row[0] != "HashOwner":
            trigger.setdefault(f"{row[0]}/{row[1]}", row[3])
sums = collections.defaultdict(lambda: [0, 0, 0, 0.0, 0.0])
with open(results, newline="") as f:
    for r in csv.DictReader(f):
        s = sums[(trigger.get(r["service"], "?"), r["policy"])]
        s[0] += 1
        s[1] += int(r["requests"])
        s[2] += int(r["cold_starts"])
        s[3] += float(r["replica_seconds"]) / 3600
        s[4] += float(r["idle_replica_seconds"]) / 3600
print("| trigger | policy | services | requests | cold starts | replica-hours | idle replica-hours |")
print("|---|---|---:|---:|---:|---:|---:|")
for (t, p), s in sorted(sums.items()):
    print(f"| {t} | {p} | {s[0]} | {s[1]:,} | {s[2]:,} | {s[3]:,.0f} | {s[4]:,.0f} |")
