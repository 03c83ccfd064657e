#!/usr/bin/env bash
# Run as root on the login node by scripts/testbed.sh once sshd runs:
# jqref-mfa SECRET_FILE. Gives user mfa the client key of user dask and the
# TOTP secret (hex, generated on the host at bring-up) that pam_oath checks:
# 6 digits, 30 s steps, one step of clock skew either way; a code is
# accepted once (pam_oath refuses a replayed one).
set -euo pipefail
secret=$(tr -d ' \n' <"${1:?usage: jqref-mfa SECRET_FILE}")
[[ "$secret" =~ ^[0-9a-f]{40}$ ]] || { echo "jqref-mfa: $1 does not hold a 20-byte hex secret" >&2; exit 1; }
install -m 0600 /dev/stdin /etc/users.oath <<<"HOTP/T30/6 mfa - $secret"
install -d -o mfa -g mfa -m 0700 /home/mfa/.ssh
install -o mfa -g mfa -m 0600 /etc/jqref-ssh/authorized_keys /home/mfa/.ssh/authorized_keys
