"""What the suite needs to know about a testbed, beyond jqref itself:
how to list, cancel and inspect jobs with the batch system's own tools.
These go through the same runner as the cluster, so they run wherever the
batch commands run."""

from __future__ import annotations

from jqref.runners import Runner


class Testbed:
    name: str
    cluster_cls: type
    #: A queue/partition that exists, and what the batch system says about one that does not.
    queue: str
    unknown_queue_error: str
    #: Characters a job name may hold here, to build a hostile but valid name.
    hostile_name_suffix = " 'q' $(x) `y`"

    def __init__(self, runner: Runner):
        self.runner = runner

    def run(self, *argv: str) -> str:
        return self.runner.run_blocking(list(argv), timeout=60).check().stdout

    def active_jobs(self, job_name: str) -> set[str]:
        """Ids of the jobs named `job_name` that are pending or running."""
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        raise NotImplementedError

    def resources(self, job_id: str) -> dict:
        """What the batch system granted: name, cores, memory_mib, queue, walltime_s."""
        raise NotImplementedError


def seconds(clock: str) -> int:
    """'1-02:03:04', '02:03:04' or '03:04' to seconds."""
    days, _, clock = clock.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s
