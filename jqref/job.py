"""A batch job that runs Dask workers: rendering its script, submitting and cancelling it.

`Job` holds everything common to batch systems. A scheduler module subclasses
it and declares only what differs: the directive prefix, the directives for
the resources a job asks for, the submit/cancel/status commands, and how to
read a job id and job states from their output.
"""

from __future__ import annotations

import copy
import enum
import math
import re
import shlex
import sys
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from dask.utils import format_bytes, parse_bytes, parse_timedelta
from distributed.core import Status
from distributed.deploy.spec import ProcessInterface, SpecCluster
from distributed.deploy.utils import nprocesses_nthreads

from . import shell
from .config import Options
from .option_checks import SIZE, check
from .preload import worker_preload_args
from .runners import CommandResult
from .shell import single_line
from .tls import worker_environment, worker_paths

if TYPE_CHECKING:
    from distributed.security import Security


class JobQueue(Protocol):
    """What submits and cancels a cluster's jobs and tracks them between
    (`batch.BatchQueue`, which the cluster gives each job)."""

    async def submit(self, job: Job) -> str: ...

    async def cancel(self, job: Job) -> None: ...


#: The shell variable an array element's worker name is chosen into.
ELEMENT_NAME_VARIABLE = "JQREF_WORKER_NAME"

#: dask-jobqueue's `worker_command` default: the only one given --nworkers and --nanny.
DASK_WORKER = "distributed.cli.dask_worker"


class InlineKeyWarning(UserWarning):
    """A job's TLS key is written into its script rather than named as a file."""


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
    """Workers per job when not given: distributed's own rule (as dask-jobqueue
    uses it), one worker per core up to 4 cores, then about sqrt(cores)."""
    return nprocesses_nthreads(cores)[0]


def supervised(command: str, signal: str, action: str) -> list[str]:
    """Shell lines that run `command` in the background and wait for it,
    running `action` when the job's shell gets `signal` ($worker is its pid)
    and waiting on until it has ended; $status is its exit status then."""
    return [
        f"{command} &",
        "worker=$!",
        f"trap {shlex.quote(action)} {signal}",
        # wait returns early when the trap runs: wait again until the workers are gone.
        'wait "$worker"; status=$?',
        'while kill -0 "$worker" 2>/dev/null; do wait "$worker"; status=$?; done',
    ]


def job_id_from_output(regexp: str, stdout: str, command: str) -> str:
    match = re.search(regexp, stdout)
    if match is None:
        raise ValueError(
            f"Could not parse job id from the output of {command}, {stdout!r}, with job_id_regexp {regexp!r}"
        )
    job_id = match.groupdict().get("job_id")
    if job_id is None:
        raise ValueError(
            f"job_id_regexp {regexp!r} has no group named job_id: "
            "You need to use a 'job_id' named group, e.g. r'(?P<job_id>\\d+)'"
        )
    return job_id


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
    #: Sends running jobs SIGTERM, which their workers handle, without ending
    #: them: the first step of a cancel, the cancel command following after
    #: `cancel_grace_period`. None where the cancel command itself signals
    #: first and waits a grace period (SGE -notify, HTCondor).
    signal_command: ClassVar[Sequence[str] | None] = None
    #: The batch system's words for states in which its cancel kills a job
    #: without the warning it gives running jobs: a cancel waits for the job
    #: to leave them, up to `cancel_grace_period` (SGE's transfer state).
    unwarned_states: ClassVar[frozenset[str]] = frozenset()
    #: The batch system's words for ends that a job's options caused, each
    #: with the option to change (SLURM's OUT_OF_MEMORY: ``memory``): such a
    #: job counts as a failed start even if its workers had connected, so the
    #: same mistake is not resubmitted for ever.
    option_ends: ClassVar[Mapping[str, str]] = {}
    #: The same for ends the batch system's state does not tell apart, by
    #: what it writes into the job's stderr file (Slurm without cgroups:
    #: FAILED, 'Exceeded job memory limit').
    option_end_signs: ClassVar[Mapping[str, str]] = {}
    #: Words for ends no option caused (preemption): the job is replaced
    #: without counting as a failed start.
    blameless_ends: ClassVar[frozenset[str]] = frozenset()
    #: What the batch system counts a bare number of `walltime` in: seconds,
    #: or Slurm's minutes.
    walltime_number_seconds: ClassVar[int] = 1
    #: Why this batch system cannot carry the workers' TLS key, if it cannot.
    tls_unavailable: ClassVar[str | None] = None
    #: Whether the submit command reads the job script from stdin; if not, the
    #: script is written to a temporary file whose path ends the argv.
    submit_reads_stdin: ClassVar[bool] = True
    #: How one submission becomes many jobs (an array), where it can: the
    #: variable that holds an element's index inside the job (empty: no
    #: arrays), the first index, and the directive option taking the range.
    array_index_variable: ClassVar[str] = ""
    array_option: ClassVar[str | None] = None
    array_first_index: ClassVar[int] = 0
    #: Set on the copy that renders an array's script (see `array_of`): the
    #: worker name of each element, in index order.
    element_names: list[str] | None = None
    #: The cluster whose job this is, as SpecCluster marks the workers it
    #: starts (and `JobQueueCluster` the jobs it adopts from a session).
    _cluster: weakref.ref[SpecCluster]

    #: dask-jobqueue's other names for this scheduler's options, in config
    #: spelling: deprecated ones (read with a FutureWarning), and current ones
    #: that jqref spells differently (read silently).
    renamed_options: ClassVar[dict[str, str]] = {}
    option_aliases: ClassVar[dict[str, str]] = {}
    #: The numpy-style documentation of this scheduler's own options, which
    #: its cluster class's docstring lists after the common ones.
    parameter_docs: ClassVar[str] = ""
    #: Where the job id is in the submit command's output (a `job_id` group),
    #: for schedulers that do not parse it themselves; a site whose submit
    #: wrapper prints something else sets its own, as in dask-jobqueue.
    job_id_regexp: ClassVar[str] = r"(?P<job_id>\d+)"
    #: The queue a job started on its own (never a cluster's, as dask-jobqueue's
    #: can be) submits through, here on this host. The queue's module sets it,
    #: so that jobs need not import the queue that holds them.
    lone_job_queue: ClassVar[Callable[[type[Job]], JobQueue]]

    def __init__(
        self,
        scheduler: str | None = None,
        name: str | None = None,
        *,
        batch: JobQueue | None = None,
        security: Security | None = None,
        preloads: Mapping[str, str] | None = None,
        config_name: str | None = None,
        shared_options: Options | None = None,
        **options: Any,
    ):
        """`options` are the keys of this scheduler's section in `jqref.yaml`
        (as keywords: `job_name` for `name`, underscores for dashes), and
        dask-jobqueue's names for them. A cluster passes its jobs
        `shared_options` instead: resolved once for all of them, and
        `preloads`, the files of jqref's code it writes for them
        (`worker_files`; a job on its own runs none)."""
        super().__init__(scheduler=scheduler, name=name)
        if not getattr(type(self), "config_name", None):
            raise ValueError(
                f"config_name is missing on {type(self).__name__}: a job class declares the dask "
                "config section (and jqref.yaml defaults) its options come from, e.g. 'slurm'"
            )
        # A cluster's jobs get the options their shared Options were resolved from as well.
        self.options = shared_options or Options(
            self.config_name,
            config_name,
            options,
            renamed=self.renamed_options,
            aliases=self.option_aliases,
            owner=type(self).__name__,
        )
        opt = self.option
        self.scheduler = scheduler
        self.name = name
        self.batch = batch
        self.job_id: str | None = None
        #: Unique to this job and visible in the queue, to find it again when a
        #: submission's answer was lost with the connection.
        self.tag = f"jqref-{uuid.uuid4().hex[:16]}"
        self.state = JobState.PENDING
        #: Why the batch system keeps the job waiting (or held), in its words; empty when it says nothing.
        self.reason = ""
        #: When the job was submitted (time.time()), for its age in the jobs table.
        self.submitted_at: float | None = None
        #: The batch system's word for how the job ended, and the last lines of its stderr file if readable.
        self.ended_as = ""
        self.error_tail = ""

        self.cores = opt("cores")
        self.memory = opt("memory")
        if self.cores is None or self.memory is None:
            cluster = type(self).__name__.removesuffix("Job") + "Cluster"
            raise ValueError(
                f"say how many cores and how much memory each job gets, e.g. "
                f"{cluster}(cores={self.cores or 8}, memory={self.memory or '24GB'!r}), "
                f"or jobqueue.{self.options.section}.cores and .memory in the dask config"
            )
        # Each value is already what its option accepts (`option_checks`, applied by Options).
        self.memory_bytes = parse_bytes(self.memory)
        self.processes = opt("processes") or default_processes(self.cores)
        if self.processes > self.cores:
            raise ValueError(
                f"processes={self.processes} must be between 1 and cores={self.cores}: "
                "each worker needs at least one thread"
            )
        self.job_name = opt("job_name")
        self.queue = opt("queue")
        self.account = opt("account")
        self.walltime = opt("walltime")
        #: The compute nodes' interpreter as given (None: this one), and as shell words.
        self.python = opt("python")
        self.python_words = (
            shell.command("python", [self.python]) if self.python is not None else [shell.literal(sys.executable)]
        )
        if not self.python_words:
            raise ValueError("python must name an interpreter, got an empty string")
        self.worker_command = opt("worker_command")
        self.interface = opt("interface")
        self.nanny = opt("nanny")
        self.protocol = opt("protocol")
        self.death_timeout = opt("death_timeout")
        self.local_directory = opt("local_directory")
        self.shared_temp_directory = opt("shared_temp_directory")
        self.log_directory = opt("log_directory")
        self.shebang = opt("shebang")
        self.worker_extra_args = opt("worker_extra_args")
        self.job_extra_directives = opt("job_extra_directives")
        self.job_directives_skip = opt("job_directives_skip")
        self.job_script_prologue = opt("job_script_prologue")
        self.job_script_epilogue = opt("job_script_epilogue")
        self.submit_command_extra = opt("submit_command_extra")
        self.cancel_command_extra = opt("cancel_command_extra")
        self.cancel_grace_period = parse_timedelta(opt("cancel_grace_period"))
        self.arrays = opt("arrays")
        self.max_array_size = opt("max_array_size")
        self.lifetime_margin = parse_timedelta(opt("lifetime_margin"))
        if security is not None and not worker_paths(security):
            if self.tls_unavailable:
                raise ValueError(
                    f"TLS (security=) with material in memory is not available on {self.config_name}: "
                    f"{self.tls_unavailable}; give the workers' certificate and key as files the jobs "
                    "can read (or, from this machine, set shared_temp_directory)"
                )
            if shared_options is None:  # a job on its own: a cluster's jobs name files it wrote
                warnings.warn(
                    "security: the workers' key goes inline in the job script, readable by whoever "
                    "reads the script (administrators, spool directories, logs); give it as files only "
                    "you can read, as JobQueueCluster does",
                    InlineKeyWarning,
                    stacklevel=2,
                )
        self.security = security
        self.preloads = dict(preloads or {})
        self.configure()
        if shared_options is None:  # a cluster's jobs share options its template job already rendered
            self.job_script()  # so that options no script can carry fail here, not at submission

    def option(self, name: str) -> Any:
        """One of this job's options, resolved (keyword, config, default)."""
        return self.options.get(name)

    def configure(self) -> None:
        """Read the scheduler-specific options (e.g. SLURM's job_cpu) and check them."""

    # ---- what a scheduler module declares -------------------------------

    def directives(self) -> Iterable[Sequence[str]]:
        """The resource requests, one argument list per directive line."""
        raise NotImplementedError

    @classmethod
    def parse_job_id(cls, stdout: str) -> str:
        """The job id in the submit command's output, found by `job_id_regexp`."""
        return job_id_from_output(cls.job_id_regexp, stdout, cls.submit_command[0])

    def _job_id_from_submit_output(self, stdout: str) -> str:
        """dask-jobqueue's name for it, which reads this job's own `job_id_regexp`."""
        return job_id_from_output(self.job_id_regexp, stdout, self.submit_command[0])

    @classmethod
    def element_id(cls, array_id: str, index: int) -> str:
        """The id of element `index` of the array the submit command reported as `array_id`."""
        raise NotImplementedError

    @property
    def array_range(self) -> str:
        """The index range of this array's elements, e.g. '0-11' (on the copy `array_of` makes)."""
        if self.element_names is None:
            raise ValueError(f"{self!r} is not an array: array_of() makes the copy that renders one")
        return f"{self.array_first_index}-{self.array_first_index + len(self.element_names) - 1}"

    def array_directive(self) -> tuple[str, str]:
        """The directive that makes the script an array: `array_option` and the `array_range`."""
        if self.array_option is None:
            raise NotImplementedError(
                f"{type(self).__name__} has an array_index_variable but no array_option: "
                "it writes its arrays itself (as HTCondor's job does) or declares the directive option"
            )
        return self.array_option, self.array_range

    @classmethod
    def already_gone(cls, result: CommandResult) -> bool:
        """Whether a failed cancel only says the job had already left the queue."""
        return False

    def find_command(self) -> list[str]:
        """A command listing queued jobs with this job's tag."""
        raise NotImplementedError

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

    @classmethod
    def parse_reasons(cls, result: CommandResult, job_ids: Sequence[str]) -> dict[str, str]:
        """Job id to why the batch system keeps it waiting or held, in its own
        words, read from the same status command's output as `parse_states`
        (no extra command per poll); empty for a job it gives no reason for."""
        return {}

    def option_at_fault(self) -> str | None:
        """The option that made the batch system end this job (`option_ends`,
        `option_end_signs`), if its end says so."""
        if self.ended_as in self.option_ends:
            return self.option_ends[self.ended_as]
        return next((option for sign, option in self.option_end_signs.items() if sign in self.error_tail), None)

    def site_limit_commands(self) -> list[list[str]]:
        """Commands whose answers say the site's limits on jobs like this one
        (`parse_site_limits` reads them); none where jqref reads none."""
        return []

    def parse_site_limits(self, result: CommandResult) -> dict[str, int]:
        """The limits one of `site_limit_commands` reported, by the option
        each becomes the default of: ``max_array_size``, ``max_jobs``."""
        return {}

    @classmethod
    def pending_reason_command(cls, job_ids: Sequence[str]) -> list[str] | None:
        """Where the status command gives no reason: a command that does, run
        only for jobs that stay pending (`BatchQueue.PENDING_REASON_AFTER`),
        not on every poll; None where there is none."""
        return None

    @classmethod
    def parse_pending_reasons(cls, result: CommandResult, job_ids: Sequence[str]) -> dict[str, str]:
        """Job id to reason, from `pending_reason_command`'s output."""
        return {}

    def error_file(self) -> str | None:
        """The path of this job's stderr file, where jqref can name it (a
        `log_directory` the batch system names the files in by job id)."""
        return None

    # ---- rendering -------------------------------------------------------

    # dask-jobqueue's names for a job's resources, which its users read.
    @property
    def worker_cores(self) -> int:
        return self.cores

    @property
    def worker_memory(self) -> int:
        """The job's memory in bytes."""
        return self.memory_bytes

    @property
    def worker_processes(self) -> int:
        return self.processes

    @property
    def worker_process_threads(self) -> int:
        return self.cores // self.processes

    @property
    def worker_process_memory(self) -> str:
        """Each worker's memory limit, as dask-jobqueue writes it (e.g. 6.52GiB)."""
        per_worker = self.memory_bytes / self.processes  # a float, as dask-jobqueue divides: same text
        return format_bytes(per_worker).replace(" ", "")  # type: ignore[arg-type]  # dask annotates int, formats any number

    def worker_words(self) -> list[str]:
        """The command that starts the workers, as shell words (see `shell`
        for what may expand in them)."""
        words = [*self.python_words, "-m", *shell.command("worker_command", [self.worker_command])]
        args = ["--nthreads", str(self.worker_process_threads), "--memory-limit", self.worker_process_memory]
        if self.worker_command == DASK_WORKER:  # other worker commands may not know these
            if self.processes > 1:
                args += ["--nworkers", str(self.processes)]
            args.append("--nanny" if self.nanny else "--no-nanny")
            if self.preloads:
                args += worker_preload_args(self.nanny, self.preloads)
        if self.death_timeout is not None:
            args += ["--death-timeout", f"{parse_timedelta(self.death_timeout):g}"]
        for flag, path in ((self.security and worker_paths(self.security)) or {}).items():
            args += [flag, path]
        for flag, value in (("--interface", self.interface), ("--protocol", self.protocol)):
            if value is not None:
                args += [flag, str(value)]
        name = f'"${ELEMENT_NAME_VARIABLE}"' if self.element_names is not None else shell.name("name", self.name)
        words += [shell.literal(self.scheduler or "SCHEDULER-ADDRESS"), "--name", name, *map(shell.literal, args)]
        if self.local_directory is not None:
            words += ["--local-directory", shell.path("local_directory", self.local_directory)]
        extra = shell.command("worker_extra_args", self.worker_extra_args)
        return words + extra + list(map(shell.literal, self.lifetime_args()))

    def lifetime_args(self) -> list[str]:
        """`--lifetime` and `--lifetime-stagger` that retire the workers
        before the batch system kills the job at its `walltime`: the walltime
        less `lifetime_margin` (never more than a fifth of it), each worker
        up to half the margin earlier or later, so that workers started
        together leave one by one, handing their data to the others, and
        the last is gone half a margin before the kill. None without a walltime, with the margin 0, or
        when worker_extra_args sets a lifetime already."""
        if not self.walltime or not self.lifetime_margin:
            return []
        words = (word.split("=")[0] for arg in self.worker_extra_args for word in str(arg).split())
        if any(word in ("--lifetime", "--lifetime-stagger") for word in words):
            return []
        walltime = walltime_seconds(self.walltime, self.walltime_number_seconds)
        margin = min(self.lifetime_margin, walltime / 5)
        return ["--lifetime", f"{walltime - margin:g}s", "--lifetime-stagger", f"{margin / 2:g}s"]

    def log_directory_directives(self) -> Iterable[Sequence[str]]:
        """`-e dir/` and `-o dir/`, as dask-jobqueue writes them for batch
        systems (SGE, PBS) that name the files in a directory themselves."""
        if self.log_directory:
            directory = str(self.log_directory).rstrip("/") + "/"
            yield "-e", directory
            yield "-o", directory

    def skip_directives(self, lines: Iterable[str]) -> list[str]:
        """Drop the lines that contain any of `job_directives_skip` (the
        generated ones: the user's `job_extra_directives` are never dropped)."""
        return [line for line in lines if not any(skip in line for skip in self.job_directives_skip)]

    def directive_lines(self) -> list[str]:
        # A line break would end the directive's comment line: what follows would run.
        directives = list(self.directives())
        if self.element_names is not None:
            directives.append(self.array_directive())
        lines = self.skip_directives(
            f"{self.directive_prefix} {shlex.join(single_line('directive', str(t)) for t in tokens)}"
            for tokens in directives
        )
        extras = self.job_extra_directives
        return lines + [f"{self.directive_prefix} {single_line('job_extra_directives', extra)}" for extra in extras]

    @property
    def job_header(self) -> str:
        """The directive lines (dask-jobqueue's `job_header`)."""
        return "\n".join(self.directive_lines())

    @property
    def _command_template(self) -> str:
        """The worker command line as the script runs it (dask-jobqueue's name)."""
        return " ".join(self.worker_words())

    def worker_environment(self) -> dict[str, str]:
        """Variables the workers need beyond the command line (TLS material given inline)."""
        if self.security is None or worker_paths(self.security):
            return {}
        return worker_environment(self.security)

    def shell_commands(self) -> list[str]:
        """What the job runs: the prologue, the workers, the epilogue."""
        return [
            *self.job_script_prologue,
            *self.element_name_selection(),  # after the prologue: names may refer to what it sets
            *(f"export {name}={shlex.quote(value)}" for name, value in self.worker_environment().items()),
            *self.run_workers(" ".join(self.worker_words())),
        ]

    def run_workers(self, command: str) -> list[str]:
        """The lines that run the worker `command`: in place of the job's shell,
        so the batch system's signals reach the workers, unless an epilogue
        must run after them; then the shell passes SIGTERM on and waits."""
        if not self.job_script_epilogue:
            return [f"exec {command}"]
        return [*supervised(command, "TERM", 'kill -TERM "$worker"'), *self.job_script_epilogue, 'exit "$status"']

    def element_name_selection(self) -> list[str]:
        """In an array's script, the line that gives each element its worker
        name by its index (one line: HTCondor's body must be one)."""
        if self.element_names is None:
            return []
        cases = [
            f"{self.array_first_index + i}) {ELEMENT_NAME_VARIABLE}={shell.name('name', name)} ;;"
            for i, name in enumerate(self.element_names)
        ]
        index = f'"${self.array_index_variable}"'
        unknown = f"echo 'jqref: no worker name for array element '{index} >&2; exit 3"
        return [f"case {index} in {' '.join(cases)} *) {unknown} ;; esac"]

    def array_of(self, jobs: Sequence[Job]) -> Job:
        """A copy of this job whose script submits `jobs` (this one first, all
        of the same cluster) as one array: element i runs the workers of jobs[i]."""
        template = copy.copy(self)
        template.element_names = [str(job.name) for job in jobs]
        return template

    def job_script(self) -> str:
        return "\n".join([self.shebang, "", *self.directive_lines(), "", *self.shell_commands()]) + "\n"

    def submit_argv(self) -> list[str]:
        return [*self.submit_command, *self.submit_command_extra]

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [*self.cancel_command, *self.cancel_command_extra, *job_ids]

    def signal_argv(self, job_ids: Sequence[str]) -> list[str]:
        """The command that sends `job_ids` SIGTERM, where the batch system has one (`signal_command`)."""
        if self.signal_command is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no signal_command: its cancel command signals the jobs itself"
            )
        return [*self.signal_command, *job_ids]

    # ---- ProcessInterface ------------------------------------------------

    async def start(self):
        if self.batch is None:  # a job on its own, as dask-jobqueue's can be: submitted from here
            self.batch = Job.lone_job_queue(type(self))
        self.job_id = await self.batch.submit(self)
        await super().start()

    async def close(self):
        """Cancel the job. One never started has nothing to cancel: it just closes."""
        if self.batch is not None:
            await self.batch.cancel(self)
        await super().close()

    def ended(self, state: JobState):
        """Called by the queue when the batch system says the job is over."""
        self.state = state
        self.status = Status.closed
        self._event_finished.set()

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} job_id={self.job_id} state={self.state.value}>"


def walltime_seconds(walltime: str | int, number_seconds: int = 1) -> float:
    """A `walltime` as the batch system reads it, in seconds: [[H:]M:]S
    (S.fraction too), Slurm's D-H[:M[:S]], or a bare number of
    `number_seconds` each (60 for Slurm's minutes)."""
    text = str(walltime).strip()
    days, dash, clock = text.rpartition("-")
    try:
        parts = [float(part) for part in clock.split(":")]
        if dash:  # D-H, D-H:M, D-H:M:S
            return int(days) * 86400 + sum(p * unit for p, unit in zip(parts, (3600, 60, 1)))
        if len(parts) == 1:
            return parts[0] * number_seconds
        return sum(p * unit for p, unit in zip(reversed(parts), (1, 60, 3600)))
    except ValueError:
        raise ValueError(f"walltime={walltime!r} is not a time limit such as '01:30:00'") from None


def rows(output: str, columns: int) -> list[list[str]]:
    """The lines of a status command's output that have `columns` fields, split:
    anything else (a header, a login shell's noise) is not about a job."""
    return [fields for fields in (line.split() for line in output.splitlines()) if len(fields) == columns]


def size_in_bytes(option: str, value: Any) -> int:
    """A size option (memory, disk) in bytes, or an error naming it."""
    return parse_bytes(check(option, value, SIZE))


def memory_rounded_up(nbytes: int, units: Sequence[tuple[str, int]], at_least: int = 1) -> str:
    """`nbytes` written in the largest of `units` ((suffix, bytes), largest
    first) that it holds `at_least` of (else the last), rounded up so a job
    never asks for less: how dask-jobqueue writes memory for Slurm and PBS."""
    for suffix, size in units:
        if nbytes >= at_least * size or size == units[-1][1]:
            return f"{math.ceil(nbytes / size)}{suffix}"
    raise ValueError("no units given")


def memory_in_units(nbytes: int, unit: str) -> int:
    """Whole `unit`s (e.g. 'MiB') covering `nbytes`, rounded up so a job never asks for less."""
    return math.ceil(nbytes / parse_bytes(f"1 {unit}"))
