"""jqref's code in processes where jqref is not installed: distributed preloads.

In the jobs, the preloads are files the cluster writes (`worker_files`),
named on the worker's command line. A scheduler on the login node gets them
as text, in the options it reads from its SSH channel: distributed reads a
preload that is not a module name or a path as the source text of one. The
text is one line of base64 (no quoting surprises on any command line) run
with the file name it has here, so that its tracebacks say where it comes
from.
"""

from __future__ import annotations

import base64
import functools
import zlib
from collections.abc import Mapping

import dask.config

from . import tls_roles
from .worker_files import TLS_MODULES, module_name, module_source


@functools.cache
def preload_text(module) -> str:
    name = module_name(module) + ".py"
    packed = base64.b64encode(zlib.compress(module_source(module).encode(), 9)).decode()
    # One expression; distributed takes it for source because it has spaces.
    return (
        f"exec(compile(__import__('zlib').decompress(__import__('base64').b64decode({packed!r})), "
        f"{'jqref/' + name!r}, 'exec'))"
    )


def worker_preload_args(nanny: bool, files: Mapping[str, str]) -> list[str]:
    """`dask worker` options that load jqref's modules from `files` (module
    short name to path, `WorkerFiles.preloads`): the version check in the
    job's first process, the nanny if there is one; the SIGTERM handling in
    the worker processes; the TLS fix in all of them."""
    args = ["--preload-nanny" if nanny else "--preload", files["worker_versions"], "--preload", files["worker_signals"]]
    for module in TLS_MODULES:
        if (path := files.get(module_name(module))) is not None:
            args += ["--preload", path, *(["--preload-nanny", path] if nanny else [])]
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
