#!/usr/bin/env bash
# Start one Grid Engine node: entrypoint.sh master|exec
#
#   master  (login)     sge_qmaster, then configure.sh sets up hosts, queue,
#                       parallel environment and policies
#   exec    (computes)  waits until the master is configured, then sge_execd
#
# Both roles first pin every node's address in /etc/hosts (see pin_hosts),
# then follow the daemon's messages file so `docker compose logs` shows it,
# and exit when the daemon dies.
set -euo pipefail

role=${1:?usage: entrypoint.sh master|exec}
NODES=${SGE_NODES:-login compute1 compute2}
MASTER=$(cat "$SGE_ROOT/$SGE_CELL/common/act_qmaster")
WAIT=${SGE_START_TIMEOUT:-240}
me=$(hostname)

log() { printf 'sge-%s[%s]: %s\n' "$role" "$me" "$*"; }
die() { log "$*"; exit 1; }

# Grid Engine resolves the peer address of every connection back to a name
# and requires that name to be the host's own name. Docker's DNS answers the
# reverse lookup with "<container>.<network>", so the qmaster would not
# recognise its exec hosts. Forward lookups of the service names are right,
# though: look every node up once, then write the short names to /etc/hosts
# (which nsswitch consults before DNS). /etc/hosts is a bind mount, so it is
# rewritten in place rather than replaced.
pin_hosts() {
    local deadline=$((SECONDS + WAIT)) entries="" n ip pattern
    for n in $NODES; do
        until ip=$(getent ahostsv4 "$n" | awk 'NR == 1 { print $1 }') && [ -n "$ip" ]; do
            [ "$SECONDS" -lt "$deadline" ] || die "cannot resolve node '$n'"
            sleep 1
        done
        entries+="$ip	$n"$'\n'
    done
    pattern="[[:space:]]($(tr ' ' '|' <<<"$NODES"))([[:space:]]|$)"
    { grep -vE "$pattern" /etc/hosts || true; printf '%s' "$entries"; } >/tmp/hosts.new
    cat /tmp/hosts.new >/etc/hosts
    rm -f /tmp/hosts.new
    log "pinned hosts: $(printf '%s' "$entries" | tr '\t' ' ' | paste -sd, -)"
}

# The shared home volume starts out as a copy of the image's /home; make sure
# the submitting user's home exists even on a volume created some other way.
ensure_home() {
    if [ ! -d /home/dask ]; then
        install -d -o dask -g dask -m 0755 /home/dask
    fi
}

# Follow a daemon: stream its messages file and exit when the process is gone.
follow() {
    local name=$1 messages=$2
    touch "$messages" 2>/dev/null || true
    tail -n +1 -F "$messages" 2>/dev/null &
    while pgrep -x "$name" >/dev/null; do sleep 5; done
    die "$name exited"
}

pin_hosts
ensure_home

case "$role" in
    master)
        [ "$me" = "$MASTER" ] || die "this node is '$me' but the image expects the master on '$MASTER'"
        log "starting sge_qmaster"
        /usr/sbin/sge_qmaster
        /usr/local/lib/jqref-sge/configure.sh
        follow sge_qmaster /var/spool/gridengine/qmaster/messages
        ;;
    exec)
        # The execd reads the global configuration (min_uid, ...) when it
        # starts, so wait until configure.sh on the master has finished: the
        # queue is the last thing it creates.
        deadline=$((SECONDS + WAIT))
        log "waiting for the qmaster on $MASTER to be configured"
        until qconf -sq all.q >/dev/null 2>&1; do
            [ "$SECONDS" -lt "$deadline" ] || die "qmaster on $MASTER not configured after ${WAIT}s"
            sleep 2
        done
        log "starting sge_execd"
        /usr/sbin/sge_execd
        follow sge_execd "/var/spool/gridengine/execd/$me/messages"
        ;;
    *) die "unknown role '$role' (master|exec)" ;;
esac
