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
        # The compat image builds on the SLURM testbed's image.
        docker build --quiet --build-arg "NODE_IMAGE=${NODE_IMAGE:-jqref/node:trixie}" \
            --tag jqref/slurm:trixie "$dir/../slurm" >/dev/null
        ;;
    *) echo "pbs prepare: unknown PBS_FLAVOR '$flavor' (openpbs or compat)" >&2; exit 2 ;;
esac

"$dir/../../scripts/munge-key.sh" "$dir"
