#!/usr/bin/env bash
# Start one OpenPBS node: entrypoint.sh head|compute
#
#   head     (login)     pbs_comm, pbs_server (with its PostgreSQL data
#                        service) and pbs_sched; then configure-server.sh
#                        creates the compute nodes with qmgr
#   compute  (computes)  pbs_mom, once the server knows this node
#
# Every node writes /etc/pbs.conf for its role (PBS_SERVER=login), pins the
# testbed's host names in /etc/hosts, starts PBS with its init script
# (pbs_init.d: there is no systemd in these containers), follows the
# daemon's log so `docker compose logs` shows it, and exits when the daemon
# dies.
set -euo pipefail

role=${1:?usage: entrypoint.sh head|compute}
SERVER=${PBS_SERVER_HOST:-login}
NODES=${PBS_NODES:-login compute1 compute2}
WAIT=${PBS_START_TIMEOUT:-240}
PBS_HOME=/var/spool/pbs
me=$(hostname)

log() { printf 'openpbs-%s[%s]: %s\n' "$role" "$me" "$*"; }
die() { log "$*"; exit 1; }

# PBS wants every host name to resolve the same way forward and backward on
# every host. Docker's DNS answers reverse lookups with
# "<container>.<network>", so resolve the service names once (forward
# lookups are right) and write "IP name" lines to /etc/hosts, which is
# consulted first. /etc/hosts is a bind mount: rewrite it in place.
pin_hosts() {
    local deadline=$((SECONDS + WAIT)) entries="" n ip
    for n in $NODES; do
        until ip=$(getent ahostsv4 "$n" | awk 'NR == 1 { print $1 }') && [ -n "$ip" ]; do
            [ "$SECONDS" -lt "$deadline" ] || die "cannot resolve node '$n'"
            sleep 1
        done
        entries+="$ip	$n"$'\n'
    done
    local pattern="[[:space:]]($(tr ' ' '|' <<<"$NODES"))([[:space:]]|$)"
    { grep -vE "$pattern" /etc/hosts || true; printf '%s' "$entries"; } >/tmp/hosts.new
    cat /tmp/hosts.new >/etc/hosts
    rm -f /tmp/hosts.new
    log "pinned hosts: $(printf '%s' "$entries" | tr '\t' ' ' | paste -sd, -)"
}

# pbs.conf: which daemons this host runs, and where the server is.
write_pbs_conf() {
    local server=$1 sched=$2 comm=$3 mom=$4
    cat >/etc/pbs.conf <<CONF
PBS_EXEC=/opt/pbs
PBS_HOME=$PBS_HOME
PBS_SERVER=$SERVER
PBS_START_SERVER=$server
PBS_START_SCHED=$sched
PBS_START_COMM=$comm
PBS_START_MOM=$mom
CONF
}

# Follow a daemon: today's log file on stdout, exit when the daemon is gone.
follow() {
    local name=$1 logfile
    logfile="$2/$(date +%Y%m%d)"
    touch "$logfile" 2>/dev/null || true
    tail -n +1 -F "$logfile" 2>/dev/null &
    while pgrep -x "$name" >/dev/null; do sleep 5; done
    die "$name exited"
}

pin_hosts
[ -d /home/dask ] || install -d -o dask -g dask -m 0755 /home/dask

case "$role" in
    head)
        [ "$me" = "$SERVER" ] || die "this node is '$me' but PBS_SERVER is '$SERVER'"
        write_pbs_conf 1 1 1 0
        log "starting pbs_comm, pbs_server and pbs_sched (the first start initialises the data service)"
        /opt/pbs/libexec/pbs_init.d start
        /usr/local/lib/jqref-pbs/configure-server.sh
        follow pbs_server.bin "$PBS_HOME/server_logs"
        ;;
    compute)
        write_pbs_conf 0 0 0 1
        # MoM accepts requests from the server host; job output goes to the
        # submit host's /home, which every node mounts, so copy it locally
        # instead of over the network (scp/rcp are not set up).
        install -d -m 0755 "$PBS_HOME/mom_priv"
        cat >"$PBS_HOME/mom_priv/config" <<CONF
\$clienthost $SERVER
\$usecp *:/home/ /home/
\$restrict_user_maxsysid 999
CONF
        deadline=$((SECONDS + WAIT))
        log "waiting for the server on $SERVER to know node $me"
        until pbsnodes "$me" >/dev/null 2>&1; do
            [ "$SECONDS" -lt "$deadline" ] || die "server on $SERVER has no node $me after ${WAIT}s"
            sleep 2
        done
        log "starting pbs_mom"
        /opt/pbs/libexec/pbs_init.d start
        follow pbs_mom "$PBS_HOME/mom_logs"
        ;;
    *) die "unknown role '$role' (head|compute)" ;;
esac
