"""What the bench scripts share to talk to portd: keep-alive HTTP/1.1 over
its Unix socket, an owner's start time as the API takes it, and the time
of an event.

The scripts import it from their own directory, which Python puts first on
sys.path; who.sh's inline script gets it through PYTHONPATH.
"""

import datetime
import http.client
import json
import socket


class Unix(http.client.HTTPConnection):
    """A keep-alive connection to the daemon's socket at `path`."""

    def __init__(self, path):
        super().__init__("portd")
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.socket_path)


def call(conn, method, path, body=None):
    """One request, `body` sent as JSON; returns (status, the answer's JSON or None)."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    return answer.status, json.loads(data) if data else None


def boot_time():
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return int(line.split()[1])
    raise SystemExit("no btime in /proc/stat")


def start_time(pid, btime):
    """PID's start time in Unix seconds, read from /proc as portctl's --owner does."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return btime + int(fields[19]) / 100  # field 22; USER_HZ is 100 on Linux


def at(event):
    """An event's `at` (RFC 3339, UTC) in Unix seconds."""
    return datetime.datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()
