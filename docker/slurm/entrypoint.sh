#!/usr/bin/env bash
# Entry point of the SLURM testbed nodes: jqref-slurm-entrypoint slurmctld|slurmd
# Installs the munge key from the mounted secret, starts munged, makes sure
# the shared home holds /home/dask, then runs the Slurm daemon in the
# foreground. slurmd first waits for the controller to answer.
set -euo pipefail

role=${1:?usage: jqref-slurm-entrypoint slurmctld|slurmd}
key_src=${MUNGE_KEY_FILE:-/run/secrets/munge.key}
log() { printf 'entrypoint[%s]: %s\n' "$role" "$*" >&2; }

[ -s "$key_src" ] || { log "no munge key at $key_src (run docker/slurm/prepare.sh)"; exit 1; }
install -o munge -g munge -m 0400 "$key_src" /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge

# The named volume starts empty on a fresh bring-up (or holds a copy of the
# image's /home); either way dask needs its home there.
[ -d /home/dask ] || install -d -o 1000 -g 1000 -m 0755 /home/dask
chown 1000:1000 /home/dask

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

case "$role" in
    slurmctld)
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
