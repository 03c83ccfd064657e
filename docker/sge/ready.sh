#!/usr/bin/env bash
# Readiness probe, run as root inside `login` by scripts/testbed.sh.
#
# Exits 0 once every exec host reports load values to the qmaster, its all.q
# instance is in no state at all (not u/unknown, E/error, d/disabled, a/alarm
# ...), and a trivial job submitted as user dask has run to completion.
# Otherwise prints why not and exits 1. One call takes at most ~30 s.
set -uo pipefail

EXEC_HOSTS=${SGE_EXEC_HOSTS:-compute1 compute2}
QUEUE=all.q
USER_NAME=dask
JOB_NAME=jqref-ready
JOB_TIMEOUT=20

not_ready() { echo "sge not ready: $*"; exit 1; }

timeout 5 qconf -sq "$QUEUE" >/dev/null 2>&1 \
    || not_ready "qmaster does not answer or queue $QUEUE is not configured yet"

hosts=$(timeout 5 qhost 2>&1) || not_ready "qhost failed: $hosts"
queues=$(timeout 5 qstat -f -u '*' -q "$QUEUE" 2>&1) || not_ready "qstat -f failed: $queues"
for h in $EXEC_HOSTS; do
    load=$(awk -v h="$h" '$1 == h { print $7 }' <<<"$hosts")
    [ -n "$load" ] || not_ready "exec host $h is not in qhost"
    [ "$load" != "-" ] || not_ready "exec host $h reports no load (sge_execd not registered yet)"
    line=$(awk -v q="$QUEUE@$h" '$1 == q' <<<"$queues")
    [ -n "$line" ] || not_ready "queue instance $QUEUE@$h does not exist"
    states=$(awk '{ print $6 }' <<<"$line")
    [ -z "$states" ] || not_ready "queue instance $QUEUE@$h is in state '$states'"
done

# Leftovers of an earlier probe that timed out would only queue up.
runuser -u "$USER_NAME" -- qdel "$JOB_NAME" >/dev/null 2>&1

# A job that errors out lands in Eqw and `qsub -sync y` would wait forever,
# hence the timeout and the clean-up.
out=$(cd / && timeout "$JOB_TIMEOUT" runuser -u "$USER_NAME" -- \
    qsub -sync y -terse -N "$JOB_NAME" -j y -o /dev/null -l h_rt=0:1:0 -b y true 2>&1)
rc=$?
if [ "$rc" -ne 0 ]; then
    id=$(awk 'NR == 1 && /^[0-9]+$/' <<<"$out")
    detail=""
    if [ -n "$id" ]; then
        detail=$(qstat -j "$id" 2>&1 | grep -E '^(error reason|scheduling info)' | head -n 3)
        runuser -u "$USER_NAME" -- qdel "$id" >/dev/null 2>&1
    fi
    [ "$rc" -eq 124 ] && out="no result within ${JOB_TIMEOUT}s; $out"
    not_ready "test job as $USER_NAME failed (qsub exit $rc): $(tr '\n' ' ' <<<"$out") $detail"
fi
echo "sge ready: $(wc -w <<<"$EXEC_HOSTS") exec hosts up, test job $(head -n 1 <<<"$out") ran"
