#!/usr/bin/env bash
# dev.sh: run a backend and a front end side by side, each on a port leased
# from portd, the front end told where the backend is. Ctrl-C stops both and
# frees both ports.
#
# Run it from anywhere inside the project: the names "api" and "web" remember
# their ports per git worktree, so a second checkout gets ports of its own.
#
#   API_CMD  the backend; {port} becomes its port (it also gets $PORT), e.g.
#            API_CMD='uvicorn app:app --port {port}'
#   WEB_CMD  the front end; gets API_URL=http://localhost:<api port>, e.g.
#            WEB_CMD='cd web && npm run dev -- --port {port}'
#   PORTCTL  the portctl to use (default: portctl on PATH)
#
# Both default to stand-in servers (python3 -m http.server).
set -euo pipefail

PORTCTL=${PORTCTL:-portctl}
API_CMD=${API_CMD:-"python3 -m http.server --bind 127.0.0.1 {port}"}
WEB_CMD=${WEB_CMD:-"python3 -m http.server --bind 127.0.0.1 {port}"}

runs=() # the `portctl run` processes; each owns one lease

# Stops both services and waits until their ports are released: SIGTERM to
# each `portctl run`, which forwards it to its service's process group, and
# releases the port once the service has exited.
stop() {
  trap '' INT TERM # a second Ctrl-C must not cut the clean-up short
  if ((${#runs[@]})); then
    kill -TERM "${runs[@]}" 2>/dev/null || true
  fi
  wait
  exit "$1"
}
trap 'stop 130' INT
trap 'stop 143' TERM

# `bash -c` so a command may be a small script ("cd web && npm start").
"$PORTCTL" run --name api -- bash -c "$API_CMD" &
runs+=("$!")

# The api's port: known once `portctl run` holds its lease.
api_port=""
for _ in {1..100}; do
  if api_port=$("$PORTCTL" env --name api --format dotenv 2>/dev/null); then
    api_port=${api_port#PORT=}
    break
  fi
  kill -0 "${runs[0]}" 2>/dev/null || stop 1 # portctl run gave up
  sleep 0.1
done
[[ -n $api_port ]] || { echo "dev.sh: api got no port" >&2; stop 1; }

# Start the front end only once the backend accepts connections.
"$PORTCTL" wait "$api_port" --timeout 60s || stop 1
echo "dev.sh: api on http://localhost:$api_port" >&2

"$PORTCTL" run --name web --env 'API_URL=http://localhost:{port@api}' \
  -- bash -c "$WEB_CMD" &
runs+=("$!")

# Until Ctrl-C, or until either service exits on its own: then stop the other.
wait -n || true
stop 1
