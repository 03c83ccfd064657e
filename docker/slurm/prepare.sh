#!/usr/bin/env bash
# Run on the host before bring-up: the cluster's munge key.
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
"$dir/../../scripts/munge-key.sh" "$dir"
