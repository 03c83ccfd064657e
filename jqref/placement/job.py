"""The Dask scheduler in a batch job of its own (``scheduler_on="job"``).

For sites that end long-running processes on login nodes: the scheduler is
one more job, submitted with the cluster's own job class, whose script runs
distributed's own scheduler command (``python -m distributed.cli.dask_scheduler``)
with jqref's preloads and the scheduler's TLS material named as files: plain
shell an administrator can read. Those files are written, each 0600, where
the batch commands run (a directory the compute nodes share, as the workers'
files are), and removed when the cluster closes. The scheduler writes its
address to a scheduler file beside them, which the client reads through the
runner. The client connects to that address directly when it can, else
through a port forwarded over the SSH connection from the login node.

The scheduler's job is watched like the workers' jobs: if it ends (its
walltime, a cancel from outside, preemption), the cluster is told, and
closes, cancelling its workers.

Detached (``detach=True``), the scheduler also runs the session keeper
(`session_keeper`) as a preload: its state goes to the session's directory
in the shared home, where a client attaches from; the scheduler's files go
there too (without a shared_temp_directory). Left alone for its idle
timeout, it cancels the workers' jobs it was told about and closes, which
ends its job; the keeper then removes the session's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import posixpath
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dask.utils import parse_timedelta
from distributed.comm import parse_address
from distributed.comm.addressing import parse_host_port

from .. import ssl_error_queue, tls_roles
from ..job import Job
from ..preload import with_preloads
from ..runners import CommandError, Runner
from ..shell import literal
from ..tls import role_options
from ..worker_files import PRELOAD, WorkerFiles, module_name, module_source
from . import session_keeper
from .forwarded import ForwardedScheduler
from .login import KEEPER_SOURCE

if TYPE_CHECKING:
    from distributed.security import Security

    from ..batch import BatchQueue

logger = logging.getLogger(__name__)

#: What ``scheduler_job`` sets, and the defaults of what the cluster's jobs do not give.
SCHEDULER_JOB_KEYS = ("cores", "memory", "walltime", "queue", "start_timeout")
SCHEDULER_JOB_DEFAULTS = {"cores": 1, "memory": "2GiB", "start_timeout": "5 minutes"}
#: The options of the cluster's jobs the scheduler's job takes too: what the
#: site asks of every job (its account, environment, directives), not the
#: workers' sizes. ``queue`` and ``walltime`` are the workers' unless
#: ``scheduler_job`` says otherwise.
INHERITED_OPTIONS = (
    "python",
    "account",
    "queue",
    "walltime",
    "job_script_prologue",
    "log_directory",
    "shebang",
    "job_extra_directives",
    "job_directives_skip",
    "submit_command_extra",
    "cancel_command_extra",
    "cancel_grace_period",
)
#: The module the job runs: distributed's own `dask scheduler` command.
SCHEDULER_MODULE = "distributed.cli.dask_scheduler"
#: The scheduler options that command takes, and its option for each.
COMMAND_OPTIONS = {
    "host": "--host",
    "port": "--port",
    "interface": "--interface",
    "protocol": "--protocol",
    "dashboard_address": "--dashboard-address",
    "idle_timeout": "--idle-timeout",
}
#: The `Security` fields of the scheduler's TLS material, and the command's option for each.
TLS_OPTIONS = {"tls_ca_file": "--tls-ca-file", "tls_scheduler_cert": "--tls-cert", "tls_scheduler_key": "--tls-key"}
#: The keys under which the scheduler's files are recorded beside the workers'.
RECORD_PREFIX = "scheduler:"


def scheduler_job_options(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """``scheduler_job`` with its defaults; a ValueError naming the key and value that are wrong."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(SCHEDULER_JOB_KEYS))
    if unknown:
        raise ValueError(
            f"scheduler_job={given!r}: unknown key {unknown[0]!r}; it takes {', '.join(SCHEDULER_JOB_KEYS)}"
        )
    options = {**SCHEDULER_JOB_DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    try:
        timeout = parse_timedelta(options["start_timeout"])
    except (TypeError, ValueError, KeyError):
        timeout = None
    if timeout is None or timeout <= 0:
        raise ValueError(
            f"scheduler_job['start_timeout']={options['start_timeout']!r}: give how long to wait for the "
            "scheduler's job to start, e.g. '10 minutes' or 600 (seconds)"
        )
    options["start_timeout"] = timeout
    return options


def command_arguments(options: Mapping[str, Any]) -> list[str]:
    """The `dask scheduler` arguments for the scheduler's `options`; a
    ValueError naming any option that command cannot take."""
    args: list[str] = []
    for key, value in options.items():
        if key == "preload":
            for preload in value:
                args += ["--preload", str(preload)]
        elif key == "dashboard":
            args.append("--dashboard" if value else "--no-dashboard")
        elif key in COMMAND_OPTIONS:
            if value is not None:
                args += [COMMAND_OPTIONS[key], str(value)]
        else:
            raise ValueError(
                f"scheduler_options={{{key!r}: {value!r}}}: with scheduler_on='job' the scheduler is started by "
                f"distributed's `dask scheduler` command, which takes only "
                f"{', '.join([*COMMAND_OPTIONS, 'dashboard', 'preload'])}; drop {key!r}, or place the "
                "scheduler elsewhere (scheduler_on='client' or 'login')"
            )
    return args


def scheduler_words(
    python_words: list[str],
    options: Mapping[str, Any],
    tls_files: Mapping[str, str],
    scheduler_file: str,
    session: Mapping[str, Any] | None = None,
) -> list[str]:
    """The scheduler's command line as shell words: `python_words` (already
    shell words) running distributed's scheduler with `options`, its TLS
    material from `tls_files` (paths by `Security` field), writing its
    address to `scheduler_file`. Any free port unless `options` name one.
    A detached `session` ({"directory", "idle_timeout", "cancel_command"})
    configures the session keeper, which `options` preload: its arguments
    come last, where the command passes them on to preloads."""
    args = ["--scheduler-file", scheduler_file, *command_arguments({"port": 0, **options})]
    for field, flag in TLS_OPTIONS.items():
        if field in tls_files:
            args += [flag, tls_files[field]]
    if session is not None:
        args += session_keeper.preload_arguments(
            session["directory"], session["idle_timeout"], session["cancel_command"]
        )
    return [*python_words, "-m", SCHEDULER_MODULE, *map(literal, args)]


def scheduler_file_address(text: str) -> tuple[str, int | None] | None:
    """The address and dashboard port a scheduler file holds; None while it is
    missing or half written (distributed writes it in place)."""
    try:
        identity = json.loads(text)
    except ValueError:
        return None
    if not isinstance(identity, dict) or not isinstance(identity.get("address"), str):
        return None
    services = identity.get("services")
    dashboard = services.get("dashboard") if isinstance(services, dict) else None
    return identity["address"], dashboard if isinstance(dashboard, int) else None


def scheduler_files(security: Security | None, token: str, detached: bool = False) -> dict[str, tuple[str, str]]:
    """The files the scheduler's job reads, by key (a `Security` field, or
    PRELOAD + module): a file name of its own and the text. Its TLS material
    and, with TLS, the preloads a scheduler of this cluster runs; `detached`,
    the session keeper last."""
    files = {}
    if security is not None:
        material = role_options(security, "scheduler")
        files = {
            field: (f".jqref-scheduler.{field}.{token}", material[field]) for field in TLS_OPTIONS if material[field]
        }
        modules = [*([tls_roles] if tls_roles.has_roles(security) else []), ssl_error_queue]
        for module in modules:
            files[PRELOAD + module_name(module)] = (f"jqref_{module_name(module)}_{token}.py", module_source(module))
    if detached:
        files[PRELOAD + "session_keeper"] = (f"jqref_session_keeper_{token}.py", KEEPER_SOURCE)
    return files


@dataclass
class AttachedJob:
    """The scheduler's job of a detached session, as its record and state say."""

    job_id: str
    #: The record's files of the scheduler (keys with RECORD_PREFIX).
    recorded: dict[str, str]
    #: What the session keeper wrote (`session_keeper.started_state`).
    state: dict[str, Any]

    def files(self) -> dict[str, str]:
        """The job's files by key, as `JobScheduler.files` holds them."""
        return {
            key.removeprefix(RECORD_PREFIX): path
            for key, path in self.recorded.items()
            if key.startswith(RECORD_PREFIX) and key != RECORD_PREFIX + "file"
        }


class SchedulerJob(Job):
    """A job that runs a Dask scheduler instead of workers: `command` (shell
    words) is run where a job runs its workers, with its stderr appended to
    `log_file`, read when it fails to start."""

    def __init__(self, *args: Any, command: list[str], log_file: str, **options: Any):
        self.scheduler_command = command
        self.log_file = log_file
        super().__init__(*args, **options)

    def worker_words(self) -> list[str]:
        return [*self.scheduler_command, f"2>>{literal(self.log_file)}"]


def scheduler_job_class(job_cls: type[Job]) -> type[SchedulerJob]:
    """The cluster's job class, running a scheduler: its directives, commands and parsers unchanged."""
    return type(f"{job_cls.__name__}Scheduler", (SchedulerJob, job_cls), {"__module__": __name__})


class JobScheduler(ForwardedScheduler):
    """A SpecCluster scheduler entry: the scheduler's batch job. `address` is
    where workers connect (the compute node's), `external_address` where this
    process does (that address, or a local port forwarded over SSH)."""

    def __init__(
        self,
        runner: Runner,
        make_job: Callable[..., SchedulerJob],
        options: dict,
        security: Security | None,
        directory: str,
        private_directory: bool,
        start_timeout: float,
        poll_interval: float,
        on_recorded: Callable[[str | None, dict[str, str]], None],
        on_ended: Callable[[str], None],
        session_directory: str | None = None,
        attached: AttachedJob | None = None,
    ):
        """`session_directory` (a detached session's, relative to the home)
        is removed with the job's files; `attached` is the job of a detached
        session to take over instead of submitting one."""
        super().__init__(runner, options, security, start_timeout)
        self.make_job = make_job
        self.poll_interval = poll_interval
        self.on_recorded = on_recorded
        self.on_ended = on_ended
        self.session_directory = session_directory
        self.attached = attached
        token = secrets.token_hex(6)
        self.files = WorkerFiles(
            directory,
            {
                **scheduler_files(security, token, session_directory is not None),
                "log": (f"jqref-scheduler-{token}.log", ""),
            },
            private_directory=private_directory,
            written=attached.files() if attached is not None else {},
        )
        self.scheduler_file = attached.recorded[RECORD_PREFIX + "file"] if attached is not None else ""
        self.job: SchedulerJob | None = None
        self.queue: BatchQueue | None = None
        #: How this process reaches the scheduler: "directly" or "through an SSH forward".
        self.reached = ""
        self._watch: asyncio.Task | None = None
        self._ended = asyncio.Event()
        self._end_detail = ""
        self._closing = False
        self._reporting: set[asyncio.Task] = set()

    async def start(self) -> None:
        if self.attached is not None:
            address, dashboard_port = self.attached.state["address"], self.attached.state["dashboard_port"]
            self._adopt(self.attached.job_id)
        else:
            try:
                address, dashboard_port = await self._submit_and_wait()
            except BaseException:
                await self._cancel_and_remove()
                raise
        host, port = parse_host_port(parse_address(address)[1])
        directly = await self._reachable(host, port) or not hasattr(self.runner, "forward")
        self.reached = "directly" if directly else "through an SSH forward"
        self._reach(address, (host, dashboard_port) if dashboard_port else None, directly)
        logger.info("the Dask scheduler runs in job %s at %s, reached %s", self.job_id, address, self.reached)
        await super().start()

    @property
    def job_id(self) -> str | None:
        return self.job.job_id if self.job is not None else None

    async def _submit_and_wait(self) -> tuple[str, int | None]:
        paths = await self.files.write(self.runner)
        directory = posixpath.dirname(paths["log"])
        self.scheduler_file = posixpath.join(directory, posixpath.basename(paths["log"]).replace(".log", ".json"))
        recorded = {RECORD_PREFIX + key: path for key, path in {**paths, "file": self.scheduler_file}.items()}
        self.on_recorded(None, recorded)  # before the job: a crash from here on leaves nothing unrecorded
        preloads = {key.removeprefix(PRELOAD): path for key, path in paths.items() if key.startswith(PRELOAD)}
        guard = [preloads.pop(module_name(tls_roles))] if module_name(tls_roles) in preloads else []
        options = with_preloads(self.options, guard, list(preloads.values()), here=False)
        self.job = job = self.make_job(options, paths, self.scheduler_file, paths["log"])
        self.queue = queue = self._queue_for(job)
        job.job_id = await queue.submit(job)
        self.on_recorded(job.job_id, recorded)
        self._watch = asyncio.create_task(queue.watch(self.poll_interval))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        while not self._ended.is_set():
            read = await self.runner.run(["cat", self.scheduler_file])
            found = scheduler_file_address(read.stdout) if read.ok else None
            if found is not None:
                return found
            if loop.time() > deadline:
                raise RuntimeError(
                    f"the Dask scheduler's job {job.job_id} did not write its address to {self.scheduler_file} "
                    f"within scheduler_job['start_timeout']={self.start_timeout:g} s (job state: "
                    f"{job.state.value}); it was cancelled.{await self._log_tail()}"
                )
            await asyncio.sleep(1)
        raise RuntimeError(
            f"the Dask scheduler's job {job.job_id} ended before the scheduler listened "
            f"({self._end_detail}).{await self._log_tail()}"
        )

    def _queue_for(self, job: SchedulerJob) -> BatchQueue:
        """A queue of its own for the scheduler's job, which tells `_job_ended`."""
        # Imported here, at run time: the queue's module records jobs, and records know the placements.
        from ..batch import BatchQueue

        queue = BatchQueue(type(job), self.runner, on_ended=self._job_ended)
        job.batch = queue
        return queue

    def _adopt(self, job_id: str) -> None:
        """The scheduler's job of the detached session attached to becomes this
        cluster's, watched as if it had submitted it."""
        paths = self.files.paths
        self.job = job = self.make_job(self.options, paths, self.scheduler_file, paths["log"])
        self.queue = self._queue_for(job)
        self.queue.adopt(job, job_id)
        self._watch = asyncio.create_task(self.queue.watch(self.poll_interval))

    async def _log_tail(self) -> str:
        """The end of what the scheduler wrote to its stderr, to say why it failed."""
        try:
            tail = await self.runner.run(["tail", "-c", "3000", self.files.paths["log"]])
        except (CommandError, ConnectionError) as e:
            return f" Its log could not be read: {e}"
        text = tail.stdout.strip() if tail.ok else ""
        return f" The scheduler's stderr ends:\n{text}" if text else " The scheduler wrote nothing to its stderr."

    async def _reachable(self, host: str, port: int) -> bool:
        """Whether this process can open a connection to the scheduler itself."""
        try:
            connection = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, TimeoutError):
            return False
        connection[1].close()
        with contextlib.suppress(OSError):
            await connection[1].wait_closed()
        return True

    def _job_ended(self, job: Job, detail: str) -> None:
        self._end_detail = f"{job.state.value}: {detail}"
        self._ended.set()
        if self.status.name == "running" and not self._closing:
            task = asyncio.ensure_future(self._report_end(detail))
            self._reporting.add(task)  # held until done: the event loop keeps only weak references to tasks
            task.add_done_callback(self._reporting.discard)

    async def _report_end(self, detail: str) -> None:
        self.on_ended(f"the Dask scheduler's job {self.job_id} ended ({detail}).{await self._log_tail()}")

    async def close(self) -> None:
        """Called once SpecCluster told the scheduler to close (or it ended): nothing of it stays."""
        self._closing = True
        self._close_forwards()
        await self._cancel_and_remove()
        await super().close()

    async def _cancel_and_remove(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        try:
            if self.queue is not None:
                await self.queue.cancel_all()
        finally:
            with contextlib.suppress(CommandError, OSError):
                await self.files.remove(self.runner)
                if self.scheduler_file:
                    await self.runner.remove_files([self.scheduler_file])
                if self.session_directory is not None:  # its keeper removes it too, unless it was killed
                    await self.runner.run(["rm", "-rf", "--", self.session_directory])
