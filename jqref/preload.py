"""jqref's code inside the jobs, where jqref is not installed: distributed preloads.

distributed reads a preload that is not a module name or a path as the
source text of one, so a module of jqref that needs only distributed travels
as text on the worker's command line. It goes as one line of base64 (no
quoting surprises in any job script or submit description) and is run with
the file name it has here, so that its tracebacks say where it comes from.
"""

from __future__ import annotations

import base64
import functools
import importlib.resources
import zlib

import dask.config

from . import ssl_error_queue, tls_roles, worker_signals

#: Run in every job's worker processes.
WORKER_MODULES = (worker_signals,)
#: Run in every process of a cluster that talks TLS: nanny, workers, scheduler.
TLS_MODULES = (ssl_error_queue,)


@functools.cache
def preload_text(module) -> str:
    name = module.__name__.rpartition(".")[2] + ".py"
    source = importlib.resources.files(__package__).joinpath(name).read_bytes()
    packed = base64.b64encode(zlib.compress(source, 9)).decode()
    # One expression; distributed takes it for source because it has spaces.
    return (
        f"exec(compile(__import__('zlib').decompress(__import__('base64').b64decode({packed!r})), "
        f"{'jqref/' + name!r}, 'exec'))"
    )


def worker_preload_args(nanny: bool, tls: bool) -> list[str]:
    """`dask worker` options that load these modules in the worker processes and the nanny."""
    tls_modules = TLS_MODULES if tls else ()
    args = [arg for module in (*WORKER_MODULES, *tls_modules) for arg in ("--preload", preload_text(module))]
    if nanny:
        args += [arg for module in tls_modules for arg in ("--preload-nanny", preload_text(module))]
    return args


def scheduler_preloads(tls: bool) -> list[str]:
    """Preload texts for a scheduler started elsewhere (on the login node)."""
    return [preload_text(module) for module in TLS_MODULES] if tls else []


def roles_guard(as_text: bool) -> list[str]:
    """The preload that keeps a worker's certificate from acting as a client's
    (`tls_roles`): its module name here, its text on the login node."""
    return [preload_text(tls_roles) if as_text else tls_roles.__name__]


def with_preloads(options: dict, first: list[str], last: list[str], *, here: bool) -> dict:
    """A scheduler's `options` with `first` preloaded before the ones given
    and `last` after them; per-preload argv lists follow. A scheduler `here`
    would have read this process's dask config for the ones not given."""

    def given(key: str, config_key: str):
        return options[key] if key in options else dask.config.get(config_key) if here else None

    preloads = given("preload", "distributed.scheduler.preload")
    preloads = [preloads] if isinstance(preloads, str) else list(preloads or [])
    updated = {**options, "preload": [*first, *preloads, *last]}
    argv = given("preload_argv", "distributed.scheduler.preload-argv")
    if argv and isinstance(argv[0], (list, tuple)):  # one list per preload given
        updated["preload_argv"] = [*([[]] * len(first)), *argv, *([[]] * len(last))]
    return updated
