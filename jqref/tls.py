"""TLS between client, scheduler and workers, from one distributed `Security`.

``security=True`` makes a key and self-signed certificate for this cluster
only, in memory (``Security.temporary``). A scheduler on the login node and
the workers get the material as PEM contents, never as paths on this
machine: it reaches them over the SSH channel and inside the job script,
never as a file written on the way.
"""

from __future__ import annotations

import pathlib

import dask.config
from distributed.security import Security


def cluster_security(security: Security | bool | None) -> Security | None:
    if security is True:
        return Security.temporary()
    if security is None or security is False:
        return None
    if not isinstance(security, Security):
        raise TypeError(f"security must be a distributed.Security, True or None, got {security!r}")
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


def worker_environment(security: Security) -> dict[str, str]:
    """Environment that makes a worker started by the `dask worker` command
    use TLS: dask config passed the way dask passes it to subprocesses."""
    worker = role_options(security, "worker")
    config = {"distributed": {"comm": {
        "require-encryption": worker["require_encryption"],
        "tls": {"ca-file": worker["tls_ca_file"],
                "worker": {"cert": worker["tls_worker_cert"], "key": worker["tls_worker_key"]}},
    }}}
    return {"DASK_INTERNAL_INHERIT_CONFIG": dask.config.serialize(config)}
