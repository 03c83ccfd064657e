#!/usr/bin/env bash
# Start sshd on a testbed node (login, bastion) for the SSH mode of the suite.
# scripts/testbed.sh copies the keys generated at bring-up into
# /etc/jqref-ssh first: the host key, authorized_keys for user dask, and the
# host certificate the testbed's CA signed for this node (for known_hosts
# @cert-authority lines), if there is one.
# Safe to run again: it (re)installs keys, starts sshd if missing, and has a
# running sshd re-read its keys and configuration if they changed.
set -euo pipefail
keys=/etc/jqref-ssh
config=/etc/ssh/sshd_config.d/jqref.conf
state() { cat "$config" /etc/ssh/ssh_host_ed25519_key* 2>/dev/null || true; }
before=$(state)
install -m 0600 "$keys/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 0644 "$keys/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
certificate=
if [ -f "$keys/ssh_host_ed25519_key-cert.pub" ]; then
    install -m 0644 "$keys/ssh_host_ed25519_key-cert.pub" /etc/ssh/ssh_host_ed25519_key-cert.pub
    certificate="HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub"
fi
install -d -o dask -g dask -m 0700 /home/dask/.ssh
install -o dask -g dask -m 0600 "$keys/authorized_keys" /home/dask/.ssh/authorized_keys
install -d -m 0755 /run/sshd
# The suite cuts connections, kills sessions and presents wrong host keys on
# purpose, all from one address (this machine's bridge): OpenSSH 9.8 and later
# would penalise that address and close its next logins before the banner for
# up to 10 minutes, failing whichever tests came next. (Older sshd has no such option.)
penalties=
if /usr/sbin/sshd -t -o PerSourcePenalties=no 2>/dev/null; then
    penalties="PerSourcePenalties no"
fi
cat >"$config" <<CONF
HostKey /etc/ssh/ssh_host_ed25519_key
$certificate
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers dask
AllowTcpForwarding yes
MaxSessions 10
$penalties
CONF
if ! pgrep -x sshd >/dev/null; then
    /usr/sbin/sshd
elif [ "$before" != "$(state)" ]; then
    pkill -HUP -x -o sshd  # the listener (the oldest sshd) re-executes itself with the new keys and configuration
fi
