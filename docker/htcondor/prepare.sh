#!/usr/bin/env bash
# Generate the HTCondor pool secret on the host before bring-up (once): every
# node derives the pool signing key (IDTOKENS, PASSWORD) from this value.
# secrets/ is gitignored and mounted read-only into the containers.
set -euo pipefail

dir=$(cd "$(dirname "$0")" && pwd)
secret="$dir/secrets/pool_password"

[ -s "$secret" ] && exit 0
umask 077
mkdir -p "$dir/secrets"
head -c 48 /dev/urandom | base64 -w0 >"$secret.tmp"
chmod 0600 "$secret.tmp"
mv "$secret.tmp" "$secret"
echo "htcondor: generated pool secret in docker/htcondor/secrets/" >&2
