# shellcheck shell=bash
# Helpers shared by up.sh and down.sh (not meant for the tests; they want env.sh).
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
export LC_ALL=C                      # EPOCHREALTIME with a '.', plain tool output
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
unset SLURM_CONF                     # the cluster's config is /etc/slurm/slurm.conf, nothing else

STATE=$JOBMON_E2E_STATE
RUN=$JOBMON_E2E_RUN_DIR
LOG=$JOBMON_E2E_LOG_DIR
MYSQL_RUN=$STATE/mysql-run           # owned by mysql: socket and pid file of mariadbd
MUNGE_PIDFILE=/run/munge/munged.pid  # munged's own default (its socket must be the default one too)

say() { printf '%s: %s\n' "$ME" "$*"; }

# seconds since the EPOCHREALTIME value $1, with DIGITS decimals ($2, default 1)
since() { awk -v a="$1" -v b="$EPOCHREALTIME" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, b - a }'; }

# proc_alive PID: the process exists and is not a zombie
proc_alive() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [ "${s%% *}" != Z ]
}

# alive PIDFILE COMM: print the pid when PIDFILE names a live process whose name is COMM
# (guards against stale pid files whose pid now belongs to something else)
alive() {
    local pid
    pid=$(head -n1 "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
    proc_alive "$pid" || return 1
    echo "$pid"
}

[ "$(id -u)" = 0 ] || { echo "$ME: must run as root" >&2; exit 1; }

# one up.sh/down.sh at a time (parallel test workers may all call up.sh).  fd 9 holds the lock;
# the daemons are started with 9>&- so they do not keep it.
mkdir -p /run/lock
exec 9>>/run/lock/jobmon-e2e.lock
flock -w 600 9 || { echo "$ME: another up.sh/down.sh holds /run/lock/jobmon-e2e.lock" >&2; exit 1; }
