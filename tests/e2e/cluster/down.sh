#!/usr/bin/env bash
# Stop the e2e cluster that up.sh started.  First cancel every job (so no job is left COMPLETING
# for the next start), close ssh ControlMasters whose sockets are under the state dir, then stop
# exactly the daemons up.sh started, by the pids in their pid files -- sshd (and its session
# processes), slurmd, slurmctld, slurmdbd, mariadbd, munged -- TERM, bounded wait, then KILL.
# Never by name.  Idempotent: fine when nothing runs.  Keeps all state (see README.md).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/env.sh"
ME=down
. "$HERE/lib.sh"

T0=$EPOCHREALTIME

# descendants PID: pids of all live processes below PID (children first, then theirs)
descendants() {
    local table todo=("$1") p c
    table=$(ps -e -o pid=,ppid=)
    while ((${#todo[@]})); do
        p=${todo[0]}
        todo=("${todo[@]:1}")
        for c in $(awk -v p="$p" '$2 == p { print $1 }' <<<"$table"); do
            proc_alive "$c" && echo "$c"
            todo+=("$c")
        done
    done
}

# ------------------------------------------------------------------------------- cancel jobs
jobs_left() { timeout 10 squeue -h -o %A 2>/dev/null | sort -u; }
if alive "$RUN/slurmctld.pid" slurmctld >/dev/null && ids=$(jobs_left) && [ -n "$ids" ]; then
    say "cancelling $(wc -w <<<"$ids") job(s)"
    # shellcheck disable=SC2086
    timeout 20 scancel $ids 2>/dev/null || true
    start=$EPOCHREALTIME
    while ids=$(jobs_left) && [ -n "$ids" ]; do
        if (($(since "$start" 0) >= 60)); then
            say "WARNING: jobs still listed after 60 s:"
            timeout 10 squeue -o '%.10i %.9T %.20R' || true
            break
        fi
        sleep 0.2
    done
    [ -n "$ids" ] || say "all jobs gone in $(since "$start") s"
fi

# ---------------------------------------------------------------------- ssh ControlMasters
# Remote commands of a multiplexed session outlive their session when the master goes away;
# note them (everything below our sshd) now, they are stopped together with sshd.
SSHD_TREE=()
if pid=$(alive "$RUN/sshd.pid" sshd); then
    for p in $(descendants "$pid"); do SSHD_TREE+=("$p"); done
fi
if [ -d "$JOBMON_E2E_CM_DIR" ]; then
    for sock in "$JOBMON_E2E_CM_DIR"/*; do
        [ -S "$sock" ] || continue
        mpid=$(timeout 5 ssh -F /dev/null -o ControlPath="$sock" -O check jobmon-e2e 2>&1 |
            sed -n 's/.*(pid=\([0-9]*\)).*/\1/p') || mpid=""
        timeout 5 ssh -F /dev/null -o ControlPath="$sock" -O exit jobmon-e2e >/dev/null 2>&1 || true
        if [ -n "$mpid" ]; then
            for _ in $(seq 50); do proc_alive "$mpid" || break; sleep 0.1; done
            if proc_alive "$mpid"; then kill -KILL "$mpid" 2>/dev/null || true; fi
            say "ssh ControlMaster $(basename "$sock"): closed (pid $mpid)"
        fi
        rm -f "$sock"
    done
fi

# ----------------------------------------------------------------------------------- daemons
# stop NAME PIDFILE COMM LIMIT: TERM the pid from PIDFILE (and, for sshd, its session children),
# wait up to LIMIT seconds, then KILL whatever is left.
stop() {
    local name=$1 pidfile=$2 comm=$3 limit=$4 pid p start left
    if ! pid=$(alive "$pidfile" "$comm"); then
        rm -f "$pidfile"
        say "$name: not running"
        return 0
    fi
    local pids=("$pid")
    if [ "$name" = sshd ]; then
        # the sessions ("sshd: root@notty") are forked children of the listener, and the remote
        # commands are theirs: without this, `ssh testcluster sleep 300` would outlive sshd
        for p in "${SSHD_TREE[@]}" $(descendants "$pid"); do
            [[ " ${pids[*]} " == *" $p "* ]] || pids+=("$p")
        done
    fi
    start=$EPOCHREALTIME
    kill -TERM "${pids[@]}" 2>/dev/null || true
    while :; do
        left=()
        for p in "${pids[@]}"; do proc_alive "$p" && left+=("$p"); done
        ((${#left[@]})) || break
        if (($(since "$start" 0) >= limit)); then
            say "$name: pid(s) ${left[*]} still alive after ${limit} s, sending KILL"
            kill -KILL "${left[@]}" 2>/dev/null || true
            for _ in $(seq 50); do
                left=()
                for p in "${pids[@]}"; do proc_alive "$p" && left+=("$p"); done
                ((${#left[@]})) || break
                sleep 0.1
            done
            ((${#left[@]} == 0)) || say "WARNING: $name: pid(s) ${left[*]} survived KILL"
            break
        fi
        sleep 0.1
    done
    rm -f "$pidfile"
    local extra=""
    ((${#pids[@]} == 1)) || extra=" and $((${#pids[@]} - 1)) session process(es) below it"
    say "$name: stopped pid $pid$extra in $(since "$start") s"
}

stop sshd "$RUN/sshd.pid" sshd 10
stop slurmd "$RUN/slurmd.pid" slurmd 30
stop slurmctld "$RUN/slurmctld.pid" slurmctld 30
stop slurmdbd "$RUN/slurmdbd.pid" slurmdbd 30
stop mariadbd "$MYSQL_RUN/mysqld.pid" mariadbd 60
stop munged "$MUNGE_PIDFILE" munged 10

# job steps whose slurmd is gone (jobs that could not be cancelled) are reported, not killed
steps=""
for p in $(pgrep -x slurmstepd 2>/dev/null); do proc_alive "$p" && steps+="$p "; done
[ -z "$steps" ] || say "WARNING: slurmstepd process(es) left: $steps(slurmd adopts them on the next up.sh)"

echo "cluster: down in $(since "$T0" 0) s"
