#!/usr/bin/env bash
# Readiness probe for the HTCondor testbed, run as root inside `login` by
# scripts/testbed.sh (repeatedly, until it exits 0). Ready means: both execute
# nodes' slots are in the collector and a trivial job submitted as user dask
# has completed since the schedd started. Each call is bounded (~30 s) and
# says why the pool is not ready yet.
set -euo pipefail

BATCH=jqref-ready
WAIT=${READY_JOB_WAIT:-20}
nodes=(compute1 compute2)

notready() { echo "htcondor not ready: $*" >&2; exit 1; }
q() { timeout 10 "$@"; }

machines=$(q condor_status -af Machine 2>&1) || notready "condor_status failed: $machines"
for n in "${nodes[@]}"; do
    grep -qx "$n" <<<"$machines" || notready "no slot from $n in condor_status (have: ${machines:-none})"
done

started=$(q condor_status -schedd -af DaemonStartTime 2>&1) || notready "no schedd ad: $started"
[ -n "$started" ] || notready "the schedd has not advertised itself yet"
done_since="JobBatchName == \"$BATCH\" && JobStatus == 4 && CompletionDate >= $started"

probe_done() {
    [ -n "$(q condor_history -limit 1 -constraint "$done_since" -af ClusterId 2>/dev/null)" ]
}
probe_done && exit 0

# Submit a probe unless one is still queued from an earlier call.
queued=$(q condor_q -allusers -constraint "JobBatchName == \"$BATCH\"" -af ClusterId 2>&1) \
    || notready "condor_q failed: $queued"
if [ -z "$queued" ]; then
    out=$(cd /home/dask && q runuser -u dask -- condor_submit -terse - 2>&1 <<SUB
executable = /bin/true
transfer_executable = false
should_transfer_files = NO
batch_name = $BATCH
output = /dev/null
error = /dev/null
queue
SUB
) || notready "condor_submit as dask failed: $out"
fi

for ((i = 0; i < WAIT; i++)); do
    probe_done && exit 0
    sleep 1
done
status=$(q condor_q -allusers -constraint "JobBatchName == \"$BATCH\"" -af ClusterId ProcId JobStatus LastRejMatchReason HoldReason 2>&1 || true)
notready "probe job not completed within ${WAIT}s (ClusterId ProcId JobStatus LastRejMatchReason HoldReason: ${status:-not queued})"
