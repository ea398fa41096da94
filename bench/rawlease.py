#!/usr/bin/env python3
"""The daemon's share of a one-shot `portctl lease --next`.

Usage: rawlease.py SOCKET RANGE RUNS

RUNS times: connect to SOCKET, send `POST /v1/leases {"next": true, "range":
RANGE}` with `Connection: close` (what portctl sends, on a fresh connection
as portctl has), and read the answer to its end. The time from just before
connect() to the end of the answer (time.perf_counter) is one run. Each
lease is then released (DELETE, untimed), so every run starts from the same
state. The owner is this process's parent, as for portctl. Prints JSON:
median, p10, p90 in ms.
"""

import json
import socket
import statistics
import sys
import time


def exchange(path, request):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def main():
    path, range_, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    body = json.dumps({"next": True, "range": range_}).encode()
    request = (b"POST /v1/leases HTTP/1.1\r\nHost: portd\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    times = []
    for _ in range(runs + 5):
        t = time.perf_counter()
        status, answer = exchange(path, request)
        times.append((time.perf_counter() - t) * 1000)
        if status != 201:
            sys.exit(f"rawlease.py: lease answered {status}: {answer!r}")
        lease = json.loads(answer)
        status, answer = exchange(path, (
            f"DELETE /v1/leases/{lease['port']}?id={lease['id']} HTTP/1.1\r\n"
            "Host: portd\r\nConnection: close\r\n\r\n").encode())
        if status != 200:
            sys.exit(f"rawlease.py: release answered {status}: {answer!r}")
    times = sorted(times[5:])
    print(json.dumps({
        "runs": runs,
        "median_ms": statistics.median(times),
        "p10_ms": times[round(0.1 * (runs - 1))],
        "p90_ms": times[round(0.9 * (runs - 1))],
    }))


if __name__ == "__main__":
    main()
