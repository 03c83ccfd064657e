#!/usr/bin/env bash
# Readiness probe of the SLURM testbed, run as root inside `login` by
# scripts/testbed.sh. Exits 0 once the controller answers, both compute
# nodes are idle, a trivial job run as user dask has succeeded and the
# accounting has its record; otherwise says why not and exits 1. Bounded to
# about 35 s per call.
set -uo pipefail

not_ready() { echo "slurm not ready: $*" >&2; exit 1; }

timeout 5 scontrol ping 2>&1 | grep -q 'is UP' || not_ready "slurmctld does not answer 'scontrol ping'"

states=$(timeout 5 sinfo --noheader --Node --partition=debug --format='%N %t' 2>&1) \
    || not_ready "sinfo failed: $states"
for node in compute1 compute2; do
    state=$(awk -v n="$node" '$1 == n {print $2}' <<<"$states")
    [ "$state" = idle ] || not_ready "$node is '${state:-missing}', not idle (sinfo: $(tr '\n' ';' <<<"$states"))"
done

cd /home/dask || not_ready "no /home/dask"
out=$(timeout 25 runuser -u dask -- srun --immediate=15 --nodes=1 --ntasks=1 \
        --mem=100M --time=1 --job-name=jqref-ready hostname 2>&1) \
    || not_ready "test job as dask failed: $out"
case "$out" in
    compute1|compute2) ;;
    *) not_ready "test job ran but printed '$out'" ;;
esac
accounted=$(timeout 5 sacct --noheader --allusers --name=jqref-ready --format=State --parsable2 2>&1) \
    || not_ready "sacct failed: $accounted"
grep -qx COMPLETED <<<"$accounted" || not_ready "sacct has no completed test job (it says: '$accounted')"
echo "slurm ready: nodes idle, test job ran on $out, sacct has its record"
