"""The files a cluster's jobs read, written where the batch commands run.

Two kinds, written together when the cluster starts and removed when it
closes (or by `jqref cleanup` after a crash, from the record): the workers'
TLS key and certificates (`tls.worker_credential_files`), and jqref's code
that runs inside the jobs as distributed preloads, since the compute nodes do
not have jqref. Job scripts name these files by path: an administrator
reading a script reads shell and paths, and the code itself in the file,
never encoded text. Every file is the user's alone (0600), in the
`shared_temp_directory` or else in ``~/.jqref/credentials`` (0700).
"""

from __future__ import annotations

import importlib.resources
import os
import posixpath
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType

from distributed.security import Security

from . import ssl_error_queue, worker_signals, worker_versions
from .runners import Runner
from .tls import worker_credential_files

#: Where the files go without a shared_temp_directory: in the home where the
#: commands run (a relative path is the home's), which compute nodes share
#: with the login node at the sites jqref is for.
DEFAULT_DIRECTORY = ".jqref/credentials"

#: Run in every job: the version check (first), the SIGTERM handling.
WORKER_MODULES = (worker_versions, worker_signals)
#: Run in every process of a cluster that talks TLS: nanny, workers, scheduler.
TLS_MODULES = (ssl_error_queue,)
#: How a preload's key among the files starts; the rest is its module's short name.
PRELOAD = "preload:"


def module_name(module: ModuleType) -> str:
    return module.__name__.rpartition(".")[2]


def module_source(module: ModuleType) -> str:
    """A module's source as this package holds it."""
    return importlib.resources.files(__package__).joinpath(module_name(module) + ".py").read_text()


def preload_files(tls: bool) -> dict[str, tuple[str, str]]:
    """jqref's modules for the jobs: for each, a file name of its own (an
    importable module name, which distributed imports the file as) and its
    source, the version check's with this client's versions in it."""
    token = secrets.token_hex(6)
    files = {}
    for module in (*WORKER_MODULES, *(TLS_MODULES if tls else ())):
        source = module_source(module)
        if module is worker_versions:
            source = worker_versions.for_this_client(source)
        files[PRELOAD + module_name(module)] = (f"jqref_{module_name(module)}_{token}.py", source)
    return files


@dataclass
class WorkerFiles:
    """One cluster's files for its jobs: what to write, and where they are."""

    #: Where they go where the commands run; relative: in the home.
    directory: str
    #: By key (a `Security` field, or PRELOAD + module): file name and text.
    texts: dict[str, tuple[str, str]]
    #: Whether the directory is jqref's own, made the user's alone (0700),
    #: rather than a shared_temp_directory given.
    private_directory: bool
    #: By key: the path of each file once written (or recorded by the client that detached).
    written: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_cluster(cls, security: Security | None, directory: str | None) -> WorkerFiles:
        tls = security is not None
        texts = {**(worker_credential_files(security) if tls else {}), **preload_files(tls)}
        return cls(directory or DEFAULT_DIRECTORY, texts, private_directory=directory is None)

    @property
    def paths(self) -> dict[str, str]:
        """Each file's path: where it was written, or else where it will be
        (this machine's home standing for the one the commands run in)."""
        if self.written:
            return dict(self.written)
        home = os.path.expanduser(self.directory)
        return {key: posixpath.join(home, name) for key, (name, _) in self.texts.items()}

    @property
    def credentials(self) -> dict[str, str]:
        """The TLS files' paths, by `Security` field."""
        return {key: path for key, path in self.paths.items() if not key.startswith(PRELOAD)}

    @property
    def preloads(self) -> dict[str, str]:
        """The preload files' paths, by module short name (`worker_signals`)."""
        return {key.removeprefix(PRELOAD): path for key, path in self.paths.items() if key.startswith(PRELOAD)}

    async def write(self, runner: Runner) -> dict[str, str]:
        """Write the files not yet written; their paths, by key. An OSError if
        the directory cannot take them."""
        if not self.written:
            texts = dict(self.texts.values())
            paths = await runner.write_private_files(self.directory, texts, private_directory=self.private_directory)
            self.written = {key: paths[name] for key, (name, _) in self.texts.items()}
        return self.paths

    async def remove(self, runner: Runner) -> None:
        if self.written:
            await runner.remove_files(list(self.written.values()))


def recorded(paths: Mapping[str, str], directory: str | None) -> WorkerFiles:
    """The files a detached client wrote, as its session's record lists them."""
    return WorkerFiles(directory or DEFAULT_DIRECTORY, {}, private_directory=directory is None, written=dict(paths))
