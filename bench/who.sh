#!/usr/bin/env bash
# bench/who.sh: two measurements for docs/BENCHMARKS.md.
#
# 1. "Who holds a port": `portctl who PORT` against `ss -Hltnp 'sport = :PORT'`
#    and `lsof -ti :PORT`, each as a whole process (hyperfine -N, no shell),
#    on a machine with BENCH_IDLE extra idle processes and one listener that
#    holds a lease. Results: $BENCH_OUT/who.{md,json}.
# 2. "Owner death to orphan terminated": BENCH_DEATHS times, a fresh owner
#    leases a port, a tagged Python listener (the orphan-to-be) starts, the
#    owner gets SIGKILL, and we time, from just before the kill(2):
#      - lease ended:   the `owner_died` event's timestamp (daemon clock, ms)
#      - reaped event:  the `reaped` event's timestamp (written after the exit)
#      - orphan gone:   when a pidfd on the orphan, polled by the measuring
#                       process, reports its exit (no polling loop)
#    Results: $BENCH_OUT/death.json and a summary on stdout.
#
# Needs: cargo, hyperfine (installed with apt-get when missing and root),
# ss, lsof, python3 (3.9+, for os.pidfd_open), jq. Rerunnable: everything
# lives in a temp dir with its own daemon, socket, database and port range,
# and every process the script starts is killed on exit.
#
# Knobs (environment): BENCH_RANGE (19400-19419), BENCH_IDLE (500),
# BENCH_RUNS (50), BENCH_DEATHS (20), BENCH_OUT (target/bench/who).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RANGE=${BENCH_RANGE:-19400-19419}
IDLE=${BENCH_IDLE:-500}
RUNS=${BENCH_RUNS:-50}
DEATHS=${BENCH_DEATHS:-20}
OUT=${BENCH_OUT:-$ROOT/target/bench/who}
FIRST=${RANGE%-*}
WHO_PORT=$FIRST
DEATH_PORT=$((FIRST + 1))
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

need ss lsof jq "$PYTHON"
need_package hyperfine

say "building release binaries"
(cd "$ROOT" && cargo build --release --quiet -p portd -p portctl)
BIN=$ROOT/target/release
mkdir -p "$OUT"

TMP=$(mktemp -d /tmp/portd-bench-who.XXXXXX)
chmod 700 "$TMP"
STARTED=()
DAEMON=
cleanup() {
    local status=$?
    # Only what this script started, by pid.
    if ((${#STARTED[@]})); then
        kill -9 "${STARTED[@]}" 2>/dev/null || true
    fi
    if [[ -n $DAEMON ]]; then
        kill "$DAEMON" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

unset PORTD_LEASE
export PORTD_SOCKET=$TMP/portd.sock PORTD_NO_AUTOSTART=1

say "starting portd on $PORTD_SOCKET, range $RANGE"
"$BIN/portd" --socket "$PORTD_SOCKET" --db "$TMP/portd.db" --range "$RANGE" \
    >"$TMP/portd.log" 2>&1 &
DAEMON=$!
for _ in $(seq 200); do
    "$BIN/portctl" status >/dev/null 2>&1 && break
    sleep 0.05
done
"$BIN/portctl" status >/dev/null || { cat "$TMP/portd.log" >&2; exit 1; }

cat >"$TMP/listener.py" <<'EOF'
import os, socket, sys
port, ready = int(sys.argv[1]), sys.argv[2]
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen(16)
open(ready + ".tmp", "w").close()
os.rename(ready + ".tmp", ready)
while True:
    sock.accept()
EOF

say "starting $IDLE idle processes"
for _ in $(seq "$IDLE"); do
    sleep 86400 &
    STARTED+=($!)
done

wait_file() {
    for _ in $(seq 500); do [[ -e $1 ]] && return 0; sleep 0.01; done
    echo "bench/who.sh: $1 never appeared" >&2
    return 1
}

# One leased, tagged listener for `who` to find.
sleep 86400 &
OWNER=$!
STARTED+=("$OWNER")
LEASE_ID=$("$BIN/portctl" lease "$WHO_PORT" --owner "$OWNER" --json | jq -r .id)
PORTD_LEASE=$LEASE_ID "$PYTHON" "$TMP/listener.py" "$WHO_PORT" "$TMP/who.ready" &
LISTENER=$!
STARTED+=("$LISTENER")
wait_file "$TMP/who.ready"

# Each tool must find the listener before it is timed.
[[ $("$BIN/portctl" who "$WHO_PORT") == *"pid $LISTENER "* ]] || { echo "portctl who misses it" >&2; exit 1; }
[[ $(ss -Hltnp "sport = :$WHO_PORT") == *"pid=$LISTENER,"* ]] || { echo "ss misses it" >&2; exit 1; }
[[ $(lsof -ti ":$WHO_PORT") == "$LISTENER" ]] || { echo "lsof misses it" >&2; exit 1; }

PROCS=$(find /proc -maxdepth 1 -name '[0-9]*' | wc -l)
say "timing who/ss/lsof on port $WHO_PORT with $PROCS processes on the machine"
hyperfine -N --warmup 5 --runs "$RUNS" \
    --export-markdown "$OUT/who.md" --export-json "$OUT/who.json" \
    -n "portctl who $WHO_PORT" "$BIN/portctl who $WHO_PORT" \
    -n "ss -Hltnp 'sport = :$WHO_PORT'" "ss -Hltnp 'sport = :$WHO_PORT'" \
    -n "lsof -ti :$WHO_PORT" "lsof -ti :$WHO_PORT"

# hyperfine counts portctl's own CPU time only; the work is in the daemon.
before=$(cpu_ticks "$DAEMON")
start=$EPOCHREALTIME
for _ in $(seq "$RUNS"); do "$BIN/portctl" who "$WHO_PORT" >/dev/null; done
awk -v runs="$RUNS" -v start="$start" -v end="$EPOCHREALTIME" -v before="$before" \
    -v after="$(cpu_ticks "$DAEMON")" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        printf "portctl who, %d sequential runs: %.1f ms wall each, daemon CPU %.1f ms each\n",
            runs, (end - start) * 1000 / runs, (after - before) * 1000 / hz / runs
    }' | tee "$OUT/who-daemon-cpu.txt"

say "owner death -> lease ended -> orphan terminated, $DEATHS runs on port $DEATH_PORT"
PYTHONPATH="$ROOT/bench${PYTHONPATH:+:$PYTHONPATH}" \
    "$PYTHON" - "$BIN/portctl" "$DEATH_PORT" "$DEATHS" "$TMP" "$OUT/death.json" <<'EOF'
import json, os, select, signal, statistics, subprocess, sys, time
from portd_http import Unix, at, call

portctl, port, runs, tmp, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
sock_path = os.environ["PORTD_SOCKET"]

def events():
    conn = Unix(sock_path)
    _, body = call(conn, "GET", "/v1/events")
    conn.close()
    return body["events"]

def wait_file(path):
    for _ in range(1000):
        if os.path.exists(path):
            return
        time.sleep(0.005)
    raise SystemExit(f"{path} never appeared")

rows = []
for run in range(runs):
    owner = subprocess.Popen(["sleep", "86400"])
    server = None
    try:
        lease = json.loads(subprocess.check_output(
            [portctl, "lease", str(port), "--owner", str(owner.pid), "--json"]))
        ready = f"{tmp}/death.{run}.ready"
        server = subprocess.Popen([sys.executable, f"{tmp}/listener.py", str(port), ready],
                                  env=dict(os.environ, PORTD_LEASE=lease["id"]))
        wait_file(ready)
        pidfd = os.pidfd_open(server.pid)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        t0 = time.time()
        os.kill(owner.pid, signal.SIGKILL)
        if not poller.poll(30_000):
            raise SystemExit(f"run {run}: the orphan still runs 30 s after its owner died")
        t_gone = time.time()
        os.close(pidfd)
        server.wait()
        owner.wait()
        for _ in range(200):
            evs = events()
            died = [e for e in evs if e["kind"] == "owner_died" and e["lease_id"] == lease["id"]]
            reaped = [e for e in evs if e["kind"] == "reaped" and e["pid"] == server.pid]
            if died and reaped:
                break
            time.sleep(0.01)
        else:
            raise SystemExit(f"run {run}: no owner_died/reaped events")
        rows.append({
            "lease_ended_ms": (at(died[0]) - t0) * 1000,
            "reaped_event_ms": (at(reaped[0]) - t0) * 1000,
            "orphan_gone_ms": (t_gone - t0) * 1000,
            "signal": reaped[0]["detail"].split()[0],
        })
    finally:
        for p in (owner, server):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()

def summary(key):
    values = sorted(r[key] for r in rows)
    return {
        "median": statistics.median(values),
        "min": values[0],
        "p90": values[int(0.9 * (len(values) - 1))],
        "max": values[-1],
    }

result = {key: summary(key) for key in ("lease_ended_ms", "reaped_event_ms", "orphan_gone_ms")}
result["signals"] = sorted({r["signal"] for r in rows})
result["runs"] = rows
with open(out, "w") as f:
    json.dump(result, f, indent=2)
print(f"{'':18} {'median':>8} {'min':>8} {'p90':>8} {'max':>8}   (ms after kill -9 of the owner, {len(rows)} runs)")
for key in ("lease_ended_ms", "reaped_event_ms", "orphan_gone_ms"):
    s = result[key]
    print(f"{key:18} {s['median']:8.1f} {s['min']:8.1f} {s['p90']:8.1f} {s['max']:8.1f}")
print("orphans ended by", ", ".join(result["signals"]))
EOF

say "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
say "results in $OUT"
