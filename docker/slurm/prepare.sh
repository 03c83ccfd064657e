#!/usr/bin/env bash
# Run on the host before bring-up: the cluster's munge key and the password
# slurmdbd uses for MariaDB, each generated once into secrets/ (git-ignored).
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
"$dir/../../scripts/munge-key.sh" "$dir"
password="$dir/secrets/db-password"
if [ ! -s "$password" ]; then
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$password.tmp")
    mv "$password.tmp" "$password"
    echo "slurm prepare: generated $password" >&2
fi
