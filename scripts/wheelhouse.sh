#!/usr/bin/env bash
# Download the locked wheels for the images' Python into build/wheelhouse.
#
# Images cannot reach PyPI themselves on our CI machines (pip inside a
# container fails certificate checks behind the TLS-intercepting proxy), and
# building from one wheelhouse also pins client, scheduler and workers to the
# same distributed. Re-downloads only when the lock file changes.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
LOCK=${LOCK:-$here/requirements/lock.txt}
OUT=${WHEELHOUSE:-$here/build/wheelhouse}
PY=${IMAGE_PYTHON_VERSION:-3.13}
PIP=${HOST_PIP:-python3 -m pip}

arch=$(uname -m)
stamp="$OUT/.lock-$(sha256sum "$LOCK" | cut -c1-16)-py$PY-$arch"
if [ -f "$stamp" ]; then
    echo "wheelhouse: up to date ($OUT)" >&2
    exit 0
fi

rm -rf "$OUT"
mkdir -p "$OUT"
platforms=()
for tag in manylinux2014 manylinux_2_17 manylinux_2_28 manylinux_2_34 manylinux_2_39; do
    platforms+=(--platform "${tag}_${arch}")
done
# Everything in the lock except this machine's own pip constraints.
$PIP download --quiet --no-deps --only-binary=:all: \
    --python-version "$PY" --implementation cp "${platforms[@]}" \
    --constraint /dev/null \
    -r "$LOCK" -d "$OUT"
cp "$LOCK" "$OUT/lock.txt"
touch "$stamp"
echo "wheelhouse: $(ls "$OUT"/*.whl | wc -l) wheels for Python $PY/$arch in $OUT" >&2
