#!/usr/bin/env python3
"""Daemon memory with every port of a range leased to a distinct owner.

Usage: owners.py SOCKET DAEMON_PID FIRST_PORT OWNERS LEASES OUT.json

Forks OWNERS children that do nothing but pause() (each asks the kernel for
SIGKILL when this process dies, so none outlives it), then, over the HTTP
API on SOCKET (`POST /v1/leases` with `{"port": P, "owner": {"pid",
"start_time"}}`, 4 keep-alive connections in parallel):

1. leases port FIRST_PORT+i to child i, one lease per owner; one second
   after the last grant it reads the daemon's VmRSS and VmHWM
   (/proc/PID/status), its open fds and threads, and GET /v1/status
   ("distinct");
2. if LEASES > OWNERS, leases the ports up to FIRST_PORT+LEASES-1 to the
   same children in turn (several leases per owner) and reads them again
   ("more"): the difference is what a lease costs without a new owner.

Then it SIGKILLs every child, times how long the daemon takes to end all
the leases (polling GET /v1/status), and reads VmRSS again one second
("after") and 13 seconds ("after_idle") later.

Prints and writes OUT.json. Needs room for OWNERS more processes (RLIMIT_NPROC,
pid_max and the cgroup's pids.max), and the daemon an RLIMIT_NOFILE above
OWNERS (one pidfd per owner).
"""

import ctypes
import gc
import json
import os
import signal
import sys
import threading
import time

from portd_http import Unix, boot_time, call, start_time

PR_SET_PDEATHSIG = 1


def status_of(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                values[key] = int(value.split()[0])
    values["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return values


def main():
    sock_path, daemon = sys.argv[1], int(sys.argv[2])
    first, owners_n, leases_n, out = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    libc = ctypes.CDLL(None, use_errno=True)
    btime = boot_time()
    result = {"owners": owners_n, "leases": leases_n, "first_port": first,
              "idle": status_of(daemon), "failures": [], "failure_count": 0}

    gc.freeze()  # keep the children's copy-on-write pages untouched
    parent = os.getpid()
    children = []
    lock = threading.Lock()

    def lease_all(items):
        def lease(part):
            conn = Unix(sock_path)
            for port, pid, started in part:
                status, body = call(conn, "POST", "/v1/leases",
                                    {"port": port, "owner": {"pid": pid, "start_time": started}})
                if status != 201:
                    with lock:
                        result["failure_count"] += 1
                        if len(result["failures"]) < 10:
                            result["failures"].append({"port": port, "status": status, "body": body})
            conn.close()

        t = time.perf_counter()
        threads = [threading.Thread(target=lease, args=(items[i::4],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - t

    def snapshot():
        time.sleep(1)
        _, status = call(conn, "GET", "/v1/status")
        values = status_of(daemon)
        values["active_leases"] = status["counts"]["active_leases"]
        values["owners_watched"] = status["counts"]["owners_watched"]
        return values

    conn = Unix(sock_path)
    t = time.perf_counter()
    try:
        for _ in range(owners_n):
            pid = os.fork()
            if pid == 0:
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != parent:
                    os._exit(0)
                while True:
                    signal.pause()
            children.append(pid)
        result["fork_seconds"] = time.perf_counter() - t
        owners = [(pid, start_time(pid, btime)) for pid in children]

        result["lease_seconds"] = lease_all(
            [(first + i, pid, started) for i, (pid, started) in enumerate(owners)])
        result["distinct"] = snapshot()
        if leases_n > owners_n:
            result["more_lease_seconds"] = lease_all(
                [(first + i, *owners[i % owners_n]) for i in range(owners_n, leases_n)])
            result["more"] = snapshot()
        result["granted"] = leases_n - result["failure_count"]
    finally:
        t = time.perf_counter()
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        for pid in children:
            os.waitpid(pid, 0)
    killed = t
    active = None
    while time.perf_counter() - killed < 60:
        _, status = call(conn, "GET", "/v1/status")
        active = status["counts"]["active_leases"]
        if active == 0:
            break
        time.sleep(0.01)
    result["all_ended_seconds"] = time.perf_counter() - killed if active == 0 else None
    time.sleep(1)
    result["after"] = status_of(daemon)
    # tokio's blocking-pool threads, started by the reaper, exit after 10 s idle.
    time.sleep(12)
    result["after_idle"] = status_of(daemon)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "failures"}))


if __name__ == "__main__":
    main()
