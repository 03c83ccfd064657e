"""HTCondor: condor_submit, condor_rm, condor_q.

A job is a submit description rather than a batch script: the shell line
runs as the `arguments` of the shebang's interpreter. HTCondor quotes on its
own terms (the new `arguments`/`environment` syntax) and expands `$(...)` as
its macros everywhere, so every value goes through `_condor_value` and
`_condor_words`. Walltime becomes `allowed_job_duration`: HTCondor holds a
job that runs longer, and jqref removes held jobs and replaces them.
"""

from __future__ import annotations

import shlex

from dask.utils import parse_bytes

from .cluster import JobQueueCluster
from .job import Job, JobState, memory_in_units
from .runners import CommandError

_STATES = {
    "1": (JobState.PENDING, "idle"),
    "2": (JobState.RUNNING, "running"),
    "3": (JobState.ENDED, "removed"),
    "4": (JobState.ENDED, "completed"),
    "5": (JobState.HELD, "held"),
    "6": (JobState.RUNNING, "transferring output"),
    "7": (JobState.RUNNING, "suspended"),
}


def _condor_value(value: str) -> str:
    """A literal for the submit language: no line breaks, `$` kept from macro expansion."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"HTCondor submit values must be single lines, got {value!r}")
    return value.replace("$", "$(DOLLAR)")


def _condor_words(words: list[str], macros: list[str] = ()) -> str:
    """The new `arguments`/`environment` syntax: double-quoted as a whole, each
    word single-quoted, quote characters doubled; `macros` are words of
    jqref's own that HTCondor expands (such as $(ProcId))."""
    quoted = ["'" + _condor_value(w).replace("'", "''").replace('"', '""') + "'" for w in words]
    return '"' + " ".join([*quoted, *(f"'{m}'" for m in macros)]) + '"'


def _seconds(walltime: str | int) -> int:
    """'HH:MM:SS', 'MM:SS' or plain seconds."""
    parts = [int(p) for p in str(walltime).split(":")]
    if len(parts) > 3:
        raise ValueError(f"walltime {walltime!r} is not [[HH:]MM:]SS")
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


class HTCondorJob(Job):
    config_name = "htcondor"
    submit_command = ("condor_submit", "-terse")
    cancel_command = ("condor_rm",)
    # An array is one description queued N times; each job's ProcId is its index.
    array_index_variable = "JQREF_ARRAY_INDEX"
    tls_unavailable = ("the workers' key would travel in the job's arguments, which condor_q -long shows to every "
                       "user of the pool")

    def configure(self):
        if self.queue is not None:
            raise ValueError(f"HTCondor has no queues: queue={self.queue!r} cannot be requested")
        self.disk = self.option("disk")
        self.environment = dict(self.option("environment") or {})

    def submit_description(self) -> dict[str, str]:
        interpreter = shlex.split(self.shebang.removeprefix("#!"))
        body = "; ".join(self.shell_commands())  # one line: the submit language has no multi-line values
        description = {
            "universe": "vanilla",
            "executable": _condor_value(interpreter[0]),
            "arguments": _condor_words([*interpreter[1:], "-c", body]),
            "batch_name": _condor_value(self.job_name),
            "request_cpus": str(self.cores),
            "request_memory": str(memory_in_units(self.memory_bytes, "MiB")),
            "+JqrefTag": f'"{self.tag}"',
            # condor_rm sends the job SIGTERM, then kills it after this long.
            "job_max_vacate_time": str(max(1, round(self.cancel_grace_period))),
        }
        index = [f"{self.array_index_variable}=$(ProcId)"] if self.element_names is not None else []
        if self.environment or index:
            description["environment"] = _condor_words([f"{k}={v}" for k, v in self.environment.items()], index)
        if self.disk:
            description["request_disk"] = str(memory_in_units(parse_bytes(self.disk), "KiB"))
        if self.walltime:
            description["allowed_job_duration"] = str(_seconds(self.walltime))
        if self.account:
            description["accounting_group"] = _condor_value(self.account)
        if self.log_directory:
            stem = _condor_value(f"{self.log_directory}/{self.job_name}") + "-$(ClusterId).$(ProcId)"
            description.update(output=stem + ".out", error=stem + ".err", log=stem + ".log")
        extras = self.job_extra_directives or {}
        if not isinstance(extras, dict):
            raise TypeError(f"HTCondor job_extra_directives must be a dict of submit commands, got {extras!r}")
        description.update({str(k): str(v) for k, v in extras.items()})
        return description

    def directive_lines(self):
        lines = [f"{key} = {value}" for key, value in self.submit_description().items()]
        if any("\n" in line for line in lines):
            raise ValueError("HTCondor submit commands must be single lines")
        return self.skip_directives(lines)

    def job_script(self):
        count = f" {len(self.element_names)}" if self.element_names is not None else ""
        return "\n".join([*self.directive_lines(), "queue" + count]) + "\n"

    def submit_argv(self):
        return [*super().submit_argv(), "-"]  # the description comes on stdin

    @classmethod
    def parse_job_id(cls, stdout):
        # -terse prints "<first> - <last>", e.g. "15.0 - 15.0".
        first = stdout.strip().split(" ")[0]
        cluster, _, proc = first.partition(".")
        if not (cluster.isdigit() and proc.isdigit()):
            raise ValueError(f"condor_submit printed no job id: {stdout!r}")
        return first

    @classmethod
    def element_id(cls, array_id, index):
        cluster = array_id.split(".")[0]
        return f"{cluster}.{index}"

    @classmethod
    def already_gone(cls, result):
        output = result.stdout + result.stderr
        return "not found" in output or "Couldn't find" in output

    def find_command(self):
        return ["condor_q", "-constraint", f'JqrefTag == "{self.tag}"', "-af", "ClusterId", "ProcId"]

    @classmethod
    def parse_found(cls, result, tag):
        for line in result.check().stdout.splitlines():
            fields = line.split()
            if len(fields) == 2:
                return ".".join(fields)
        return None

    @classmethod
    def status_command(cls, job_ids):
        return ["condor_q", *job_ids, "-af", "ClusterId", "ProcId", "JobStatus"]

    @classmethod
    def parse_states(cls, result, job_ids):
        result.check()
        states = {}
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) != 3:
                continue
            cluster, proc, status = fields
            states[f"{cluster}.{proc}"] = _STATES.get(status, (JobState.RUNNING, f"status {status}"))
        if not states and "Failed" in result.stderr:
            raise CommandError(result)
        return states


class HTCondorCluster(JobQueueCluster):
    """Dask workers in HTCondor jobs. See `JobQueueCluster` for the options;
    also `disk` (request_disk), `environment` (a dict for the job's
    environment) and `job_extra_directives` as a dict of submit commands."""

    job_cls = HTCondorJob
