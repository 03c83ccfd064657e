#!/usr/bin/env bash
# Build jqref/node, the shared Python layer the testbed images start FROM.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/base-image.sh"
"$here/scripts/wheelhouse.sh"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$here/docker/node/Dockerfile" "$here/docker/node/sshd.sh" "$ctx/"
cp -r "$here/build/wheelhouse" "$ctx/wheelhouse"
docker build --quiet --build-arg "BASE_IMAGE=${BASE_IMAGE:-debian:trixie-slim}" \
    --tag "${NODE_IMAGE:-jqref/node:trixie}" "$ctx" >/dev/null
echo "node-image: built ${NODE_IMAGE:-jqref/node:trixie}" >&2
