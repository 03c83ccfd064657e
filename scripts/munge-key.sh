#!/usr/bin/env bash
# munge-key.sh DIR: create DIR/secrets/munge.key (1024 random bytes, mode
# 0600) unless it exists. Testbeds running Slurm call it from prepare.sh;
# docker/*/secrets/ is gitignored, so the key is never committed.
set -euo pipefail
key="${1:?usage: munge-key.sh TESTBED_DIR}/secrets/munge.key"
mkdir -p "$(dirname "$key")"
if [ ! -s "$key" ]; then
    (umask 077 && head -c 1024 /dev/urandom >"$key.tmp")
    mv "$key.tmp" "$key"
    echo "munge-key: generated $key" >&2
fi
