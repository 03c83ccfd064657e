"""HTCondor: condor_submit, condor_rm, condor_q.

A job is a submit description rather than a batch script: the shell line
runs as the `arguments` of the shebang's interpreter. HTCondor quotes on its
own terms (the new `arguments`/`environment` syntax) and expands `$(...)` as
its macros everywhere, so every value goes through `_condor_value` and
`_condor_words`. Walltime becomes `allowed_job_duration`: HTCondor holds a
job that runs longer, and jqref removes held jobs and replaces them.

The resources are ClassAds of the job, as dask-jobqueue writes them, so
that `condor_q -af DaskWorkerMemory` answers as it does for dask-jobqueue's
jobs: `MY.DaskWorkerCores`, `MY.DaskWorkerMemory` and `MY.DaskWorkerDisk`
(bytes) hold the numbers, and `RequestCpus`, `RequestMemory` (MiB) and
`RequestDisk` (KiB) are expressions of them. The batch name is the worker
name; the job name is the job's `description` (the command `condor_q
-nobatch` shows).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from typing import Any

from .cluster import JobQueueCluster
from .job import Job, JobState, rows, size_in_bytes
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

#: What the status command asks for each job: why a held job is held, and why
#: the negotiator last found no slot for an idle one (tab-separated: they have spaces).
_STATUS_ATTRIBUTES = ("ClusterId", "ProcId", "JobStatus", "HoldReason", "LastRejMatchReason")
#: Which of them explains a job in each state (JobStatus 5: held, 1: idle).
_REASON_ATTRIBUTE = {"5": "HoldReason", "1": "LastRejMatchReason"}
#: What -af prints for an attribute a job does not have.
_UNDEFINED = "undefined"

#: The resource requests, as expressions of the job's own ClassAds (dask-jobqueue's spelling).
_REQUESTS = {
    "RequestCpus": "MY.DaskWorkerCores",
    "RequestMemory": "floor(MY.DaskWorkerMemory / 1048576)",
    "RequestDisk": "floor(MY.DaskWorkerDisk / 1024)",
}
#: The submit macro holding array element i's worker name is this followed by i.
_ELEMENT_NAME_MACRO = "JqrefWorkerName"
#: A `$` alone, and two or more before a parenthesis (see `_condor_value`).
_LONE_DOLLAR = re.compile(r"(?<!\$)\$(?!\$)")
_DOLLARS_BEFORE_PARENTHESIS = re.compile(r"\$\$+\(")
#: A macro no description defines, which expands to nothing.
_NOTHING = "$(JqrefNothing)"
#: condor_submit -terse's line: the first and last job id.
_TERSE = re.compile(r"^\s*(\d+\.\d+) - \d+\.\d+\s*$", re.MULTILINE)
#: condor_submit's summary without -terse (dask-jobqueue reads this one).
_SUBMITTED_TO_CLUSTER = re.compile(r"submitted to cluster (\d+)")


def _unexpanded(value: str) -> str:
    """`value` kept from macro expansion, on one line.

    A lone `$` becomes `$(DOLLAR)`. HTCondor leaves a run of `$`s alone
    unless `(` follows it (`$$(...)` is its match-time substitution), and
    would not expand a `$(DOLLAR)` written after another `$`: such runs stay
    as they are, and one before `(` cannot be written."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"HTCondor submit values must be single lines, got {value!r}")
    if _DOLLARS_BEFORE_PARENTHESIS.search(value):
        raise ValueError(
            f"HTCondor cannot take two or more $ before a parenthesis ($$(...) is its own substitution), got {value!r}"
        )
    return _LONE_DOLLAR.sub("$(DOLLAR)", value)


def _condor_value(value: str) -> str:
    """A literal for the submit language, ending its line: a trailing
    backslash would continue the line, so an empty macro reference follows it."""
    value = _unexpanded(value)
    return value + _NOTHING if value.endswith("\\") else value


def _batch_name(value: str) -> str:
    """A value for batch_name, which condor_submit trims and unquotes: quoted when that would change it."""
    if value != value.strip() or (value.startswith('"') and value.endswith('"')):
        return f'"{value}"'
    return value


def _condor_words(words: list[str], macros: Sequence[str] = ()) -> str:
    """The new `arguments`/`environment` syntax: double-quoted as a whole, each
    word single-quoted, quote characters doubled; `macros` are words of
    jqref's own that HTCondor expands (such as $(ProcId))."""
    quoted = ["'" + _unexpanded(w).replace("'", "''").replace('"', '""') + "'" for w in words]
    return '"' + " ".join([*quoted, *(f"'{m}'" for m in macros)]) + '"'


def _lines(entries: dict[str, Any]) -> list[str]:
    """Submit commands as the description writes them: `key = value`, one line each."""
    lines = [f"{key} = {value}" for key, value in entries.items()]
    if any("\n" in line or "\r" in line for line in lines):
        raise ValueError("HTCondor submit commands must be single lines")
    return lines


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
    #: The commands as argument lists, as every scheduler declares them. Each
    #: job's own `submit_command` and `cancel_command` are strings that add
    #: the extra arguments, as dask-jobqueue's are; the job runs those.
    submit_command = ("condor_submit", "-terse")
    cancel_command = ("condor_rm",)
    job_id_regexp = r"(?P<job_id>\d+\.\d+)"
    # An array is one description queued N times; each job's ProcId is its index.
    array_index_variable = "JQREF_ARRAY_INDEX"
    tls_unavailable = (
        "the workers' key would travel in the job's arguments, which condor_q -long shows to every user of the pool"
    )
    parameter_docs = """
    disk : str
        Disk per job, e.g. ``"4 GiB"``: ``MY.DaskWorkerDisk`` and ``RequestDisk``.
        Optional in jqref (dask-jobqueue requires it): without it none is requested.
    environment : dict
        Variables of the job's environment (HTCondor's ``environment``).
    job_extra_directives : dict
        More submit commands, written ``key = value`` after the generated ones.
    job_directives_skip : list of str
        Generated submit commands left out: one whose name is given (such as
        ``"Stream_Output"``), and otherwise those whose line contains the text.
    """

    def configure(self):
        if self.queue is not None:
            raise ValueError(f"HTCondor has no queues: queue={self.queue!r} cannot be requested")
        self.disk = self.option("disk")
        self.disk_bytes = size_in_bytes("disk", self.disk) if self.disk else None
        self.environment = dict(self.option("environment") or {})
        # dask-jobqueue's strings: what runs, and what a user may read or replace. A job's string
        # over its class's argv is a shape the checker cannot express, hence the ignores here and below.
        self.submit_command = shlex.join([*type(self).submit_command, *self.submit_command_extra])  # type: ignore[misc, assignment]  # a job's string
        self.cancel_command = shlex.join([*type(self).cancel_command, *self.cancel_command_extra])  # type: ignore[misc, assignment]  # a job's string

    # ---- the submit description -------------------------------------------

    def command_entries(self) -> dict[str, str]:
        """What the job runs: never left out by job_directives_skip."""
        interpreter = shlex.split(self.shebang.removeprefix("#!"))
        # One line, the submit language has no multi-line values: commands end
        # with ';', but one sent to the background already ends with its '&'.
        body = " ".join(line if line.endswith("&") else f"{line};" for line in self.shell_commands())
        entries = {
            "universe": "vanilla",
            "executable": _condor_value(interpreter[0]),
            "arguments": _condor_words([*interpreter[1:], "-c", body]),
        }
        index = [f"{self.array_index_variable}=$(ProcId)"] if self.element_names is not None else []
        if self.environment or index:
            entries["environment"] = _condor_words([f"{k}={v}" for k, v in self.environment.items()], index)
        return entries

    def generated_header(self) -> dict[str, Any]:
        """The submit commands jqref writes besides the command, before job_directives_skip."""
        header: dict[str, Any] = {}
        if self.element_names is None:
            header["batch_name"] = _batch_name(_condor_value(str(self.name)))
        else:
            # Each element's worker name, picked by its ProcId from one macro per element.
            for index, name in enumerate(self.element_names):
                header[f"{_ELEMENT_NAME_MACRO}{index}"] = _batch_name(_condor_value(name))
            header["batch_name"] = f"$({_ELEMENT_NAME_MACRO}$(ProcId))"
        header["description"] = _condor_value(self.job_name)
        header["MY.DaskWorkerName"] = '"htcondor--$F(MY.JobId)--"'
        header["MY.JobId"] = '"$(ClusterId).$(ProcId)"'
        header["MY.DaskWorkerCores"] = self.cores
        header["MY.DaskWorkerMemory"] = self.memory_bytes
        header["RequestCpus"] = _REQUESTS["RequestCpus"]
        header["RequestMemory"] = _REQUESTS["RequestMemory"]
        if self.disk_bytes is not None:
            header["MY.DaskWorkerDisk"] = self.disk_bytes
            header["RequestDisk"] = _REQUESTS["RequestDisk"]
        header["+JqrefTag"] = f'"{self.tag}"'
        # condor_rm sends the job SIGTERM, then kills it after this long.
        header["job_max_vacate_time"] = max(1, round(self.cancel_grace_period))
        if self.walltime:
            header["allowed_job_duration"] = _seconds(self.walltime)
        if self.account:
            header["accounting_group"] = _condor_value(self.account)
        if self.log_directory:
            header["LogDirectory"] = _condor_value(self.log_directory)
            # $F() takes the quotes off the ClassAd string.
            header["Output"] = "$(LogDirectory)/worker-$F(MY.JobId).out"
            header["Error"] = "$(LogDirectory)/worker-$F(MY.JobId).err"
            header["Log"] = "$(LogDirectory)/worker-$(ClusterId).log"
            # Cancelling kills the workers: what they wrote is kept only if it went out as they wrote it.
            header["Stream_Output"] = True
            header["Stream_Error"] = True
        return header

    def _skipped(self, key: str, line: str, keys: set[str]) -> bool:
        """Whether job_directives_skip leaves out the generated `key = value`
        line: a skip naming a submit command (case aside, as HTCondor reads
        them) drops that command, as in dask-jobqueue; any other text drops
        the lines that contain it, as on the other batch systems."""
        for skip in self.job_directives_skip:
            if skip.lower() in keys:
                if skip.lower() == key.lower():
                    return True
            elif skip in line:
                return True
        return False

    @property
    def job_header_dict(self) -> dict[str, Any]:
        """The submit commands besides the command (dask-jobqueue's): the
        generated ones that job_directives_skip leaves, then the
        job_extra_directives; numbers are ints, as dask-jobqueue's are."""
        generated = self.generated_header()
        keys = {key.lower() for key in generated}
        header = {key: value for key, value in generated.items() if not self._skipped(key, f"{key} = {value}", keys)}
        extras = self.job_extra_directives or {}
        if not isinstance(extras, dict):
            raise TypeError(f"HTCondor job_extra_directives must be a dict of submit commands, got {extras!r}")
        header.update({str(k): v for k, v in extras.items()})
        return header

    def submit_description(self) -> dict[str, str]:
        """Every submit command of the description, as written."""
        return {**self.command_entries(), **{key: str(value) for key, value in self.job_header_dict.items()}}

    def directive_lines(self):
        """The header's lines (`job_header`): the description less the command."""
        return _lines(self.job_header_dict)

    def job_script(self):
        count = f" {len(self.element_names)}" if self.element_names is not None else ""
        return "\n".join([*_lines(self.submit_description()), "queue" + count]) + "\n"

    def submit_argv(self):
        # The description comes on stdin.
        return [*shlex.split(self.submit_command), "-"]  # type: ignore[arg-type]  # the job's string (configure)

    def cancel_argv(self, job_ids):
        return [*shlex.split(self.cancel_command), *job_ids]  # type: ignore[arg-type]  # the job's string (configure)

    @classmethod
    def parse_job_id(cls, stdout):
        # -terse prints "<first> - <last>", e.g. "15.0 - 15.2"; without it,
        # "1 job(s) submitted to cluster 15." (a submit_command without -terse).
        terse = _TERSE.search(stdout)
        if terse is not None:
            return terse.group(1)
        summary = _SUBMITTED_TO_CLUSTER.search(stdout)
        if summary is None:
            raise ValueError(f"condor_submit printed no job id: {stdout!r}")
        return f"{summary.group(1)}.0"

    def _job_id_from_submit_output(self, stdout):
        return self.parse_job_id(stdout)

    @classmethod
    def element_id(cls, array_id, index):
        cluster = array_id.split(".")[0]
        return f"{cluster}.{index}"

    @classmethod
    def already_gone(cls, result):
        output = result.stdout + result.stderr
        return "not found" in output or "Couldn't find" in output

    def error_file(self):
        if not self.log_directory or self.job_id is None:
            return None
        return f"{self.log_directory}/worker-{self.job_id}.err"  # the description's Error

    def find_command(self):
        return ["condor_q", "-constraint", f'JqrefTag == "{self.tag}"', "-af", "ClusterId", "ProcId"]

    @classmethod
    def parse_found(cls, result, tag):
        found = rows(result.check().stdout, 2)
        return ".".join(found[0]) if found else None

    @classmethod
    def status_command(cls, job_ids):
        return ["condor_q", *job_ids, "-af:t", *_STATUS_ATTRIBUTES]

    @classmethod
    def _status_rows(cls, result) -> list[dict[str, str]]:
        """The status command's lines, each its attributes by name."""
        return [
            dict(zip(_STATUS_ATTRIBUTES, fields))
            for fields in (line.split("\t") for line in result.check().stdout.splitlines())
            if len(fields) == len(_STATUS_ATTRIBUTES)
        ]

    @classmethod
    def parse_states(cls, result, job_ids):
        states = {}
        for row in cls._status_rows(result):
            status = row["JobStatus"]
            states[f"{row['ClusterId']}.{row['ProcId']}"] = _STATES.get(status, (JobState.RUNNING, f"status {status}"))
        if not states and "Failed" in result.stderr:
            raise CommandError(result)
        return states

    @classmethod
    def parse_reasons(cls, result, job_ids):
        reasons = {}
        for row in cls._status_rows(result) if result.ok else []:
            reason = row.get(_REASON_ATTRIBUTE.get(row["JobStatus"], ""), "").strip()
            reasons[f"{row['ClusterId']}.{row['ProcId']}"] = "" if reason == _UNDEFINED else reason
        return reasons


class HTCondorCluster(JobQueueCluster):
    """Dask workers in HTCondor jobs. Every option is listed below, HTCondor's
    own among them: `disk` (MY.DaskWorkerDisk and RequestDisk), `environment`
    (a dict for the job's environment) and `job_extra_directives` as a dict
    of submit commands. `JobQueueCluster` describes where the batch commands
    and the scheduler run."""

    job_cls = HTCondorJob
