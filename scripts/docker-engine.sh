#!/usr/bin/env bash
# Make sure a Docker engine and the compose v2 plugin are usable.
#
# On a machine where `docker info` already works this does nothing. On a
# Debian/Ubuntu machine without an engine (our CI machines) it installs
# Debian's docker.io, the compose plugin (from Debian trixie when the running
# release does not carry it) and starts dockerd, coping with a stale pid file
# or socket left by a daemon that was killed. Anywhere else it says what is
# missing and stops.
set -euo pipefail

log() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/jqref-dockerd.log}
COMPOSE_PLUGIN_DIR=/usr/local/libexec/docker/cli-plugins

engine_ok() { docker info >/dev/null 2>&1; }
compose_ok() { docker compose version >/dev/null 2>&1; }

can_provision() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

install_engine() {
    log "installing Debian's docker.io"
    apt_install docker.io iptables ca-certificates
}

# bookworm has no compose v2 package; trixie's static binary runs on it.
install_compose_plugin() {
    if apt-cache show docker-compose-plugin >/dev/null 2>&1 \
        || apt-cache policy docker-compose 2>/dev/null | grep -q 'Candidate: 2\.'; then
        log "installing the compose plugin from this release"
        apt_install docker-compose-plugin 2>/dev/null || apt_install docker-compose
        compose_ok && return 0
    fi
    log "fetching the compose plugin from Debian trixie"
    local tmp
    tmp=$(mktemp -d)
    mkdir -p "$tmp/etc/apt/sources.list.d" "$tmp/lists/partial" "$tmp/cache/archives/partial"
    cat >"$tmp/etc/apt/sources.list.d/trixie.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    local opts=(-o "Dir::Etc::sourcelist=/dev/null"
                -o "Dir::Etc::sourceparts=$tmp/etc/apt/sources.list.d"
                -o "Dir::State::Lists=$tmp/lists"
                -o "Dir::Cache=$tmp/cache"
                -o "Debug::NoLocking=1"
                -o "APT::Sandbox::User=root")
    apt-get "${opts[@]}" update -qq
    (cd "$tmp" && apt-get "${opts[@]}" download docker-compose >/dev/null)
    dpkg-deb -x "$tmp"/docker-compose_*.deb "$tmp/root"
    install -D -m 0755 "$tmp/root/usr/libexec/docker/cli-plugins/docker-compose" \
        "$COMPOSE_PLUGIN_DIR/docker-compose"
    rm -rf "$tmp"
}

start_dockerd() {
    local pidfile=/var/run/docker.pid
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        log "removing stale $pidfile"
        rm -f "$pidfile"
    fi
    if ! pgrep -x dockerd >/dev/null; then
        rm -f /var/run/docker.sock
        pgrep -x containerd >/dev/null || true
        log "starting dockerd (log: $DOCKERD_LOG)"
        nohup dockerd >"$DOCKERD_LOG" 2>&1 &
    fi
    local deadline=$((SECONDS + 60))
    until engine_ok; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            die "dockerd did not answer within 60 s"
        fi
        sleep 1
    done
}

main() {
    if ! engine_ok; then
        if ! can_provision; then
            die "no usable Docker engine ('docker info' fails). Install Docker and the compose plugin, start the daemon, and run this again."
        fi
        command -v dockerd >/dev/null 2>&1 || install_engine
        start_dockerd
    fi
    if ! compose_ok; then
        can_provision || die "'docker compose' (the v2 plugin) is missing; install it and run this again."
        install_compose_plugin
        compose_ok || die "the compose plugin was installed but 'docker compose version' still fails"
    fi
    log "ready: $(docker version --format 'engine {{.Server.Version}}') / $(docker compose version --short)"
}

main "$@"
