#!/usr/bin/env bash
# Entry point of the SLURM testbed nodes: jqref-slurm-entrypoint slurmctld|slurmd
# Installs the munge key from the mounted secret, starts munged, makes sure
# the shared home holds the users' homes, then runs the Slurm daemon in the
# foreground. slurmd first waits for the controller to answer; slurmctld,
# when slurm.conf has accounting, first starts MariaDB and slurmdbd and
# registers the cluster, its account, users and QOS.
set -euo pipefail

role=${1:?usage: jqref-slurm-entrypoint slurmctld|slurmd}
key_src=${MUNGE_KEY_FILE:-/run/secrets/munge.key}
log() { printf 'entrypoint[%s]: %s\n' "$role" "$*" >&2; }

[ -s "$key_src" ] || { log "no munge key at $key_src (run docker/slurm/prepare.sh)"; exit 1; }
install -o munge -g munge -m 0400 "$key_src" /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge

# The named volume starts empty on a fresh bring-up (or holds a copy of the
# image's /home); either way each user needs a home there.
for user in dask mfa; do
    id "$user" >/dev/null 2>&1 || continue
    [ -d "/home/$user" ] || install -d -o "$user" -g "$user" -m 0755 "/home/$user"
    chown "$user:$user" "/home/$user"
done

if ! pgrep -x munged >/dev/null; then
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
done
munge -n </dev/null | unmunge >/dev/null || { log "munged does not answer"; exit 1; }

# The scale flavour (docker/scale.yaml): every node, controller included,
# must read the same node figures.
if [ -n "${JQREF_NODE_CPUS:-}" ]; then
    sed -i -E "s/^(NodeName=\S+) CPUs=[0-9]+ RealMemory=[0-9]+/\1 CPUs=$JQREF_NODE_CPUS RealMemory=$JQREF_NODE_MEMORY_MB/" \
        /etc/slurm/slurm.conf
fi

# MariaDB and slurmdbd on this node, in the background, then what the site's
# accounting knows: the cluster, the account `jqref` with the users root, dask
# and mfa, and the QOS `limited` (MaxSubmitJobsPerUser=2) they may opt into
# with --qos=limited. The database password comes from prepare.sh.
start_accounting() {
    local password_file=${DB_PASSWORD_FILE:-/run/secrets/db-password} password
    [ -s "$password_file" ] || { log "no database password at $password_file (run docker/slurm/prepare.sh)"; exit 1; }
    password=$(cat "$password_file")
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    runuser -u mysql -- /usr/sbin/mariadbd --skip-networking --skip-log-error &
    wait_until 30 "MariaDB" mariadb-admin ping --silent
    # The database exists before slurmdbd connects: when slurmdbd creates it
    # itself, its retried connection fails every query with Debian trixie's
    # libmariadb 3.4 ("Number of columns in result (=1) ... (=0)", 5027).
    mariadb <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$password';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
    install -o slurm -g slurm -m 0600 /dev/stdin /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$password
StorageLoc=slurm_acct_db
CONF
    /usr/sbin/slurmdbd -D &
    wait_until 60 "slurmdbd" sacctmgr --noheader list cluster
    cluster=$(sed -n 's/^ClusterName=//p' /etc/slurm/slurm.conf)
    registered cluster "$cluster" || sacctmgr -i add cluster "$cluster" >/dev/null
    registered account jqref || sacctmgr -i add account jqref Description=jqref Organization=jqref >/dev/null
    registered qos limited || sacctmgr -i add qos limited MaxSubmitJobsPerUser=2 >/dev/null
    for user in root dask mfa; do
        registered user "$user" || sacctmgr -i add user "$user" Account=jqref >/dev/null
    done
    sacctmgr -i modify user where name=root,dask,mfa set QOS+=limited >/dev/null || true  # no change: nothing to do
    registered qos limited || { log "accounting: the QOS 'limited' was not registered"; exit 1; }
    log "accounting ready: cluster $cluster, account jqref, users root dask mfa, QOS limited"
}

# wait_until SECONDS WHAT COMMAND...: until COMMAND succeeds; exit if it never does.
wait_until() {
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 10))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "$what did not answer in ${seconds}s"
    exit 1
}

# registered KIND NAME: whether the accounting database has that entity.
registered() { [ -n "$(sacctmgr --noheader --parsable2 list "$1" where name="$2" format=name 2>/dev/null)" ]; }

case "$role" in
    slurmctld)
        if grep -q '^AccountingStorageType=accounting_storage/slurmdbd' /etc/slurm/slurm.conf; then
            start_accounting
        fi
        exec /usr/sbin/slurmctld -D
        ;;
    slurmd)
        # Register only once the controller listens; if it never does, exit
        # and let the restart policy try again.
        for i in $(seq 120); do
            if scontrol ping 2>/dev/null | grep -q 'is UP'; then
                exec /usr/sbin/slurmd -D
            fi
            [ $((i % 10)) = 0 ] && log "waiting for slurmctld on login (${i}s)"
            sleep 1
        done
        log "slurmctld did not answer in 120s"
        exit 1
        ;;
    *)
        exec "$@"
        ;;
esac
