#!/usr/bin/env bash
# Start sshd on a testbed node (login, bastion) for the SSH mode of the suite.
# scripts/testbed.sh copies the keys generated at bring-up into
# /etc/jqref-ssh first: the host key, and authorized_keys for user dask.
# Safe to run again: it only (re)installs keys and starts sshd if missing.
set -euo pipefail
keys=/etc/jqref-ssh
install -m 0600 "$keys/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 0644 "$keys/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
install -d -o dask -g dask -m 0700 /home/dask/.ssh
install -o dask -g dask -m 0600 "$keys/authorized_keys" /home/dask/.ssh/authorized_keys
install -d -m 0755 /run/sshd
cat >/etc/ssh/sshd_config.d/jqref.conf <<CONF
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers dask
AllowTcpForwarding yes
MaxSessions 10
CONF
pgrep -x sshd >/dev/null || /usr/sbin/sshd
