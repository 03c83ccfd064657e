"""PBS (OpenPBS, PBS Professional, Torque): qsub, qdel, qstat -f.

One module for the PBS family: the directives and `qstat -f` text they share.
Cores and memory are one `-l select=1:ncpus=..:mem=..` chunk (PBS
Professional/OpenPBS), or Torque's `-l nodes=1:ppn=..` and `-l mem=..` with
``resource_type="nodes"``; ``resource_spec`` replaces either. Memory is
written as dask-jobqueue writes it, rounded up in the largest of ``GB``,
``MB``, ``kB`` it holds ten of (``mem=27GB``, ``mem=954MB``): PBS counts these
in units of 1024, and Slurm's sbatch, behind the Torque-compatible qsub,
drops the ``B`` and reads ``27G`` the same way.

Job ids are kept as qsub prints them (``123.server``, or a bare ``123``) and
matched by their sequence number when qstat spells them differently.

Job states (``job_state`` in ``qstat -f``):

- Q queued, W waiting for its start time, T in transit: pending.
- R running, E exiting, S/U suspended, B array begun: running.
- F finished, C completed (Torque), X subjob done, M moved to another
  server: ended, as is a job qstat no longer knows.
- H held: pending for user and operator holds (``Hold_Types`` u, o), which
  someone placed on purpose and may release; held (cancelled and replaced)
  for system and bad-password holds (s, p), which PBS places on a job that
  failed to start and which never clear on their own.

A job is queued under its cluster's job name plus a suffix unique to the
job (``dask-worker-3fa9c2d1``): the name is the only field a user sets that
``qstat -f`` shows in every flavour, so it is how a job whose submission
was cut off is found again. Names and values must survive every qsub that
reads them. Job names follow PBS's own rule (letters, digits and
``. _ + -``, at most 230 characters with the suffix);
directive values are shell-quoted, which both PBS's directive parser and
Slurm's (behind the Torque-compatible wrappers) read back exactly, except
for backslashes: those are refused.
"""

from __future__ import annotations

import os
import re

from .cluster import JobQueueCluster
from .job import Job, JobState, memory_rounded_up
from .runners import CommandError

#: PBS's job name rule (the client library refuses anything else).
_JOB_NAME = re.compile(r"[A-Za-z0-9._+-]+")
_MAX_JOB_NAME = 230
#: The part of a job's tag added to its name: enough to tell a user's jobs apart.
_NAME_SUFFIX_DIGITS = 8
#: A destination, queue[@server]. It is also passed on the qsub command line,
#: which the Torque-compatible wrappers paste into a shell command.
_DESTINATION = re.compile(r"[A-Za-z0-9_.-]+(@[A-Za-z0-9_.-]+)?")
#: [[hours:]minutes:]seconds[.fraction]: anything else could smuggle another
#: resource into the comma-separated -l list.
_WALLTIME = re.compile(r"\d+(:\d+){0,2}(\.\d+)?")
_JOB_ID = re.compile(r"\d+(\[\d*\])?(\.[A-Za-z0-9_.-]+)?")
#: What qstat and qdel say about jobs that left the queue (OpenPBS/PBS Pro,
#: with and without job history; Torque).
_GONE = re.compile(r"Unknown Job Id|Job has finished|Invalid state for job - COMPLETE", re.IGNORECASE)
#: qstat's exit status for an unknown job id (PBSE_UNKJOBID 15001 % 256).
_UNKNOWN_JOB_EXIT = 153
_ATTRIBUTE = re.compile(r"([A-Za-z_][\w.]*) = (.*)")

#: PBS's memory units (binary, though spelled kB, MB, GB), as dask-jobqueue
#: writes them: the largest of which the request holds ten, rounded up.
PBS_MEMORY_UNITS = (("GB", 2**30), ("MB", 2**20), ("kB", 2**10), ("B", 1))

_PENDING = {"Q", "W", "T"}
_ENDED = {"F", "C", "X", "M"}
#: Holds PBS itself places on a job that cannot start (system, bad password).
_ERROR_HOLDS = set("sp")


def parse_qstat_full(text: str) -> dict[str, dict[str, str]]:
    """Job id to attributes from ``qstat -f`` text.

    A job is a ``Job Id: <id>`` line followed by indented ``name = value``
    lines. PBS Professional and Torque indent attributes by four spaces and
    wrap long values onto lines indented by a tab; the Slurm-backed wrapper
    indents attributes by a tab and never wraps. So the first line of a job
    sets the attribute indent, and other indented lines continue the value
    before them.
    """
    jobs: dict[str, dict[str, str]] = {}
    attributes: dict[str, str] | None = None
    indent = last = None
    for line in text.splitlines():
        if line.startswith("Job Id:"):
            attributes = jobs.setdefault(line[len("Job Id:") :].strip(), {})
            indent = last = None
            continue
        body = line.lstrip(" \t")
        lead = line[: len(line) - len(body)]
        if attributes is None or not body or not lead:
            continue
        indent = indent or lead
        match = _ATTRIBUTE.fullmatch(body) if lead == indent else None
        if match:
            last = match.group(1)
            attributes[last] = match.group(2)
        elif last is not None:
            attributes[last] += body
    return jobs


def sequence_number(job_id: str) -> str:
    """'123' of '123.server' (and of '123')."""
    return job_id.split(".", 1)[0]


def job_state(attributes: dict[str, str]) -> tuple[JobState, str]:
    word = attributes["job_state"].strip()
    if word in _ENDED:
        return JobState.ENDED, word
    if word == "H":
        holds = attributes.get("Hold_Types", "").strip()
        state = JobState.HELD if _ERROR_HOLDS & set(holds) else JobState.PENDING
        return state, f"H (Hold_Types={holds or '?'})"
    if word in _PENDING:
        return JobState.PENDING, word
    return JobState.RUNNING, word  # R, E, S, U, B, and anything newer


class PBSJob(Job):
    config_name = "pbs"
    directive_prefix = "#PBS"
    submit_command = ("qsub",)
    cancel_command = ("qdel",)
    # Absent under the Slurm-backed commands, whose qdel (scancel) signals
    # first and kills after Slurm's KillWait.
    signal_command = ("qsig", "-s", "TERM")
    # The Slurm-backed qsub cannot read a script from stdin.
    submit_reads_stdin = False

    renamed_options = {"project": "account"}  # dask-jobqueue 0.9 deprecates project for -A
    parameter_docs = """
    resource_spec : str
        The ``-l`` resource request, in place of the one made from ``cores`` and ``memory``.
    resource_type : str
        ``"select"`` (default, as dask-jobqueue: ``-l select=1:ncpus=<cores>:mem=<memory>``)
        or ``"nodes"`` (Torque: ``-l nodes=1:ppn=<cores>`` and ``-l mem=<memory>``).
    """

    def configure(self):
        # As dask-jobqueue: PBS's own variable names the account when nothing else does.
        self.account = self.account or os.environ.get("PBS_ACCOUNT")
        self.resource_type = self.option("resource_type")
        if self.resource_type not in ("select", "nodes"):
            raise ValueError(
                f"resource_type must be 'select' (PBS Pro/OpenPBS) or 'nodes' (Torque), got {self.resource_type!r}"
            )
        self.resource_spec = self.option("resource_spec")
        longest = _MAX_JOB_NAME - _NAME_SUFFIX_DIGITS - 1
        if not _JOB_NAME.fullmatch(self.job_name) or len(self.job_name) > longest:
            raise ValueError(
                f"PBS job names are 1 to {longest} letters, digits and . _ + - "
                f"(PBS refuses anything else; jqref adds a suffix): {self.job_name!r}"
            )
        self.tag = f"{self.job_name}-{self.tag[-_NAME_SUFFIX_DIGITS:]}"
        if self.queue is not None and not _DESTINATION.fullmatch(str(self.queue)):
            raise ValueError(
                f"queue must be a PBS destination, queue[@server], of letters, digits and . _ -: {self.queue!r}"
            )
        if self.log_directory and ":" in str(self.log_directory):
            raise ValueError(
                f"PBS reads a ':' in an output path as host:path; "
                f"log_directory cannot contain one: {self.log_directory!r}"
            )
        if self.walltime is not None and not _WALLTIME.fullmatch(str(self.walltime)):
            raise ValueError(f"walltime must be [[hours:]minutes:]seconds, e.g. '01:30:00': {self.walltime!r}")
        for tokens in self.directives():
            for value in tokens:
                if "\\" in value or "\n" in value or "\r" in value:
                    raise ValueError(f"PBS directives cannot carry backslashes or line breaks: {value!r}")

    def resource_directives(self):
        if self.resource_spec:
            yield "-l", str(self.resource_spec)
            return
        memory = memory_rounded_up(self.memory_bytes, PBS_MEMORY_UNITS, at_least=10)
        if self.resource_type == "select":
            yield "-l", f"select=1:ncpus={self.cores}:mem={memory}"
        else:
            yield "-l", f"nodes=1:ppn={self.cores}"
            yield "-l", f"mem={memory}"

    def directives(self):
        # dask-jobqueue's lines in its order; the name carries jqref's tag.
        yield "-N", self.tag
        if self.queue:
            yield "-q", str(self.queue)
        if self.account:
            yield "-A", str(self.account)
        yield from self.resource_directives()
        if self.walltime:
            yield "-l", f"walltime={self.walltime}"
        yield from self.log_directory_directives()

    def submit_argv(self):
        # The destination on the command line as well as in the script: qsub's
        # "Unknown queue" does not say which, the failed command line does.
        queue = ["-q", str(self.queue)] if self.queue else []
        return [*self.submit_command, *queue, *self.submit_command_extra]

    @classmethod
    def parse_job_id(cls, stdout):
        job_id = stdout.strip()
        if not _JOB_ID.fullmatch(job_id):
            raise ValueError(f"qsub printed no job id: {stdout!r}")
        return job_id

    @classmethod
    def already_gone(cls, result):
        output = result.stdout + result.stderr
        # The Slurm-backed qdel exits non-zero without a word for a job that
        # has already ended or that it does not know.
        return bool(_GONE.search(output)) or not output.strip()

    def find_command(self):
        return ["qstat", "-f"]

    def error_file(self):
        # -e <dir>/: PBS names the file <job name>.e<sequence number>.
        if not self.log_directory or self.job_id is None:
            return None
        return f"{str(self.log_directory).rstrip('/')}/{self.tag}.e{sequence_number(self.job_id)}"

    @classmethod
    def parse_found(cls, result, tag):
        if not result.ok and not cls._silent_no_jobs(result):
            raise CommandError(result)
        return next(
            (
                job_id
                for job_id, attributes in parse_qstat_full(result.stdout).items()
                if attributes.get("Job_Name", "").strip() == tag
            ),
            None,
        )

    @classmethod
    def _silent_no_jobs(cls, result) -> bool:
        """The Slurm-backed qstat's answer when none of the jobs asked about is known."""
        return not result.stderr.strip() and result.returncode == _UNKNOWN_JOB_EXIT

    @classmethod
    def status_command(cls, job_ids):
        return ["qstat", "-f", *job_ids]

    @classmethod
    def _asked(cls, result, job_ids) -> dict[str, dict[str, str]]:
        """The attributes of the jobs asked about in `qstat -f` output, by the id jqref knows them by."""
        asked = set(job_ids)
        by_sequence = {sequence_number(job_id): job_id for job_id in job_ids}
        jobs = {}
        for shown, attributes in parse_qstat_full(result.stdout).items():
            job_id = shown if shown in asked else by_sequence.get(sequence_number(shown))
            if job_id is not None:
                jobs[job_id] = attributes
        return jobs

    @classmethod
    def parse_reasons(cls, result, job_ids):
        # The scheduler's comment on a job it does not run ("Not Running: Insufficient amount of resource: ncpus").
        return {
            job_id: attributes.get("comment", "").strip() if job_state(attributes)[0] is not JobState.RUNNING else ""
            for job_id, attributes in cls._asked(result, job_ids).items()
            if "job_state" in attributes
        }

    @classmethod
    def parse_states(cls, result, job_ids):
        if not result.ok:
            # qstat reports the ids it knows and complains about the others;
            # any other complaint means the poll itself failed.
            complaints = [line for line in result.stderr.splitlines() if line.strip() and not _GONE.search(line)]
            if complaints or not (result.stderr.strip() or cls._silent_no_jobs(result)):
                raise CommandError(result)
        states = {}
        for job_id, attributes in cls._asked(result, job_ids).items():
            if "job_state" not in attributes:
                raise CommandError(result, what=f"printed job {job_id} without a job_state")
            states[job_id] = job_state(attributes)
        return states


class PBSCluster(JobQueueCluster):
    """Dask workers in PBS jobs (OpenPBS, PBS Professional, Torque). Every
    option is listed below: `resource_type` ('select' or 'nodes') and
    `resource_spec` say how cores and memory are requested. `JobQueueCluster`
    describes where the batch commands and the scheduler run."""

    job_cls = PBSJob
