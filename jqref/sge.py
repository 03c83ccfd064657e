"""Grid Engine (SGE, Son of Grid Engine, Univa/Altair GE): qsub, qdel, qstat.

As in dask-jobqueue, a job requests only what `resource_spec` says (and its
walltime). Sites with a parallel environment can have the job ask for what
its workers use: `cores` slots through `pe` and memory through a per-slot
resource, `memory_resource` (e.g. `pe="smp", memory_resource="mem_free"`).

qdel kills a job with SIGKILL, which gives workers no chance to close. Jobs
are therefore submitted with `-notify`: qdel then first sends SIGUSR2 and
SIGKILL only after the queue's `notify` time. Dask does not handle SIGUSR2
(by default it would end the worker as abruptly), so the job script starts
the workers with SIGUSR2 ignored and turns it into the SIGTERM they close on,
once: Grid Engine delivers the warning twice (to the job's process group, then
to each process carrying its group id, execd's default ENABLE_ADDGRP_KILL).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

from .cluster import JobQueueCluster
from .job import Job, JobState, memory_in_units, supervised
from .runners import CommandError

# Characters Grid Engine refuses in job names (it answers with an obscure
# "Error reading answer list from qmaster" for whitespace).
_BAD_NAME = re.compile(r"[\s/:@\\*?]")
# Its #$ parser drops quote characters instead of reading shell quoting, so a
# value holding one cannot be carried through a directive exactly.
_QUOTE = re.compile("['\"]")


def _xml(result) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(result.check().stdout)
    except ElementTree.ParseError as e:
        raise CommandError(result, what=f"printed unreadable XML ({e})") from None


class SGEJob(Job):
    config_name = "sge"
    directive_prefix = "#$"
    submit_command = ("qsub", "-terse")
    cancel_command = ("qdel",)
    # qdel kills a job still in transfer outright; -notify's warning comes only once it runs.
    unwarned_states = frozenset({"t"})
    array_option = "-t"
    array_first_index = 1
    array_index_variable = "SGE_TASK_ID"

    option_aliases = {"project": "account"}  # dask-jobqueue's name for SGE's -P
    parameter_docs = """
    resource_spec : str
        An extra ``-l`` request, e.g. ``"h_vmem=4G"`` (your site's resource names).
    pe : str
        A parallel environment granting ``cores`` slots on one host (``-pe <pe> <cores>``),
        e.g. ``"smp"``. Default none, as dask-jobqueue: the job gets one slot.
    memory_resource : str
        A per-slot memory resource, e.g. ``"mem_free"`` or ``"h_vmem"``: the job asks for
        ``memory`` spread over its slots (``-l <memory_resource>=<memory/cores>M`` with ``pe``).
        Default none, as dask-jobqueue.
    """

    def configure(self):
        if _BAD_NAME.search(self.job_name):
            raise ValueError(f"Grid Engine job names cannot contain whitespace or any of /:@\\*?: {self.job_name!r}")
        self.pe = self.option("pe")
        self.memory_resource = self.option("memory_resource")
        self.resource_spec = self.option("resource_spec")

    def directive_lines(self):
        for tokens in self.directives():
            for value in tokens:
                if _QUOTE.search(value):
                    raise ValueError(f"Grid Engine directives cannot carry quote characters: {value!r}")
        return super().directive_lines()

    def directives(self):
        # dask-jobqueue's lines in its order, with jqref's own options among
        # the requests and its tag and -notify last.
        yield "-N", self.job_name
        if self.queue:
            yield "-q", self.queue
        if self.account:
            yield "-P", self.account
        if self.pe:
            yield "-pe", self.pe, str(self.cores)
        if self.memory_resource:
            # Per slot: with `pe` the job gets `cores` slots, so this much each; else one slot, all of it.
            per_slot = memory_in_units(self.memory_bytes // (self.cores if self.pe else 1), "MiB")
            yield "-l", f"{self.memory_resource}={per_slot}M"
        if self.resource_spec:
            yield "-l", self.resource_spec
        if self.walltime:
            yield "-l", f"h_rt={self.walltime}"
        yield from self.log_directory_directives()
        yield ("-cwd",)
        yield "-j", "y"  # stdout and stderr in one file (the -o one), as dask-jobqueue's jobs have them
        yield "-ac", f"jqref_tag={self.tag}"
        yield ("-notify",)

    def run_workers(self, command):
        # qdel's notice: close gracefully. Grid Engine sends it twice (to the
        # process group, then to each process of the job), and a second
        # SIGTERM makes a closing nanny die at once: pass it on once.
        warn_once = '[ -n "$warned" ] || { warned=1; kill -TERM "$worker"; }'
        return [
            "trap '' USR2",  # ignored by the workers, who inherit this
            *supervised(command, "USR2", warn_once),
            *self.job_script_epilogue,
            'exit "$status"',
        ]

    @classmethod
    def parse_job_id(cls, stdout):
        # -terse prints "<id>" (or "<id>.<tasks>" for arrays).
        job_id = stdout.strip().split(".")[0]
        if not job_id.isdigit():
            raise ValueError(f"qsub printed no job id: {stdout!r}")
        return job_id

    @classmethod
    def element_id(cls, array_id, index):
        return f"{array_id}.{index}"

    @classmethod
    def already_gone(cls, result):
        return "does not exist" in result.stdout + result.stderr

    def find_command(self):
        return ["qstat", "-xml", "-j", self.job_name]

    def error_file(self):
        # -j y -o <dir>/: stderr is in <job name>.o<id>, an element's <id> being <job>.<task> as jqref has it.
        if not self.log_directory or self.job_id is None:
            return None
        return f"{str(self.log_directory).rstrip('/')}/{self.job_name}.o{self.job_id}"

    @classmethod
    def parse_found(cls, result, tag):
        for job in _xml(result).iter("element"):
            context = {v.findtext("VA_variable"): v.findtext("VA_value") for v in job.iter("context_list")}
            if context.get("jqref_tag") == tag:
                return job.findtext("JB_job_number")
        return None

    @classmethod
    def status_command(cls, job_ids):
        # Lists all of this user's jobs: one call whatever the number of jobs;
        # -g d: one entry per array element, pending ones too.
        return ["qstat", "-xml", "-g", "d"]

    @classmethod
    def pending_reason_command(cls, job_ids):
        # The jobs' numbers (an element's reason is its array's); answered where schedd_job_info is true.
        return ["qstat", "-j", ",".join(sorted({job_id.split(".")[0] for job_id in job_ids}))]

    @classmethod
    def parse_pending_reasons(cls, result, job_ids):
        # Blocks of "key:   value" lines, one per job; "scheduling info:" may go on in indented lines.
        by_number: dict[str, list[str]] = {}
        number = None
        info: list[str] | None = None
        for line in result.stdout.splitlines():
            if line.startswith("job_number:"):
                number, info = line.partition(":")[2].strip(), None
            elif line.startswith("scheduling info:") and number is not None:
                info = by_number[number] = [line.partition(":")[2].strip()]
            elif info is not None and line[:1].isspace() and line.strip():
                info.append(line.strip())
            else:
                info = None
        return {
            job_id: "; ".join(by_number[job_id.split(".")[0]])
            for job_id in job_ids
            if job_id.split(".")[0] in by_number
        }

    @classmethod
    def parse_states(cls, result, job_ids):
        states = {}
        for entry in _xml(result).iter("job_list"):
            job_id = entry.findtext("JB_job_number")
            if entry.findtext("tasks"):
                job_id = cls.element_id(job_id, entry.findtext("tasks"))
            code = entry.findtext("state") or ""
            if "E" in code:
                states[job_id] = (JobState.HELD, code)  # Eqw: it will never start
            elif "q" in code:
                states[job_id] = (JobState.PENDING, code)
            else:
                states[job_id] = (JobState.RUNNING, code)  # r, t, s, dr, ...
        return states


class SGECluster(JobQueueCluster):
    """Dask workers in Grid Engine jobs. Every option is listed below: `pe`,
    `memory_resource` and `resource_spec` say how cores and memory are
    requested. `JobQueueCluster` describes where the batch commands and the
    scheduler run."""

    job_cls = SGEJob
