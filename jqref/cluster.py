"""`JobQueueCluster`: a Dask SpecCluster whose workers live in batch jobs.

The spec maps a name to one job; with `processes > 1` the job's workers form
a group (`<name>-0`, `<name>-1`, ...), which is how SpecCluster and Adaptive
match scheduler workers to jobs. So `scale(n)` counts workers and is turned
into jobs here, and adapt retires whole jobs.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import functools
import logging
import math
import os
import socket
import warnings
import weakref
from contextlib import suppress
from typing import Any, ClassVar

import dask.config
from dask.utils import parse_bytes, parse_timedelta
from distributed.core import Status, rpc
from distributed.deploy.spec import ProcessInterface, SpecCluster
from distributed.exceptions import WorkerStartTimeoutError
from distributed.objects import SchedulerInfo
from distributed.scheduler import Scheduler
from distributed.security import Security

from . import ssl_error_queue
from .batch import BatchQueue, JobCancelError
from .config import Options, UnknownOptionError
from .diagnosis import WorkersDidNotArrive, end_cause, jobs_html, jobs_text
from .docstrings import cluster_docstring
from .job import Job
from .option_checks import check_keywords
from .placement import ClientPlacement, JobPlacement, LoginPlacement, Placement, check_scheduler_on, detached, reconnect
from .placement.forwarded import ForwardedScheduler
from .placement.job import RECORD_PREFIX, AttachedJob, JobScheduler
from .records import JobRecord, describe_runner, runner_from, session_record
from .runners import CommandError, LocalRunner, Runner
from .ssh import SSHRunner
from .tls import cluster_security, with_paths
from .worker_files import DEFAULT_DIRECTORY as DEFAULT_WORKER_FILES_DIRECTORY
from .worker_files import WorkerFiles
from .worker_files import recorded as recorded_worker_files

logger = logging.getLogger(__name__)


def job_of_worker(processes: int, worker) -> str:
    """The spec name (job) a worker (a WorkerState or a worker name) belongs to."""
    name = str(getattr(worker, "name", worker))
    return name.rsplit("-", 1)[0] if processes > 1 else name


def runner_destination(runner: Runner) -> str:
    """Where `runner` runs the batch commands, in words: its SSH destination, or this machine."""
    return str(getattr(runner, "destination", "this machine"))


def job_counts(job: Job, n=None, cores=None, memory=None) -> list[float]:
    """How many jobs like `job` hold `n` workers, `cores` cores, `memory` bytes (for each one given)."""
    counts = []
    if n is not None:
        counts.append(n / job.processes)
    if cores is not None:
        counts.append(cores / job.cores)
    if memory is not None:
        counts.append(parse_bytes(memory) / job.memory_bytes)
    return counts


def adaptive_bounds(
    job: Job,
    minimum=None,
    maximum=None,
    minimum_jobs=None,
    maximum_jobs=None,
    minimum_cores=None,
    maximum_cores=None,
    minimum_memory=None,
    maximum_memory=None,
) -> dict[str, float]:
    """Adaptive's `minimum`/`maximum` (it counts workers) from bounds in workers,
    jobs, cores or memory: the tightest of each, as whole jobs' worth of workers."""
    lows = job_counts(job, minimum, minimum_cores, minimum_memory)
    highs = job_counts(job, maximum, maximum_cores, maximum_memory)
    lows += [minimum_jobs] if minimum_jobs is not None else []
    highs += [maximum_jobs] if maximum_jobs is not None else []
    bounds: dict[str, float] = {}  # a maximum may be math.inf: no bound
    if lows:
        bounds["minimum"] = math.ceil(max(lows)) * job.processes
    if highs:
        top = min(highs)
        bounds["maximum"] = top if top == math.inf else math.floor(top) * job.processes
    return bounds


#: A detached scheduler's idle timeout must span a few heartbeats of its clients.
MIN_IDLE_TIMEOUT = 15
#: How long a closing cluster waits for its scheduler to answer before closing without it.
SCHEDULER_ANSWER_TIMEOUT = 10
#: Where a scheduler can outlive its client's process: each placement keeps the session the same way.
DETACHABLE = ("login", "job")


def attached_scheduler_job(record: JobRecord, state: dict) -> AttachedJob:
    """The scheduler's job of detached session `record`, whose keeper wrote `state`."""
    if record.scheduler_job is None:
        raise LookupError(
            f"session {record.id} runs its scheduler in a batch job, but its record names none: "
            f"`jqref cleanup {record.id}` forgets it"
        )
    return AttachedJob(record.scheduler_job, record.worker_files, state)


class JobQueueCluster(SpecCluster):
    """Dask workers started in batch jobs.

    Keyword arguments not listed here describe the jobs (``cores``,
    ``memory``, ``processes``, ``queue``, ``walltime``, ...) and fall back to
    the ``jqref.<scheduler>`` (or dask-jobqueue's ``jobqueue.<scheduler>``)
    section of the dask config. Batch commands run on this machine, or on a
    login node over SSH with ``ssh="[user@]host"`` (an alias from
    ``~/.ssh/config`` works, ProxyJump included) or an explicit
    ``runner=SSHRunner(...)``, with ``python`` set to the compute nodes'
    interpreter. Over SSH the scheduler runs here by default, so compute nodes
    must reach this machine: set ``scheduler_options={"host": ...}`` (or
    ``interface``) to an address they can connect to. When they cannot (NAT,
    firewalls), ``scheduler_on="login"`` runs the scheduler on the login node
    instead, reached through a port forwarded over the SSH connection.
    Wherever the scheduler runs, every Dask connection is encrypted and
    authenticated with TLS by default (``security=None`` or ``True``), with
    certificates made for this cluster alone; ``security=False`` turns TLS
    off, with a warning. With ``scheduler_on="login"`` or ``"job"`` and
    ``detach=True``, the scheduler on the login node or in its batch job
    outlives the SSH connection and this process: the cluster carries on
    when the connection comes back, and another process can take it over
    (`attach`), until nothing has been in touch with it for
    ``idle_timeout``; then it cancels its jobs and ends.
    """

    #: The job class, declared by a scheduler's cluster class (SLURMCluster's
    #: is SLURMJob), or given to JobQueueCluster(job_cls=...) for one cluster.
    job_cls: type[Job]

    def __init_subclass__(cls, **kwargs):
        """A scheduler's cluster class documents every parameter, its job class's own too."""
        super().__init_subclass__(**kwargs)
        job_cls = cls.__dict__.get("job_cls")
        if job_cls is not None and "\nParameters\n" not in (cls.__doc__ or ""):
            cls.__doc__ = cluster_docstring(
                cls.__doc__ or "", cls.__name__.removesuffix("Cluster"), job_cls.config_name, job_cls.parameter_docs
            )

    #: Jobs in a row that may end before any of their workers connected and
    #: still be replaced; past that the options are wrong, not the luck.
    max_failed_starts: ClassVar[int] = 3
    _live: ClassVar[weakref.WeakSet[JobQueueCluster]] = weakref.WeakSet()

    def __init__(
        self,
        n_workers: int = 0,
        *,
        job_cls: type[Job] | None = None,
        ssh: str | None = None,
        runner: Runner | None = None,
        loop=None,
        security=None,
        silence_logs: str | bool = "warning",
        name: str | None = None,
        asynchronous: bool = False,
        dashboard_address: str | None = None,
        host: str | None = None,
        scheduler_options: dict[str, Any] | None = None,
        scheduler_cls: type = Scheduler,
        interface: str | None = None,
        protocol: str | None = None,
        poll_interval: str | float | None = None,
        max_jobs: int | None = None,
        scheduler_on: str | None = None,
        config_name: str | None = None,
        shared_temp_directory: str | None = None,
        detach: bool | None = None,
        idle_timeout: str | float | None = None,
        scheduler_job: dict[str, Any] | None = None,
        _attached: tuple[JobRecord, dict] | None = None,
        **job_kwargs: Any,
    ):
        if job_cls is not None:
            self.job_cls = job_cls
        if getattr(self, "job_cls", None) is None:
            raise ValueError(
                f"Job type unknown: give JobQueueCluster a job_cls=, or declare the job_cls of "
                f"{type(self).__name__} (SLURMCluster's is SLURMJob)"
            )
        if not getattr(self.job_cls, "config_name", None):
            raise ValueError(
                f"config_name is missing on {self.job_cls.__name__}: a job class declares the dask "
                "config section its options come from, e.g. 'slurm'"
            )
        for keyword, value, example in (
            ("host", host, "'your-host'"),
            ("dashboard_address", dashboard_address, "':12345'"),
        ):
            if value is not None:
                raise ValueError(
                    f"{keyword}={value!r}: pass {keyword!r} through 'scheduler_options', e.g. "
                    f"{type(self).__name__}(..., scheduler_options={{{keyword!r}: {example}}})"
                )
        check_keywords(n_workers=n_workers, name=name, scheduler_options=scheduler_options, asynchronous=asynchronous)
        #: What `attach` needs to make this cluster again in another process.
        reusable_options = {
            **job_kwargs,
            "name": name,
            "scheduler_options": scheduler_options,
            "interface": interface,
            "protocol": protocol,
            "poll_interval": poll_interval,
            "max_jobs": max_jobs,
            "config_name": config_name,
            "shared_temp_directory": shared_temp_directory,
            "idle_timeout": idle_timeout,
            "scheduler_job": scheduler_job,
        }
        placement = Options(self.job_cls.config_name, config_name)
        self.scheduler_on = check_scheduler_on(placement.get("scheduler_on", scheduler_on))
        self.detach = bool(placement.get("detach", detach))
        self.idle_timeout = parse_timedelta(placement.get("idle_timeout", idle_timeout))
        scheduler_job = placement.get("scheduler_job", scheduler_job)  # checked whatever the placement
        if self.idle_timeout < MIN_IDLE_TIMEOUT:
            raise ValueError(
                f"idle_timeout must be at least {MIN_IDLE_TIMEOUT} s (clients are in touch every 5 s), "
                f"got {idle_timeout!r}"
            )
        if self.detach and self.scheduler_on not in DETACHABLE:
            raise ValueError(
                f"detach=True with scheduler_on={self.scheduler_on!r}: a scheduler in the client's process "
                "ends with it; detach the one on the login node (scheduler_on='login') or in a batch job "
                "of its own (scheduler_on='job')"
            )
        if self.detach and security is False:
            raise ValueError(
                "a detached scheduler stays on the site's nodes, where others can reach it, so it "
                "always uses TLS: security=False cannot go with detach=True"
            )
        if security is True and not placement.get("shared_temp_directory", shared_temp_directory):
            warnings.warn(
                f"security=True: the workers' TLS credentials go to ~/{DEFAULT_WORKER_FILES_DIRECTORY} where "
                "the batch commands run, which the jobs must be able to read: set shared_temp_directory "
                "to a directory they share if the home is not",
                UserWarning,
                stacklevel=2,
            )
        security = cluster_security(security)
        # The workers' key and certificate, and jqref's code they run, go in
        # private files where the commands run, written when the cluster
        # starts: job scripts name them. An attached session's were written
        # by the client that detached.
        directory = placement.get("shared_temp_directory", shared_temp_directory)
        self._worker_files = (
            recorded_worker_files(
                {key: path for key, path in _attached[0].worker_files.items() if not key.startswith(RECORD_PREFIX)},
                directory,
            )
            if _attached is not None
            else WorkerFiles.for_cluster(security, directory)
        )
        worker_security = security and with_paths(security, self._worker_files.credentials)
        job_kwargs.update(
            interface=interface,
            protocol=protocol,
            security=worker_security,
            preloads=self._worker_files.preloads,
            config_name=config_name,
            shared_temp_directory=shared_temp_directory,
        )
        # A job rendered from these options now, so that bad options fail here
        # and processes/cores/memory are known however they were given.
        try:
            self._template = self.job_cls(**job_kwargs)
        except UnknownOptionError as e:
            given = ", ".join(f"{k}={v!r}" for k, v in job_kwargs.items() if v is not None)
            raise UnknownOptionError(f"{e}, in {type(self).__name__}'s job_kwargs ({given})") from None
        opt = self._template.options.get
        # Every job reads the template's options, resolved once: they all match
        # it, and the worker group below, whatever the config says later. The
        # rest is what they were resolved from, for whoever reads the spec.
        self._job_kwargs = {
            **{k: v for k, v in job_kwargs.items() if v is not None},
            "interface": self._template.interface,
            "shared_options": self._template.options,
            "security": worker_security,
        }
        if ssh is not None and runner is not None:
            raise ValueError("give ssh= (a destination) or runner=, not both")
        if ssh is not None:
            runner = SSHRunner(ssh)
            if self._template.python is None:
                raise ValueError(
                    "over SSH, say which Python the compute nodes run: python='/path/to/python' "
                    "(an environment with the same Python and distributed versions as this one)"
                )
        self._owns_runner = runner is None or ssh is not None or _attached is not None
        self.runner = runner or LocalRunner()
        running: dict | None = None
        if _attached is not None:
            record, running = _attached
            record.claim()
        else:
            record = JobRecord(
                job_class=f"{self.job_cls.__module__}.{self.job_cls.__qualname__}",
                cancel_command=self._template.cancel_argv([]),
                runner=describe_runner(self.runner),
            )
            if self.detach:
                record.session = detached.detached_session(
                    type(self), record.id, {**reusable_options, "scheduler_on": self.scheduler_on}, security
                )
                if self._worker_files.private_directory:  # removed with the session when its scheduler ends
                    self._worker_files.directory = record.session["directory"]
        #: The record of this cluster's jobs (`records`), which its queue keeps written.
        self._record = record
        self.batch = BatchQueue(self.job_cls, self.runner, on_ended=self._job_ended, record=record, report=self._report)
        self.poll_interval = parse_timedelta(opt("poll_interval", poll_interval))
        self.max_jobs = opt("max_jobs", max_jobs)
        #: Where the files the jobs read go (`worker_files`), as in dask-jobqueue; None: ~/.jqref/credentials.
        self.shared_temp_directory = self._template.shared_temp_directory
        session = (
            {
                "directory": record.detached_session["directory"],
                "idle_timeout": self.idle_timeout,
                "cancel_command": self._template.cancel_argv([]),
            }
            if self.detach
            else None
        )
        if self.scheduler_on == "login":
            self.placement: Placement = LoginPlacement(
                self.runner, self._template.python_words, session=session, running=running
            )
        elif self.scheduler_on == "job":
            self.placement = JobPlacement(
                self.runner,
                self._template,
                scheduler_job,
                self._worker_files.directory,
                self._worker_files.private_directory,
                self.poll_interval,
                on_recorded=self._record_scheduler_job,
                on_ended=self._scheduler_job_ended,
                session=session,
                attached=attached_scheduler_job(record, running) if running is not None else None,
            )
        else:
            self.placement = ClientPlacement(self.runner)
        #: Why the scheduler's job ended under this cluster, if it did (scheduler_on="job").
        self._scheduler_job_end = ""

        # Given, they replace the config's scheduler-options, as in dask-jobqueue.
        options = self.placement.scheduler_options(
            scheduler_options if scheduler_options is not None else opt("scheduler_options"), self._template.interface
        )
        if protocol is not None:
            options.setdefault("protocol", protocol)

        #: Shared by every job's spec: where the workers' credentials were written goes in once known.
        self._worker_options: dict[str, Any] = {**self._job_kwargs, "batch": self.batch}
        worker: dict[str, Any] = {"cls": self.job_cls, "options": self._worker_options}
        # Workers are named after the cluster, as SpecCluster names it (its class by default).
        self._name = name or type(self).__name__
        if self._template.processes > 1:
            worker["group"] = [f"-{i}" for i in range(self._template.processes)]
        self._watch: asyncio.Task | None = None
        self._heartbeat: asyncio.Task | None = None
        #: Jobs of the session attached to, by id: their worker names.
        self._adopted = dict(record.names) if _attached is not None else {}
        self._connected_jobs: set[str] = set()
        self._failed_starts = 0
        #: Why the cluster stopped replacing jobs, once it has.
        self._gave_up = ""
        #: Where max_jobs came from when the site set it, and whether hitting it was said.
        self._site_max_jobs: str | None = None
        self._site_limit_reported = False
        JobQueueCluster._live.add(self)
        # Initial jobs are part of the spec, so a failing submission raises here.
        initial_jobs = math.ceil(n_workers / self._template.processes)
        if self.max_jobs is not None:
            initial_jobs = min(initial_jobs, self.max_jobs)
        if security is not None:
            ssl_error_queue.apply()  # this process's client, and the scheduler if it runs here
        if self.detach:
            reconnect.apply()
        scheduler = self.placement.scheduler_spec(options, security, scheduler_cls)
        super().__init__(
            scheduler=scheduler,
            security=security,
            workers={
                **{self._new_worker_name(i): worker for i in range(initial_jobs)},
                **{name: worker for name in self._adopted.values()},
            },
            worker=worker,
            loop=loop,
            silence_logs=silence_logs,
            asynchronous=asynchronous,
            name=name,
            shutdown_on_close=not self.detach,  # distributed closes clusters at exit; a detached one stays
        )

    # ---- naming and rendering -------------------------------------------

    @property
    def processes(self) -> int:
        return self._template.processes

    @property
    def dashboard_link(self) -> str:
        """A scheduler elsewhere (login node, batch job) has its dashboard's link, forwarded or direct."""
        if isinstance(self.scheduler, ForwardedScheduler):
            return self.scheduler.dashboard_link
        return super().dashboard_link

    @property
    def _started_scheduler(self) -> ProcessInterface | Scheduler:
        """The scheduler's entry in the spec, started (on the login node: a `LoginNodeScheduler`)."""
        if self.scheduler is None:
            raise RuntimeError(f"{type(self).__name__} has not started: it has no scheduler yet")
        return self.scheduler

    @property
    def _scheduler_rpc(self) -> rpc:
        """This process's connection to the scheduler, made when the cluster starts."""
        if self.scheduler_comm is None:
            raise RuntimeError(f"{type(self).__name__} has not started: it has no connection to its scheduler yet")
        return self.scheduler_comm

    @property
    def job_header(self) -> str:
        """The directives every job carries (dask-jobqueue's `job_header`)."""
        return self._template.job_header

    @property
    def job_name(self) -> str:
        return self._template.job_name

    def _new_worker_name(self, worker_number: int) -> str:
        return f"{self._name}-{worker_number}"

    @property
    def _dummy_job(self) -> Job:
        """A job as this cluster submits them, with the worker name dask-jobqueue
        shows in previews (each job has its own)."""
        address = self.scheduler.address if self.scheduler else None
        return self.job_cls(address, "dummy-name", batch=self.batch, **self._job_kwargs)

    def job_script(self) -> str:
        """The script every job runs, but for its worker name (dummy-name here)."""
        return self._dummy_job.job_script()

    # ---- scaling ----------------------------------------------------------

    def scale(self, n=None, jobs=0, memory=None, cores=None):  # type: ignore[override]  # dask-jobqueue's signature: jobs= second, as its users pass it
        """Scale to `n` workers, or `jobs` jobs, or enough jobs for `cores` or
        `memory` in total; with several given, the largest wins. Never more
        than `max_jobs`."""
        self._check_scheduler_job()
        jobs = max([jobs, *map(math.ceil, job_counts(self._template, n, cores, memory))])
        if self.max_jobs is not None and jobs > self.max_jobs:
            jobs = self._capped(jobs)
        return super().scale(jobs)

    def _capped(self, jobs: int) -> int:
        """`max_jobs`, for `jobs` asked for beyond it; said once when the limit is the site's."""
        if self._site_max_jobs is None:
            logger.warning("asked for %d jobs; max_jobs=%d caps it", jobs, self.max_jobs)
        elif not self._site_limit_reported:
            self._site_limit_reported = True
            self._report(
                f"asked for {jobs} jobs; the site allows you {self.max_jobs} ({self._site_max_jobs}), "
                "so the cluster keeps at most that many (max_jobs= sets another bound)",
                logging.WARNING,
            )
        return self.max_jobs

    def adapt(  # type: ignore[override]  # bounds by keyword, in jobs too, as dask-jobqueue's; Adaptive= passes on in kwargs
        self,
        *,
        minimum: int | None = None,
        maximum: float | None = None,
        minimum_jobs: int | None = None,
        maximum_jobs: int | None = None,
        minimum_cores: int | None = None,
        maximum_cores: int | None = None,
        minimum_memory: str | None = None,
        maximum_memory: str | None = None,
        **kwargs,
    ):
        """Like `SpecCluster.adapt`, with bounds also in jobs, cores or memory.
        Adaptive counts workers, so every bound becomes whole jobs' worth of
        workers, and it retires whole jobs."""
        self._check_scheduler_job()
        if self.max_jobs is not None:
            maximum_jobs = min(maximum_jobs if maximum_jobs is not None else math.inf, self.max_jobs)
        kwargs.update(
            adaptive_bounds(
                self._template,
                minimum,
                maximum,
                minimum_jobs,
                maximum_jobs,
                minimum_cores,
                maximum_cores,
                minimum_memory,
                maximum_memory,
            )
        )
        if self.processes > 1:
            kwargs.setdefault("worker_key", functools.partial(job_of_worker, self.processes))
        return super().adapt(**kwargs)

    # ---- job-state tracking -----------------------------------------------

    def _report(self, message: str, level: int = logging.INFO) -> None:
        """Log `message` and keep it for `get_logs()` (its "Cluster" part)."""
        logger.log(level, message)
        self._cluster_manager_logs.append((datetime.datetime.now(), message))

    def _job_ended(self, job: Job, detail: str) -> None:
        """A job the batch system reports as over: drop it from the spec and
        submit a replacement so the requested size is kept. A job that ended
        before its workers connected, or for a cause its options name (its
        memory), counts as a failed start; a preempted one does not count."""
        if self.status != Status.running or self.worker_spec.get(job.name) is None:
            return
        wanted = len(self.worker_spec)
        del self.worker_spec[job.name]
        self.workers.pop(job.name, None)
        cause = end_cause(job)
        if detail in self.job_cls.blameless_ends:
            pass  # neither a failed start nor a good one
        elif job.name in self._connected_jobs and job.option_at_fault() is None:
            self._failed_starts = 0
        else:
            self._failed_starts += 1
        if self._failed_starts >= self.max_failed_starts:
            connected = "after" if job.name in self._connected_jobs else "before"
            self._gave_up = (
                f"job {job.job_id} ({job.name}) ended {connected} its workers connected to {job.scheduler}, "
                f"{self._failed_starts} failed starts in a row: {cause}\nNot replacing it, and adapt stopped. "
                "Check the job's output and the cluster's options, then scale again."
                + self.placement.unreachable_hint()
            )
            self._report(self._gave_up, logging.ERROR)
            if self._adaptive is not None:
                self._adaptive.stop(reason="jobs keep failing to start")
            return
        self._report(f"job {job.job_id} ({job.name}) ended: {cause}; submitting a replacement", logging.WARNING)
        super().scale(wanted)

    def jobs_table(self) -> str:
        """The cluster's jobs as the batch system last described them: id, state, age, reason."""
        return jobs_text(self.batch.jobs_table())

    async def _wait_for_workers(self, n_workers=0, timeout=None):
        """distributed's wait, whose timeout also says what the batch system says about the jobs."""
        try:
            await super()._wait_for_workers(n_workers, timeout)
        except WorkerStartTimeoutError as e:
            diagnosis = self._gave_up + "\n" if self._gave_up else ""
            raise WorkersDidNotArrive(
                e.available_workers, e.expected_workers, e.timeout, f"{diagnosis}The jobs:\n{self.jobs_table()}"
            ) from None

    def _repr_html_(self, cluster_status=None):
        return super()._repr_html_(cluster_status) + jobs_html(self.batch.jobs_table())

    def _update_worker_status(self, op, msg):
        if op == "add":
            self._connected_jobs.update(job_of_worker(self.processes, w["name"]) for w in msg["workers"].values())
        if op == "remove" and msg in self.scheduler_info["workers"]:
            # SpecCluster closes (cancels) the job of a worker that stays lost
            # for `lost-worker-timeout` but keeps it in the spec, so nothing
            # would replace it. Look right after it did.
            name = self.scheduler_info["workers"][msg]["name"]
            delay = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout"))
            asyncio.get_running_loop().call_later(delay + 0.5, self._replace_if_closed, name)
        super()._update_worker_status(op, msg)

    def _replace_if_closed(self, name) -> None:
        """Replace job `name` if SpecCluster closed it for its lost worker."""
        if self.status != Status.running or name not in self.worker_spec or name in self.workers:
            return
        logger.warning("the worker of %s was lost and its job cancelled; submitting a replacement", name)
        wanted = len(self.worker_spec)
        del self.worker_spec[name]
        super().scale(wanted)

    async def _apply_site_limits(self) -> None:
        """The site's limits become the defaults of the options the user left
        unset (`max_jobs`; `max_array_size` is applied where arrays are cut)."""
        limits = await self.batch.read_site_limits(self._template)
        if self.max_jobs is None and "max_jobs" in limits:
            self.max_jobs = limits["max_jobs"]
            self._site_max_jobs = "its submit limit per user"
            surplus = list(self.worker_spec)[self.max_jobs :]
            if surplus:
                self._capped(len(self.worker_spec))
                for name in surplus:
                    del self.worker_spec[name]

    async def _start(self):
        await self._make_log_directory()
        if self.status == Status.created:
            await self._apply_site_limits()
            if not self._adopted:  # an attached session's record keeps its jobs until they are adopted
                # Before any job: a record that cannot be written stops the
                # cluster here, not after jobs it could not account for.
                self.batch.save_record()
            await self._write_worker_files()
        await super()._start()
        self._adopt_jobs()
        if self._watch is None:
            self._watch = asyncio.create_task(self.batch.watch(self.poll_interval))
        if self.detach and self._heartbeat is None:
            self._heartbeat = asyncio.create_task(
                detached.keep_alive(
                    lambda jobs: self._scheduler_rpc.jqref_heartbeat(jobs=jobs),
                    lambda: {job_id: job.name for job_id, job in self.batch.active.items()},
                    self.runner,
                    self._record.detached_session,
                    self.idle_timeout,
                    self._close_after_scheduler_ended,
                )
            )

    def _record_scheduler_job(self, job_id: str | None, files: dict[str, str]) -> None:
        """The scheduler's job (scheduler_on="job") and the files it reads, in
        this cluster's record: `jqref cleanup` cancels and removes them too."""
        self._record.scheduler_job = job_id
        self._record.worker_files = {**self._record.worker_files, **files}
        self.batch.save_record_or_warn()

    def _scheduler_job_ended(self, why: str) -> None:
        """The scheduler's job ended while the cluster ran: nothing can use the
        workers any more. Say so, cancel them and close; `scale` and `adapt` raise it."""
        self._scheduler_job_end = why
        logger.error("%s: cancelling the workers' jobs and closing the cluster", why)
        self._close_after_scheduler_ended()

    def _check_scheduler_job(self) -> None:
        if self._scheduler_job_end and self.status == Status.closed:
            raise RuntimeError(f"{type(self).__name__} is closed: {self._scheduler_job_end}")

    def _close_after_scheduler_ended(self) -> None:
        """Close this cluster, whose scheduler has ended, without waiting for it to answer."""
        self.shutdown_scheduler = False
        closing = asyncio.ensure_future(self._close_without_scheduler())
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)

    async def _close_without_scheduler(self) -> None:
        await self._started_scheduler.close()  # its forwards
        await self._close()

    async def _make_log_directory(self) -> None:
        """Where the batch system writes the jobs' output must exist before the
        first job starts (dask-jobqueue makes it too); made where the
        commands run, so on the login node over SSH."""
        directory = self._template.log_directory
        if directory and self.status == Status.created:
            result = await self.runner.run(["mkdir", "-p", "--", str(directory)])
            if not result.ok:
                where = runner_destination(self.runner)
                raise ValueError(
                    f"log_directory={directory!r} cannot be made on {where}: {CommandError(result)}; "
                    "give a directory you can write to"
                )

    async def _write_worker_files(self) -> None:
        """The files the jobs read (the workers' key and certificate, jqref's
        preloads), written where the commands run, and recorded, for `jqref
        cleanup` to remove if this process dies."""
        files = self._worker_files
        if files.written:
            return
        try:
            await files.write(self.runner)
        except OSError as e:
            where = runner_destination(self.runner)
            raise ValueError(
                f"shared_temp_directory={files.directory!r}: the files the jobs read (TLS credentials, jqref's "
                f"preloads) cannot be written there on {where} ({e}); give a directory the jobs can read and "
                "you can write to"
            ) from e
        self._record.worker_files = files.paths
        self.batch.save_record()
        security = self._job_kwargs["security"] and with_paths(self._job_kwargs["security"], files.credentials)
        self._job_kwargs["security"] = self._worker_options["security"] = security
        self._job_kwargs["preloads"] = self._worker_options["preloads"] = files.preloads

    def _adopt_jobs(self) -> None:
        """The jobs of the session attached to become this cluster's, as if it had started them."""
        for job_id, name in self._adopted.items():
            job = self.job_cls(self._started_scheduler.address, name, batch=self.batch, **self._job_kwargs)
            self.batch.adopt(job, job_id)
            job._cluster = weakref.ref(self)
            self.workers[name] = job
            self._created.add(job)
            self._connected_jobs.add(name)
        if self._adopted:
            self.batch.save_record_or_warn()
        self._adopted = {}

    async def _watch_worker_status(self, comm):
        """SpecCluster stops hearing about workers when the connection drops;
        a detached scheduler is still there after it comes back: listen again."""
        while True:
            await super()._watch_worker_status(comm)
            if not self.detach:
                return
            while self.status == Status.running:
                try:
                    comm = await self._scheduler_rpc.live_comm()
                    await comm.write({"op": "subscribe_worker_status"})
                    self.scheduler_info = SchedulerInfo(await comm.read())
                    self._watch_worker_status_comm = comm
                    break
                except (OSError, ValueError):  # ValueError: tornado, on a forward the login node refused
                    await asyncio.sleep(1)
            else:
                return

    @classmethod
    def attach(cls, session_id: str, **options) -> JobQueueCluster:
        """Take over the cluster of a detached session (``detach=True``) from
        a new process on this machine: its scheduler, workers, data and jobs.
        `session_id` is as `jqref list` shows it; `options` replace what the
        session recorded (e.g. ``runner=``)."""
        record = session_record(session_id)
        if record.host == socket.gethostname() and not record.orphaned and record.pid != os.getpid():
            raise RuntimeError(
                f"session {session_id} is still controlled by process {record.pid}: close it there "
                "(or end that process) before attaching"
            )
        cluster_cls = record.cluster_class()
        if not issubclass(cluster_cls, cls):
            raise TypeError(f"session {session_id} is a {cluster_cls.__name__}, not a {cls.__name__}")
        session = record.detached_session
        runner = options.pop("runner", None) or runner_from(record.runner)
        try:
            running = detached.read_state(runner, session)
        except LookupError as e:
            raise LookupError(f"{e}; `jqref cleanup {session_id}` forgets the session") from None
        return cluster_cls(
            runner=runner,
            security=Security(**session["security"]),
            detach=True,
            _attached=(record, running),
            **{"scheduler_on": "login", **session["options"], **options},  # sessions recorded before "job" were
        )

    async def _forget_a_scheduler_that_is_gone(self) -> None:
        """A scheduler that no longer answers (killed on the login node, its job
        ended) is marked failed, so that closing does not retire workers through
        it: SpecCluster would raise, and stay closing for ever."""
        scheduler = self.scheduler
        if self.scheduler_comm is None or scheduler is None or scheduler.status != Status.running:
            return
        try:
            await asyncio.wait_for(self.scheduler_comm.identity(), SCHEDULER_ANSWER_TIMEOUT)
        except (OSError, ValueError, TimeoutError) as e:  # ValueError: tornado's, on a refused forward
            logger.warning(
                "the Dask scheduler at %s no longer answers (%s): closing the cluster without it",
                self.scheduler_address,
                str(e) or type(e).__name__,
            )
            scheduler.status = Status.failed

    async def _close(self):
        for task in (self._watch, self._heartbeat):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        try:
            try:
                if self.status == Status.running:
                    # The jobs first, while their workers still have the scheduler to say goodbye
                    # to: a worker whose scheduler has gone takes seconds to close, and its job
                    # with it. What this leaves is reported below.
                    with suppress(JobCancelError):
                        await self.batch.cancel_all()
                    await self._forget_a_scheduler_that_is_gone()
                await super()._close()
            finally:
                # Jobs that could not be cancelled above, and any the spec started since.
                await self.batch.cancel_all()
            self._record.remove()  # kept if cancelling failed: `jqref cleanup` can retry
        finally:
            with suppress(CommandError, OSError):
                await self._worker_files.remove(self.runner)
            if self._owns_runner:
                await self.runner.close()


#: Closings started and not awaited, held until done: the event loop keeps only weak references to tasks.
_closing: set[asyncio.Future] = set()


@atexit.register
def _cancel_jobs_at_exit():
    """Close clusters still open at exit; cancel directly whatever that leaves.
    Detached clusters stay, for `attach`: their scheduler ends them when idle."""
    for cluster in list(JobQueueCluster._live):
        if cluster.detach and cluster.status == Status.running:
            logger.warning(
                "leaving detached cluster %s running on %s: attach with %s.attach(%r); it closes "
                "itself after %g s without a client",
                cluster._record.id,
                runner_destination(cluster.runner),
                type(cluster).__name__,
                cluster._record.id,
                cluster.idle_timeout,
            )
            BatchQueue._instances.discard(cluster.batch)
            if isinstance(cluster.scheduler, JobScheduler) and cluster.scheduler.queue is not None:
                BatchQueue._instances.discard(cluster.scheduler.queue)  # the scheduler's job stays too
        elif cluster.status not in (Status.closed, Status.failed) and not cluster.asynchronous:
            with suppress(Exception):
                cluster.close(timeout=30)
    for batch in list(BatchQueue._instances):
        with suppress(Exception):
            batch.cancel_all_blocking()
