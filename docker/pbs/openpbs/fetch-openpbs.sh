#!/usr/bin/env bash
# fetch-openpbs.sh URL SUPPLIED_DIR OUT_DIR
#
# First step of the openpbs flavour's image build: put OpenPBS's .deb
# packages into OUT_DIR. Packages supplied in docker/pbs/openpbs/packages/
# (copied to SUPPLIED_DIR) win: the release zip as published, or the .debs
# taken out of it. Otherwise the release zip is downloaded from URL, with a
# short timeout, and a failure stops the build with a message saying what
# was tried and what to do instead.
set -euo pipefail
url=${1:?usage: fetch-openpbs.sh URL SUPPLIED_DIR OUT_DIR}
supplied=${2:?}
out=${3:?}
timeout=${DOWNLOAD_TIMEOUT:-30}

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

supplied_packages=no
fail() {
    if [ "$supplied_packages" = yes ]; then
        echo "PBS_FLAVOR=openpbs: the packages supplied in docker/pbs/openpbs/packages/ are not usable ($*);" \
             "see docker/pbs/README.md, or use PBS_FLAVOR=compat" >&2
    else
        echo "PBS_FLAVOR=openpbs: could not download $url ($*); supply the packages in" \
             "docker/pbs/openpbs/packages/ (see docker/pbs/README.md) or use PBS_FLAVOR=compat" >&2
    fi
    exit 1
}

unzip_to() {  # unzip_to ZIP DIR (no unzip in the image: Python's zipfile)
    python3 -m zipfile -e "$1" "$2"
}

shopt -s nullglob globstar
zips=("$supplied"/**/*.zip)
debs=("$supplied"/**/*.deb)
[ ${#debs[@]} -gt 0 ] || [ ${#zips[@]} -gt 0 ] && supplied_packages=yes
if [ ${#debs[@]} -gt 0 ]; then
    echo "fetch-openpbs: using the packages supplied in docker/pbs/openpbs/packages/" >&2
    cp "${debs[@]}" "$work/"
elif [ ${#zips[@]} -gt 0 ]; then
    echo "fetch-openpbs: using ${zips[*]##*/} supplied in docker/pbs/openpbs/packages/" >&2
    for zip in "${zips[@]}"; do unzip_to "$zip" "$work" || fail "${zip##*/} is not a zip archive"; done
else
    echo "fetch-openpbs: downloading $url (timeout ${timeout}s)" >&2
    reason=$(python3 - "$url" "$work/openpbs.zip" "$timeout" 2>&1 <<'PY'
import sys, urllib.request
url, path, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
try:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as f:
        while chunk := response.read(1 << 20):
            f.write(chunk)
except Exception as e:  # any failure: say what it was
    sys.exit(f"{type(e).__name__}: {e}")
PY
    ) || fail "$reason"
    unzip_to "$work/openpbs.zip" "$work" 2>/dev/null || fail "the download is not a zip archive"
fi

# The server package holds every daemon and the commands; the others
# (execution, client, devel) are not needed.
found=("$work"/**/openpbs-server_*.deb "$work"/**/openpbs_server*.deb)
[ ${#found[@]} -gt 0 ] || fail "no openpbs-server_*.deb in $(cd "$work" && find . -name '*.deb' | tr '\n' ' ')"
cp "${found[0]}" "$out/openpbs-server.deb"
echo "fetch-openpbs: ${found[0]##*/}" >&2
