#!/usr/bin/env bash
# Run on the host by scripts/testbed.sh before bring-up.
#
# For PBS_FLAVOR=openpbs, first check in seconds what the image build needs
# from outside (openpbs/prepare-openpbs.sh): the OpenPBS packages and the
# base image. Then, for either flavour, create the munge key the compat
# flavour's Slurm uses (never committed: docker/*/secrets/ is gitignored).
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
flavor=${PBS_FLAVOR:-openpbs}

case "$flavor" in
    openpbs) "$dir/openpbs/prepare-openpbs.sh" ;;
    compat)
        echo "pbs prepare: PBS_FLAVOR=compat: PBS commands from Debian's slurm-wlm-torque over Slurm." >&2
        echo "pbs prepare: this tests jqref's PBS job class (directives, qsub/qstat/qdel handling), not a PBS server." >&2
        ;;
    *) echo "pbs prepare: unknown PBS_FLAVOR '$flavor' (openpbs or compat)" >&2; exit 2 ;;
esac

key="$dir/secrets/munge.key"
mkdir -p "$dir/secrets"
if [ ! -s "$key" ]; then
    (umask 077 && head -c 1024 /dev/urandom >"$key.tmp")
    chmod 0600 "$key.tmp"
    mv "$key.tmp" "$key"
    echo "pbs prepare: generated $key" >&2
fi
