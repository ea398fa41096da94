#!/usr/bin/env python3
"""`portctl lease --next` beside a crowd of idle and slow clients.

Usage: slow_clients.py [--bin DIR] [--range A-B] [--out FILE.json]
                       [--idle N] [--partial N] [--slow N] [--leases N]
                       [--daemon-nofile N]

Starts `DIR/portd` (default: target/release beside this script) on a temp
socket and database, then opens the crowd and holds it open:

- idle: connects and sends nothing (default 1,200);
- partial: sends `POST /v1/leases HTTP/1.1`, a Host header and half of a
  Content-Type header, then nothing (default 600);
- slow: sends whole headers announcing a 64-byte body, then one byte of
  it, then nothing (default 500).

It waits (at most 2 s) until the daemon's listen queue is empty, i.e. the
daemon has accepted the whole crowd (`ss -xl` shows the queue), and notes
what is left if it is not. Then it runs `DIR/portctl lease --next` LEASES
times in a row (default 5), each as a whole process (posix_spawn to
wait4, time.perf_counter), and checks that each printed a port. It counts
the crowd connections the daemon has closed by then, kills the daemon and
removes its files.

Prints one line per lease and a summary; writes FILE.json if asked. The
daemon runs with this script's open-file limit raised to its hard limit,
as `portd` raises its own, or with soft and hard limit N (--daemon-nofile:
a daemon whose connection cap, half its limit, is below the crowd must
shed connections). Only Unix sockets are used.
"""

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from portd_http import Unix, call

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTIAL = b"POST /v1/leases HTTP/1.1\r\nHost: portd\r\nContent-Type: applica"
SLOW = (
    b"POST /v1/leases HTTP/1.1\r\nHost: portd\r\nContent-Type: application/json\r\n"
    b"Content-Length: 64\r\n\r\n{"
)


def wait_for(timeout, probe):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None or time.monotonic() >= deadline:
            return value
        time.sleep(0.005)


def health(sock_path):
    try:
        conn = Unix(sock_path)
        status, body = call(conn, "GET", "/v1/health")
        conn.close()
        return body if status == 200 else None
    except OSError:
        return None


def listen_queue(sock_path):
    """Connections waiting in the daemon's listen queue, or None if unknown."""
    try:
        out = subprocess.run(["ss", "-Hxl"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[4] == sock_path:
            return int(fields[2])
    return None


def open_crowd(sock_path, idle, partial, slow):
    crowd = []
    for sends in [b""] * idle + [PARTIAL] * partial + [SLOW] * slow:
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(sock_path)
        if sends:
            conn.sendall(sends)
        crowd.append(conn)
    return crowd


def closed_by_daemon(crowd):
    closed = 0
    for conn in crowd:
        conn.setblocking(False)
        try:
            conn.recv(1)
            closed += 1  # an answer or the end of the connection
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed


def timed_lease(portctl, env):
    read_end, write_end = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    actions = [
        (os.POSIX_SPAWN_DUP2, devnull, 0),
        (os.POSIX_SPAWN_DUP2, write_end, 1),
        (os.POSIX_SPAWN_CLOSE, read_end),
    ]
    argv = [portctl, "lease", "--next"]
    t0 = time.perf_counter()
    pid = os.posix_spawn(portctl, argv, env, file_actions=actions)
    _, status, _ = os.wait4(pid, 0)
    took = time.perf_counter() - t0
    os.close(write_end)
    os.close(devnull)
    with os.fdopen(read_end) as out:
        printed = out.read().strip()
    if os.waitstatus_to_exitcode(status) != 0 or not printed.isdigit():
        sys.exit(f"slow_clients.py: portctl lease --next exited {status:#x}, printed {printed!r}")
    return took, int(printed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "release"))
    parser.add_argument("--range", default="24000-24999")
    parser.add_argument("--out")
    parser.add_argument("--idle", type=int, default=1200)
    parser.add_argument("--partial", type=int, default=600)
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--leases", type=int, default=5)
    parser.add_argument("--daemon-nofile", type=int)
    args = parser.parse_args()
    portd, portctl = (os.path.join(args.bin, name) for name in ("portd", "portctl"))
    for binary in (portd, portctl):
        if not os.access(binary, os.X_OK):
            sys.exit(f"slow_clients.py: {binary} is missing (cargo build --release)")
    crowd_size = args.idle + args.partial + args.slow
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < crowd_size + 100:
        sys.exit(f"slow_clients.py: the open-file hard limit {hard} is below {crowd_size + 100}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    tmp = tempfile.mkdtemp(prefix="portd-bench-slow.", dir="/tmp")
    os.chmod(tmp, 0o700)
    sock_path = os.path.join(tmp, "portd.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTD_", "LISTEN_"))}
    env.update(PORTD_SOCKET=sock_path, PORTD_NO_AUTOSTART="1", XDG_CONFIG_HOME=os.path.join(tmp, "config"))
    log = open(os.path.join(tmp, "portd.log"), "wb")
    nofile = args.daemon_nofile

    def limit():
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    daemon = subprocess.Popen(
        [portd, "--socket", sock_path, "--db", os.path.join(tmp, "state", "portd.db"), "--range", args.range],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, preexec_fn=limit,
    )
    crowd = []
    try:
        if wait_for(10, lambda: health(sock_path) if daemon.poll() is None else False) in (None, False):
            sys.exit("slow_clients.py: portd did not answer /v1/health within 10 s")
        t0 = time.perf_counter()
        crowd = open_crowd(sock_path, args.idle, args.partial, args.slow)
        opened = time.perf_counter() - t0
        queued = wait_for(2, lambda: 0 if listen_queue(sock_path) == 0 else None)
        if queued is None:
            queued = listen_queue(sock_path)
        settled = time.perf_counter() - t0
        print(
            f"daemon open-file limit {nofile or hard}; crowd: {args.idle} idle, {args.partial} partial headers, {args.slow} slow bodies "
            f"opened in {opened * 1000:.0f} ms; listen queue {queued} after {settled * 1000:.0f} ms"
        )
        leases = []
        for i in range(args.leases):
            took, port = timed_lease(portctl, env)
            leases.append({"ms": round(took * 1000, 2), "port": port})
            print(f"lease {i + 1}: {took * 1000:.1f} ms (port {port})")
        closed = closed_by_daemon(crowd)
        worst = max(l["ms"] for l in leases)
        print(
            f"{args.leases} leases beside {crowd_size} held connections: worst {worst:.1f} ms; "
            f"the daemon had closed {closed} of the crowd; target < 100 ms each"
        )
        if args.out:
            with open(args.out, "w") as f:
                json.dump(
                    {
                        "crowd": {"idle": args.idle, "partial": args.partial, "slow": args.slow},
                        "daemon_nofile": nofile or hard,
                        "opened_ms": round(opened * 1000, 1),
                        "listen_queue": queued,
                        "leases": leases,
                        "worst_ms": worst,
                        "closed_by_daemon": closed,
                    },
                    f,
                    indent=2,
                )
    finally:
        for conn in crowd:
            conn.close()
        daemon.kill()
        daemon.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
