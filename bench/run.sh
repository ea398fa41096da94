#!/usr/bin/env bash
# bench/run.sh: every number in docs/BENCHMARKS.md, in one run.
#
#   who       bench/who.sh twice (with 500 idle processes, and BENCH_IDLE=0):
#             `portctl who` vs ss vs lsof, owner death -> orphan terminated.
#   oneshot   `portctl lease --next` as a whole process against a running
#             release daemon, beside portpicker.pick_unused_port() talking to
#             Google's portserver and beside get-port's CLI (bench/oneshot.py:
#             alternating runs, medians).
#   throughput portd-bench, one event-loop thread driving 1, 8 and 64 clients:
#             lease + release over keep-alive connections to portd, beside
#             the portserver protocol against a fresh portserver at the same
#             concurrency, BENCH_ROUNDS rounds; at one client also
#             GET /v1/health, the floor of one exchange. With BENCH_BEFORE,
#             a second daemon from that build is measured the same way in
#             the same rounds, the two alternating which goes first.
#   death     owner SIGKILL -> lease ended (bench/death.py).
#   memory    daemon VmRSS idle after start, and with a 10,000-port range
#             leased to distinct owner processes (bench/owners.py): as many
#             owners as the machine's task limits allow (the pids cgroup here
#             caps everything at 4915 tasks), the rest of the 10,000 leases
#             shared among them, so that the cost per owner and per lease can
#             be told apart and 10,000 distinct owners extrapolated.
#   slowclients five `portctl lease --next` beside 1,200 idle, 600
#             partial-header and 500 slow-body connections held open
#             (bench/slow_clients.py), at the daemon's own open-file limit
#             and at 1,024 (a connection cap below the crowd).
#   profile   perf record of the daemon (and of portctl) where a target is
#             missed (BENCH_PROFILE=auto), always, or never.
#
# Installs what it compares against, in a temp dir that is removed on exit:
# portpicker==1.6.0 (and its psutil) in a python3 venv, get-port-cli with npm;
# hyperfine with apt-get when missing. Builds the release binaries. Every
# daemon and helper it starts runs on a temp socket and database, on
# loopback ports only, and is killed on exit (trap), by pid.
#
# Knobs (environment):
#   BENCH_OUT      results directory (target/bench/run)
#   BENCH_ONLY     sections to run, space-separated (all of the above)
#   BENCH_RUNS     one-shot runs per command (40), BENCH_WARMUP (5)
#   BENCH_SECONDS  seconds per throughput measurement (5), BENCH_ROUNDS (5)
#   BENCH_DEATHS   owner deaths (50)
#   BENCH_OWNERS   leases (and at most owners) for the memory test (10000)
#   BENCH_PROFILE  auto | always | never (auto)
#   BENCH_QUIET_WAIT  seconds to wait, before each measurement, for the
#                  machine to be under 25% busy with other work (60)
#   BENCH_BEFORE   a directory holding another build's release portd (e.g.
#                  the tree before a change, target/release): measured
#                  beside this one in the throughput section
# Port ranges used: 24000-24999 (portd), 26000-26999 (portserver, one-shot),
# 10000-19999 (portserver pool under load; portd in the memory test),
# 25000-25999 (slow clients), 27000-27999 (the BENCH_BEFORE daemon) and
# who.sh's 19400-19419, one section at a time.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/target/bench/run}
ONLY=${BENCH_ONLY:-who oneshot throughput death memory slowclients profile}
RUNS=${BENCH_RUNS:-40}
WARMUP=${BENCH_WARMUP:-5}
SECONDS_PER=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-5}
DEATHS=${BENCH_DEATHS:-50}
OWNERS=${BENCH_OWNERS:-10000}
PROFILE=${BENCH_PROFILE:-auto}
QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
BEFORE=${BENCH_BEFORE:-}

PORTD_RANGE=24000-24999
BEFORE_RANGE=27000-27999
DEATH_PORT=24999
PS_ONESHOT_POOL=26000-26999
PS_LOAD_POOL=10000-19999
PS_LOAD_MAX=9500 # requests per portserver run: fewer than its pool holds
MEM_FIRST=10000

BIN=$ROOT/target/release

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
want() { [[ " $ONLY " == *" $1 "* ]]; }

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d /tmp/portd-bench-run.XXXXXX)
chmod 700 "$TMP"
STARTED=() # every background process this script starts, by pid
cleanup() {
    local status=$?
    local pid
    for pid in "${STARTED[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits for one process this script started and forgets it.
reap() {
    local pid=$1 keep=() p status=0
    wait "$pid" 2>/dev/null || status=$?
    for p in "${STARTED[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    STARTED=("${keep[@]}")
    return "$status"
}
# Stops one process this script started and forgets it.
stop() {
    kill "$1" 2>/dev/null || true
    reap "$1" || true
}

# ---------------------------------------------------------------- tools
need jq npm node curl "$PYTHON"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || {
    echo "bench/run.sh: $PYTHON cannot make a venv (apt-get install python3-venv)" >&2
    exit 1
}
need_package hyperfine
if [[ $PROFILE != never ]] && ! command -v perf >/dev/null; then
    say "perf is missing: no profiles (apt-get install linux-perf)"
    PROFILE=never
fi

mkdir -p "$OUT"
say "building release binaries"
(cd "$ROOT" && cargo build --release --quiet -p portd -p portctl -p portd-bench)

MACHINE="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
MACHINE+=", $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
MACHINE+=", Linux $(uname -r)"
{
    echo "machine: $MACHINE"
    echo "cpu: $(grep -m1 -E 'cpu family' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')/$(grep -m1 -E '^model\s' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') at $(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') MHz"
    echo "portd: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- daemon api client || echo ' + uncommitted changes in daemon/api/client')"
    echo "hyperfine: $(hyperfine --version | cut -d' ' -f2), python: $("$PYTHON" --version | cut -d' ' -f2), node: $(node --version)"
    echo "load at start: $(load)"
} | tee "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- who.sh
if want who; then
    wait_quiet "who.sh"
    say "who.sh, 500 idle processes"
    BENCH_OUT=$OUT/who "$ROOT/bench/who.sh" 2>&1 | tee "$OUT/who.log" >&2
    wait_quiet "who.sh BENCH_IDLE=0"
    say "who.sh, no idle processes"
    BENCH_IDLE=0 BENCH_OUT=$OUT/who-idle0 "$ROOT/bench/who.sh" 2>&1 | tee "$OUT/who-idle0.log" >&2
fi

# ---------------------------------------------------------------- comparators
VENV=$TMP/venv
PORTSERVER=
GETPORT=
install_comparators() {
    [[ -n $PORTSERVER ]] && return
    say "installing portpicker==1.6.0 in a venv and get-port-cli with npm"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check portpicker==1.6.0
    # The package installs the server as a script, not as a module.
    PORTSERVER=$VENV/bin/portserver.py
    [[ -f $PORTSERVER ]] || { echo "bench/run.sh: portpicker installed no portserver.py" >&2; exit 1; }
    mkdir -p "$TMP/npm"
    (cd "$TMP/npm" && npm install --silent --no-audit --no-fund --no-save get-port-cli >/dev/null)
    GETPORT=$TMP/npm/node_modules/.bin/get-port
    [[ -x $GETPORT ]] || { echo "bench/run.sh: npm installed no get-port" >&2; exit 1; }
    {
        echo "portpicker $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("portpicker"), "psutil", m.version("psutil"))'), python $("$VENV/bin/python" --version | cut -d' ' -f2)"
        echo "get-port-cli $(jq -r .version "$TMP/npm/node_modules/get-port-cli/package.json"), get-port $(jq -r .version "$TMP/npm/node_modules/get-port/package.json"), node $(node --version)"
    } | tee -a "$OUT/machine.txt" >&2
}

# Starts Google's portserver on an abstract socket; sets PS_PID.
start_portserver() {
    local address=$1 pool=$2 log=$3
    "$VENV/bin/python" "$PORTSERVER" --portserver_static_pool "$pool" \
        --portserver_address "$address" >"$log" 2>&1 &
    PS_PID=$!
    STARTED+=("$PS_PID")
    for _ in $(seq 200); do
        grep -q 'Serving on' "$log" && return 0
        sleep 0.02
    done
    cat "$log" >&2
    echo "bench/run.sh: portserver did not start" >&2
    exit 1
}

# ---------------------------------------------------------------- portd
DAEMON=
export PORTD_NO_AUTOSTART=1
unset PORTD_LEASE
# Starts a release portd on its own socket and database; sets DAEMON.
start_portd() {
    local name=$1 range=$2 bin=${3:-$BIN}
    mkdir -m 700 "$TMP/$name"
    "$bin/portd" --socket "$TMP/$name/portd.sock" --db "$TMP/$name/portd.db" \
        --range "$range" >"$TMP/$name/portd.log" 2>&1 &
    DAEMON=$!
    STARTED+=("$DAEMON")
    for _ in $(seq 200); do
        curl -sf --unix-socket "$TMP/$name/portd.sock" http://portd/v1/health >/dev/null 2>&1 && return 0
        sleep 0.02
    done
    cat "$TMP/$name/portd.log" >&2
    echo "bench/run.sh: portd did not start" >&2
    exit 1
}
active_leases() { curl -s --unix-socket "$1" http://portd/v1/leases | jq '.leases | length'; }

MAIN_SOCKET=
if want oneshot || want throughput || want death || want profile; then
    start_portd main "$PORTD_RANGE"
    MAIN_DAEMON=$DAEMON
    MAIN_SOCKET=$TMP/main/portd.sock
    export PORTD_SOCKET=$MAIN_SOCKET
fi

# ---------------------------------------------------------------- one-shot
MISSED=()
if want oneshot; then
    install_comparators
    start_portserver @portd-bench-oneshot-$$ "$PS_ONESHOT_POOL" "$TMP/portserver-oneshot.log"
    export PORTSERVER_ADDRESS=@portd-bench-oneshot-$$
    # The client must really talk to the server: portpicker falls back to
    # picking a port itself, silently, when it cannot reach one.
    port=$("$VENV/bin/python" -c 'import portpicker; print(portpicker.pick_unused_port())')
    [[ $port -ge ${PS_ONESHOT_POOL%-*} && $port -le ${PS_ONESHOT_POOL#*-} ]] || {
        echo "bench/run.sh: portpicker answered $port, outside the portserver's pool" >&2
        exit 1
    }
    before=$(grep -c 'Request on behalf of pid' "$TMP/portserver-oneshot.log")
    (($(active_leases "$MAIN_SOCKET") == 0)) || { echo "bench/run.sh: the new daemon has leases" >&2; exit 1; }

    wait_quiet "one-shot"
    say "one-shot: $RUNS alternating runs + $WARMUP warm-up rounds each"
    "$PYTHON" "$ROOT/bench/oneshot.py" --runs "$RUNS" --warmup "$WARMUP" \
        --out "$OUT/oneshot.json" --socket "$MAIN_SOCKET" --ref "portctl lease --next" \
        --cmd "true" "/bin/true" \
        --cmd "sh -c true" "sh -c true" \
        --cmd "portctl --version" "$BIN/portctl --version" \
        --cmd-release "portctl lease --next" "$BIN/portctl lease --next --range $PORTD_RANGE" \
        --cmd "sh -c 'portctl lease --next'" "sh -c '$BIN/portctl lease --next --range $PORTD_RANGE >/dev/null'" \
        --cmd "portpicker + portserver" "$VENV/bin/python -c 'import portpicker; portpicker.pick_unused_port()'" \
        --cmd "get-port" "$GETPORT --host=127.0.0.1" | tee "$OUT/oneshot.md"
    echo "one-shot: load after $(load)" >>"$OUT/load.txt"

    # Every portpicker run asked the server; every `sh -c portctl` run had
    # its own owner (the sh), whose lease ended with it.
    after=$(grep -c 'Request on behalf of pid' "$TMP/portserver-oneshot.log")
    total=$((RUNS + WARMUP))
    [[ $((after - before)) -eq $total ]] || {
        echo "bench/run.sh: the portserver saw $((after - before)) requests, not $total" >&2
        exit 1
    }
    curl -s --unix-socket "$MAIN_SOCKET" http://portd/v1/events >"$TMP/events.json"
    owners=$(jq '[.events[] | select(.kind == "granted") | .pid] | unique | length' "$TMP/events.json")
    grants=$(jq '[.events[] | select(.kind == "granted")] | length' "$TMP/events.json")
    [[ $grants -eq $((2 * total)) && $owners -eq $((total + 1)) ]] || {
        echo "bench/run.sh: $grants grants to $owners owners, expected $((2 * total)) to $((total + 1))" >&2
        exit 1
    }
    sleep 0.2
    (($(active_leases "$MAIN_SOCKET") == 0)) || { echo "bench/run.sh: leases left over" >&2; exit 1; }
    echo "checked: portserver answered all $total portpicker runs; $grants portctl grants to $owners owners; no lease left" >&2
    stop "$PS_PID"
    unset PORTSERVER_ADDRESS
    # The daemon's share: the same request on a fresh connection from Python.
    "$PYTHON" "$ROOT/bench/rawlease.py" "$MAIN_SOCKET" "$PORTD_RANGE" "$RUNS" | tee "$OUT/rawlease.json"

    read -r ratio ratio_sh portctl_ms < <(jq -r '
        [.results[] | {(.name): .median_ms}] | add
        | [(."portpicker + portserver" / ."portctl lease --next"),
           (."portpicker + portserver" / ."sh -c '"'"'portctl lease --next'"'"'"),
           ."portctl lease --next"] | @tsv' "$OUT/oneshot.json")
    printf 'one-shot: portpicker+portserver / portctl = %.1fx (with sh: %.1fx), portctl median %.2f ms; targets 10x and 2 ms\n' \
        "$ratio" "$ratio_sh" "$portctl_ms" | tee -a "$OUT/summary.txt" >&2
    awk -v r="$ratio" -v ms="$portctl_ms" 'BEGIN { exit !(r < 10 || ms > 2) }' && MISSED+=(oneshot)
fi

# ---------------------------------------------------------------- throughput
if want throughput; then
    install_comparators
    : >"$OUT/throughput.jsonl"
    # Appends portd-bench's result ($TMP/r.json) with the server's CPU.
    record() {
        local tool=$1 round=$2 l=$3 ticks=$4
        jq -c --arg tool "$tool" --arg load "$l" --argjson round "$round" --argjson cpu "$ticks" \
            --argjson hz "$(getconf CLK_TCK)" \
            '{tool: $tool, round: $round, load: $load} + . + {server_cpu: ($cpu / $hz / .seconds)}' \
            "$TMP/r.json" | tee -a "$OUT/throughput.jsonl" >&2
    }
    # Measures portd-bench MODE against the daemon PID on SOCKET (RANGE for
    # leases) and records it as TOOL.
    measure() {
        local tool=$1 mode=$2 pid=$3 socket=$4 clients=$5 range=${6:-} l t0 t1
        l=$(load)
        t0=$(cpu_ticks "$pid")
        "$BIN/portd-bench" "$mode" "$socket" "$clients" "$SECONDS_PER" ${range:+"$range"} >"$TMP/r.json"
        t1=$(cpu_ticks "$pid")
        record "$tool" "$round" "$l" $((t1 - t0))
    }
    # One daemon's turn at CLIENTS: at one client, health beside lease +
    # release on the same kind of connection.
    measure_portd() {
        local which=$1 clients=$2 suffix= pid=$MAIN_DAEMON socket=$MAIN_SOCKET range=$PORTD_RANGE
        if [[ $which == before ]]; then
            suffix=-before pid=$BEFORE_DAEMON socket=$BEFORE_SOCKET range=$BEFORE_RANGE
        fi
        ((clients == 1)) && measure "health$suffix" health "$pid" "$socket" 1
        measure "portd$suffix" portd "$pid" "$socket" "$clients" "$range"
    }
    daemons=(after)
    if [[ -n $BEFORE ]]; then
        start_portd before "$BEFORE_RANGE" "$BEFORE"
        BEFORE_DAEMON=$DAEMON
        BEFORE_SOCKET=$TMP/before/portd.sock
        daemons=(after before)
        echo "before: $BEFORE/portd ($("$BEFORE/portd" --version 2>/dev/null || echo "no --version"))" | tee -a "$OUT/machine.txt" >&2
    fi
    say "throughput: $ROUNDS rounds of 1, 8, 64 clients, $SECONDS_PER s each, ${daemons[*]} and the portserver alternating"
    for round in $(seq "$ROUNDS"); do
        wait_quiet "throughput round $round"
        # The daemon measured first in a round ran faster here: alternate.
        order=("${daemons[@]}")
        if ((round % 2 == 0 && ${#daemons[@]} == 2)); then order=(before after); fi
        for clients in 1 8 64; do
            for which in "${order[@]}"; do
                measure_portd "$which" "$clients"
            done

            l=$(load)
            start_portserver @portd-bench-load-$$ "$PS_LOAD_POOL" "$TMP/portserver-load.log"
            t0=$(cpu_ticks "$PS_PID")
            "$BIN/portd-bench" portserver @portd-bench-load-$$ "$clients" "$SECONDS_PER" "$PS_LOAD_MAX" >"$TMP/r.json"
            t1=$(cpu_ticks "$PS_PID")
            stop "$PS_PID"
            record portserver "$round" "$l" $((t1 - t0))
        done
    done
    if [[ -n $BEFORE ]]; then
        stop "$BEFORE_DAEMON"
    fi
    rss_now() { awk '/^(VmRSS|RssAnon|RssFile|Threads)/ { printf "%s %s ", $1, $2 }' "/proc/$MAIN_DAEMON/status"; }
    echo "portd after the throughput runs: $(rss_now)(KiB)" | tee -a "$OUT/summary.txt" >&2
    sleep 10
    echo "portd 10 s later, idle: $(rss_now)(KiB)" | tee -a "$OUT/summary.txt" >&2
    "$PYTHON" "$ROOT/bench/throughput_table.py" "$OUT/throughput.jsonl" "$OUT/throughput.json" | tee "$OUT/throughput.md"
    ratio64=$(jq -r '.ratios["64"]' "$OUT/throughput.json")
    rate64=$(jq -r '.summary[] | select(.tool == "portd" and .clients == 64) | .requests_per_sec' "$OUT/throughput.json")
    printf 'throughput, 64 clients: portd %.0f requests/s = %.1fx portserver; target 10x (DESIGN: >= 31,000/s)\n' \
        "$rate64" "$ratio64" | tee -a "$OUT/summary.txt" >&2
    awk -v r="$ratio64" -v n="$rate64" 'BEGIN { exit !(r < 10 || n < 31000) }' && MISSED+=(throughput)
    jq -r '.one_client.after // empty
        | "one client: lease + release p50 \(.lease_p50_us | round) us, health p50 \(.health_p50_us | round) us: \(.ratio_of_medians * 100 | round / 100)x; target 2x (issue 12)"' \
        "$OUT/throughput.json" | tee -a "$OUT/summary.txt" >&2
fi

# ---------------------------------------------------------------- death
if want death; then
    wait_quiet "death"
    say "owner death -> lease ended, $DEATHS runs on port $DEATH_PORT"
    "$PYTHON" "$ROOT/bench/death.py" "$MAIN_SOCKET" "$DEATH_PORT" "$DEATHS" "$OUT/death.json" |
        tee "$OUT/death.txt" >&2
    jq -r '"owner death -> lease ended: poll median \(.poll_ms.median) ms, p90 \(.poll_ms.p90), max \(.poll_ms.max); target < 50 ms"' \
        "$OUT/death.json" | tee -a "$OUT/summary.txt" >&2
    awk -v m="$(jq .poll_ms.max "$OUT/death.json")" 'BEGIN { exit !(m >= 50) }' && MISSED+=(death)
fi

# ---------------------------------------------------------------- profile
profile_throughput() {
    say "profiling portd under 64 clients"
    "$BIN/portd-bench" portd "$MAIN_SOCKET" 64 7 "$PORTD_RANGE" >"$OUT/profile-bench.json" &
    local bench=$!
    STARTED+=("$bench")
    sleep 1
    perf record -q -F 499 --call-graph dwarf,16384 -p "$MAIN_DAEMON" -o "$TMP/perf-throughput.data" -- sleep 4 2>/dev/null
    reap "$bench"
    {
        echo "# perf record -F 499 --call-graph dwarf -p portd, 4 s of 64 portd-bench clients"
        echo "# $(cat "$OUT/profile-bench.json")"
        echo "## by thread"
        perf report -i "$TMP/perf-throughput.data" --stdio --no-children --sort comm -g none 2>/dev/null | grep '%'
        echo "## by library"
        perf report -i "$TMP/perf-throughput.data" --stdio --no-children --sort dso -g none 2>/dev/null | grep '%'
        echo "## inclusive (children), functions over 2%"
        perf report -i "$TMP/perf-throughput.data" --stdio --children --sort sym -g none --percent-limit 2 2>/dev/null | grep '%'
        echo "## selected inclusive entries over 0.5%: portd's own code, SQLite, syscalls"
        perf report -i "$TMP/perf-throughput.data" --stdio --children --sort sym -g none --percent-limit 0.5 2>/dev/null |
            grep -E 'portd::|sqlite3_step|sqlite3RunParser|sqlite3_prepare|__libc_recv|writev|__socket|__close|__bind|futex|epoll_wait|_int_malloc|pwrite|fsync|hyper::proto::h1::role' || true
    } >"$OUT/perf-throughput.txt"
}
profile_oneshot() {
    say "profiling 200 sequential portctl lease --next (client and daemon)"
    perf record -q -F 999 --call-graph dwarf,16384 -p "$MAIN_DAEMON" -o "$TMP/perf-oneshot-daemon.data" &
    local rec=$!
    STARTED+=("$rec")
    sleep 0.5
    perf record -q -F 2000 -g -o "$TMP/perf-oneshot-client.data" -- \
        bash -c "for i in \$(seq 200); do '$BIN/portctl' lease --next --range $PORTD_RANGE >/dev/null; done" 2>/dev/null
    sleep 1 # the loop's shell owned 200 leases: its exit ends them
    kill -INT "$rec"
    reap "$rec" || true
    {
        echo "# perf record -F 2000 -g of a bash loop of 200 portctl lease --next (children included)"
        echo "## samples by process and library (portctl's CPU, its exec included)"
        perf report -i "$TMP/perf-oneshot-client.data" --stdio --no-children --sort comm,dso -F overhead,sample,comm,dso -g none 2>/dev/null | grep '%'
        echo "## portctl's own code and libraries, self time over 0.3%"
        perf report -i "$TMP/perf-oneshot-client.data" --stdio --no-children --comm portctl --sort dso,sym -g none --percent-limit 0.3 2>/dev/null | grep '%' | grep -v '\[k\]'
        echo "## the daemon meanwhile (perf -F 999 --call-graph dwarf, until 1 s after the loop's shell, the owner of the 200 leases, has exited): by thread"
        perf report -i "$TMP/perf-oneshot-daemon.data" --stdio --no-children --sort comm -F overhead,sample,comm -g none 2>/dev/null | grep '%'
        echo "## the daemon: selected inclusive entries over 1%"
        perf report -i "$TMP/perf-oneshot-daemon.data" --stdio --children --sort sym -g none --percent-limit 1 2>/dev/null |
            grep -E 'portd::|sqlite3_step|sqlite3_prepare|read_to_string|__libc_recv|writev|accept|futex|epoll_wait|netlink|_int_malloc|flume::|hyper::proto::h1::role' || true
    } >"$OUT/perf-oneshot.txt"
}
if want profile && [[ $PROFILE != never ]]; then
    if [[ $PROFILE == always || " ${MISSED[*]} " == *" throughput "* ]]; then profile_throughput; fi
    if [[ $PROFILE == always || " ${MISSED[*]} " == *" oneshot "* ]]; then profile_oneshot; fi
fi
if [[ -n ${MAIN_DAEMON:-} ]]; then
    stop "$MAIN_DAEMON"
fi

# ---------------------------------------------------------------- memory
# Room for more tasks (processes and threads): the smallest of RLIMIT_NPROC,
# pid_max and every pids.max on the way up this process's pids cgroup, less
# what is in use. On this workplace's machines the cgroup allows 4915 tasks
# in all, so 10,000 owner processes cannot exist at once.
task_room() {
    local room used dir max cur rel
    used=$(ps -eL --no-headers | wc -l)
    room=$(($(cat /proc/sys/kernel/pid_max) - used))
    if [[ $(ulimit -u) != unlimited ]] && (($(ulimit -u) - used < room)); then room=$(($(ulimit -u) - used)); fi
    rel=$(awk -F: '$2 == "pids" { print $3 }' /proc/self/cgroup)
    if [[ -n $rel ]]; then dir=/sys/fs/cgroup/pids$rel; else dir=/sys/fs/cgroup$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup); fi
    while [[ $dir == /sys/fs/cgroup* && -d $dir ]]; do
        if [[ -r $dir/pids.max && -r $dir/pids.current ]]; then
            max=$(cat "$dir/pids.max")
            cur=$(cat "$dir/pids.current")
            if [[ $max != max ]] && ((max - cur < room)); then room=$((max - cur)); fi
        fi
        [[ $dir == /sys/fs/cgroup || $dir == /sys/fs/cgroup/pids ]] && break
        dir=$(dirname "$dir")
    done
    echo "$room"
}
if want memory; then
    wait_quiet "memory"
    say "memory: idle, then $OWNERS leases"
    ulimit -n "$(ulimit -Hn)"
    ((OWNERS + 100 <= $(ulimit -Hn))) || { echo "bench/run.sh: ulimit -Hn is below $OWNERS" >&2; exit 1; }
    # Leave 1000 tasks for everyone else on the machine.
    room=$(($(task_room) - 1000))
    owners=$OWNERS
    if ((room < owners)); then
        owners=$((room / 100 * 100))
        say "room for $room more processes only: $owners distinct owners, then the rest of the $OWNERS leases shared"
    fi
    ((owners >= 100)) || { echo "bench/run.sh: no room for owner processes" >&2; exit 1; }
    start_portd memory "$MEM_FIRST-$((MEM_FIRST + OWNERS - 1))"
    sleep 2
    "$PYTHON" "$ROOT/bench/owners.py" "$TMP/memory/portd.sock" "$DAEMON" "$MEM_FIRST" "$owners" "$OWNERS" \
        "$OUT/memory.json" >&2
    stop "$DAEMON"
    jq -r '"memory: idle \(.idle.VmRSS) KiB; \(.owners) leases to distinct owners \(.distinct.VmRSS) KiB"
        + (if .more then "; \(.leases) leases to those owners \(.more.VmRSS) KiB" else "" end)
        + "; after they died \(.after.VmRSS) KiB, 13 s later \(.after_idle.VmRSS) KiB; target idle < 15360 KiB"' \
        "$OUT/memory.json" | tee -a "$OUT/summary.txt" >&2
    jq -r 'if .more then
        ((.distinct.VmRSS - .idle.VmRSS) / .owners) as $first
        | ((.more.VmRSS - .distinct.VmRSS) / (.leases - .owners)) as $lease
        | "memory per owner with its lease \($first * 100 | round / 100) KiB, per extra lease \($lease * 100 | round / 100) KiB: \(.leases) distinct owners would be about \(.idle.VmRSS + .leases * $first | round) KiB"
        else empty end' "$OUT/memory.json" | tee -a "$OUT/summary.txt" >&2
    (($(jq .idle.VmRSS "$OUT/memory.json") < 15360)) || MISSED+=(memory)
fi

# ---------------------------------------------------------------- slow clients
if want slowclients; then
    say "slow clients: five leases beside 2,300 idle and slow connections"
    for nofile in own 1024; do
        wait_quiet "slow clients ($nofile open-file limit)"
        limit=()
        [[ $nofile == own ]] || limit=(--daemon-nofile "$nofile")
        "$PYTHON" "$ROOT/bench/slow_clients.py" --bin "$BIN" --range 25000-25999 "${limit[@]}" \
            --out "$OUT/slow-clients-$nofile.json" | tee -a "$OUT/slow-clients.txt" >&2
        jq -r '"slow clients: 5 leases beside \(.crowd.idle + .crowd.partial + .crowd.slow) held connections, open-file limit \(.daemon_nofile): \([.leases[].ms] | map(tostring + " ms") | join(", ")); target < 100 ms each"' \
            "$OUT/slow-clients-$nofile.json" | tee -a "$OUT/summary.txt" >&2
        awk -v w="$(jq .worst_ms "$OUT/slow-clients-$nofile.json")" 'BEGIN { exit !(w >= 100) }' && MISSED+=(slowclients)
    done
fi

echo "load at end: $(load)" | tee -a "$OUT/machine.txt" >&2
echo "targets missed: ${MISSED[*]:-none}" | tee -a "$OUT/summary.txt" >&2
say "results in $OUT"
