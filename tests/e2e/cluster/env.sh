# shellcheck shell=bash
# Settings shared by up.sh, down.sh and the e2e tests.  Source it:
#   . tests/e2e/cluster/env.sh
# Every value can be overridden from the environment before sourcing.

# Everything the cluster owns lives here: configs, keys, pid files, logs, the MariaDB datadir,
# slurmctld state.  Outside the repo on purpose: slurm and mysql must be able to reach it
# (a checkout under /root would not be), and it survives `git clean`.
# `down.sh && rm -rf "$JOBMON_E2E_STATE"` resets the cluster completely (jobs ids start at 1 again,
# the accounting database is empty).
export JOBMON_E2E_STATE="${JOBMON_E2E_STATE:-/var/lib/jobmon-e2e}"
# ssh alias for the cluster (from $JOBMON_E2E_SSH_CONFIG, included at the top of /root/.ssh/config)
export JOBMON_E2E_HOST="${JOBMON_E2E_HOST:-testcluster}"
# same host with connection sharing (ControlMaster auto, ControlPersist 60 s, sockets in CM_DIR)
export JOBMON_E2E_HOST_MUX="${JOBMON_E2E_HOST_MUX:-${JOBMON_E2E_HOST}-mux}"
export JOBMON_E2E_CLUSTER="${JOBMON_E2E_CLUSTER:-jobmontest}"    # slurm ClusterName
export JOBMON_E2E_PARTITION="${JOBMON_E2E_PARTITION:-debug}"     # the only partition (Default=YES)
export JOBMON_E2E_SSH_PORT="${JOBMON_E2E_SSH_PORT:-2222}"        # sshd listens on 127.0.0.1 only
# CPUs declared for the node (more than the machine has, SlurmdParameters=config_overrides), so this
# many 1-CPU jobs run at once instead of queueing for Resources.
export JOBMON_E2E_CPUS="${JOBMON_E2E_CPUS:-64}"

export JOBMON_E2E_SSH_DIR="$JOBMON_E2E_STATE/ssh"
export JOBMON_E2E_SSH_CONFIG="$JOBMON_E2E_SSH_DIR/ssh_config"   # ssh -F "$JOBMON_E2E_SSH_CONFIG" works too
export JOBMON_E2E_SSH_KEY="$JOBMON_E2E_SSH_DIR/id_ed25519"
export JOBMON_E2E_CM_DIR="$JOBMON_E2E_SSH_DIR/cm"                # ControlPath sockets; down.sh closes them
export JOBMON_E2E_LOG_DIR="$JOBMON_E2E_STATE/log"
export JOBMON_E2E_RUN_DIR="$JOBMON_E2E_STATE/run"                # pid files
# a non-root login with the default shell files (for measuring ssh itself; see bench/bench.py)
export JOBMON_E2E_PLAIN_USER="${JOBMON_E2E_PLAIN_USER:-jobmonplain}"
