#!/usr/bin/env bash
# Readiness probe of the PBS testbed, run as root inside `login` by
# scripts/testbed.sh. Exits 0 once the batch system answers, both compute
# nodes are free and a trivial job submitted with qsub as user dask has run;
# otherwise says why not and exits 1. Bounded to about 30 s per call.
set -uo pipefail

USER_NAME=dask
JOB_NAME=jqref-ready
NODES="compute1 compute2"
flavor=${PBS_FLAVOR:-}
[ -n "$flavor" ] || { [ -x /opt/pbs/bin/qstat ] && flavor=openpbs || flavor=compat; }

not_ready() { echo "pbs ($flavor) not ready: $*" >&2; exit 1; }

# The node's state as pbsnodes prints it (both flavours: "state = free").
node_state() {
    timeout 5 pbsnodes "$1" 2>/dev/null | awk -F' = ' '$1 ~ /^[ \t]+state$/ { print $2; exit }'
}

case "$flavor" in
    compat)
        timeout 5 scontrol ping 2>&1 | grep -q 'is UP' || not_ready "slurmctld does not answer 'scontrol ping'"
        timeout 5 qstat -Q workq >/dev/null 2>&1 || not_ready "qstat -Q does not list the queue workq"
        ;;
    openpbs)
        out=$(timeout 5 qstat -B 2>&1) || not_ready "pbs_server does not answer 'qstat -B': $out"
        grep -q Active <<<"$out" || not_ready "pbs_server is not active: $out"
        out=$(timeout 5 qstat -Q workq 2>&1) || not_ready "no queue workq: $out"
        ;;
    *) not_ready "unknown flavour" ;;
esac

for node in $NODES; do
    state=$(node_state "$node")
    [ "$state" = free ] || not_ready "$node is '${state:-missing}', not free (pbsnodes $node)"
done

# A trivial job through qsub, waited for with -W block=true (both flavours
# support it), from a directory that exists on every node.
script=$(mktemp /tmp/jqref-ready.XXXXXX)
trap 'rm -f "$script"' EXIT
printf '#!/bin/bash\nhostname\n' >"$script"
chmod 0644 "$script"
qdel_leftovers() {
    qstat -f 2>/dev/null | awk -v n="$JOB_NAME" '/^Job Id:/ { id = $3 } $1 == "Job_Name" && $3 == n { print id }' \
        | xargs -r runuser -u "$USER_NAME" -- qdel >/dev/null 2>&1
}
qdel_leftovers
if [ "$flavor" = openpbs ]; then
    output=(-j oe -o "/home/$USER_NAME/.$JOB_NAME.out")
else
    output=()  # the wrapper picks the output file (in the submit directory)
fi
out=$(cd /tmp && timeout 25 runuser -u "$USER_NAME" -- \
    qsub -N "$JOB_NAME" -W block=true -l walltime=00:01:00 "${output[@]}" "$script" 2>&1)
rc=$?
if [ "$rc" -ne 0 ]; then
    qdel_leftovers
    [ "$rc" -eq 124 ] && out="no result within 25s; $out"
    not_ready "test job as $USER_NAME failed (qsub exit $rc): $(tr '\n' ' ' <<<"$out")"
fi
echo "pbs ($flavor) ready: nodes free, test job $(tail -n 1 <<<"$out") ran"
