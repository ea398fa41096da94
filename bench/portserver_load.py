#!/usr/bin/env python3
"""Load generator for Google's portserver (portpicker's `portserver.py`).

Usage: portserver_load.py ADDRESS CLIENTS SECONDS MAX_REQUESTS [SERVER_PID]

CLIENTS threads each ask the portserver for a port in a loop, the way
portpicker's `get_port_from_port_server` does: connect to the AF_UNIX socket
(a leading `@` names an abstract socket), send this process's pid as text,
read the port it answers, close. The protocol has one request per
connection and no release request: a port goes back to the pool only when
the pid it was given to has died. So every request here is one port asked
for and granted, and the run stops after SECONDS or after MAX_REQUESTS
requests, whichever comes first, so that the pool never runs dry (give the
server a pool larger than MAX_REQUESTS, and a fresh server for every run).

Prints one JSON object shaped like portd-bench's: clients, requests,
failures (answers without a port), seconds, requests_per_sec, p50_us,
p99_us, plus client_cpu (this process's CPU seconds per wall second) and,
with SERVER_PID, server_cpu (the server's, from /proc/PID/stat).
"""

import json
import os
import resource
import socket
import sys
import threading
import time


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[round((len(sorted_values) - 1) * p)] * 1e6


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__.strip().splitlines()[2])
    address, clients = sys.argv[1], int(sys.argv[2])
    seconds, max_requests = float(sys.argv[3]), int(sys.argv[4])
    server_pid = int(sys.argv[5]) if len(sys.argv) == 6 else None
    if address.startswith("@"):
        address = "\0" + address[1:]
    request = f"{os.getpid()}\n".encode()

    budget = threading.Semaphore(max_requests)
    stop = threading.Event()
    start = threading.Barrier(clients + 1)
    results = []

    def worker():
        latencies, failures = [], 0
        start.wait()
        while not stop.is_set() and budget.acquire(blocking=False):
            t = time.perf_counter()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(address)
                sock.sendall(request)
                answer = b""
                while chunk := sock.recv(100):
                    answer += chunk
            latencies.append(time.perf_counter() - t)
            try:
                if int(answer) <= 0:
                    failures += 1
            except ValueError:
                failures += 1
        results.append((latencies, failures))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    server_before = cpu_seconds(server_pid) if server_pid else None
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    start.wait()
    began = time.perf_counter()
    # Wakes when the time is up; the workers also stop on their own once the
    # request budget is spent.
    deadline = began + seconds
    while time.perf_counter() < deadline and any(t.is_alive() for t in threads):
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    self_after = resource.getrusage(resource.RUSAGE_SELF)

    latencies = sorted(x for lat, _ in results for x in lat)
    report = {
        "clients": clients,
        "requests": len(latencies),
        "failures": sum(f for _, f in results),
        "seconds": elapsed,
        "requests_per_sec": len(latencies) / elapsed,
        "p50_us": percentile(latencies, 0.50),
        "p99_us": percentile(latencies, 0.99),
        "client_cpu": (self_after.ru_utime + self_after.ru_stime
                       - self_before.ru_utime - self_before.ru_stime) / elapsed,
    }
    if server_pid:
        report["server_cpu"] = (cpu_seconds(server_pid) - server_before) / elapsed
    print(json.dumps(report))


if __name__ == "__main__":
    main()
