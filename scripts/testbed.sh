#!/usr/bin/env bash
# Drive one testbed: testbed.sh up|down|logs|shell|ready|exec SCHEDULER [args]
#
# Everything common to the testbeds lives here; a testbed is a folder
# docker/<scheduler>/ with a compose.yaml whose submit host is the service
# `login`, and optionally:
#   prepare.sh  run on the host before `up` (generate keys into secrets/)
#   ready.sh    run inside `login` as root; exits 0 once the cluster is ready
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
action=${1:?usage: testbed.sh up|down|logs|shell|ready|exec SCHEDULER [args]}
sched=${2:?usage: testbed.sh ACTION SCHEDULER}
shift 2
dir="$here/docker/$sched"
[ -f "$dir/compose.yaml" ] || { echo "testbed: no testbed for '$sched' (docker/$sched/compose.yaml)" >&2; exit 2; }

export NODE_IMAGE=${NODE_IMAGE:-jqref/node:trixie}
export JQREF_SRC="$here"
READY_TIMEOUT=${READY_TIMEOUT:-300}
compose=(docker compose --project-name "jqref-$sched" --project-directory "$dir" -f "$dir/compose.yaml")

log() { printf 'testbed[%s]: %s\n' "$sched" "$*" >&2; }

ready() { "${compose[@]}" exec -T login bash /src/docker/"$sched"/ready.sh; }

wait_ready() {
    [ -f "$dir/ready.sh" ] || return 0
    local deadline=$((SECONDS + READY_TIMEOUT)) out
    log "waiting up to ${READY_TIMEOUT}s for the cluster to be ready"
    until out=$(ready 2>&1); do
        if [ "$SECONDS" -ge "$deadline" ]; then
            printf '%s\n' "$out" >&2
            "${compose[@]}" logs --tail 60 >&2 || true
            log "not ready after ${READY_TIMEOUT}s (last readiness output and daemon logs above)"
            return 1
        fi
        sleep 2
    done
    log "ready in ${SECONDS}s"
}

case "$action" in
    up)
        "$here/scripts/docker-engine.sh"
        "$here/scripts/node-image.sh"
        [ -x "$dir/prepare.sh" ] && "$dir/prepare.sh"
        "${compose[@]}" up --detach --build --quiet-pull
        wait_ready
        ;;
    down) "${compose[@]}" down --volumes --remove-orphans --timeout 5 ;;
    logs) "${compose[@]}" logs "$@" ;;
    shell) "${compose[@]}" exec login bash "$@" ;;
    ready) ready ;;
    exec) "${compose[@]}" exec -T "$@" ;;
    *) echo "testbed: unknown action '$action'" >&2; exit 2 ;;
esac
