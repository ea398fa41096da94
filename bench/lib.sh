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

# A tool from the Debian package of the same name, installed with apt-get
# when missing and we are root.
need_package() {
    local tool=$1
    command -v "$tool" >/dev/null && return
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing $tool"
        apt-get install -y "$tool" >/dev/null
    else
        echo "bench/${0##*/}: $tool is missing (apt-get install $tool)" >&2
        exit 1
    fi
}

# A process's user + system CPU time so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# The load averages, for the record.
load() { cut -d' ' -f1-3 /proc/loadavg; }
# Percent of the machine's CPU time that was busy over one second.
cpu_busy() {
    local a b
    read -ra a </proc/stat
    sleep 1
    read -ra b </proc/stat
    awk -v a="${a[*]}" -v b="${b[*]}" 'BEGIN {
        n = split(a, x, " "); split(b, y, " ")
        for (i = 2; i <= n; i++) { total += y[i] - x[i]; if (i == 5 || i == 6) idle += y[i] - x[i] }
        printf "%d", total ? 100 * (total - idle) / total : 0
    }'
}
# Other engineers share the machine: wait (at most $QUIET_WAIT seconds)
# until less than 25% of it is busy, and note what it was in $OUT/load.txt.
wait_quiet() {
    local busy waited=0
    busy=$(cpu_busy)
    while ((busy >= 25 && waited < QUIET_WAIT)); do
        busy=$(cpu_busy)
        waited=$((waited + 1))
    done
    echo "$1: CPU ${busy}% busy (other work) after waiting ${waited} s, load $(load)" | tee -a "$OUT/load.txt" >&2
}
