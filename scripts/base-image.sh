#!/usr/bin/env bash
# Provide the base image every testbed builds FROM (default debian:trixie-slim).
#
# Use it when it is already local, pull it when a registry answers, and
# otherwise bootstrap an equivalent minimal Debian offline from the package
# mirror with debootstrap and `docker import` (our CI machines reach no
# registry).
set -euo pipefail

IMAGE=${BASE_IMAGE:-debian:trixie-slim}
SUITE=${DEBIAN_SUITE:-trixie}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PULL_TIMEOUT=${PULL_TIMEOUT:-60}

log() { printf 'base-image: %s\n' "$*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE is present"
    exit 0
fi

if timeout "$PULL_TIMEOUT" docker pull -q "$IMAGE" >/dev/null 2>&1; then
    log "pulled $IMAGE"
    exit 0
fi

log "$IMAGE cannot be pulled; bootstrapping Debian $SUITE from $MIRROR"
if ! command -v debootstrap >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
        || { log "debootstrap is missing and cannot be installed here"; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

root=$(mktemp -d /var/tmp/jqref-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 \
    || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# Leave the image as lean as the official slim one: no package lists or caches.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV LANG=C.UTF-8' \
    - "$IMAGE" >/dev/null
log "imported $IMAGE"
