#!/usr/bin/env bash
# Checks for PBS_FLAVOR=openpbs, run on the host by docker/pbs/prepare.sh
# before anything is built, so that a machine that cannot build this flavour
# is told so in seconds, and why:
#
#   1. the OpenPBS packages: supplied in docker/pbs/openpbs/packages/, or
#      the release zip reachable at OPENPBS_URL
#   2. the base image (OPENPBS_BASE_IMAGE): present, or pullable
#
# then stages what the build needs from the rest of the repository.
#
# The variables and their defaults are the Dockerfile's build arguments.
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
version=${OPENPBS_VERSION:-23.06.06}
build=${OPENPBS_BUILD:-ubuntu_20.04}
url=${OPENPBS_URL:-https://vcdn.altair.com/rl/OpenPBS/openpbs_${version}.${build}.zip}
base=${OPENPBS_BASE_IMAGE:-ubuntu:20.04}
probe_timeout=${PROBE_TIMEOUT:-15}
pull_timeout=${PULL_TIMEOUT:-60}

log() { printf 'pbs prepare: %s\n' "$*" >&2; }

# 1. Packages. A probe of the first byte: enough to know the download works.
supplied=$(find "$dir/packages" -type f \( -name '*.zip' -o -name '*.deb' \) 2>/dev/null | head -n 3)
if [ -n "$supplied" ]; then
    log "PBS_FLAVOR=openpbs: using the OpenPBS packages in docker/pbs/openpbs/packages/: $(basename -a $supplied | paste -sd, -)"
else
    # Reachable when the server answers 200/206 to a one-byte range request
    # (a server that ignores the range may run into the time limit: fine).
    reason=""
    if command -v curl >/dev/null 2>&1; then
        err=$(mktemp)
        code=$(curl -sSL --connect-timeout 5 --max-time "$probe_timeout" -r 0-0 -o /dev/null \
                    -w '%{http_code}' "$url" 2>"$err") || true
        case "$code" in
            200|206) ;;
            000|"") reason=$(cat "$err") ;;
            *) reason="HTTP $code" ;;
        esac
        rm -f "$err"
    else
        reason=$(python3 - "$url" "$probe_timeout" 2>&1 <<'PY'
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Range": "bytes=0-0"})
try:
    urllib.request.urlopen(request, timeout=float(sys.argv[2])).read(1)
except Exception as e:
    sys.exit(f"{type(e).__name__}: {e}")
PY
        ) || reason=${reason:-"download failed"}
    fi
    if [ -n "$reason" ]; then
        echo "PBS_FLAVOR=openpbs: could not download $url ($(tr '\n' ' ' <<<"$reason" | sed 's/ *$//')); supply the packages" \
             "in docker/pbs/openpbs/packages/ (see docker/pbs/README.md) or use PBS_FLAVOR=compat" >&2
        exit 1
    fi
    log "PBS_FLAVOR=openpbs: $url is reachable; the image build downloads it"
fi

# 2. The base image the packages were built for.
if ! docker image inspect "$base" >/dev/null 2>&1; then
    if ! out=$(timeout "$pull_timeout" docker pull -q "$base" 2>&1); then
        echo "PBS_FLAVOR=openpbs: the base image $base is not here and cannot be pulled" \
             "($(tr '\n' ' ' <<<"${out:-no answer within ${pull_timeout}s}" | sed 's/ *$//')); load it with" \
             "'docker load' (see docker/pbs/README.md) or use PBS_FLAVOR=compat" >&2
        exit 1
    fi
    log "pulled $base"
fi

# 3. What the build needs from elsewhere in the repository (a build context
#    cannot reach outside its folder): the locked requirements, and the node
#    image's sshd hook if there is one. Regenerated every time; gitignored.
repo=$(cd "$dir/../../.." && pwd)
rm -rf "$dir/generated"
mkdir -p "$dir/generated"
printf '# Copied here by prepare-openpbs.sh at every bring-up.\n*\n' >"$dir/generated/.gitignore"
cp "$repo/requirements/lock.txt" "$dir/generated/lock.txt"
if [ -f "$repo/docker/node/sshd.sh" ]; then
    cp "$repo/docker/node/sshd.sh" "$dir/generated/sshd.sh"
fi
log "PBS_FLAVOR=openpbs: checks passed"
