#!/usr/bin/env bash
# Run on the host before bring-up: create the cluster's munge key (never
# committed; docker/*/secrets/ is gitignored) unless one exists already.
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
key="$dir/secrets/munge.key"
mkdir -p "$dir/secrets"
if [ ! -s "$key" ]; then
    (umask 077 && head -c 1024 /dev/urandom >"$key.tmp")
    chmod 0600 "$key.tmp"
    mv "$key.tmp" "$key"
    echo "slurm prepare: generated $key" >&2
fi
