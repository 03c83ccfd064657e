"""TLS between client, scheduler and workers, from one distributed `Security`.

``security=True`` makes a key and self-signed certificate for this cluster
only, in memory (``Security.temporary``). It is the default for a scheduler
on a login node: a Dask scheduler runs whatever code its clients send, as the
cluster's owner, and anyone on a shared login node can reach it. A scheduler on the login node and
the workers get the material as PEM contents, never as paths on this
machine: it reaches them over the SSH channel and inside the job script,
never as a file written on the way.

Jobs that read this machine's files (batch commands run here, on a shared
filesystem) get their material as files instead, as dask-jobqueue gives it:
paths on the worker's command line, the files private to the user, in the
`shared_temp_directory`, removed when the cluster closes. Material given as
paths is passed as those paths.
"""

from __future__ import annotations

import contextlib
import copy
import os
import pathlib
import tempfile
import warnings

import dask.config
from distributed.security import Security


class InsecureSchedulerWarning(UserWarning):
    """A scheduler others can connect to runs without TLS."""


def cluster_security(security: Security | bool | None, *, shared_host: bool = False,
                     tls_unavailable: str | None = None) -> Security | None:
    """The cluster's `Security`. `security=None` means the default: TLS with a
    certificate of its own when the scheduler runs on a `shared_host` (unless
    the batch system cannot carry it, `tls_unavailable` saying why), none
    otherwise. Declining it there with `security=False` is warned about."""
    if shared_host and security in (None, False):
        if security is None and tls_unavailable is None:
            security = True
        else:
            reason = "security=False" if security is False else tls_unavailable
            warnings.warn(f"the Dask scheduler on the login node runs without TLS ({reason}): anyone who can reach "
                          "it there can run code as you through it", InsecureSchedulerWarning, stacklevel=3)
            return None
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


def security_contents(security: Security) -> dict:
    """Keyword arguments for `Security` that make the same one in another process: all its material as PEM contents."""
    roles = ("client", "scheduler", "worker")
    return {"require_encryption": security.require_encryption, "tls_ca_file": _pem(security.tls_ca_file),
            **{f"tls_{role}_{part}": _pem(getattr(security, f"tls_{role}_{part}"))
               for role in roles for part in ("cert", "key")}}


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


#: The worker's parts of a `Security`, and the `dask worker` option for each.
WORKER_TLS_OPTIONS = {"tls_ca_file": "--tls-ca-file", "tls_worker_cert": "--tls-cert", "tls_worker_key": "--tls-key"}


def worker_paths(security: Security) -> dict[str, str] | None:
    """The worker's material as `dask worker` options, if it is all given as paths."""
    values = {option: getattr(security, field) for field, option in WORKER_TLS_OPTIONS.items()}
    if any(value is None or "\n" in value for value in values.values()):
        return None
    return values


def worker_security_files(security: Security, directory: str | None) -> tuple[Security, list[str]]:
    """A copy of `security` whose worker material given as contents is in
    files private to the user in `directory` (the current one, with a
    warning, when None), and the files written."""
    if directory is None:
        directory = os.getcwd()
        warnings.warn(f"security: the workers' TLS material goes to files in the current directory ({directory}), "
                      "which the jobs must be able to read: set shared_temp_directory (or "
                      "jobqueue.<scheduler>.shared-temp-directory) to a directory they share", UserWarning,
                      stacklevel=4)
    directory = os.path.expanduser(os.path.expandvars(directory))
    worker = copy.copy(security)
    written = []
    for field in WORKER_TLS_OPTIONS:
        value = getattr(security, field)
        if value is None or "\n" not in value:
            continue
        part = field.removeprefix("tls_").removeprefix("worker_")
        fd, path = tempfile.mkstemp(prefix=f".dask-jobqueue.worker.{part}.", dir=directory)  # mode 0600
        with os.fdopen(fd, "w") as f:
            f.write(value)
        written.append(path)
        setattr(worker, field, path)
    return worker, written


def remove_files(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
