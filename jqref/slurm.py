"""SLURM: sbatch, scancel, squeue."""

from __future__ import annotations

import re

from .cluster import JobQueueCluster
from .job import Job, JobState, memory_rounded_up
from .placement.allocation import SLURMAllocation
from .runners import CommandError

#: scancel's exit status for ESLURM_ALREADY_DONE (2021 % 256): "Job/step already
#: completing or completed", which it prints only with -v. A signal gets it when
#: the job ends on the signal before scancel's retry of a job in transition.
_ALREADY_DONE_EXIT = 229

#: Slurm reads K, M, G as binary units; a bare number is MiB.
SLURM_MEMORY_UNITS = (("G", 2**30), ("M", 2**20), ("K", 2**10))

_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING"}
_ENDED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "REVOKED",
    "SPECIAL_EXIT",
    "TIMEOUT",
}


#: What squeue's %r says of a job it has no reason for (a running one).
_NO_REASON = "None"
#: `scontrol show config`'s line for the array limit: indices below it, so this many elements from 0.
_MAX_ARRAY_SIZE = re.compile(r"^MaxArraySize\s*=\s*(\d+)", re.MULTILINE)
#: The QOS a job asks for in its directives or sbatch arguments (--qos=x, --qos x, -q x).
_QOS = re.compile(r"(?:--qos[= ]|-q\s+)(\S+)")


class SLURMJob(Job):
    config_name = "slurm"
    directive_prefix = "#SBATCH"
    submit_command = ("sbatch", "--parsable")
    cancel_command = ("scancel",)
    # The batch shell only, which is the nanny (the script execs it): its
    # workers close when it asks them to, not all at once.
    signal_command = ("scancel", "--batch", "--signal=TERM")
    array_option = "--array"
    array_index_variable = "SLURM_ARRAY_TASK_ID"
    option_ends = {"OUT_OF_MEMORY": "memory"}
    # slurmstepd's words: the over-memory kill without cgroups (the job ends FAILED), and the cgroup one.
    option_end_signs = {"Exceeded job memory limit": "memory", "oom_kill event": "memory"}
    # The node's or a more urgent job's doing, not the options'.
    blameless_ends = frozenset({"PREEMPTED", "NODE_FAIL", "BOOT_FAIL"})
    walltime_number_seconds = 60

    renamed_options = {"project": "account"}  # dask-jobqueue 0.9 deprecates project for -A
    parameter_docs = """
    job_cpu : int
        ``--cpus-per-task``, when it is not ``cores``.
    job_mem : str
        ``--mem`` in Slurm's own words, passed as written (``"4000"`` is 4000 MB,
        ``"0"`` all of a node's); by default ``memory``, rounded up in G, M or K.
    """

    def configure(self):
        self.job_cpu = int(self.option("job_cpu") or self.cores)
        # The user's words to Slurm, passed as they are (0 too: all of a node's
        # memory); else memory as dask-jobqueue writes it.
        job_mem = self.option("job_mem")
        self.job_mem = (
            memory_rounded_up(self.memory_bytes, SLURM_MEMORY_UNITS) if job_mem in (None, "") else str(job_mem)
        )

    def directives(self):
        # Spelled as dask-jobqueue spells them, so its users find the lines they know.
        yield "-J", self.job_name
        if self.log_directory:
            # %J: the job id (a batch script has no step number to add to it).
            yield "-e", f"{self.log_directory}/{self.job_name}-%J.err"
            yield "-o", f"{self.log_directory}/{self.job_name}-%J.out"
        if self.queue:
            yield "-p", self.queue
        if self.account:
            yield "-A", self.account
        yield "-n", "1"
        yield ("--nodes=1",)  # dask-jobqueue's main branch writes it: some sites' defaults would spread a job
        yield (f"--cpus-per-task={self.job_cpu}",)
        yield (f"--mem={self.job_mem}",)
        if self.walltime:
            yield "-t", self.walltime
        yield "--comment", self.tag

    @classmethod
    def parse_job_id(cls, stdout):
        # --parsable prints "<id>" or "<id>;<cluster>".
        job_id = stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise ValueError(f"sbatch printed no job id: {stdout!r}")
        return job_id

    @classmethod
    def element_id(cls, array_id, index):
        return f"{array_id}_{index}"

    @classmethod
    def already_gone(cls, result):
        return result.returncode == _ALREADY_DONE_EXIT or "already completing or completed" in result.stderr

    def find_command(self):
        # %F: an array's own id (a plain job's id otherwise), which element_id builds on.
        return ["squeue", "--noheader", "--states=all", "--format=%F %k", f"--name={self.job_name}"]

    @classmethod
    def parse_found(cls, result, tag):
        for line in result.check().stdout.splitlines():
            job_id, _, comment = line.partition(" ")
            if comment.strip() == tag:
                return job_id
        return None

    @classmethod
    def status_command(cls, job_ids):
        # --array: one line per element (123_4), pending ones too; %r, last: why it waits (words with spaces).
        return ["squeue", "--noheader", "--array", "--states=all", "--format=%i %T %r", "--jobs=" + ",".join(job_ids)]

    @classmethod
    def parse_states(cls, result, job_ids):
        if not result.ok:
            if "Invalid job id" in result.stderr:
                return {}  # none of them is known any more
            raise CommandError(result)
        states = {}
        for fields in (line.split(None, 2) for line in result.stdout.splitlines()):
            if len(fields) < 2:  # a line cut short, or a login shell's noise
                continue
            job_id, word = fields[:2]
            if word in _ENDED:
                states[job_id] = (JobState.ENDED, word)
            elif word in _PENDING:
                states[job_id] = (JobState.PENDING, word)
            else:
                states[job_id] = (JobState.RUNNING, word)
        return states

    @classmethod
    def parse_reasons(cls, result, job_ids):
        reasons = {}
        for line in result.stdout.splitlines() if result.ok else []:
            fields = line.split(None, 2)
            if len(fields) == 3:
                reasons[fields[0]] = "" if fields[2].strip() == _NO_REASON else fields[2].strip()
        return reasons

    def error_file(self):
        if self.job_id is None:
            return None
        if not self.log_directory:  # Slurm's own, in sbatch's directory: slurm-%j.out, an element's slurm-%A_%a.out
            return f"slurm-{self.job_id}.out"
        # -e names it by %J, the job's own id: an array element's is not the 123_4 jqref knows.
        return None if "_" in self.job_id else f"{self.log_directory}/{self.job_name}-{self.job_id}.err"

    def site_limit_commands(self):
        commands = [["scontrol", "show", "config"]]
        qos = _QOS.findall(" ".join([*self.job_extra_directives, *self.submit_command_extra]))
        if qos:  # the user's default QOS is not asked for: naming the user would take another command
            commands.append(
                ["sacctmgr", "--noheader", "--parsable2", "show", "qos", f"name={qos[-1]}", "format=MaxSubmitPU"]
            )
        return commands

    def parse_site_limits(self, result):
        if not result.ok:
            return {}
        if result.argv[0] == "scontrol":
            found = _MAX_ARRAY_SIZE.search(result.stdout)
            return {"max_array_size": int(found.group(1))} if found else {}
        limit = result.stdout.strip()
        return {"max_jobs": int(limit)} if limit.isdigit() else {}


class SLURMCluster(JobQueueCluster):
    """Dask workers in SLURM jobs. Every option is listed below, SLURM's own
    among them; `JobQueueCluster` describes where the batch commands and the
    scheduler run."""

    job_cls = SLURMJob


#: dask-jobqueue's name for a whole cluster inside one Slurm allocation (jqref's runners run batch commands).
SLURMRunner = SLURMAllocation
