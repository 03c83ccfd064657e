"""A batch job that runs Dask workers: rendering its script, submitting and cancelling it.

`Job` holds everything common to batch systems. A scheduler module subclasses
it and declares only what differs: the directive prefix, the directives for
the resources a job asks for, the submit/cancel/status commands, and how to
read a job id and job states from their output.
"""

from __future__ import annotations

import enum
import functools
import math
import shlex
import sys
import uuid
from collections.abc import Iterable, Sequence
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, ClassVar

from dask.utils import parse_bytes, parse_timedelta
from distributed.core import Status
from distributed.deploy.spec import ProcessInterface

from .config import lookup
from .runners import CommandResult
from .tls import worker_environment

if TYPE_CHECKING:
    from distributed.security import Security

    from .batch import BatchQueue


class JobState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    #: In the queue but never going to run without an administrator (SGE
    #: Eqw, HTCondor held): replaced like an ended job, and cancelled.
    HELD = "held"
    ENDED = "ended"  # completed, failed, cancelled or gone: never coming back

    @property
    def active(self) -> bool:
        """Whether the job is, or will be, running workers."""
        return self in (JobState.PENDING, JobState.RUNNING)


def default_processes(cores: int) -> int:
    """Workers per job when not given: the smallest divisor of `cores` that is at
    least its square root, so that workers and threads per worker stay balanced."""
    return next(p for p in range(1, cores + 1) if cores % p == 0 and p * p >= cores)


def _single_line(what: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"{what} must be a single line, got {value!r}")
    return value


def _as_list(what: str, value: Any) -> list[str]:
    if isinstance(value, str):
        raise TypeError(f"{what} must be a list of strings, got the string {value!r}")
    return [str(v) for v in (value or [])]


@functools.cache
def _client_versions() -> tuple[str, str]:
    return "%d.%d" % sys.version_info[:2], version("distributed")


def _worker_versions_check(python: str) -> str:
    """A script line that stops the job with a clear message when the worker
    environment's Python or distributed differs from the client's: a mismatch
    otherwise surfaces as crashed workers on the first task."""
    want = list(_client_versions())
    code = (
        'import sys, importlib.metadata as m; '
        'have = ["%d.%d" % sys.version_info[:2], m.version("distributed")]; '
        'want = sys.argv[1:]; '
        'have == want or sys.exit("jqref: this worker environment has Python %s and '
        'distributed %s but the client has Python %s and distributed %s; '
        'use the same environment on both sides" % tuple(have + want))'
    )
    return shlex.join([python, "-c", code, *want]) + " || exit 3"


class Job(ProcessInterface):
    """One batch job running `processes` Dask workers.

    `start()` submits the job and returns once the batch system accepted it;
    `close()` cancels it. The workers connect to the scheduler on their own.
    """

    # Declared by each scheduler module.
    config_name: ClassVar[str]
    directive_prefix: ClassVar[str]
    submit_command: ClassVar[Sequence[str]]
    cancel_command: ClassVar[Sequence[str]]
    #: Whether the submit command reads the job script from stdin; if not, the
    #: script is written to a temporary file whose path ends the argv.
    submit_reads_stdin: ClassVar[bool] = True

    def __init__(
        self,
        scheduler: str | None = None,
        name: str | None = None,
        *,
        batch: BatchQueue | None = None,
        cores: int | None = None,
        memory: str | int | None = None,
        processes: int | None = None,
        job_name: str | None = None,
        queue: str | None = None,
        account: str | None = None,
        walltime: str | None = None,
        python: str | None = None,
        interface: str | None = None,
        nanny: bool | None = None,
        protocol: str | None = None,
        death_timeout: float | str | None = None,
        local_directory: str | None = None,
        log_directory: str | None = None,
        shebang: str | None = None,
        worker_extra_args: Sequence[str] | None = None,
        job_extra_directives: Sequence[str] | None = None,
        job_directives_skip: Sequence[str] | None = None,
        job_script_prologue: Sequence[str] | None = None,
        submit_command_extra: Sequence[str] | None = None,
        cancel_command_extra: Sequence[str] | None = None,
        security: Security | None = None,
        **scheduler_specific: Any,
    ):
        super().__init__(scheduler=scheduler, name=name)
        opt = self._option
        self.scheduler = scheduler
        self.name = name
        self.batch = batch
        self.job_id: str | None = None
        #: Unique to this job and visible in the queue, to find it again when a
        #: submission's answer was lost with the connection.
        self.tag = f"jqref-{uuid.uuid4().hex[:16]}"
        self.state = JobState.PENDING

        self.cores = opt("cores", cores)
        self.memory = opt("memory", memory)
        if self.cores is None or self.memory is None:
            raise ValueError(
                "say how many cores and how much memory each job gets: "
                "cores= and memory= (or jqref.%s.cores/memory in the dask config)" % self.config_name
            )
        self.cores = int(self.cores)
        if self.cores < 1:
            raise ValueError(f"cores must be at least 1, got {self.cores}")
        try:
            self.memory_bytes = parse_bytes(self.memory)
        except (ValueError, TypeError):
            raise ValueError(f"memory={self.memory!r} is not a size such as '4 GiB' or '500MB'") from None
        if self.memory_bytes <= 0:
            raise ValueError(f"memory must be positive, got {self.memory!r}")
        self.processes = int(opt("processes", processes) or default_processes(self.cores))
        if not 1 <= self.processes <= self.cores:
            raise ValueError(
                f"processes={self.processes} must be between 1 and cores={self.cores}: "
                "each worker needs at least one thread"
            )
        self.job_name = _single_line("job_name", str(opt("name", job_name)))
        self.queue = opt("queue", queue)
        self.account = opt("account", account)
        self.walltime = opt("walltime", walltime)
        self.python = opt("python", python) or sys.executable
        self.interface = opt("interface", interface)
        self.nanny = opt("nanny", nanny)
        self.protocol = opt("protocol", protocol)
        self.death_timeout = opt("death_timeout", death_timeout)
        self.local_directory = opt("local_directory", local_directory)
        self.log_directory = opt("log_directory", log_directory)
        self.shebang = _single_line("shebang", opt("shebang", shebang))
        self.worker_extra_args = _as_list("worker_extra_args", opt("worker_extra_args", worker_extra_args))
        self.job_extra_directives = opt("job_extra_directives", job_extra_directives)
        self.job_directives_skip = _as_list("job_directives_skip", opt("job_directives_skip", job_directives_skip))
        self.job_script_prologue = _as_list("job_script_prologue", opt("job_script_prologue", job_script_prologue))
        self.submit_command_extra = _as_list("submit_command_extra", opt("submit_command_extra", submit_command_extra))
        self.cancel_command_extra = _as_list("cancel_command_extra", opt("cancel_command_extra", cancel_command_extra))
        self.security = security
        self.configure(**scheduler_specific)
        self.job_script()  # so that options no script can carry fail here, not at submission

    def _option(self, key: str, value: Any) -> Any:
        return lookup(self.config_name, key, value)

    def configure(self, **options: Any) -> None:
        """Take the scheduler-specific keyword arguments (e.g. SLURM's job_cpu)."""
        if options:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments: {', '.join(sorted(options))}")

    # ---- what a scheduler module declares -------------------------------

    def directives(self) -> Iterable[Sequence[str]]:
        """The resource requests, one argument list per directive line."""
        raise NotImplementedError

    @classmethod
    def parse_job_id(cls, stdout: str) -> str:
        raise NotImplementedError

    @classmethod
    def already_gone(cls, result: CommandResult) -> bool:
        """Whether a failed cancel only says the job had already left the queue."""
        return False

    def find_command(self) -> list[str] | None:
        """A command listing queued jobs with this job's tag (None: cannot)."""
        return None

    @classmethod
    def parse_found(cls, result: CommandResult, tag: str) -> str | None:
        """The job id `find_command` reported for `tag`, if any."""
        raise NotImplementedError

    @classmethod
    def status_command(cls, job_ids: Sequence[str]) -> list[str]:
        """One command that reports on all of `job_ids`."""
        raise NotImplementedError

    @classmethod
    def parse_states(cls, result: CommandResult, job_ids: Sequence[str]) -> dict[str, tuple[JobState, str]]:
        """Job id to (state, the batch system's word for it) for the ids the output
        mentions. Raise `CommandError` when the poll itself failed: a failed poll
        says nothing about the jobs."""
        raise NotImplementedError

    # ---- rendering -------------------------------------------------------

    @property
    def worker_memory(self) -> int:
        return self.memory_bytes // self.processes

    @property
    def worker_threads(self) -> int:
        return self.cores // self.processes

    def worker_command(self) -> list[str]:
        argv = [self.python, "-m", "distributed.cli.dask_worker", self.scheduler or "SCHEDULER-ADDRESS"]
        argv += ["--name", str(self.name), "--nthreads", str(self.worker_threads)]
        argv += ["--memory-limit", str(self.worker_memory)]
        if self.processes > 1:
            argv += ["--nworkers", str(self.processes)]
        argv.append("--nanny" if self.nanny else "--no-nanny")
        if self.death_timeout is not None:
            argv += ["--death-timeout", f"{parse_timedelta(self.death_timeout):g}"]
        for flag, value in (
            ("--local-directory", self.local_directory),
            ("--interface", self.interface),
            ("--protocol", self.protocol),
        ):
            if value is not None:
                argv += [flag, str(value)]
        return argv + self.worker_extra_args

    def skip_directives(self, lines: Iterable[str]) -> list[str]:
        """Drop the lines that contain any of `job_directives_skip`."""
        return [line for line in lines if not any(skip in line for skip in self.job_directives_skip)]

    def directive_lines(self) -> list[str]:
        lines = [f"{self.directive_prefix} {shlex.join(tokens)}" for tokens in self.directives()]
        extras = _as_list("job_extra_directives", self.job_extra_directives)
        lines += [f"{self.directive_prefix} {_single_line('job_extra_directives', extra)}" for extra in extras]
        return self.skip_directives(lines)

    def worker_environment(self) -> dict[str, str]:
        """Variables the workers need beyond the command line (TLS material)."""
        return worker_environment(self.security) if self.security else {}

    def shell_commands(self) -> list[str]:
        """What the job runs: the prologue, the version check, then the workers."""
        return [
            *self.job_script_prologue,
            *(f"export {name}={shlex.quote(value)}" for name, value in self.worker_environment().items()),
            _worker_versions_check(self.python),
            "exec " + shlex.join(self.worker_command()),
        ]

    def job_script(self) -> str:
        return "\n".join([self.shebang, "", *self.directive_lines(), "", *self.shell_commands()]) + "\n"

    def submit_argv(self) -> list[str]:
        return [*self.submit_command, *self.submit_command_extra]

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [*self.cancel_command, *self.cancel_command_extra, *job_ids]

    # ---- ProcessInterface ------------------------------------------------

    async def start(self):
        self.job_id = await self.batch.submit(self)
        await super().start()

    async def close(self):
        await self.batch.cancel(self)
        await super().close()

    def ended(self, state: JobState):
        """Called by the queue when the batch system says the job is over."""
        self.state = state
        self.status = Status.closed
        self._event_finished.set()

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} job_id={self.job_id} state={self.state.value}>"


def memory_in_units(nbytes: int, unit: str) -> int:
    """Whole `unit`s (e.g. 'MiB') covering `nbytes`, rounded up so a job never asks for less."""
    return math.ceil(nbytes / parse_bytes(f"1 {unit}"))

