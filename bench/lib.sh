# shellcheck shell=bash
# bench/lib.sh: what bench/run.sh and bench/who.sh share. Sourced, not run;
# errors name the script that sourced it.

# The system python3 when there is one, else PATH's.
# shellcheck disable=SC2034 # used by the scripts that source this
PYTHON=$(command -v python3)
if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; fi

say() { printf '==> %s\n' "$*" >&2; }

# Exits unless every tool named is on PATH.
need() {
    local tool
    for tool; do
        command -v "$tool" >/dev/null || { echo "bench/${0##*/}: $tool is missing" >&2; exit 1; }
    done
}

# hyperfine, installed with apt-get when missing and we are root.
need_hyperfine() {
    command -v hyperfine >/dev/null && return
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing hyperfine"
        apt-get install -y hyperfine >/dev/null
    else
        echo "bench/${0##*/}: hyperfine is missing (apt-get install hyperfine)" >&2
        exit 1
    fi
}

# A process's user + system CPU time so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
