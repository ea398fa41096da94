#!/usr/bin/env python3
"""Times one-shot commands as whole processes, alternating between them.

Usage: oneshot.py --runs N --warmup W --out FILE.json [--socket SOCKET]
                  [--ref NAME] (--cmd NAME COMMAND | --cmd-release NAME COMMAND)...

Every round runs each command once, starting each round at the next command
in turn (rotation), so that load that comes and goes hits all of them alike.
The first W rounds are warm-up and are thrown away. COMMAND is split into
words (shlex) and started with posix_spawn, without a shell; stdin and
stdout go to /dev/null and stderr to this process's stderr. A run is the
wall time (time.perf_counter: CLOCK_MONOTONIC) from just before
posix_spawn() to just after wait4() returns the exit status, and its CPU is
the child's user+system time from wait4. A command that exits non-zero
stops the whole measurement.

--cmd-release commands are `portctl lease ...` runs whose lease is then
released, outside the timed span: stdout goes to a pipe, read after the
exit, and `DELETE /v1/leases/PORT?id=...` is sent over SOCKET before the
next command starts (the owner is this process, which lives on, so without
the release the leases would pile up).

Writes FILE.json: per command the median, mean, p10, p90, min, max wall
time and the median CPU time (ms), the ratio of its median to --ref's, and
every run; prints a Markdown table on stdout.
"""

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import time

from portd_http import Unix, call


def release(sock_path, port):
    conn = Unix(sock_path)
    _, lease = call(conn, "GET", f"/v1/leases/{port}")
    status, _ = call(conn, "DELETE", f"/v1/leases/{port}?id={lease['id']}")
    conn.close()
    if status != 200:
        sys.exit(f"oneshot.py: releasing port {port} answered {status}")


def run_once(argv, capture):
    """Returns (wall seconds, cpu seconds, stdout bytes or None)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 0)]
    read_end = None
    if capture:
        read_end, write_end = os.pipe()
        actions += [(os.POSIX_SPAWN_DUP2, write_end, 1), (os.POSIX_SPAWN_CLOSE, read_end)]
    else:
        actions.append((os.POSIX_SPAWN_DUP2, devnull, 1))
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    t1 = time.perf_counter()
    os.close(devnull)
    out = None
    if capture:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as f:
            out = f.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"oneshot.py: {shlex.join(argv)} exited with {code}")
    return t1 - t0, usage.ru_utime + usage.ru_stime, out


class AddCommand(argparse.Action):
    """--cmd and --cmd-release, kept in the order given."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.commands = namespace.commands + [
            (values[0], values[1], option_string == "--cmd-release")]


def percentile(values, p):
    values = sorted(values)
    return values[round((len(values) - 1) * p)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", required=True)
    parser.add_argument("--socket")
    parser.add_argument("--ref")
    parser.add_argument("--cmd", "--cmd-release", nargs=2, action=AddCommand, dest="commands",
                        default=[], metavar=("NAME", "COMMAND"))
    args = parser.parse_args()

    commands = []
    for name, command, release_after in args.commands:
        argv = shlex.split(command)
        path = shutil.which(argv[0])
        if path is None:
            sys.exit(f"oneshot.py: {argv[0]} not found")
        commands.append({"name": name, "command": command,
                         "argv": [path] + argv[1:], "release": release_after})
    if not commands:
        sys.exit("oneshot.py: no --cmd")
    if any(c["release"] for c in commands) and not args.socket:
        sys.exit("oneshot.py: --cmd-release needs --socket")
    if args.ref and args.ref not in {c["name"] for c in commands}:
        sys.exit(f"oneshot.py: --ref {args.ref} names no command")

    wall = {c["name"]: [] for c in commands}
    cpu = {c["name"]: [] for c in commands}
    for round_ in range(args.warmup + args.runs):
        start = round_ % len(commands)
        for c in commands[start:] + commands[:start]:
            seconds, cpu_seconds, out = run_once(c["argv"], c["release"])
            if c["release"]:
                release(args.socket, int(out.split()[0]))
            if round_ >= args.warmup:
                wall[c["name"]].append(seconds * 1000)
                cpu[c["name"]].append(cpu_seconds * 1000)

    ref = statistics.median(wall[args.ref]) if args.ref else None
    results = []
    for c in commands:
        w = wall[c["name"]]
        results.append({
            "name": c["name"],
            "command": c["command"],
            "release_after_each_run": c["release"],
            "runs": len(w),
            "median_ms": statistics.median(w),
            "mean_ms": statistics.fmean(w),
            "p10_ms": percentile(w, 0.10),
            "p90_ms": percentile(w, 0.90),
            "min_ms": min(w),
            "max_ms": max(w),
            "cpu_median_ms": statistics.median(cpu[c["name"]]),
            "vs_ref": statistics.median(w) / ref if ref else None,
            "wall_ms": w,
        })
    with open(args.out, "w") as f:
        json.dump({"runs": args.runs, "warmup": args.warmup, "ref": args.ref,
                   "results": results}, f, indent=2)

    print(f"| Command | median [ms] | p10 | p90 | min | max | CPU median [ms] | median / {args.ref} |")
    print("|:---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = f"{r['vs_ref']:.2f}" if r["vs_ref"] is not None else ""
        print(f"| {r['name']} | {r['median_ms']:.2f} | {r['p10_ms']:.2f} | {r['p90_ms']:.2f} "
              f"| {r['min_ms']:.2f} | {r['max_ms']:.2f} | {r['cpu_median_ms']:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
