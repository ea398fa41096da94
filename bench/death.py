#!/usr/bin/env python3
"""Owner death -> lease ended, measured from outside the daemon.

Usage: death.py SOCKET PORT RUNS OUT.json

RUNS times: start a fresh `sleep` (the owner), lease PORT for it over the
HTTP API (`POST /v1/leases` with `owner: {pid, start_time}`, the start time
read from /proc like portctl's --owner does), wait 20 ms so the grant is
well behind us, then send the owner SIGKILL and time two things from the
moment just before kill(2):

- poll_ms: CLOCK_MONOTONIC (time.perf_counter) in this process, until the
  first `GET /v1/leases/PORT` that answers 404 (no active lease). The polls
  go back to back over one keep-alive connection; poll_rtt_ms is the median
  round trip of a poll while the lease was still active, the resolution of
  this number.
- event_ms: the `at` of the lease's `owner_died` event (the daemon's
  CLOCK_REALTIME, whole milliseconds, truncated) minus this process's
  CLOCK_REALTIME (time.time) just before kill(2). Same clock, two processes;
  the truncation makes it up to 1 ms early, so it may be slightly negative.

The owner is reaped (waitpid) only after the 404, so a zombie owner must
count as dead for the daemon, as it does for a pidfd.

Writes OUT.json with every run and median, p90, min and max of each.
"""

import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import time

from portd_http import Unix, at, boot_time, call, start_time


def summary(values):
    values = sorted(values)
    return {
        "median": statistics.median(values),
        "p90": values[round(0.9 * (len(values) - 1))],
        "min": values[0],
        "max": values[-1],
    }


def main():
    sock_path, port, runs, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    btime = boot_time()
    conn = Unix(sock_path)
    rows = []
    for run in range(runs):
        owner = subprocess.Popen(["sleep", "86400"])
        try:
            status, lease = call(conn, "POST", "/v1/leases", {
                "port": port, "owner": {"pid": owner.pid, "start_time": start_time(owner.pid, btime)}})
            if status != 201:
                raise SystemExit(f"run {run}: lease answered {status}: {lease}")
            time.sleep(0.02)
            rtts = []
            for _ in range(5):
                t = time.perf_counter()
                status, _ = call(conn, "GET", f"/v1/leases/{port}")
                rtts.append(time.perf_counter() - t)
                if status != 200:
                    raise SystemExit(f"run {run}: the lease is not active before the kill")
            since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
            polls = 0
            wall0 = time.time()
            t0 = time.perf_counter()
            os.kill(owner.pid, signal.SIGKILL)
            while True:
                status, _ = call(conn, "GET", f"/v1/leases/{port}")
                polls += 1
                if status == 404:
                    t1 = time.perf_counter()
                    break
                if status != 200 or time.perf_counter() - t0 > 5:
                    raise SystemExit(f"run {run}: lease still active 5 s after its owner died")
        finally:
            if owner.poll() is None:
                owner.kill()
            owner.wait()
        query = since.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        _, body = call(conn, "GET", f"/v1/events?since={query}")
        died = [e for e in body["events"] if e["kind"] == "owner_died" and e["lease_id"] == lease["id"]]
        if not died:
            raise SystemExit(f"run {run}: no owner_died event for lease {lease['id']}")
        rows.append({
            "poll_ms": (t1 - t0) * 1000,
            "event_ms": (at(died[0]) - wall0) * 1000,
            "polls": polls,
            "poll_rtt_ms": statistics.median(rtts) * 1000,
        })
    result = {key: summary([r[key] for r in rows]) for key in ("poll_ms", "event_ms", "poll_rtt_ms")}
    result["runs"] = rows
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"{'':12} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}   (ms after kill -9 of the owner, {runs} runs)")
    for key in ("poll_ms", "event_ms", "poll_rtt_ms"):
        s = result[key]
        print(f"{key:12} {s['median']:8.2f} {s['p90']:8.2f} {s['min']:8.2f} {s['max']:8.2f}")


if __name__ == "__main__":
    main()
