#!/usr/bin/env bash
# Entry point of the compat flavour's nodes: jqref-pbs-compat head|compute.
# The compose file names roles, shared with the openpbs flavour; here they
# are the SLURM testbed's daemons, started by its entrypoint (munge key,
# shared home, daemon in the foreground).
set -euo pipefail
case "${1:?usage: jqref-pbs-compat head|compute}" in
    head) exec /usr/local/sbin/jqref-slurm-entrypoint slurmctld ;;
    compute) exec /usr/local/sbin/jqref-slurm-entrypoint slurmd ;;
    *) echo "jqref-pbs-compat: unknown role '$1' (head or compute)" >&2; exit 2 ;;
esac
