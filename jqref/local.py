"""Jobs as processes where the commands run, without a batch system.

dask-jobqueue's `LocalCluster`: the same clusters, options and job scripts,
to try a pipeline (or a configuration) on one machine before a batch system
runs it. "Submitting" starts the job script in a session of its own and
prints its process id, which is the job id; the job is polled with `ps` and
cancelled by signalling its process group (SIGTERM first, which the
workers close on, SIGKILL after `cancel_grace_period`). The script is read
from a file removed before the job starts, so nothing is left on disk; the
job's output goes to `log_directory`, or nowhere.
"""

from __future__ import annotations

from .cluster import JobQueueCluster
from .job import Job, JobState, rows
from .runners import CommandError

#: `bash -c` program: stdin is the job script, $1 the file for its output.
#: The script is opened, unlinked, and run from the open descriptor by a
#: shell in a new session, whose process id is printed: it is also the
#: process group that a cancel signals.
_LAUNCH = """
script=$(mktemp) || exit 1
exec 3<"$script" && cat >"$script" && rm -f -- "$script" || exit 1
setsid bash /dev/fd/3 </dev/null >"$1" 2>&1 &
echo "$!"
""".strip()


def _groups(job_ids):
    return ["--", *(f"-{job_id}" for job_id in job_ids)]


class LocalJob(Job):
    config_name = "local"
    directive_prefix = "#"
    submit_command = ("bash", "-c", _LAUNCH, "jqref-local-job")
    signal_command = ("kill", "-TERM")
    cancel_command = ("kill", "-KILL")

    option_aliases = {"project": "account"}  # accepted for dask-jobqueue's sake; there is nothing to charge

    def directives(self):
        return ()

    def output_path(self) -> str:
        if not self.log_directory:
            return "/dev/null"
        return f"{str(self.log_directory).rstrip('/')}/{self.job_name}-{self.tag}.out"

    def submit_argv(self):
        return [*self.submit_command, self.output_path(), *self.submit_command_extra]

    def signal_argv(self, job_ids):
        return [*self.signal_command, *_groups(job_ids)]

    def cancel_argv(self, job_ids):
        return [*self.cancel_command, *self.cancel_command_extra, *_groups(job_ids)]

    async def start(self):
        await super().start()
        self.state = JobState.RUNNING  # a process runs as soon as it exists: a cancel warns it first

    @classmethod
    def parse_job_id(cls, stdout):
        job_id = stdout.strip()
        if not job_id.isdigit():
            raise ValueError(f"the local job launcher printed no process id: {stdout!r}")
        return job_id

    @classmethod
    def already_gone(cls, result):
        return "No such process" in result.stderr

    def find_command(self):
        raise NotImplementedError("a local job's submission cannot be cut off from its answer")

    @classmethod
    def status_command(cls, job_ids):
        return ["ps", "-o", "pid=,stat=", "-p", ",".join(job_ids)]

    @classmethod
    def parse_states(cls, result, job_ids):
        if not result.ok and (result.returncode != 1 or result.stderr.strip()):
            raise CommandError(result)  # ps exits 1, silently, when none of the processes exists
        states = {}
        for pid, stat in rows(result.stdout, 2):
            states[pid] = (JobState.ENDED, "zombie") if stat.startswith("Z") else (JobState.RUNNING, stat)
        return states


class LocalCluster(JobQueueCluster):
    """Dask workers in jobs that are processes of this machine (or of the
    login node, with ``ssh=``): dask-jobqueue's LocalCluster, for trying a
    pipeline without a batch system. For local work proper, use
    ``distributed.LocalCluster``."""

    job_cls = LocalJob
