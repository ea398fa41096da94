#!/usr/bin/env python3
"""Tables of bench/run.sh's throughput section, from its JSON lines.

usage: throughput_table.py THROUGHPUT.jsonl THROUGHPUT.json

Each line is one portd-bench run: its tool ("portd", "health",
"portserver", and with BENCH_BEFORE "portd-before" and "health-before"),
round, load average at its start, and portd-bench's own figures. Prints
markdown on stdout: portd beside the portserver; with a "before" build,
portd before and after; and one client's round trip beside the floor of
one HTTP exchange (GET /v1/health on the same kind of connection). Writes
the medians and ratios to THROUGHPUT.json.
"""

import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1])]
table = {}
for r in rows:
    table.setdefault((r["tool"], r["clients"]), []).append(r)


def med(rs, key):
    return statistics.median(r[key] for r in rs)


def loads(rs):
    first = [float(r["load"].split()[0]) for r in rs]
    return f"{min(first):.2f}-{max(first):.2f}"


def summarise(tool, clients):
    rs = table.get((tool, clients), [])
    if not rs:
        return None
    s = {
        "tool": tool,
        "clients": clients,
        "rounds": len(rs),
        "requests_per_sec": med(rs, "requests_per_sec"),
        "min": min(r["requests_per_sec"] for r in rs),
        "max": max(r["requests_per_sec"] for r in rs),
        "p50_us": med(rs, "p50_us"),
        "p99_us": med(rs, "p99_us"),
        "server_cpu": med(rs, "server_cpu"),
        "client_cpu": med(rs, "client_cpu"),
        "failures": sum(r["failures"] for r in rs),
        "loads": [r["load"] for r in rs],
        "load_range": loads(rs),
    }
    return s


summary = [s for c in (1, 8, 64) for t in ("portd", "portd-before", "portserver", "health", "health-before")
           if (s := summarise(t, c))]
by = {(s["tool"], s["clients"]): s for s in summary}

print("| clients | tool | requests/s (median of rounds) | min-max | p50 [us] | p99 [us] | server CPU [cores] | load generator CPU [cores] | failures | load (1 min) |")
print("|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in summary:
    if s["tool"].startswith("health"):
        continue
    print(f"| {s['clients']} | {s['tool']} | {s['requests_per_sec']:,.0f} | {s['min']:,.0f}-{s['max']:,.0f} "
          f"| {s['p50_us']:,.0f} | {s['p99_us']:,.0f} | {s['server_cpu']:.2f} | {s['client_cpu']:.2f} "
          f"| {s['failures']} | {s['load_range']} |")
ratios = {}
for c in (1, 8, 64):
    if ("portd", c) in by and ("portserver", c) in by:
        ratios[c] = by[("portd", c)]["requests_per_sec"] / by[("portserver", c)]["requests_per_sec"]
print()
print("portd / portserver: " + ", ".join(f"{c} clients {r:.1f}x" for c, r in ratios.items()))

before_after = {}
if any(s["tool"] == "portd-before" for s in summary):
    print()
    print("Before and after, the same rounds (the two daemons alternate which goes first):")
    print()
    print("| clients | before: requests/s | after: requests/s | after / before | before: p50 / p99 [us] | after: p50 / p99 [us] | load (1 min) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for c in (1, 8, 64):
        b, a = by.get(("portd-before", c)), by.get(("portd", c))
        if not (a and b):
            continue
        before_after[c] = a["requests_per_sec"] / b["requests_per_sec"]
        print(f"| {c} | {b['requests_per_sec']:,.0f} | {a['requests_per_sec']:,.0f} | {before_after[c]:.2f}x "
              f"| {b['p50_us']:,.0f} / {b['p99_us']:,.0f} | {a['p50_us']:,.0f} / {a['p99_us']:,.0f} "
              f"| {loads(table[('portd-before', c)] + table[('portd', c)])} |")

one_client = {}
print()
print("One keep-alive client: a lease or a release against GET /v1/health, per request (medians of the rounds):")
print()
print("| daemon | health p50 [us] | lease + release p50 [us] | grant p50 | release p50 | lease / health | health p99 | lease p99 | load (1 min) |")
print("|:---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, lease_tool, health_tool in (("before", "portd-before", "health-before"), ("after", "portd", "health")):
    lease, health = table.get((lease_tool, 1)), table.get((health_tool, 1))
    if not (lease and health):
        continue
    # The ratio of each round's own pair, then their median: a round's two
    # runs share its load.
    pairs = {r["round"]: r for r in health}
    per_round = [r["p50_us"] / pairs[r["round"]]["p50_us"] for r in lease if r["round"] in pairs]
    o = {
        "health_p50_us": med(health, "p50_us"),
        "lease_p50_us": med(lease, "p50_us"),
        "grant_p50_us": med(lease, "grant_p50_us") if all("grant_p50_us" in r for r in lease) else None,
        "release_p50_us": med(lease, "release_p50_us") if all("release_p50_us" in r for r in lease) else None,
        "ratio_of_medians": med(lease, "p50_us") / med(health, "p50_us"),
        "ratio_per_round": per_round,
        "health_p99_us": med(health, "p99_us"),
        "lease_p99_us": med(lease, "p99_us"),
    }
    one_client[name] = o
    fmt = lambda v: "" if v is None else f"{v:,.0f}"
    print(f"| {name} | {o['health_p50_us']:,.0f} | {o['lease_p50_us']:,.0f} | {fmt(o['grant_p50_us'])} "
          f"| {fmt(o['release_p50_us'])} | **{o['ratio_of_medians']:.2f}x** (rounds {min(per_round):.2f}-{max(per_round):.2f}) "
          f"| {o['health_p99_us']:,.0f} | {o['lease_p99_us']:,.0f} | {loads(lease + health)} |")
if "after" in one_client:
    r = one_client["after"]["ratio_of_medians"]
    print()
    print(f"Target (issue 12): lease p50 at most 2x health p50 at one client: {r:.2f}x, "
          + ("met." if r <= 2 else "not met."))

json.dump({"summary": summary, "ratios": ratios, "before_after": before_after, "one_client": one_client},
          open(sys.argv[2], "w"), indent=2)
