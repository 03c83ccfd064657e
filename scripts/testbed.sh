#!/usr/bin/env bash
# Drive one testbed: testbed.sh up|down|test|logs|shell|ready|exec SCHEDULER [args]
#
# Everything common to the testbeds lives here; a testbed is a folder
# docker/<scheduler>/ with a compose.yaml whose submit host is the service
# `login`, and optionally:
#   prepare.sh  run on the host before `up` (generate keys into secrets/)
#   ready.sh    run inside `login` as root; exits 0 once the cluster is ready
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
action=${1:?usage: testbed.sh up|down|test|logs|shell|ready|exec SCHEDULER [args]}
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
    test)
        # Bring up, run the suite on the login node as the test user, tear
        # down (unless KEEP=1) whatever the outcome.
        status=0
        "$0" up "$sched" || status=$?
        if [ "$status" = 0 ]; then
            # From the shared home, as users do: jobs start in the submit directory.
            "${compose[@]}" exec -T -u dask -w /home/dask -e PYTHONPATH=/src login \
                python -m pytest /src/tests/integration --scheduler "$sched" \
                -v --timeout 900 "$@" || status=$?
        fi
        if [ "${KEEP:-0}" = 1 ]; then
            log "KEEP=1: leaving the testbed up (make down-$sched removes it)"
        else
            "$0" down "$sched" >/dev/null 2>&1 || true
        fi
        exit "$status"
        ;;
    logs) "${compose[@]}" logs "$@" ;;
    shell) "${compose[@]}" exec login bash "$@" ;;
    ready) ready ;;
    exec) "${compose[@]}" exec -T "$@" ;;
    *) echo "testbed: unknown action '$action'" >&2; exit 2 ;;
esac
