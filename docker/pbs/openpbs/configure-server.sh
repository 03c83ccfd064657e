#!/usr/bin/env bash
# Configure the OpenPBS server on the head node once it answers, with qmgr,
# as the admin guide describes. Safe to run again: nodes are created only
# if missing, and `set` just sets.
#
# - the compute nodes, each advertising 2 CPUs and 3000 MB (what the other
#   testbeds give a node), whatever the machine underneath has
# - queue workq, created by PBS's first start, as the default queue
# - flatuid: user names mean the same on every host
# - a scheduling cycle at least every 5 s (PBS also schedules on each
#   submission and job end)
set -euo pipefail

COMPUTES=${PBS_COMPUTE_NODES:-compute1 compute2}
NCPUS=${PBS_NODE_NCPUS:-2}
MEM=${PBS_NODE_MEM:-3000mb}
WAIT=${PBS_START_TIMEOUT:-240}

log() { printf 'openpbs-configure[%s]: %s\n' "$(hostname)" "$*"; }
die() { log "$*"; exit 1; }

deadline=$((SECONDS + WAIT))
until qstat -B >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "pbs_server does not answer after ${WAIT}s"
    sleep 1
done

qmgr -c "set server flatuid = True"
qmgr -c "set server scheduler_iteration = 5"
qmgr -c "set server query_other_jobs = True"
qstat -Q workq >/dev/null 2>&1 || qmgr -c "create queue workq queue_type = execution"
qmgr -c "set queue workq enabled = True"
qmgr -c "set queue workq started = True"
qmgr -c "set server default_queue = workq"
qmgr -c "set server scheduling = True"
for node in $COMPUTES; do
    pbsnodes "$node" >/dev/null 2>&1 || qmgr -c "create node $node"
    qmgr -c "set node $node resources_available.ncpus = $NCPUS"
    qmgr -c "set node $node resources_available.mem = $MEM"
done
log "server configured: queue workq, nodes $COMPUTES ($NCPUS CPUs, $MEM each)"
