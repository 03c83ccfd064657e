#!/usr/bin/env bash
# Drive one testbed: testbed.sh up|down|prepare|access|run|project|logs|shell|ready|exec SCHEDULER [args]
#
# The suite brings its testbed up itself (pytest tests/integration --scheduler
# S, through pytest-docker): it calls `prepare` before `docker compose up` and
# `access` after, the steps that need this machine rather than compose. `up`
# and `down` are the same for people and benchmarks; `run` runs another
# project's command in a testbed (see README, "Testbeds for other projects").
#
# Everything common to the testbeds lives here; a testbed is a folder
# docker/<scheduler>/ with a compose.yaml whose submit host is the service
# `login`, and optionally:
#   prepare.sh  run on the host before `up` (generate keys into secrets/)
#   ready.sh    run inside `login` as root; exits 0 once the cluster is ready
#   mfa.sh      the login node has a user `mfa` whose SSH login needs a one-time
#               password too (see one_time_password_user)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
action=${1:?usage: testbed.sh up|down|prepare|access|run|project|logs|shell|ready|exec SCHEDULER [args]}
sched=${2:?usage: testbed.sh ACTION SCHEDULER}
shift 2
dir="$here/docker/$sched"
[ -f "$dir/compose.yaml" ] || { echo "testbed: no testbed for '$sched' (docker/$sched/compose.yaml)" >&2; exit 2; }

export NODE_IMAGE=${NODE_IMAGE:-jqref/node:trixie}
export JQREF_SRC="$here"
READY_TIMEOUT=${READY_TIMEOUT:-300}
# TESTBED_PROJECT runs a second instance of a testbed beside the first (e.g. for benchmarks).
# ISOLATED=1 is the variant whose compute nodes cannot reach this machine
# (docker/isolated.yaml); its suite runs in SSH mode with the scheduler on
# the login node (pytest's --isolated).
# SCALE=1 is the variant whose nodes advertise many more CPUs than the machine
# has (docker/scale.yaml; SLURM and HTCondor), for 64 small jobs at once.
compose_files=(-f "$dir/compose.yaml")
if [ "${SCALE:-0}" = 1 ]; then
    [ "$sched" = slurm ] || [ "$sched" = htcondor ] || { echo "testbed: SCALE=1 exists for slurm and htcondor" >&2; exit 2; }
    [ "${ISOLATED:-0}" = 1 ] && { echo "testbed: SCALE=1 and ISOLATED=1 do not combine" >&2; exit 2; }
    project=${TESTBED_PROJECT:-jqref-scale-$sched}
    compose_files+=(-f "$here/docker/scale.yaml")
elif [ "${ISOLATED:-0}" = 1 ]; then
    project=${TESTBED_PROJECT:-jqref-iso-$sched}
    compose_files+=(-f "$here/docker/isolated.yaml")
else
    project=${TESTBED_PROJECT:-jqref-$sched}
fi
compose=(docker compose --project-name "$project" --project-directory "$dir" "${compose_files[@]}")

# Every line with the time of day, and every step of bringing a testbed up or
# down with how long it took: a slow build and a slow cluster start look different.
log() { printf 'testbed[%s] %s: %s\n' "$sched" "$(date +%T)" "$*" >&2; }
now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((t / 1000)); }
# timed WHAT COMMAND...: run COMMAND, then log "WHAT in 12.3s" (or that it failed, after how long).
timed() {
    local what=$1 start status=0 ms
    shift
    start=$(now_ms)
    "$@" || status=$?
    ms=$(($(now_ms) - start))
    if [ "$status" = 0 ]; then
        log "$what in $((ms / 1000)).$((ms % 1000 / 100))s"
    else
        log "$what failed after $((ms / 1000)).$((ms % 1000 / 100))s (exit status $status)"
    fi
    return "$status"
}

ready() { "${compose[@]}" exec -T login bash /src/docker/"$sched"/ready.sh; }

# SSH access for the suite's SSH mode: one client key and one host key for
# all testbeds, generated here (build/ is ignored by git), then sshd on the
# login node and on a bastion if the testbed has one. The host gets an ssh
# config and known_hosts for them in build/ssh/<project>.{config,known_hosts},
# with host aliases <project>-login, <project>-bastion, <project>-via-bastion.
# The host keys are also certified by build/ssh/host_ca (see host_certificate).
ssh_dir="$here/build/ssh"
ssh_keys() {
    mkdir -p "$ssh_dir/keys" && chmod 700 "$ssh_dir"
    [ -f "$ssh_dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C jqref-testbed -f "$ssh_dir/id_ed25519"
    [ -f "$ssh_dir/keys/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C jqref-testbed-host -f "$ssh_dir/keys/ssh_host_ed25519_key"
    cp "$ssh_dir/id_ed25519.pub" "$ssh_dir/keys/authorized_keys"
}

# $service's host certificate, signed for the names the client reaches it by
# (service name and address) by the testbed's certificate authority for host
# keys (build/ssh/host_ca, made here on first use), as sites that sign host
# keys have (known_hosts @cert-authority lines); copied to the node.
host_certificate() {
    local service=$1 address=$2 cert="$ssh_dir/certs/$project-$1"
    [ -f "$ssh_dir/host_ca" ] || ssh-keygen -q -t ed25519 -N '' -C jqref-testbed-host-ca -f "$ssh_dir/host_ca"
    mkdir -p "$ssh_dir/certs"
    cp "$ssh_dir/keys/ssh_host_ed25519_key.pub" "$cert.pub"
    ssh-keygen -q -s "$ssh_dir/host_ca" -h -I "$project-$service" -n "$service,$address" -V -1d:+90d "$cert.pub"
    "${compose[@]}" cp "$cert-cert.pub" "$service:/etc/jqref-ssh/ssh_host_ed25519_key-cert.pub" >/dev/null
}

# A node's address as this machine reaches it: on the `outside` network when it has one.
address_of() {
    docker inspect -f "{{with index .NetworkSettings.Networks \"${project}_outside\"}}{{.IPAddress}}{{else}}{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}{{end}}" \
        "$("${compose[@]}" ps -q "$1")"
}

# The host firewall half of ISOLATED=1: no new connection from the nodes'
# network to this machine (replies to connections made from here still pass).
# iptables needs root: sudo when not root (CI runners, laptops).
iptables_() { if [ "$(id -u)" = 0 ]; then iptables "$@"; else sudo iptables "$@"; fi; }

isolate() {
    local bridge rule
    bridge="br-$(docker network inspect -f '{{.Id}}' "${project}_default" | cut -c1-12)"
    rule=(INPUT -i "$bridge" -m conntrack --ctstate NEW -m comment --comment "$project" -j DROP)
    iptables_ -C "${rule[@]}" 2>/dev/null || iptables_ -I "${rule[@]}"
    log "compute nodes cannot connect to this machine (iptables INPUT drop on $bridge)"
}

unisolate() {
    local rule args
    while rule=$(iptables_ -S INPUT 2>/dev/null | grep -F -- "--comment $project " | head -n1) && [ -n "$rule" ]; do
        read -ra args <<<"${rule/-A/-D}"
        iptables_ "${args[@]}"
    done
}

start_sshd() {
    local services host_key config known
    services=$("${compose[@]}" config --services)
    host_key=$(cut -d' ' -f1,2 "$ssh_dir/keys/ssh_host_ed25519_key.pub")
    config="$ssh_dir/$project.config"
    known="$ssh_dir/$project.known_hosts"
    : >"$config"
    echo "login $host_key" >"$known"
    for service in login bastion; do
        grep -qx "$service" <<<"$services" || continue
        # Isolated: the client reaches the login node only, directly.
        [ "$service" = bastion ] && [ "${ISOLATED:-0}" = 1 ] && continue
        "${compose[@]}" cp "$ssh_dir/keys/." "$service:/etc/jqref-ssh" >/dev/null
        host_certificate "$service" "$(address_of "$service")"
        "${compose[@]}" exec -T "$service" /usr/local/sbin/jqref-sshd
        echo "$(address_of "$service") $host_key" >>"$known"
        printf 'Host %s-%s\n  HostName %s\n' "$project" "$service" "$(address_of "$service")" >>"$config"
        printf '  User dask\n  IdentityFile %s\n  UserKnownHostsFile %s\n' "$ssh_dir/id_ed25519" "$known" >>"$config"
    done
    if grep -qx bastion <<<"$services" && [ "${ISOLATED:-0}" != 1 ]; then
        printf 'Host %s-via-bastion\n  HostName login\n  ProxyJump %s-bastion\n' "$project" "$project" >>"$config"
        printf '  User dask\n  IdentityFile %s\n  UserKnownHostsFile %s\n' "$ssh_dir/id_ed25519" "$known" >>"$config"
    fi
}

# The user mfa of testbeds whose login node has one (docker/<s>/mfa.sh): its
# TOTP secret generated once per project into build/ssh/<project>.mfa-secret
# (hex), installed on the login node with the client key, and a host alias
# <project>-mfa in the project's ssh config (the key; the code is asked).
one_time_password_user() {
    local secret="$ssh_dir/$project.mfa-secret" config="$ssh_dir/$project.config"
    [ -s "$secret" ] || (umask 077 && od -An -tx1 -N20 /dev/urandom | tr -d ' \n' >"$secret")
    "${compose[@]}" cp "$secret" login:/etc/jqref-ssh/mfa-secret >/dev/null
    "${compose[@]}" exec -T login /usr/local/sbin/jqref-mfa /etc/jqref-ssh/mfa-secret
    printf 'Host %s-mfa\n  HostName %s\n' "$project" "$(address_of login)" >>"$config"
    printf '  User mfa\n  IdentityFile %s\n  UserKnownHostsFile %s\n' "$ssh_dir/id_ed25519" "$ssh_dir/$project.known_hosts" >>"$config"
}

wait_ready() {
    [ -f "$dir/ready.sh" ] || return 0
    local deadline=$((SECONDS + READY_TIMEOUT)) out waited=$SECONDS
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
    # "ready in Ns" counts from the start of `up` (bench_slurm.py reads it).
    log "ready in ${SECONDS}s (ready.sh passing after $((SECONDS - waited))s of waiting)"
}

# Another project's command in the testbed, as a user who logged in would
# run it: over SSH to the login node as the test user, with a terminal (a
# login session: os.getlogin() answers), in its tree on the shared home.
# Its wheels go into an environment of its own on the shared home
# (/home/dask/.jqref-runs/<name>, so every node sees it), made from the
# nodes' Python and seeing the nodes' packages (/opt/jqref: the same
# distributed) after its own: a project that pins older versions gets them,
# and /opt/jqref, which jqref's own suite runs in, never changes.
# INTERFACE_ALIASES=1 for `run`: the interface aliases dask-jobqueue's own CI
# gives its nodes, eth0:scheduler on the login node and eth0:worker on the
# compute nodes, each an extra address on eth0 in 10.99.0.0/24 (one network:
# they reach each other). Added from the host, in each node's network namespace.
interface_aliases() {
    local service pid label number=10 address
    for service in $("${compose[@]}" ps --services --status running); do
        case "$service" in
            login) label=eth0:scheduler address=10.99.0.1 ;;
            bastion) continue ;;
            *) label=eth0:worker address=10.99.0.$((number += 1)) ;;
        esac
        pid=$(docker inspect -f '{{.State.Pid}}' "$("${compose[@]}" ps -q "$service")")
        if ! nsenter -t "$pid" -n ip -brief address show dev eth0 label "$label" | grep -q .; then
            nsenter -t "$pid" -n ip address add "$address/24" dev eth0 label "$label"
        fi
        log "$service: $label ($address)"
    done
}

# /shared_space on every node, one directory for all (on the shared home), as
# dask-jobqueue's CI clusters have it: its runner test writes its scheduler file there.
shared_space() {
    local service
    "${compose[@]}" exec -T login install -d -m 1777 /home/.shared_space
    for service in $("${compose[@]}" ps --services --status running); do
        [ "$service" = bastion ] || "${compose[@]}" exec -T "$service" ln -sfn /home/.shared_space /shared_space
    done
}

run_project() {
    local wheels=${WHEELS:-} tree=${TREE:-} cmd=${CMD:?run: say what to run, CMD='...'} workdir=/home/dask name=run run_env
    if [ -n "$tree" ]; then
        name=$(basename "$(cd "$tree" && pwd)")
        workdir=/home/dask/$name
        "${compose[@]}" exec -T login rm -rf "$workdir"
        "${compose[@]}" cp "$tree/." "login:$workdir" >/dev/null
        "${compose[@]}" exec -T login chown -R dask:dask "$workdir"
    fi
    run_env=/home/dask/.jqref-runs/$name
    log "environment $run_env: its own packages first, then the nodes' (/opt/jqref, unchanged)"
    "${compose[@]}" exec -T -u dask login bash -euc '
        [ -x "$1/bin/python" ] || python3 -m venv --without-pip "$1"
        purelib() { "$1" -c "import sysconfig; print(sysconfig.get_path(\"purelib\"))"; }
        purelib /opt/jqref/bin/python >"$(purelib "$1/bin/python")/_jqref_nodes.pth"' - "$run_env"
    if [ -n "$wheels" ]; then
        ls "$wheels"/*.whl >/dev/null 2>&1 || { echo "testbed: WHEELS=$wheels holds no *.whl files" >&2; exit 2; }
        "${compose[@]}" exec -T login rm -rf /home/dask/.jqref-wheels
        "${compose[@]}" cp "$wheels/." login:/home/dask/.jqref-wheels >/dev/null
        "${compose[@]}" exec -T login chown -R dask:dask /home/dask/.jqref-wheels
        log "installing $(ls "$wheels"/*.whl | wc -l) wheel(s) into $run_env"
        "${compose[@]}" exec -T -u dask login bash -c '/opt/jqref/bin/python -m pip --python "$1/bin/python" install \
            --quiet --disable-pip-version-check --no-index --find-links /home/dask/.jqref-wheels /home/dask/.jqref-wheels/*.whl' \
            - "$run_env"
    fi
    if [ "${INTERFACE_ALIASES:-0}" = 1 ]; then interface_aliases; fi
    shared_space
    # A login session needs utmp, where sshd records it and getlogin() looks.
    "${compose[@]}" exec -T login bash -c '[ -e /run/utmp ] || install -m 0664 -g utmp /dev/null /run/utmp'
    [ -f "$ssh_dir/$project.config" ] || "$0" access "$sched"
    log "running as dask in $workdir on login, logged in over SSH: $cmd"
    ssh -F "$ssh_dir/$project.config" -tt -o LogLevel=ERROR "$project-login" \
        "cd $(printf %q "$workdir") && export VIRTUAL_ENV=$run_env PATH=$run_env/bin:/opt/jqref/bin:\$PATH && exec bash -c $(printf %q "$cmd")" </dev/null
}

case "$action" in
    prepare)
        timed "docker engine ready" "$here/scripts/docker-engine.sh"
        timed "node image ready (base image, wheelhouse, build)" "$here/scripts/node-image.sh"
        if [ -x "$dir/prepare.sh" ]; then timed "$sched's prepare.sh" "$dir/prepare.sh"; fi
        ssh_keys
        ;;
    up)
        log "bringing up $project"
        timed "prepared" "$0" prepare "$sched"
        timed "images built and containers started (compose up --build)" "${compose[@]}" up --detach --build --quiet-pull
        wait_ready
        timed "SSH access ready" "$0" access "$sched"
        log "$project up in ${SECONDS}s"
        ;;
    access)
        start_sshd
        if [ -f "$dir/mfa.sh" ]; then one_time_password_user; fi
        if [ "${ISOLATED:-0}" = 1 ]; then isolate; fi
        ;;
    down)
        if [ "${ISOLATED:-0}" = 1 ]; then unisolate; fi
        timed "$project down" "${compose[@]}" down --volumes --remove-orphans --timeout 5
        ;;
    unisolate) unisolate ;;
    project) echo "$project" ;;
    run) run_project ;;
    logs) "${compose[@]}" logs "$@" ;;
    shell) "${compose[@]}" exec login bash "$@" ;;
    ready) ready ;;
    exec) "${compose[@]}" exec -T "$@" ;;
    *) echo "testbed: unknown action '$action'" >&2; exit 2 ;;
esac
