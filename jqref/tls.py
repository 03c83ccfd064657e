"""TLS between client, scheduler and workers, from one distributed `Security`.

By default (``security=None`` or ``True``) every cluster makes a key and
certificate for itself alone, in memory, wherever its scheduler runs: a Dask
scheduler runs whatever code its clients send, as the cluster's owner, and
anyone on the same machine can reach its port. A scheduler on the login node
gets its material over the SSH channel.

The workers get theirs as files, as dask-jobqueue gives them, written and
removed with the jobs' other files (`worker_files`): their paths on the
worker's command line. Job scripts carry paths, never keys. Material given as
paths is passed as those paths.
"""

from __future__ import annotations

import copy
import pathlib
import secrets
import warnings

import dask.config
from distributed.security import Security

from .tls_roles import cluster_credentials


class InsecureSchedulerWarning(UserWarning):
    """A scheduler others can connect to runs without TLS."""


def cluster_security(security: Security | bool | None) -> Security | None:
    """The cluster's `Security`. `security=None` means the default, TLS with
    a certificate made for this cluster alone, wherever the scheduler runs:
    a Dask scheduler runs whatever code its clients send, as the cluster's
    owner, and its port is open to every user of the machine it runs on.
    Declining it with `security=False` is warned about."""
    if security is False:
        warnings.warn(
            "security=False: the Dask scheduler runs without TLS, so anyone who can reach its port (every "
            "user of the machine it runs on, at least) can run code as you through it",
            InsecureSchedulerWarning,
            stacklevel=3,
        )
        return None
    if security is None or security is True:
        return cluster_credentials()
    if not isinstance(security, Security):
        raise TypeError(f"security must be a distributed.Security, True, False or None, got {security!r}")
    if not security.require_encryption:
        return security
    missing = [f for f in ("tls_ca_file", "tls_scheduler_cert", "tls_worker_cert") if not getattr(security, f)]
    if missing:
        raise ValueError(f"security requires encryption but has no {', '.join(missing)}")
    return security


def _pem(value: str | None) -> str | None:
    """Certificate or key contents, whether given as contents or as a local path."""
    if value is None or "\n" in value:
        return value
    return pathlib.Path(value).expanduser().read_text()


def role_options(security: Security, role: str) -> dict:
    """Keyword arguments for `Security` that let `role` ("scheduler", "worker") talk TLS."""
    return {
        "require_encryption": security.require_encryption,
        "tls_ca_file": _pem(security.tls_ca_file),
        f"tls_{role}_cert": _pem(getattr(security, f"tls_{role}_cert")),
        f"tls_{role}_key": _pem(getattr(security, f"tls_{role}_key")),
    }


def security_contents(security: Security) -> dict:
    """Keyword arguments for `Security` that make the same one in another process: all its material as PEM contents."""
    roles = ("client", "scheduler", "worker")
    return {
        "require_encryption": security.require_encryption,
        "tls_ca_file": _pem(security.tls_ca_file),
        **{
            f"tls_{role}_{part}": _pem(getattr(security, f"tls_{role}_{part}"))
            for role in roles
            for part in ("cert", "key")
        },
    }


def worker_environment(security: Security) -> dict[str, str]:
    """Environment that makes a worker started by the `dask worker` command
    use TLS: dask config passed the way dask passes it to subprocesses."""
    worker = role_options(security, "worker")
    config = {
        "distributed": {
            "comm": {
                "require-encryption": worker["require_encryption"],
                "tls": {
                    "ca-file": worker["tls_ca_file"],
                    "worker": {"cert": worker["tls_worker_cert"], "key": worker["tls_worker_key"]},
                },
            }
        }
    }
    return {"DASK_INTERNAL_INHERIT_CONFIG": dask.config.serialize(config)}


#: The worker's parts of a `Security`, and the `dask worker` option for each.
WORKER_TLS_OPTIONS = {"tls_ca_file": "--tls-ca-file", "tls_worker_cert": "--tls-cert", "tls_worker_key": "--tls-key"}


def worker_paths(security: Security) -> dict[str, str] | None:
    """The worker's material as `dask worker` options, if it is all given as paths."""
    values = {option: getattr(security, field) for field, option in WORKER_TLS_OPTIONS.items()}
    if any(value is None or "\n" in value for value in values.values()):
        return None
    return values


def worker_credential_files(security: Security) -> dict[str, tuple[str, str]]:
    """The workers' material given as contents, to go in files: for each
    `Security` field, a file name of its own (dask-jobqueue's, made unique)
    and the text."""
    return {
        field: (
            f".dask-jobqueue.worker.{field.removeprefix('tls_').removeprefix('worker_')}.{secrets.token_hex(6)}",
            value,
        )
        for field in WORKER_TLS_OPTIONS
        if (value := getattr(security, field)) is not None and "\n" in value
    }


def with_paths(security: Security, paths: dict[str, str]) -> Security:
    """A copy of `security` whose fields in `paths` name files instead."""
    copied = copy.copy(security)
    for field, path in paths.items():
        setattr(copied, field, path)
    return copied
