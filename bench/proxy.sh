#!/usr/bin/env bash
# bench/proxy.sh: portd's .localhost proxy under load, beside the same
# nginx reached directly and through portless's proxy (issue 13's targets).
#
#   For each round and each of 1 and 64 keep-alive connections, wrk runs
#   BENCH_SECONDS against each of:
#     direct    nginx on 127.0.0.1 serving one 612-byte file
#     portd     the same nginx through portd's proxy (Host: web.app.localhost)
#     portless  the same nginx through portless's proxy, `--no-tls` (Host: web.localhost)
#   in an order that turns each round, after waiting for the machine to be
#   quiet. Reported: requests/s and wrk's p50 and p99 latency, medians over
#   the rounds, and the targets: at 64 connections portd at least 5x
#   portless's throughput and at least half of direct; at one connection
#   portd's p50 at most 100 us above direct's. Also: portd's CPU time per
#   proxied request (portd-cpu.txt), and the ratios within each round.
#
# Installs what it compares against, in a temp dir removed on exit:
# portless (npm, $PORTLESS_VERSION), with its state in the temp dir and
# /etc/hosts left alone (PORTLESS_SYNC_HOSTS=0); wrk with apt-get when
# missing. Builds the release binaries. Every process it starts is killed
# on exit, by pid.
#
# Knobs (environment):
#   BENCH_OUT      results directory (target/bench/proxy)
#   BENCH_SECONDS  seconds per measurement (10), BENCH_ROUNDS (3)
#   BENCH_QUIET_WAIT  seconds to wait, before each measurement, for the
#                  machine to be under 25% busy with other work (60)
# Ports: nginx 23400 (portd's lease range 23400-23418), portd's proxy 23419,
# portless 23420.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/target/bench/proxy}
SECONDS_PER=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
PORTLESS_VERSION=0.15.6
NGINX_PORT=23400
PORTD_RANGE=23400-23418
PROXY_PORT=23419
PORTLESS_PORT=23420
BIN=$ROOT/target/release

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

TMP=$(mktemp -d /tmp/portd-bench-proxy.XXXXXX)
chmod 700 "$TMP"
STARTED=()
cleanup() {
    local status=$? pid
    for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${STARTED[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until `curl` with Host $2 on $1 answers the 612-byte file.
serves() {
    local url=$1 host=$2 i
    for i in $(seq 100); do
        [[ $(curl -s -H "Host: $host" "$url" | wc -c) == 612 ]] && return 0
        sleep 0.1
    done
    echo "bench/proxy.sh: $url (Host: $host) does not serve the file" >&2
    exit 1
}

# ---------------------------------------------------------------- tools
need jq npm node curl nginx
need_package wrk
mkdir -p "$OUT"
: >"$OUT/load.txt"
say "building release binaries"
(cd "$ROOT" && cargo build --release --quiet -p portd -p portctl)
say "installing portless@$PORTLESS_VERSION with npm"
mkdir -p "$TMP/npm"
(cd "$TMP/npm" && npm install --silent --no-audit --no-fund --no-save "portless@$PORTLESS_VERSION" >/dev/null)
PORTLESS=$TMP/npm/node_modules/portless/dist/cli.js
[[ -f $PORTLESS ]] || { echo "bench/proxy.sh: npm installed no portless" >&2; exit 1; }
{
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), Linux $(uname -r)"
    echo "portd: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- daemon api || echo ' + uncommitted changes')"
    echo "nginx: $(nginx -v 2>&1 | cut -d/ -f2), wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f2), portless: $(jq -r .version "$TMP/npm/node_modules/portless/package.json"), node: $(node --version)"
    echo "load at start: $(load)"
} | tee "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- servers
# nginx: one small file, keep-alive without limit, no access log.
mkdir -p "$TMP/www" "$TMP/nginx"
head -c 612 /dev/zero | tr '\0' 'x' >"$TMP/www/index.html"
cat >"$TMP/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
user $(id -un);
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $TMP/nginx;
    proxy_temp_path $TMP/nginx;
    fastcgi_temp_path $TMP/nginx;
    uwsgi_temp_path $TMP/nginx;
    scgi_temp_path $TMP/nginx;
    server { listen 127.0.0.1:$NGINX_PORT; root $TMP/www; }
}
CONF

# portd, with nginx's port leased as "web" in project "app" (label "app").
mkdir -p "$TMP/run" "$TMP/app"
chmod 700 "$TMP/run"
"$BIN/portd" --socket "$TMP/run/portd.sock" --db "$TMP/state/portd.db" \
    --range "$PORTD_RANGE" --proxy-port "$PROXY_PORT" >"$TMP/portd.log" 2>&1 &
PORTD=$!
STARTED+=("$PORTD")
sleep 100000 &
OWNER=$!
STARTED+=("$OWNER")
for _ in $(seq 100); do
    PORTD_SOCKET=$TMP/run/portd.sock PORTD_NO_AUTOSTART=1 "$BIN/portctl" status >/dev/null 2>&1 && break
    sleep 0.05
done
PORTD_SOCKET=$TMP/run/portd.sock PORTD_NO_AUTOSTART=1 "$BIN/portctl" lease "$NGINX_PORT" \
    --name web --project "$TMP/app" --owner "$OWNER" >/dev/null
nginx -c "$TMP/nginx/nginx.conf" &
STARTED+=($!)

# portless, in the foreground, with an alias to nginx.
export HOME=$TMP/home PORTLESS_STATE_DIR=$TMP/portless PORTLESS_SYNC_HOSTS=0
mkdir -p "$HOME"
node "$PORTLESS" proxy start --no-tls -p "$PORTLESS_PORT" --foreground >"$TMP/portless.log" 2>&1 &
STARTED+=($!)
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORTLESS_PORT/" && break
    sleep 0.1
done
node "$PORTLESS" alias web "$NGINX_PORT" >/dev/null

declare -A URL=(
    [direct]=http://127.0.0.1:$NGINX_PORT/
    [portd]=http://127.0.0.1:$PROXY_PORT/
    [portless]=http://127.0.0.1:$PORTLESS_PORT/
)
declare -A HOST=(
    [direct]=127.0.0.1:$NGINX_PORT
    [portd]=web.app.localhost:$PROXY_PORT
    [portless]=web.localhost:$PORTLESS_PORT
)
for target in direct portd portless; do serves "${URL[$target]}" "${HOST[$target]}"; done

# ---------------------------------------------------------------- runs
# wrk's latency in microseconds.
micros() {
    awk '{ v = $1 + 0; if ($1 ~ /us$/) print v; else if ($1 ~ /ms$/) print v * 1000; else if ($1 ~ /s$/) print v * 1000000 }'
}
TARGETS=(direct portd portless)
: >"$OUT/runs.tsv"
: >"$OUT/portd-cpu.txt"
for round in $(seq "$ROUNDS"); do
    for conns in 1 64; do
        threads=$((conns == 1 ? 1 : 2))
        for i in 0 1 2; do
            target=${TARGETS[$(((i + round) % 3))]}
            wait_quiet "round $round, $conns connections, $target"
            log=$OUT/wrk-$target-c$conns-r$round.txt
            before=$(cpu_ticks "$PORTD")
            wrk -t"$threads" -c"$conns" -d"${SECONDS_PER}s" --latency -H "Host: ${HOST[$target]}" \
                "${URL[$target]}" >"$log"
            if [[ $target == portd ]]; then
                # portd's CPU time per proxied request (clock ticks are 10 ms).
                requests=$(awk '/requests in/ { print $1 }' "$log")
                echo "round $round, $conns connections: portd used $(( ($(cpu_ticks "$PORTD") - before) * 10000 / requests )) us of CPU per request" |
                    tee -a "$OUT/portd-cpu.txt" >&2
            fi
            if grep -q -E "Non-2xx|Socket errors" "$log"; then
                echo "bench/proxy.sh: $target had errors:" >&2
                cat "$log" >&2
                exit 1
            fi
            rps=$(awk '/^Requests\/sec/ { print $2 }' "$log")
            p50=$(awk '$1 == "50%" { print $2 }' "$log" | micros)
            p99=$(awk '$1 == "99%" { print $2 }' "$log" | micros)
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$conns" "$target" "$rps" "$p50" "$p99" | tee -a "$OUT/runs.tsv" >&2
        done
    done
done

# ---------------------------------------------------------------- summary
# Medians over the rounds, as JSON: {"TARGET": {"CONNS": {"rps", "p50", "p99"}}}.
jq -R -s '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    split("\n") | map(select(length > 0) | split("\t")
        | {conns: .[1], target: .[2], rps: (.[3] | tonumber), p50: (.[4] | tonumber), p99: (.[5] | tonumber)})
    | group_by(.target) | map({key: .[0].target, value: (group_by(.conns) | map({key: .[0].conns,
        value: {rps: (map(.rps) | median), p50: (map(.p50) | median), p99: (map(.p99) | median),
                rounds: map(.rps)}}) | from_entries)}) | from_entries' "$OUT/runs.tsv" >"$OUT/proxy.json"
jq -r --arg rounds "$ROUNDS" --arg secs "$SECONDS_PER" '
    def r: . * 10 | round / 10;
    "| | 1 connection: requests/s | p50 | p99 | 64 connections: requests/s | p50 | p99 |",
    "|:---|---:|---:|---:|---:|---:|---:|",
    (["direct", "portd", "portless"][] as $t | .[$t] as $m |
        "| \($t) | \($m["1"].rps | round) | \($m["1"].p50) us | \($m["1"].p99) us | \($m["64"].rps | round) | \($m["64"].p50) us | \($m["64"].p99) us |"),
    "",
    "medians of \($rounds) rounds of \($secs) s each; every round: " + ([["direct", "portd", "portless"][] as $t | "\($t) 64c \(.[$t]["64"].rounds | map(round) | join("/"))"] | join(", ")),
    "",
    def verdict: if . then "met" else "missed" end;
    (.portd["64"].rps / .portless["64"].rps) as $vs_portless
    | (.portd["64"].rps / .direct["64"].rps * 100) as $vs_direct
    | (.portd["1"].p50 - .direct["1"].p50) as $added
    | "portd vs portless at 64 connections: \($vs_portless | r)x (target >= 5x: \($vs_portless >= 5 | verdict))",
    "portd vs direct at 64 connections: \($vs_direct | r)% (target >= 50%: \($vs_direct >= 50 | verdict))",
    "portd added p50 at 1 connection: \($added) us (target <= 100 us: \($added <= 100 | verdict))"' \
    "$OUT/proxy.json" | tee "$OUT/proxy.md" >&2
# The same ratios within each round (measured minutes apart, not hours).
jq -R -s -r '
    def r: . * 10 | round / 10;
    split("\n") | map(select(length > 0) | split("\t")) | group_by(.[0]) | map(
        (map({key: "\(.[2])-\(.[1])", value: .}) | from_entries) as $m
        | "round \(.[0][0]): portd/direct at 64 connections \(($m["portd-64"][3] | tonumber) / ($m["direct-64"][3] | tonumber) * 100 | r)%, "
          + "portd/portless \(($m["portd-64"][3] | tonumber) / ($m["portless-64"][3] | tonumber) | r)x, "
          + "added p50 at 1 connection \(($m["portd-1"][4] | tonumber) - ($m["direct-1"][4] | tonumber)) us")[]' \
    "$OUT/runs.tsv" | tee -a "$OUT/proxy.md" >&2
echo "load at end: $(load)" | tee -a "$OUT/machine.txt" >&2
say "results in $OUT"
