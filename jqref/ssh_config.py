"""Where `ssh destination` would connect, and which host keys to accept.

Hosts are resolved as OpenSSH resolves them, from ``~/.ssh/config``
(HostName, User, Port, IdentityFile, UserKnownHostsFile, ProxyJump chains),
apart from any connection so that the resolution can be checked on its own.
An unknown or changed host key is refused unless the caller opts in to
trusting new hosts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import paramiko

from .option_checks import Port, SSHDestination, check

logger = logging.getLogger(__name__)


class TrustNewHosts(paramiko.MissingHostKeyPolicy):
    """Explicit opt-in only: accept a host seen for the first time and record it
    in `known_hosts`. A *changed* key is still refused (paramiko raises
    BadHostKeyException before asking any policy)."""

    def __init__(self, known_hosts: str):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        logger.warning("trusting new host key %s %s for %s", key.get_name(), key.fingerprint, hostname)
        client.get_host_keys().add(hostname, key.get_name(), key)
        os.makedirs(os.path.dirname(self.known_hosts), mode=0o700, exist_ok=True)
        client.save_host_keys(self.known_hosts)


@dataclass(frozen=True)
class Hop:
    """One SSH server to log in to, as OpenSSH would resolve it."""

    hostname: str
    port: int = 22
    user: str | None = None
    identity_files: tuple[str, ...] = ()
    known_hosts: tuple[str, ...] = ()
    jumps: tuple[str, ...] = field(default=(), compare=False)


def _split_destination(destination: str, what: str = "ssh", where: str = "") -> tuple[str | None, str, int | None]:
    """(user, host, port) of '[user@]host[:port]' or 'ssh://[user@]host[:port]',
    read strictly: a slip (``user@@host``, port 70000) fails here, naming
    `what`, and not at the first connection, after the cluster has started."""
    return check(what, destination, SSHDestination(), where)


def resolve(
    destination: str, config: paramiko.SSHConfig, known_hosts: tuple[str, ...] = (), what: str = "ssh", where: str = ""
) -> Hop:
    """What `ssh destination` would connect to, from the ssh config; `what`
    and `where` name the destination in errors (``ssh``, or a ProxyJump)."""
    user, alias, port = _split_destination(destination, what, where)
    options = config.lookup(alias)
    jumps = options.get("proxyjump", "none")
    files = tuple(os.path.expanduser(f) for f in options.get("userknownhostsfile", "~/.ssh/known_hosts").split())
    return Hop(
        hostname=options.get("hostname", alias),
        port=port or check("Port", options.get("port", 22), Port(), f" (ssh config, Host {alias})"),
        user=user or options.get("user"),
        identity_files=tuple(os.path.expanduser(f) for f in options.get("identityfile", [])),
        known_hosts=known_hosts + files,
        jumps=() if jumps.lower() == "none" else tuple(j.strip() for j in jumps.split(",")),
    )


def hops_to(
    destination: str,
    config: paramiko.SSHConfig,
    known_hosts: tuple[str, ...] = (),
    depth: int = 0,
    what: str = "ssh",
    where: str = "",
) -> list[Hop]:
    """Every server on the way to `destination`, jump hosts first."""
    if depth > 8:
        raise ValueError(f"ProxyJump chain to {destination!r} is too long (a loop?)")
    target = resolve(destination, config, known_hosts, what, where)
    hops: list[Hop] = []
    for jump in target.jumps:
        hops += hops_to(
            jump, config, known_hosts, depth + 1, "ProxyJump", f" (ssh config, on the way to {destination})"
        )
    return [*hops, target]
