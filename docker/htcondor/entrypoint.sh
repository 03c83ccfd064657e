#!/usr/bin/env bash
# Start one HTCondor node of the jqref testbed: install the pool key derived
# from the shared secret, pick the daemons for $JQREF_CONDOR_ROLE
# (manager = central manager + schedd, execute = startd) and run condor_master
# in the foreground, echoing the daemon logs to the container's output.
set -euo pipefail

role=${JQREF_CONDOR_ROLE:?set JQREF_CONDOR_ROLE to manager or execute}
secret=${JQREF_CONDOR_SECRET:-/run/secrets/htcondor_pool_password}
[ -s "$secret" ] || { echo "jqref-condor-node: no pool secret at $secret" >&2; exit 1; }

install -d -m 0700 -o root -g root /etc/condor/passwords.d
tr -d '\n' <"$secret" \
    | condor_store_cred add -c -i - -f /etc/condor/passwords.d/POOL >/dev/null
chmod 0600 /etc/condor/passwords.d/POOL

case "$role" in
    manager) daemons=(CentralManager Submit) logs=(Master Collector Negotiator Sched) ;;
    execute) daemons=(Execute) logs=(Master Start) ;;
    *) echo "jqref-condor-node: unknown role '$role'" >&2; exit 1 ;;
esac
for d in "${daemons[@]}"; do echo "use ROLE : $d"; done >/etc/condor/config.d/60-jqref-role.config

logdir=$(condor_config_val LOG) files=()
for l in "${logs[@]}"; do
    files+=("$logdir/${l}Log")
done
tail -n0 -F "${files[@]}" 2>/dev/null &
exec condor_master -f
